//! The summary every rendering opens with: one grid (rows scheduler x scenario x topology,
//! columns the report's columns) whose entries are the headline metrics' changes against the
//! baseline column and against eevdf, and the cells that did not pass, grouped by reason.
//! Derived from a [`Report`]; the detail below it has every metric.

use crate::report::{Comparison, Direction, MetricTable, Report, Stat, Verdict};
use crate::result::Outcome;
use serde::{Deserialize, Serialize};

/// How a comparison came out, by the report's rank test and minimum effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    Better,
    Worse,
    /// Tested; not past both the significance level and the minimum effect ("n.s.": not
    /// significant, which a large delta of a noisy metric can be).
    #[serde(rename = "not_significant")]
    Same,
    /// Not tested (too few repeats, or no known direction): the delta alone.
    Untested,
}

impl Mark {
    pub fn of(c: &Comparison) -> Mark {
        match c.verdict {
            Verdict::Regression | Verdict::WorseThanEevdf => Mark::Worse,
            Verdict::Improvement | Verdict::BetterThanEevdf => Mark::Better,
            Verdict::NoChange => Mark::Same,
            Verdict::TooFewRepeats | Verdict::Undirected => Mark::Untested,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Mark::Better => "better",
            Mark::Worse => "worse",
            Mark::Same => "n.s.",
            Mark::Untested => "untested",
        }
    }
}

/// One headline metric of one grid entry.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadlineChange<'a> {
    pub table: &'a MetricTable,
    pub stat: &'a Stat,
}

/// Whether each cell of an entry passed, as counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcomes {
    pub pass: usize,
    pub total: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GridEntry<'a> {
    pub changes: Vec<HeadlineChange<'a>>,
    pub outcomes: Outcomes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GridRow<'a> {
    pub sched: String,
    pub scenario: String,
    pub topology: String,
    /// One per [`Grid::columns`] entry; `None` where the row has no cell in that column.
    pub entries: Vec<Option<GridEntry<'a>>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Grid<'a> {
    /// Column ids in report order.
    pub columns: Vec<String>,
    pub rows: Vec<GridRow<'a>>,
}

/// The grid of `r`: rows in the order scenario, topology, then schedulers as first met (eevdf
/// first when the spec lists it first).
pub fn grid(r: &Report) -> Grid<'_> {
    let columns: Vec<String> = r.columns.iter().map(|c| c.id.clone()).collect();
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for c in &r.cells {
        let k = (c.scenario.clone(), c.topology.clone(), c.sched.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let sched_rank = |s: &str| keys.iter().position(|k| k.2 == s).unwrap_or(usize::MAX);
    let mut sorted = keys.clone();
    sorted.sort_by(|a, b| (&a.0, &a.1, sched_rank(&a.2)).cmp(&(&b.0, &b.1, sched_rank(&b.2))));
    let rows = sorted
        .into_iter()
        .map(|(scenario, topology, sched)| {
            let entries = columns
                .iter()
                .map(|col| entry(r, &scenario, &topology, &sched, col))
                .collect();
            GridRow {
                sched,
                scenario,
                topology,
                entries,
            }
        })
        .collect();
    Grid { columns, rows }
}

fn entry<'a>(
    r: &'a Report,
    scenario: &str,
    topology: &str,
    sched: &str,
    column: &str,
) -> Option<GridEntry<'a>> {
    let cells: Vec<_> = r
        .cells
        .iter()
        .filter(|c| {
            c.scenario == scenario
                && c.topology == topology
                && c.sched == sched
                && c.column == column
        })
        .collect();
    if cells.is_empty() {
        return None;
    }
    let outcomes = Outcomes {
        pass: cells.iter().filter(|c| c.outcome == Outcome::Pass).count(),
        total: cells.len(),
    };
    let changes = r
        .tables
        .iter()
        .filter(|t| t.headline && t.scenario == scenario && t.topology == topology)
        .filter_map(|t| {
            let row = t.rows.iter().find(|row| row.sched == sched)?;
            let stat = row.stats.iter().find(|s| s.column == column)?;
            Some(HeadlineChange { table: t, stat })
        })
        .collect();
    Some(GridEntry { changes, outcomes })
}

/// A grid comparison as report.json stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMark {
    pub delta_pct: Option<f64>,
    pub p_worse: Option<f64>,
    pub mark: Mark,
}

/// One headline metric of a grid entry as report.json stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredChange {
    pub metric: String,
    pub median: f64,
    pub n: usize,
    pub vs_baseline: Option<StoredMark>,
    pub vs_eevdf: Option<StoredMark>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEntry {
    pub column: String,
    pub pass: usize,
    pub cells: usize,
    pub headline: Vec<StoredChange>,
}

/// A grid row as report.json stores it (the grid is derived; this copy is for readers of the
/// JSON alone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRow {
    pub sched: String,
    pub scenario: String,
    pub topology: String,
    pub entries: Vec<StoredEntry>,
}

fn stored_mark(c: &Option<Comparison>) -> Option<StoredMark> {
    c.as_ref().map(|c| StoredMark {
        delta_pct: c.delta_pct,
        p_worse: c.p_worse,
        mark: Mark::of(c),
    })
}

