//! The `command` scenario in a real guest (the shared 6.12 sched_ext kernel): a C program built
//! here, brought in with `-i` (dynamically linked: `-i` packs its libraries), run as two instances
//! pinned one per LLC; its JSON and `key=value` metrics arrive with the user's direction. Bad
//! input (a binary not brought in, a bad pattern) exits 2 before anything boots.

use ktstr_e2e as e2e;
use ktstr_guest::scenario::{MetricDirection, metric_info_with};
use ktstr_matrix::result::{CellResult, Outcome};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Spins for 300 ms, then prints its rate as JSON and its elapsed time, CPU and cgroup (the N of
/// a `.../cmdN` cgroup, else -1) as `key=value` lines; with an argument it prints nothing and
/// exits with that status.
const PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
int main(int argc, char **argv) {
    if (argc > 1) return atoi(argv[1]);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    volatile unsigned long n = 0;
    double ms;
    do {
        for (int i = 0; i < 100000; i++) n++;
        clock_gettime(CLOCK_MONOTONIC, &b);
        ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
    } while (ms < 300);
    printf("{\"iterations_per_s\": %.1f, \"nested\": {\"answer\": 42}}\n", n / ms * 1e3);
    printf("elapsed_ms=%.1f\ncpu=%d\n", ms, sched_getcpu());
    int cg = -1;
    char line[512];
    FILE *f = fopen("/proc/self/cgroup", "r");
    while (f && fgets(line, sizeof line, f)) {
        char *p = strstr(line, "/cmd");
        if (p) cg = atoi(p + 4);
    }
    if (f) fclose(f);
    printf("cgroup_index=%d\n", cg);
    return 0;
}
"#;

fn build_program(dir: &Path) -> PathBuf {
    let src = dir.join("spin.c");
    std::fs::write(&src, PROGRAM).unwrap();
    let bin = dir.join("spin");
    let st = std::process::Command::new("cc")
        .args(["-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("running cc");
    assert!(st.success(), "cc failed");
    bin
}

fn run_command(
    dir: &Path,
    sched: Option<&str>,
    topology: &str,
    params: &[&str],
) -> (std::process::Output, PathBuf) {
    let bin = build_program(dir);
    let json = dir.join("r.json");
    let include = bin.to_str().unwrap().to_string();
    let mut args: Vec<&str> = vec!["run"];
    args.extend(e2e::sched_ext_kernel_args());
    if let Some(s) = sched {
        args.extend(["--sched", s]);
    }
    args.extend([
        "--topology",
        topology,
        "--scenario",
        "command",
        "--duration",
        "5s",
        "-i",
        &include,
        "--json",
        json.to_str().unwrap(),
        "--param",
        "binary=spin",
    ]);
    for p in params {
        args.extend(["--param", p]);
    }
    (e2e::ktstr(&args), json)
}

fn result(json: &Path) -> CellResult {
    let text = std::fs::read_to_string(json).expect("result JSON");
    serde_json::from_str(&text).expect("CellResult JSON")
}

#[test]
fn two_instances_report_their_metrics_with_the_users_direction() {
    let dir = tempfile::tempdir().unwrap();
    let params = [
        "instances=2",
        "placement=llc",
        "direction.iterations_per_s=higher",
        "direction.elapsed_ms=lower",
        "unit.elapsed_ms=ms",
    ];
    let (out, json) = run_command(dir.path(), Some("kernel:scx_simple"), "1n2l1c1t", &params);
    let r = result(&json);
    assert_eq!(r.outcome, Outcome::Pass, "{r:#?}");
    assert_eq!(out.status.code(), Some(0));
    let sc = r.report.unwrap().scenario.unwrap();
    assert_eq!(sc.workers.len(), 2);
    for w in &sc.workers {
        assert_eq!(w.extra["exit_code"], 0.0, "{w:?}");
        assert_eq!(w.extra["nested.answer"], 42.0, "{w:?}");
        // 300 ms of spinning, measured by the program on the guest's clock.
        let ms = w.extra["elapsed_ms"];
        assert!((300.0..5000.0).contains(&ms), "{w:?}");
        assert!(w.extra["iterations_per_s"] > 1e5, "{w:?}");
        assert!(w.cpu_time_ms > 100.0, "{w:?}");
    }
    // One instance per LLC: each ran on its own LLC's only CPU.
    let mut cpus: Vec<f64> = sc.workers.iter().map(|w| w.extra["cpu"]).collect();
    cpus.sort_by(f64::total_cmp);
    assert_eq!(cpus, [0.0, 1.0], "{:?}", sc.workers);
    let groups: Vec<&str> = sc.workers.iter().map(|w| w.group.as_str()).collect();
    assert_eq!(groups, ["llc0", "llc1"]);
    // The aggregate is the median of the two instances.
    let v: Vec<f64> = sc
        .workers
        .iter()
        .map(|w| w.extra["iterations_per_s"])
        .collect();
    assert_eq!(sc.metrics["iterations_per_s"], (v[0] + v[1]) / 2.0);
    assert_eq!(sc.metrics["workers"], 2.0);
    // The meaning the report and bisection give these metrics comes from the parameters.
    let p: BTreeMap<String, serde_json::Value> = params
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.into())
        })
        .collect();
    let dir_of = |m: &str| metric_info_with("command", &p, m).unwrap().direction;
    assert_eq!(dir_of("iterations_per_s"), MetricDirection::HigherIsBetter);
    assert_eq!(dir_of("elapsed_ms"), MetricDirection::LowerIsBetter);
    assert_eq!(dir_of("cpu"), MetricDirection::Counter);
}

