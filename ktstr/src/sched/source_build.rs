//! Builds a scheduler from source (`NAME@git:REPO#REF`, `NAME@path:DIR`) with
//! `cargo build --release -p NAME`, cached by content like kernels.
//!
//! The cache key is the git tree id of the ref (or a hash of DIR's files, `target/` and `.git/`
//! left out) with the package and the toolchain's identity (rustc and the BPF clang), so a rerun
//! of the same source builds nothing. Each repository or directory has one persistent build
//! place, `src-builds/<hash of its location>/`: a git ref is synced into its `src/` writing only
//! the files that differ from the last ref built there (the kernel bisection's worktree), and
//! cargo builds into its `out/` target dir, so consecutive commits build incrementally.

use super::SchedError;
use super::cache::{Cache, Entry, io_err};
use super::from_source::{open_tree_at, skipped_dir};
use super::spec::Source;
use super::toolchain::{self, BuildKind};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

/// Where a from-source scheduler comes from, identified.
enum Origin {
    Git {
        repo: git2::Repository,
        location: String,
        tree: git2::Oid,
        commit: git2::Oid,
    },
    Tree(PathBuf),
}

/// A from-source spec with its cache key.
struct Identified {
    name: String,
    key: String,
    origin: Origin,
}

/// rustc's and the BPF clang's versions, hashed: a new toolchain is a new cache entry.
fn toolchain_identity(clang: &str) -> String {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let out = |cmd: &str, arg: &str| {
            Command::new(cmd)
                .arg(arg)
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default()
        };
        let mut h = Sha256::new();
        h.update(out("rustc", "-vV"));
        h.update(out(clang, "--version"));
        hex::encode(&h.finalize()[..6])
    })
    .clone()
}

fn identify(spec: &str, source: &Source, clang: &str) -> Result<Identified, SchedError> {
    let tc = toolchain_identity(clang);
    match source {
        Source::Git {
            name,
            repo,
            reference,
        } => {
            let (r, commit, tree) = open_tree_at(spec, repo, reference.as_deref())?;
            Ok(Identified {
                name: name.clone(),
                key: format!("git-{name}-{tree}-{tc}"),
                origin: Origin::Git {
                    repo: r,
                    location: repo.clone(),
                    tree,
                    commit,
                },
            })
        }
        Source::Tree { name, dir } => {
            let dir = std::fs::canonicalize(dir).map_err(|e| io_err(dir, e))?;
            let hash = tree_hash(&dir)?;
            Ok(Identified {
                name: name.clone(),
                key: format!("path-{name}-{}-{tc}", &hash[..16]),
                origin: Origin::Tree(dir),
            })
        }
        _ => Err(SchedError::BadSpec {
            spec: spec.to_string(),
            msg: "not a from-source scheduler".into(),
        }),
    }
}

/// The cache entry of a from-source spec if it was built before; builds nothing.
pub fn lookup(cache: &Cache, spec: &str) -> Option<Entry> {
    let parsed = super::spec::parse(spec).ok()?;
    let tc = toolchain::check(BuildKind::Crate).ok()?;
    let id = identify(spec, &parsed.source, &tc.clang).ok()?;
    cache.lookup(&id.key)
}

/// The binary of a from-source spec, built with cargo on a miss.
pub fn ensure(cache: &Cache, spec: &str, source: &Source) -> Result<Entry, SchedError> {
    let tc = toolchain::check(BuildKind::Crate)?;
    let id = identify(spec, source, &tc.clang)?;
    if let Some(e) = cache.lookup(&id.key) {
        return Ok(e);
    }
    let _lock = cache.lock(&id.key)?;
    if let Some(e) = cache.lookup(&id.key) {
        return Ok(e);
    }
    let location = match &id.origin {
        Origin::Git { location, .. } => location.clone(),
        Origin::Tree(dir) => dir.display().to_string(),
    };
    let place = cache
        .dir("src-builds")?
        .join(&crate::digest::sha256_hex(location.as_bytes())[..16]);
    let wt = crate::kernel::worktree::Worktree::open(&place)
        .map_err(|e| SchedError::Kernel(format!("scheduler build place: {e}")))?;
    let (src, origin, locked) = match &id.origin {
        Origin::Git {
            repo, tree, commit, ..
        } => {
            let report = wt
                .sync(repo, *tree)
                .map_err(|e| SchedError::Kernel(format!("syncing {location}: {e}")))?;
            if !report.full_export {
                eprintln!(
                    "ktstr: {} synced to {commit}: {} files written, {} removed",
                    wt.src().display(),
                    report.written,
                    report.removed
                );
            }
            let locked = wt.src().join("Cargo.lock").is_file();
            (wt.src(), format!("{location}#{commit}"), locked)
        }
        // A developer's tree is built where it is; its Cargo.lock may be ahead of the manifest.
        Origin::Tree(dir) => (dir.clone(), dir.display().to_string(), false),
    };
    let build = CargoBuild {
        name: &id.name,
        src: &src,
        target: &wt.out(),
        locked,
        clang: &tc.clang,
        log: &cache.log_path(&id.key)?,
    };
    let t0 = Instant::now();
    let bin = build.run(&origin)?;
    let took = t0.elapsed().as_secs_f64();
    let origin = format!("cargo build -p {} from {origin}", id.name);
    let entry = cache.insert_timed(&id.key, &id.name, &bin, &origin, Some(took))?;
    // cargo writes a Cargo.lock into a tree that had none: the tree the next resolution hashes
    // is that one, and it must find this build too.
    if let Origin::Tree(_) = &id.origin {
        let after = identify(spec, source, &tc.clang)?;
        if after.key != id.key {
            cache.insert_timed(&after.key, &id.name, &bin, &origin, Some(took))?;
        }
    }
    Ok(entry)
}

