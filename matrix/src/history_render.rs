//! Renderings of a [`History`]: the terminal (a sparkline row per cell and headline metric),
//! history.md (a table of medians per run), history.json and history.html (the md table as a
//! page), and [`write`] for `--out DIR`.

use crate::history::{ChangeKind, ChangePoint, HISTORY_FILES, History, Series};
use crate::markdown::md_escape;
use crate::render::{TerminalOptions, fmt_num, xml_escape};
use comfy_table::{Cell, Color};
use std::fmt::Write;
use std::path::Path;

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// Marks a run without a value in a sparkline.
const GAP: char = '·';

/// The smallest range a sparkline spans, relative to the row's middle: run-to-run noise below
/// it draws a flat row instead of filling all eight heights.
const MIN_SPAN: f64 = 0.10;

/// One character per run: the row's medians scaled over their range (at least [`MIN_SPAN`]
/// of its middle, centred), a gap as `·`.
pub fn sparkline(s: &Series) -> String {
    let medians: Vec<f64> = s.points.iter().flatten().map(|p| p.median).collect();
    let lo = medians.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = medians.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mid = (lo + hi) / 2.0;
    let span = (hi - lo).max(MIN_SPAN * mid.abs());
    let base = mid - span / 2.0;
    let top = (BARS.len() - 1) as f64;
    s.points
        .iter()
        .map(|p| match p {
            None => GAP,
            Some(_) if span <= 0.0 => BARS[3],
            Some(p) => BARS[((p.median - base) / span * top).round().clamp(0.0, top) as usize],
        })
        .collect()
}

/// `worse from R4: 10.2 → 15.1 ms (+48.0 %, p=0.001)`
pub fn change_text(c: &ChangePoint, unit: Option<&str>) -> String {
    let word = match (c.kind, c.up) {
        (ChangeKind::Worse, _) => "worse",
        (ChangeKind::Better, _) => "better",
        (ChangeKind::Undirected, true) => "up",
        (ChangeKind::Undirected, false) => "down",
    };
    let unit = unit.map(|u| format!(" {u}")).unwrap_or_default();
    let delta = c
        .delta_pct
        .map(|d| format!("{d:+.1} %, "))
        .unwrap_or_default();
    format!(
        "{word} from {}: {} → {}{unit} ({delta}p={:.3})",
        c.run_label,
        fmt_num(c.before_median),
        fmt_num(c.after_median),
        c.p
    )
}

/// `12 series over 5 runs, 2 change points (1 worse, 1 better)`
pub fn summary_line(h: &History) -> String {
    let s = &h.summary;
    format!(
        "{} series over {} runs, {} change point{} ({} worse, {} better)",
        s.series,
        h.runs.len(),
        s.changes,
        if s.changes == 1 { "" } else { "s" },
        s.worse,
        s.better
    )
}

/// `2026-12-07 23:33 UTC` from Unix seconds.
pub fn utc_time(secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    // RFC 3339 is `YYYY-MM-DDTHH:MM:SSZ`: keep the date and the minute.
    let stamp = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} {} UTC", &stamp[..10], &stamp[11..16])
}

fn test_line(h: &History) -> String {
    format!(
        "Change points: {}; alpha {}, minimum effect {} %, {} permutations. Runs in the order given.",
        h.test.name,
        h.test.alpha,
        h.test.min_effect * 100.0,
        h.test.permutations
    )
}

/// `linux#5edbb0c/sched_ext = git:/path/to/linux#5edbb0c.../sched_ext` for every abbreviated
/// column.
fn legend_lines(h: &History) -> Vec<String> {
    h.columns
        .iter()
        .filter(|c| c.label != c.id)
        .map(|c| format!("{} = {}", c.label, c.id))
        .collect()
}

fn missing_lines(h: &History) -> Vec<String> {
    h.missing
        .iter()
        .map(|m| {
            format!(
                "{}: absent from {}",
                h.cell_label(&m.cell),
                m.absent_from.join(", ")
            )
        })
        .collect()
}

/// Rows shown without `--detail`: headline metrics, and any metric with a change point.
fn shown(s: &Series, detail: bool) -> bool {
    detail || s.headline || s.change.is_some()
}

fn metric_label(s: &Series) -> String {
    match &s.unit {
        Some(u) if !u.is_empty() => format!("{} ({u})", s.metric),
        _ => s.metric.clone(),
    }
}

