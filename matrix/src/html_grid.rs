//! The summary grid of report.html, as a plain table: the same entries as the terminal and
//! report.md, each better / worse / same word carrying its p-value in a `title` (shown on hover).

use crate::render::{entry_lines_with, grid_note, legend, xml_escape};
use crate::report::{Comparison, Report};
use crate::summary::{self, Mark};
use std::fmt::Write;

/// CSS for the grid's words; the page includes it once.
pub const GRID_CSS: &str = ".worse{color:#c0392b;font-weight:bold}.better{color:#1e8449;font-weight:bold}.ns,.untested{color:#777}";

fn mark_span(c: &Comparison) -> String {
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
    let mut out = String::from("<h2>Summary</h2>\n<table><tr><th>scheduler</th><th>scenario</th>");
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
        for e in &row.entries {
            let text = match e {
                None => "-".to_string(),
                Some(e) => entry_lines_with(e, &xml_escape, &mark_span).join("<br>"),
            };
            let _ = write!(out, "<td>{text}</td>");
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
