//! The summary grid of report.html as a heatmap: the same entries as the terminal and report.md,
//! each entry's background coloured by how its headline metrics changed (red worse, green
//! better, grey no significant change, deeper for a larger change; against the baseline column,
//! or against eevdf where there is none), each word carrying its p-value in a `title` and the
//! entry its medians and sample counts (shown on hover). Each entry links to its cells' section.

use crate::render::{entry_lines_with, fmt_num, grid_note, legend, xml_escape};
use crate::report::{Comparison, Report};
use crate::summary::{self, GridEntry, Mark};
use std::fmt::Write;

/// CSS for the grid's words and the heatmap; the page includes it once.
pub const GRID_CSS: &str = ".worse{color:#c0392b;font-weight:bold}.better{color:#1e8449;font-weight:bold}.ns,.untested{color:#777}table.heatmap td.h{min-width:9em;vertical-align:top}table.heatmap td.h a{color:inherit;text-decoration:none;display:block}td.h-fail{outline:3px solid #c0392b;outline-offset:-3px}";

/// |change| at which an entry's colour is deepest, in percent.
const FULL_COLOUR_PCT: f64 = 50.0;

/// The comparisons an entry's colour is decided by: against the baseline column where it has
/// one, else against eevdf.
fn deciding<'a>(e: &GridEntry<'a>) -> Vec<&'a Comparison> {
    let base: Vec<&Comparison> = e
        .changes
        .iter()
        .filter_map(|c| c.stat.vs_baseline.as_ref())
        .collect();
    if !base.is_empty() {
        return base;
    }
    e.changes
        .iter()
        .filter_map(|c| c.stat.vs_eevdf.as_ref())
        .collect()
}

/// The entry's background (`None`: untested, left white) and its heat class.
fn heat(e: &GridEntry) -> (Option<String>, &'static str) {
    let cmps = deciding(e);
    let marks: Vec<Mark> = cmps.iter().map(|c| Mark::of(c)).collect();
    let (rgb, class, of) = if marks.contains(&Mark::Worse) {
        ((192, 57, 43), "h-worse", Mark::Worse)
    } else if marks.contains(&Mark::Better) {
        ((30, 132, 73), "h-better", Mark::Better)
    } else if marks.contains(&Mark::Same) {
        return (Some("rgba(127,140,141,0.18)".into()), "h-ns");
    } else {
        return (None, "h-untested");
    };
    let biggest = cmps
        .iter()
        .filter(|c| Mark::of(c) == of)
        .filter_map(|c| c.delta_pct)
        .fold(0.0f64, |m, d| m.max(d.abs()));
    let alpha = 0.12 + 0.33 * (biggest / FULL_COLOUR_PCT).min(1.0);
    let (r, g, b) = rgb;
    (Some(format!("rgba({r},{g},{b},{alpha:.2})")), class)
}

/// Hover text of an entry: each headline metric's median, n and comparisons with p.
fn entry_title(e: &GridEntry) -> String {
    let mut lines = Vec::new();
    for c in &e.changes {
        let mut l = format!(
            "{}: median {}, n = {}",
            c.table.metric,
            fmt_num(c.stat.median),
            c.stat.samples.len()
        );
        for (name, cmp) in [("base", &c.stat.vs_baseline), ("eevdf", &c.stat.vs_eevdf)] {
            if let Some(cmp) = cmp {
                let d = cmp
                    .delta_pct
                    .map_or("n/a".to_string(), |d| format!("{d:+.1}%"));
                let p = cmp
                    .p_worse
                    .map_or("not tested".to_string(), |p| format!("p(worse) = {p:.4}"));
                let _ = write!(l, "; vs {name} {d}, {p}, {}", Mark::of(cmp).word());
            }
        }
        lines.push(l);
    }
    lines.push(format!(
        "{}/{} cells pass",
        e.outcomes.pass, e.outcomes.total
    ));
    lines.join("\n")
}

/// A comparison's word, coloured, with its p-value on hover.
pub(crate) fn mark_span(c: &Comparison) -> String {
    let m = Mark::of(c);
    let p = c
        .p_worse
        .map_or("not tested".to_string(), |p| format!("p(worse) = {p:.4}"));
    let class = match m {
        Mark::Better => "better",
        Mark::Worse => "worse",
        Mark::Same => "ns",
        Mark::Untested => "untested",
    };
    format!(
        "<span class=\"{class}\" title=\"{}\">{}</span>",
        xml_escape(&p),
        m.word()
    )
}

/// `<h2>Summary</h2>` and the grid table; empty for a report without cells.
pub fn grid_table(r: &Report) -> String {
    let g = summary::grid(r);
    if g.rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h2>Summary</h2>\n<table class=\"heatmap\" id=\"summary\"><tr><th>scheduler</th><th>scenario</th>",
    );
    for c in &g.columns {
        let _ = write!(
            out,
            "<th title=\"{}\">{}</th>",
            xml_escape(c),
            xml_escape(r.label(c))
        );
    }
    out.push_str("</tr>\n");
    for row in &g.rows {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{} {}</td>",
            xml_escape(&row.sched),
            xml_escape(&row.scenario),
            xml_escape(&row.topology)
        );
        for (col, e) in g.columns.iter().zip(&row.entries) {
            let Some(e) = e else {
                out.push_str("<td>-</td>");
                continue;
            };
            let text = entry_lines_with(e, &xml_escape, &mark_span).join("<br>");
            let (bg, class) = heat(e);
            let fail = if e.outcomes.pass < e.outcomes.total {
                " h-fail"
            } else {
                ""
            };
            let style = bg.map_or(String::new(), |bg| format!(" style=\"background:{bg}\""));
            let anchor =
                crate::html_cells::entry_anchor(&row.sched, col, &row.scenario, &row.topology);
            let _ = write!(
                out,
                "<td class=\"h {class}{fail}\"{style} title=\"{}\"><a href=\"#{anchor}\">{text}</a></td>",
                xml_escape(&entry_title(e))
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    let _ = writeln!(out, "<p>{}</p>", xml_escape(&grid_note(r)));
    for (label, id) in legend(r) {
        let _ = writeln!(
            out,
            "<p><code>{}</code> = <code>{}</code></p>",
            xml_escape(label),
            xml_escape(id)
        );
    }
    out
}
