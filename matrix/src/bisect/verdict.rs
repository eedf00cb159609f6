//! Verdicts that survive noise: is a candidate like the good endpoint, like the bad one, or not
//! yet known? Each verdict is a pair of one-sided rank tests (the Mann–Whitney U test the report
//! uses) against the endpoints' samples, and an unknown verdict asks for more repeats on a
//! schedule, as Chromium's Pinpoint does, before the candidate is called untestable.

use crate::stats::{mann_whitney_greater, median};
use serde::{Deserialize, Serialize};

/// Which way the bisected metric gets worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Worse {
    Higher,
    Lower,
}

/// What counts as a difference worth finding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Criterion {
    pub worse: Worse,
    /// The smallest relative change of the median worth finding (0.05 = 5 %).
    pub threshold: f64,
    /// Significance level of each one-sided test.
    pub alpha: f64,
}

impl Criterion {
    pub fn new(worse: Worse, threshold: f64) -> Criterion {
        Criterion {
            worse,
            threshold,
            alpha: DEFAULT_ALPHA,
        }
    }

    /// One-sided p-value of "`x` is worse than `y`" (`None` when a sample is empty).
    pub fn p_worse(&self, x: &[f64], y: &[f64]) -> Option<f64> {
        let t = match self.worse {
            Worse::Higher => mann_whitney_greater(x, y)?,
            Worse::Lower => mann_whitney_greater(&negated(x), &negated(y))?,
        };
        Some(t.p_greater)
    }

    /// Relative change of the median from `from` to `to`, signed so that positive is worse.
    pub fn worsening(&self, from: &[f64], to: &[f64]) -> Option<f64> {
        let (a, b) = (median(from)?, median(to)?);
        if a == 0.0 {
            return None;
        }
        let rel = (b - a) / a.abs();
        Some(match self.worse {
            Worse::Higher => rel,
            Worse::Lower => -rel,
        })
    }
}

/// Each test at 1 %: a bisection makes a handful of verdicts, and one false verdict sends it
/// down the wrong half.
pub const DEFAULT_ALPHA: f64 = 0.01;

/// Repeats a candidate gets: the first entry at once, the next ones while its verdict is
/// unknown. With 3 against 3 no rank test reaches 1 %, so an unknown at the start is normal.
pub const REPEAT_SCHEDULE: [u32; 4] = [4, 8, 12, 16];

/// The repeats to have after `have` when the verdict is still unknown (`None`: the cap is reached).
pub fn next_repeats(have: u32) -> Option<u32> {
    REPEAT_SCHEDULE.iter().copied().find(|&n| n > have)
}

fn negated(xs: &[f64]) -> Vec<f64> {
    xs.iter().map(|x| -x).collect()
}

/// A candidate against the endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Good,
    Bad,
    Unknown,
}

/// A verdict with the evidence behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub verdict: Verdict,
    /// p of "the candidate is worse than the good endpoint".
    pub p_worse_than_good: Option<f64>,
    /// p of "the candidate is better than the bad endpoint".
    pub p_better_than_bad: Option<f64>,
}

/// Whether the endpoints differ at all: the bad one worse than the good one by the test and by at
/// least the threshold. A bisection that starts without this would name noise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointCheck {
    pub differ: bool,
    pub p: Option<f64>,
    /// Relative change of the median, positive = worse.
    pub change: Option<f64>,
}

pub fn check_endpoints(good: &[f64], bad: &[f64], c: &Criterion) -> EndpointCheck {
    let p = c.p_worse(bad, good);
    let change = c.worsening(good, bad);
    let differ = p.is_some_and(|p| p < c.alpha) && change.is_some_and(|ch| ch >= c.threshold);
    EndpointCheck { differ, p, change }
}

