//! `stress-ng` (Debian package stress-ng) with one of its scheduler-relevant stressors: `cpu`
//! (compute), `switch` (context switches over a pipe), `futex` (futex wait/wake), `yield`
//! (sched_yield). Its bogo-ops per second come from its `--yaml` file (`--metrics`).

use super::benchmark::{self, HostProgram};
use super::{
    CheckOp, Env, MetricDirection, Outcome, Params, Scenario, ScenarioError, ScenarioInfo,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const NAME: &str = "stress-ng";
const GUEST_PATH: &str = "/usr/bin/stress-ng";
const STRESSORS: &[&str] = &["cpu", "switch", "futex", "yield"];
/// stress-ng writes its metrics here (the guest's /tmp is a tmpfs of its own).
const YAML_PATH: &str = "/tmp/ktstr-stress-ng.yaml";

pub struct StressNg;

impl Scenario for StressNg {
    fn info(&self) -> ScenarioInfo {
        use MetricDirection::{Counter, HigherIsBetter as Higher};
        let mut metrics = vec![
            super::metric(
                "bogo_ops_per_s",
                "1/s",
                Higher,
                false,
                "stress-ng's bogo-ops per second of wall-clock time, all instances together",
            ),
            super::metric(
                "bogo_ops_per_cpu_s",
                "1/s",
                Higher,
                false,
                "bogo-ops per second of user+system CPU time the instances used",
            ),
            super::metric(
                "bogo_ops",
                "count",
                Counter,
                false,
                "bogo-ops completed in the run",
            ),
        ];
        metrics.extend(benchmark::agent_metrics());
        super::mark_headlines(&mut metrics, &["bogo_ops_per_s"]);
        ScenarioInfo {
            name: NAME.into(),
            purpose: "stress-ng (`/usr/bin/stress-ng`, Debian package stress-ng) running one \
                      stressor's instances for the duration (`--timeout`, rounded up to whole \
                      seconds), metrics from its `--metrics --yaml` report"
                .into(),
            params: vec![
                super::choice_param(
                    "stressor",
                    "cpu (compute), switch (context switches over a pipe), futex (futex \
                     wait/wake), yield (sched_yield)",
                    STRESSORS,
                    "switch",
                ),
                super::int_param(
                    "workers",
                    "stressor instances (`--<stressor> N`)",
                    1,
                    1024,
                    None,
                    "one per online CPU",
                ),
            ],
            metrics,
            checks: vec![super::optional_check(
                "bogo_ops_per_s",
                CheckOp::AtLeast,
                false,
                "minimum throughput; off unless a threshold is given",
            )],
            needs_cgroup: false,
        }
    }

    fn host_programs(&self) -> Vec<HostProgram> {
        vec![HostProgram::new(&["stress-ng"], GUEST_PATH, "stress-ng")]
    }

    fn run(&self, p: &Params, duration: Duration, env: &Env) -> Result<Outcome, ScenarioError> {
        let stressor = p.str_or("stressor", "switch");
        let workers = p.int_or("workers", env.cpus.len().max(1) as i64);
        let args = args(stressor, workers, duration);
        let _ = std::fs::remove_file(YAML_PATH);
        let deadline = Instant::now() + duration + benchmark::OVERRUN_GRACE;
        let run = benchmark::run_program(NAME, GUEST_PATH, &args, deadline)?;
        let yaml = std::fs::read_to_string(YAML_PATH).unwrap_or_default();
        let Some(m) = parse_metrics(&yaml, stressor) else {
            return Err(benchmark::failed(
                NAME,
                format!("stress-ng wrote no metrics for stressor {stressor} to {YAML_PATH}"),
                &format!("{}{yaml}", run.combined()),
            ));
        };
        let mut out = Outcome::default();
        out.metrics.insert("bogo_ops_per_s".into(), m.per_s);
        out.metrics.insert("bogo_ops_per_cpu_s".into(), m.per_cpu_s);
        out.metrics.insert("bogo_ops".into(), m.ops);
        Ok(out)
    }
}

/// stress-ng's command line: `--timeout` takes whole seconds, so the duration is rounded up.
fn args(stressor: &str, workers: i64, duration: Duration) -> Vec<String> {
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    vec![
        format!("--{stressor}"),
        workers.to_string(),
        "--timeout".into(),
        format!("{}s", secs.max(1)),
        "--metrics".into(),
        "--yaml".into(),
        YAML_PATH.into(),
    ]
}

/// One stressor's figures from stress-ng's YAML report.
#[derive(Debug, PartialEq)]
struct StressorMetrics {
    ops: f64,
    per_s: f64,
    per_cpu_s: f64,
}

/// The `metrics:` entry of `stressor` in stress-ng's YAML. The report is a fixed shape (a
/// `metrics:` list of flat `key: number` maps), read line by line rather than with a YAML
/// library in the static guest agent.
fn parse_metrics(yaml: &str, stressor: &str) -> Option<StressorMetrics> {
    let mut in_metrics = false;
    let mut current: Option<BTreeMap<&str, &str>> = None;
    let mut found = None;
    for line in yaml.lines() {
        if !line.starts_with(' ') {
            in_metrics = line.trim_end() == "metrics:";
            continue;
        }
        if !in_metrics {
            continue;
        }
        let item = line.trim_start();
        let (entry, kv) = match item.strip_prefix("- ") {
            Some(rest) => (true, rest),
            None => (false, item),
        };
        let Some((k, v)) = kv.split_once(':') else {
            continue;
        };
        if entry {
            if let Some(done) = current.take() {
                found = found.or(pick(done, stressor));
            }
            current = Some(BTreeMap::new());
        }
        if let Some(m) = current.as_mut() {
            m.insert(k.trim(), v.trim());
        }
    }
    found
        .or_else(|| current.and_then(|m| pick(m, stressor)))
        .and_then(|m| {
            let num = |k: &str| m.get(k)?.parse::<f64>().ok().and_then(benchmark::measured);
            Some(StressorMetrics {
                ops: num("bogo-ops")?,
                per_s: num("bogo-ops-per-second-real-time")?,
                per_cpu_s: num("bogo-ops-per-second-usr-sys-time")?,
            })
        })
}

fn pick<'a>(m: BTreeMap<&'a str, &'a str>, stressor: &str) -> Option<BTreeMap<&'a str, &'a str>> {
    (m.get("stressor") == Some(&stressor)).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_stress_ng_yaml_parses_for_each_stressor() {
        let cases = [
            (
                include_str!("testdata/stress-ng-cpu.yaml"),
                "cpu",
                1533.0,
                1530.852801,
            ),
            (
                include_str!("testdata/stress-ng-switch.yaml"),
                "switch",
                167459.0,
                167310.609357,
            ),
            (
                include_str!("testdata/stress-ng-futex.yaml"),
                "futex",
                39482.0,
                39431.787813,
            ),
            (
                include_str!("testdata/stress-ng-yield.yaml"),
                "yield",
                927840.0,
                926395.731371,
            ),
        ];
        for (yaml, stressor, ops, per_s) in cases {
            let m = parse_metrics(yaml, stressor).unwrap_or_else(|| panic!("{stressor}"));
            assert_eq!(m.ops, ops, "{stressor}");
            assert_eq!(m.per_s, per_s, "{stressor}");
            assert!(m.per_cpu_s > 0.0, "{stressor}");
        }
        // Another stressor's report, or the system-info block alone, is no result.
        let cpu = include_str!("testdata/stress-ng-cpu.yaml");
        assert_eq!(parse_metrics(cpu, "switch"), None);
        let header = cpu.split("metrics:").next().unwrap();
        assert_eq!(parse_metrics(header, "cpu"), None);
        assert_eq!(parse_metrics("", "cpu"), None);
    }

    #[test]
    fn the_duration_is_rounded_up_to_whole_seconds() {
        let a = args("futex", 2, Duration::from_millis(2500));
        assert_eq!(
            a.join(" "),
            format!("--futex 2 --timeout 3s --metrics --yaml {YAML_PATH}")
        );
        assert_eq!(args("cpu", 1, Duration::from_millis(10))[3], "1s");
        assert_eq!(args("cpu", 1, Duration::from_secs(2))[3], "2s");
    }
}
