//! The comparison report model, built from stored cell records. Rendered to the terminal,
//! report.md, report.json (this struct; schema in docs/report-schema.md), report.html, junit.xml.

use crate::plan::{CellKey, Column};
use crate::provenance::{Provenance, RunSource};
use crate::result::Outcome;
use crate::stats::{UMethod, mann_whitney_greater, median};
use crate::store::{CellRecord, Loaded};
use ktstr_guest::scenario::{
    MetricDirection, ScenarioInfo, catalogue, describe_metric, metric_info_with,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped when a field of report.json changes meaning or disappears (additions do not bump it).
pub const REPORT_FORMAT_VERSION: u32 = 1;
/// The scheduler row every other row is compared with, when present.
pub const EEVDF: &str = "eevdf";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    HigherIsBetter,
    LowerIsBetter,
    /// Not in the scenario catalogue (e.g. from a newer agent): shown, never flagged.
    Unknown,
}

/// How the report treats one metric of one scenario. Decided by the guest's scenario catalogue
/// ([`ktstr_guest::scenario::describe_metric`]), never by the metric's name.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricTreatment {
    /// A table of its own, compared in `direction`.
    Table {
        direction: Direction,
        /// `None` when the catalogue does not know the metric.
        unit: Option<String>,
        headline: bool,
    },
    /// A counter describing the run (`workers`, `clock_resolution_us`, `scx_*`): no table, never
    /// compared.
    Counter,
}

/// What the catalogue says about `metric` of scenario `scenario` (its name, without parameters).
pub fn metric_treatment(scenario: &str, metric: &str) -> MetricTreatment {
    treatment(&catalogue(), scenario, &BTreeMap::new(), metric)
}

/// `params` are the cell's scenario parameters (JSON text): they give a `command` metric its
/// meaning (`direction.NAME`, `unit.NAME`), which travels with every result in its cell key.
pub(crate) fn treatment(
    catalogue: &[ScenarioInfo],
    scenario: &str,
    params: &BTreeMap<String, String>,
    metric: &str,
) -> MetricTreatment {
    let info = catalogue
        .iter()
        .find(|s| s.name == scenario)
        .and_then(|s| describe_metric(s, metric))
        .or_else(|| {
            let params = params
                .iter()
                .map(|(k, v)| {
                    let v = serde_json::from_str(v)
                        .unwrap_or_else(|_| serde_json::Value::String(v.clone()));
                    (k.clone(), v)
                })
                .collect();
            metric_info_with(scenario, &params, metric)
        });
    let Some(info) = info else {
        return MetricTreatment::Table {
            direction: Direction::Unknown,
            unit: None,
            headline: false,
        };
    };
    let direction = match info.direction {
        MetricDirection::HigherIsBetter => Direction::HigherIsBetter,
        MetricDirection::LowerIsBetter => Direction::LowerIsBetter,
        MetricDirection::Counter => return MetricTreatment::Counter,
    };
    MetricTreatment::Table {
        direction,
        unit: Some(info.unit),
        headline: info.headline,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// One-sided significance level of the rank test.
    pub alpha: f64,
    /// Minimum |median delta| relative to the baseline median, e.g. 0.05 = 5 %.
    pub min_effect: f64,
    /// Both samples need at least this many repeats before anything is flagged.
    pub min_repeats: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            alpha: 0.05,
            min_effect: 0.05,
            min_repeats: 3,
        }
    }
}

