//! Text renderings of a [`Report`]: the terminal table, report.md (sized for a CI step summary),
//! junit.xml.

use crate::report::{Comparison, Direction, MetricTable, Report, Verdict};
use crate::result::Outcome;
use std::fmt::Write;

pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 1000.0 || a == a.trunc() {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_cmp(c: &Comparison, prefix: &str) -> String {
    let d = c
        .delta_pct
        .map(|d| format!("{d:+.1}%"))
        .unwrap_or_else(|| "n/a".into());
    let mark = match c.verdict {
        Verdict::Regression => " REGRESSION",
        Verdict::Improvement => " better",
        Verdict::WorseThanEevdf => " worse",
        Verdict::BetterThanEevdf => " better",
        _ => "",
    };
    format!("{prefix}{d}{mark}")
}

/// Median, then the delta against the baseline column and against eevdf.
fn cell_text(s: &crate::report::Stat) -> String {
    let mut t = fmt_num(s.median);
    if s.samples.len() > 1 {
        let _ = write!(t, " (n={})", s.samples.len());
    }
    if let Some(c) = &s.vs_baseline {
        let _ = write!(t, " {}", fmt_cmp(c, "Δbase "));
    }
    if let Some(c) = &s.vs_eevdf {
        let _ = write!(t, " {}", fmt_cmp(c, "Δeevdf "));
    }
    t
}

fn direction_text(d: Direction) -> &'static str {
    match d {
        Direction::HigherIsBetter => "higher is better",
        Direction::LowerIsBetter => "lower is better",
        Direction::Unknown => "direction unknown: not in the scenario catalogue, never flagged",
    }
}

/// "ms, lower is better, headline": what the catalogue says about the table's metric.
pub(crate) fn metric_note(t: &MetricTable) -> String {
    let mut parts: Vec<&str> = t.unit.iter().map(String::as_str).collect();
    parts.push(direction_text(t.direction));
    if t.headline {
        parts.push("headline");
    }
    parts.join(", ")
}

fn table_title(t: &MetricTable) -> String {
    format!(
        "{} / {} / {} ({})",
        t.scenario,
        t.topology,
        t.metric,
        metric_note(t)
    )
}

fn column_ids(r: &Report, t: &MetricTable) -> Vec<String> {
    r.columns
        .iter()
        .map(|c| c.id.clone())
        .filter(|id| {
            t.rows
                .iter()
                .any(|row| row.stats.iter().any(|s| &s.column == id))
        })
        .collect()
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass",
        Outcome::Fail => "fail",
        Outcome::Skipped => "skipped",
        Outcome::Crashed => "crashed",
        Outcome::Timeout => "timeout",
        Outcome::Error => "error",
    }
}

pub fn summary_line(r: &Report) -> String {
    let s = &r.summary;
    format!(
        "{} cells: {} pass, {} fail, {} skipped, {} crashed, {} timeout, {} error; {} regression(s)",
        s.cells, s.pass, s.fail, s.skipped, s.crashed, s.timeout, s.error, s.regressions
    )
}

fn test_line(r: &Report) -> String {
    format!(
        "Regressions: {} ({}), alpha {}, minimum effect {}% of the baseline median, at least {} repeats per side; {}.",
        r.test.name,
        r.test.alternative,
        r.test.thresholds.alpha,
        r.test.thresholds.min_effect * 100.0,
        r.test.thresholds.min_repeats,
        r.test.method
    )
}

