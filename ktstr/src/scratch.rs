//! Scratch directories inside the caches (an extraction, a configure run, an entry being staged)
//! that never outlive their owner by more than one operation, and moving damaged things aside.
//!
//! A scratch dir holds [`OWNER`], on which the process that made it keeps an exclusive flock for
//! as long as it works there. The kernel drops a flock when its holder dies, however it dies, so
//! [`sweep`] (run at the start of every operation that makes scratch dirs of the kind) can tell a
//! scratch dir in use from one a killed process left behind, and removes the latter at once. A
//! dir without an owner file was made by an older ktstr: it is removed once nothing has touched
//! it for [`UNOWNED_GRACE`]. Whatever is moved aside (`.trash-*`) is removed on the spot, or by
//! the next sweep if that removal was itself interrupted.

use crate::lock::FileLock;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The owner lock inside a scratch dir.
pub const OWNER: &str = ".ktstr-owner";
/// Prefix of things moved aside for removal.
pub const TRASH: &str = ".trash-";
/// How long a scratch dir without an owner file (an older ktstr's) is left alone after its last
/// change: far longer than such a process goes without creating a file in it.
pub const UNOWNED_GRACE: Duration = Duration::from_secs(3600);

/// A scratch directory owned by this process; removed on drop unless installed with
/// [`ScratchDir::install_as`].
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    armed: bool,
    _owner: FileLock,
}

impl ScratchDir {
    /// A fresh `<parent>/<prefix>XXXXXX`, locked by this process.
    pub fn new_in(parent: &Path, prefix: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(parent)?;
        let path = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)?
            .keep();
        // Between the mkdir and this lock a sweep sees no owner file and a fresh mtime: it waits.
        match FileLock::exclusive(&path.join(OWNER), || {}) {
            Ok(owner) => Ok(Self {
                path,
                armed: true,
                _owner: owner,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&path);
                Err(e)
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the dir behind and releases the owner lock: what a killed owner leaves.
    #[cfg(test)]
    pub(crate) fn abandon(mut self) -> PathBuf {
        self.armed = false;
        self.path.clone()
    }

    /// Renames the finished dir to `dest` (without its owner file). On failure the dir is still
    /// this value's, and removed when it drops: a failed install leaves nothing behind.
    pub fn install_as(mut self, dest: &Path) -> std::io::Result<()> {
        // Unlinking the owner file refreshes the dir's mtime, so a sweep racing the rename leaves
        // it alone; the flock on the unlinked file is released with this value.
        std::fs::remove_file(self.path.join(OWNER))?;
        std::fs::rename(&self.path, dest)?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// What a sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub removed: usize,
    pub bytes: u64,
}

/// Removes the abandoned scratch dirs of `parent` whose names start with one of `prefixes`
/// (their owner no longer holds [`OWNER`]), and everything moved aside there ([`TRASH`]).
/// Best effort: what cannot be removed now is tried again by the next sweep.
pub fn sweep(parent: &Path, prefixes: &[&str]) -> Swept {
    let mut swept = Swept::default();
    let Ok(dir) = std::fs::read_dir(parent) else {
        return swept;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = e.path();
        let abandoned = if name.starts_with(TRASH) {
            true
        } else if prefixes.iter().any(|p| name.starts_with(p)) {
            abandoned(&path)
        } else {
            false
        };
        if abandoned {
            let bytes = size_of(&path);
            if remove_any(&path).is_ok() {
                swept.removed += 1;
                swept.bytes += bytes;
            }
        }
    }
    swept
}

/// True when nobody works in the scratch dir (or temp file) at `path`.
fn abandoned(path: &Path) -> bool {
    let owner = path.join(OWNER);
    let is_dir = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    if is_dir && std::fs::symlink_metadata(&owner).is_ok() {
        // The lock is taken only to test it: dropping it right away lets nobody in, as the
        // owner is gone and nobody reuses a scratch dir.
        return FileLock::try_exclusive(&owner).is_some();
    }
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().unwrap_or_default() > UNOWNED_GRACE)
}

/// Moves `path` (a damaged tree or entry) aside with one rename, so nobody sees it half-removed,
/// then removes it. An interrupted removal leaves a [`TRASH`] dir the next [`sweep`] removes.
pub fn move_aside(path: &Path) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let trash = tempfile::Builder::new()
        .prefix(TRASH)
        .tempdir_in(parent)?
        .keep();
    if let Err(e) = std::fs::rename(path, trash.join("old")) {
        let _ = std::fs::remove_dir(&trash);
        return Err(e);
    }
    // The damaged thing is out of the way: failing to delete it is the next sweep's business.
    let _ = std::fs::remove_dir_all(&trash);
    Ok(())
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    }
}

/// Bytes of the files under `path` (symlinks not followed).
pub fn size_of(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                stack.push(e.path());
            }
        } else {
            total += m.len();
        }
    }
    total
}

#[cfg(test)]
#[path = "scratch_tests.rs"]
mod tests;
