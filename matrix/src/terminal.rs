//! The terminal rendering: the verdict, the summary grid, regressions, cells that did not pass,
//! what was compared; every metric's table only with `detail` (`--detail`).

use crate::render::{
    cmp_text, detail_entry_text, detail_groups, entry_lines, outcome_name, verdict_line,
};
use crate::report::Report;
use crate::summary::{self, Mark};
use comfy_table::{Cell, Color, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use std::fmt::Write;

/// At most this many groups of cells that did not pass are listed; report.md has them all.
const MAX_FAILURE_LINES: usize = 12;
/// At most this many differing config options are named outside `--detail`.
const MAX_CONFIG_NAMES: usize = 6;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TerminalOptions {
    /// ANSI colours (`--color`, `NO_COLOR`).
    pub color: bool,
    /// Every metric's table after the summary (`--detail`).
    pub detail: bool,
    /// stdout is a terminal: tables wrap to its width.
    pub tty: bool,
}

struct Painter {
    on: bool,
}

impl Painter {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn red(&self, t: &str) -> String {
        self.paint("1;31", t)
    }
    fn green(&self, t: &str) -> String {
        self.paint("1;32", t)
    }
    fn yellow(&self, t: &str) -> String {
        self.paint("33", t)
    }
    fn bold(&self, t: &str) -> String {
        self.paint("1", t)
    }
}

pub(crate) fn new_table(opts: TerminalOptions) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    if !opts.tty {
        // No width lookup: the same report renders the same everywhere (golden tests, pipes).
        t.force_no_tty();
    }
    if opts.color {
        t.enforce_styling();
    }
    t
}

fn mark_color(marks: impl Iterator<Item = Mark>) -> Option<Color> {
    let marks: Vec<Mark> = marks.collect();
    if marks.contains(&Mark::Worse) {
        Some(Color::Red)
    } else if marks.contains(&Mark::Better) {
        Some(Color::Green)
    } else {
        None
    }
}

fn coloured(text: String, color: Option<Color>, opts: TerminalOptions) -> Cell {
    match color {
        Some(c) if opts.color => Cell::new(text).fg(c),
        _ => Cell::new(text),
    }
}

fn grid_table(r: &Report, opts: TerminalOptions) -> Table {
    let g = summary::grid(r);
    let mut table = new_table(opts);
    let mut header = vec!["scheduler".to_string(), "scenario".to_string()];
    header.extend(g.columns.iter().map(|c| r.label(c).to_string()));
    table.set_header(header);
    for row in &g.rows {
        let mut cells = vec![
            Cell::new(&row.sched),
            Cell::new(format!("{} {}", row.scenario, row.topology)),
        ];
        for e in &row.entries {
            let Some(e) = e else {
                cells.push(Cell::new("-"));
                continue;
            };
            let marks = e.changes.iter().flat_map(|c| {
                [&c.stat.vs_baseline, &c.stat.vs_eevdf]
                    .into_iter()
                    .flatten()
                    .map(Mark::of)
            });
            let mut color = mark_color(marks);
            if e.outcomes.pass < e.outcomes.total {
                color = Some(Color::Red);
            }
            cells.push(coloured(entry_lines(e).join("\n"), color, opts));
        }
        table.add_row(cells);
    }
    table
}

fn detail_tables(r: &Report, opts: TerminalOptions, out: &mut String) {
    for group in detail_groups(r) {
        let mut table = new_table(opts);
        let mut header = vec!["metric".to_string()];
        header.extend(
            group
                .lanes
                .iter()
                .map(|(sched, col)| format!("{sched} @ {}", r.label(col))),
        );
        table.set_header(header);
        for t in &group.tables {
            let mut cells = vec![Cell::new(crate::render::metric_row_label(t))];
            for (sched, col) in &group.lanes {
                let stat = t
                    .rows
                    .iter()
                    .find(|row| &row.sched == sched)
                    .and_then(|row| row.stats.iter().find(|s| &s.column == col));
                let Some(s) = stat else {
                    cells.push(Cell::new("-"));
                    continue;
                };
                let color = mark_color(
                    [&s.vs_baseline, &s.vs_eevdf]
                        .into_iter()
                        .flatten()
                        .map(Mark::of),
                );
                cells.push(coloured(detail_entry_text(s), color, opts));
            }
            table.add_row(cells);
        }
        let _ = writeln!(out, "\n{} / {}\n{table}", group.scenario, group.topology);
    }
}

