//! The scheduler cache under `paths::scheds_dir()`:
//!
//! ```text
//! store/<sha256>/<name>      binaries by content hash (what cells run and reports cite)
//! index/<key>.json           key (e.g. `cargo-scx_rusty@1.1.4`) -> store entry: a resolve that hits
//!                            it does no hashing and no build
//! locks/<key>.lock           serialises concurrent builds of one key (parallel matrix cells)
//! logs/<key>.log             build output of the last build of a key
//! cargo/<name>@<ver>/        `cargo install --root`; cargo-target/ is shared so crates share deps
//! kernel/<kernel-key>/       tools/sched_ext build output (O=) of one kernel
//! src-builds/<location>/     schedulers from source, one per repository or directory: src/ (the
//!                            synced tree of the last git ref built) and out/ (its cargo target)
//! ```
//!
//! Every file is written to a temporary name and renamed, so a crash never leaves a half entry.

use super::SchedError;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub name: String,
    pub sha256: String,
    /// `store/<sha256>/<name>`.
    pub path: PathBuf,
    /// Where it came from, for humans: `cargo install scx_rusty 1.1.4`, `linux 6.12.117 tools/sched_ext`.
    pub origin: String,
    /// Seconds the build that made this entry took, when ktstr built it from source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_s: Option<f64>,
}

pub struct Cache {
    root: PathBuf,
}

pub(crate) fn io_err(path: &Path, source: std::io::Error) -> SchedError {
    SchedError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Cache {
    pub fn new(root: PathBuf) -> Self {
        Cache { root }
    }
    pub fn at_default() -> Self {
        Cache::new(crate::paths::scheds_dir())
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn dir(&self, sub: &str) -> Result<PathBuf, SchedError> {
        let d = self.root.join(sub);
        fs::create_dir_all(&d).map_err(|e| io_err(&d, e))?;
        Ok(d)
    }
    pub fn log_path(&self, key: &str) -> Result<PathBuf, SchedError> {
        Ok(self.dir("logs")?.join(format!("{key}.log")))
    }

    /// The index entry for `key`, if it exists and its binary is still in the store.
    pub fn lookup(&self, key: &str) -> Option<Entry> {
        let text = fs::read_to_string(self.root.join("index").join(format!("{key}.json"))).ok()?;
        let entry: Entry = serde_json::from_str(&text).ok()?;
        entry.path.is_file().then_some(entry)
    }

    /// Holds an exclusive lock on `key` until the guard drops; a second process building the same
    /// scheduler waits here and then finds the index entry the first one wrote.
    pub fn lock(&self, key: &str) -> Result<crate::lock::FileLock, SchedError> {
        let p = self.dir("locks")?.join(format!("{key}.lock"));
        crate::lock::FileLock::exclusive(&p, || {
            eprintln!("notice: another ktstr is building scheduler {key}; waiting for it")
        })
        .map_err(|e| io_err(&p, e))
    }

    /// Copies `bin` into the store under its content hash and points `key` at it.
    pub fn insert(
        &self,
        key: &str,
        name: &str,
        bin: &Path,
        origin: &str,
    ) -> Result<Entry, SchedError> {
        self.insert_timed(key, name, bin, origin, None)
    }

    /// [`Cache::insert`] recording how long the build took.
    pub fn insert_timed(
        &self,
        key: &str,
        name: &str,
        bin: &Path,
        origin: &str,
        build_s: Option<f64>,
    ) -> Result<Entry, SchedError> {
        let sha = sha256_file(bin)?;
        let dir = self.dir("store")?.join(&sha);
        let dest = dir.join(name);
        if !dest.is_file() {
            fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
            // Copies a killed ktstr left (an hour untouched: nobody writes them any more).
            crate::scratch::sweep(&dir, &[&format!(".{name}.tmp")]);
            let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
            fs::copy(bin, &tmp).map_err(|e| io_err(bin, e))?;
            fs::rename(&tmp, &dest).map_err(|e| io_err(&dest, e))?;
        }
        let entry = Entry {
            name: name.to_string(),
            sha256: sha,
            path: dest,
            origin: origin.to_string(),
            build_s,
        };
        let idx = self.dir("index")?;
        crate::scratch::sweep(&idx, &[&format!(".{key}.json.tmp")]);
        let tmp = idx.join(format!(".{key}.json.tmp{}", std::process::id()));
        let json = serde_json::to_string_pretty(&entry).expect("Entry serialises");
        fs::write(&tmp, json).map_err(|e| io_err(&tmp, e))?;
        let dst = idx.join(format!("{key}.json"));
        fs::rename(&tmp, &dst).map_err(|e| io_err(&dst, e))?;
        Ok(entry)
    }
}

/// [`crate::digest::sha256_file`] with the scheduler module's error.
pub fn sha256_file(p: &Path) -> Result<String, SchedError> {
    crate::digest::sha256_file(p).map_err(|e| io_err(p, e))
}

/// Appends `line` to a build log (how long the build took, for later reading); best effort.
pub fn append_line(log: &Path, line: &str) {
    use std::io::Write;
    if let Ok(mut f) = fs::OpenOptions::new().append(true).open(log) {
        let _ = writeln!(f, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn insert_then_lookup_by_key_and_content() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path().join("scheds"));
        let bin = tmp.path().join("b");
        fs::write(&bin, b"\x7fELF pretend").unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(cache.lookup("cargo-x@1.0.0").is_none());
        let e = cache.insert("cargo-x@1.0.0", "x", &bin, "test").unwrap();
        assert_eq!(e.sha256, sha256_file(&bin).unwrap());
        assert!(e.path.ends_with(format!("store/{}/x", e.sha256)));
        assert_eq!(cache.lookup("cargo-x@1.0.0").unwrap(), e);
        // Same content under another key shares the store entry.
        let e2 = cache.insert("other", "x", &bin, "test").unwrap();
        assert_eq!(e2.path, e.path);
        // A store entry that vanished invalidates the index entry instead of returning a dead path.
        fs::remove_file(&e.path).unwrap();
        assert!(cache.lookup("cargo-x@1.0.0").is_none());
    }

    #[test]
    fn copies_a_killed_insert_left_are_removed_by_the_next_insert() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path().join("scheds"));
        let bin = tmp.path().join("b");
        fs::write(&bin, b"\x7fELF pretend").unwrap();
        let sha = sha256_file(&bin).unwrap();
        let store = tmp.path().join("scheds/store").join(&sha);
        fs::create_dir_all(&store).unwrap();
        let stale = store.join(".x.tmp4242");
        let fresh = store.join(".x.tmp4243");
        fs::write(&stale, b"half").unwrap();
        fs::write(&fresh, b"half").unwrap();
        let old = std::time::SystemTime::now() - crate::scratch::UNOWNED_GRACE * 2;
        fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        cache.insert("k", "x", &bin, "test").unwrap();
        assert!(!stale.exists(), "an hour-old partial copy stays");
        assert!(fresh.exists(), "a copy that may be in progress was removed");
    }
}
