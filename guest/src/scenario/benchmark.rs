//! What the packaged benchmarks (`hackbench`, `perf-sched-*`, `stress-ng`) share: the host
//! programs a scenario declares ([`HostProgram`]), running one program with a deadline and its
//! output captured, repeating a fixed-size run until the duration ends, and the failure that
//! carries the program's output as evidence.
//!
//! A benchmark that exits non-zero, is killed, or prints nothing its parser understands is a
//! [`ScenarioError::WorkloadFailed`]: `scenario::run` turns that into a failed check, so the
//! cell fails with the output in its reason instead of passing with no metrics.

use super::ScenarioError;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A program a scenario runs that the host packs into the initramfs, with its shared-library
/// closure. The host looks each candidate up on its `PATH`; the first that is an ELF binary
/// wins (Debian's `/usr/bin/perf` can be a shell wrapper that execs `perf_<version>`, useless in
/// the guest). A candidate ending in `*` matches file names with that prefix; the highest
/// version wins.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostProgram {
    /// File names to look up on the host's `PATH`, in order, e.g. `["perf", "perf_*"]`.
    pub candidates: Vec<String>,
    /// Where the scenario runs it in the guest.
    pub guest_path: String,
    /// The Debian package that provides it (named in the error when it is missing).
    pub package: String,
}

impl HostProgram {
    pub(crate) fn new(candidates: &[&str], guest_path: &str, package: &str) -> HostProgram {
        HostProgram {
            candidates: candidates.iter().map(|c| c.to_string()).collect(),
            guest_path: guest_path.into(),
            package: package.into(),
        }
    }
}

/// How long a benchmark may overrun the scenario's duration before it is killed: below the
/// agent's own slack, so the cell fails with the benchmark's output rather than a bare kill.
pub(crate) const OVERRUN_GRACE: Duration = Duration::from_secs(20);

/// Most of a benchmark's output kept as evidence in a failure reason (its tail).
const EVIDENCE_CHARS: usize = 1500;

/// What one run of a program produced.
#[derive(Debug, Clone)]
pub(crate) struct RunOutput {
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    /// stdout then stderr, as evidence.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// A failure of scenario `scenario`'s benchmark, with the tail of `output` as evidence. The
/// whole output also goes to the guest console, which the host keeps.
pub(crate) fn failed(scenario: &str, what: String, output: &str) -> ScenarioError {
    eprintln!("ktstr-guest: {scenario}: {what}; its output:\n{output}");
    let trimmed = output.trim();
    let tail = if trimmed.is_empty() {
        "(no output)".to_string()
    } else {
        let start = trimmed
            .char_indices()
            .rev()
            .nth(EVIDENCE_CHARS)
            .map_or(0, |(i, _)| i);
        let cut = if start > 0 { "…" } else { "" };
        format!("{cut}{}", &trimmed[start..]).replace('\n', " | ")
    };
    ScenarioError::WorkloadFailed {
        scenario: scenario.into(),
        reason: format!("{what}; output: {tail}"),
    }
}

/// Runs `program args` in `/tmp` (its own process group, so a kill takes its children too),
/// capturing stdout and stderr; kills it at `deadline`. Non-zero exit, death by signal and the
/// deadline are failures of scenario `scenario`.
pub(crate) fn run_program(
    scenario: &str,
    program: &str,
    args: &[String],
    deadline: Instant,
) -> Result<RunOutput, ScenarioError> {
    let shown = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .current_dir("/tmp")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| super::setup_err(scenario, format!("cannot start `{shown}`: {e}")))?;
    // Readers on threads: a benchmark that fills one pipe while we wait on the other would block.
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(child.stdout.take().map(|s| Box::new(s) as _));
    let err = reader(child.stderr.take().map(|s| Box::new(s) as _));
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() >= deadline => {
                // SAFETY: kill(2) on the process group we created for this child.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                return Err(super::setup_err(
                    scenario,
                    format!("waiting for `{shown}`: {e}"),
                ));
            }
        }
    };
    let output = RunOutput {
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    match status {
        None => Err(failed(
            scenario,
            format!(
                "`{shown}` overran the scenario's duration by more than {OVERRUN_GRACE:?}; killed"
            ),
            &output.combined(),
        )),
        Some(st) if st.success() => Ok(output),
        Some(st) => {
            let how = match (st.code(), st.signal()) {
                (Some(c), _) => format!("exited with status {c}"),
                (None, Some(s)) => format!("was killed by signal {s}"),
                _ => format!("ended with {st}"),
            };
            Err(failed(
                scenario,
                format!("`{shown}` {how}"),
                &output.combined(),
            ))
        }
    }
}

