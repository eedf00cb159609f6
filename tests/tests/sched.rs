//! Schedulers end to end through `ktstr run`: specs resolve to real binaries (the kernel's own
//! tools/sched_ext, scx_rusty and scx_bpfland from crates.io), they attach in a real 6.12 sched_ext kernel under
//! a real VM, a scheduler that errors is reported with the kernel's reason, EEVDF baselines run on
//! kernels without sched_ext, and bad specs are refused (exit 2) before any build or boot.
//!
//! The sched_ext kernel and the schedulers come from the normal cache, so a CI run builds each
//! once (one cold kernel build shared with the other e2e tests; scx_rusty 1.1.4: ~5 min once,
//! scx_bpfland 1.1.4 longer: see docs/schedulers.md).

use ktstr_e2e as e2e;
use ktstr_guest::protocol::SchedulerEnding;
use ktstr_matrix::result::{CellResult, Outcome};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A kernel no test builds: resolving it would start a multi-minute build, so a bad-input test
/// that finishes in seconds proves the check ran first.
const UNBUILT_KERNEL: [&str; 4] = ["--kernel", "6.12", "--config", "preempt-full,debug"];

/// tinyconfig + base of linux-source-6.1: predates sched_ext (cold build ~5 min of CPU on 2 cores).
fn linux_6_1_kernel_args() -> Vec<&'static str> {
    vec!["--kernel", "6.1"]
}

/// One `ktstr run`: exit code, the JSON result (when one was written) and stderr.
struct Run {
    code: i32,
    result: Option<CellResult>,
    stderr: String,
}

/// Scenarios run 3 s (CI budget); a test that needs longer passes its own `--duration`.
fn ktstr_run(kernel: &[&str], sched: &str, scenario: &str, extra: &[&str]) -> Run {
    ktstr_run_env(kernel, sched, scenario, extra, &[])
}

