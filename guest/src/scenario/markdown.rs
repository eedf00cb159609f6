//! docs/scenarios.md, generated from the catalogue so that it cannot drift from the code.

use super::{CheckOp, MetricInfo, ParamKind, ScenarioInfo, catalogue, common_metrics};
use std::fmt::Write;

/// The catalogue as Markdown (docs/scenarios.md is generated from this).
pub fn catalogue_markdown() -> String {
    let mut s = String::from(
        "# Scenarios\n\n<!-- generated: cargo run -p ktstr-guest --example catalogue_md > docs/scenarios.md -->\n\n\
         Every scenario runs forked worker processes for `--duration`, measures each worker \
         (work units, CPU time, longest gap without progress measured in the worker itself, \
         migrations) and evaluates checks. Parameters: `--param NAME=VALUE`. Thresholds are \
         overridden by metric name; a check without a default is off until given a threshold.\n\n\
         The default gap bound is 2000 ms: above the host-preemption noise of QEMU TCG on a \
         shared host, far below the 30 s sched_ext watchdog. When a scheduler was started, \
         the check `scheduler_attached` (it is still attached at the end) is added. \
         `clock_resolution_us` is checked by default in the latency scenarios (`wake`, \
         `mixed`): microsecond latencies measured with a jiffies clock are noise.\n\n\
         The packaged benchmarks (`hackbench`, `perf-sched-messaging`, `perf-sched-pipe`, \
         `stress-ng`) run the host's real programs in the guest instead of ktstr's workers. One \
         that exits non-zero, overruns the duration by 20 s, or prints nothing its parser reads \
         fails the check `workload`, whose message carries the benchmark's output (all of it \
         goes to the guest console). A file brought with `-i FILE:GUEST_PATH` at a benchmark's \
         guest path (e.g. `-i ./hackbench:/usr/bin/hackbench`, the user's own build) replaces \
         the host's program, which then need not be installed.\n",
    );
    let common = common_metrics();
    s.push_str(
        "\n## Metrics\n\nThe report compares a metric only in its direction: higher is better, or lower \
         is better; a counter describes the run and is shown, never compared (`ktstr report` \
         draws no table for it). Headline metrics are the figures a scenario is judged by; the \
         report shows them first. Every scenario reports these (per-worker ones in each \
         worker's record, the others as aggregates):\n\n",
    );
    metric_table(&mut s, &common);
    for i in catalogue() {
        let _ = write!(s, "\n## `{}`\n\n{}.", i.name, i.purpose);
        if i.needs_cgroup {
            s.push_str(" Needs a writable cgroup v2 hierarchy.");
        }
        write_host_programs(&mut s, &i.name);
        s.push_str("\n\n");
        if i.params.is_empty() {
            s.push_str("Parameters: none.\n\n");
        } else {
            s.push_str("| parameter | range | default | meaning |\n|---|---|---|---|\n");
            for p in &i.params {
                let range = match &p.kind {
                    ParamKind::Int { min, max } => format!("{min}..={max}"),
                    ParamKind::Float { min, max } => format!("{min}..={max}"),
                    ParamKind::Choice { values } | ParamKind::Keyed { values }
                        if !values.is_empty() =>
                    {
                        values
                            .iter()
                            .map(|v| format!("`{v}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                    ParamKind::Choice { .. } | ParamKind::Keyed { .. } | ParamKind::Text => {
                        "text".into()
                    }
                };
                let name = match p.kind {
                    ParamKind::Keyed { .. } => format!("{}.NAME", p.name),
                    _ => p.name.clone(),
                };
                let _ = writeln!(s, "| `{name}` | {range} | {} | {} |", p.default_doc, p.doc);
            }
            s.push('\n');
        }
        s.push_str("| check | passes when | default threshold | meaning |\n|---|---|---|---|\n");
        for c in &i.checks {
            let op = match c.op {
                CheckOp::AtLeast => ">=",
                CheckOp::AtMost => "<=",
            };
            let scope = if c.per_worker {
                "each worker's"
            } else {
                "the aggregate"
            };
            let dflt = c
                .default_threshold
                .map(|t| t.to_string())
                .unwrap_or_else(|| "off".into());
            let _ = writeln!(
                s,
                "| `{}` | {scope} value {op} threshold | {dflt} | {} |",
                c.metric, c.doc
            );
        }
        write_scenario_metrics(&mut s, &i, &common);
        if let Some(notes) = super::scenario_notes(&i.name) {
            s.push('\n');
            s.push_str(notes);
        }
    }
    s
}

/// The scenario's headline metrics, then a table of the metrics it adds to the common ones.
fn write_scenario_metrics(s: &mut String, info: &ScenarioInfo, common: &[MetricInfo]) {
    let headlines: Vec<String> = info
        .metrics
        .iter()
        .filter(|m| m.headline)
        .map(|m| format!("`{}` ({})", m.name, m.direction.describe()))
        .collect();
    if headlines.is_empty() {
        s.push_str("\nHeadline metrics: the ones the user gives a direction.\n");
    } else {
        let _ = writeln!(s, "\nHeadline metrics: {}.", headlines.join(", "));
    }
    let own: Vec<MetricInfo> = info
        .metrics
        .iter()
        .filter(|m| !common.iter().any(|c| c.name == m.name))
        .cloned()
        .collect();
    // A scenario without workers (a packaged benchmark, one that runs a suite) reports few of
    // the common metrics.
    let has_common = common
        .iter()
        .all(|c| info.metrics.iter().any(|m| m.name == c.name));
    if !has_common {
        s.push_str("\nMetrics (besides `clock_resolution_us`):\n\n");
        metric_table(s, &own);
    } else if own.is_empty() {
        s.push_str("\nMetrics: the common ones.\n");
    } else {
        s.push_str("\nMetrics: the common ones, and\n\n");
        metric_table(s, &own);
    }
}

/// "Runs the host's `hackbench` (Debian package `rt-tests`) ...": what the host packs.
fn write_host_programs(s: &mut String, scenario: &str) {
    let programs = super::host_programs(scenario).unwrap_or_default();
    if programs.is_empty() {
        return;
    }
    let list: Vec<String> = programs
        .iter()
        .map(|p| {
            format!(
                "`{}` (Debian package `{}`; host `PATH` lookup of {})",
                p.guest_path,
                p.package,
                p.candidates
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    let _ = write!(
        s,
        " Packs the host's {} into the guest with its shared libraries; when it is missing on \
         the host the run stops before boot (exit 2) naming the package.",
        list.join(", ")
    );
}

fn metric_table(s: &mut String, metrics: &[MetricInfo]) {
    s.push_str("| metric | direction | unit | per worker | meaning |\n|---|---|---|---|---|\n");
    for m in metrics {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} |",
            m.name,
            m.direction.describe(),
            m.unit,
            if m.per_worker { "yes" } else { "no" },
            m.doc
        );
    }
}
