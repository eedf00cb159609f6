//! `ktstr report RUN1 RUN2 ... RUNn`: each cell's metrics across runs, in the order given, with
//! a change point flagged where a series shifts ([`crate::changepoint`]). Rendered by
//! [`crate::history_render`] to the terminal, history.md, history.json (this struct) and
//! history.html.
//!
//! A cell is the same across runs when its kernel/config column, scheduler, scenario and
//! topology are; runs with different matrices are compared on the cells they share, and the
//! cells some runs lack are listed.

use crate::changepoint::{PERMUTATIONS, best_split};
use crate::report::{Direction, MetricTreatment, latest_per_key, treatment};
use crate::result::Outcome;
use crate::stats::median;
use crate::store::Loaded;
use ktstr_guest::scenario::catalogue;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Bumped when a field of history.json changes meaning or disappears.
pub const HISTORY_FORMAT_VERSION: u32 = 1;
/// The files `--out DIR` receives.
pub const HISTORY_FILES: [&str; 3] = ["history.md", "history.json", "history.html"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRun {
    /// `R1`, `R2`, ... in the order of the series.
    pub label: String,
    /// The run directory as given.
    pub dir: String,
    /// Unix seconds, from the run record.
    pub started_at: u64,
    pub ktstr_version: String,
}

/// A cell's identity across runs (no repeat, no duration).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CellIdentity {
    pub scenario: String,
    pub topology: String,
    pub sched: String,
    /// Kernel/configs column id, e.g. `6.12/sched_ext`.
    pub column: String,
}

