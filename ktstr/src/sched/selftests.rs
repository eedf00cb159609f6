//! The kernel's sched_ext selftests (`tools/testing/selftests/sched_ext`) for the
//! `sched-ext-selftests` scenario: built from a kernel's own tree against its vmlinux BTF, as
//! `kernel:scx_*` are, and cached per kernel key in the scheduler cache. The result is one binary,
//! `runner`: every test and its BPF program are linked into it (skeletons), and it needs only the
//! shared libraries the initramfs closure already packs.

use super::SchedError;
use super::cache::{Cache, Entry, append_line, io_err};
use super::toolchain::{self, BuildKind};
use ktstr_guest::scenario::ScenarioError;
use ktstr_guest::scenario::selftests as guest;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The runner of one kernel, and its tests as it lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct Selftests {
    pub runner: Entry,
    pub tests: Vec<String>,
}

impl Selftests {
    /// The runner's place in a cell's initramfs: (host path, guest path).
    pub fn initramfs_file(&self) -> (PathBuf, String) {
        (self.runner.path.clone(), guest::RUNNER_PATH.to_string())
    }

    /// Checks the `tests` parameter against this runner's list and gives the parameters the
    /// guest gets: `all` becomes the explicit list, so the guest's time bound counts the tests.
    pub fn guest_params(
        &self,
        params: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<std::collections::BTreeMap<String, serde_json::Value>, Box<ScenarioError>> {
        let tests = params
            .get("tests")
            .and_then(|v| v.as_str())
            .unwrap_or(guest::ALL);
        guest::check_names_exist(tests, &self.tests).map_err(Box::new)?;
        let mut out = params.clone();
        if guest::selection(tests).is_none() {
            out.insert("tests".into(), self.tests.join(",").into());
        }
        Ok(out)
    }
}

pub fn key(kernel_key: &str) -> String {
    format!("kernel-{kernel_key}-sched_ext-selftests")
}

/// The selftests of the kernel identified by `kernel_key`, built from `source_tree` with
/// `vmlinux` as the BTF on a miss. The source tree is only read: the build goes to `O=` in the
/// cache, which is removed afterwards (libbpf, bpftool and the objects are never needed again).
pub fn ensure(
    cache: &Cache,
    kernel_key: &str,
    version: &str,
    source_tree: &Path,
    vmlinux: &Path,
) -> Result<Selftests, SchedError> {
    let wanted = key(kernel_key);
    let runner = match cache.lookup(&wanted) {
        Some(e) => e,
        None => {
            let _lock = cache.lock(&wanted)?;
            match cache.lookup(&wanted) {
                Some(e) => e,
                None => build(cache, &wanted, kernel_key, version, source_tree, vmlinux)?,
            }
        }
    };
    let tests = guest::list_tests(&runner.path.to_string_lossy()).map_err(|e| {
        SchedError::Kernel(format!(
            "the sched_ext selftests runner of kernel {version} ({}): {e}",
            runner.path.display()
        ))
    })?;
    Ok(Selftests { runner, tests })
}

fn build(
    cache: &Cache,
    wanted: &str,
    kernel_key: &str,
    version: &str,
    source_tree: &Path,
    vmlinux: &Path,
) -> Result<Entry, SchedError> {
    let makefile_dir = super::kernel_tools::in_tree_dir(
        source_tree,
        "tools/testing/selftests/sched_ext",
        vmlinux,
        version,
        "the sched_ext selftests",
    )?;
    let tc = toolchain::check(BuildKind::KernelTools)?;
    // The runner links libzstd too, which the schedulers do not need.
    let zstd = Command::new("pkg-config")
        .args(["--exists", "libzstd"])
        .status()
        .is_ok_and(|s| s.success());
    if !zstd {
        return Err(SchedError::MissingPrereqs {
            what: "the sched_ext selftests",
            detail: "pkg-config cannot find libzstd".into(),
            packages: "libzstd-dev".into(),
        });
    }
    let out = cache.dir("selftests")?.join(kernel_key);
    // A previous failed build may have left half-made objects; make would trust their timestamps.
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).map_err(|e| io_err(&out, e))?;
    let log = cache.log_path(wanted)?;
    eprintln!(
        "ktstr: building the sched_ext selftests of kernel {version} (log: {})",
        log.display()
    );
    let t0 = Instant::now();
    let status =
        super::kernel_tools::make_in_tree(&makefile_dir, &out, vmlinux, &tc.clang, &[], &log)?;
    let built = out.join("runner");
    let result = if !status.success() || !built.is_file() {
        Err(SchedError::Build {
            what: format!("the sched_ext selftests of kernel {version}"),
            log: log.clone(),
            tail: crate::progress::log_tail(&log, 15),
        })
    } else {
        let took = format!(
            "ktstr: built the sched_ext selftests in {:.1?}",
            t0.elapsed()
        );
        eprintln!("{took}");
        append_line(&log, &took);
        let origin = format!("linux {version} tools/testing/selftests/sched_ext ({kernel_key})");
        cache.insert(wanted, "runner", &built, &origin)
    };
    let _ = fs::remove_dir_all(&out);
    result
}

/// The selftests of a resolved kernel, with the default cache. A kernel without sched_ext, or
/// without a source tree, is an error naming why.
pub fn for_kernel(k: &crate::kernel::ResolvedKernel) -> Result<Selftests, SchedError> {
    let facts = super::KernelFacts::of(k);
    if let Some(reason) = super::sched_ext_missing(&facts) {
        return Err(SchedError::Kernel(format!(
            "the sched_ext selftests need sched_ext: {reason}"
        )));
    }
    let vmlinux = k.vmlinux.clone().ok_or_else(|| {
        SchedError::Kernel(format!(
            "kernel {} has no vmlinux, which the sched_ext selftests need for its BTF; use a \
             source-built kernel",
            k.version
        ))
    })?;
    let key = k.key.clone().ok_or_else(|| {
        SchedError::Kernel(format!(
            "kernel {} is a prebuilt image without a source tree to build the selftests from",
            k.version
        ))
    })?;
    let tree = (facts.source_tree)().map_err(SchedError::Kernel)?;
    ensure(&Cache::at_default(), &key, &k.version, &tree, &vmlinux)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn built(tests: &[&str]) -> Selftests {
        Selftests {
            runner: Entry {
                name: "runner".into(),
                sha256: "0".into(),
                path: "/cache/store/0/runner".into(),
                origin: "test".into(),
                build_s: None,
            },
            tests: tests.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn all_becomes_the_runners_list_and_unknown_names_are_bad_input() {
        let s = built(&["create_dsq", "exit", "example"]);
        let p = s.guest_params(&BTreeMap::new()).unwrap();
        assert_eq!(p["tests"], "create_dsq,exit,example");
        let given = BTreeMap::from([("tests".to_string(), serde_json::json!("exit"))]);
        assert_eq!(s.guest_params(&given).unwrap(), given);
        let bad = BTreeMap::from([("tests".to_string(), serde_json::json!("exit,exitt"))]);
        let e = s.guest_params(&bad).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("'exitt'") && msg.contains("did you mean 'exit'"),
            "{msg}"
        );
        assert_eq!(
            s.initramfs_file(),
            (
                PathBuf::from("/cache/store/0/runner"),
                "/ktstr/selftests/runner".to_string()
            )
        );
    }

    #[test]
    fn a_tree_without_selftests_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path().join("scheds"));
        let e = ensure(&cache, "k", "6.1.1", tmp.path(), Path::new("/nonexistent")).unwrap_err();
        assert!(
            e.to_string()
                .contains("has no tools/testing/selftests/sched_ext"),
            "{e}"
        );
    }
}
