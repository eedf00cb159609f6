//! `ktstr bisect`: the commit between a good and a bad kernel that made a cell worse.
//!
//! The endpoints run first, with repeats; if they do not differ the bisection stops and says so.
//! Each step then tests the candidate [`Search`] picks, as a small matrix run through a session
//! (`OUT/steps/<index>-<sha>/`), classifies it against the endpoints' samples with rank tests and
//! adds repeats while the verdict is unknown. A candidate that does not build, or cannot produce
//! the metric, is skipped. The culprit is confirmed against its parent with extra repeats before
//! it is named. Every step is in `OUT/bisect.jsonl` as it happens; a rerun with `--resume` replays
//! the finished steps from their stored cells and cached kernels, booting and building nothing
//! that was done.

pub mod candidates;
pub mod record;
pub mod sched_axis;
pub mod step;

use candidates::Candidate;
use ktstr_matrix::bisect::{
    Criterion, EndpointCheck, Mark, Search, Verdict, check_endpoints, classify, classify_outcomes,
    next_repeats,
};
use ktstr_matrix::stats::median;
use record::{BISECT_FORMAT_VERSION, BisectReport, Conclusion, Journal, Role, StepRecord};
use std::path::{Path, PathBuf};
use step::{Evidence, StepContext, StepError};

/// Repeats of each endpoint: enough for the one-sided rank test to reach 1 % on its own.
pub const ENDPOINT_REPEATS: u32 = 8;
/// Repeats of the culprit and its parent before the culprit is named.
pub const CONFIRM_REPEATS: u32 = 8;
/// Repeats per round when two candidates are measured against each other (the endpoints, the
/// culprit and its parent): the rounds alternate between the two, so a drift of the host over
/// the measurement lands on both sides instead of reading as a regression (docs/benchmarks.md,
/// "Release bisection over Debian's 6.12.y").
pub const ROUND_REPEATS: u32 = 2;

/// What makes a commit bad.
#[derive(Debug, Clone, PartialEq)]
pub enum Goal {
    /// A scenario metric got worse by at least the criterion's threshold.
    Metric { name: String, criterion: Criterion },
    /// A cell failed, crashed, timed out, or the kernel ejected the scheduler.
    Outcome,
}

