//! The scenario catalogue: what runs inside the VM while a scheduler is (or is not) attached.
//!
//! Each scenario describes itself ([`ScenarioInfo`]: purpose, typed parameters with defaults and
//! ranges, metrics with what they mean ([`MetricInfo`]: direction, unit, headline), default
//! checks) so that the host can list, document and validate a run before
//! booting anything ([`catalogue`], [`validate`], [`validate_thresholds`]). Inside the guest,
//! [`run`] forks the workers, measures them, aggregates metrics and evaluates the checks.
//!
//! Workers are processes (fork) publishing their progress into a `MAP_SHARED` anonymous mapping:
//! cgroup v2 moves processes, not threads, and a process that stalls can still be observed and
//! killed by the parent.

mod benchmark;
mod bpf_metrics;
mod cgroup;
mod command;
mod command_output;
mod cpuset;
mod fork_churn;
mod futex;
mod hackbench;
mod markdown;
mod metric_catalogue;
mod metrics;
mod mixed;
mod oversubscribed;
mod params;
mod perf_bench;
mod scoreboard;
pub mod selftests;
mod smoke;
mod steady;
mod steal;
mod stress_ng;
mod wake;
mod work;
mod workers;

pub use benchmark::HostProgram;
pub use bpf_metrics::BPF_METRIC_PREFIX;
pub use cgroup::CgroupRoot;
pub use command::NAME as COMMAND;
pub use markdown::catalogue_markdown;
pub use metric_catalogue::{
    MetricDirection, MetricInfo, SCHEDULER_COUNTER_PREFIX, SCHEDULER_COUNTERS, describe_metric,
    metric_info,
};
pub(crate) use metric_catalogue::{common_metrics, mark_headlines, metric, wake_metrics};
pub use metrics::{evaluate_checks, percentile};
pub use params::Params;

use crate::protocol::ScenarioReport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use thiserror::Error;

/// The default bound on the longest gap without progress. Generous on purpose: under QEMU TCG on a
/// shared 2-core host a vCPU thread can be descheduled by the host for hundreds of milliseconds
/// without any guest scheduler being at fault; a sched_ext stall is reported by the kernel's
/// watchdog after 30 s, and a real starvation bug shows as seconds. 2 s separates the two.
pub const DEFAULT_MAX_GAP_MS: f64 = 2000.0;