/// Runs a fixed-size benchmark again and again until `duration` has passed (at least once),
/// parsing each run with `parse`; returns the parsed runs. Output `parse` cannot read fails the
/// scenario with that output as evidence.
pub(crate) fn repeat_for<T>(
    scenario: &str,
    program: &str,
    args: &[String],
    duration: Duration,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, ScenarioError> {
    let start = Instant::now();
    let deadline = start + duration + OVERRUN_GRACE;
    let mut runs = Vec::new();
    while runs.is_empty() || start.elapsed() < duration {
        let out = run_program(scenario, program, args, deadline)?;
        match parse(&out.stdout) {
            Some(v) => runs.push(v),
            None => {
                return Err(failed(
                    scenario,
                    format!(
                        "`{program} {}` printed no result ktstr can read",
                        args.join(" ")
                    ),
                    &out.combined(),
                ));
            }
        }
    }
    Ok(runs)
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The number after `label` on the first line that has it, e.g. `Time: 0.119` with `"Time:"`.
pub(crate) fn number_after(text: &str, label: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.split_once(label)?.1;
        rest.split_whitespace().next()?.parse::<f64>().ok()
    })
}

/// A number that is a real measurement: finite and not negative.
pub(crate) fn measured(v: f64) -> Option<f64> {
    (v.is_finite() && v >= 0.0).then_some(v)
}

/// `runs`: how many fixed-size runs fit in the duration (a counter describing the run).
pub(crate) fn runs_metric(doc: &str) -> super::MetricInfo {
    super::metric("runs", "count", super::MetricDirection::Counter, false, doc)
}

/// `loops` of the messaging benchmarks (hackbench and perf's copy of it).
pub(crate) fn loops_param() -> super::ParamInfo {
    super::int_param(
        "loops",
        "messages each sender sends to each receiver (`-l`)",
        1,
        100_000,
        Some(100),
        "100",
    )
}

/// `ipc` of the messaging benchmarks.
pub(crate) fn ipc_param() -> super::ParamInfo {
    super::choice_param(
        "ipc",
        "messages over socketpairs (the default) or pipes (`-p`)",
        &["socket", "pipe"],
        "socket",
    )
}

/// `mode` of the messaging benchmarks: `thread_flag` is the benchmark's own flag for threads.
pub(crate) fn mode_param(thread_flag: &str) -> super::ParamInfo {
    super::choice_param(
        "mode",
        &format!("tasks as processes (the default) or threads (`{thread_flag}`)"),
        &["process", "thread"],
        "process",
    )
}

/// The optional check on a fixed-size run's median time.
pub(crate) fn median_time_check(metric: &str, what: &str) -> super::CheckInfo {
    super::optional_check(
        metric,
        super::CheckOp::AtMost,
        false,
        &format!("median {what}; off unless a threshold is given"),
    )
}

