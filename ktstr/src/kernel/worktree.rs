//! A persistent build worktree for stepping through the commits of one git history (bisection):
//! `<dir>/src` holds the source of the last synced commit, `<dir>/out` the O= tree built from it.
//!
//! Syncing to the next commit diffs the previously synced git tree against the new one and
//! rewrites only what changed, so unchanged files keep their mtimes and an incremental `make` in
//! the same O= tree rebuilds only the objects that depend on the changed files. The synced tree id
//! is recorded only once a sync has completed; a missing or unreadable record (first use, an
//! interrupted sync, a tree from another repository) means a full export from scratch.
//!
//! Every path written stays under `<dir>/src`: a path with `..`, `.` or a root component, and a
//! tree entry whose name is not one plain component (`a/f`, `..`, `.git`), are refused; symlinks
//! are created (never followed), and a symlink or file met where a directory must be is replaced,
//! not traversed. Submodule (gitlink) entries name another repository's commit: they are skipped.

use super::build::{BuildSite, make_and_install};
use super::cache::{Entry, Inputs};
use super::configure::Configured;
use super::source::Source;
use super::{KernelError, ResolveOptions, io};
use crate::lock::FileLock;
use crate::progress::Progress;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

/// Errors specific to worktree syncing (wrapped in [`KernelError::Worktree`]).
#[derive(Debug, thiserror::Error)]
pub enum WorktreeError {
    #[error("git tree entry `{path}` would be written outside {root}")]
    UnsafePath { path: String, root: PathBuf },
    #[error("git tree entry `{path}` has an unsupported kind ({kind})")]
    UnsupportedEntry { path: String, kind: String },
}

/// File of `<dir>` that records the git tree `<dir>/src` holds.
const SYNCED: &str = "synced-tree";
const LOCK: &str = "worktree.lock";

const MODE_EXEC: u32 = 0o100755;
const MODE_LINK: u32 = 0o120000;
const MODE_FILE: u32 = 0o100644;

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// The whole tree was written (first use, or the previous sync did not complete).
    pub full_export: bool,
    /// Files and symlinks written (created or rewritten).
    pub written: usize,
    /// Files whose only change was the executable bit.
    pub mode_changed: usize,
    pub removed: usize,
}

/// A worktree, locked exclusively for as long as this value lives.
#[derive(Debug)]
pub struct Worktree {
    root: PathBuf,
    _lock: FileLock,
}