impl CellIdentity {
    /// `scx_simple @ 6.12/sched_ext 1n1l2c1t steady`
    pub fn label(&self) -> String {
        format!(
            "{} @ {} {} {}",
            self.sched, self.column, self.topology, self.scenario
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub median: f64,
    pub samples: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Worse,
    Better,
    /// The metric has no known direction: only up or down.
    Undirected,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangePoint {
    /// Index into `runs` of the first run after the change.
    pub run: usize,
    /// Its label (`R4`).
    pub run_label: String,
    pub before_median: f64,
    pub after_median: f64,
    /// (after - before) / |before| * 100; `None` when the median before is 0.
    pub delta_pct: Option<f64>,
    /// Permutation p-value of the split.
    pub p: f64,
    pub kind: ChangeKind,
    /// The level went up.
    pub up: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub cell: CellIdentity,
    pub metric: String,
    pub direction: Direction,
    pub unit: Option<String>,
    pub headline: bool,
    /// One per run; `None` is a gap (the cell is absent, or gave no value for the metric).
    pub points: Vec<Option<Point>>,
    pub change: Option<ChangePoint>,
}

/// A kernel/configs column met in the runs, with the short label renderings show
/// ([`crate::labels`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryColumn {
    pub id: String,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissingCell {
    pub cell: CellIdentity,
    /// Labels of the runs without it.
    pub absent_from: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryTest {
    pub name: String,
    pub method: String,
    pub permutations: usize,
    pub alpha: f64,
    pub min_effect: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistorySummary {
    pub series: usize,
    pub changes: usize,
    pub worse: usize,
    pub better: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub format_version: u32,
    pub ktstr_version: String,
    pub runs: Vec<HistoryRun>,
    pub columns: Vec<HistoryColumn>,
    pub test: HistoryTest,
    pub summary: HistorySummary,
    /// Headline metrics first within each cell.
    pub series: Vec<Series>,
    /// Cells some runs lack (compared where present, shown as gaps elsewhere).
    pub missing: Vec<MissingCell>,
    /// Notices from reading the stores.
    pub notices: Vec<String>,
}

impl History {
    /// Exit status 1 when true: some series got worse at a change point.
    pub fn worse(&self) -> bool {
        self.summary.worse > 0
    }

    /// The cell's label with its column abbreviated.
    pub fn cell_label(&self, c: &CellIdentity) -> String {
        let column = self
            .columns
            .iter()
            .find(|col| col.id == c.column)
            .map_or(c.column.as_str(), |col| col.label.as_str());
        format!("{} @ {column} {} {}", c.sched, c.topology, c.scenario)
    }
}

/// A run to put in the series: its directory as given and what its store holds.
pub struct RunInput<'a> {
    pub dir: String,
    pub loaded: &'a Loaded,
}

type SeriesKey = (CellIdentity, String);

/// What the runs hold: samples[(cell, metric)][run], and which runs have each cell.
#[derive(Default)]
struct Gathered {
    samples: BTreeMap<SeriesKey, Vec<Vec<f64>>>,
    treatments: BTreeMap<SeriesKey, MetricTreatment>,
    present: BTreeMap<CellIdentity, BTreeSet<usize>>,
    /// (column id, kernel spec) in the order met.
    columns: Vec<(String, String)>,
}

fn gather(runs: &[RunInput]) -> Gathered {
    let catalogue = catalogue();
    let mut g = Gathered::default();
    for (ri, run) in runs.iter().enumerate() {
        let mut records = latest_per_key(run.loaded);
        records.sort_by_key(|r| r.key.repeat);
        for r in records {
            let cell = CellIdentity {
                scenario: r.key.scenario.label(),
                topology: r.key.topology.clone(),
                sched: r.key.sched.clone(),
                column: r.key.column().label(),
            };
            if !g.columns.iter().any(|(id, _)| *id == cell.column) {
                g.columns.push((cell.column.clone(), r.key.kernel.clone()));
            }
            g.present.entry(cell.clone()).or_default().insert(ri);
            if !matches!(r.result.outcome, Outcome::Pass | Outcome::Fail) {
                continue;
            }
            let Some(sc) = r.result.report.as_ref().and_then(|g| g.scenario.as_ref()) else {
                continue;
            };
            for (metric, v) in &sc.metrics {
                let key = (cell.clone(), metric.clone());
                let treat = g.treatments.entry(key.clone()).or_insert_with(|| {
                    treatment(
                        &catalogue,
                        &r.key.scenario.name,
                        &r.key.scenario.params,
                        metric,
                    )
                });
                if *treat == MetricTreatment::Counter || !v.is_finite() {
                    continue;
                }
                g.samples
                    .entry(key)
                    .or_insert_with(|| vec![Vec::new(); runs.len()])[ri]
                    .push(*v);
            }
        }
    }
    g
}

fn change_point(
    samples: &[Vec<f64>],
    direction: Direction,
    runs: &[HistoryRun],
    alpha: f64,
    min_effect: f64,
) -> Option<ChangePoint> {
    let split = best_split(samples, PERMUTATIONS)?;
    if !split.is_change(alpha, min_effect) {
        return None;
    }
    let up = split.after_median > split.before_median;
    let kind = match (direction, up) {
        (Direction::Unknown, _) => ChangeKind::Undirected,
        (Direction::HigherIsBetter, true) | (Direction::LowerIsBetter, false) => ChangeKind::Better,
        _ => ChangeKind::Worse,
    };
    Some(ChangePoint {
        run: split.at,
        run_label: runs[split.at].label.clone(),
        before_median: split.before_median,
        after_median: split.after_median,
        delta_pct: split.relative_change().map(|r| r * 100.0),
        p: split.p,
        kind,
        up,
    })
}

/// Cells absent from some runs, with the labels of those runs.
fn missing_cells(
    present: &BTreeMap<CellIdentity, BTreeSet<usize>>,
    runs: &[HistoryRun],
) -> Vec<MissingCell> {
    present
        .iter()
        .filter(|(_, p)| p.len() < runs.len())
        .map(|(cell, p)| MissingCell {
            cell: cell.clone(),
            absent_from: (0..runs.len())
                .filter(|i| !p.contains(i))
                .map(|i| runs[i].label.clone())
                .collect(),
        })
        .collect()
}

impl HistorySummary {
    fn of(series: &[Series]) -> HistorySummary {
        let changes = || series.iter().filter_map(|s| s.change.as_ref());
        HistorySummary {
            series: series.len(),
            changes: changes().count(),
            worse: changes().filter(|c| c.kind == ChangeKind::Worse).count(),
            better: changes().filter(|c| c.kind == ChangeKind::Better).count(),
        }
    }
}

/// The history of `runs` in the order given. Cells present in fewer than two runs have no
/// series (they are listed as missing).
pub fn history(runs: &[RunInput], alpha: f64, min_effect: f64) -> History {
    let labels: Vec<HistoryRun> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| HistoryRun {
            label: format!("R{}", i + 1),
            dir: r.dir.clone(),
            started_at: r.loaded.run.started_at,
            ktstr_version: r.loaded.run.ktstr_version.clone(),
        })
        .collect();
    let g = gather(runs);
    let shared = |c: &CellIdentity| g.present.get(c).is_some_and(|p| p.len() >= 2);
    let candidates: Vec<(&SeriesKey, &Vec<Vec<f64>>)> = g
        .samples
        .iter()
        .filter(|((cell, _), _)| shared(cell))
        .collect();
    // The permutation tests dominate the time of a large history: one series per task.
    let mut series: Vec<Series> = candidates
        .into_par_iter()
        .filter_map(|(key, samples)| match &g.treatments[key] {
            MetricTreatment::Table {
                direction,
                unit,
                headline,
            } => Some(Series {
                cell: key.0.clone(),
                metric: key.1.clone(),
                direction: *direction,
                unit: unit.clone(),
                headline: *headline,
                points: samples
                    .iter()
                    .map(|xs| {
                        median(xs).map(|m| Point {
                            median: m,
                            samples: xs.clone(),
                        })
                    })
                    .collect(),
                change: change_point(samples, *direction, &labels, alpha, min_effect),
            }),
            MetricTreatment::Counter => None,
        })
        .collect();
    series
        .sort_by(|a, b| (&a.cell, !a.headline, &a.metric).cmp(&(&b.cell, !b.headline, &b.metric)));
    let missing = missing_cells(&g.present, &labels);
    let summary = HistorySummary::of(&series);
    let ids: Vec<(&str, &str)> = g
        .columns
        .iter()
        .map(|(id, kernel)| (id.as_str(), kernel.as_str()))
        .collect();
    let columns = ids
        .iter()
        .zip(crate::labels::abbreviate(&ids))
        .map(|((id, _), label)| HistoryColumn {
            id: id.to_string(),
            label,
        })
        .collect();
    History {
        format_version: HISTORY_FORMAT_VERSION,
        ktstr_version: env!("CARGO_PKG_VERSION").to_string(),
        runs: labels,
        columns,
        test: HistoryTest {
            name: "single change point: max |z| of Mann-Whitney U over splits".into(),
            method: format!(
                "pooled samples of the runs before vs after each split (two runs a side from four runs on); p from {PERMUTATIONS} permutations of the samples over the runs; a change needs p <= alpha and |median change| >= min_effect"
            ),
            permutations: PERMUTATIONS,
            alpha,
            min_effect,
        },
        summary,
        series,
        missing,
        notices: runs
            .iter()
            .filter_map(|r| r.loaded.notice.clone())
            .collect(),
    }
}