struct CargoBuild<'a> {
    name: &'a str,
    src: &'a Path,
    target: &'a Path,
    locked: bool,
    clang: &'a str,
    log: &'a Path,
}

impl CargoBuild<'_> {
    /// Runs cargo; returns the built binary.
    fn run(&self, origin: &str) -> Result<PathBuf, SchedError> {
        let name = self.name;
        let log_file = std::fs::File::create(self.log).map_err(|e| io_err(self.log, e))?;
        let log_err = log_file.try_clone().map_err(|e| io_err(self.log, e))?;
        eprintln!(
            "ktstr: building {name} from {origin} (log: {})",
            self.log.display()
        );
        let t0 = Instant::now();
        let mut cmd = Command::new("cargo");
        cmd.args(["build", "--release", "-p", name, "--target-dir"])
            .arg(self.target)
            .current_dir(self.src)
            .env("BPF_CLANG", self.clang)
            .env("CARGO_TERM_COLOR", "never")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        if self.locked {
            cmd.arg("--locked");
        }
        if std::env::var_os("KTSTR_OFFLINE").is_some_and(|v| v != "0") {
            cmd.arg("--offline");
        }
        // Contained: Ctrl-C stops the build at once, and it dies with ktstr.
        let status =
            crate::cancel::run_contained(&mut cmd).map_err(|e| io_err(Path::new("cargo"), e))?;
        let what = format!("{name} from {origin} (cargo build)");
        if !status.success() {
            return Err(SchedError::Build {
                what,
                log: self.log.to_path_buf(),
                tail: crate::progress::log_tail(self.log, 15),
            });
        }
        let took = format!("ktstr: built {name} in {:.1} s", t0.elapsed().as_secs_f64());
        eprintln!("{took}");
        super::cache::append_line(self.log, &took);
        let bin = self.target.join("release").join(name);
        if !bin.is_file() {
            return Err(SchedError::Build {
                what,
                log: self.log.to_path_buf(),
                tail: format!("package {name} built no binary named {name}"),
            });
        }
        Ok(bin)
    }
}

/// sha256 over the relative path, kind and content of every file under `dir` (sorted), leaving
/// out `target/` and `.git/` directories: what decides whether a working tree changed.
fn tree_hash(dir: &Path) -> Result<String, SchedError> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    for rel in files {
        let p = dir.join(&rel);
        let meta = std::fs::symlink_metadata(&p).map_err(|e| io_err(&p, e))?;
        h.update(rel.as_os_str().as_encoded_bytes());
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&p).map_err(|e| io_err(&p, e))?;
            h.update(b"\0link\0");
            h.update(target.as_os_str().as_encoded_bytes());
        } else {
            use std::os::unix::fs::PermissionsExt;
            let exec = meta.permissions().mode() & 0o111 != 0;
            h.update(if exec { b"\0exec\0" } else { b"\0file\0" });
            h.update(super::cache::sha256_file(&p)?.as_bytes());
        }
        h.update(b"\n");
    }
    Ok(hex::encode(h.finalize()))
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SchedError> {
    let rd = std::fs::read_dir(dir).map_err(|e| io_err(dir, e))?;
    for e in rd {
        let e = e.map_err(|e| io_err(dir, e))?;
        let ft = e.file_type().map_err(|err| io_err(&e.path(), err))?;
        if ft.is_dir() {
            if !skipped_dir(&e.file_name()) {
                collect(root, &e.path(), out)?;
            }
        } else {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap_or(&p).to_path_buf());
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "source_build_tests.rs"]
mod build_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_hash_ignores_target_and_sees_content_and_mode() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("Cargo.toml"), "[package]\nname='a'\n").unwrap();
        let h0 = tree_hash(d.path()).unwrap();
        std::fs::create_dir_all(d.path().join("target/release")).unwrap();
        std::fs::write(d.path().join("target/release/a"), "bin").unwrap();
        assert_eq!(tree_hash(d.path()).unwrap(), h0);
        std::fs::write(d.path().join("Cargo.toml"), "[package]\nname='b'\n").unwrap();
        let h1 = tree_hash(d.path()).unwrap();
        assert_ne!(h1, h0);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            d.path().join("Cargo.toml"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_ne!(tree_hash(d.path()).unwrap(), h1);
    }
}
