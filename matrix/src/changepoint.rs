//! Single change-point detection over a series of runs (`ktstr report R1 R2 ... Rn`).
//!
//! Each run contributes its samples (one value per repeat). For every allowed split of the
//! series into "runs before" and "runs after", the pooled samples of both sides are compared
//! with the Mann–Whitney U statistic, standardised with the tie-corrected variance; the split
//! with the largest |z| is the candidate. Taking the largest of several splits inflates |z|, so
//! its p-value comes from a permutation test of that same maximum: the pooled samples are
//! shuffled over the runs (a fixed number of times, from a fixed seed, so a re-render gives the
//! same p) and p is the share of shuffles whose maximum |z| reaches the observed one.
//!
//! A candidate is a change point when p <= alpha and the pooled medians of the two sides differ
//! by at least the minimum effect. The effect is what keeps a one-run outlier from being named:
//! the side holding it has its median set by the other runs. With four or more runs each side
//! must hold two runs, so neither the first nor the newest run alone can make a change point.

/// Shuffles of the permutation test: the smallest reachable p is 1 / (PERMUTATIONS + 1).
pub const PERMUTATIONS: usize = 999;

/// The best split of a series and how strong it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Index into the series of the first run after the change.
    pub at: usize,
    /// Pooled medians of the runs before and from `at` on.
    pub before_median: f64,
    pub after_median: f64,
    /// Standardised U: positive when the runs after tend to be greater.
    pub z: f64,
    /// Permutation p-value of the largest |z| over all allowed splits.
    pub p: f64,
}

impl Split {
    /// (after - before) / |before|; `None` when the median before is 0.
    pub fn relative_change(&self) -> Option<f64> {
        (self.before_median != 0.0)
            .then(|| (self.after_median - self.before_median) / self.before_median.abs())
    }

    /// Past both the significance level and the minimum relative effect (any change when the
    /// median before is 0).
    pub fn is_change(&self, alpha: f64, min_effect: f64) -> bool {
        let effect = match self.relative_change() {
            Some(r) => r.abs() >= min_effect,
            None => self.after_median != self.before_median,
        };
        effect && self.p <= alpha
    }
}

/// Runs needed on each side of a split: one with three runs (there is no other way to split
/// them), two from four on.
fn min_side(runs: usize) -> usize {
    if runs <= 3 { 1 } else { 2 }
}

/// Mid-ranks (1-based) of `xs` and the tie term sum(t^3 - t) of the variance correction.
fn mid_ranks(xs: &[f64]) -> (Vec<f64>, f64) {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut ranks = vec![0.0; xs.len()];
    let mut ties = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && xs[order[j + 1]] == xs[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        i = j + 1;
    }
    (ranks, ties)
}

/// The largest |z| over the splits at sample counts `bounds`, and which bound gave it (the
/// first on a tie) with its signed z.
fn max_z(ranks: &[f64], bounds: &[usize], ties: f64) -> (usize, f64) {
    let n = ranks.len() as f64;
    let mut best = (0, 0.0f64);
    let mut rank_sum = 0.0;
    let mut taken = 0;
    for (bi, &b) in bounds.iter().enumerate() {
        rank_sum += ranks[taken..b].iter().sum::<f64>();
        taken = b;
        let (n1, n2) = (b as f64, n - b as f64);
        let u_before = rank_sum - n1 * (n1 + 1.0) / 2.0;
        let var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
        let z = if var > 0.0 {
            (n1 * n2 / 2.0 - u_before) / var.sqrt()
        } else {
            0.0
        };
        if z.abs() > best.1.abs() + 1e-12 {
            best = (bi, z);
        }
    }
    best
}

/// The best single split of `series` (one sample vector per run; an empty one is a gap, left
/// out of the test) with its permutation p-value. `None` with fewer than three runs holding
/// samples.
pub fn best_split(series: &[Vec<f64>], permutations: usize) -> Option<Split> {
    let present: Vec<usize> = (0..series.len())
        .filter(|&i| !series[i].is_empty())
        .collect();
    if present.len() < 3 {
        return None;
    }
    let side = min_side(present.len());
    let pooled: Vec<f64> = present.iter().flat_map(|&i| series[i].clone()).collect();
    // bounds[k]: samples of the first `side + k` present runs.
    let mut cumulative = vec![0];
    for &i in &present {
        cumulative.push(cumulative.last().unwrap() + series[i].len());
    }
    let split_runs: Vec<usize> = (side..=present.len() - side).collect();
    let bounds: Vec<usize> = split_runs.iter().map(|&k| cumulative[k]).collect();
    let (mut ranks, ties) = mid_ranks(&pooled);
    let (best, z) = max_z(&ranks, &bounds, ties);
    let observed = z.abs();
    let mut rng = SplitMix(0x6b74_7374_725f_6370); // "ktstr_cp"
    let mut reached = 0usize;
    for _ in 0..permutations {
        for i in (1..ranks.len()).rev() {
            ranks.swap(i, rng.below(i + 1));
        }
        if max_z(&ranks, &bounds, ties).1.abs() >= observed - 1e-9 {
            reached += 1;
        }
    }
    let b = bounds[best];
    let median = |xs: &[f64]| crate::stats::median(xs).unwrap_or(f64::NAN);
    Some(Split {
        at: present[split_runs[best]],
        before_median: median(&pooled[..b]),
        after_median: median(&pooled[b..]),
        z,
        p: (reached + 1) as f64 / (permutations + 1) as f64,
    })
}

