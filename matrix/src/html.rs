//! report.html: one self-contained page (inline CSS, SVG and one small script; no external
//! assets, so it opens offline and from a CI artifact). The verdict, the summary grid as a
//! heatmap ([`crate::html_grid`]), regressions and failures, what was compared, then each
//! scenario x topology's metrics (box plots by [`crate::html_plot`] and sortable tables), then
//! every cell ([`crate::html_cells`]).
//! Size stays bounded for large matrices: plots for headline metrics only once a report has more
//! than [`PLOT_EVERY_METRIC_UP_TO`] tables, cells collapsed, console tails cut
//! ([`crate::evidence`]).

use crate::render::{
    DetailGroup, config_values, detail_entry_with, detail_groups, fmt_num, host_line, kernel_line,
    legend, metric_note, metric_row_label, outcome_name, sched_lines, summary_line, test_line,
    verdict_line, xml_escape,
};
use crate::report::{Comparison, MetricTable, Report, Stat};
use crate::summary::{self, Mark};
use std::fmt::Write;

/// Past this many rows the regressions table starts folded.
pub const FOLD_ROWS_OVER: usize = 50;
/// Past this many cells the cell table and sections start folded.
pub const FOLD_CELLS_OVER: usize = 100;
/// Up to this many metric tables every metric gets a plot; past it, only headline metrics.
pub const PLOT_EVERY_METRIC_UP_TO: usize = 30;

const PAGE_CSS: &str = "body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}th{background:#f2f2f2}table.sortable th{cursor:pointer}table.sortable th:after{content:' \\2195';color:#999}.reg{color:#c0392b;font-weight:bold}pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px}nav a{margin-right:1em}h4{margin:1em 0 .2em}details>summary{cursor:pointer;margin:.3em 0}.o-pass{color:#1e8449}.o-bad{color:#c0392b;font-weight:bold}.o-skipped{color:#777}img.plot{max-width:100%;height:auto;display:block}";

/// Sorts a `table.sortable` by the clicked header: numerically when both cells start with a
/// number, else as text; a second click reverses.
const SORT_SCRIPT: &str = "document.querySelectorAll('table.sortable th').forEach(function(th){th.addEventListener('click',function(){var t=th.closest('table'),b=t.tBodies[0],i=th.cellIndex,asc=th.dataset.dir!=='asc';th.dataset.dir=asc?'asc':'desc';var key=function(r){var s=r.cells[i].textContent.trim(),n=parseFloat(s);return isNaN(n)?s:n};var rows=Array.prototype.slice.call(b.rows);rows.sort(function(x,y){var a=key(x),c=key(y),d=(typeof a==='number'&&typeof c==='number')?a-c:String(a).localeCompare(String(c));return asc?d:-d});rows.forEach(function(r){b.appendChild(r)})})});";

/// Opens the folded `<details>` around the target of a link (from the grid, the failures, the
/// address bar) and scrolls to it.
const OPEN_TARGET_SCRIPT: &str = "function ktstrOpen(){var t=location.hash&&document.getElementById(decodeURIComponent(location.hash.slice(1)));for(var e=t;e;e=e.parentElement){if(e.tagName==='DETAILS')e.open=true}if(t)t.scrollIntoView()}window.addEventListener('hashchange',ktstrOpen);ktstrOpen();";

fn sortable_head(cols: &[&str]) -> String {
    let mut s = String::from("<table class=\"sortable\"><thead><tr>");
    for c in cols {
        let _ = write!(s, "<th>{c}</th>");
    }
    s.push_str("</tr></thead><tbody>\n");
    s
}

fn cmp_cell(c: &Option<Comparison>) -> String {
    let Some(c) = c else {
        return "<td>-</td><td>-</td><td>-</td>".into();
    };
    let d = c
        .delta_pct
        .map_or("n/a".to_string(), |d| format!("{d:+.1}%"));
    let p = c.p_worse.map_or("-".to_string(), |p| format!("{p:.4}"));
    let m = Mark::of(c);
    let class = match m {
        Mark::Worse => "worse",
        Mark::Better => "better",
        Mark::Same => "ns",
        Mark::Untested => "untested",
    };
    format!(
        "<td>{d}</td><td>{p}</td><td class=\"{class}\">{}</td>",
        m.word()
    )
}

fn stat_row(r: &Report, sched: &str, s: &Stat) -> String {
    format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}{}</tr>\n",
        xml_escape(sched),
        xml_escape(r.label(&s.column)),
        fmt_num(s.median),
        s.samples.len(),
        summary::spread_text(&s.samples, s.median).unwrap_or_else(|| "-".into()),
        cmp_cell(&s.vs_baseline),
        cmp_cell(&s.vs_eevdf)
    )
}

