//! Medians and the one-sided Mann–Whitney U test used to flag regressions.
//!
//! Exact null distribution of U when there are no ties and both samples are small (n1 + n2 <= 40);
//! otherwise the normal approximation with tie correction and a 0.5 continuity correction (as
//! SciPy's `mannwhitneyu(method="asymptotic")`). The report says which method each comparison used.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UMethod {
    Exact,
    /// Normal approximation with tie correction and continuity correction.
    NormalApprox,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UTest {
    /// U of the first sample: pairs (x_i > y_j) + half the ties.
    pub u: f64,
    /// One-sided p-value for "x is stochastically greater than y".
    pub p_greater: f64,
    pub method: UMethod,
}

pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// One-sided Mann–Whitney U test of H1: `x` tends to be greater than `y`.
pub fn mann_whitney_greater(x: &[f64], y: &[f64]) -> Option<UTest> {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut u = 0.0;
    let mut tied_pairs = false;
    for a in x {
        for b in y {
            if a > b {
                u += 1.0;
            } else if a == b {
                u += 0.5;
                tied_pairs = true;
            }
        }
    }
    // Ties inside one sample do not affect U's null distribution only if no rank is shared; any
    // shared value anywhere means the exact table does not apply.
    let mut all: Vec<f64> = x.iter().chain(y).copied().collect();
    all.sort_by(f64::total_cmp);
    let any_ties = tied_pairs || all.windows(2).any(|w| w[0] == w[1]);
    if !any_ties && n1 + n2 <= 40 {
        let counts = u_distribution(n1, n2);
        let total: f64 = counts.iter().sum();
        let k = u as usize;
        let tail: f64 = counts[k..].iter().sum();
        return Some(UTest {
            u,
            p_greater: tail / total,
            method: UMethod::Exact,
        });
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let n = n1f + n2f;
    let mut tie_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1] == all[i] {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        tie_sum += t * t * t - t;
        i = j + 1;
    }
    let mu = n1f * n2f / 2.0;
    let var = n1f * n2f / 12.0 * ((n + 1.0) - tie_sum / (n * (n - 1.0)));
    let p = if var <= 0.0 {
        // Every value equal: no evidence either way.
        1.0
    } else {
        let z = (u - mu - 0.5) / var.sqrt();
        0.5 * erfc(z / std::f64::consts::SQRT_2)
    };
    Some(UTest {
        u,
        p_greater: p.clamp(0.0, 1.0),
        method: UMethod::NormalApprox,
    })
}

/// Number of arrangements giving each U = 0..=n1*n2 (Mann & Whitney's recurrence).
fn u_distribution(n1: usize, n2: usize) -> Vec<f64> {
    // f[a][b] = distribution for sample sizes a, b; built by f(a,b,u) = f(a-1,b,u-b) + f(a,b-1,u).
    let mut f: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); n2 + 1]; n1 + 1];
    for a in 0..=n1 {
        for b in 0..=n2 {
            let mut d = vec![0.0; a * b + 1];
            if a == 0 || b == 0 {
                d[0] = 1.0;
            } else {
                for (u, slot) in d.iter_mut().enumerate() {
                    let from_a = if u >= b {
                        f[a - 1][b].get(u - b).copied().unwrap_or(0.0)
                    } else {
                        0.0
                    };
                    let from_b = f[a][b - 1].get(u).copied().unwrap_or(0.0);
                    *slot = from_a + from_b;
                }
            }
            f[a][b] = d;
        }
    }
    std::mem::take(&mut f[n1][n2])
}

