//! The `command` scenario with real programs (`/bin/sh` scripts) on this host, and its input checks.

use super::super::{Env, ScenarioError, metric_info_with, run, validate};
use super::*;
use serde_json::json;

fn params(v: serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    serde_json::from_value(v).unwrap()
}

fn sh(script: &str, extra: serde_json::Value) -> crate::protocol::ScenarioReport {
    let mut p = params(json!({"binary": "/bin/sh", "args": format!("-c '{script}'")}));
    p.extend(params(extra));
    run(
        NAME,
        &p,
        Duration::from_millis(300),
        &BTreeMap::new(),
        &Env::detect(),
    )
    .unwrap()
}

#[test]
fn two_instances_report_json_and_key_value_metrics_with_medians() {
    let r = sh(
        r#"echo "{\"ops_per_s\": 100, \"name\": \"x\"}"; echo lat_us=7"#,
        json!({"instances": 2}),
    );
    assert_eq!(r.workers.len(), 2);
    for w in &r.workers {
        assert_eq!(w.extra["ops_per_s"], 100.0, "{w:?}");
        assert_eq!(w.extra["lat_us"], 7.0);
        assert_eq!(w.extra["exit_code"], 0.0);
        assert_eq!(w.extra["metrics_parsed"], 2.0);
    }
    assert_eq!(r.metrics["ops_per_s"], 100.0);
    assert_eq!(r.metrics["lat_us"], 7.0);
    assert_eq!(r.metrics["workers"], 2.0);
    assert!(!r.metrics.contains_key("min_work_units"), "{:?}", r.metrics);
    assert!(r.checks.iter().all(|c| c.passed), "{:?}", r.checks);
}

#[test]
fn patterns_replace_the_default_parsers() {
    let r = sh(
        "echo p99 latency: 41 us; echo x=1",
        json!({"metric.p99_us": r"p99.*?(\d+)"}),
    );
    assert_eq!(r.metrics["p99_us"], 41.0);
    assert!(!r.metrics.contains_key("x"));
}

#[test]
fn stderr_is_read_when_asked() {
    let r = sh("echo x=1; echo y=2 >&2", json!({"output": "stderr"}));
    assert_eq!(r.metrics.get("x"), None);
    assert_eq!(r.metrics["y"], 2.0);
    let r = sh("echo x=1; echo y=2 >&2", json!({"output": "both"}));
    assert_eq!((r.metrics["x"], r.metrics["y"]), (1.0, 2.0));
}

#[test]
fn a_failing_exit_and_missing_metrics_fail_their_checks() {
    let r = sh("echo nothing here; exit 3", json!({}));
    let failed: Vec<&str> = r
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.metric.as_str())
        .collect();
    assert_eq!(failed, ["exit_code", "metrics_parsed"], "{:?}", r.checks);
    assert_eq!(r.workers[0].extra["exit_code"], 3.0);
}

#[test]
fn an_instance_still_running_at_the_duration_is_interrupted() {
    let t = Instant::now();
    let r = sh(
        r#"trap "echo done=1; exit 0" INT; while :; do sleep 0.05; done"#,
        json!({}),
    );
    assert!(t.elapsed() < KILL_GRACE, "{:?}", t.elapsed());
    assert_eq!(r.metrics["done"], 1.0, "{r:?}");
}

#[test]
fn llc_groups_partition_the_cpus() {
    let cpus = Env::detect_cpus();
    let groups = llc_groups(&cpus);
    let mut all: Vec<u32> = groups.concat();
    all.sort();
    assert_eq!(all, cpus);
    let r = sh("echo x=1", json!({"instances": 2, "placement": "llc"}));
    assert!(
        r.workers.iter().all(|w| w.group.starts_with("llc")),
        "{r:?}"
    );
}

#[test]
fn bad_input_is_named_before_anything_runs() {
    let bad = |p: serde_json::Value| validate(NAME, &params(p)).unwrap_err();
    let e = bad(json!({}));
    assert!(
        e.to_string().contains("'binary'") && e.to_string().contains("-i"),
        "{e}"
    );
    let e = bad(json!({"binary": "s", "metric.p99": "p99("}));
    assert!(matches!(&e, ScenarioError::BadParam { param, .. } if param == "metric.p99"));
    assert!(
        e.to_string().contains("not a valid regular expression"),
        "{e}"
    );
    let e = bad(json!({"binary": "s", "metric.p99": r"p99 \d+"}));
    assert!(e.to_string().contains("no capture group"), "{e}");
    let e = bad(json!({"binary": "s", "direction.p99": "smaller"}));
    assert!(matches!(e, ScenarioError::BadChoice { .. }), "{e}");
    assert!(e.to_string().contains("higher, lower"), "{e}");
    let e = bad(json!({"binary": "s", "args": "'unclosed"}));
    assert!(e.to_string().contains("unclosed quote"), "{e}");
    let e = bad(json!({"binary": "dir/s"}));
    assert!(e.to_string().contains("absolute guest path"), "{e}");
    let e = bad(json!({"binary": "s", "metrc.p99": "x"}));
    assert!(e.to_string().contains("did you mean 'metric.p99'"), "{e}");
    validate(
        NAME,
        &params(json!({"binary": "s", "metric": {"p99": "p(\\d+)"}})),
    )
    .unwrap();
    // A command line's `args=3` arrives as the JSON number 3: still text.
    validate(NAME, &params(json!({"binary": "s", "args": 3}))).unwrap();
}

#[test]
fn the_user_direction_and_unit_give_the_metric_its_meaning() {
    let p = params(json!({"binary": "schbench", "direction.p99_us": "lower",
                          "unit.p99_us": "us", "direction.rps": "higher"}));
    let m = metric_info_with(NAME, &p, "p99_us").unwrap();
    assert_eq!(m.direction, MetricDirection::LowerIsBetter);
    assert_eq!(m.unit, "us");
    assert!(m.headline);
    let m = metric_info_with(NAME, &p, "rps").unwrap();
    assert_eq!(m.direction, MetricDirection::HigherIsBetter);
    let m = metric_info_with(NAME, &p, "other").unwrap();
    assert_eq!(m.direction, MetricDirection::Counter);
    // The scenario's own metrics keep their catalogue meaning.
    let m = metric_info_with(NAME, &p, "exit_code").unwrap();
    assert_eq!(m.unit, "code");
    assert_eq!(
        super::super::guest_files(NAME, &p).unwrap(),
        ["/ktstr/files/schbench"]
    );
}