impl Goal {
    /// The metric bisected; `None` on outcomes.
    pub fn metric(&self) -> Option<&str> {
        match self {
            Goal::Metric { name, .. } => Some(name),
            Goal::Outcome => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BisectError {
    #[error(transparent)]
    Step(#[from] StepError),
    #[error("{}: {source}", path.display())]
    Journal {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} exists: pass --resume to continue that bisection, or choose another --out",
        path.display()
    )]
    JournalExists { path: PathBuf },
    #[error("interrupted")]
    Interrupted,
}

/// A bisection in `out` over `candidates` (good first, bad last).
pub struct Bisection<'a> {
    pub ctx: StepContext<'a>,
    pub candidates: Vec<Candidate>,
    pub goal: Goal,
    pub out: PathBuf,
    pub good: String,
    pub bad: String,
}

struct Run<'b, 'a> {
    b: &'b Bisection<'a>,
    journal: Journal,
    /// Records of an earlier run (`--resume`): replayed steps are not written twice.
    earlier: Vec<StepRecord>,
    /// Latest evidence per candidate index.
    evidence: Vec<Option<Evidence>>,
    latest: Vec<Option<StepRecord>>,
    built: std::collections::BTreeSet<usize>,
}

impl<'a> Bisection<'a> {
    /// Opens (or, with `resume`, continues) the journal and runs the bisection to its end.
    pub fn run(&self, resume: bool) -> Result<BisectReport, BisectError> {
        let jpath = self.out.join(record::JOURNAL_FILE);
        let journal_err = |source| BisectError::Journal {
            path: jpath.clone(),
            source,
        };
        if jpath.exists() && !resume {
            return Err(BisectError::JournalExists { path: jpath });
        }
        let earlier = record::read_journal(&self.out).map_err(journal_err)?;
        let journal = Journal::open(&self.out).map_err(journal_err)?;
        let n = self.candidates.len();
        let mut run = Run {
            b: self,
            journal,
            earlier,
            evidence: vec![None; n],
            latest: vec![None; n],
            built: Default::default(),
        };
        let (endpoints, conclusion) = run.bisect()?;
        let tested = run.latest.iter().flatten().cloned().collect();
        Ok(BisectReport {
            format_version: BISECT_FORMAT_VERSION,
            ktstr_version: env!("CARGO_PKG_VERSION").into(),
            good: self.good.clone(),
            bad: self.bad.clone(),
            metric: self.goal.metric().map(String::from),
            template: self.ctx.template.clone(),
            candidates: self.candidates.clone(),
            endpoints,
            tested,
            builds: run.built.len() as u32,
            log2_bound: log2_ceil(n.saturating_sub(1)),
            conclusion,
        })
    }
}

/// ceil(log2 x), 0 for x <= 1.
pub fn log2_ceil(x: usize) -> u32 {
    if x <= 1 {
        0
    } else {
        usize::BITS - (x - 1).leading_zeros()
    }
}

impl Run<'_, '_> {
    fn bisect(&mut self) -> Result<(Option<EndpointCheck>, Conclusion), BisectError> {
        let last = self.b.candidates.len() - 1;
        let (good, bad) = self.test_alternating(
            (0, Role::GoodEndpoint),
            (last, Role::BadEndpoint),
            ENDPOINT_REPEATS,
        )?;
        for (ev, which) in [(&good, "good"), (&bad, "bad")] {
            if let Some(why) = &ev.untestable {
                return Ok((
                    None,
                    Conclusion::Inconclusive {
                        why: format!("the {which} endpoint cannot be tested: {why}"),
                    },
                ));
            }
        }
        let endpoints = match &self.b.goal {
            Goal::Metric { criterion, name } => {
                let check = check_endpoints(&good.samples, &bad.samples, criterion);
                if !check.differ {
                    let why = format!(
                        "{name}: median {} -> {} ({} %, threshold {} %), p = {} with {} and {} samples",
                        fmt(median(&good.samples)),
                        fmt(median(&bad.samples)),
                        fmt(check.change.map(|c| c * 100.0)),
                        criterion.threshold * 100.0,
                        check.p.map_or("-".into(), |p| format!("{p:.4}")),
                        good.samples.len(),
                        bad.samples.len()
                    );
                    return Ok((Some(check), Conclusion::NoRegression { why }));
                }
                Some(check)
            }
            Goal::Outcome => {
                if good.failures > 0 {
                    return Ok((
                        None,
                        Conclusion::Inconclusive {
                            why: format!(
                                "the good endpoint fails too ({} of {}: {})",
                                good.failures,
                                good.runs,
                                good.reasons.first().map(String::as_str).unwrap_or("")
                            ),
                        },
                    ));
                }
                if bad.failures == 0 {
                    return Ok((
                        None,
                        Conclusion::NoRegression {
                            why: format!(
                                "every one of the bad endpoint's {} cells passed",
                                bad.runs
                            ),
                        },
                    ));
                }
                None
            }
        };
        let mut search = Search::new(self.b.candidates.len()).expect("validated: >= 2 candidates");
        while let Some(i) = search.next() {
            let mark = self.decide(i, &search)?;
            search.mark(i, mark).expect("index from the search");
        }
        let conclusion = match search.found() {
            ktstr_matrix::bisect::Found::Culprit { index } => self.confirm(index)?,
            ktstr_matrix::bisect::Found::Range { first, last } => {
                let skipped = (first..last)
                    .filter_map(|i| match &search.marks()[i] {
                        Mark::Skipped { reason } => {
                            Some((self.b.candidates[i].short().to_string(), reason.clone()))
                        }
                        _ => None,
                    })
                    .collect();
                Conclusion::Range {
                    commits: (first..=last)
                        .map(|i| self.b.candidates[i].short().to_string())
                        .collect(),
                    skipped,
                }
            }
        };
        Ok((endpoints, conclusion))
    }

    /// Tests candidate `i` with repeats on the schedule until its verdict is known.
    fn decide(&mut self, i: usize, search: &Search) -> Result<Mark, BisectError> {
        self.built.insert(i);
        let mut repeats = next_repeats(0).expect("a non-empty schedule");
        loop {
            let steps_left = search.steps_left().saturating_sub(1);
            let ev = self.test(i, repeats, Role::Candidate, steps_left)?;
            if let Some(why) = ev.untestable {
                return Ok(Mark::Skipped { reason: why });
            }
            let verdict = self.latest[i].as_ref().and_then(|r| r.verdict);
            match verdict {
                Some(Verdict::Good) => return Ok(Mark::Good),
                Some(Verdict::Bad) => return Ok(Mark::Bad),
                _ => {}
            }
            match next_repeats(ev.runs) {
                Some(n) => repeats = n,
                None => {
                    return Ok(Mark::Skipped {
                        reason: format!(
                            "untestable: still neither good- nor bad-like after {} repeats",
                            ev.runs
                        ),
                    });
                }
            }
        }
    }