/// Describes a scenario for listing, documentation and validation on the host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScenarioInfo {
    pub name: String,
    pub purpose: String,
    pub params: Vec<ParamInfo>,
    pub metrics: Vec<MetricInfo>,
    pub checks: Vec<CheckInfo>,
    /// Needs a writable cgroup v2 hierarchy (always there in the ktstr guest).
    pub needs_cgroup: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ParamInfo {
    pub name: String,
    pub doc: String,
    pub kind: ParamKind,
    /// `None` when the default depends on the guest (e.g. the number of online CPUs);
    /// `default_doc` says what it is.
    pub default: Option<serde_json::Value>,
    pub default_doc: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ParamKind {
    Int {
        min: i64,
        max: i64,
    },
    Float {
        min: f64,
        max: f64,
    },
    /// One of these strings.
    Choice {
        values: Vec<String>,
    },
    /// Any string (a path, a command line).
    Text,
    /// A family of parameters `NAME.KEY=VALUE`, one per key the user picks (e.g. `metric.p99_us`);
    /// each value one of `values`, or any string when `values` is empty.
    Keyed {
        values: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CheckOp {
    /// The value must be at least the threshold.
    AtLeast,
    /// The value must be at most the threshold.
    AtMost,
}

/// A default assertion. Thresholds are overridden by metric name (`ScenarioRun.thresholds`); a
/// check without a default threshold is only evaluated when a threshold is given.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckInfo {
    pub metric: String,
    pub op: CheckOp,
    pub default_threshold: Option<f64>,
    /// Evaluated for every worker (naming the failing one) rather than on the aggregate.
    pub per_worker: bool,
    pub doc: String,
}

#[derive(Debug, Error, PartialEq)]
pub enum ScenarioError {
    #[error("unknown scenario '{name}'{}; known: {known}", suggest(.suggestion))]
    UnknownScenario {
        name: String,
        suggestion: Option<String>,
        known: String,
    },
    #[error("scenario '{scenario}' has no parameter '{param}'{}; known: {known}", suggest(.suggestion))]
    UnknownParam {
        scenario: String,
        param: String,
        suggestion: Option<String>,
        known: String,
    },
    #[error(
        "parameter '{param}' of scenario '{scenario}' is {value}, outside {min}..={max}; pick a value in that range"
    )]
    OutOfRange {
        scenario: String,
        param: String,
        value: String,
        min: String,
        max: String,
    },
    #[error(
        "parameter '{param}' of scenario '{scenario}' is '{value}'{}; pick one of: {allowed}",
        suggest(.suggestion)
    )]
    BadChoice {
        scenario: String,
        param: String,
        value: String,
        suggestion: Option<String>,
        allowed: String,
    },
    #[error("parameter '{param}' of scenario '{scenario}' must be {expected}, got {value}")]
    WrongType {
        scenario: String,
        param: String,
        expected: String,
        value: String,
    },
    #[error(
        "scenario '{scenario}' has no check on metric '{metric}'; thresholds exist for: {known}"
    )]
    UnknownThreshold {
        scenario: String,
        metric: String,
        known: String,
    },
    #[error("parameter '{param}' of scenario '{scenario}': {reason}")]
    BadParam {
        scenario: String,
        param: String,
        reason: String,
    },
    #[error("scenario '{scenario}' cannot run here: {reason}")]
    Setup { scenario: String, reason: String },
    /// The workload ran and failed (a benchmark's exit status, or output with no result in it):
    /// [`run`] makes it a failed check, so the cell fails with this reason as evidence.
    #[error("scenario '{scenario}': {reason}")]
    WorkloadFailed { scenario: String, reason: String },
}

fn suggest(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean '{s}'?)"),
        None => String::new(),
    }
}

/// What a scenario needs from its surroundings.
#[derive(Debug, Clone)]
pub struct Env {
    /// CPUs this process may run on (the guest's online CPUs in the VM).
    pub cpus: Vec<u32>,
    /// A writable cgroup v2 directory for the scenario's cgroups, if any.
    pub cgroup: Option<CgroupRoot>,
}

impl Env {
    /// Looks at the running system: the affinity mask, and a cgroup v2 mount we can create in.
    /// The CPUs this process may run on (all online CPUs for PID 1).
    pub fn detect_cpus() -> Vec<u32> {
        workers::allowed_cpus()
    }

    pub fn detect() -> Env {
        Env {
            cpus: workers::allowed_cpus(),
            cgroup: CgroupRoot::detect(),
        }
    }
}

/// One runnable scenario.
pub trait Scenario: Sync {
    fn info(&self) -> ScenarioInfo;
    /// Runs for `duration` and returns the workers' metrics and scenario-specific aggregates;
    /// the common aggregates and the checks are added by [`run`].
    fn run(&self, p: &Params, duration: Duration, env: &Env) -> Result<Outcome, ScenarioError>;
    /// Checks of the parameters beyond their kinds and ranges (e.g. that a pattern compiles),
    /// run on the host before boot and again in the guest.
    fn check(&self, _p: &Params) -> Result<(), ScenarioError> {
        Ok(())
    }
    /// Guest paths the scenario needs that the host must bring in (`-i`).
    fn guest_files(&self, _p: &Params) -> Vec<String> {
        Vec::new()
    }
    /// Whether the work-unit aggregates of the common metrics describe this scenario's workers.
    fn common_aggregates(&self) -> bool {
        true
    }
    /// The meaning of a metric whose name and direction the parameters give (the `command`
    /// scenario's `direction.NAME`), for a metric the catalogue entry does not list.
    fn describe_dynamic(&self, _p: &Params, _metric: &str) -> Option<MetricInfo> {
        None
    }
    /// Host programs the host must pack into the initramfs for this scenario (a packaged
    /// benchmark's binary); none for ktstr's own workloads.
    fn host_programs(&self) -> Vec<HostProgram> {
        Vec::new()
    }
}

