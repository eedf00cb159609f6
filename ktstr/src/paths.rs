//! Where ktstr keeps its caches. One root (`KTSTR_CACHE_DIR`, else `$XDG_CACHE_HOME/ktstr`, else
//! `~/.cache/ktstr`), one subdirectory per kind of artifact; and where its companion binaries
//! (`ktstr-bench`, or `ktstr` seen from `ktstr-bench`) are.

use std::path::{Path, PathBuf};

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
/// Persistent bisection worktrees (a source tree and an O= tree each), named by what they build.
pub fn worktrees_dir() -> PathBuf {
    cache_root().join("worktrees")
}

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

/// A companion binary `name`: next to the running executable (`target/<profile>/`, or the
/// directory both were installed into), else the first on `PATH`. Next-to comes first so that a
/// build always pairs with its own companion, never with an older installed one.
pub fn companion_binary(name: &str) -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name));
    beside.into_iter().chain(on_path).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companion_binary_finds_only_executable_files() {
        // `sh` is on PATH on any machine that runs these tests; a name nothing has is not found.
        assert!(companion_binary("sh").is_some_and(|p| is_executable(&p)));
        assert!(companion_binary("ktstr-no-such-companion").is_none());
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        assert!(!is_executable(&plain));
        assert!(!is_executable(dir.path()));
    }
}