/// What every packaged benchmark reports besides its own figures: the clock the agent adds, the
/// scheduler's counters and its BPF programs' costs.
pub(crate) fn agent_metrics() -> Vec<super::MetricInfo> {
    super::common_metrics()
        .into_iter()
        .filter(|m| {
            m.name == "clock_resolution_us"
                || m.name == super::SCHEDULER_COUNTERS
                || m.name.starts_with(super::BPF_METRIC_PREFIX)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn a_failing_program_is_a_workload_failure_with_its_output() {
        let far = Instant::now() + Duration::from_secs(30);
        let args = vec!["-c".to_string(), "echo broken; exit 3".to_string()];
        let e = run_program("x", "/bin/sh", &args, far).unwrap_err();
        let ScenarioError::WorkloadFailed { reason, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(reason.contains("exited with status 3"), "{reason}");
        assert!(reason.contains("broken"), "{reason}");
    }

    #[test]
    fn unparsable_output_fails_and_the_deadline_kills() {
        let args = vec!["-c".to_string(), "echo nothing to see".to_string()];
        let e = repeat_for("x", "/bin/sh", &args, Duration::ZERO, |_| None::<f64>).unwrap_err();
        assert!(e.to_string().contains("nothing to see"), "{e}");
        let args = vec!["-c".to_string(), "echo started; sleep 30".to_string()];
        let soon = Instant::now() + Duration::from_millis(200);
        let t = Instant::now();
        let e = run_program("x", "/bin/sh", &args, soon).unwrap_err();
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the kill took the group"
        );
        assert!(e.to_string().contains("killed"), "{e}");
        assert!(e.to_string().contains("started"), "{e}");
    }

    /// The real benchmarks on this host (scripts/setup.sh installs them), through the catalogue:
    /// each yields its headline metric, finite and positive, and every metric is catalogued.
    #[test]
    fn the_packaged_benchmarks_run_on_this_host() {
        use crate::scenario::{Env, catalogue, describe_metric, run};
        use std::collections::BTreeMap;
        let cases: &[(&str, serde_json::Value, &str)] = &[
            (
                "hackbench",
                serde_json::json!({"groups": 1, "fds": 4, "loops": 20}),
                "time_s",
            ),
            (
                "perf-sched-messaging",
                serde_json::json!({"loops": 5}),
                "time_s",
            ),
            (
                "perf-sched-pipe",
                serde_json::json!({"loops": 1000}),
                "usecs_per_op",
            ),
            (
                "stress-ng",
                serde_json::json!({"stressor": "yield", "workers": 1}),
                "bogo_ops_per_s",
            ),
        ];
        for (name, params, headline) in cases {
            let params: BTreeMap<String, serde_json::Value> =
                serde_json::from_value(params.clone()).unwrap();
            let r = run(
                name,
                &params,
                Duration::from_millis(300),
                &BTreeMap::new(),
                &Env::detect(),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(r.checks.iter().all(|c| c.passed), "{name}: {:?}", r.checks);
            let v = r.metrics[*headline];
            assert!(v.is_finite() && v > 0.0, "{name}: {headline} = {v}");
            let info = catalogue().into_iter().find(|s| s.name == *name).unwrap();
            for m in r.metrics.keys() {
                assert!(
                    describe_metric(&info, m).is_some(),
                    "{name}: {m} not catalogued"
                );
            }
        }
    }

    #[test]
    fn a_failed_benchmark_is_a_failed_check_with_its_output() {
        let info = crate::scenario::catalogue().remove(0);
        let e = failed(
            "smoke",
            "`bench` exited with status 1".into(),
            "line 1\nline 2\n",
        );
        let ScenarioError::WorkloadFailed { reason, .. } = e else {
            panic!()
        };
        let r = super::super::workload_failed(&info, Duration::from_secs(1), reason);
        assert!(r.metrics.is_empty());
        let [c] = &r.checks[..] else {
            panic!("{:?}", r.checks)
        };
        assert!(!c.passed);
        assert!(
            c.message.contains("status 1") && c.message.contains("line 1 | line 2"),
            "{}",
            c.message
        );
    }

    #[test]
    fn a_missing_program_is_a_setup_error() {
        let far = Instant::now() + Duration::from_secs(5);
        let e = run_program("x", "/nonexistent/bench", &[], far).unwrap_err();
        assert!(matches!(e, ScenarioError::Setup { .. }), "{e:?}");
    }
}