fn ends(s: &Series) -> (String, String) {
    let mut present = s.points.iter().flatten();
    let first = present.next().map(|p| p.median);
    let last = s.points.iter().flatten().last().map(|p| p.median);
    (
        first.map_or("-".into(), fmt_num),
        last.map_or("-".into(), fmt_num),
    )
}

/// The terminal rendering: summary, runs, one row per cell and headline metric (every metric
/// with `detail`), the cells some runs lack.
pub fn terminal(h: &History, opts: TerminalOptions) -> String {
    let mut out = String::new();
    let paint = |code: &str, t: &str| {
        if opts.color {
            format!("\x1b[{code}m{t}\x1b[0m")
        } else {
            t.to_string()
        }
    };
    let verdict = if h.worse() {
        paint("1;31", "CHANGED FOR THE WORSE")
    } else {
        paint("1;32", "NO WORSE CHANGE")
    };
    let _ = writeln!(out, "ktstr history: {verdict}: {}", summary_line(h));
    for r in &h.runs {
        let _ = writeln!(out, "  {} {} ({})", r.label, r.dir, utc_time(r.started_at));
    }
    for l in legend_lines(h) {
        let _ = writeln!(out, "  {l}");
    }
    let mut t = crate::terminal::new_table(opts);
    t.set_header(["cell", "metric", "trend", "first", "last", "change"]);
    let mut hidden = 0;
    for s in &h.series {
        if !shown(s, opts.detail) {
            hidden += 1;
            continue;
        }
        let (first, last) = ends(s);
        let change = match &s.change {
            None => Cell::new("-"),
            Some(c) => {
                let cell = Cell::new(change_text(c, s.unit.as_deref()));
                match (opts.color, c.kind) {
                    (true, ChangeKind::Worse) => cell.fg(Color::Red),
                    (true, ChangeKind::Better) => cell.fg(Color::Green),
                    _ => cell,
                }
            }
        };
        t.add_row(vec![
            Cell::new(h.cell_label(&s.cell)),
            Cell::new(metric_label(s)),
            Cell::new(sparkline(s)),
            Cell::new(first),
            Cell::new(last),
            change,
        ]);
    }
    if !h.series.is_empty() {
        let _ = writeln!(out, "{t}");
    }
    if hidden > 0 {
        let _ = writeln!(
            out,
            "{hidden} other series without a change point (--detail shows them; history.md has all)"
        );
    }
    let missing = missing_lines(h);
    if !missing.is_empty() {
        let _ = writeln!(out, "Cells some runs lack (compared where present):");
        for l in missing {
            let _ = writeln!(out, "  {l}");
        }
    }
    for n in &h.notices {
        let _ = writeln!(out, "note: {n}");
    }
    let _ = writeln!(out, "{}", test_line(h));
    out
}

fn md_row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

fn md_table(h: &History, series: &[&Series]) -> String {
    let mut head = vec!["cell".to_string(), "metric".into(), "trend".into()];
    head.extend(h.runs.iter().map(|r| r.label.clone()));
    head.push("change".into());
    let mut out = md_row(&head);
    out += &md_row(&vec!["---".to_string(); head.len()]);
    for s in series {
        let mut row = vec![
            md_escape(&h.cell_label(&s.cell)),
            md_escape(&metric_label(s)),
            sparkline(s),
        ];
        row.extend(s.points.iter().map(|p| match p {
            Some(p) => fmt_num(p.median),
            None => "gap".into(),
        }));
        row.push(match &s.change {
            Some(c) if c.kind == ChangeKind::Worse => {
                format!("**{}**", md_escape(&change_text(c, s.unit.as_deref())))
            }
            Some(c) => md_escape(&change_text(c, s.unit.as_deref())),
            None => "-".into(),
        });
        out += &md_row(&row);
    }
    out
}

