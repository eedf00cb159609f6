//! Text renderings of a [`Report`]: the terminal ([`crate::terminal`]), report.md
//! ([`crate::markdown`]), junit.xml, and the phrases they share.

use crate::provenance::{ColumnKernel, ConfigDiff};
use crate::report::{Comparison, Direction, MetricTable, Report, Stat, Verdict};
use crate::result::Outcome;
use crate::summary::{self, GridEntry, Mark};
use std::fmt::Write;

pub use crate::markdown::{MD_LIMIT_BYTES, markdown, markdown_within};
pub use crate::terminal::{TerminalOptions, terminal, terminal_with};

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

/// `vs 6.1/sched_ext +52.4% REGRESSION`: a comparison in one phrase (the regression lines).
pub(crate) fn cmp_text(c: &Comparison, prefix: &str) -> String {
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

pub(crate) fn outcome_name(o: Outcome) -> &'static str {
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

pub(crate) fn test_line(r: &Report) -> String {
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

/// `PASS: 6 cells: 6 pass; no regression`: the verdict every rendering opens with.
pub fn verdict_line(r: &Report) -> String {
    let s = &r.summary;
    let verdict = if s.failed() { "FAIL" } else { "PASS" };
    let mut parts = vec![format!("{} pass", s.pass)];
    for (n, word) in [
        (s.fail, "fail"),
        (s.crashed, "crashed"),
        (s.timeout, "timeout"),
        (s.error, "error"),
        (s.skipped, "skipped"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {word}"));
        }
    }
    let regressions = match s.regressions {
        0 => "no regression".to_string(),
        1 => "1 regression".to_string(),
        n => format!("{n} regressions"),
    };
    format!(
        "{verdict}: {} cells: {}; {regressions}",
        s.cells,
        parts.join(", ")
    )
}

/// What a grid entry's words mean, in two short lines.
pub fn grid_note(r: &Report) -> String {
    let mut baselines: Vec<&str> = r
        .columns
        .iter()
        .filter_map(|c| c.baseline.as_deref())
        .map(|b| r.label(b))
        .collect();
    baselines.dedup();
    let t = &r.test.thresholds;
    let base = if baselines.is_empty() {
        String::new()
    } else {
        format!("base: vs {}; ", baselines.join(", "))
    };
    format!(
        "Headline metrics, median over repeats; {base}eevdf: vs eevdf in the same column.\n\
         better/worse: {} p <= {} and a change of at least {}% ({}+ repeats each); n.s.: not both.",
        r.test.name,
        t.alpha,
        t.min_effect * 100.0,
        t.min_repeats
    )
}

/// ` ms`, `/s`, or nothing for dimensionless units.
fn unit_suffix(t: &MetricTable) -> String {
    match t.unit.as_deref() {
        None | Some("units" | "count" | "ratio" | "") => String::new(),
        Some("1/s") => "/s".into(),
        Some(u) => format!(" {u}"),
    }
}

fn delta_text(c: &Comparison) -> String {
    c.delta_pct
        .map(|d| format!("{d:+.1}%"))
        .unwrap_or_else(|| "n/a".into())
}

/// `base +52.4% worse`: the word by `mark` (plain, bold, a span with p on hover).
pub(crate) fn vs_text(c: &Comparison, name: &str, mark: &dyn Fn(&Comparison) -> String) -> String {
    format!("{name} {} {}", delta_text(c), mark(c))
}

/// The plain word of a comparison.
pub(crate) fn plain_mark(c: &Comparison) -> String {
    Mark::of(c).word().to_string()
}

/// The lines of a grid entry: one per headline metric (`max_gap_ms 16 ms base +52.4% worse
/// eevdf +52.4% worse`), then the pass count when a cell did not pass. `escape` is applied to
/// the names, `mark` renders the word.
pub(crate) fn entry_lines_with(
    e: &GridEntry,
    escape: &dyn Fn(&str) -> String,
    mark: &dyn Fn(&Comparison) -> String,
) -> Vec<String> {
    let mut lines = Vec::new();
    for c in &e.changes {
        let mut l = format!(
            "{} {}{}",
            escape(&c.table.metric),
            fmt_num(c.stat.median),
            escape(&unit_suffix(c.table))
        );
        if let Some(b) = &c.stat.vs_baseline {
            let _ = write!(l, " {}", vs_text(b, "base", mark));
        }
        if let Some(v) = &c.stat.vs_eevdf {
            let _ = write!(l, " {}", vs_text(v, "eevdf", mark));
        }
        lines.push(l);
    }
    if e.outcomes.pass < e.outcomes.total {
        lines.push(format!("{}/{} pass", e.outcomes.pass, e.outcomes.total));
    } else if lines.is_empty() {
        lines.push(format!("{} pass", e.outcomes.total));
    }
    lines
}

pub(crate) fn entry_lines(e: &GridEntry) -> Vec<String> {
    entry_lines_with(e, &|s| s.to_string(), &plain_mark)
}

/// `max_gap_ms (ms, lower is better, headline)`: a detail table's row label.
pub(crate) fn metric_row_label(t: &MetricTable) -> String {
    format!("{} ({})", t.metric, metric_note(t))
}

/// `16 n=3 ±6.2%`, then the comparisons that came out better or worse.
pub(crate) fn detail_entry_with(s: &Stat, mark: &dyn Fn(&Comparison) -> String) -> String {
    let mut t = format!("{} n={}", fmt_num(s.median), s.samples.len());
    if let Some(sp) = summary::spread_text(&s.samples, s.median) {
        let _ = write!(t, " {sp}");
    }
    for (c, name) in [(&s.vs_baseline, "base"), (&s.vs_eevdf, "eevdf")] {
        if let Some(c) = c
            && matches!(Mark::of(c), Mark::Better | Mark::Worse)
        {
            let _ = write!(t, " {}", vs_text(c, name, mark));
        }
    }
    t
}

pub(crate) fn detail_entry_text(s: &Stat) -> String {
    detail_entry_with(s, &plain_mark)
}

/// The metric tables of one scenario x topology, and its lanes (scheduler, column id).
pub(crate) struct DetailGroup<'a> {
    pub scenario: &'a str,
    pub topology: &'a str,
    pub lanes: Vec<(&'a str, &'a str)>,
    pub tables: Vec<&'a MetricTable>,
}

pub(crate) fn detail_groups(r: &Report) -> Vec<DetailGroup<'_>> {
    let mut groups: Vec<DetailGroup> = Vec::new();
    for t in &r.tables {
        let at = groups
            .iter()
            .position(|g| g.scenario == t.scenario && g.topology == t.topology);
        let g = match at {
            Some(i) => &mut groups[i],
            None => {
                groups.push(DetailGroup {
                    scenario: &t.scenario,
                    topology: &t.topology,
                    lanes: Vec::new(),
                    tables: Vec::new(),
                });
                groups.last_mut().expect("just pushed")
            }
        };
        g.tables.push(t);
    }
    for g in &mut groups {
        let mut scheds: Vec<&str> = Vec::new();
        for t in &g.tables {
            for row in &t.rows {
                if !scheds.contains(&row.sched.as_str()) {
                    scheds.push(&row.sched);
                }
            }
        }
        for sched in scheds {
            for c in &r.columns {
                let present = g.tables.iter().any(|t| {
                    t.rows
                        .iter()
                        .any(|row| row.sched == sched && row.stats.iter().any(|s| s.column == c.id))
                });
                if present {
                    g.lanes.push((sched, &c.id));
                }
            }
        }
    }
    groups
}

