//! What a bisection writes: `bisect.jsonl`, one fsync'd line per step as it happens (Ctrl-C keeps
//! it, `--resume` reads it), and at the end `bisect.json` (the whole account, versioned),
//! `bisect.md` and `bisect.html` (the metric per tested commit, in commit order).

use super::candidates::Candidate;
use super::step::CellTemplate;
use ktstr_matrix::bisect::{EndpointCheck, Verdict};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Bumped when a field of [`StepRecord`] or [`BisectReport`] changes meaning or goes away.
pub const BISECT_FORMAT_VERSION: u32 = 1;
pub const JOURNAL_FILE: &str = "bisect.jsonl";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    GoodEndpoint,
    BadEndpoint,
    Candidate,
    /// Extra repeats of the culprit or its parent before the culprit is named.
    Confirm,
}

/// One step as it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub format_version: u32,
    pub role: Role,
    /// Position in the candidate list (0 = good, last = bad).
    pub index: usize,
    pub commit: String,
    pub subject: String,
    pub runs: u32,
    pub samples: Vec<f64>,
    pub median: Option<f64>,
    pub failures: u32,
    pub verdict: Option<Verdict>,
    pub p_worse_than_good: Option<f64>,
    pub p_better_than_bad: Option<f64>,
    pub untestable: Option<String>,
    pub build_s: Option<f64>,
    pub image_sha256: Option<String>,
    /// Tests still needed at most after this step, if nothing more is skipped.
    pub steps_left: u32,
    pub at: u64,
}

/// How a bisection ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Conclusion {
    Culprit {
        index: usize,
        commit: String,
        subject: String,
        author: String,
        /// The parent it was confirmed against.
        parent: String,
        /// p of "the culprit is worse than its parent" after the confirmation repeats (metric).
        p: Option<f64>,
        /// Relative change of the median from the parent, positive = worse (metric).
        change: Option<f64>,
        /// Why the culprit is suspicious, if it is (e.g. its image equals its parent's).
        suspicious: Option<String>,
    },
    /// The first bad commit is one of these; the others were skipped, with their reasons.
    Range {
        commits: Vec<String>,
        skipped: Vec<(String, String)>,
    },
    NoRegression {
        why: String,
    },
    Inconclusive {
        why: String,
    },
}

impl Conclusion {
    /// The process exit code (`crate::exit`).
    pub fn exit_code(&self) -> i32 {
        match self {
            Conclusion::Culprit { .. } | Conclusion::Range { .. } => crate::exit::OK,
            Conclusion::NoRegression { .. } => crate::exit::BISECT_NO_REGRESSION,
            Conclusion::Inconclusive { .. } => crate::exit::BISECT_INCONCLUSIVE,
        }
    }

