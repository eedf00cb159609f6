//! Binary search over an ordered list of candidates (commits in first-parent order, or releases)
//! whose first entry is known good and last known bad. Candidates that cannot be tested (a build
//! failure, a boot failure that is not what is bisected, a verdict that stays unknown) are
//! skipped, as `git bisect skip` does: the search tests the untested candidate nearest the middle
//! instead, and when skips surround the culprit the result is a range, reported as such.

use serde::{Deserialize, Serialize};

/// What is known of one candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mark", rename_all = "snake_case")]
pub enum Mark {
    Untested,
    Good,
    Bad,
    Skipped { reason: String },
}

/// Where the search ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Found {
    /// The first bad candidate; its predecessor in the list is good.
    Culprit { index: usize },
    /// The first bad candidate is one of `first..=last`; those before `last` were skipped.
    Range { first: usize, last: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Search {
    marks: Vec<Mark>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("a bisection needs at least two candidates (a good and a bad one), got {0}")]
    TooFew(usize),
    #[error("candidate {0} is out of range")]
    OutOfRange(usize),
}

impl Search {
    /// `n` candidates: index 0 is good, index `n - 1` bad.
    pub fn new(n: usize) -> Result<Search, SearchError> {
        if n < 2 {
            return Err(SearchError::TooFew(n));
        }
        let mut marks = vec![Mark::Untested; n];
        marks[0] = Mark::Good;
        marks[n - 1] = Mark::Bad;
        Ok(Search { marks })
    }

    pub fn marks(&self) -> &[Mark] {
        &self.marks
    }

    pub fn mark(&mut self, index: usize, mark: Mark) -> Result<(), SearchError> {
        let slot = self
            .marks
            .get_mut(index)
            .ok_or(SearchError::OutOfRange(index))?;
        *slot = mark;
        Ok(())
    }

    /// The last good candidate before the first bad one, and that first bad one.
    pub fn bounds(&self) -> (usize, usize) {
        let hi = self
            .marks
            .iter()
            .position(|m| *m == Mark::Bad)
            .unwrap_or(self.marks.len() - 1);
        let lo = self.marks[..hi]
            .iter()
            .rposition(|m| *m == Mark::Good)
            .unwrap_or(0);
        (lo, hi)
    }

    /// The next candidate to test: the untested one nearest the middle of the bounds (the lower
    /// one on a tie), or `None` when nothing between the bounds is left to test.
    pub fn next(&self) -> Option<usize> {
        let (lo, hi) = self.bounds();
        let mid2 = lo + hi; // twice the middle, to stay in integers
        (lo + 1..hi)
            .filter(|&i| self.marks[i] == Mark::Untested)
            .min_by_key(|&i| ((2 * i).abs_diff(mid2), i))
    }

    /// Tests still needed at most if no candidate is skipped from here on.
    pub fn steps_left(&self) -> u32 {
        let (lo, hi) = self.bounds();
        let untested = (lo + 1..hi)
            .filter(|&i| self.marks[i] == Mark::Untested)
            .count();
        usize::BITS - untested.leading_zeros()
    }

    /// The result once [`next`](Self::next) is `None`.
    pub fn found(&self) -> Found {
        let (lo, hi) = self.bounds();
        if hi == lo + 1 {
            Found::Culprit { index: hi }
        } else {
            Found::Range {
                first: lo + 1,
                last: hi,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search where candidates from `culprit` on are bad and `broken` ones are skipped;
    /// returns what it found and how many candidates it tested.
    fn bisect(n: usize, culprit: usize, broken: &[usize]) -> (Found, usize) {
        let mut s = Search::new(n).unwrap();
        let mut tested = 0;
        while let Some(i) = s.next() {
            tested += 1;
            let mark = if broken.contains(&i) {
                Mark::Skipped {
                    reason: "build failed".into(),
                }
            } else if i >= culprit {
                Mark::Bad
            } else {
                Mark::Good
            };
            s.mark(i, mark).unwrap();
        }
        (s.found(), tested)
    }

    #[test]
    fn finds_every_culprit_within_log2_steps() {
        for n in 2..40 {
            let bound = (n as f64 - 1.0).log2().ceil() as usize;
            for culprit in 1..n {
                let (found, tested) = bisect(n, culprit, &[]);
                assert_eq!(found, Found::Culprit { index: culprit }, "n={n}");
                assert!(
                    tested <= bound,
                    "n={n} culprit={culprit}: {tested} > {bound}"
                );
            }
        }
    }

    #[test]
    fn a_skipped_candidate_is_stepped_around() {
        // 16 candidates, culprit 10, 8 does not build: 10 is still named, since 9 is good.
        let (found, tested) = bisect(16, 10, &[8]);
        assert_eq!(found, Found::Culprit { index: 10 });
        assert!(tested <= 4 + 3, "{tested}");
        // 8 is the culprit and does not build: the first bad one is 8 or 9.
        let (found, _) = bisect(16, 8, &[8]);
        assert_eq!(found, Found::Range { first: 8, last: 9 });
        // Skips on both sides of the culprit widen the range to what is unknown.
        let (found, _) = bisect(16, 8, &[7, 8]);
        assert_eq!(found, Found::Range { first: 7, last: 9 });
    }

    #[test]
    fn two_candidates_need_no_test_and_fewer_are_refused() {
        let s = Search::new(2).unwrap();
        assert_eq!(s.next(), None);
        assert_eq!(s.found(), Found::Culprit { index: 1 });
        assert_eq!(Search::new(1), Err(SearchError::TooFew(1)));
    }

    #[test]
    fn steps_left_counts_down() {
        let mut s = Search::new(17).unwrap();
        assert_eq!(s.steps_left(), 4);
        let i = s.next().unwrap();
        assert_eq!(i, 8);
        s.mark(i, Mark::Good).unwrap();
        assert_eq!(s.steps_left(), 3);
    }
}