/// The terminal rendering.
pub fn terminal(r: &Report) -> String {
    use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
    let mut out = String::new();
    for n in &r.notices {
        let _ = writeln!(out, "notice: {n}");
    }
    for t in &r.tables {
        let cols = column_ids(r, t);
        let mut table = Table::new();
        table
            .load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic);
        let mut header = vec!["scheduler".to_string()];
        header.extend(cols.iter().cloned());
        table.set_header(header);
        for row in &t.rows {
            let mut line = vec![row.sched.clone()];
            for c in &cols {
                line.push(
                    row.stats
                        .iter()
                        .find(|s| &s.column == c)
                        .map(cell_text)
                        .unwrap_or_else(|| "-".into()),
                );
            }
            table.add_row(line);
        }
        let _ = writeln!(out, "{}\n{table}\n", table_title(t));
    }
    for c in r.cells.iter().filter(|c| c.outcome != Outcome::Pass) {
        let _ = writeln!(
            out,
            "{:<8} {}: {}",
            outcome_name(c.outcome),
            c.label(),
            c.reason.as_deref().unwrap_or("")
        );
    }
    for g in &r.regressions {
        let _ = writeln!(
            out,
            "REGRESSION {} / {} / {}: {} @ {} {} (p={:.4})",
            g.scenario,
            g.topology,
            g.metric,
            g.sched,
            g.column,
            fmt_cmp(&g.comparison, &format!("vs {} ", g.comparison.against)),
            g.comparison.p_worse.unwrap_or(f64::NAN)
        );
    }
    out.push_str(&crate::subtests::terminal(&r.suites));
    let _ = writeln!(out, "{}", summary_line(r));
    out
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// report.md: GitHub-flavoured markdown, fit for `$GITHUB_STEP_SUMMARY`.
pub fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let verdict = if r.summary.failed() { "FAIL" } else { "PASS" };
    let _ = writeln!(out, "# ktstr matrix report: {verdict}\n");
    let _ = writeln!(out, "{}\n", summary_line(r));
    let _ = writeln!(out, "{}\n", test_line(r));
    for n in &r.notices {
        let _ = writeln!(out, "> notice: {}\n", md_escape(n));
    }
    if !r.regressions.is_empty() {
        let _ = writeln!(out, "## Regressions\n");
        let _ = writeln!(
            out,
            "| scenario | topology | metric | scheduler | column | vs | median | baseline | delta | p |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        for g in &r.regressions {
            let c = &g.comparison;
            let med = r
                .tables
                .iter()
                .find(|t| {
                    t.scenario == g.scenario && t.topology == g.topology && t.metric == g.metric
                })
                .and_then(|t| t.rows.iter().find(|row| row.sched == g.sched))
                .and_then(|row| row.stats.iter().find(|s| s.column == g.column))
                .map(|s| s.median)
                .unwrap_or(f64::NAN);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.4} |",
                g.scenario,
                g.topology,
                g.metric,
                g.sched,
                g.column,
                c.against,
                fmt_num(med),
                fmt_num(c.against_median),
                c.delta_pct
                    .map(|d| format!("{d:+.1}%"))
                    .unwrap_or_else(|| "n/a".into()),
                c.p_worse.unwrap_or(f64::NAN)
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "## Metrics (median over repeats)\n");
    for t in &r.tables {
        let cols = column_ids(r, t);
        let _ = writeln!(out, "### {}\n", table_title(t));
        let _ = writeln!(out, "| scheduler | {} |", cols.join(" | "));
        let _ = writeln!(out, "|---|{}", "---|".repeat(cols.len()));
        for row in &t.rows {
            let cells: Vec<String> = cols
                .iter()
                .map(|c| {
                    row.stats
                        .iter()
                        .find(|s| &s.column == c)
                        .map(|s| {
                            let t = cell_text(s);
                            if t.contains("REGRESSION") {
                                format!("**{t}**")
                            } else {
                                t
                            }
                        })
                        .unwrap_or_else(|| "-".into())
                })
                .collect();
            let _ = writeln!(out, "| {} | {} |", row.sched, cells.join(" | "));
        }
        let _ = writeln!(out);
    }
    out.push_str(&crate::subtests::markdown(&r.suites));
    let bad: Vec<_> = r
        .cells
        .iter()
        .filter(|c| c.outcome != Outcome::Pass)
        .collect();
    if !bad.is_empty() {
        let _ = writeln!(out, "## Cells that did not pass\n");
        let _ = writeln!(out, "| outcome | cell | reason |");
        let _ = writeln!(out, "|---|---|---|");
        for c in bad {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                outcome_name(c.outcome),
                md_escape(&c.label()),
                md_escape(c.reason.as_deref().unwrap_or(""))
            );
        }
        let _ = writeln!(out);
    }
    out
}

pub fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // XML 1.0 forbids most control characters, which console tails can contain.
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' && c != '\r' => o.push('?'),
            c => o.push(c),
        }
    }
    o
}

/// junit.xml: one testcase per cell (classname = scenario), plus one per flagged regression.
pub fn junit(r: &Report) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let s = &r.summary;
    let failures = s.fail + s.regressions;
    let errors = s.crashed + s.timeout + s.error;
    let _ = writeln!(
        out,
        "<testsuites name=\"ktstr matrix\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{}\">",
        s.cells + s.regressions,
        s.skipped
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"cells\" tests=\"{}\" failures=\"{}\" errors=\"{errors}\" skipped=\"{}\">",
        s.cells, s.fail, s.skipped
    );
    for c in &r.cells {
        let _ = write!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            xml_escape(&format!("{}.{}", c.scenario, c.topology)),
            xml_escape(&format!("{} @ {} #{}", c.sched, c.column, c.repeat)),
            c.wall_ms / 1000.0
        );
        let reason = xml_escape(c.reason.as_deref().unwrap_or(""));
        match c.outcome {
            Outcome::Pass => {
                let _ = writeln!(out, "/>");
            }
            Outcome::Skipped => {
                let _ = writeln!(
                    out,
                    ">\n      <skipped message=\"{reason}\"/>\n    </testcase>"
                );
            }
            Outcome::Fail => {
                let _ = writeln!(
                    out,
                    ">\n      <failure type=\"fail\" message=\"{reason}\"/>\n    </testcase>"
                );
            }
            o => {
                let _ = writeln!(
                    out,
                    ">\n      <error type=\"{}\" message=\"{reason}\"/>\n    </testcase>",
                    outcome_name(o)
                );
            }
        }
    }
    let _ = writeln!(out, "  </testsuite>");
    let _ = writeln!(
        out,
        "  <testsuite name=\"regressions\" tests=\"{}\" failures=\"{}\">",
        s.regressions, s.regressions
    );
    for g in &r.regressions {
        let msg = format!(
            "{} vs {}: {} against a baseline median of {}, p={:.4}",
            g.column,
            g.comparison.against,
            g.comparison
                .delta_pct
                .map(|d| format!("{d:+.1}%"))
                .unwrap_or_else(|| "n/a".into()),
            fmt_num(g.comparison.against_median),
            g.comparison.p_worse.unwrap_or(f64::NAN)
        );
        let _ = writeln!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\">\n      <failure type=\"regression\" message=\"{}\"/>\n    </testcase>",
            xml_escape(&format!("{}.{}.{}", g.scenario, g.topology, g.metric)),
            xml_escape(&format!("{} @ {}", g.sched, g.column)),
            xml_escape(&msg)
        );
    }
    let _ = writeln!(out, "  </testsuite>\n</testsuites>");
    out
}
