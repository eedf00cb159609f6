//! The kernel's own sched_ext selftests as the `sched-ext-selftests` scenario, on the shared 6.12
//! sched_ext kernel: every test the runner has is reported as a sub-result, the report lists them
//! per kernel, and bad input (an unknown test name, a scheduler of ktstr's) exits 2 before a boot.

use ktstr_e2e as e2e;
use ktstr_guest::protocol::SubStatus;
use ktstr_matrix::result::{CellResult, Outcome};

const SCENARIO: &str = "sched-ext-selftests";

fn run_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run"];
    args.extend(e2e::sched_ext_kernel_args());
    args.extend(["--topology", "1n1l2c1t", "--scenario", SCENARIO]);
    args.extend(extra);
    args
}

/// The test names the built runner lists itself (`-s` prints every test a `-t` filter leaves
/// out as skipped; no name contains this filter), read with a parse of its own.
fn runner_list() -> Vec<String> {
    let configs = vec!["sched_ext".to_string(), "steal-time".to_string()];
    let k = ktstr::kernel::resolve("6.12", &configs, &Default::default()).expect("6.12 kernel");
    let st = ktstr::sched::selftests::for_kernel(&k).expect("the selftests of 6.12");
    let out = std::process::Command::new(&st.runner.path)
        .args(["-s", "-q", "-t", "no test is called this"])
        .output()
        .expect("running the selftests runner on the host to list its tests");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("ok "))
        .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
        .collect()
}

#[test]
fn every_selftest_is_a_sub_result() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let out = e2e::ktstr(&run_args(&["--json", json.to_str().unwrap()]));
    let r: CellResult =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("result JSON")).unwrap();
    let sc = r
        .report
        .as_ref()
        .and_then(|g| g.scenario.clone())
        .unwrap_or_else(|| panic!("no scenario report: {r:#?}"));
    let reported: Vec<&str> = sc.subtests.iter().map(|t| t.name.as_str()).collect();
    let listed = runner_list();
    assert!(listed.len() >= 10, "the runner listed {listed:?}");
    assert_eq!(reported, listed, "every test of the runner, in its order");
    let passed = sc
        .subtests
        .iter()
        .filter(|t| t.status == SubStatus::Ok)
        .count();
    assert!(
        passed * 4 >= listed.len() * 3,
        "most selftests pass on 6.12: {:#?}",
        sc.subtests
    );
    for t in &sc.subtests {
        // A test that did not pass carries the runner's output as evidence.
        assert!(t.status == SubStatus::Ok || !t.output.is_empty(), "{t:?}");
    }
    assert_eq!(sc.metrics["selftests_passed"], passed as f64);
    assert_eq!(sc.metrics["selftests_run"], listed.len() as f64);
    // The cell fails exactly when a selftest failed (its own sched_ext errors do not count).
    let failed = sc.metrics["selftests_failed"];
    assert_eq!(r.outcome == Outcome::Pass, failed == 0.0, "{:?}", r.reason);
    assert_eq!(out.status.code(), Some(if failed == 0.0 { 0 } else { 1 }));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains(&format!("{passed} ok")), "{table}");
}

#[test]
fn a_selftest_past_its_timeout_fails_the_cell_with_its_name_and_output() {
    // `example` checks only the runner itself; `init_enable_count` forks and attaches several
    // times, far past one second under TCG, so it is killed at its timeout.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let out = e2e::ktstr(&run_args(&[
        "--param",
        "tests=example,init_enable_count",
        "--param",
        "timeout_s=1",
        "--json",
        json.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(1));
    let r: CellResult =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("result JSON")).unwrap();
    assert_eq!(r.outcome, Outcome::Fail, "{r:#?}");
    let reason = r.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("selftests_failed") && reason.contains("init_enable_count"),
        "{reason}"
    );
    let sc = r.report.unwrap().scenario.unwrap();
    let got: Vec<(&str, SubStatus)> = sc
        .subtests
        .iter()
        .map(|t| (t.name.as_str(), t.status))
        .collect();
    assert_eq!(
        got,
        [
            ("example", SubStatus::Ok),
            ("init_enable_count", SubStatus::Fail)
        ]
    );
    let killed = &sc.subtests[1];
    assert!(killed.output.contains("killed after 1 s"), "{killed:?}");
    assert!(killed.duration_ms < 10_000, "{killed:?}");
}

#[test]
fn an_unknown_selftest_or_a_scheduler_exits_2_before_booting() {
    let out = e2e::ktstr(&run_args(&["--param", "tests=exit,no_such_selftest"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("'no_such_selftest'") && err.contains("create_dsq"),
        "the message names the input and the known tests: {err}"
    );
    assert!(!err.contains("ktstr: backend"), "nothing booted: {err}");
    let out = e2e::ktstr(&run_args(&["--sched", "kernel:scx_simple"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--sched kernel:scx_simple"), "{err}");
}

#[test]
fn the_matrix_report_lists_the_tests_per_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("m");
    let out = e2e::ktstr(&[
        "matrix",
        "--kernels",
        "6.12",
        "--configs",
        "sched_ext+steal-time",
        "--scheds",
        "eevdf,kernel:scx_simple",
        "--scenarios",
        SCENARIO,
        "--param",
        "sched-ext-selftests.tests=minimal,exit",
        "--topologies",
        "1n1l2c1t",
        "--repeats",
        "1",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let md = std::fs::read_to_string(out_dir.join("report.md")).expect("report.md");
    assert!(md.contains("## Test suites"), "{md}");
    for t in ["minimal", "exit"] {
        assert!(
            md.lines()
                .any(|l| l.starts_with(&format!("| {t} | ")) && !l.contains(" - |")),
            "{t} has a verdict for the kernel: {md}"
        );
    }
    // ktstr's own scheduler is not attached under the selftests: that cell is skipped, named so.
    assert!(md.contains("runs under eevdf only"), "{md}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    let suites = report["suites"].as_array().expect("suites in report.json");
    assert_eq!(suites.len(), 1, "{suites:?}");
    assert_eq!(suites[0]["columns"][0], "6.12/sched_ext+steal-time");
    assert_eq!(suites[0]["rows"].as_array().unwrap().len(), 2);
    assert!(out.status.code().is_some_and(|c| c <= 1), "{out:?}");
}
