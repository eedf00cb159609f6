//! `perf bench sched messaging` and `perf bench sched pipe` (Debian package linux-perf): the
//! kernel tree's own scheduler micro-benchmarks. The real perf binary is packed (not Debian's
//! `perf` wrapper script, which execs `perf_<kernel version>`).

use super::benchmark::{self, HostProgram};
use super::{Env, MetricDirection, Outcome, Params, Scenario, ScenarioError, ScenarioInfo};
use std::time::Duration;

const GUEST_PATH: &str = "/usr/bin/perf";

fn perf() -> HostProgram {
    HostProgram::new(&["perf", "perf_*"], GUEST_PATH, "linux-perf")
}

pub struct PerfMessaging;

const MESSAGING: &str = "perf-sched-messaging";

impl Scenario for PerfMessaging {
    fn info(&self) -> ScenarioInfo {
        use MetricDirection::LowerIsBetter as Lower;
        let mut metrics = vec![
            super::metric(
                "time_s",
                "s",
                Lower,
                false,
                "`Total time` of one run of the fixed message count: the median over runs",
            ),
            benchmark::runs_metric("runs completed within the duration"),
        ];
        metrics.extend(benchmark::agent_metrics());
        super::mark_headlines(&mut metrics, &["time_s"]);
        ScenarioInfo {
            name: MESSAGING.into(),
            purpose: "`perf bench sched messaging` (linux-perf): hackbench's messaging pattern \
                      as perf ships it, 20 senders and 20 receivers per group; one run is a \
                      fixed amount of work, repeated until the duration ends (at least once)"
                .into(),
            params: vec![
                super::int_param("groups", "groups of 40 tasks (`-g`)", 1, 64, Some(1), "1"),
                benchmark::loops_param(),
                benchmark::mode_param("-t"),
                benchmark::ipc_param(),
            ],
            metrics,
            checks: vec![benchmark::median_time_check("time_s", "run time")],
            needs_cgroup: false,
        }
    }

    fn host_programs(&self) -> Vec<HostProgram> {
        vec![perf()]
    }

    fn run(&self, p: &Params, duration: Duration, _env: &Env) -> Result<Outcome, ScenarioError> {
        let args = messaging_args(p);
        let times = benchmark::repeat_for(MESSAGING, GUEST_PATH, &args, duration, parse_messaging)?;
        let mut out = Outcome::default();
        out.metrics
            .insert("time_s".into(), benchmark::median(&times));
        out.metrics.insert("runs".into(), times.len() as f64);
        Ok(out)
    }
}

fn messaging_args(p: &Params) -> Vec<String> {
    let mut a: Vec<String> = ["bench", "sched", "messaging", "-g"]
        .map(String::from)
        .to_vec();
    a.push(p.int_or("groups", 1).to_string());
    a.push("-l".into());
    a.push(p.int_or("loops", 100).to_string());
    if p.str_or("mode", "process") == "thread" {
        a.push("-t".into());
    }
    if p.str_or("ipc", "socket") == "pipe" {
        a.push("-p".into());
    }
    a
}

/// `     Total time: 0.172 [sec]` -> 0.172 s.
fn parse_messaging(stdout: &str) -> Option<f64> {
    benchmark::number_after(stdout, "Total time:").and_then(benchmark::measured)
}

pub struct PerfPipe;

const PIPE: &str = "perf-sched-pipe";