impl Worktree {
    /// Opens (creating if needed) and locks the worktree at `root`; waits, with a notice, while
    /// another process uses it.
    pub fn open(root: &Path) -> Result<Self, KernelError> {
        std::fs::create_dir_all(root).map_err(io(format!("creating {}", root.display())))?;
        let lock_path = root.join(LOCK);
        let lock = FileLock::exclusive(&lock_path, || {
            eprintln!(
                "notice: another ktstr uses the worktree {}; waiting for it",
                root.display()
            )
        })
        .map_err(io(format!("locking {}", lock_path.display())))?;
        Ok(Self {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    /// The source tree (make's `-C`).
    pub fn src(&self) -> PathBuf {
        self.root.join("src")
    }

    /// The O= build tree.
    pub fn out(&self) -> PathBuf {
        self.root.join("out")
    }

    /// The git tree `src` holds after a completed sync; None if unknown.
    pub fn synced_tree(&self) -> Option<git2::Oid> {
        let text = std::fs::read_to_string(self.root.join(SYNCED)).ok()?;
        git2::Oid::from_str(text.trim()).ok()
    }

    /// Makes `src` hold exactly `tree` of `repo`, rewriting only what differs from the previously
    /// synced tree.
    pub fn sync(
        &self,
        repo: &git2::Repository,
        tree: git2::Oid,
    ) -> Result<SyncReport, KernelError> {
        let new = repo.find_tree(tree).map_err(git_err)?;
        let previous = self.synced_tree();
        if previous == Some(tree) && self.src().is_dir() {
            return Ok(SyncReport::default());
        }
        let old = previous.and_then(|id| repo.find_tree(id).ok());
        // From here on `src` is in flux: without the record, an interruption means a full export.
        remove_if_exists(&self.root.join(SYNCED))?;
        let report = match old {
            Some(old) if self.src().is_dir() => {
                // The diff names paths, not entries: check the entry names first.
                check_entry_names(&new, &self.src())?;
                sync_diff(repo, &old, &new, &self.src())?
            }
            _ => full_export(repo, &new, &self.src())?,
        };
        let record = self.root.join(SYNCED);
        let mut tmp = tempfile::NamedTempFile::new_in(&self.root).map_err(io(format!(
            "creating a temp file in {}",
            self.root.display()
        )))?;
        std::io::Write::write_all(&mut tmp, format!("{tree}\n").as_bytes())
            .map_err(io("writing the sync record"))?;
        tmp.persist(&record).map_err(|e| KernelError::Io {
            what: format!("writing {}", record.display()),
            source: e.error,
        })?;
        Ok(report)
    }

    /// Puts `config` into the O= tree as its `.config` unless it already is byte for byte (an
    /// untouched .config keeps make from reconfiguring). Returns whether it was written.
    pub fn install_config(&self, config: &Path) -> Result<bool, KernelError> {
        let out = self.out();
        std::fs::create_dir_all(&out).map_err(io(format!("creating {}", out.display())))?;
        let dest = out.join(".config");
        let new = std::fs::read(config).map_err(io(format!("reading {}", config.display())))?;
        if std::fs::read(&dest).is_ok_and(|old| old == new) {
            return Ok(false);
        }
        std::fs::write(&dest, new).map_err(io(format!("writing {}", dest.display())))?;
        Ok(true)
    }

    /// True when `out` holds a previous build (the next one is incremental).
    pub fn has_build(&self) -> bool {
        self.out().join("vmlinux").is_file()
    }
}

/// Syncs the worktree to an identified `git` source; returns the source tree to build.
pub(super) fn sync_source(
    wt: &Worktree,
    src: &Source,
    progress: &mut Progress,
) -> Result<PathBuf, KernelError> {
    let (repo, tree) = super::source::open_git_source(src)?;
    progress.phase(&format!(
        "sync {} to {}#{}",
        wt.src().display(),
        src.location,
        src.reference.as_deref().unwrap_or("")
    ));
    let report = wt.sync(&repo, tree)?;
    if report.full_export {
        progress.line(&format!("exported {} files", report.written));
    } else {
        progress.line(&format!(
            "{} files written, {} removed, {} chmod",
            report.written, report.removed, report.mode_changed
        ));
    }
    Ok(wt.src())
}

/// Builds the configured kernel in the worktree's O= tree and installs the cache entry under
/// `key` (the key a clean build of the same source and config gets).
pub(super) fn build(
    wt: &Worktree,
    key: &str,
    conf: Configured,
    inputs: &Inputs,
    opts: &ResolveOptions,
    progress: &mut Progress,
    started: Instant,
) -> Result<Entry, KernelError> {
    let incremental = wt.has_build();
    wt.install_config(&conf.build_dir.join(".config"))?;
    let version = conf.version.clone();
    conf.discard();
    let (src, out) = (wt.src(), wt.out());
    let site = BuildSite {
        key,
        tree: &src,
        out: &out,
        version,
        incremental,
    };
    make_and_install(&site, inputs, opts, progress, started)
}

fn git_err(e: git2::Error) -> KernelError {
    KernelError::Git(e.message().to_string())
}

fn remove_if_exists(path: &Path) -> Result<(), KernelError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io(format!("removing {}", path.display()))(e))
        }
        _ => Ok(()),
    }
}

/// `root/rel` for a repository-relative path made only of normal components.
pub fn checked_path(root: &Path, rel: &Path) -> Result<PathBuf, KernelError> {
    let normal = !rel.as_os_str().is_empty()
        && rel.components().all(|c| match c {
            Component::Normal(n) => n != ".git",
            _ => false,
        });
    if !normal {
        return Err(KernelError::Worktree(WorktreeError::UnsafePath {
            path: rel.display().to_string(),
            root: root.to_path_buf(),
        }));
    }
    Ok(root.join(rel))
}

