//! Advisory file locks (flock(2)) shared by the kernel, scheduler and initramfs caches: two
//! ktstr processes that want the same artifact build it once, and the second reuses the first's
//! result. The kernel releases a flock when its file descriptor closes, so a crashed holder never
//! leaves a lock behind.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// A held lock; released on drop.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

impl FileLock {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Exclusive lock on `path` (created if missing, with its directory). When another process
    /// holds it, `on_wait` is called once before waiting, so the user learns why nothing moves.
    /// The wait ends with `ErrorKind::Interrupted` on Ctrl-C ([`crate::cancel`]).
    pub fn exclusive(path: &Path, on_wait: impl FnOnce()) -> std::io::Result<FileLock> {
        let file = open(path)?;
        if fs4::FileExt::try_lock(&file).is_err() {
            on_wait();
            wait_for(|| fs4::FileExt::try_lock(&file).is_ok(), path)?;
        }
        Ok(FileLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// Shared lock on `path`: readers mark something as in use; an exclusive holder (e.g. `gc`)
    /// waits for them or skips it. Ctrl-C ends the wait as in [`FileLock::exclusive`].
    pub fn shared(path: &Path) -> std::io::Result<FileLock> {
        let file = open(path)?;
        wait_for(|| fs4::FileExt::try_lock_shared(&file).is_ok(), path)?;
        Ok(FileLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// Exclusive lock if nobody holds `path` now; `None` otherwise (or if it cannot be opened).
    pub fn try_exclusive(path: &Path) -> Option<FileLock> {
        let file = open(path).ok()?;
        fs4::FileExt::try_lock(&file).ok()?;
        Some(FileLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }
}

/// How often a waiter retries: a blocking flock(2) cannot be woken by Ctrl-C (the handler runs
/// on its own thread), so the wait polls and checks for cancellation between tries.
const POLL: std::time::Duration = std::time::Duration::from_millis(25);

fn wait_for(mut try_lock: impl FnMut() -> bool, path: &Path) -> std::io::Result<()> {
    loop {
        if try_lock() {
            return Ok(());
        }
        if crate::cancel::requested() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                format!("interrupted while waiting for {}", path.display()),
            ));
        }
        std::thread::sleep(POLL);
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_and_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.lock");
        let held = FileLock::exclusive(&p, || panic!("nobody holds it yet")).unwrap();
        assert_eq!(held.path(), p);
        // flock locks belong to the open file description, so a second open conflicts even in
        // the same process.
        assert!(FileLock::try_exclusive(&p).is_none());
        drop(held);
        let shared = FileLock::shared(&p).unwrap();
        let shared2 = FileLock::shared(&p).unwrap();
        assert!(FileLock::try_exclusive(&p).is_none());
        drop((shared, shared2));
        assert!(FileLock::try_exclusive(&p).is_some());
    }

    #[test]
    fn a_waiter_is_told_and_then_gets_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("y.lock");
        let held = FileLock::exclusive(&p, || {}).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p2 = p.clone();
        let waiter = std::thread::spawn(move || {
            let l = FileLock::exclusive(&p2, || tx.send(()).unwrap()).unwrap();
            drop(l);
        });
        // The waiter announces that it waits before it blocks; only then is the lock released.
        rx.recv().unwrap();
        drop(held);
        waiter.join().unwrap();
    }
}
