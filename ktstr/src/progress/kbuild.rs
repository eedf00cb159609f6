//! What a kernel build's progress is measured in: kbuild's quiet command lines (`  CC      kernel/
//! sched/core.o`, `  AR      ...`, `  LD [M]  ...`), counted as make prints them, and a record of
//! each finished build's count and duration per recipe, so the next build of that recipe (or of
//! the same series) knows how many to expect and how long they took.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether `line` is one kbuild step (an object compiled, archived, linked, a header generated):
/// two leading spaces, an upper-case tag, an optional `[M]`, then the target. make's own
/// `make[1]: Entering ...`, warnings and `Kernel: ... is ready` are not steps.
pub fn is_step(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("  ") else {
        return false;
    };
    let tag_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
        .count();
    if tag_len < 2 || !rest.as_bytes()[0].is_ascii_uppercase() {
        return false;
    }
    let after = &rest[tag_len..];
    let after = after.trim_start_matches(' ');
    let after = after.strip_prefix("[M]").unwrap_or(after).trim_start();
    // The tag must be followed by spaces and a target, not glued to more text.
    rest[tag_len..].starts_with(' ') && !after.is_empty()
}

/// `6.12` from `6.12.3` or `6.12.0-rc1`: builds of one series have similar step counts.
pub fn series(version: &str) -> String {
    version
        .split(['.', '-'])
        .take(2)
        .collect::<Vec<_>>()
        .join(".")
}

/// One finished kernel build: how many steps it printed and how long make ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub recipe: String,
    pub series: String,
    pub incremental: bool,
    pub steps: u64,
    pub seconds: f64,
    /// Elapsed seconds at each hundredth of the steps (101 points; empty in older records).
    #[serde(default)]
    pub curve: Vec<f64>,
}

impl BuildRecord {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.seconds.max(0.0))
    }
}

/// Build records, one small JSON file per recipe and kind (full or incremental): a fresh build
/// is compared with a fresh build, a bisection step's incremental make with an incremental one.
#[derive(Debug, Clone)]
pub struct History {
    dir: PathBuf,
}

impl History {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Under the kernel cache, next to the entries.
    pub fn in_cache() -> Self {
        Self::new(crate::paths::kernels_dir().join("build-history"))
    }

    fn file(&self, recipe: &str, incremental: bool) -> PathBuf {
        let safe: String = recipe
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let kind = if incremental { "incremental" } else { "full" };
        self.dir.join(format!("{safe}-{kind}.json"))
    }

    /// Records a finished build (best effort: a lost record only costs the next build its ETA).
    pub fn record(&self, rec: &BuildRecord) {
        let path = self.file(&rec.recipe, rec.incremental);
        let Ok(text) = serde_json::to_vec_pretty(rec) else {
            return;
        };
        if std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        // Write then rename: a concurrent reader sees the old or the new record, never half.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// What to expect of a build: the previous build of this recipe, else the latest of the same
    /// series and kind, else nothing (the display falls back to a spinner).
    pub fn estimate(&self, recipe: &str, series: &str, incremental: bool) -> Option<BuildRecord> {
        if let Some(r) = read(&self.file(recipe, incremental)) {
            return Some(r);
        }
        let mut same_series: Vec<(std::time::SystemTime, BuildRecord)> =
            std::fs::read_dir(&self.dir)
                .ok()?
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .filter_map(|e| {
                    let modified = e.metadata().ok()?.modified().ok()?;
                    Some((modified, read(&e.path())?))
                })
                .filter(|(_, r)| r.series == series && r.incremental == incremental)
                .collect();
        same_series.sort_by_key(|(t, _)| *t);
        same_series.pop().map(|(_, r)| r)
    }
}

fn read(path: &Path) -> Option<BuildRecord> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines captured from a real 6.12 build log (`make O=... bzImage`).
    const CAPTURED: &str = "\
make: Entering directory '/root/.cache/ktstr/sources/trees/tarball-sha256-c93391b6'
make[1]: Entering directory '/root/.cache/ktstr/kernels/builds/1b9f4d17'
  SYNC    include/config/auto.conf.cmd
  GEN     Makefile
  SYSHDR  arch/x86/include/generated/uapi/asm/unistd_32.h
  CC      scripts/mod/empty.o
  CC      kernel/bounds.s
  HOSTCC  arch/x86/tools/relocs_32.o
  AR      kernel/sched/built-in.a
  LD [M]  fs/fat/vfat.ko
WARN: resolve_btfids: unresolved symbol module
  BUILD   arch/x86/boot/bzImage
Kernel: arch/x86/boot/bzImage is ready  (#1)
make[1]: Leaving directory '/root/.cache/ktstr/kernels/builds/1b9f4d17'
make: Leaving directory '/root/.cache/ktstr/sources/trees/tarball-sha256-c93391b6'";

    #[test]
    fn counts_kbuild_steps_and_nothing_else() {
        let steps: Vec<&str> = CAPTURED.lines().filter(|l| is_step(l)).collect();
        assert_eq!(steps.len(), 9, "{steps:#?}");
        assert!(steps.iter().all(|l| l.starts_with("  ")));
        assert!(!is_step("  "));
        assert!(!is_step("  CC"));
        assert!(!is_step("  cc      foo.o"));
        assert!(!is_step("  CCfoo.o"));
        assert!(!is_step("CC      foo.o"));
        assert!(!is_step("  In file included from kernel/sched/core.c:12:"));
    }

    #[test]
    fn series_of_a_version() {
        assert_eq!(series("6.12.3"), "6.12");
        assert_eq!(series("6.13.0-rc1"), "6.13");
        assert_eq!(series("6.1"), "6.1");
    }

    fn rec(recipe: &str, series: &str, incremental: bool, steps: u64) -> BuildRecord {
        BuildRecord {
            recipe: recipe.into(),
            series: series.into(),
            incremental,
            steps,
            seconds: steps as f64 / 10.0,
            curve: Vec::new(),
        }
    }

    #[test]
    fn estimate_prefers_the_recipe_then_the_series_and_keeps_kinds_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let h = History::new(tmp.path().join("h"));
        assert_eq!(h.estimate("a", "6.12", false), None);
        h.record(&rec("a", "6.12", false, 1949));
        h.record(&rec("b", "6.12", false, 1621));
        h.record(&rec("a", "6.12", true, 31));
        assert_eq!(h.estimate("a", "6.12", false).unwrap().steps, 1949);
        assert_eq!(h.estimate("a", "6.12", true).unwrap().steps, 31);
        // Another recipe of the series: the latest full build of 6.12 (b was written after a,
        // but mtimes can tie within a second, so either full record is acceptable).
        let other = h.estimate("c", "6.12", false).unwrap();
        assert!(!other.incremental && other.series == "6.12", "{other:?}");
        // A first incremental build of another recipe takes the series' incremental record,
        // never a full build's count.
        assert_eq!(h.estimate("c", "6.12", true).unwrap().steps, 31);
        assert_eq!(h.estimate("c", "6.6", false), None);
        // A rebuild replaces the record.
        h.record(&rec("a", "6.12", false, 2000));
        assert_eq!(h.estimate("a", "6.12", false).unwrap().steps, 2000);
    }
}
