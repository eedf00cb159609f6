//! The question ktstr exists for, asked of two real kernels: is the second one worse, and where?
//!
//! Both are the same 6.12 source with the `sched_ext,steal-time` fragments; the second adds the
//! `debug` fragment (lockdep, atomic-sleep and list checks), so every lock taken on the futex and
//! wake-up paths is validated. That is a real, known slowdown (docs/benchmarks.md, "Regression
//! detection", has the figures), not an injected one.
//!
//! In a file of its own so that no other test's VM shares the host cores while it measures: the
//! matrix runs the baseline's cells before the debug kernel's, so foreign load arriving halfway
//! through would fall on one column only.

use ktstr_e2e::ktstr_bin;
use std::process::Command;

const BASELINE: &str = "6.12/sched_ext+steal-time";
const DEBUG: &str = "6.12/sched_ext+steal-time+debug";

#[test]
fn a_lockdep_kernel_is_flagged_as_a_wake_regression() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(ktstr_bin())
        .args(["matrix", "--kernels", "6.12", "--configs"])
        .arg(format!(
            "{},{}",
            BASELINE.trim_start_matches("6.12/"),
            DEBUG.trim_start_matches("6.12/")
        ))
        .args(["--scheds", "eevdf", "--scenarios", "wake"])
        .args(["--topologies", "1n1l2c1t", "--duration", "3s"])
        // 6 repeats, so that one outlying repeat (a TCG stall) cannot hide the slowdown: 6 vs 6
        // with one repeat on the wrong side of all the others still gives p = 30/924 = 0.032.
        // With 4 vs 4 only a full separation (1/70) or one swapped pair passes, which one
        // outlier can break (docs/benchmarks.md, "Regression detection").
        .args(["--repeats", "6", "--baseline", BASELINE, "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(1),
        "a regression must fail the run\n{stdout}\n{stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("report.json")).expect("report.json"),
    )
    .unwrap();
    let summary = &report["summary"];
    assert_eq!(summary["pass"], 12, "every cell ran: {summary}\n{stderr}");
    let regressions = report["regressions"].as_array().unwrap();
    let flagged = |metric: &str| {
        regressions
            .iter()
            .any(|r| r["metric"] == metric && r["column"] == DEBUG)
    };
    // Throughput (round trips) and latency, each in its own worse direction.
    assert!(flagged("total_work_units"), "{stdout}");
    assert!(flagged("wake_p50_us"), "{stdout}");
    // Only the kernel under test is ever the regressed side.
    assert!(regressions.iter().all(|r| r["column"] == DEBUG), "{stdout}");
    let line = format!("REGRESSION wake / 1n1l2c1t / wake_p50_us: eevdf @ {DEBUG} vs {BASELINE}");
    assert!(
        stdout.contains(&line) || stderr.contains(&line),
        "the terminal report names it: {line}\n{stdout}\n{stderr}"
    );
    // What differs between the columns: the debug fragment's options, from each kernel's
    // final .config kept in the run directory.
    let differ = report["provenance"]["config_diff"].as_array().unwrap();
    assert!(
        differ.iter().any(|d| d["option"] == "CONFIG_PROVE_LOCKING"),
        "{differ:?}"
    );
    assert!(
        stdout.contains("option(s) differ between columns"),
        "{stdout}"
    );
}
