//! report.md: GitHub-flavoured markdown fit for `$GITHUB_STEP_SUMMARY`. The verdict and the
//! summary grid first, then regressions, cells that did not pass and what was compared; every
//! metric's table folded into `<details>` blocks. GitHub refuses a step summary over 1 MiB, so
//! the file stops before that and says what it left out.

use crate::render::{
    config_values, detail_entry_with, detail_groups, entry_lines_with, fmt_num, grid_note,
    host_line, kernel_line, legend, metric_row_label, outcome_name, sched_lines, test_line,
    verdict_line,
};
use crate::report::{Comparison, Report};
use crate::summary::{self, Mark};
use std::fmt::Write;

/// GitHub's limit on one step summary.
pub const MD_LIMIT_BYTES: usize = 1024 * 1024;
/// Kept free for the note that says where the file was cut.
const CUT_NOTE_RESERVE: usize = 512;

/// Text for a markdown table cell or a line: a `|` would end the cell, a newline the row, and
/// `<`/`>` could open or close the HTML of a `<details>` block, and a backtick a code span (in
/// which GitHub shows the other escapes verbatim).
pub fn md_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('`', "\\`")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\r', "")
        .replace('\n', " ")
}

fn bold_mark(c: &Comparison) -> String {
    match Mark::of(c) {
        m @ (Mark::Better | Mark::Worse) => format!("**{}**", m.word()),
        m => m.word().to_string(),
    }
}

/// Appends blocks until the next would pass the limit; from then on drops every block and
/// counts what was dropped.
struct Budget {
    out: String,
    limit: usize,
    dropped: usize,
}

impl Budget {
    fn push(&mut self, block: &str) {
        if self.dropped == 0 && self.out.len() + block.len() + CUT_NOTE_RESERVE <= self.limit {
            self.out.push_str(block);
        } else {
            self.dropped += 1;
        }
    }

    fn finish(mut self) -> String {
        if self.dropped > 0 {
            let _ = writeln!(
                self.out,
                "\n> **report.md stops here**: {} more block(s) would pass GitHub's {} KiB step-summary limit. report.html and report.json have everything.",
                self.dropped,
                self.limit / 1024
            );
        }
        self.out
    }
}

fn table_row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

fn table_head(header: &[String]) -> String {
    format!("{}|{}\n", table_row(header), "---|".repeat(header.len()))
}

fn grid(r: &Report, b: &mut Budget) {
    let g = summary::grid(r);
    if g.rows.is_empty() {
        return;
    }
    let mut header = vec!["scheduler".to_string(), "scenario".to_string()];
    header.extend(g.columns.iter().map(|c| md_escape(r.label(c))));
    b.push(&format!("## Summary\n\n{}", table_head(&header)));
    for row in &g.rows {
        let mut cells = vec![
            md_escape(&row.sched),
            md_escape(&format!("{} {}", row.scenario, row.topology)),
        ];
        for e in &row.entries {
            cells.push(match e {
                None => "-".into(),
                Some(e) => entry_lines_with(e, &md_escape, &bold_mark).join("<br>"),
            });
        }
        b.push(&table_row(&cells));
    }
    b.push(&format!("\n{}\n\n", grid_note(r).replace('\n', " ")));
}

fn regressions(r: &Report, b: &mut Budget) {
    if r.regressions.is_empty() {
        return;
    }
    let header: Vec<String> = [
        "scenario",
        "topology",
        "metric",
        "scheduler",
        "column",
        "vs",
        "median",
        "baseline",
        "delta",
        "p",
    ]
    .map(String::from)
    .to_vec();
    b.push(&format!("## Regressions\n\n{}", table_head(&header)));
    for g in &r.regressions {
        let c = &g.comparison;
        let median = r
            .tables
            .iter()
            .find(|t| t.scenario == g.scenario && t.topology == g.topology && t.metric == g.metric)
            .and_then(|t| t.rows.iter().find(|row| row.sched == g.sched))
            .and_then(|row| row.stats.iter().find(|s| s.column == g.column))
            .map_or(f64::NAN, |s| s.median);
        b.push(&table_row(&[
            md_escape(&g.scenario),
            md_escape(&g.topology),
            md_escape(&g.metric),
            md_escape(&g.sched),
            md_escape(r.label(&g.column)),
            md_escape(r.label(&c.against)),
            fmt_num(median),
            fmt_num(c.against_median),
            c.delta_pct
                .map(|d| format!("{d:+.1}%"))
                .unwrap_or_else(|| "n/a".into()),
            format!("{:.4}", c.p_worse.unwrap_or(f64::NAN)),
        ]));
    }
    b.push("\n");
}