/// The grid of `r` in report.json's shape.
pub fn stored_grid(r: &Report) -> Vec<StoredRow> {
    let g = grid(r);
    g.rows
        .iter()
        .map(|row| StoredRow {
            sched: row.sched.clone(),
            scenario: row.scenario.clone(),
            topology: row.topology.clone(),
            entries: g
                .columns
                .iter()
                .zip(&row.entries)
                .filter_map(|(col, e)| {
                    let e = e.as_ref()?;
                    Some(StoredEntry {
                        column: col.clone(),
                        pass: e.outcomes.pass,
                        cells: e.outcomes.total,
                        headline: e
                            .changes
                            .iter()
                            .map(|c| StoredChange {
                                metric: c.table.metric.clone(),
                                median: c.stat.median,
                                n: c.stat.samples.len(),
                                vs_baseline: stored_mark(&c.stat.vs_baseline),
                                vs_eevdf: stored_mark(&c.stat.vs_eevdf),
                            })
                            .collect(),
                    })
                })
                .collect(),
        })
        .collect()
}

/// Cells that did not pass, one group per identical (outcome, cell but its repeat, reason).
#[derive(Debug, Clone, PartialEq)]
pub struct FailureGroup {
    pub outcome: Outcome,
    pub sched: String,
    pub column: String,
    pub scenario: String,
    pub topology: String,
    pub repeats: Vec<u32>,
    pub reason: String,
}

impl FailureGroup {
    /// `SCHED @ COLUMN TOPOLOGY SCENARIO`, the column by its short label.
    pub fn cell_text(&self, r: &Report) -> String {
        format!(
            "{} @ {} {} {}",
            self.sched,
            r.label(&self.column),
            self.topology,
            self.scenario
        )
    }

    /// `#0-2`, `#1`, `#0,2`.
    pub fn repeats_text(&self) -> String {
        let r = &self.repeats;
        let consecutive = r.windows(2).all(|w| w[1] == w[0] + 1);
        match r.as_slice() {
            [one] => format!("#{one}"),
            [first, .., last] if consecutive => format!("#{first}-{last}"),
            _ => format!(
                "#{}",
                r.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            ),
        }
    }
}

pub fn failures(r: &Report) -> Vec<FailureGroup> {
    let mut groups: Vec<FailureGroup> = Vec::new();
    for c in r.cells.iter().filter(|c| c.outcome != Outcome::Pass) {
        let reason = c.reason.clone().unwrap_or_default();
        let same = groups.iter_mut().find(|g| {
            g.outcome == c.outcome
                && g.sched == c.sched
                && g.column == c.column
                && g.scenario == c.scenario
                && g.topology == c.topology
                && g.reason == reason
        });
        match same {
            Some(g) => g.repeats.push(c.repeat),
            None => groups.push(FailureGroup {
                outcome: c.outcome,
                sched: c.sched.clone(),
                column: c.column.clone(),
                scenario: c.scenario.clone(),
                topology: c.topology.clone(),
                repeats: vec![c.repeat],
                reason,
            }),
        }
    }
    for g in &mut groups {
        g.repeats.sort_unstable();
    }
    groups
}

/// `↑` higher is better, `↓` lower is better, `?` unknown: a one-character direction hint.
pub fn direction_arrow(d: Direction) -> &'static str {
    match d {
        Direction::HigherIsBetter => "↑",
        Direction::LowerIsBetter => "↓",
        Direction::Unknown => "?",
    }
}

/// Spread of the samples around the median: half their range, relative to the median
/// (`±2.4%`), or absolute when the median is 0. `None` for fewer than two samples.
pub fn spread_text(samples: &[f64], median: f64) -> Option<String> {
    if samples.len() < 2 {
        return None;
    }
    let (lo, hi) = samples
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    let half = (hi - lo) / 2.0;
    Some(if median != 0.0 && median.is_finite() {
        format!("±{:.1}%", half / median.abs() * 100.0)
    } else {
        format!("±{}", crate::render::fmt_num(half))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_shown_as_ranges_when_consecutive() {
        let g = |repeats: Vec<u32>| FailureGroup {
            outcome: Outcome::Fail,
            sched: String::new(),
            column: String::new(),
            scenario: String::new(),
            topology: String::new(),
            repeats,
            reason: String::new(),
        };
        assert_eq!(g(vec![0, 1, 2]).repeats_text(), "#0-2");
        assert_eq!(g(vec![1]).repeats_text(), "#1");
        assert_eq!(g(vec![0, 2]).repeats_text(), "#0,2");
    }

    #[test]
    fn spread_is_half_the_range_relative_to_the_median() {
        assert_eq!(
            spread_text(&[9.0, 10.0, 11.0], 10.0).as_deref(),
            Some("±10.0%")
        );
        assert_eq!(spread_text(&[-1.0, 0.0, 1.0], 0.0).as_deref(), Some("±1"));
        assert_eq!(spread_text(&[5.0], 5.0), None);
    }
}