impl Thresholds {
    /// The defaults with another minimum effect (`--min-effect`).
    pub fn with_min_effect(min_effect: f64) -> Thresholds {
        Thresholds {
            min_effect,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestInfo {
    pub name: String,
    pub alternative: String,
    pub method: String,
    #[serde(flatten)]
    pub thresholds: Thresholds,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mode {
    Single {
        dir: String,
    },
    /// `ktstr report A B`: every `b:X` column is compared with `a:X`.
    Compare {
        a: String,
        b: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportColumn {
    /// `6.12/sched_ext`, or `a:6.12/sched_ext` in compare mode.
    pub id: String,
    pub kernel: String,
    pub configs: Vec<String>,
    /// Column this one is compared with.
    pub baseline: Option<String>,
    /// What renderings show: the id with a long kernel spec abbreviated ([`crate::labels`]);
    /// unique within the report.
    #[serde(default)]
    pub label: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub cells: usize,
    pub pass: usize,
    pub fail: usize,
    pub skipped: usize,
    pub crashed: usize,
    pub timeout: usize,
    pub error: usize,
    pub regressions: usize,
}

impl Summary {
    /// Exit status 1 when true: a cell that did not pass or skip, or a regression.
    pub fn failed(&self) -> bool {
        self.fail + self.crashed + self.timeout + self.error + self.regressions > 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Regression,
    Improvement,
    /// Tested, not past both the significance level and the minimum effect.
    NoChange,
    /// Fewer repeats than `min_repeats` on either side: only the delta is shown.
    TooFewRepeats,
    /// The metric has no known direction.
    Undirected,
    /// Against `eevdf` only: significantly worse than EEVDF on the same kernel. Informative (a
    /// scheduler is not expected to match EEVDF everywhere); it does not fail the run.
    WorseThanEevdf,
    /// Against `eevdf` only: significantly better than EEVDF on the same kernel.
    BetterThanEevdf,
}

/// A regression is a change of the kernel or scheduler under test against its baseline column;
/// a difference from EEVDF is reported under its own verdicts instead.
fn against_eevdf(mut c: Comparison) -> Comparison {
    c.verdict = match c.verdict {
        Verdict::Regression => Verdict::WorseThanEevdf,
        Verdict::Improvement => Verdict::BetterThanEevdf,
        v => v,
    };
    c
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Column id or `eevdf`.
    pub against: String,
    pub against_median: f64,
    /// (median - against_median) / |against_median| * 100; `None` when the baseline median is 0.
    pub delta_pct: Option<f64>,
    /// One-sided p-value for "worse than the baseline".
    pub p_worse: Option<f64>,
    pub method: Option<UMethod>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub column: String,
    pub samples: Vec<f64>,
    pub median: f64,
    pub vs_baseline: Option<Comparison>,
    pub vs_eevdf: Option<Comparison>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub sched: String,
    pub stats: Vec<Stat>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricTable {
    pub scenario: String,
    pub topology: String,
    pub metric: String,
    pub direction: Direction,
    /// From the scenario catalogue; `None` for a metric it does not know.
    #[serde(default)]
    pub unit: Option<String>,
    /// One of the figures the scenario is judged by (listed first).
    #[serde(default)]
    pub headline: bool,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellStatus {
    pub column: String,
    pub sched: String,
    pub scenario: String,
    pub topology: String,
    pub repeat: u32,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub backend: String,
    pub wall_ms: f64,
    /// Console log path and output tails, for report.html's cell sections.
    #[serde(
        default,
        skip_serializing_if = "crate::evidence::CellEvidence::is_empty"
    )]
    pub evidence: crate::evidence::CellEvidence,
}

impl CellStatus {
    pub fn label(&self) -> String {
        format!(
            "{} @ {} {} {} #{}",
            self.sched, self.column, self.topology, self.scenario, self.repeat
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    pub scenario: String,
    pub topology: String,
    pub metric: String,
    pub sched: String,
    pub column: String,
    pub comparison: Comparison,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format_version: u32,
    pub ktstr_version: String,
    pub mode: Mode,
    pub test: TestInfo,
    pub columns: Vec<ReportColumn>,
    pub summary: Summary,
    /// The summary grid every rendering opens with ([`crate::summary`]), for readers of the
    /// JSON alone.
    #[serde(default)]
    pub summary_grid: Vec<crate::summary::StoredRow>,
    pub tables: Vec<MetricTable>,
    pub cells: Vec<CellStatus>,
    pub regressions: Vec<Regression>,
    /// Notices from reading the store (e.g. a torn last line was ignored).
    pub notices: Vec<String>,
    /// Suite-running scenarios' tests per kernel column ([`crate::subtests`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suites: Vec<crate::subtests::SuiteTable>,
    /// What was compared: kernels, config differences, schedulers, host.
    #[serde(default)]
    pub provenance: Provenance,
}

impl Report {
    /// The label renderings show for column `id` (the id itself when unknown).
    pub fn label<'a>(&'a self, id: &'a str) -> &'a str {
        self.columns
            .iter()
            .find(|c| c.id == id)
            .map_or(id, |c| if c.label.is_empty() { &c.id } else { &c.label })
    }
}

fn test_info(t: &Thresholds) -> TestInfo {
    TestInfo {
        name: "Mann-Whitney U".into(),
        alternative: "one-sided, in the metric's worse direction".into(),
        method: "exact null distribution when there are no ties and n1+n2 <= 40; otherwise normal approximation with tie and continuity correction".into(),
        thresholds: t.clone(),
    }
}

/// One column of input records: (report column, its baseline, records).
struct Input<'a> {
    column: ReportColumn,
    records: Vec<&'a CellRecord>,
}

/// Report for one run. `baseline` as in the spec (kernel or KERNEL/CONFIGS); `None` = first kernel.
pub fn single(dir: &str, loaded: &Loaded, baseline: Option<&str>, t: &Thresholds) -> Report {
    let spec = &loaded.run.spec;
    let base = baseline
        .map(String::from)
        .or_else(|| spec.baseline.clone())
        .and_then(|b| crate::plan::resolve_baseline_spec(&b, spec))
        .unwrap_or_else(|| (spec.kernels.first().cloned().unwrap_or_default(), None));
    let columns = columns_of(loaded);
    let inputs = columns
        .iter()
        .map(|c| {
            let bcol = Column {
                kernel: base.0.clone(),
                configs: base.1.clone().unwrap_or_else(|| c.configs.clone()),
            };
            let baseline = (bcol != *c && columns.contains(&bcol)).then(|| bcol.label());
            Input {
                column: ReportColumn {
                    id: c.label(),
                    kernel: c.kernel.clone(),
                    configs: c.configs.clone(),
                    baseline,
                    label: String::new(),
                },
                records: latest_per_key(loaded)
                    .into_iter()
                    .filter(|r| r.key.column() == *c)
                    .collect(),
            }
        })
        .collect();
    let mut r = build(
        Mode::Single { dir: dir.into() },
        &loaded.run.ktstr_version,
        inputs,
        loaded.notice.iter().cloned().collect(),
        t,
    );
    r.provenance = crate::provenance::collect(&[RunSource {
        prefix: "",
        dir: existing_dir(dir),
        loaded,
    }]);
    r.summary_grid = crate::summary::stored_grid(&r);
    r
}

/// `dir` as a path when it is a directory (its recorded kernel configs are read from it).
fn existing_dir(dir: &str) -> Option<&std::path::Path> {
    let p = std::path::Path::new(dir);
    p.is_dir().then_some(p)
}

/// `ktstr report A B`: columns `a:X` and `b:X`; each `b:X` is compared with `a:X`.
pub fn compare(a_dir: &str, a: &Loaded, b_dir: &str, b: &Loaded, t: &Thresholds) -> Report {
    let mut inputs = Vec::new();
    let a_cols = columns_of(a);
    for (tag, loaded) in [("a", a), ("b", b)] {
        for c in columns_of(loaded) {
            let baseline = (tag == "b" && a_cols.contains(&c)).then(|| format!("a:{}", c.label()));
            inputs.push(Input {
                column: ReportColumn {
                    id: format!("{tag}:{}", c.label()),
                    kernel: c.kernel.clone(),
                    configs: c.configs.clone(),
                    baseline,
                    label: String::new(),
                },
                records: latest_per_key(loaded)
                    .into_iter()
                    .filter(|r| r.key.column() == c)
                    .collect(),
            });
        }
    }
    let notices = a.notice.iter().chain(&b.notice).cloned().collect();
    let mut r = build(
        Mode::Compare {
            a: a_dir.into(),
            b: b_dir.into(),
        },
        &b.run.ktstr_version,
        inputs,
        notices,
        t,
    );
    r.provenance = crate::provenance::collect(&[
        RunSource {
            prefix: "a:",
            dir: existing_dir(a_dir),
            loaded: a,
        },
        RunSource {
            prefix: "b:",
            dir: existing_dir(b_dir),
            loaded: b,
        },
    ]);
    r.summary_grid = crate::summary::stored_grid(&r);
    r
}

/// One record per cell key (the last stored): a cell re-run with rebuilt inputs (a new id) replaces
/// the earlier one instead of adding a second sample for the same repeat.
pub(crate) fn latest_per_key(l: &Loaded) -> Vec<&CellRecord> {
    let mut idx: std::collections::HashMap<&CellKey, usize> = Default::default();
    let mut out: Vec<&CellRecord> = Vec::new();
    for r in &l.cells {
        match idx.get(&r.key) {
            Some(&i) => out[i] = r,
            None => {
                idx.insert(&r.key, out.len());
                out.push(r);
            }
        }
    }
    out
}

/// Columns in spec order, plus any that only appear in records (e.g. from an older spec).
fn columns_of(l: &Loaded) -> Vec<Column> {
    let mut cols = l.run.columns.clone();
    for r in &l.cells {
        let c = r.key.column();
        if !cols.contains(&c) {
            cols.push(c);
        }
    }
    cols
}

type TableKey = (String, String, String); // scenario, topology, metric

/// What the stored cells hold, before any comparison.
#[derive(Default)]
struct Gathered {
    summary: Summary,
    cells: Vec<CellStatus>,
    /// samples[(scenario, topology, metric)][sched][column] = values over repeats; compared
    /// metrics only.
    samples: BTreeMap<TableKey, BTreeMap<String, BTreeMap<String, Vec<f64>>>>,
    /// How the catalogue says to treat each metric met (counters have no samples).
    treatments: BTreeMap<TableKey, MetricTreatment>,
    /// Schedulers in the order first met.
    sched_order: Vec<String>,
}

fn gather(inputs: &[Input]) -> Gathered {
    let mut g = Gathered::default();
    let catalogue = catalogue();
    for inp in inputs {
        let mut recs = inp.records.clone();
        recs.sort_by_key(|r| sort_key(&r.key));
        for r in recs {
            let o = r.result.outcome;
            g.summary.cells += 1;
            match o {
                Outcome::Pass => g.summary.pass += 1,
                Outcome::Fail => g.summary.fail += 1,
                Outcome::Skipped => g.summary.skipped += 1,
                Outcome::Crashed => g.summary.crashed += 1,
                Outcome::Timeout => g.summary.timeout += 1,
                Outcome::Error => g.summary.error += 1,
            }
            if !g.sched_order.contains(&r.key.sched) {
                g.sched_order.push(r.key.sched.clone());
            }
            g.cells.push(CellStatus {
                column: inp.column.id.clone(),
                sched: r.key.sched.clone(),
                scenario: r.key.scenario.label(),
                topology: r.key.topology.clone(),
                repeat: r.key.repeat,
                outcome: o,
                reason: r.result.reason.clone(),
                backend: r.result.backend.clone(),
                wall_ms: r.result.timings.wall_ms,
                evidence: crate::evidence::of(&r.key, &r.result),
            });
            if !matches!(o, Outcome::Pass | Outcome::Fail) {
                continue;
            }
            let Some(sc) = r.result.report.as_ref().and_then(|g| g.scenario.as_ref()) else {
                continue;
            };
            for (m, v) in &sc.metrics {
                let key = (r.key.scenario.label(), r.key.topology.clone(), m.clone());
                let treat = g.treatments.entry(key.clone()).or_insert_with(|| {
                    treatment(&catalogue, &r.key.scenario.name, &r.key.scenario.params, m)
                });
                if *treat == MetricTreatment::Counter || !v.is_finite() {
                    continue;
                }
                g.samples
                    .entry(key)
                    .or_default()
                    .entry(r.key.sched.clone())
                    .or_default()
                    .entry(inp.column.id.clone())
                    .or_default()
                    .push(*v);
            }
        }
    }
    g
}

fn build(
    mode: Mode,
    version: &str,
    inputs: Vec<Input>,
    notices: Vec<String>,
    t: &Thresholds,
) -> Report {
    let Gathered {
        mut summary,
        cells,
        samples,
        treatments,
        sched_order,
    } = gather(&inputs);
    let mut tables = Vec::new();
    let mut regressions = Vec::new();
    for (key, by_sched) in samples {
        let MetricTreatment::Table {
            direction,
            unit,
            headline,
        } = treatments[&key].clone()
        else {
            continue;
        };
        let (scenario, topology, metric) = key;
        let mut rows = Vec::new();
        for sched in sched_order.iter().filter(|s| by_sched.contains_key(*s)) {
            let by_col = &by_sched[sched];
            let mut stats = Vec::new();
            for inp in &inputs {
                let Some(xs) = by_col.get(&inp.column.id) else {
                    continue;
                };
                let vs_baseline = inp.column.baseline.as_ref().and_then(|b| {
                    by_col
                        .get(b)
                        .map(|ys| compare_samples(b, xs, ys, direction, t))
                });
                let vs_eevdf = (sched != EEVDF)
                    .then(|| by_sched.get(EEVDF).and_then(|e| e.get(&inp.column.id)))
                    .flatten()
                    .map(|ys| compare_samples(EEVDF, xs, ys, direction, t))
                    .map(against_eevdf);
                for c in vs_baseline.iter() {
                    if c.verdict == Verdict::Regression {
                        regressions.push(Regression {
                            scenario: scenario.clone(),
                            topology: topology.clone(),
                            metric: metric.clone(),
                            sched: sched.clone(),
                            column: inp.column.id.clone(),
                            comparison: c.clone(),
                        });
                    }
                }
                stats.push(Stat {
                    column: inp.column.id.clone(),
                    median: median(xs).unwrap_or(f64::NAN),
                    samples: xs.clone(),
                    vs_baseline,
                    vs_eevdf,
                });
            }
            rows.push(Row {
                sched: sched.clone(),
                stats,
            });
        }
        tables.push(MetricTable {
            scenario,
            topology,
            metric,
            direction,
            unit,
            headline,
            rows,
        });
    }
    // Headline metrics first within each scenario x topology; otherwise by name (stable sort).
    tables.sort_by(|a, b| {
        (&a.scenario, &a.topology, !a.headline).cmp(&(&b.scenario, &b.topology, !b.headline))
    });
    summary.regressions = regressions.len();
    let suites = crate::subtests::tables(
        &inputs
            .iter()
            .map(|i| (i.column.id.as_str(), i.records.as_slice()))
            .collect::<Vec<_>>(),
    );
    let mut columns: Vec<ReportColumn> = inputs.into_iter().map(|i| i.column).collect();
    let ids: Vec<(&str, &str)> = columns
        .iter()
        .map(|c| (c.id.as_str(), c.kernel.as_str()))
        .collect();
    let labels = crate::labels::abbreviate(&ids);
    for (c, label) in columns.iter_mut().zip(labels) {
        c.label = label;
    }
    Report {
        format_version: REPORT_FORMAT_VERSION,
        ktstr_version: version.to_string(),
        mode,
        test: test_info(t),
        columns,
        summary,
        summary_grid: Vec::new(),
        tables,
        cells,
        regressions,
        notices,
        suites,
        provenance: Provenance::default(),
    }
}

fn sort_key(k: &CellKey) -> (String, String, String, u32) {
    (
        k.topology.clone(),
        k.scenario.label(),
        k.sched.clone(),
        k.repeat,
    )
}

/// Compares candidate samples `xs` with baseline samples `ys`.
pub fn compare_samples(
    against: &str,
    xs: &[f64],
    ys: &[f64],
    dir: Direction,
    t: &Thresholds,
) -> Comparison {
    let m = median(xs).unwrap_or(f64::NAN);
    let b = median(ys).unwrap_or(f64::NAN);
    let delta_pct = (b != 0.0).then(|| (m - b) / b.abs() * 100.0);
    let mut c = Comparison {
        against: against.to_string(),
        against_median: b,
        delta_pct,
        p_worse: None,
        method: None,
        verdict: Verdict::NoChange,
    };
    if dir == Direction::Unknown {
        c.verdict = Verdict::Undirected;
        return c;
    }
    if xs.len() < t.min_repeats || ys.len() < t.min_repeats {
        c.verdict = Verdict::TooFewRepeats;
        return c;
    }
    // "Worse" is greater for lower-is-better metrics; test on negated values otherwise.
    let neg = |v: &[f64]| v.iter().map(|x| -x).collect::<Vec<_>>();
    let (worse, better) = match dir {
        Direction::LowerIsBetter => (mann_whitney_greater(xs, ys), mann_whitney_greater(ys, xs)),
        _ => (
            mann_whitney_greater(&neg(xs), &neg(ys)),
            mann_whitney_greater(&neg(ys), &neg(xs)),
        ),
    };
    let (Some(worse), Some(better)) = (worse, better) else {
        return c;
    };
    c.p_worse = Some(worse.p_greater);
    c.method = Some(worse.method);
    // Effect: the relative median delta, or any delta when the baseline median is 0.
    let effect = match delta_pct {
        Some(d) => d.abs() / 100.0 >= t.min_effect,
        None => m != b,
    };
    c.verdict = if effect && worse.p_greater <= t.alpha {
        Verdict::Regression
    } else if effect && better.p_greater <= t.alpha {
        Verdict::Improvement
    } else {
        Verdict::NoChange
    };
    c
}