    pub fn headline(&self) -> String {
        match self {
            Conclusion::Culprit {
                commit,
                subject,
                author,
                p,
                change,
                suspicious,
                ..
            } => {
                // A release list's candidates have no author: name the kernel, not a commit.
                let mut s = if author.is_empty() {
                    format!("first bad kernel: {commit} (after the one before it in the list)")
                } else {
                    format!("first bad commit: {commit} {subject:?} ({author})")
                };
                if let (Some(p), Some(c)) = (p, change) {
                    s.push_str(&format!(
                        ", {:+.1} % against its parent, p = {p:.4}",
                        c * 100.0
                    ));
                }
                if let Some(why) = suspicious {
                    s.push_str(&format!("; SUSPICIOUS: {why}"));
                }
                s
            }
            Conclusion::Range { commits, skipped } => format!(
                "the first bad commit is one of {} ({} could not be tested: {})",
                commits.join(", "),
                skipped.len(),
                skipped
                    .iter()
                    .map(|(c, why)| format!("{c}: {why}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Conclusion::NoRegression { why } => {
                format!("no regression between the endpoints: {why}")
            }
            Conclusion::Inconclusive { why } => format!("inconclusive: {why}"),
        }
    }
}

/// The whole account (`bisect.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BisectReport {
    pub format_version: u32,
    pub ktstr_version: String,
    pub good: String,
    pub bad: String,
    /// The metric bisected, or `None` for outcomes.
    pub metric: Option<String>,
    pub template: CellTemplate,
    pub candidates: Vec<Candidate>,
    pub endpoints: Option<EndpointCheck>,
    /// The latest record of every tested commit, in commit order.
    pub tested: Vec<StepRecord>,
    /// Commits built beyond the endpoints (skipped ones included).
    pub builds: u32,
    /// ceil(log2 N) for the N commits between the endpoints: what a bisection without skips and
    /// unknowns needs at most.
    pub log2_bound: u32,
    pub conclusion: Conclusion,
}

/// Appends step records, one fsync'd line each.
pub struct Journal {
    path: PathBuf,
    file: std::fs::File,
}

impl Journal {
    pub fn open(dir: &Path) -> std::io::Result<Journal> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(JOURNAL_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(Journal { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&mut self, rec: &StepRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }
}

/// The records of an earlier run of this bisection; a torn last line (an interrupted write) is
/// dropped.
pub fn read_journal(dir: &Path) -> std::io::Result<Vec<StepRecord>> {
    let path = dir.join(JOURNAL_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<StepRecord>(line) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => {
                return Err(std::io::Error::other(format!(
                    "{}:{}: {e}",
                    path.display(),
                    i + 1
                )));
            }
        }
    }
    Ok(out)
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// `bisect.md`: the conclusion, then every tested commit in commit order.
pub fn markdown(r: &BisectReport) -> String {
    let mut s = String::from("# ktstr bisect\n\n");
    s.push_str(&format!("**{}**\n\n", r.conclusion.headline()));
    s.push_str(&format!(
        "Good `{}`, bad `{}`; {} on `{}` under `{}`, topology `{}`, {} ms. ",
        r.good,
        r.bad,
        r.metric
            .as_deref()
            .map_or("outcomes".to_string(), |m| format!("`{m}`")),
        r.template.scenario,
        r.template.sched,
        r.template.topology,
        r.template.duration_ms
    ));
    s.push_str(&format!(
        "{} commits between the endpoints; {} built beyond them (ceil(log2 N) = {}).\n\n",
        r.candidates.len().saturating_sub(2),
        r.builds,
        r.log2_bound
    ));
    if let Some(e) = &r.endpoints {
        s.push_str(&format!(
            "Endpoints: change {} %, p = {} (one-sided Mann-Whitney U).\n\n",
            fmt_opt(e.change.map(|c| c * 100.0), 1),
            fmt_opt(e.p, 4)
        ));
    }
    s.push_str("| # | commit | subject | n | median | failures | verdict | p (worse than good) | p (better than bad) | build s | note |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for t in &r.tested {
        let verdict = match (t.role, t.verdict) {
            (Role::GoodEndpoint, _) => "good (endpoint)".to_string(),
            (Role::BadEndpoint, _) => "bad (endpoint)".to_string(),
            (_, Some(v)) => format!("{v:?}").to_lowercase(),
            (_, None) => "-".to_string(),
        };
        s.push_str(&format!(
            "| {} | `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            t.index,
            &t.commit[..t.commit.len().min(12)],
            escape_md(&t.subject),
            t.samples.len().max(t.runs as usize),
            fmt_opt(t.median, 1),
            t.failures,
            verdict,
            fmt_opt(t.p_worse_than_good, 4),
            fmt_opt(t.p_better_than_bad, 4),
            fmt_opt(t.build_s, 0),
            escape_md(t.untestable.as_deref().unwrap_or(""))
        ));
    }
    s
}

fn escape_md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `bisect.html`: self-contained; the metric's samples per tested commit in commit order (a dot
/// per sample, a bar at the median), coloured by verdict, and the table of `bisect.md`.
pub fn html(r: &BisectReport) -> String {
    let (w, h, pad) = (900.0, 320.0, 40.0);
    let all: Vec<f64> = r
        .tested
        .iter()
        .flat_map(|t| t.samples.iter().copied())
        .collect();
    let (lo, hi) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let n = r.candidates.len().max(2) as f64 - 1.0;
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / n;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * (v - lo) / span;
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' role='img'><rect width='100%' height='100%' fill='white'/>"
    );
    for t in &r.tested {
        let colour = match (t.role, t.verdict) {
            (Role::GoodEndpoint, _) | (_, Some(Verdict::Good)) => "#1a7f37",
            (Role::BadEndpoint, _) | (_, Some(Verdict::Bad)) => "#cf222e",
            _ => "#6e7781",
        };
        let cx = x(t.index);
        for v in &t.samples {
            svg.push_str(&format!(
                "<circle cx='{cx:.1}' cy='{:.1}' r='3' fill='{colour}' opacity='0.6'/>",
                y(*v)
            ));
        }
        if let Some(m) = t.median {
            svg.push_str(&format!(
                "<line x1='{:.1}' x2='{:.1}' y1='{2:.1}' y2='{2:.1}' stroke='{colour}' stroke-width='3'><title>{3} median {4:.1}</title></line>",
                cx - 8.0,
                cx + 8.0,
                y(m),
                escape_html(&t.commit[..t.commit.len().min(12)]),
                m
            ));
        }
    }
    svg.push_str(&format!(
        "<text x='{pad}' y='20' font-family='sans-serif' font-size='13'>{} per tested commit, oldest left (range {lo:.1} .. {hi:.1})</text></svg>",
        escape_html(r.metric.as_deref().unwrap_or("failures"))
    ));
    format!(
        "<!doctype html><html><head><meta charset='utf-8'><title>ktstr bisect</title></head><body style='font-family:sans-serif'><h1>ktstr bisect</h1><p><b>{}</b></p>{svg}<pre>{}</pre></body></html>\n",
        escape_html(&r.conclusion.headline()),
        escape_html(&markdown(r))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(index: usize, role: Role) -> StepRecord {
        StepRecord {
            format_version: BISECT_FORMAT_VERSION,
            role,
            index,
            commit: format!("{index:040}"),
            subject: "sched/core: a | pipe".into(),
            runs: 4,
            samples: vec![1.0, 2.0, 3.0, 4.0],
            median: Some(2.5),
            failures: 0,
            verdict: None,
            p_worse_than_good: None,
            p_better_than_bad: None,
            untestable: None,
            build_s: Some(31.0),
            image_sha256: None,
            steps_left: 2,
            at: 0,
        }
    }

    #[test]
    fn the_journal_survives_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.append(&rec(0, Role::GoodEndpoint)).unwrap();
        j.append(&rec(8, Role::BadEndpoint)).unwrap();
        drop(j);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL_FILE))
            .unwrap();
        f.write_all(b"{\"format_version\":1,\"ro").unwrap();
        let back = read_journal(dir.path()).unwrap();
        assert_eq!(
            back,
            vec![rec(0, Role::GoodEndpoint), rec(8, Role::BadEndpoint)]
        );
        assert!(read_journal(&dir.path().join("none")).unwrap().is_empty());
    }

