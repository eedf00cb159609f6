//! From raw worker results to metrics, aggregates and checks.

use super::workers::WorkerResult;
use super::{CheckOp, Outcome, ScenarioInfo};
use crate::protocol::{Check, ScenarioReport, WorkerMetrics};
use std::collections::BTreeMap;
use std::time::Duration;

/// Nearest-rank percentile of an unsorted sample (`p` in 0..=100); `None` when empty.
pub fn percentile(samples: &[u64], p: f64) -> Option<u64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// Per-worker metrics; latency percentiles go into `extra` as `<prefix>_p50_us` etc.
pub fn to_worker_metrics(results: &[WorkerResult], wall: Duration, lat_prefix: &str) -> Outcome {
    let wall_ms = wall.as_secs_f64() * 1e3;
    let workers = results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut extra = BTreeMap::new();
            if r.lat_count > 0 {
                let us = |ns: u64| ns as f64 / 1e3;
                let p = |q| percentile(&r.latencies_ns, q).map(us).unwrap_or(0.0);
                extra.insert(format!("{lat_prefix}_p50_us"), p(50.0));
                extra.insert(format!("{lat_prefix}_p99_us"), p(99.0));
                extra.insert(format!("{lat_prefix}_max_us"), us(r.lat_max_ns));
                extra.insert(format!("{lat_prefix}_samples"), r.lat_count as f64);
            }
            if r.killed {
                extra.insert("killed".into(), 1.0);
            }
            WorkerMetrics {
                id: i as u32,
                group: r.group.clone(),
                work_units: r.work_units,
                cpu_time_ms: r.cpu_time_ms,
                cpu_share: if wall_ms > 0.0 {
                    r.cpu_time_ms / wall_ms
                } else {
                    0.0
                },
                longest_gap_ms: r.longest_gap_ms,
                migrations: r.migrations,
                extra,
            }
        })
        .collect();
    let mut metrics = BTreeMap::new();
    let all: Vec<u64> = results
        .iter()
        .flat_map(|r| r.latencies_ns.iter().copied())
        .collect();
    if !all.is_empty() {
        let us = |ns: u64| ns as f64 / 1e3;
        for (q, name) in [(50.0, "p50"), (99.0, "p99")] {
            let v = percentile(&all, q).map(us).unwrap_or(0.0);
            metrics.insert(format!("{lat_prefix}_{name}_us"), v);
        }
        let max = results.iter().map(|r| r.lat_max_ns).max().unwrap_or(0);
        metrics.insert(format!("{lat_prefix}_max_us"), us(max));
    }
    Outcome {
        workers,
        metrics,
        subtests: Vec::new(),
    }
}

/// Aggregates every scenario reports: min/median work, max gap, fairness spread, migrations.
pub fn add_common_aggregates(report: &mut ScenarioReport) {
    let w = &report.workers;
    if w.is_empty() {
        return;
    }
    let mut units: Vec<u64> = w.iter().map(|w| w.work_units).collect();
    units.sort_unstable();
    let m = &mut report.metrics;
    m.insert("workers".into(), w.len() as f64);
    m.insert("min_work_units".into(), units[0] as f64);
    m.insert(
        "median_work_units".into(),
        percentile(&units, 50.0).unwrap_or(0) as f64,
    );
    m.insert(
        "max_gap_ms".into(),
        w.iter().map(|w| w.longest_gap_ms).fold(0.0, f64::max),
    );
    m.insert(
        "total_migrations".into(),
        w.iter().map(|w| w.migrations as f64).sum(),
    );
    m.insert(
        "total_work_units".into(),
        w.iter().map(|w| w.work_units as f64).sum(),
    );
    m.insert(
        "min_cpu_share".into(),
        w.iter().map(|w| w.cpu_share).fold(f64::INFINITY, f64::min),
    );
    m.insert("fairness_spread".into(), fairness_spread(w));
}

/// The worst (max-min)/mean of work units among workers of the same group.
pub fn fairness_spread(workers: &[WorkerMetrics]) -> f64 {
    let mut groups: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for w in workers {
        groups
            .entry(w.group.as_str())
            .or_default()
            .push(w.work_units as f64);
    }
    groups
        .values()
        .filter(|v| v.len() > 1)
        .map(|v| {
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let max = v.iter().copied().fold(f64::MIN, f64::max);
            let min = v.iter().copied().fold(f64::MAX, f64::min);
            if mean > 0.0 { (max - min) / mean } else { 0.0 }
        })
        .fold(0.0, f64::max)
}

fn worker_value(w: &WorkerMetrics, metric: &str) -> Option<f64> {
    Some(match metric {
        "work_units" => w.work_units as f64,
        "cpu_time_ms" => w.cpu_time_ms,
        "cpu_share" => w.cpu_share,
        "longest_gap_ms" => w.longest_gap_ms,
        "migrations" => w.migrations as f64,
        other => return w.extra.get(other).copied(),
    })
}

/// Evaluates the scenario's checks (defaults, overridden by `thresholds`) against the report.
pub fn evaluate_checks(
    info: &ScenarioInfo,
    report: &ScenarioReport,
    thresholds: &BTreeMap<String, f64>,
) -> Vec<Check> {
    let mut out = Vec::new();
    for c in &info.checks {
        let Some(threshold) = thresholds.get(&c.metric).copied().or(c.default_threshold) else {
            continue;
        };
        let ok = |v: f64| match c.op {
            CheckOp::AtLeast => v >= threshold,
            CheckOp::AtMost => v <= threshold,
        };
        let rel = match c.op {
            CheckOp::AtLeast => "below the minimum",
            CheckOp::AtMost => "above the maximum",
        };
        if c.per_worker {
            let mut any = false;
            for w in &report.workers {
                let Some(v) = worker_value(w, &c.metric) else {
                    continue;
                };
                any = true;
                let passed = ok(v);
                // Passing per-worker checks are folded into one line to keep reports short.
                if !passed {
                    out.push(Check {
                        metric: c.metric.clone(),
                        worker: Some(w.id),
                        value: v,
                        threshold,
                        passed,
                        message: format!(
                            "worker {} ({}): {} = {} is {rel} {threshold}",
                            w.id,
                            w.group,
                            c.metric,
                            fmt(v)
                        ),
                    });
                }
            }
            if any && !out.iter().any(|k| k.metric == c.metric && !k.passed) {
                let worst = report
                    .workers
                    .iter()
                    .filter_map(|w| worker_value(w, &c.metric))
                    .reduce(|a, b| match c.op {
                        CheckOp::AtLeast => a.min(b),
                        CheckOp::AtMost => a.max(b),
                    })
                    .unwrap_or(0.0);
                out.push(Check {
                    metric: c.metric.clone(),
                    worker: None,
                    value: worst,
                    threshold,
                    passed: true,
                    message: format!(
                        "all {} workers: {} within {threshold} (worst {})",
                        report.workers.len(),
                        c.metric,
                        fmt(worst)
                    ),
                });
            }
        } else if let Some(&v) = report.metrics.get(&c.metric) {
            let passed = ok(v);
            out.push(Check {
                metric: c.metric.clone(),
                worker: None,
                value: v,
                threshold,
                passed,
                message: if passed {
                    format!("{} = {} within {threshold}", c.metric, fmt(v))
                } else {
                    format!("{} = {} is {rel} {threshold}", c.metric, fmt(v))
                },
            });
        }
    }
    out
}

fn fmt(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
