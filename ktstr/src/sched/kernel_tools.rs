//! `kernel:scx_*`: the schedulers in a kernel's own `tools/sched_ext`, built against that kernel's
//! vmlinux BTF so they match it exactly. One `make` builds all of them; the results are cached
//! per kernel key.

use super::SchedError;
use super::cache::{Cache, Entry, append_line, io_err};
use super::spec::KERNEL_TOOLS;
use super::toolchain::{self, BuildKind};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

pub fn key(kernel_key: &str, tool: &str) -> String {
    format!("kernel-{kernel_key}-{tool}")
}

/// The binary of `tool` for the kernel identified by `kernel_key`, built from `source_tree` with
/// `vmlinux` as the BTF on a miss. The source tree is only read: the build goes to `O=` in the cache.
pub fn ensure(
    cache: &Cache,
    kernel_key: &str,
    version: &str,
    source_tree: &Path,
    vmlinux: &Path,
    tool: &str,
) -> Result<Entry, SchedError> {
    let wanted_key = key(kernel_key, tool);
    if let Some(e) = cache.lookup(&wanted_key) {
        return Ok(e);
    }
    let lock_key = format!("kernel-{kernel_key}");
    let _lock = cache.lock(&lock_key)?;
    if let Some(e) = cache.lookup(&wanted_key) {
        return Ok(e);
    }
    let makefile_dir = in_tree_dir(
        source_tree,
        "tools/sched_ext",
        vmlinux,
        version,
        &format!("kernel:{tool}"),
    )?;
    let tc = toolchain::check(BuildKind::KernelTools)?;
    let out = cache.dir("kernel")?.join(kernel_key);
    // A previous failed build may have left half-made objects; make would trust their timestamps.
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).map_err(|e| io_err(&out, e))?;
    let log = cache.log_path(&lock_key)?;
    eprintln!(
        "ktstr: building tools/sched_ext of kernel {version} (log: {})",
        log.display()
    );
    let t0 = Instant::now();
    let status = make_in_tree(&makefile_dir, &out, vmlinux, &tc.clang, KERNEL_TOOLS, &log)?;
    if !status.success() {
        return Err(SchedError::Build {
            what: format!("tools/sched_ext of kernel {version}"),
            log: log.clone(),
            tail: crate::progress::log_tail(&log, 15),
        });
    }
    let took = format!("ktstr: built tools/sched_ext in {:.1?}", t0.elapsed());
    eprintln!("{took}");
    append_line(&log, &took);
    let bin_dir = out.join("build/bin");
    let origin = format!("linux {version} tools/sched_ext ({kernel_key})");
    let mut wanted = None;
    for t in KERNEL_TOOLS {
        let bin = bin_dir.join(t);
        if !bin.is_file() {
            continue;
        }
        let e = cache.insert(&key(kernel_key, t), t, &bin, &origin)?;
        if *t == tool {
            wanted = Some(e);
        }
    }
    // The objects, libbpf and bpftool are tens of MB per kernel and never needed again.
    let _ = fs::remove_dir_all(&out);
    wanted.ok_or_else(|| SchedError::Build {
        what: format!("tools/sched_ext of kernel {version}"),
        log: log.clone(),
        tail: format!("make succeeded but built no {tool} (this tree's tools/sched_ext lacks it)"),
    })
}

/// `DIR` of a kernel's source tree, checked with the built kernel's vmlinux (its BTF) before an
/// in-tree BPF tool is built from it; `who` names what needs it in the error.
pub(super) fn in_tree_dir(
    source_tree: &Path,
    dir: &str,
    vmlinux: &Path,
    version: &str,
    who: &str,
) -> Result<std::path::PathBuf, SchedError> {
    let makefile_dir = source_tree.join(dir);
    if !makefile_dir.join("Makefile").is_file() {
        return Err(SchedError::Kernel(format!(
            "kernel {version}: {} has no {dir} ({who} ships with 6.12+)",
            source_tree.display()
        )));
    }
    if !vmlinux.is_file() {
        return Err(SchedError::Kernel(format!(
            "kernel {version}: no vmlinux at {} ({who} needs its BTF)",
            vmlinux.display()
        )));
    }
    Ok(makefile_dir)
}

/// One `make` of an in-tree BPF tool directory (tools/sched_ext, its selftests) into `out`
/// against `vmlinux`'s BTF, its output in `log`; stopped by Ctrl-C, dies with ktstr.
pub(super) fn make_in_tree(
    makefile_dir: &Path,
    out: &Path,
    vmlinux: &Path,
    clang: &str,
    targets: &[&str],
    log: &Path,
) -> Result<std::process::ExitStatus, SchedError> {
    let log_file = fs::File::create(log).map_err(|e| io_err(log, e))?;
    let log_err = log_file.try_clone().map_err(|e| io_err(log, e))?;
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    crate::cancel::run_contained(
        Command::new("make")
            .arg("-C")
            .arg(makefile_dir)
            .arg(format!("-j{jobs}"))
            .arg(format!("CLANG={clang}"))
            .arg(format!("O={}", out.display()))
            .arg(format!("VMLINUX_BTF={}", vmlinux.display()))
            .args(targets)
            // The kernel's build sets these for its own tree; inherited ones would redirect this build.
            .env_remove("KBUILD_OUTPUT")
            .env_remove("MAKEFLAGS")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err),
    )
    .map_err(|e| io_err(Path::new("make"), e))
}