/// One tree entry's name, if it is a single plain path component. A crafted tree can name an
/// entry `a/f` after a symlink `a -> /outside`: joined as a path it would be written through
/// the link, so such a name is refused rather than split.
fn entry_name<'t>(
    dir: &str,
    e: &'t git2::TreeEntry,
    root: &Path,
) -> Result<&'t std::ffi::OsStr, KernelError> {
    let name = e.name_bytes();
    let plain = !name.is_empty()
        && name != b"."
        && name != b".."
        && name != b".git"
        && !name.contains(&b'/')
        && !name.contains(&0);
    if !plain {
        return Err(KernelError::Worktree(WorktreeError::UnsafePath {
            path: format!("{dir}{}", String::from_utf8_lossy(name)),
            root: root.to_path_buf(),
        }));
    }
    Ok(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name))
}

/// Checks every entry name of `tree` ([`entry_name`]) without writing anything.
fn check_entry_names(tree: &git2::Tree, root: &Path) -> Result<(), KernelError> {
    let mut failure = None;
    let walked = tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
        match entry_name(dir, e, root) {
            Ok(_) => git2::TreeWalkResult::Ok,
            Err(err) => {
                failure = Some(err);
                git2::TreeWalkResult::Abort
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    walked.map_err(git_err)
}

/// Exports the whole tree into a fresh `dest` (whatever was there is removed first); every
/// path is checked to stay under `dest` ([`checked_path`]).
pub(super) fn full_export(
    repo: &git2::Repository,
    tree: &git2::Tree,
    dest: &Path,
) -> Result<SyncReport, KernelError> {
    if std::fs::symlink_metadata(dest).is_ok() {
        std::fs::remove_dir_all(dest).map_err(io(format!("removing {}", dest.display())))?;
    }
    std::fs::create_dir_all(dest).map_err(io(format!("creating {}", dest.display())))?;
    let mut report = SyncReport {
        full_export: true,
        ..Default::default()
    };
    let mut failure = None;
    let mut count = 0usize;
    let walked = tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
        count += 1;
        let res = (|| {
            if count % 4096 == 0 && crate::cancel::requested() {
                return Err(KernelError::Interrupted);
            }
            let rel = Path::new(dir).join(entry_name(dir, e, dest)?);
            let out = checked_path(dest, &rel)?;
            match e.kind() {
                // Pre-order: a directory comes before its entries, in a fresh tree.
                Some(git2::ObjectType::Tree) => {
                    std::fs::create_dir(&out).map_err(io(format!("creating {}", out.display())))
                }
                Some(git2::ObjectType::Blob) => {
                    write_entry(repo, e.id(), e.filemode() as u32, &rel, &out)?;
                    report.written += 1;
                    Ok(())
                }
                // Submodules (commits) are not part of a kernel tree.
                _ => Ok(()),
            }
        })();
        match res {
            Ok(()) => git2::TreeWalkResult::Ok,
            Err(err) => {
                failure = Some(err);
                git2::TreeWalkResult::Abort
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    walked.map_err(git_err)?;
    Ok(report)
}

/// Applies the difference between `old` and `new` to `dest` (which holds `old`).
fn sync_diff(
    repo: &git2::Repository,
    old: &git2::Tree,
    new: &git2::Tree,
    dest: &Path,
) -> Result<SyncReport, KernelError> {
    let mut opts = git2::DiffOptions::new();
    opts.include_typechange(true).ignore_submodules(true);
    let diff = repo
        .diff_tree_to_tree(Some(old), Some(new), Some(&mut opts))
        .map_err(git_err)?;
    let mut report = SyncReport::default();
    // Removals first: a directory that became a file (or the reverse) is out of the way before
    // its replacement is written.
    for delta in diff.deltas() {
        let gone = delta.old_file();
        let removed = match delta.status() {
            git2::Delta::Deleted => true,
            // A file that became a directory's worth of files shows as typechange/add pairs.
            git2::Delta::Typechange => true,
            _ => false,
        };
        if removed && let Some(p) = gone.path() {
            let target = checked_path(dest, p)?;
            remove_path(&target)?;
            if delta.status() == git2::Delta::Deleted {
                report.removed += 1;
                prune_empty_parents(dest, &target);
            }
        }
    }
    for (i, delta) in diff.deltas().enumerate() {
        if i % 1024 == 0 && crate::cancel::requested() {
            return Err(KernelError::Interrupted);
        }
        let f = delta.new_file();
        let Some(rel) = f.path() else { continue };
        let out = checked_path(dest, rel)?;
        match delta.status() {
            git2::Delta::Added | git2::Delta::Modified | git2::Delta::Typechange => {}
            _ => continue,
        }
        let mode = u32::from(f.mode());
        let old = delta.old_file();
        let only_mode = delta.status() == git2::Delta::Modified
            && old.id() == f.id()
            && mode != MODE_LINK
            && u32::from(old.mode()) != MODE_LINK;
        ensure_parent_dirs(dest, rel)?;
        if only_mode && std::fs::symlink_metadata(&out).is_ok_and(|m| m.is_file()) {
            set_mode(&out, mode)?;
            report.mode_changed += 1;
            continue;
        }
        write_entry(repo, f.id(), mode, rel, &out)?;
        report.written += 1;
    }
    Ok(report)
}

/// Removes whatever is at `path` (file, symlink or directory), never following a symlink.
fn remove_path(path: &Path) -> Result<(), KernelError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(path).map_err(io(format!("removing {}", path.display())))
        }
        Ok(_) => std::fs::remove_file(path).map_err(io(format!("removing {}", path.display()))),
        Err(_) => Ok(()),
    }
}

/// Git does not track directories: one emptied by deletions goes too.
fn prune_empty_parents(root: &Path, removed: &Path) {
    let mut dir = removed.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// Creates the directories leading to `rel` under `root` as real directories: a symlink or file
/// in their place is removed rather than followed.
fn ensure_parent_dirs(root: &Path, rel: &Path) -> Result<(), KernelError> {
    let mut dir = root.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for c in parent.components() {
        dir.push(c);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                std::fs::remove_file(&dir).map_err(io(format!("removing {}", dir.display())))?
            }
            Err(_) => {}
        }
        std::fs::create_dir(&dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    Ok(())
}

fn set_mode(path: &Path, git_mode: u32) -> Result<(), KernelError> {
    let perm = if git_mode == MODE_EXEC { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(perm))
        .map_err(io(format!("chmod {}", path.display())))
}

/// Writes a blob as a new file or symlink at `out` (replacing what was there, never writing
/// through an existing symlink).
fn write_entry(
    repo: &git2::Repository,
    id: git2::Oid,
    mode: u32,
    rel: &Path,
    out: &Path,
) -> Result<(), KernelError> {
    if !matches!(mode, MODE_FILE | MODE_EXEC | MODE_LINK) {
        return Err(KernelError::Worktree(WorktreeError::UnsupportedEntry {
            path: rel.display().to_string(),
            kind: format!("mode {mode:o}"),
        }));
    }
    let blob = repo.find_blob(id).map_err(git_err)?;
    remove_path(out)?;
    if mode == MODE_LINK {
        let target = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(blob.content());
        return std::os::unix::fs::symlink(target, out)
            .map_err(io(format!("symlink {}", out.display())));
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // create_new (O_EXCL) never follows a symlink at `out`.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if mode == MODE_EXEC { 0o755 } else { 0o644 })
        .open(out)
        .map_err(io(format!("creating {}", out.display())))?;
    f.write_all(blob.content())
        .map_err(io(format!("writing {} (disk full?)", out.display())))?;
    // The umask may have cleared bits of the requested mode.
    if mode == MODE_EXEC {
        set_mode(out, mode)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "worktree_tests.rs"]
mod tests;
