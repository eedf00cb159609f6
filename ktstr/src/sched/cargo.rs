//! scx schedulers from crates.io: `cargo install NAME --version =V --locked`, once per NAME@V.

use super::SchedError;
use super::cache::{Cache, Entry, io_err};
use super::toolchain::{self, BuildKind};
use std::fs;
use std::process::{Command, Stdio};
use std::time::Instant;

pub fn key(name: &str, version: &str) -> String {
    format!("cargo-{name}@{version}")
}

/// The binary of crate `name` at `version`, installing it on a miss (minutes of `cargo install`
/// on a small host). A hit is one small JSON read.
pub fn ensure(cache: &Cache, name: &str, version: &str) -> Result<Entry, SchedError> {
    let key = key(name, version);
    if let Some(e) = cache.lookup(&key) {
        return Ok(e);
    }
    let _lock = cache.lock(&key)?;
    // Another process may have finished it while we waited for the lock.
    if let Some(e) = cache.lookup(&key) {
        return Ok(e);
    }
    let origin = format!("cargo install {name} --version ={version} --locked");
    let root = cache.dir("cargo")?.join(format!("{name}@{version}"));
    let bin = root.join("bin").join(name);
    // A finished install root (renamed into place only after cargo succeeded) is reused: it is
    // what an interrupted run leaves when it died between the install and the index write.
    if !bin.is_file() {
        let tc = toolchain::check(BuildKind::Crate)?;
        let tmp_root = cache
            .dir("cargo")?
            .join(format!(".tmp-{name}@{version}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp_root);
        let log = cache.log_path(&key)?;
        let log_file = fs::File::create(&log).map_err(|e| io_err(&log, e))?;
        let log_err = log_file.try_clone().map_err(|e| io_err(&log, e))?;
        eprintln!(
            "ktstr: building {name} {version} with cargo install (takes minutes; log: {})",
            log.display()
        );
        let t0 = Instant::now();
        // Crates compiled, against the previous install of this package (any version: their
        // dependency trees are close).
        let record = cache.dir("progress")?.join(format!("cargo-{name}.json"));
        let watch = crate::progress::log_watch::LogWatch::start(
            log.clone(),
            format!("cargo {name} {version}"),
            crate::progress::log_watch::load(&record),
        );
        let status = crate::cancel::run_contained(
            Command::new("cargo")
                .args([
                    "install",
                    name,
                    "--version",
                    &format!("={version}"),
                    "--locked",
                    "--root",
                ])
                .arg(&tmp_root)
                // One target dir for every crate: the scx crates share most of their dependency tree.
                .arg("--target-dir")
                .arg(cache.dir("cargo-target")?)
                .env("BPF_CLANG", &tc.clang)
                .env("CARGO_TERM_COLOR", "never")
                .stdin(Stdio::null())
                .stdout(log_file)
                .stderr(log_err),
        )
        .map_err(|e| io_err(std::path::Path::new("cargo"), e))?;
        let counted = watch.finish();
        if status.success() {
            crate::progress::log_watch::store(&record, counted);
        }
        if !status.success() {
            let _ = fs::remove_dir_all(&tmp_root);
            return Err(SchedError::Build {
                what: format!("{name} {version} (cargo install)"),
                log: log.clone(),
                tail: crate::progress::log_tail(&log, 15),
            });
        }
        let _ = fs::remove_dir_all(&root);
        fs::rename(&tmp_root, &root).map_err(|e| io_err(&root, e))?;
        let took = format!("ktstr: built {name} {version} in {:.0?}", t0.elapsed());
        eprintln!("{took}");
        super::cache::append_line(&log, &took);
    }
    if !bin.is_file() {
        return Err(SchedError::Build {
            what: format!("{name} {version} (cargo install)"),
            log: cache.log_path(&key)?,
            tail: format!(
                "crate {name} installed no binary named {name} in {}",
                root.display()
            ),
        });
    }
    cache.insert(&key, name, &bin, &origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A finished install root is adopted without running cargo (what a second resolve after an
    /// interrupted run, or a manual `cargo install --root`, finds).
    #[test]
    fn adopts_a_finished_install_root_without_building() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path().to_path_buf());
        let bin_dir = tmp.path().join("cargo/scx_fake@1.0.0/bin");
        fs::create_dir_all(&bin_dir).unwrap();
        fs::copy("/bin/true", bin_dir.join("scx_fake")).unwrap();
        let e = ensure(&cache, "scx_fake", "1.0.0").unwrap();
        assert_eq!(
            e.sha256,
            super::super::cache::sha256_file(std::path::Path::new("/bin/true")).unwrap()
        );
        assert_eq!(cache.lookup(&key("scx_fake", "1.0.0")).unwrap(), e);
    }
}