#[test]
fn instances_run_one_per_cgroup() {
    let dir = tempfile::tempdir().unwrap();
    let params = ["instances=2", "placement=cgroup"];
    let (_, json) = run_command(dir.path(), None, "1n1l2c1t", &params);
    let r = result(&json);
    assert_eq!(r.outcome, Outcome::Pass, "{r:#?}");
    let sc = r.report.unwrap().scenario.unwrap();
    assert_eq!(sc.workers.len(), 2);
    for w in &sc.workers {
        // Each instance saw itself in its own cgroup, cmd<id>.
        assert_eq!(w.group, format!("cmd{}", w.id), "{w:?}");
        assert_eq!(w.extra["cgroup_index"], f64::from(w.id), "{w:?}");
    }
}

#[test]
fn an_instance_that_fails_and_prints_nothing_fails_the_cell_with_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let log_arg = format!("--console-log={}", log.display());
    let bin = build_program(dir.path());
    let json = dir.path().join("r.json");
    let mut args: Vec<&str> = vec!["run"];
    args.extend(e2e::sched_ext_kernel_args());
    let include = bin.to_str().unwrap().to_string();
    args.extend([
        "--topology",
        "1n1l2c1t",
        "--scenario",
        "command",
        "--duration",
        "3s",
        "-i",
        &include,
        "--json",
        json.to_str().unwrap(),
        &log_arg,
        "--param",
        "binary=spin",
        "--param",
        "args=3",
    ]);
    let out = e2e::ktstr(&args);
    assert_eq!(out.status.code(), Some(1));
    let r = result(&json);
    assert_eq!(r.outcome, Outcome::Fail, "{r:#?}");
    let reason = r.reason.unwrap_or_default();
    assert!(
        reason.contains("exit_code = 3") && reason.contains("metrics_parsed = 0"),
        "{reason}"
    );
    let console = std::fs::read_to_string(&log).unwrap();
    assert!(
        console.contains("command instance 0 (/ktstr/files/spin) exited 3 with 0 metric(s)"),
        "{console}"
    );
}

/// Exit 2 in well under a boot, with no backend chosen and no console log written.
fn refused(extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let bin = build_program(dir.path());
    let log = dir.path().join("console.log");
    let log_arg = format!("--console-log={}", log.display());
    let include = bin.to_str().unwrap().to_string();
    let mut args: Vec<&str> = vec!["run"];
    args.extend(e2e::sched_ext_kernel_args());
    args.extend(["--scenario", "command", &log_arg, "-i", &include]);
    for p in extra {
        args.extend(["--param", p]);
    }
    let t = Instant::now();
    let out = e2e::ktstr(&args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(!err.contains("ktstr: "), "a backend was chosen: {err}");
    assert!(!log.exists(), "nothing may boot");
    err
}

#[test]
fn bad_input_exits_2_before_anything_boots() {
    let err = refused(&["binary=spin", "metric.p99_us=p99.*?(\\d+"]);
    assert!(
        err.contains("metric.p99_us") && err.contains("not a valid regular expression"),
        "{err}"
    );
    let err = refused(&["binary=spin", "metric.p99_us=p99 \\d+"]);
    assert!(err.contains("no capture group"), "{err}");
    let err = refused(&["binary=spin", "direction.p99_us=smaller"]);
    assert!(err.contains("higher, lower"), "{err}");
    let err = refused(&["binary=schbench"]);
    assert!(
        err.contains("/ktstr/files/schbench is not brought into the guest") && err.contains("-i"),
        "{err}"
    );
}
