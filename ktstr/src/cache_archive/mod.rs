//! `ktstr cache export`/`import`: chosen kernel and scheduler cache entries as one `.tar.zst`, for
//! engines without a shared filesystem (GitHub Actions artifacts, Kubernetes volumes).
//!
//! The archive has one top directory, `ktstr-cache/`:
//!
//! ```text
//! manifest.json                      format version, the kernel keys and scheduler index keys
//! kernels/<key>/                     a kernel entry as the cache holds it (metadata.json included)
//! kernels/index/<recipe>.json        recipe -> key for the exported keys (hits need no configure)
//! scheds/store/<sha256>/<name>       scheduler binaries by content
//! scheds/index/<key>.json            scheduler index entries
//! ```
//!
//! Entries are content-addressed and the importer trusts none of it: a kernel's files must match
//! the sha256 its metadata records and its key must be the hash of its recorded inputs and config;
//! a scheduler binary must hash to its store directory's name. Everything is verified before
//! anything is installed, extraction is contained (`kernel::extract`), and each entry appears in
//! the cache by one rename under the cache's own lock, so an interrupted import leaves no half
//! entry and a concurrent build or import of the same key waits for it.

mod export;
mod import;
#[cfg(test)]
mod tests;

pub use export::{ExportReport, Selection, export};
pub use import::{ImportReport, import};

use std::path::PathBuf;

/// The archive's top directory.
const TOP: &str = "ktstr-cache";
const MANIFEST: &str = "manifest.json";
/// Bumped when the layout changes; an archive of another format is refused.
const FORMAT: u32 = 1;

/// Where the two caches live (the defaults, or a test's temp dirs).
#[derive(Debug, Clone)]
pub struct CacheDirs {
    pub kernels: PathBuf,
    pub scheds: PathBuf,
}

impl CacheDirs {
    pub fn default_dirs() -> Self {
        Self {
            kernels: crate::paths::kernels_dir(),
            scheds: crate::paths::scheds_dir(),
        }
    }

    /// The kernel cache's lock for `name` (the same file `kernel::locks` uses).
    fn kernel_lock_path(&self, name: &str) -> PathBuf {
        self.kernels.join(".locks").join(format!("{name}.lock"))
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Manifest {
    format: u32,
    ktstr_version: String,
    kernels: Vec<String>,
    scheds: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A selector matches nothing in the cache.
    #[error("{selector}: no cached entry matches; cached: {cached}")]
    NoMatch { selector: String, cached: String },
    /// The archive (or one of its entries) does not verify: nothing was installed.
    #[error(
        "{archive}: entry {entry}: {why}; nothing was imported (re-export it from a good cache)"
    )]
    Tampered {
        archive: String,
        entry: String,
        why: String,
    },
    #[error("{archive}: {why}")]
    Unreadable { archive: String, why: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("interrupted")]
    Interrupted,
}

impl ArchiveError {
    /// Input the user can fix (exit 2); the rest are faults of this machine.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::NoMatch { .. } | Self::Tampered { .. } | Self::Unreadable { .. }
        )
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ArchiveError {
    let what = what.into();
    move |source| ArchiveError::Io { what, source }
}

/// A cache key or store hash: 64 hex digits (also what makes a name safe as a path component).
fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A scheduler index key or binary name is one plain path component.
fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && !s.contains('/')
        && !s.starts_with('.')
        && s.bytes().all(|b| b.is_ascii_graphic())
}
