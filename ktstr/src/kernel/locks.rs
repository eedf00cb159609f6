//! The kernel cache's named locks (`kernels/.locks/<name>.lock`): a recipe, a cache key or a
//! source tree is built by one process at a time, and `gc` skips what others hold.

use super::{KernelError, io};
use std::path::PathBuf;

/// A held kernel-cache lock; released on drop.
pub type Lock = crate::lock::FileLock;

/// The lock file for `name` in the kernel cache's `.locks` dir.
pub(super) fn lock_path(name: &str) -> PathBuf {
    crate::paths::kernels_dir()
        .join(".locks")
        .join(format!("{name}.lock"))
}

/// Exclusive lock on `name`, waiting (with a notice) if another process holds it.
pub fn lock(name: &str) -> Result<Lock, KernelError> {
    lock_file(&lock_path(name))
}

/// Exclusive lock on the lock file `path`, waiting (with a notice) if another process holds it.
pub(super) fn lock_file(path: &std::path::Path) -> Result<Lock, KernelError> {
    let name = path.file_stem().unwrap_or_default().to_string_lossy();
    Lock::exclusive(path, || {
        eprintln!("notice: another ktstr holds {name}; waiting for it (its result will be reused)")
    })
    .map_err(io(format!("locking {}", path.display())))
}

/// Shared lock on `name`: marks a source tree as in use so `gc` (which needs it exclusively) skips
/// it while builds read it.
pub fn lock_shared(name: &str) -> Result<Lock, KernelError> {
    let path = lock_path(name);
    Lock::shared(&path).map_err(io(format!("locking {}", path.display())))
}

pub(super) fn try_lock(name: &str) -> Option<Lock> {
    Lock::try_exclusive(&lock_path(name))
}
