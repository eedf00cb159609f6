//! `hackbench` (rt-tests): groups of senders and receivers passing messages over sockets or
//! pipes; the time of a fixed amount of messaging, which scheduler developers quote for wake-up
//! and load-balancing changes.

use super::benchmark::{self, HostProgram};
use super::{Env, MetricDirection, Outcome, Params, Scenario, ScenarioError, ScenarioInfo};
use std::time::Duration;

const NAME: &str = "hackbench";
const GUEST_PATH: &str = "/usr/bin/hackbench";

pub struct Hackbench;

impl Scenario for Hackbench {
    fn info(&self) -> ScenarioInfo {
        use MetricDirection::LowerIsBetter as Lower;
        let mut metrics = vec![
            super::metric(
                "time_s",
                "s",
                Lower,
                false,
                "hackbench's `Time:` for one run of the fixed message count: the median over runs",
            ),
            super::metric("time_max_s", "s", Lower, false, "the slowest run's `Time:`"),
            benchmark::runs_metric("hackbench runs completed within the duration"),
        ];
        metrics.extend(benchmark::agent_metrics());
        super::mark_headlines(&mut metrics, &["time_s"]);
        ScenarioInfo {
            name: NAME.into(),
            purpose: "rt-tests' hackbench (`/usr/bin/hackbench`, Debian package rt-tests): \
                      groups of senders and receivers exchanging `loops` messages each; one run \
                      is a fixed amount of work, repeated until the duration ends (at least \
                      once), and its time is the figure"
                .into(),
            params: vec![
                super::int_param(
                    "groups",
                    "groups of senders and receivers (`-g`)",
                    1,
                    64,
                    Some(2),
                    "2",
                ),
                super::int_param(
                    "fds",
                    "senders and receivers per group (`-f`); a group is 2 x fds tasks",
                    1,
                    64,
                    Some(10),
                    "10",
                ),
                benchmark::loops_param(),
                benchmark::mode_param("-T"),
                benchmark::ipc_param(),
            ],
            metrics,
            checks: vec![benchmark::median_time_check("time_s", "run time")],
            needs_cgroup: false,
        }
    }

    fn host_programs(&self) -> Vec<HostProgram> {
        vec![HostProgram::new(&["hackbench"], GUEST_PATH, "rt-tests")]
    }

    fn run(&self, p: &Params, duration: Duration, _env: &Env) -> Result<Outcome, ScenarioError> {
        let args = args(p);
        let times = benchmark::repeat_for(NAME, GUEST_PATH, &args, duration, parse_time)?;
        let mut out = Outcome::default();
        out.metrics
            .insert("time_s".into(), benchmark::median(&times));
        out.metrics.insert(
            "time_max_s".into(),
            times.iter().copied().fold(f64::MIN, f64::max),
        );
        out.metrics.insert("runs".into(), times.len() as f64);
        Ok(out)
    }
}

/// hackbench's command line for the parameters.
fn args(p: &Params) -> Vec<String> {
    let mut a = vec![
        "-g".to_string(),
        p.int_or("groups", 2).to_string(),
        "-f".into(),
        p.int_or("fds", 10).to_string(),
        "-l".into(),
        p.int_or("loops", 100).to_string(),
    ];
    a.push(if p.str_or("mode", "process") == "thread" {
        "-T".into()
    } else {
        "-P".into()
    });
    if p.str_or("ipc", "socket") == "pipe" {
        a.push("-p".into());
    }
    a
}

/// `Time: 0.119` -> 0.119 s.
fn parse_time(stdout: &str) -> Option<f64> {
    benchmark::number_after(stdout, "Time:").and_then(benchmark::measured)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn real_hackbench_output_parses() {
        let t = parse_time(include_str!("testdata/hackbench-process.txt")).unwrap();
        assert_eq!(t, 0.119);
        let t = parse_time(include_str!("testdata/hackbench-thread-pipe.txt")).unwrap();
        assert_eq!(t, 0.001);
        assert_eq!(parse_time("Running in process mode\n"), None);
        assert_eq!(parse_time("Time: soon\n"), None);
    }

    #[test]
    fn parameters_become_hackbench_flags() {
        let info = Hackbench.info();
        let given: BTreeMap<String, serde_json::Value> = [
            ("mode".to_string(), serde_json::json!("thread")),
            ("ipc".to_string(), serde_json::json!("pipe")),
            ("groups".to_string(), serde_json::json!(3)),
        ]
        .into();
        let p = Params::resolve(&info, &given).unwrap();
        assert_eq!(
            args(&p).join(" "),
            "-g 3 -f 10 -l 100 -T -p",
            "defaults fill the rest"
        );
    }
}