/// Classifies a candidate's samples against both endpoints' samples.
///
/// Worse than good and not better than bad: bad. Better than bad and not worse than good: good.
/// Neither: unknown (more repeats may tell). Both (the candidate sits between the endpoints, e.g.
/// two commits each slowed it down): the nearer endpoint by the median, which bisects towards the
/// larger step.
pub fn classify(sample: &[f64], good: &[f64], bad: &[f64], c: &Criterion) -> Classification {
    let p_wg = c.p_worse(sample, good);
    let p_bb = c.p_worse(bad, sample);
    let worse_than_good = p_wg.is_some_and(|p| p < c.alpha);
    let better_than_bad = p_bb.is_some_and(|p| p < c.alpha);
    let verdict = match (worse_than_good, better_than_bad) {
        (true, false) => Verdict::Bad,
        (false, true) => Verdict::Good,
        (false, false) => Verdict::Unknown,
        (true, true) => match (median(sample), median(good), median(bad)) {
            (Some(m), Some(g), Some(b)) if (m - g).abs() > (m - b).abs() => Verdict::Bad,
            (Some(_), Some(_), Some(_)) => Verdict::Good,
            _ => Verdict::Unknown,
        },
    };
    Classification {
        verdict,
        p_worse_than_good: p_wg,
        p_better_than_bad: p_bb,
    }
}

/// `--outcome` bisection: a candidate is bad when any repeat did not pass, good when all passed.
/// (A flaky failure shows up as a bad candidate; the culprit's confirmation repeats catch that.)
pub fn classify_outcomes(failures: u32, runs: u32) -> Verdict {
    if runs == 0 {
        Verdict::Unknown
    } else if failures > 0 {
        Verdict::Bad
    } else {
        Verdict::Good
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn around(center: f64, n: usize) -> Vec<f64> {
        // Deterministic spread of +-2 % around the center.
        (0..n)
            .map(|i| center * (1.0 + 0.04 * (i as f64 / n.max(1) as f64 - 0.5)))
            .collect()
    }

    #[test]
    fn endpoints_that_do_not_differ_are_said_so() {
        let c = Criterion::new(Worse::Higher, 0.05);
        let good = around(100.0, 8);
        let same = around(101.0, 8);
        let check = check_endpoints(&good, &same, &c);
        assert!(!check.differ, "{check:?}");
        let bad = around(130.0, 8);
        let check = check_endpoints(&good, &bad, &c);
        assert!(check.differ, "{check:?}");
        assert!(check.p.unwrap() < 0.01);
        assert!((check.change.unwrap() - 0.3).abs() < 0.02);
        // Lower-is-worse metrics: a drop is the regression.
        let c = Criterion::new(Worse::Lower, 0.05);
        assert!(check_endpoints(&bad, &good, &c).differ);
        assert!(!check_endpoints(&good, &bad, &c).differ);
    }

    #[test]
    fn a_candidate_is_good_bad_or_unknown_against_the_endpoints() {
        let c = Criterion::new(Worse::Higher, 0.05);
        let (good, bad) = (around(100.0, 8), around(130.0, 8));
        assert_eq!(
            classify(&around(100.5, 8), &good, &bad, &c).verdict,
            Verdict::Good
        );
        assert_eq!(
            classify(&around(129.0, 8), &good, &bad, &c).verdict,
            Verdict::Bad
        );
        // Two samples cannot reach 1 % either way: more repeats are needed.
        let few = classify(&[129.0, 131.0], &good, &bad, &c);
        assert_eq!(few.verdict, Verdict::Unknown);
        assert!(few.p_worse_than_good.unwrap() > 0.01);
        // Between the endpoints: the nearer one.
        assert_eq!(
            classify(&around(122.0, 8), &good, &bad, &c).verdict,
            Verdict::Bad
        );
        assert_eq!(
            classify(&around(108.0, 8), &good, &bad, &c).verdict,
            Verdict::Good
        );
    }

    #[test]
    fn repeats_grow_on_a_schedule_up_to_a_cap() {
        assert_eq!(next_repeats(0), Some(4));
        assert_eq!(next_repeats(4), Some(8));
        assert_eq!(next_repeats(9), Some(12));
        assert_eq!(next_repeats(16), None);
    }

    #[test]
    fn outcomes_bisect_on_any_failure() {
        assert_eq!(classify_outcomes(0, 4), Verdict::Good);
        assert_eq!(classify_outcomes(1, 4), Verdict::Bad);
        assert_eq!(classify_outcomes(0, 0), Verdict::Unknown);
    }
}