fn provenance_lines(r: &Report, p: &Painter, detail: bool, out: &mut String) {
    let pv = &r.provenance;
    for k in &pv.kernels {
        let _ = writeln!(out, "kernel {}", crate::render::kernel_line(r, k));
    }
    let scheds = crate::render::sched_lines(r);
    if !scheds.is_empty() {
        let _ = writeln!(out, "schedulers: {}", scheds.join("; "));
    }
    let missing: Vec<&str> = pv
        .kernels
        .iter()
        .filter(|k| !k.config_recorded)
        .map(|k| r.label(&k.column))
        .collect();
    if pv.kernels.len() > 1 && !pv.config_diff.is_empty() {
        let names: Vec<&str> = pv.config_diff.iter().map(|d| d.option.as_str()).collect();
        let shown = if detail {
            names.len()
        } else {
            MAX_CONFIG_NAMES
        };
        let more = names.len().saturating_sub(shown);
        let _ = writeln!(
            out,
            "config: {} option(s) differ between columns: {}{}",
            names.len(),
            names[..names.len().min(shown)].join(" "),
            if more > 0 {
                format!(" … (+{more}; values in report.md, or --detail)")
            } else {
                String::new()
            }
        );
    }
    if pv.kernels.len() > 1 && !missing.is_empty() {
        let _ = writeln!(
            out,
            "config: no .config recorded for {} (not in the run directory's kernel-configs/)",
            missing.join(", ")
        );
    }
    if detail && pv.kernels.len() > 1 {
        for d in &pv.config_diff {
            let _ = writeln!(
                out,
                "  {}: {}",
                d.option,
                crate::render::config_values(r, d).join(" | ")
            );
        }
    }
    let _ = writeln!(out, "{}", p.paint("2", &crate::render::host_line(r)));
}

/// The terminal rendering without colour or `--detail` (what a pipe gets by default).
pub fn terminal(r: &Report) -> String {
    terminal_with(r, TerminalOptions::default())
}

pub fn terminal_with(r: &Report, opts: TerminalOptions) -> String {
    let p = Painter { on: opts.color };
    let mut out = String::new();
    for n in &r.notices {
        let _ = writeln!(out, "{}", p.yellow(&format!("notice: {n}")));
    }
    let verdict = verdict_line(r);
    let _ = writeln!(
        out,
        "{}",
        if r.summary.failed() {
            p.red(&verdict)
        } else {
            p.green(&verdict)
        }
    );
    if !r.cells.is_empty() {
        let _ = writeln!(out, "{}", grid_table(r, opts));
        let _ = writeln!(out, "{}", crate::render::grid_note(r));
    }
    for g in &r.regressions {
        let line = format!(
            "REGRESSION {} / {} / {}: {} @ {} {} (p={:.4})",
            g.scenario,
            g.topology,
            g.metric,
            g.sched,
            r.label(&g.column),
            cmp_text(
                &g.comparison,
                &format!("vs {} ", r.label(&g.comparison.against))
            ),
            g.comparison.p_worse.unwrap_or(f64::NAN)
        );
        let _ = writeln!(out, "{}", p.red(&line));
    }
    let failures = summary::failures(r);
    for f in failures.iter().take(MAX_FAILURE_LINES) {
        let word = format!("{:<8}", outcome_name(f.outcome));
        let word = if f.outcome == crate::result::Outcome::Skipped {
            p.yellow(&word)
        } else {
            p.red(&word)
        };
        let _ = writeln!(
            out,
            "{word} {} {}: {}",
            f.cell_text(r),
            f.repeats_text(),
            f.reason
        );
    }
    if failures.len() > MAX_FAILURE_LINES {
        let _ = writeln!(
            out,
            "… {} more group(s) of cells that did not pass: see report.md",
            failures.len() - MAX_FAILURE_LINES
        );
    }
    out.push_str(&crate::subtests::terminal(&r.suites));
    for (label, id) in crate::render::legend(r) {
        let _ = writeln!(out, "{} = {id}", p.bold(label));
    }
    provenance_lines(r, &p, opts.detail, &mut out);
    if opts.detail {
        detail_tables(r, opts, &mut out);
    } else if !r.tables.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            p.paint(
                "2",
                &format!(
                    "{} metric table(s) behind --detail (all in report.md)",
                    r.tables.len()
                )
            )
        );
    }
    out
}
