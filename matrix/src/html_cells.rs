//! report.html's cells: a sortable table of every cell, and one section per grid entry
//! (scheduler x column x scenario x topology) with each repeat's outcome, reason, scheduler
//! output, console tail and a link to its full console log. The summary grid links each entry
//! to its section.

use crate::render::{outcome_name, xml_escape};
use crate::report::{CellStatus, Mode, Report};
use crate::result::Outcome;
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// CSS for the cell sections; the page includes it once.
pub const CELLS_CSS: &str = ".cell{border-left:4px solid #ccc;padding:0 8px;margin:6px 0}.cell.o-bad{border-color:#c0392b}.cell.o-pass{border-color:#1e8449}.cell.o-skipped{border-color:#aaa}.cell h3{font-size:15px;margin:4px 0}.cell pre{max-height:24em}";

/// The anchor of a grid entry's section: a short hash, since column ids can be long specs.
pub fn entry_anchor(sched: &str, column: &str, scenario: &str, topology: &str) -> String {
    let mut h = Sha256::new();
    for part in [sched, column, scenario, topology] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("c-{}", &hex::encode(h.finalize())[..12])
}

fn cell_anchor(c: &CellStatus) -> String {
    format!(
        "{}-r{}",
        entry_anchor(&c.sched, &c.column, &c.scenario, &c.topology),
        c.repeat
    )
}

/// The run directory a cell came from, as the report names it: empty for a single run (its
/// report.html sits in it), `A/` or `B/` in compare mode.
fn run_dir_of<'a>(r: &'a Report, c: &CellStatus) -> &'a str {
    match &r.mode {
        Mode::Single { .. } => "",
        Mode::Compare { a, b } => {
            if c.column.starts_with("b:") {
                b
            } else {
                a
            }
        }
    }
}

fn outcome_class(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "o-pass",
        Outcome::Skipped => "o-skipped",
        _ => "o-bad",
    }
}

/// The sortable table of every cell, each row linked to its section.
pub fn cells_table(r: &Report) -> String {
    if r.cells.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<p>Click a column header to sort.</p>\n<table class=\"sortable\" id=\"cell-table\"><thead><tr><th>cell</th><th>scheduler</th><th>column</th><th>scenario</th><th>topology</th><th>repeat</th><th>outcome</th><th>wall s</th><th>reason</th></tr></thead><tbody>\n",
    );
    for c in &r.cells {
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#{}\">#</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{:.1}</td><td>{}</td></tr>",
            cell_anchor(c),
            xml_escape(&c.sched),
            xml_escape(r.label(&c.column)),
            xml_escape(&c.scenario),
            xml_escape(&c.topology),
            c.repeat,
            outcome_class(c.outcome),
            outcome_name(c.outcome),
            c.wall_ms / 1000.0,
            xml_escape(c.reason.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</tbody></table>\n");
    out
}

fn repeat_block(r: &Report, c: &CellStatus) -> String {
    let bad = !matches!(c.outcome, Outcome::Pass | Outcome::Skipped);
    let mut out = format!(
        "<details id=\"{}\"{}><summary>#{} <b class=\"{}\">{}</b> {:.1} s{}</summary>\n",
        cell_anchor(c),
        if bad { " open" } else { "" },
        c.repeat,
        outcome_class(c.outcome),
        outcome_name(c.outcome),
        c.wall_ms / 1000.0,
        if c.backend.is_empty() {
            String::new()
        } else {
            format!(" on {}", xml_escape(&c.backend))
        }
    );
    if let Some(reason) = &c.reason {
        let _ = writeln!(out, "<p>Reason: {}</p>", xml_escape(reason));
    }
    let ev = &c.evidence;
    if let Some(log) = &ev.log {
        let href = format!("{}{log}", run_dir_of(r, c));
        let _ = writeln!(
            out,
            "<p>Full console log: <a href=\"{0}\">{0}</a></p>",
            xml_escape(&href)
        );
    }
    if !ev.sched_output.is_empty() {
        let _ = writeln!(
            out,
            "<p>Scheduler output (last lines):</p><pre>{}</pre>",
            xml_escape(&ev.sched_output)
        );
    }
    if !ev.console_tail.is_empty() {
        let _ = writeln!(
            out,
            "<p>Console (last lines):</p><pre>{}</pre>",
            xml_escape(&ev.console_tail)
        );
    }
    out.push_str("</details>\n");
    out
}

/// One section per grid entry, in the grid's order, each with its repeats.
pub fn cell_sections(r: &Report) -> String {
    let g = crate::summary::grid(r);
    let mut out = String::new();
    for row in &g.rows {
        for col in &g.columns {
            let cells: Vec<&CellStatus> = r
                .cells
                .iter()
                .filter(|c| {
                    c.sched == row.sched
                        && c.column == *col
                        && c.scenario == row.scenario
                        && c.topology == row.topology
                })
                .collect();
            if cells.is_empty() {
                continue;
            }
            let worst = cells
                .iter()
                .map(|c| c.outcome)
                .find(|o| !matches!(o, Outcome::Pass | Outcome::Skipped))
                .unwrap_or(cells[0].outcome);
            let _ = writeln!(
                out,
                "<section class=\"cell {}\" id=\"{}\"><h3>{} @ {}, {} {}</h3>",
                outcome_class(worst),
                entry_anchor(&row.sched, col, &row.scenario, &row.topology),
                xml_escape(&row.sched),
                xml_escape(r.label(col)),
                xml_escape(&row.scenario),
                xml_escape(&row.topology)
            );
            for c in cells {
                out.push_str(&repeat_block(r, c));
            }
            out.push_str("</section>\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_are_short_and_distinct() {
        let a = entry_anchor(
            "eevdf",
            "git:/src/linux#0123456789abcdef/sched_ext",
            "steady",
            "x",
        );
        let b = entry_anchor(
            "eevdf",
            "git:/src/linux#0123456789abcdef/sched_ext",
            "wake",
            "x",
        );
        assert_ne!(a, b);
        assert_eq!(a.len(), "c-".len() + 12);
    }
}
