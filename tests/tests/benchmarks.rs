//! The packaged benchmarks end to end (issue 20, item 1): the host's real hackbench (rt-tests),
//! `perf bench sched pipe` (linux-perf) and stress-ng (scripts/setup.sh installs them) packed
//! into the guest with their libraries, run on the shared 6.12 sched_ext kernel under EEVDF and
//! `kernel:scx_simple`, each yielding its headline metric; a benchmark that fails or prints no
//! result failing its cell with its output; and a benchmark missing on the host refused before
//! anything is built or booted.

use ktstr_e2e::{ktstr_bin, once_more_if_tcg_int3};
use ktstr_matrix::result::{CellResult, Outcome};
use ktstr_matrix::store;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// (scenario, its headline metric).
const BENCHMARKS: [(&str, &str); 3] = [
    ("hackbench", "time_s"),
    ("perf-sched-pipe", "usecs_per_op"),
    ("stress-ng", "bogo_ops_per_s"),
];

#[test]
fn benchmarks_report_their_metrics_under_eevdf_and_scx_simple() {
    let scenarios = BENCHMARKS.map(|(s, _)| s).join(",");
    // A fresh output directory per attempt: a second run into the first one would resume it.
    let (run, out) = once_more_if_tcg_int3(
        || {
            let out = tempfile::tempdir().unwrap();
            let run = Command::new(ktstr_bin())
                .args(["matrix", "--kernels", "6.12", "--configs"])
                .args([
                    "sched_ext+steal-time",
                    "--scheds",
                    "eevdf,kernel:scx_simple",
                ])
                .args(["--scenarios", &scenarios])
                // Small fixed runs: TCG is slow, and each repeats until the 2 s end anyway.
                .args([
                    "--param",
                    "hackbench.groups=1",
                    "--param",
                    "hackbench.fds=5",
                ])
                .args(["--param", "perf-sched-pipe.loops=2000"])
                .args(["--param", "stress-ng.stressor=switch"])
                .args(["--topologies", "1n1l2c1t", "--repeats", "1"])
                .args(["--duration", "2s", "--out"])
                .arg(out.path())
                .stdin(Stdio::null())
                .output()
                .unwrap();
            (run, out)
        },
        |(run, out)| {
            let consoles = std::fs::read_dir(out.path().join("logs"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect::<String>();
            String::from_utf8_lossy(&run.stderr).into_owned() + &consoles
        },
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("plan: 6 cells"), "{stderr}");
    let loaded = store::read(&out.path().join(store::RESULTS_FILE)).expect("results.jsonl");
    assert_eq!(loaded.cells.len(), 6, "{stderr}");
    for c in &loaded.cells {
        let label = c.key.label();
        assert_eq!(
            c.result.outcome,
            Outcome::Pass,
            "{label}: {:?}\n{}",
            c.result.reason,
            c.result.console_tail
        );
        let sc = c
            .result
            .report
            .as_ref()
            .and_then(|r| r.scenario.as_ref())
            .unwrap_or_else(|| panic!("{label}: no scenario report"));
        let (_, headline) = BENCHMARKS
            .iter()
            .find(|(s, _)| *s == c.key.scenario.name)
            .unwrap();
        let v = sc.metrics.get(*headline).copied();
        assert!(
            v.is_some_and(|v| v.is_finite() && v > 0.0),
            "{label}: {headline} = {v:?} in {:?}",
            sc.metrics
        );
        for name in sc.metrics.keys() {
            assert!(
                ktstr_guest::scenario::metric_info(&c.key.scenario.name, name).is_some(),
                "{label}: metric {name} is not in the catalogue"
            );
        }
        if c.key.sched == "kernel:scx_simple" {
            let sched = c.result.report.as_ref().and_then(|r| r.scheduler.as_ref());
            assert!(sched.is_some_and(|s| s.attached), "{label}: {sched:?}");
        }
    }
    assert_eq!(run.status.code(), Some(0), "{stderr}");
}

/// `ktstr ARGS` with a `PATH` holding no benchmark (nothing is uninstalled).
fn with_empty_path(args: &[&str]) -> (Output, Duration) {
    let empty = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let out = Command::new(ktstr_bin())
        .args(args)
        .env("PATH", empty.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out, t.elapsed())
}

#[test]
fn a_benchmark_missing_on_the_host_exits_2_before_boot_naming_the_package() {
    // run, matrix and bisect all validate through the same check.
    // A kernel no test builds: resolving it would start a build, so a refusal within seconds
    // shows the check ran before anything was built or booted.
    let unbuilt = ["--kernel", "6.12", "--config", "preempt-full,debug"];
    let run: Vec<&str> = ["run"]
        .into_iter()
        .chain(unbuilt)
        .chain(["--scenario", "hackbench", "--duration", "2s"])
        .collect();
    let (out, took) = with_empty_path(&run);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("apt-get install rt-tests"), "{stderr}");
    assert!(stderr.contains("hackbench"), "{stderr}");
    assert!(took < Duration::from_secs(10), "{took:?}: {stderr}");

    let dir = tempfile::tempdir().unwrap();
    let matrix_out = dir.path().join("m");
    let (out, took) = with_empty_path(&[
        "matrix",
        "--kernels",
        "6.12",
        "--configs",
        "preempt-full+debug",
        "--scenarios",
        "perf-sched-messaging,stress-ng",
        "--out",
        matrix_out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("apt-get install linux-perf"), "{stderr}");
    assert!(stderr.contains("apt-get install stress-ng"), "{stderr}");
    assert!(took < Duration::from_secs(10), "{took:?}: {stderr}");
    assert!(
        !matrix_out.exists(),
        "nothing may be written before the refusal"
    );

    // A bisection validates before it reads any history (the repository need not exist).
    let bisect_out = dir.path().join("b");
    let (out, took) = with_empty_path(&[
        "bisect",
        "--good",
        "git:/nonexistent/linux#v1",
        "--bad",
        "git:/nonexistent/linux#v2",
        "--config",
        "sched_ext",
        "--scenario",
        "perf-sched-pipe",
        "--metric",
        "usecs_per_op",
        "--out",
        bisect_out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("apt-get install linux-perf"), "{stderr}");
    assert!(took < Duration::from_secs(10), "{took:?}: {stderr}");
    assert!(!bisect_out.exists());
}

/// `ktstr run` of `hackbench` on the sched_ext kernel with `script` brought in as the guest's
/// `/usr/bin/hackbench` (an `-i` file at a benchmark's guest path replaces the host's).
fn run_with_fake_hackbench(script: &str) -> (Option<i32>, CellResult) {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("hackbench");
    std::fs::write(&fake, script).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let json = dir.path().join("r.json");
    let include = format!("{}:/usr/bin/hackbench", fake.display());
    let mut args = vec!["run"];
    args.extend(ktstr_e2e::sched_ext_kernel_args());
    args.extend([
        "--scenario",
        "hackbench",
        "--duration",
        "2s",
        "-i",
        &include,
    ]);
    args.extend(["--topology", "1n1l2c1t", "--json", json.to_str().unwrap()]);
    let out = ktstr_e2e::ktstr(&args);
    let text = std::fs::read_to_string(&json).expect("result JSON");
    (out.status.code(), serde_json::from_str(&text).unwrap())
}

#[test]
fn a_benchmark_that_fails_or_prints_no_result_fails_the_cell_with_its_output() {
    let (code, r) = run_with_fake_hackbench("#!/bin/sh\necho 'all done, no figures today'\n");
    assert_eq!(code, Some(1));
    assert_eq!(r.outcome, Outcome::Fail, "{r:#?}");
    let reason = r.reason.clone().unwrap_or_default();
    assert!(reason.contains("printed no result"), "{reason}");
    assert!(reason.contains("all done, no figures today"), "{reason}");
    let sc = r.report.as_ref().and_then(|g| g.scenario.as_ref()).unwrap();
    assert!(!sc.metrics.contains_key("time_s"), "{:?}", sc.metrics);
    assert!(
        sc.checks
            .iter()
            .any(|c| c.metric == "workload" && !c.passed)
    );

    let (code, r) = run_with_fake_hackbench("#!/bin/sh\necho 'Time: 0.5'\necho oops >&2\nexit 3\n");
    assert_eq!(code, Some(1));
    assert_eq!(r.outcome, Outcome::Fail, "{r:#?}");
    let reason = r.reason.unwrap_or_default();
    assert!(reason.contains("exited with status 3"), "{reason}");
    assert!(reason.contains("oops"), "{reason}");
}