/// history.md: summary, runs, headline metrics' medians per run, every other metric folded.
pub fn markdown(h: &History) -> String {
    let mut out = String::from("# ktstr history\n\n");
    let verdict = if h.worse() {
        "**Changed for the worse**"
    } else {
        "No worse change"
    };
    let _ = writeln!(out, "{verdict}: {}.\n", summary_line(h));
    out += &md_row(&["run".into(), "directory".into(), "started".into()]);
    out += "| --- | --- | --- |\n";
    for r in &h.runs {
        out += &md_row(&[r.label.clone(), md_escape(&r.dir), utc_time(r.started_at)]);
    }
    for l in legend_lines(h) {
        let _ = writeln!(out, "\nColumn {}", md_escape(&l));
    }
    let (main, rest): (Vec<&Series>, Vec<&Series>) = h.series.iter().partition(|s| shown(s, false));
    if !main.is_empty() {
        let _ = write!(
            out,
            "\n## Headline metrics and changes\n\nMedians per run; `gap`: the run lacks the cell or its value.\n\n{}",
            md_table(h, &main)
        );
    }
    if !rest.is_empty() {
        let _ = write!(
            out,
            "\n<details><summary>Other metrics ({})</summary>\n\n{}\n</details>\n",
            rest.len(),
            md_table(h, &rest)
        );
    }
    let missing = missing_lines(h);
    if !missing.is_empty() {
        out += "\n## Cells some runs lack\n\nCompared where present.\n\n";
        for l in missing {
            let _ = writeln!(out, "- {}", md_escape(&l));
        }
    }
    for n in &h.notices {
        let _ = writeln!(out, "\nNote: {}", md_escape(n));
    }
    let _ = writeln!(out, "\n{}", test_line(h));
    out
}

fn html_table(h: &History, series: &[&Series]) -> String {
    let mut out = String::from("<table><thead><tr><th>cell</th><th>metric</th><th>trend</th>");
    for r in &h.runs {
        let _ = write!(
            out,
            "<th title=\"{}\">{}</th>",
            xml_escape(&r.dir),
            xml_escape(&r.label)
        );
    }
    out += "<th>change</th></tr></thead><tbody>\n";
    for s in series {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"spark\">{}</td>",
            xml_escape(&h.cell_label(&s.cell)),
            xml_escape(&metric_label(s)),
            sparkline(s)
        );
        for p in &s.points {
            match p {
                Some(p) => {
                    let _ = write!(
                        out,
                        "<td title=\"n={}\">{}</td>",
                        p.samples.len(),
                        fmt_num(p.median)
                    );
                }
                None => out += "<td class=\"gap\">gap</td>",
            }
        }
        let (class, text) = match &s.change {
            Some(c) => (
                match c.kind {
                    ChangeKind::Worse => "worse",
                    ChangeKind::Better => "better",
                    ChangeKind::Undirected => "",
                },
                change_text(c, s.unit.as_deref()),
            ),
            None => ("", "-".into()),
        };
        let _ = writeln!(out, "<td class=\"{class}\">{}</td></tr>", xml_escape(&text));
    }
    out + "</tbody></table>\n"
}

/// history.html: the markdown's content as one self-contained page.
pub fn html(h: &History) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ktstr history</title><style>\
         body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:1em 0}\
         td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:first-child,td:nth-child(2){text-align:left}\
         .spark{font-family:monospace;letter-spacing:1px}.worse{background:#f8d0d0}.better{background:#d0f0d0}\
         .gap{color:#999}</style></head><body>\n<h1>ktstr history</h1>\n",
    );
    let _ = writeln!(out, "<p>{}</p>\n<ul>", xml_escape(&summary_line(h)));
    for r in &h.runs {
        let _ = writeln!(
            out,
            "<li>{}: {} ({})</li>",
            xml_escape(&r.label),
            xml_escape(&r.dir),
            utc_time(r.started_at)
        );
    }
    out += "</ul>\n";
    out += &html_table(h, &h.series.iter().collect::<Vec<_>>());
    let missing = missing_lines(h);
    if !missing.is_empty() {
        out += "<h2>Cells some runs lack</h2><ul>\n";
        for l in missing {
            let _ = writeln!(out, "<li>{}</li>", xml_escape(&l));
        }
        out += "</ul>\n";
    }
    let _ = writeln!(out, "<p>{}</p>\n</body></html>", xml_escape(&test_line(h)));
    out
}

/// Writes history.md, history.json and history.html into `dir`.
pub fn write(dir: &Path, h: &History) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(h).map_err(std::io::Error::other)? + "\n";
    for (name, text) in HISTORY_FILES.iter().zip([markdown(h), json, html(h)]) {
        crate::session::write_atomically(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        assert_eq!(utc_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_time(1_700_000_000), "2023-11-14 22:13 UTC");
    }
}
