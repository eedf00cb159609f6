//! Where ktstr keeps its caches. One root (`KTSTR_CACHE_DIR`, else `$XDG_CACHE_HOME/ktstr`, else
//! `~/.cache/ktstr`), one subdirectory per kind of artifact.

use std::path::PathBuf;

pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("KTSTR_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("ktstr");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache").join("ktstr")
}

/// Built kernels, by content key.
pub fn kernels_dir() -> PathBuf {
    cache_root().join("kernels")
}
/// Downloaded / copied kernel source tarballs.
pub fn sources_dir() -> PathBuf {
    cache_root().join("sources")
}
/// Initramfs images, by sha256 of their inputs.
pub fn initramfs_dir() -> PathBuf {
    cache_root().join("initramfs")
}
/// Scheduler binaries (cargo installs, kernel tools/sched_ext builds).
pub fn scheds_dir() -> PathBuf {
    cache_root().join("scheds")
}
/// Debian prebuilt kernel packages and their extracted trees.
pub fn debian_dir() -> PathBuf {
    cache_root().join("debian")
}
