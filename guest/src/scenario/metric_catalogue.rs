//! What each metric means: its direction, unit, whether it is a headline figure of its scenario.
//! The host's report and `ktstr run` read this instead of guessing from a metric's name, so a
//! metric is described once, next to the scenario that emits it.

use super::{ScenarioInfo, catalogue};
use serde::{Deserialize, Serialize};

/// Prefix of the sched_ext counters the agent adds to every scenario run with a scheduler
/// (`/sys/kernel/sched_ext/*` and `root/events`, e.g. `scx_enable_seq`): their names come from
/// the kernel, so they are described by one catalogue entry, [`SCHEDULER_COUNTERS`].
pub const SCHEDULER_COUNTER_PREFIX: &str = "scx_";
/// The catalogue name standing for every `scx_*` counter.
pub const SCHEDULER_COUNTERS: &str = "scx_*";

/// Which way a metric moves when things get worse.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MetricDirection {
    HigherIsBetter,
    LowerIsBetter,
    /// A count or a setting that describes the run (`workers`, `clock_resolution_us`, the
    /// scheduler's counters): shown, never compared.
    Counter,
}

impl MetricDirection {
    /// "higher is better", "lower is better", "counter, not compared".
    pub fn describe(self) -> &'static str {
        match self {
            MetricDirection::HigherIsBetter => "higher is better",
            MetricDirection::LowerIsBetter => "lower is better",
            MetricDirection::Counter => "counter, not compared",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricInfo {
    pub name: String,
    /// `us`, `ms`, `units`, `count`, `ratio`, `1/s`, ...: times in `us` and `ms` are what
    /// `ktstr run` rescales.
    pub unit: String,
    pub direction: MetricDirection,
    /// One of the few figures a scheduler developer judges this scenario by; the report puts
    /// them first.
    pub headline: bool,
    pub doc: String,
    /// Reported per worker (in `WorkerMetrics`; some, like `isolation_violations`, also as an
    /// aggregate), or only as an aggregate (in `ScenarioReport.metrics`).
    pub per_worker: bool,
}

/// A metric description (for `ScenarioInfo.metrics`); not a headline until
/// [`mark_headlines`] says so.
pub(crate) fn metric(
    name: &str,
    unit: &str,
    direction: MetricDirection,
    per_worker: bool,
    doc: &str,
) -> MetricInfo {
    MetricInfo {
        name: name.into(),
        unit: unit.into(),
        direction,
        headline: false,
        doc: doc.into(),
        per_worker,
    }
}

/// Makes `names` the headline metrics. Panics on a name that is not in `metrics`: a typo in a
/// scenario's description, caught by every test that lists the catalogue.
pub(crate) fn mark_headlines(metrics: &mut [MetricInfo], names: &[&str]) {
    for n in names {
        let m = metrics
            .iter_mut()
            .find(|m| m.name == *n)
            .unwrap_or_else(|| panic!("headline metric {n} is not in the scenario's metrics"));
        m.headline = true;
    }
}

/// The metrics every scenario reports: the workers' own figures, the aggregates of
/// `metrics::add_common_aggregates`, the clock resolution, and the scheduler's counters.
pub(crate) fn common_metrics() -> Vec<MetricInfo> {
    use MetricDirection::{Counter, HigherIsBetter as Higher, LowerIsBetter as Lower};
    vec![
        metric(
            "work_units",
            "units",
            Higher,
            true,
            "completed chunks of work (iterations for sleepers/ping-pong)",
        ),
        metric(
            "cpu_time_ms",
            "ms",
            Counter,
            true,
            "user+system CPU time of the worker process: what the workload consumed, not how \
             well it was served",
        ),
        metric(
            "cpu_share",
            "ratio",
            Higher,
            true,
            "cpu_time / scenario wall time",
        ),
        metric(
            "longest_gap_ms",
            "ms",
            Lower,
            true,
            "longest interval without progress, measured in the worker (includes time descheduled)",
        ),
        metric(
            "migrations",
            "count",
            Lower,
            true,
            "CPU changes seen between chunks (sched_getcpu)",
        ),
        metric(
            "killed",
            "count",
            Counter,
            true,
            "1 when the worker had to be killed after the exit grace (absent otherwise)",
        ),
        metric("workers", "count", Counter, false, "worker processes run"),
        metric(
            "min_work_units",
            "units",
            Higher,
            false,
            "least work done by any worker",
        ),
        metric(
            "median_work_units",
            "units",
            Higher,
            false,
            "median work units over workers",
        ),
        metric(
            "total_work_units",
            "units",
            Higher,
            false,
            "work units of all workers together (round trips for ping-pong)",
        ),
        metric(
            "min_cpu_share",
            "ratio",
            Higher,
            false,
            "smallest cpu_share of any worker",
        ),
        metric(
            "max_gap_ms",
            "ms",
            Lower,
            false,
            "longest gap over all workers",
        ),
        metric(
            "fairness_spread",
            "ratio",
            Lower,
            false,
            "(max-min)/mean of work units within each group of equal workers; the worst group",
        ),
        metric(
            "total_migrations",
            "count",
            Lower,
            false,
            "sum of migrations",
        ),
        metric(
            "clock_resolution_us",
            "us",
            Counter,
            false,
            "CLOCK_MONOTONIC resolution in the guest (a property of the kernel's clocksource)",
        ),
        metric(
            SCHEDULER_COUNTERS,
            "count",
            Counter,
            false,
            "the sched_ext scheduler's counters at the end (`/sys/kernel/sched_ext`: \
             `scx_enable_seq`, `scx_nr_rejected`, ...; `root/events` lowercased); only with a \
             sched_ext scheduler",
        ),
    ]
    .into_iter()
    .chain(super::bpf_metrics::bpf_metrics())
    .collect()
}

/// The wake-latency metrics shared by `wake` and `mixed`.
pub(crate) fn wake_metrics() -> Vec<MetricInfo> {
    use MetricDirection::{Counter, LowerIsBetter as Lower};
    vec![
        metric("wake_p50_us", "us", Lower, true, "median wake-up latency"),
        metric(
            "wake_p99_us",
            "us",
            Lower,
            true,
            "99th percentile wake-up latency",
        ),
        metric("wake_max_us", "us", Lower, true, "worst wake-up latency"),
        metric(
            "wake_samples",
            "count",
            Counter,
            true,
            "wake-ups the worker timed",
        ),
    ]
}

/// The description of `metric` as scenario `info` reports it: its own entry, or the most
/// specific pattern entry (a name with one `*`, e.g. [`SCHEDULER_COUNTERS`] or
/// `bpf_*_ns_per_run`) that matches it, renamed to `metric`.
pub fn describe_metric(info: &ScenarioInfo, metric: &str) -> Option<MetricInfo> {
    if let Some(m) = info.metrics.iter().find(|m| m.name == metric) {
        return Some(m.clone());
    }
    let mut m = info
        .metrics
        .iter()
        .filter_map(|m| Some((pattern_match(&m.name, metric)?, m)))
        .max_by_key(|(literal_len, _)| *literal_len)?
        .1
        .clone();
    m.name = metric.to_string();
    Some(m)
}

/// For a pattern `pre*suf` that `metric` matches (the `*` standing for at least one
/// character), how many of its characters are literal; `None` otherwise.
fn pattern_match(pattern: &str, metric: &str) -> Option<usize> {
    let (pre, suf) = pattern.split_once('*')?;
    let fits =
        metric.len() > pre.len() + suf.len() && metric.starts_with(pre) && metric.ends_with(suf);
    fits.then_some(pre.len() + suf.len())
}

/// What `metric` of scenario `scenario` means; `None` when either is unknown to this catalogue
/// (e.g. results from a newer agent): show such a metric, never judge it.
pub fn metric_info(scenario: &str, metric: &str) -> Option<MetricInfo> {
    let info = catalogue().into_iter().find(|s| s.name == scenario)?;
    describe_metric(&info, metric)
}