    /// Confirms the culprit against its parent with extra repeats of both.
    fn confirm(&mut self, index: usize) -> Result<Conclusion, BisectError> {
        let parent = index - 1;
        let p_role = if parent == 0 {
            Role::GoodEndpoint
        } else {
            Role::Confirm
        };
        let c_role = if index == self.b.candidates.len() - 1 {
            Role::BadEndpoint
        } else {
            Role::Confirm
        };
        let (pe, ce) = self.test_alternating((parent, p_role), (index, c_role), CONFIRM_REPEATS)?;
        let cand = &self.b.candidates[index];
        let suspicious = match (&ce.image_sha256, &pe.image_sha256) {
            (Some(a), Some(b)) if a == b => Some(format!(
                "its kernel image is identical to its parent's (sha256 {})",
                &a[..12]
            )),
            _ => None,
        };
        let (p, change, confirmed) = match &self.b.goal {
            Goal::Metric { criterion, .. } => {
                let p = criterion.p_worse(&ce.samples, &pe.samples);
                let change = criterion.worsening(&pe.samples, &ce.samples);
                let ok = p.is_some_and(|p| p < criterion.alpha)
                    && change.is_some_and(|c| c >= criterion.threshold);
                (p, change, ok)
            }
            Goal::Outcome => (
                None,
                None,
                classify_outcomes(ce.failures, ce.runs) == Verdict::Bad
                    && classify_outcomes(pe.failures, pe.runs) == Verdict::Good,
            ),
        };
        if !confirmed {
            return Ok(Conclusion::Inconclusive {
                why: format!(
                    "{} {:?} looked like the first bad commit, but with {} and {} repeats it is not worse than its parent {} by the test (p = {}, change {} %)",
                    cand.short(),
                    cand.subject,
                    ce.runs,
                    pe.runs,
                    self.b.candidates[parent].short(),
                    p.map_or("-".into(), |p| format!("{p:.4}")),
                    fmt(change.map(|c| c * 100.0))
                ),
            });
        }
        Ok(Conclusion::Culprit {
            index,
            commit: cand.id.clone(),
            subject: cand.subject.clone(),
            author: cand.author.clone(),
            parent: self.b.candidates[parent].id.clone(),
            p,
            change,
            suspicious,
        })
    }

    /// Runs two candidates to `repeats` cells each in alternating rounds of [`ROUND_REPEATS`]
    /// (a first, then b, then a again...). One that cannot be tested ends the rounds: more
    /// repeats would not change that, and the callers conclude from it.
    fn test_alternating(
        &mut self,
        (a, a_role): (usize, Role),
        (b, b_role): (usize, Role),
        repeats: u32,
    ) -> Result<(Evidence, Evidence), BisectError> {
        let mut upto = 0;
        loop {
            upto = (upto + ROUND_REPEATS).min(repeats);
            let ea = self.test(a, upto, a_role, 0)?;
            let eb = self.test(b, upto, b_role, 0)?;
            let untestable = ea.untestable.is_some() || eb.untestable.is_some();
            if untestable || upto >= repeats {
                return Ok((ea, eb));
            }
        }
    }

