//! The scenario catalogue in a real guest (Debian's prebuilt 6.12 cloud kernel, QEMU): the
//! cgroup scenarios, which the host's unit tests cannot cover (they need a writable cgroup v2 with
//! the cpuset controller, which the agent sets up as PID 1), `wake` over a futex, and bad
//! parameters refused before any boot.

use ktstr_e2e as e2e;
use ktstr_guest::protocol::ScenarioReport;
use ktstr_matrix::result::CellResult;

fn run(scenario: &str, params: &[&str]) -> (CellResult, ScenarioReport) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let mut args = vec![
        "run",
        e2e::debian_kernel_args()[0],
        e2e::debian_kernel_args()[1],
        "--topology",
        "1n1l2c1t",
        "--scenario",
        scenario,
        "--duration",
        "2s",
        "--json",
        json.to_str().unwrap(),
    ];
    for p in params {
        args.extend(["--param", p]);
    }
    e2e::ktstr(&args);
    let text = std::fs::read_to_string(&json).expect("result JSON");
    let r: CellResult = serde_json::from_str(&text).expect("CellResult JSON");
    let sc = r
        .report
        .as_ref()
        .and_then(|g| g.scenario.clone())
        .unwrap_or_else(|| panic!("no scenario report: {r:#?}"));
    assert_described(scenario, &sc);
    (r, sc)
}

/// Every metric the guest emitted is in the scenario catalogue, which is all the report judges
/// metrics by (the cgroup scenarios only run in a guest, so this is where theirs are checked).
fn assert_described(scenario: &str, sc: &ScenarioReport) {
    let extras = sc.workers.iter().flat_map(|w| w.extra.keys());
    for name in sc.metrics.keys().chain(extras) {
        assert!(
            ktstr_guest::scenario::metric_info(scenario, name).is_some(),
            "{scenario}: metric {name} is not in the scenario catalogue"
        );
    }
}

fn assert_everyone_progressed(sc: &ScenarioReport) {
    assert!(!sc.workers.is_empty());
    for w in &sc.workers {
        assert!(w.work_units > 0, "worker {} starved: {sc:#?}", w.id);
    }
    let failed: Vec<_> = sc.checks.iter().filter(|c| !c.passed).collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
}

#[test]
fn steady_moves_workers_into_cgroups() {
    let (_, sc) = run("steady", &["cgroups=2", "workers=4"]);
    assert_everyone_progressed(&sc);
    let groups: Vec<&str> = sc.workers.iter().map(|w| w.group.as_str()).collect();
    assert_eq!(groups, ["cg0", "cg1", "cg0", "cg1"]);
    assert!(sc.metrics.contains_key("cgroup_spread"), "{:?}", sc.metrics);
}

#[test]
fn cpuset_workers_stay_on_their_cpus() {
    let (_, sc) = run("cpuset", &["groups=2", "workers_per_group=2"]);
    assert_everyone_progressed(&sc);
    assert_eq!(sc.metrics["isolation_violations"], 0.0);
    // Two sets of one CPU each: a worker seen on a second CPU would have escaped its set.
    for w in &sc.workers {
        assert_eq!(w.extra["cpus_seen"], 1.0, "{w:?}");
        assert_eq!(w.extra["isolation_violations"], 0.0, "{w:?}");
    }
    let check = sc
        .checks
        .iter()
        .find(|c| c.metric == "isolation_violations")
        .expect("isolation check");
    assert!(check.passed, "{check:?}");
}

/// The futex variant of `wake` in a real guest: the peers wake each other (not the 50 ms
/// FUTEX_WAIT slice, which would cap a worker at ~40 samples in 2 s).
#[test]
fn wake_over_a_futex_wakes_the_peer() {
    let (_, sc) = run("wake", &["pairs=1", "mechanism=futex"]);
    assert_everyone_progressed(&sc);
    let m = &sc.metrics;
    let (p50, p99, max) = (m["wake_p50_us"], m["wake_p99_us"], m["wake_max_us"]);
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{p50} {p99} {max}");
    for w in &sc.workers {
        assert!(w.extra["wake_samples"] > 100.0, "{w:?}");
    }
}

#[test]
fn out_of_range_param_is_refused_before_boot() {
    // `ktstr run` on the Debian image with one scenario parameter: it must exit 2 before boot.
    let refused = |param: &str| {
        let out = e2e::ktstr(&[
            "run",
            e2e::debian_kernel_args()[0],
            e2e::debian_kernel_args()[1],
            "--scenario",
            "wake",
            "--param",
            param,
        ]);
        assert_eq!(out.status.code(), Some(2), "{param}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused("pairs=100000");
    assert!(err.contains("pairs") && err.contains("1..=256"), "{err}");
    let err = refused("mechanism=futx");
    assert!(err.contains("did you mean 'futex'"), "{err}");
}

#[test]
fn unwritable_json_path_is_refused_before_boot() {
    let out = e2e::ktstr(&[
        "run",
        e2e::debian_kernel_args()[0],
        e2e::debian_kernel_args()[1],
        "--json",
        "/nonexistent-ktstr-dir/result.json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--json /nonexistent-ktstr-dir/result.json"),
        "{err}"
    );
    // Refused before the backend was chosen: nothing was booted.
    assert!(!err.contains("ktstr: backend "), "{err}");
}