fn ktstr_run_env(
    kernel: &[&str],
    sched: &str,
    scenario: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let duration = if extra.contains(&"--duration") {
        &[][..]
    } else {
        &["--duration", "3s"][..]
    };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("result.json");
    let mut cmd = Command::new(e2e::ktstr_bin());
    cmd.arg("run")
        .args(kernel)
        .args(["--sched", sched, "--scenario", scenario])
        .args(duration)
        .args(["--topology", "1n1l2c1t", "--json"])
        .arg(&json)
        .args(extra)
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    let out = cmd.output().expect("ktstr runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let result = std::fs::read(&json)
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("--json writes a CellResult"));
    eprintln!(
        "$ ktstr run ... --sched {sched} --scenario {scenario} -> {:?}\n{}{stderr}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    );
    Run {
        code: out.status.code().unwrap_or(-1),
        result,
        stderr,
    }
}

fn sched_report(r: &Run) -> &ktstr_guest::protocol::SchedulerReport {
    let res = r
        .result
        .as_ref()
        .unwrap_or_else(|| panic!("no result; stderr:\n{}", r.stderr));
    res.report
        .as_ref()
        .and_then(|g| g.scheduler.as_ref())
        .unwrap_or_else(|| panic!("no scheduler report in {res:#?}"))
}

fn assert_pass(r: &Run) {
    let res = r
        .result
        .as_ref()
        .unwrap_or_else(|| panic!("no result; stderr:\n{}", r.stderr));
    if let Some(s) = res.report.as_ref().and_then(|g| g.scheduler.as_ref()) {
        eprintln!(
            "{} attach: {:?} ms, ending {:?}",
            s.name, s.attach_ms, s.ending
        );
    }
    assert_eq!(
        res.outcome,
        Outcome::Pass,
        "reason: {:?}\nconsole:\n{}",
        res.reason,
        res.console_tail
    );
    assert_eq!(r.code, 0);
}

#[test]
fn kernel_scx_simple_attaches_and_steady_passes() {
    let r = ktstr_run(
        &e2e::sched_ext_kernel_args(),
        "kernel:scx_simple",
        "steady",
        &[],
    );
    assert_pass(&r);
    let s = sched_report(&r);
    assert!(s.attached);
    assert_eq!(
        s.ops.as_deref(),
        Some("simple"),
        "root/ops names the scheduler"
    );
    assert_eq!(s.ending, SchedulerEnding::StillAttached);
}

/// A scheduler from crates.io on the sched_ext kernel: the cell passes, the scheduler attached
/// under its own versioned ops name (`<ops_prefix>_1.1.4_…`) and is still attached at the end.
fn assert_crates_scheduler_runs(spec: &str, scenario: &str, ops_prefix: &str) {
    let r = ktstr_run(&e2e::sched_ext_kernel_args(), spec, scenario, &[]);
    assert_pass(&r);
    let s = sched_report(&r);
    assert!(s.attached, "{spec} {scenario}");
    assert!(
        s.ops.as_deref().is_some_and(|o| o.starts_with(ops_prefix)),
        "{:?}",
        s.ops
    );
    assert_eq!(
        s.ending,
        SchedulerEnding::StillAttached,
        "{spec} {scenario}"
    );
}

#[test]
fn scx_rusty_from_crates_io_attaches_and_passes_steady_and_wake() {
    for scenario in ["steady", "wake"] {
        assert_crates_scheduler_runs("scx_rusty@1.1.4", scenario, "rusty");
    }
}

/// scx_bpfland resolves the per-CPU kernel variable `sd_llc_id` through kallsyms, so it loads
/// only on a kernel with data symbols there (`CONFIG_KALLSYMS_ALL`, in the `sched_ext`
/// fragment); before that it failed with ENOENT.
#[test]
fn scx_bpfland_from_crates_io_attaches_and_passes_steady() {
    assert_crates_scheduler_runs("scx_bpfland@1.1.4", "steady", "bpfland");
}

/// scx_qmap's `-e COUNT` calls scx_bpf_error() after COUNT enqueues: the kernel disables the
/// scheduler and the cell must say so, with the kernel's own words as evidence.
#[test]
fn a_scheduler_that_errors_is_reported_with_the_kernels_reason() {
    let r = ktstr_run(
        &e2e::sched_ext_kernel_args(),
        "kernel:scx_qmap:-e 100",
        "steady",
        &[],
    );
    let res = r
        .result
        .as_ref()
        .unwrap_or_else(|| panic!("no result; stderr:\n{}", r.stderr));
    assert_eq!(res.outcome, Outcome::Fail, "{res:#?}");
    assert_ne!(r.code, 0);
    let s = sched_report(&r);
    match &s.ending {
        SchedulerEnding::Ejected { reason } | SchedulerEnding::Exited { reason, .. } => {
            assert!(
                reason.contains("scx_bpf_error") || reason.contains("test triggering error"),
                "the kernel's reason is the evidence: {reason}"
            );
        }
        other => panic!("expected an ejection, got {other:?}"),
    }
    let why = res.reason.as_deref().unwrap_or_default();
    assert!(
        why.contains("scx_bpf_error") || why.contains("triggering error") || why.contains("qmap"),
        "{why}"
    );
}

/// `-t 2` stalls every second user thread: the sched_ext watchdog (qmap sets a 5 s timeout)
/// ejects it with "runnable task stall".
#[test]
fn a_stalling_scheduler_is_ejected_by_the_watchdog() {
    let r = ktstr_run(
        &e2e::sched_ext_kernel_args(),
        "kernel:scx_qmap:-t 2",
        "steady",
        &["--duration", "9s"],
    );
    let res = r
        .result
        .as_ref()
        .unwrap_or_else(|| panic!("no result; stderr:\n{}", r.stderr));
    assert_ne!(res.outcome, Outcome::Pass, "{res:#?}");
    let s = sched_report(&r);
    let reason = match &s.ending {
        SchedulerEnding::Ejected { reason } | SchedulerEnding::Exited { reason, .. } => reason,
        other => panic!("expected an ejection, got {other:?}"),
    };
    assert!(reason.contains("stall"), "{reason}");
}

#[test]
fn eevdf_runs_on_a_kernel_without_sched_ext_and_sched_ext_cells_are_skipped() {
    for kernel in [e2e::debian_kernel_args(), linux_6_1_kernel_args()] {
        let r = ktstr_run(&kernel, "eevdf", "steady", &[]);
        assert_pass(&r);
        let g = r.result.as_ref().unwrap().report.as_ref().unwrap();
        assert!(!g.kernel.sched_ext, "{kernel:?} has no sched_ext");
        assert!(g.scheduler.is_none());

        let r = ktstr_run(&kernel, "kernel:scx_simple", "steady", &[]);
        let res = r
            .result
            .as_ref()
            .unwrap_or_else(|| panic!("no result; stderr:\n{}", r.stderr));
        assert_eq!(res.outcome, Outcome::Skipped, "{res:#?}");
        let why = res.reason.as_deref().unwrap_or_default();
        assert!(
            why.contains("sched_ext") || why.contains("SCHED_CLASS_EXT"),
            "{why}"
        );
    }
}

/// Each bad spec: exit 2 and one line naming the spec, within seconds, although the kernel named
/// is not built yet (it would take minutes): nothing expensive ran first.
#[test]
fn bad_scheduler_specs_exit_2_before_any_build() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("sched.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let script_s = script.to_str().unwrap().to_string();
    let cases: [(&str, &str); 6] = [
        ("scx_rustyy", "did you mean scx_rusty"),
        ("kernel:scx_simpel", "did you mean kernel:scx_simple"),
        (&script_s, "not"),
        ("./no/such/sched", "no/such/sched"),
        ("scx_rusty@1.1.4:--x \"unbalanced", "quote"),
        ("eevdf:-v", "takes no arguments"),
    ];
    let unbuilt = UNBUILT_KERNEL;
    for (spec, needle) in cases {
        let t0 = Instant::now();
        let r = ktstr_run(&unbuilt, spec, "steady", &[]);
        assert_eq!(r.code, 2, "{spec}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{spec}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{spec} took {:?}",
            t0.elapsed()
        );
        assert!(r.result.is_none());
    }
}

#[test]
fn out_of_range_scenario_parameters_exit_2_before_any_build() {
    let r = ktstr_run(
        &UNBUILT_KERNEL,
        "kernel:scx_simple",
        "steady",
        &["--param", "cgroups=1000"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("cgroups"), "{}", r.stderr);
}

/// A crate that must be built: a missing compiler is named with the Debian package to install
/// (exit 2) before cargo starts, and a failing `cargo install` is an error quoting cargo's own
/// words and the log path (exit 1). Neither boots a VM.
#[test]
fn scheduler_build_problems_are_reported_before_any_boot() {
    let kernel = e2e::sched_ext_kernel_args();
    let spec = "cargo:scx_ktstr_no_such_crate@0.1.0";
    let r = ktstr_run_env(
        &kernel,
        spec,
        "steady",
        &[],
        &[("BPF_CLANG", "/nonexistent/clang")],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("apt-get install clang-19"),
        "{}",
        r.stderr
    );
    assert!(r.result.is_none());

    // Offline, so the test never asks the registry about a name that does not exist.
    let r = ktstr_run_env(
        &kernel,
        spec,
        "steady",
        &[],
        &[("CARGO_NET_OFFLINE", "true")],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("scx_ktstr_no_such_crate 0.1.0 (cargo install) failed"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("could not find `scx_ktstr_no_such_crate`"),
        "cargo's own words: {}",
        r.stderr
    );
    assert!(r.result.is_none(), "no VM was started");
}