fn failures(r: &Report, b: &mut Budget) {
    let groups = summary::failures(r);
    if groups.is_empty() {
        return;
    }
    let header: Vec<String> = ["outcome", "cell", "repeats", "reason"]
        .map(String::from)
        .to_vec();
    b.push(&format!(
        "## Cells that did not pass\n\n{}",
        table_head(&header)
    ));
    for f in &groups {
        b.push(&table_row(&[
            outcome_name(f.outcome).to_string(),
            md_escape(&f.cell_text(r)),
            f.repeats_text(),
            md_escape(&f.reason),
        ]));
    }
    b.push("\n");
}

fn compared(r: &Report, b: &mut Budget) {
    let mut s = String::from("## What was compared\n\n");
    for (label, id) in legend(r) {
        // No code spans: GitHub does not decode the escapes' entities inside them.
        let _ = writeln!(s, "- **{}** = {}", md_escape(label), md_escape(id));
    }
    for k in &r.provenance.kernels {
        let _ = writeln!(s, "- kernel {}", md_escape(&kernel_line(r, k)));
    }
    let scheds = sched_lines(r);
    if !scheds.is_empty() {
        let _ = writeln!(s, "- schedulers: {}", md_escape(&scheds.join("; ")));
    }
    let _ = writeln!(s, "- {}", md_escape(&host_line(r)));
    let _ = writeln!(s, "- {}\n", md_escape(&test_line(r)));
    b.push(&s);
    let pv = &r.provenance;
    if pv.kernels.len() > 1 && !pv.config_diff.is_empty() {
        let mut header = vec!["option".to_string()];
        header.extend(pv.kernels.iter().map(|k| md_escape(r.label(&k.column))));
        let mut block = format!(
            "<details><summary>{} kernel config option(s) differ between columns</summary>\n\n{}",
            pv.config_diff.len(),
            table_head(&header)
        );
        for d in &pv.config_diff {
            let mut cells = vec![md_escape(&d.option)];
            cells.extend(config_values(r, d).iter().map(|v| md_escape(v)));
            block.push_str(&table_row(&cells));
        }
        block.push_str("\n</details>\n\n");
        b.push(&block);
    }
}

fn details(r: &Report, b: &mut Budget) {
    let groups = detail_groups(r);
    if groups.is_empty() {
        return;
    }
    b.push("## All metrics\n\nMedian, number of repeats and spread (half the range, relative to the median); better/worse against the baseline column (base) and eevdf.\n\n");
    for g in groups {
        let mut header = vec!["metric".to_string()];
        header.extend(
            g.lanes
                .iter()
                .map(|(sched, col)| md_escape(&format!("{sched} @ {}", r.label(col)))),
        );
        let mut block = format!(
            "<details><summary>{} / {}: {} metric(s)</summary>\n\n{}",
            md_escape(g.scenario),
            md_escape(g.topology),
            g.tables.len(),
            table_head(&header)
        );
        for t in &g.tables {
            let mut cells = vec![md_escape(&metric_row_label(t))];
            for (sched, col) in &g.lanes {
                let stat = t
                    .rows
                    .iter()
                    .find(|row| row.sched == *sched)
                    .and_then(|row| row.stats.iter().find(|s| s.column == *col));
                cells.push(
                    stat.map_or("-".into(), |s| md_escape(&detail_entry_with(s, &bold_mark))),
                );
            }
            block.push_str(&table_row(&cells));
        }
        block.push_str("\n</details>\n\n");
        b.push(&block);
    }
}

/// report.md within GitHub's step-summary limit.
pub fn markdown(r: &Report) -> String {
    markdown_within(r, MD_LIMIT_BYTES)
}

/// report.md in at most `limit` bytes: blocks past it are left out, with a note saying so.
pub fn markdown_within(r: &Report, limit: usize) -> String {
    let mut b = Budget {
        out: String::new(),
        limit,
        dropped: 0,
    };
    let verdict = if r.summary.failed() { "FAIL" } else { "PASS" };
    let mut head = format!(
        "# ktstr matrix report: {verdict}\n\n**{}**\n\n",
        md_escape(&verdict_line(r))
    );
    for n in &r.notices {
        let _ = writeln!(head, "> notice: {}\n", md_escape(n));
    }
    b.push(&head);
    grid(r, &mut b);
    regressions(r, &mut b);
    failures(r, &mut b);
    let suites = crate::subtests::markdown(&r.suites);
    if !suites.is_empty() {
        b.push(&suites);
    }
    compared(r, &mut b);
    details(r, &mut b);
    b.finish()
}