/// What a scenario measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub workers: Vec<crate::protocol::WorkerMetrics>,
    pub metrics: BTreeMap<String, f64>,
    /// The tests of a suite-running scenario (see `ScenarioReport::subtests`).
    pub subtests: Vec<crate::protocol::SubResult>,
}

fn all() -> Vec<&'static dyn Scenario> {
    vec![
        &smoke::Smoke,
        &steady::Steady,
        &wake::Wake,
        &mixed::Mixed,
        &cpuset::Cpuset,
        &fork_churn::ForkChurn,
        &oversubscribed::Oversubscribed,
        &steal::Steal,
        &command::Command,
        &hackbench::Hackbench,
        &perf_bench::PerfMessaging,
        &perf_bench::PerfPipe,
        &stress_ng::StressNg,
        &selftests::Selftests,
    ]
}

/// Every scenario's description, in catalogue order.
pub fn catalogue() -> Vec<ScenarioInfo> {
    all().iter().map(|s| s.info()).collect()
}

fn find(name: &str) -> Result<&'static dyn Scenario, ScenarioError> {
    let all = all();
    let names: Vec<String> = all.iter().map(|s| s.info().name).collect();
    all.into_iter()
        .find(|s| s.info().name == name)
        .ok_or_else(|| ScenarioError::UnknownScenario {
            name: name.to_string(),
            suggestion: closest(name, &names),
            known: names.join(", "),
        })
}

/// The closest known name, if it is close enough to be a plausible typo.
pub(crate) fn closest(name: &str, known: &[String]) -> Option<String> {
    known
        .iter()
        .map(|k| (strsim::normalized_damerau_levenshtein(name, k), k))
        .filter(|(score, _)| *score >= 0.5)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.clone())
        .or_else(|| {
            known
                .iter()
                .find(|k| k.starts_with(name) || name.starts_with(k.as_str()))
                .cloned()
        })
}

/// Checks a scenario name and its parameters (names, types, ranges) without running anything.
pub fn validate(
    name: &str,
    params: &BTreeMap<String, serde_json::Value>,
) -> Result<(), ScenarioError> {
    let s = find(name)?;
    let p = Params::resolve(&s.info(), params)?;
    if name == selftests::NAME {
        selftests::check_names_syntax(&p)?;
    }
    s.check(&p)
}

/// Hand-written notes that follow a scenario's generated section in docs/scenarios.md.
pub(crate) fn scenario_notes(name: &str) -> Option<&'static str> {
    match name {
        command::NAME => Some(include_str!("command.md")),
        _ => None,
    }
}

/// Guest paths scenario `name` needs from the host with these parameters (a `command`'s binary):
/// the host checks each was brought in with `-i` before it boots anything.
pub fn guest_files(
    name: &str,
    params: &BTreeMap<String, serde_json::Value>,
) -> Result<Vec<String>, ScenarioError> {
    let s = find(name)?;
    let p = Params::resolve(&s.info(), params)?;
    Ok(s.guest_files(&p))
}

/// What `metric` of scenario `scenario` run with `params` means: the catalogue's entry, or the
/// meaning the parameters give it (the `command` scenario's `direction.NAME`, `unit.NAME`).
pub fn metric_info_with(
    scenario: &str,
    params: &BTreeMap<String, serde_json::Value>,
    metric: &str,
) -> Option<MetricInfo> {
    if let Some(m) = metric_info(scenario, metric) {
        return Some(m);
    }
    let s = find(scenario).ok()?;
    let p = Params::resolve(&s.info(), params).ok()?;
    s.describe_dynamic(&p, metric)
}

/// The host programs scenario `name` needs in the guest (see [`HostProgram`]).
pub fn host_programs(name: &str) -> Result<Vec<HostProgram>, ScenarioError> {
    Ok(find(name)?.host_programs())
}