/// splitmix64: a small deterministic generator, enough to shuffle ranks.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise in [-1, 1).
    fn noise(seed: u64, n: usize) -> Vec<f64> {
        let mut g = SplitMix(seed);
        (0..n)
            .map(|_| g.below(2001) as f64 / 1000.0 - 1.0)
            .collect()
    }

    /// `runs` runs of `repeats` samples around `level(run)` with +-`spread` noise.
    fn series(
        runs: usize,
        repeats: usize,
        spread: f64,
        level: impl Fn(usize) -> f64,
    ) -> Vec<Vec<f64>> {
        (0..runs)
            .map(|r| {
                noise(r as u64 + 1, repeats)
                    .into_iter()
                    .map(|e| level(r) * (1.0 + spread * e))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_step_at_run_4_of_7_is_found_at_run_4() {
        // 3 % noise, a 20 % step from the fourth run (index 3) on.
        let s = series(7, 5, 0.03, |r| if r >= 3 { 120.0 } else { 100.0 });
        let split = best_split(&s, PERMUTATIONS).unwrap();
        assert_eq!(split.at, 3, "{split:?}");
        assert!(split.z > 0.0 && split.p < 0.01, "{split:?}");
        assert!(split.is_change(0.05, 0.05), "{split:?}");
        let r = split.relative_change().unwrap();
        assert!((0.15..0.25).contains(&r), "{r}");
        // A step down is found the same way, with the sign of z turned.
        let s = series(7, 5, 0.03, |r| if r >= 3 { 80.0 } else { 100.0 });
        let split = best_split(&s, PERMUTATIONS).unwrap();
        assert_eq!(split.at, 3);
        assert!(split.z < 0.0 && split.is_change(0.05, 0.05), "{split:?}");
    }

    #[test]
    fn a_flat_noisy_series_has_no_change_point() {
        // 10 % noise, no step: not significant even with no minimum effect.
        let s = series(7, 5, 0.10, |_| 100.0);
        let split = best_split(&s, PERMUTATIONS).unwrap();
        assert!(split.p > 0.05, "{split:?}");
        assert!(!split.is_change(0.05, 0.0));
    }

    #[test]
    fn a_one_run_outlier_is_not_a_change_point() {
        // The fourth run reads three times higher, the others are flat.
        let mut s = series(7, 5, 0.03, |r| if r == 3 { 300.0 } else { 100.0 });
        let split = best_split(&s, PERMUTATIONS).unwrap();
        assert!(!split.is_change(0.05, 0.05), "{split:?}");
        // Nor at either end (each side needs two runs from four runs on).
        s.swap(3, 6);
        assert!(!best_split(&s, PERMUTATIONS).unwrap().is_change(0.05, 0.05));
        s.swap(6, 0);
        assert!(!best_split(&s, PERMUTATIONS).unwrap().is_change(0.05, 0.05));
    }

    #[test]
    fn gaps_are_left_out_and_the_change_names_the_run_after_them() {
        // Run index 3 is absent; the step starts at index 4.
        let mut s = series(8, 5, 0.02, |r| if r >= 4 { 150.0 } else { 100.0 });
        s[3].clear();
        let split = best_split(&s, PERMUTATIONS).unwrap();
        assert_eq!(split.at, 4, "{split:?}");
        assert!(split.is_change(0.05, 0.05));
    }

    #[test]
    fn too_few_runs_or_constant_values() {
        assert_eq!(best_split(&[vec![1.0], vec![2.0]], 10), None);
        assert_eq!(
            best_split(&[vec![1.0], vec![], vec![2.0], vec![]], 10),
            None
        );
        let flat = best_split(&vec![vec![5.0; 3]; 4], 99).unwrap();
        assert_eq!((flat.z, flat.p), (0.0, 1.0));
        assert!(!flat.is_change(0.05, 0.0));
        // Deterministic: the same series gives the same p.
        let s = series(5, 3, 0.05, |r| 100.0 + r as f64);
        assert_eq!(best_split(&s, 199), best_split(&s, 199));
    }

    #[test]
    fn mid_ranks_share_tied_positions() {
        let (r, ties) = mid_ranks(&[3.0, 1.0, 3.0, 2.0]);
        assert_eq!(r, vec![3.5, 1.0, 3.5, 2.0]);
        assert_eq!(ties, 6.0);
    }
}