/// Complementary error function (W. J. Cody's rational Chebyshev fit, |rel err| < 1.2e-7 as in
/// Numerical Recipes' `erfcc`): ample for p-values compared against 0.05.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// A 95 % percentile-bootstrap interval for `median(a) / median(b)`: both samples are resampled
/// with replacement `resamples` times and the 2.5th and 97.5th percentiles of the resampled
/// ratios returned. For a ratio measured from few noisy runs (the nested VMM benchmark) this says
/// how far the point estimate could move with other runs of the same kind. Deterministic: the
/// generator is splitmix64 from a fixed seed, so a re-render of the same samples gives the same
/// interval. `None` when a sample is empty or a resampled median of `b` is 0.
pub fn bootstrap_ratio_of_medians(a: &[f64], b: &[f64], resamples: usize) -> Option<(f64, f64)> {
    if a.is_empty() || b.is_empty() || resamples == 0 {
        return None;
    }
    let mut state: u64 = 0x6b74_7374_725f_6273; // "ktstr_bs"
    let mut next = move |n: usize| {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    };
    let mut ratios = Vec::with_capacity(resamples);
    let (mut ra, mut rb) = (vec![0.0; a.len()], vec![0.0; b.len()]);
    for _ in 0..resamples {
        ra.iter_mut().for_each(|x| *x = a[next(a.len())]);
        rb.iter_mut().for_each(|x| *x = b[next(b.len())]);
        let (ma, mb) = (median(&ra)?, median(&rb)?);
        if mb == 0.0 {
            return None;
        }
        ratios.push(ma / mb);
    }
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    Some((at(0.025), at(0.975)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_interval_of_a_ratio_of_medians() {
        // Constant samples: every resample gives the same ratio.
        assert_eq!(
            bootstrap_ratio_of_medians(&[2.0; 5], &[4.0; 7], 500),
            Some((0.5, 0.5))
        );
        // Spread samples: the interval holds the point estimate and is not degenerate.
        let a = [40.0, 45.0, 50.0, 55.0, 60.0, 47.0, 52.0];
        let b = [90.0, 100.0, 110.0, 95.0, 105.0, 120.0, 80.0];
        let (lo, hi) = bootstrap_ratio_of_medians(&a, &b, 2000).unwrap();
        let point = median(&a).unwrap() / median(&b).unwrap();
        assert!(lo < point && point < hi, "{lo} {point} {hi}");
        assert!(lo > 0.35 && hi < 0.75, "{lo} {hi}");
        // Deterministic, and undefined for empty input.
        assert_eq!(bootstrap_ratio_of_medians(&a, &b, 2000), Some((lo, hi)));
        assert_eq!(bootstrap_ratio_of_medians(&[], &b, 10), None);
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn exact_complete_separation() {
        // 1 of C(6,3) = 20 arrangements has U = 9.
        let t = mann_whitney_greater(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((t.u, t.method), (9.0, UMethod::Exact));
        assert!(close(t.p_greater, 0.05, 1e-12), "{t:?}");
        // And the other direction is no evidence at all.
        let t = mann_whitney_greater(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert!(close(t.p_greater, 1.0, 1e-12));
        // 4 vs 4: 1 / C(8,4) = 1/70.
        let t = mann_whitney_greater(&[5.0, 6.0, 7.0, 8.0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!(close(t.p_greater, 1.0 / 70.0, 1e-12));
    }

    #[test]
    fn scipy_documented_example() {
        // SciPy's mannwhitneyu docs: males vs females, U1 = 17, exact two-sided p = 0.1111...,
        // asymptotic two-sided p = 0.11134688653314041; one-sided is half of each.
        let males = [19.0, 22.0, 16.0, 29.0, 24.0];
        let females = [20.0, 11.0, 17.0, 12.0];
        let t = mann_whitney_greater(&males, &females).unwrap();
        assert_eq!(t.u, 17.0);
        assert_eq!(t.method, UMethod::Exact);
        assert!(
            close(t.p_greater, 0.111_111_111_111_111_1 / 2.0, 1e-12),
            "{t:?}"
        );
    }

    #[test]
    fn normal_approximation_with_ties() {
        // Same samples with a tie introduced (17 -> 19 in females): U = 16.5, tie term 2^3-2 = 6.
        // mu = 10, var = 20/12 * (10 - 6/72) = 16.52778, z = 1.475856,
        // p = 0.5 * erfc(z / sqrt 2) = 0.069991 (computed independently with Python's math.erfc).
        let t = mann_whitney_greater(&[19.0, 22.0, 16.0, 29.0, 24.0], &[20.0, 11.0, 19.0, 12.0])
            .unwrap();
        assert_eq!(t.method, UMethod::NormalApprox);
        assert_eq!(t.u, 16.5);
        assert!(close(t.p_greater, 0.069_991, 1e-5), "{t:?}");
    }

    #[test]
    fn all_equal_is_no_evidence() {
        let t = mann_whitney_greater(&[1.0, 1.0, 1.0], &[1.0, 1.0, 1.0]).unwrap();
        assert_eq!(t.p_greater, 1.0);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