/// The longest scenario `name` may run: `duration` for every scenario but one that runs a suite
/// of tests, whose bound comes from its tests (the agent's and the host's watchdogs use it).
pub fn time_bound(
    name: &str,
    params: &BTreeMap<String, serde_json::Value>,
    duration: Duration,
) -> Duration {
    if name == selftests::NAME {
        return selftests::time_bound(params).max(duration);
    }
    duration
}

/// Checks that every threshold override names a metric the scenario has a check for.
pub fn validate_thresholds(
    name: &str,
    thresholds: &BTreeMap<String, f64>,
) -> Result<(), ScenarioError> {
    let info = find(name)?.info();
    for metric in thresholds.keys() {
        if !info.checks.iter().any(|c| &c.metric == metric) {
            return Err(ScenarioError::UnknownThreshold {
                scenario: name.to_string(),
                metric: metric.clone(),
                known: info
                    .checks
                    .iter()
                    .map(|c| c.metric.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    Ok(())
}

/// Runs scenario `name` for `duration` and returns the full report, checks evaluated.
pub fn run(
    name: &str,
    params: &BTreeMap<String, serde_json::Value>,
    duration: Duration,
    thresholds: &BTreeMap<String, f64>,
    env: &Env,
) -> Result<ScenarioReport, ScenarioError> {
    let s = find(name)?;
    let info = s.info();
    let p = Params::resolve(&info, params)?;
    s.check(&p)?;
    validate_thresholds(name, thresholds)?;
    let outcome = match s.run(&p, duration, env) {
        Err(ScenarioError::WorkloadFailed { reason, .. }) => {
            return Ok(workload_failed(&info, duration, reason));
        }
        other => other?,
    };
    let mut report = ScenarioReport {
        name: info.name.clone(),
        duration_ms: duration.as_millis() as u64,
        workers: outcome.workers,
        metrics: outcome.metrics,
        checks: Vec::new(),
        subtests: outcome.subtests,
    };
    if s.common_aggregates() {
        metrics::add_common_aggregates(&mut report);
    }
    report
        .metrics
        .insert("clock_resolution_us".into(), clock_resolution_us());
    report.checks = evaluate_checks(&info, &report, thresholds);
    name_failed_subtests(&mut report);
    for c in report.checks.iter_mut() {
        if c.metric == "clock_resolution_us" && !c.passed {
            c.message.push_str(&format!(
                " (clocksource '{}'): gaps and latencies are quantized to the tick and \
                 meaningless; under TCG the clocksource watchdog demotes a TSC whose stated \
                 frequency (tsc_early_khz) is off or whose host is loaded: boot with \
                 tsc=reliable and the host's TSC frequency",
                current_clocksource()
            ));
        }
    }
    Ok(report)
}

/// The report of a workload that failed: no metrics, one failed `workload` check whose message
/// is the reason (with the workload's output), so the agent reports the cell as failed.
fn workload_failed(info: &ScenarioInfo, duration: Duration, reason: String) -> ScenarioReport {
    ScenarioReport {
        name: info.name.clone(),
        duration_ms: duration.as_millis() as u64,
        workers: Vec::new(),
        metrics: BTreeMap::new(),
        checks: vec![crate::protocol::Check {
            metric: "workload".into(),
            worker: None,
            value: 0.0,
            threshold: 1.0,
            passed: false,
            message: format!("scenario '{}': {reason}", info.name),
        }],
        subtests: Vec::new(),
    }
}

/// A failed check of a suite-running scenario names the tests that failed, so the cell's reason
/// says which without opening the result.
fn name_failed_subtests(report: &mut ScenarioReport) {
    let failed: Vec<&str> = report
        .subtests
        .iter()
        .filter(|t| t.status == crate::protocol::SubStatus::Fail)
        .map(|t| t.name.as_str())
        .collect();
    if failed.is_empty() {
        return;
    }
    for c in report.checks.iter_mut().filter(|c| !c.passed) {
        c.message
            .push_str(&format!(" (failed: {})", failed.join(", ")));
    }
}

/// Resolution of CLOCK_MONOTONIC in microseconds: 0.001 with a high-resolution clocksource, the
/// tick (e.g. 4000) when the kernel fell back to jiffies.
pub fn clock_resolution_us() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_getres writes into the timespec we pass.
    unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64) / 1e3
}

fn current_clocksource() -> String {
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The checks every scenario carries: nobody starved, nobody waited too long, and the clock
/// was fine enough for the figures to mean something.
pub(crate) fn progress_checks() -> Vec<CheckInfo> {
    vec![
        CheckInfo {
            metric: "clock_resolution_us".into(),
            op: CheckOp::AtMost,
            // On for the latency scenarios (`wake_checks`); gaps of seconds stay meaningful at a
            // 4 ms tick, so elsewhere it is off unless a threshold is given.
            default_threshold: None,
            per_worker: false,
            doc: "CLOCK_MONOTONIC resolution (clock_getres): a jiffies clocksource makes every \
                  gap and latency figure a multiple of the tick"
                .into(),
        },
        CheckInfo {
            metric: "work_units".into(),
            op: CheckOp::AtLeast,
            default_threshold: Some(1.0),
            per_worker: true,
            doc: "every worker made progress (no starved worker)".into(),
        },
        CheckInfo {
            metric: "longest_gap_ms".into(),
            op: CheckOp::AtMost,
            default_threshold: Some(DEFAULT_MAX_GAP_MS),
            per_worker: true,
            doc: format!(
                "no worker went longer than the threshold without progress (default {DEFAULT_MAX_GAP_MS} ms: \
                 above TCG host-preemption noise, far below the 30 s sched_ext watchdog)"
            ),
        },
        CheckInfo {
            metric: "fairness_spread".into(),
            op: CheckOp::AtMost,
            default_threshold: None,
            per_worker: false,
            doc:
                "(max-min)/mean of work units among equal workers; off unless a threshold is given"
                    .into(),
        },
    ]
}

/// Parameter `workers`-like count whose default is "one per online CPU".
pub(crate) fn int_param(
    name: &str,
    doc: &str,
    min: i64,
    max: i64,
    default: Option<i64>,
    default_doc: &str,
) -> ParamInfo {
    ParamInfo {
        name: name.into(),
        doc: doc.into(),
        kind: ParamKind::Int { min, max },
        default: default.map(serde_json::Value::from),
        default_doc: default_doc.into(),
    }
}

/// A parameter taking one of `values`, `default` unless given.
pub(crate) fn choice_param(name: &str, doc: &str, values: &[&str], default: &str) -> ParamInfo {
    ParamInfo {
        name: name.into(),
        doc: doc.into(),
        kind: ParamKind::Choice {
            values: values.iter().map(|v| v.to_string()).collect(),
        },
        default: Some(serde_json::Value::from(default)),
        default_doc: default.into(),
    }
}

/// A setup failure of scenario `name`.
pub(crate) fn setup_err(name: &str, reason: impl Into<String>) -> ScenarioError {
    ScenarioError::Setup {
        scenario: name.into(),
        reason: reason.into(),
    }
}

/// An optional check: off unless a threshold is given.
pub(crate) fn optional_check(metric: &str, op: CheckOp, per_worker: bool, doc: &str) -> CheckInfo {
    CheckInfo {
        metric: metric.into(),
        op,
        default_threshold: None,
        per_worker,
        doc: doc.into(),
    }
}

/// The latency checks of `wake` and `mixed`; also turns the clock-resolution check on, since
/// microsecond latencies measured with a 4 ms clock are noise.
pub(crate) fn wake_checks(checks: &mut Vec<CheckInfo>) {
    for c in checks.iter_mut() {
        if c.metric == "clock_resolution_us" {
            c.default_threshold = Some(100.0);
        }
    }
    checks.extend(vec![
        optional_check(
            "wake_p99_us",
            CheckOp::AtMost,
            false,
            "p99 wake-up latency over all workers; off unless a threshold is given",
        ),
        optional_check(
            "wake_max_us",
            CheckOp::AtMost,
            false,
            "worst wake-up latency over all workers; off unless a threshold is given",
        ),
    ]);
}

#[cfg(test)]
mod tests;