fn metric_block(r: &Report, t: &MetricTable, with_plot: bool) -> String {
    let mut out = format!(
        "<h4>{} <small>({})</small></h4>\n",
        xml_escape(&t.metric),
        xml_escape(&metric_note(t))
    );
    if with_plot {
        out.push_str(&crate::html_plot::box_plot_img(t, &|c| {
            r.label(c).to_string()
        }));
        out.push('\n');
    }
    out.push_str(&sortable_head(&[
        "scheduler",
        "column",
        "median",
        "n",
        "spread",
        "vs base",
        "p",
        "",
        "vs eevdf",
        "p",
        "",
    ]));
    for row in &t.rows {
        for s in &row.stats {
            out.push_str(&stat_row(r, &row.sched, s));
        }
    }
    out.push_str("</tbody></table>\n");
    out
}

/// A large report's other metrics of one scenario x topology: a row per metric, a column per
/// scheduler x column lane, each entry `median n=N ±spread` and any better/worse: a tenth of the
/// table cells the per-metric tables would take.
fn compact_table(r: &Report, g: &DetailGroup) -> String {
    let others: Vec<&&MetricTable> = g.tables.iter().filter(|t| !t.headline).collect();
    if others.is_empty() {
        return String::new();
    }
    let lanes: Vec<String> = g
        .lanes
        .iter()
        .map(|(sched, col)| xml_escape(&format!("{sched} @ {}", r.label(col))))
        .collect();
    let mut cols = vec!["other metric"];
    cols.extend(lanes.iter().map(String::as_str));
    let mut out = String::from("<h4>Other metrics</h4>\n");
    out.push_str(&sortable_head(&cols));
    for t in others {
        let _ = write!(out, "<tr><td>{}</td>", xml_escape(&metric_row_label(t)));
        for (sched, col) in &g.lanes {
            let stat = t
                .rows
                .iter()
                .find(|row| row.sched == *sched)
                .and_then(|row| row.stats.iter().find(|s| s.column == *col));
            let text = stat.map_or("-".to_string(), |s| {
                detail_entry_with(s, &crate::html_grid::mark_span)
            });
            let _ = write!(out, "<td>{text}</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
    out
}

fn metrics(r: &Report) -> String {
    let groups = detail_groups(r);
    if groups.is_empty() {
        return String::new();
    }
    let every = r.tables.len() <= PLOT_EVERY_METRIC_UP_TO;
    let mut out = String::from(
        "<h2 id=\"metrics\">Metrics</h2>\n<p>Each box spans the middle half of the repeats (a line at the median), its whiskers reach 1.5 box widths past it (Tukey's fences); each dot is one repeat. Red: worse than the baseline column or eevdf by the test, green: better.",
    );
    if !every {
        let _ = write!(
            out,
            " {} tables: headline metrics get a plot and a table, the others one table per scenario / topology (every metric gets its own up to {PLOT_EVERY_METRIC_UP_TO} tables); each scenario / topology is folded: click to open.",
            r.tables.len()
        );
    }
    out.push_str("</p>\n");
    // A large report opens with its groups folded: the browser lays out only what is opened.
    let open = if every { " open" } else { "" };
    for g in groups {
        let worse = g
            .tables
            .iter()
            .flat_map(|t| t.rows.iter().flat_map(|row| &row.stats))
            .filter(|s| {
                [&s.vs_baseline, &s.vs_eevdf]
                    .iter()
                    .any(|c| c.as_ref().is_some_and(|c| Mark::of(c) == Mark::Worse))
            })
            .count();
        let _ = writeln!(
            out,
            "<details{open}><summary><b>{} / {}</b>: {} metric(s), {worse} worse</summary>",
            xml_escape(g.scenario),
            xml_escape(g.topology),
            g.tables.len()
        );
        for t in g.tables.iter().filter(|t| every || t.headline) {
            out.push_str(&metric_block(r, t, true));
        }
        if !every {
            out.push_str(&compact_table(r, &g));
        }
        out.push_str("</details>\n");
    }
    out
}

fn regressions(r: &Report) -> String {
    if r.regressions.is_empty() {
        return String::new();
    }
    let open = if r.regressions.len() <= FOLD_ROWS_OVER {
        " open"
    } else {
        ""
    };
    let mut out = format!(
        "<h2 id=\"regressions\">Regressions</h2>\n<details{open}><summary>{} regression(s) in a sortable table</summary>\n",
        r.regressions.len()
    );
    out.push_str(&sortable_head(&[
        "scenario",
        "topology",
        "metric",
        "scheduler",
        "column",
        "vs",
        "baseline median",
        "delta",
        "p",
    ]));
    for g in &r.regressions {
        let c = &g.comparison;
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href=\"#{}\">{}</a></td><td>{}</td><td>{}</td><td class=\"reg\">{}</td><td>{}</td></tr>",
            xml_escape(&g.scenario),
            xml_escape(&g.topology),
            xml_escape(&g.metric),
            xml_escape(&g.sched),
            crate::html_cells::entry_anchor(&g.sched, &g.column, &g.scenario, &g.topology),
            xml_escape(r.label(&g.column)),
            xml_escape(r.label(&c.against)),
            fmt_num(c.against_median),
            c.delta_pct
                .map_or("n/a".to_string(), |d| format!("{d:+.1}%")),
            c.p_worse.map_or("-".to_string(), |p| format!("{p:.4}"))
        );
    }
    out.push_str("</tbody></table></details>\n");
    out
}

fn failures(r: &Report) -> String {
    let groups = summary::failures(r);
    if groups.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h2 id=\"failures\">Cells that did not pass</h2>\n");
    out.push_str(&sortable_head(&["outcome", "cell", "repeats", "reason"]));
    for f in &groups {
        let _ = writeln!(
            out,
            "<tr><td class=\"o-bad\">{}</td><td><a href=\"#{}\">{}</a></td><td>{}</td><td>{}</td></tr>",
            outcome_name(f.outcome),
            crate::html_cells::entry_anchor(&f.sched, &f.column, &f.scenario, &f.topology),
            xml_escape(&f.cell_text(r)),
            f.repeats_text(),
            xml_escape(&f.reason)
        );
    }
    out.push_str("</tbody></table>\n");
    out
}

fn compared(r: &Report) -> String {
    let mut out = String::from("<h2 id=\"compared\">What was compared</h2>\n<ul>\n");
    for (label, id) in legend(r) {
        let _ = writeln!(
            out,
            "<li><code>{}</code> = <code>{}</code></li>",
            xml_escape(label),
            xml_escape(id)
        );
    }
    for k in &r.provenance.kernels {
        let _ = writeln!(out, "<li>kernel {}</li>", xml_escape(&kernel_line(r, k)));
    }
    let scheds = sched_lines(r);
    if !scheds.is_empty() {
        let _ = writeln!(
            out,
            "<li>schedulers: {}</li>",
            xml_escape(&scheds.join("; "))
        );
    }
    let _ = writeln!(out, "<li>{}</li>", xml_escape(&host_line(r)));
    let _ = writeln!(out, "<li>{}</li>\n</ul>", xml_escape(&test_line(r)));
    let pv = &r.provenance;
    if pv.kernels.len() > 1 && !pv.config_diff.is_empty() {
        let _ = writeln!(
            out,
            "<details><summary>{} kernel config option(s) differ between columns</summary>",
            pv.config_diff.len()
        );
        let labels: Vec<String> = pv
            .kernels
            .iter()
            .map(|k| xml_escape(r.label(&k.column)))
            .collect();
        let mut cols = vec!["option"];
        cols.extend(labels.iter().map(String::as_str));
        out.push_str(&sortable_head(&cols));
        for d in &pv.config_diff {
            let _ = write!(out, "<tr><td>{}</td>", xml_escape(&d.option));
            for v in config_values(r, d) {
                let _ = write!(out, "<td>{}</td>", xml_escape(&v));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table></details>\n");
    }
    out
}

/// The page.
pub fn html(r: &Report) -> String {
    let verdict = if r.summary.failed() { "FAIL" } else { "PASS" };
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>ktstr matrix report: {verdict}</title>\n<style>{PAGE_CSS}{}{}</style></head><body>\n",
        crate::html_grid::GRID_CSS,
        crate::html_cells::CELLS_CSS
    );
    let _ = writeln!(
        out,
        "<h1>ktstr matrix report: {verdict}</h1>\n<p><b>{}</b></p>\n<p>{}</p>",
        xml_escape(&verdict_line(r)),
        xml_escape(&summary_line(r))
    );
    for n in &r.notices {
        let _ = writeln!(out, "<p class=\"reg\">notice: {}</p>", xml_escape(n));
    }
    out.push_str("<nav><a href=\"#summary\">summary</a><a href=\"#compared\">what was compared</a><a href=\"#metrics\">metrics</a><a href=\"#cells\">cells</a></nav>\n");
    out.push_str(&crate::html_grid::grid_table(r));
    out.push_str(&regressions(r));
    out.push_str(&failures(r));
    let suites = crate::subtests::markdown(&r.suites);
    if !suites.is_empty() {
        let _ = writeln!(out, "<h2>Suites</h2>\n<pre>{}</pre>", xml_escape(&suites));
    }
    out.push_str(&compared(r));
    out.push_str(&metrics(r));
    // A large report folds its cells: the browser lays out only what is opened (a link into a
    // folded part opens it, see OPEN_TARGET_SCRIPT).
    let open = if r.cells.len() <= FOLD_CELLS_OVER {
        " open"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "<h2 id=\"cells\">Cells</h2>\n<details{open}><summary>all {} cells in a sortable table</summary>{}</details>\n<details{open}><summary>each cell: outcome, reason, scheduler output, console tail, full log</summary>{}</details>",
        r.cells.len(),
        crate::html_cells::cells_table(r),
        crate::html_cells::cell_sections(r)
    );
    let _ = writeln!(
        out,
        "<script>{SORT_SCRIPT}{OPEN_TARGET_SCRIPT}</script>\n</body></html>"
    );
    out
}