    /// Runs candidate `i` to `repeats` cells, records the step and prints its line.
    fn test(
        &mut self,
        i: usize,
        repeats: u32,
        role: Role,
        steps_left: u32,
    ) -> Result<Evidence, BisectError> {
        let cand = self.b.candidates[i].clone();
        let dir = step_dir(&self.b.out, i, &cand);
        let ev = match self.known_untestable(i) {
            // A commit an earlier run of this bisection could not build is not built again.
            Some(ev) => ev,
            None => {
                step::run(&self.b.ctx, &cand, repeats, &dir)?.ok_or(BisectError::Interrupted)?
            }
        };
        let (verdict, p_wg, p_bb) = match role {
            Role::Candidate | Role::Confirm => self.verdict(&ev),
            _ => (None, None, None),
        };
        let rec = StepRecord {
            format_version: BISECT_FORMAT_VERSION,
            role,
            index: i,
            commit: cand.id.clone(),
            subject: cand.subject.clone(),
            runs: ev.runs,
            samples: ev.samples.clone(),
            median: median(&ev.samples),
            failures: ev.failures,
            verdict,
            p_worse_than_good: p_wg,
            p_better_than_bad: p_bb,
            untestable: ev.untestable.clone(),
            build_s: ev.build_s,
            image_sha256: ev.image_sha256.clone(),
            steps_left,
            at: ktstr_matrix::store::unix_now(),
        };
        let replayed = self
            .earlier
            .iter()
            .any(|e| e.role == rec.role && e.index == rec.index && e.runs == rec.runs);
        if !replayed {
            self.journal
                .append(&rec)
                .map_err(|source| BisectError::Journal {
                    path: self.journal.path().to_path_buf(),
                    source,
                })?;
        }
        eprintln!("{}", step_line(&rec, self.b.goal.metric()));
        self.evidence[i] = Some(ev.clone());
        self.latest[i] = Some(rec);
        Ok(ev)
    }

    /// The evidence of an earlier run (`--resume`) that found candidate `i` untestable.
    fn known_untestable(&self, i: usize) -> Option<Evidence> {
        let r = self
            .earlier
            .iter()
            .rev()
            .find(|r| r.index == i && r.untestable.is_some())?;
        Some(Evidence {
            runs: r.runs,
            samples: r.samples.clone(),
            failures: r.failures,
            untestable: r.untestable.clone(),
            reasons: Vec::new(),
            image_sha256: r.image_sha256.clone(),
            build_s: r.build_s,
        })
    }

    fn verdict(&self, ev: &Evidence) -> (Option<Verdict>, Option<f64>, Option<f64>) {
        if ev.untestable.is_some() {
            return (None, None, None);
        }
        let last = self.b.candidates.len() - 1;
        match (&self.b.goal, &self.evidence[0], &self.evidence[last]) {
            (Goal::Metric { criterion, .. }, Some(g), Some(b)) => {
                let c = classify(&ev.samples, &g.samples, &b.samples, criterion);
                (Some(c.verdict), c.p_worse_than_good, c.p_better_than_bad)
            }
            (Goal::Outcome, _, _) => (Some(classify_outcomes(ev.failures, ev.runs)), None, None),
            _ => (None, None, None),
        }
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

/// `OUT/steps/<index>-<short sha>`: one session directory per candidate.
pub fn step_dir(out: &Path, index: usize, cand: &Candidate) -> PathBuf {
    out.join("steps")
        .join(format!("{index:03}-{}", cand.short()))
}

/// The terminal line of one step.
pub fn step_line(r: &StepRecord, metric: Option<&str>) -> String {
    let what = match r.role {
        Role::GoodEndpoint => "good endpoint".to_string(),
        Role::BadEndpoint => "bad endpoint".to_string(),
        Role::Candidate => format!("step (<= {} left)", r.steps_left),
        Role::Confirm => "confirm".to_string(),
    };
    let build = r
        .build_s
        .map_or(String::new(), |b| format!(" build {b:.0} s,"));
    let result = match (&r.untestable, metric) {
        (Some(why), _) => format!("skipped: {why}"),
        (None, Some(m)) => format!(
            "{m} median {} (n = {}){}{}",
            fmt(r.median),
            r.samples.len(),
            r.verdict
                .map_or(String::new(), |v| format!(", {v:?}").to_lowercase()),
            match (r.p_worse_than_good, r.p_better_than_bad) {
                (Some(a), Some(b)) =>
                    format!(" (p worse than good {a:.4}, p better than bad {b:.4})"),
                _ => String::new(),
            }
        ),
        (None, None) => format!(
            "{} of {} cells did not pass{}",
            r.failures,
            r.runs,
            r.verdict.map_or(String::new(), |v| format!(
                ": {}",
                format!("{v:?}").to_lowercase()
            ))
        ),
    };
    format!(
        "bisect: {what} #{} {} {:?}:{build} {result}",
        r.index,
        &r.commit[..r.commit.len().min(12)],
        r.subject
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_bound() {
        assert_eq!(
            [1, 2, 3, 4, 5, 7, 8, 9].map(log2_ceil),
            [0, 1, 2, 2, 3, 3, 3, 4]
        );
    }
}