/// Columns whose label is not their id: (label, full id).
pub fn legend(r: &Report) -> Vec<(&str, &str)> {
    r.columns
        .iter()
        .filter(|c| !c.label.is_empty() && c.label != c.id)
        .map(|c| (c.label.as_str(), c.id.as_str()))
        .collect()
}

fn short_hash(h: &str) -> &str {
    &h[..h.len().min(12)]
}

/// `6.12/sched_ext: 6.12.117, cache key 0a7b3d13a02a, bzImage sha256 1234abcd5678`.
pub(crate) fn kernel_line(r: &Report, k: &ColumnKernel) -> String {
    let mut l = format!(
        "{}: {}",
        r.label(&k.column),
        k.release.as_deref().unwrap_or("release unknown")
    );
    if let Some(key) = &k.key {
        let _ = write!(l, ", cache key {}", short_hash(key));
    }
    if let Some(sha) = &k.image_sha256 {
        let _ = write!(l, ", image sha256 {}", short_hash(sha));
    }
    l
}

/// `kernel:scx_simple 1a2b3c4d5e6f`, one per scheduler (per column when the hashes differ);
/// eevdf, the kernel's own, has no hash of its own.
pub(crate) fn sched_lines(r: &Report) -> Vec<String> {
    let mut names: Vec<&str> = Vec::new();
    for s in &r.provenance.scheds {
        if s.sched != crate::report::EEVDF && !names.contains(&s.sched.as_str()) {
            names.push(&s.sched);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let builds: Vec<_> = r
                .provenance
                .scheds
                .iter()
                .filter(|s| s.sched == name)
                .collect();
            if builds.windows(2).all(|w| w[0].hash == w[1].hash) {
                format!("{name} {}", short_hash(&builds[0].hash))
            } else {
                let each: Vec<String> = builds
                    .iter()
                    .map(|b| format!("{} ({})", short_hash(&b.hash), r.label(&b.column)))
                    .collect();
                format!("{name} {}", each.join(", "))
            }
        })
        .collect()
}

/// An option's value in each column: `y`, `not set`, or `?` where no .config was recorded.
pub(crate) fn config_values(r: &Report, d: &ConfigDiff) -> Vec<String> {
    r.provenance
        .kernels
        .iter()
        .zip(&d.values)
        .map(|(k, v)| match v {
            _ if !k.config_recorded => "?".to_string(),
            Some(v) => v.clone(),
            None => "not set".to_string(),
        })
        .collect()
}

/// `host: <CPU>, 2 cores, 7.8 GiB, Linux 6.1.0; backend qemu-tcg/microvm; QEMU ...; ktstr 0.1.0`.
pub(crate) fn host_line(r: &Report) -> String {
    let pv = &r.provenance;
    let mut l = match &pv.host {
        Some(h) => format!(
            "host: {}, {} cores, {:.1} GiB, Linux {}",
            h.cpu_model,
            h.cores,
            h.memory_mib as f64 / 1024.0,
            h.kernel
        ),
        None => "host: not recorded".to_string(),
    };
    if !pv.backends.is_empty() {
        let _ = write!(l, "; backend {}", pv.backends.join(", "));
    }
    if let Some(q) = pv.host.as_ref().and_then(|h| h.qemu_version.as_ref()) {
        let _ = write!(l, "; {q}");
    }
    let _ = write!(l, "; ktstr {}", r.ktstr_version);
    l
}
