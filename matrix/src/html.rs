//! report.html: one self-contained page (inline CSS and SVG; no scripts, no external assets) with a
//! strip plot per metric: every repeat as a dot, the median as a bar, one lane per
//! scheduler x column.

use crate::render::{fmt_num, markdown, metric_note, summary_line, xml_escape};
use crate::report::{MetricTable, Report, Verdict};
use std::fmt::Write;

const LANE_H: f64 = 22.0;
const LEFT: f64 = 260.0;
const PLOT_W: f64 = 460.0;

fn plot(t: &MetricTable) -> String {
    let lanes: Vec<(&str, &crate::report::Stat)> = t
        .rows
        .iter()
        .flat_map(|r| r.stats.iter().map(move |s| (r.sched.as_str(), s)))
        .collect();
    let values = lanes.iter().flat_map(|(_, s)| s.samples.iter().copied());
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return String::new();
    }
    if (hi - lo).abs() < f64::EPSILON {
        lo -= 1.0;
        hi += 1.0;
    }
    let x = |v: f64| LEFT + (v - lo) / (hi - lo) * PLOT_W;
    let h = 30.0 + LANE_H * lanes.len() as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{title}">"##,
        w = LEFT + PLOT_W + 30.0,
        title = xml_escape(&t.metric)
    );
    for (i, (sched, st)) in lanes.iter().enumerate() {
        let y = 15.0 + LANE_H * i as f64 + LANE_H / 2.0;
        let flagged = [&st.vs_baseline, &st.vs_eevdf]
            .iter()
            .any(|c| c.as_ref().is_some_and(|c| c.verdict == Verdict::Regression));
        let color = if flagged { "#c0392b" } else { "#2c3e50" };
        let _ = write!(
            s,
            r##"<text x="4" y="{ty}" font-size="11" fill="{color}">{label}</text><line x1="{LEFT}" x2="{x2}" y1="{y}" y2="{y}" stroke="#ddd"/>"##,
            ty = y + 4.0,
            x2 = LEFT + PLOT_W,
            label = xml_escape(&format!("{sched} @ {}", st.column))
        );
        for v in &st.samples {
            let _ = write!(
                s,
                r##"<circle cx="{:.1}" cy="{y}" r="3.5" fill="{color}" fill-opacity="0.6"><title>{}</title></circle>"##,
                x(*v),
                fmt_num(*v)
            );
        }
        let mx = x(st.median);
        let _ = write!(
            s,
            r##"<line x1="{mx:.1}" x2="{mx:.1}" y1="{}" y2="{}" stroke="{color}" stroke-width="2"/>"##,
            y - 8.0,
            y + 8.0
        );
    }
    let ya = h - 10.0;
    let _ = write!(
        s,
        r##"<text x="{LEFT}" y="{ya}" font-size="10">{}</text><text x="{}" y="{ya}" font-size="10" text-anchor="end">{}</text></svg>"##,
        fmt_num(lo),
        LEFT + PLOT_W,
        fmt_num(hi)
    );
    s
}

/// The page: summary, one section per metric (plot + table), then the markdown report as text.
pub fn html(r: &Report) -> String {
    let mut out = String::new();
    let verdict = if r.summary.failed() { "FAIL" } else { "PASS" };
    let grid_css = crate::html_grid::GRID_CSS;
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ktstr matrix report: {verdict}</title>\n<style>body{{font-family:sans-serif;max-width:1100px;margin:1em auto;color:#222}}table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}.reg{{color:#c0392b;font-weight:bold}}{grid_css}pre{{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px}}</style></head><body>\n"
    );
    let _ = writeln!(
        out,
        "<h1>ktstr matrix report: {verdict}</h1>\n<p>{}</p>",
        xml_escape(&summary_line(r))
    );
    let _ = writeln!(
        out,
        "<p>Test: {} ({}); alpha {}, minimum effect {}%, at least {} repeats; {}.</p>",
        xml_escape(&r.test.name),
        xml_escape(&r.test.alternative),
        r.test.thresholds.alpha,
        r.test.thresholds.min_effect * 100.0,
        r.test.thresholds.min_repeats,
        xml_escape(&r.test.method)
    );
    out.push_str(&crate::html_grid::grid_table(r));
    for t in &r.tables {
        let dir = xml_escape(&metric_note(t));
        let _ = writeln!(
            out,
            "<h2>{} / {} / {} <small>({dir})</small></h2>\n{}",
            xml_escape(&t.scenario),
            xml_escape(&t.topology),
            xml_escape(&t.metric),
            plot(t)
        );
        let _ = writeln!(
            out,
            "<table><tr><th>scheduler</th><th>column</th><th>median</th><th>n</th><th>vs baseline</th><th>vs eevdf</th></tr>"
        );
        for row in &t.rows {
            for st in &row.stats {
                let cmp = |c: &Option<crate::report::Comparison>| match c {
                    None => "-".to_string(),
                    Some(c) => {
                        let d = c
                            .delta_pct
                            .map(|d| format!("{d:+.1}%"))
                            .unwrap_or_else(|| "n/a".into());
                        let p = c.p_worse.map(|p| format!(" p={p:.3}")).unwrap_or_default();
                        if c.verdict == Verdict::WorseThanEevdf {
                            format!("<span class=\"reg\">{d}{p} worse than eevdf</span>")
                        } else if c.verdict == Verdict::Regression {
                            format!("<span class=\"reg\">{d}{p} regression</span>")
                        } else {
                            format!("{d}{p}")
                        }
                    }
                };
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    xml_escape(&row.sched),
                    xml_escape(r.label(&st.column)),
                    fmt_num(st.median),
                    st.samples.len(),
                    cmp(&st.vs_baseline),
                    cmp(&st.vs_eevdf)
                );
            }
        }
        let _ = writeln!(out, "</table>");
    }
    let _ = writeln!(
        out,
        "<h2>Full report</h2>\n<pre>{}</pre>\n</body></html>",
        xml_escape(&markdown(r))
    );
    out
}