impl Scenario for PerfPipe {
    fn info(&self) -> ScenarioInfo {
        use MetricDirection::{HigherIsBetter as Higher, LowerIsBetter as Lower};
        let mut metrics = vec![
            super::metric(
                "usecs_per_op",
                "us",
                Lower,
                false,
                "perf's `usecs/op`, one pipe round trip between two tasks: the median over runs",
            ),
            super::metric(
                "ops_per_s",
                "1/s",
                Higher,
                false,
                "perf's `ops/sec`: the median over runs",
            ),
            benchmark::runs_metric("runs completed within the duration"),
        ];
        metrics.extend(benchmark::agent_metrics());
        super::mark_headlines(&mut metrics, &["usecs_per_op"]);
        ScenarioInfo {
            name: PIPE.into(),
            purpose: "`perf bench sched pipe` (linux-perf): two tasks passing a token through a \
                      pipe pair, a wake-up round trip per operation; one run is `loops` \
                      operations, repeated until the duration ends (at least once)"
                .into(),
            params: vec![
                super::int_param(
                    "loops",
                    "round trips per run (`-l`)",
                    100,
                    10_000_000,
                    Some(5000),
                    "5000",
                ),
                benchmark::mode_param("-T"),
            ],
            metrics,
            checks: vec![benchmark::median_time_check("usecs_per_op", "round trip")],
            needs_cgroup: false,
        }
    }

    fn host_programs(&self) -> Vec<HostProgram> {
        vec![perf()]
    }

    fn run(&self, p: &Params, duration: Duration, _env: &Env) -> Result<Outcome, ScenarioError> {
        let args = pipe_args(p);
        let runs = benchmark::repeat_for(PIPE, GUEST_PATH, &args, duration, parse_pipe)?;
        let us: Vec<f64> = runs.iter().map(|r| r.0).collect();
        let ops: Vec<f64> = runs.iter().map(|r| r.1).collect();
        let mut out = Outcome::default();
        out.metrics
            .insert("usecs_per_op".into(), benchmark::median(&us));
        out.metrics
            .insert("ops_per_s".into(), benchmark::median(&ops));
        out.metrics.insert("runs".into(), runs.len() as f64);
        Ok(out)
    }
}

fn pipe_args(p: &Params) -> Vec<String> {
    let mut a: Vec<String> = ["bench", "sched", "pipe", "-l"].map(String::from).to_vec();
    a.push(p.int_or("loops", 5000).to_string());
    if p.str_or("mode", "process") == "thread" {
        a.push("-T".into());
    }
    a
}

/// `5.578600 usecs/op` and `179256 ops/sec` -> (usecs per op, ops per second).
fn parse_pipe(stdout: &str) -> Option<(f64, f64)> {
    let before = |unit: &str| {
        stdout.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            let (v, u) = (w.next()?, w.next()?);
            (u == unit).then(|| v.parse::<f64>().ok())?
        })
    };
    let us = before("usecs/op").and_then(benchmark::measured)?;
    let ops = before("ops/sec").and_then(benchmark::measured)?;
    Some((us, ops))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn real_perf_messaging_output_parses() {
        assert_eq!(
            parse_messaging(include_str!("testdata/perf-messaging.txt")),
            Some(0.172)
        );
        assert_eq!(
            parse_messaging(include_str!("testdata/perf-messaging-thread-pipe.txt")),
            Some(0.018)
        );
        assert_eq!(
            parse_messaging("# Running 'sched/messaging' benchmark:\n"),
            None
        );
    }

    #[test]
    fn real_perf_pipe_output_parses() {
        assert_eq!(
            parse_pipe(include_str!("testdata/perf-pipe.txt")),
            Some((5.5786, 179256.0))
        );
        assert_eq!(
            parse_pipe(include_str!("testdata/perf-pipe-threaded.txt")),
            Some((5.3276, 187701.0))
        );
        // The header alone (a run cut short) is no result.
        assert_eq!(
            parse_pipe("# Executed 5000 pipe operations between two processes\n"),
            None
        );
    }

    #[test]
    fn parameters_become_perf_flags() {
        let given: BTreeMap<String, serde_json::Value> =
            [("mode".to_string(), serde_json::json!("thread"))].into();
        let p = Params::resolve(&PerfPipe.info(), &given).unwrap();
        assert_eq!(pipe_args(&p).join(" "), "bench sched pipe -l 5000 -T");
        let p = Params::resolve(&PerfMessaging.info(), &given).unwrap();
        assert_eq!(
            messaging_args(&p).join(" "),
            "bench sched messaging -g 1 -l 100 -t"
        );
    }
}