    #[test]
    fn conclusions_map_to_documented_exit_codes() {
        let none = Conclusion::NoRegression {
            why: "p = 0.4".into(),
        };
        assert_eq!(none.exit_code(), crate::exit::BISECT_NO_REGRESSION);
        assert!(
            none.headline()
                .starts_with("no regression between the endpoints")
        );
        let inc = Conclusion::Inconclusive { why: "x".into() };
        assert_eq!(inc.exit_code(), crate::exit::BISECT_INCONCLUSIVE);
        let range = Conclusion::Range {
            commits: vec!["a".into(), "b".into()],
            skipped: vec![("a".into(), "build failed".into())],
        };
        assert_eq!(range.exit_code(), crate::exit::OK);
        assert!(range.headline().contains("a: build failed"));
    }

    #[test]
    fn markdown_escapes_subjects() {
        let r = BisectReport {
            format_version: BISECT_FORMAT_VERSION,
            ktstr_version: "t".into(),
            good: "git:/r#a".into(),
            bad: "git:/r#b".into(),
            metric: Some("wake_round_trips".into()),
            template: CellTemplate {
                kernel: None,
                configs: vec![],
                sched: "eevdf".into(),
                scenario: "wake".into(),
                params: Default::default(),
                topology: "1n1l2c1t".into(),
                duration_ms: 3000,
                memory_mib: 256,
            },
            candidates: vec![],
            endpoints: None,
            tested: vec![rec(0, Role::GoodEndpoint)],
            builds: 0,
            log2_bound: 0,
            conclusion: Conclusion::NoRegression { why: "x".into() },
        };
        let md = markdown(&r);
        assert!(md.contains("a \\| pipe"), "{md}");
        assert!(html(&r).contains("<svg"));
    }
}
