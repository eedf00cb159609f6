//! Time-left estimators shared by the kernel build, download and matrix displays, and the compact
//! duration format their lines use.

use std::time::Duration;

/// `45s`, `3m50s`, `1h02m`: short enough for a progress line.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Time left when `done` of `total` units took `elapsed`, assuming the rate so far holds.
pub fn rate_eta(done: u64, total: u64, elapsed: Duration) -> Option<Duration> {
    if done == 0 || total == 0 {
        return None;
    }
    let left = total.saturating_sub(done) as f64;
    Some(elapsed.mul_f64(left / done as f64))
}

/// Time left in a kernel build at `done` of `expected` objects, `elapsed` in.
///
/// Two guesses, blended by how far the build is: the previous build's duration scaled to the
/// fraction left (trusted early, when the rate so far is dominated by make's start-up and the host
/// tools), and the rate so far (trusted late, when it reflects this host's load). A build past its
/// expected count is about to link: the estimate then says so rather than going negative.
pub fn build_eta(
    done: u64,
    expected: u64,
    elapsed: Duration,
    previous: Duration,
) -> Option<Duration> {
    if expected == 0 {
        return None;
    }
    let frac = (done as f64 / expected as f64).min(0.99);
    let from_history = previous.as_secs_f64() * (1.0 - frac);
    let from_rate = if done == 0 {
        from_history
    } else {
        elapsed.as_secs_f64() * (1.0 - frac) / frac
    };
    let eta = (1.0 - frac) * from_history + frac * from_rate;
    Some(Duration::from_secs_f64(eta.max(0.0)))
}

/// Time left in a kernel build from the previous build's time curve: `curve[i]` is when that
/// build had done `i / (len-1)` of its steps. Steps cost very different times (the compiles of an
/// incremental rebuild are quick, `LD vmlinux` is long), so the curve says where the time goes;
/// the ratio of this build's elapsed time to the previous build's at the same point scales it to
/// today's host load. `elapsed` is the time at the last step, `since` the time since: within a
/// long step (a link) the estimate moves on as far as the previous build's next step.
pub fn curve_eta(
    done: u64,
    expected: u64,
    elapsed: Duration,
    since: Duration,
    curve: &[f64],
) -> Option<Duration> {
    let (first, last) = (*curve.first()?, *curve.last()?);
    // A NaN or flat curve (a build that took no time) says nothing about where time goes.
    if expected == 0
        || curve.len() < 2
        || last.partial_cmp(&first) != Some(std::cmp::Ordering::Greater)
    {
        return None;
    }
    let frac = (done as f64 / expected as f64).min(1.0);
    let pos = frac * (curve.len() - 1) as f64;
    let i = (pos.floor() as usize).min(curve.len() - 2);
    let prev_at = curve[i] + (curve[i + 1] - curve[i]) * (pos - i as f64);
    // Where the previous build did its next step: a step counts as done by then at the latest.
    let next_frac = ((done + 1) as f64 / expected as f64).min(1.0);
    let next_pos = next_frac * (curve.len() - 1) as f64;
    let j = (next_pos.floor() as usize).min(curve.len() - 2);
    let next_at = curve[j] + (curve[j + 1] - curve[j]) * (next_pos - j as f64);
    // The pace so far is noise in the first seconds (make's start-up steps are quick whatever the
    // load): trust it in proportion to how much of the previous build's time it covers.
    let speed = if prev_at >= 1.0 && done > 0 {
        let observed = (elapsed.as_secs_f64() / prev_at).clamp(0.25, 4.0);
        let weight = (prev_at / last).min(1.0);
        1.0 + (observed - 1.0) * weight
    } else {
        1.0
    };
    let now_at = (prev_at + since.as_secs_f64() / speed).min(next_at.max(prev_at));
    Some(Duration::from_secs_f64((last - now_at).max(0.0) * speed))
}

/// The time curve of a finished build: `points` evenly spaced fractions of its steps, each the
/// elapsed seconds when that fraction was done (from `marks`, the time of every step), ending at
/// `total` seconds (make's exit, after the last step).
pub fn curve_of(marks: &[f64], total: f64, points: usize) -> Vec<f64> {
    if marks.is_empty() || points < 2 {
        return Vec::new();
    }
    let mut curve: Vec<f64> = (0..points - 1)
        .map(|i| {
            let k = i * marks.len() / (points - 1);
            if k == 0 { 0.0 } else { marks[k - 1] }
        })
        .collect();
    curve.push(total);
    curve
}

/// Time left in a matrix: the mean duration of the cells finished so far, times the cells left,
/// divided by how many cells run at once (the most seen in flight).
pub fn matrix_eta(
    finished_total: Duration,
    finished: usize,
    remaining: usize,
    parallel: usize,
) -> Option<Duration> {
    if finished == 0 {
        return None;
    }
    let mean = finished_total.as_secs_f64() / finished as f64;
    let waves = remaining as f64 / parallel.max(1) as f64;
    Some(Duration::from_secs_f64(mean * waves))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn durations_are_compact() {
        assert_eq!(fmt_duration(secs(7)), "7s");
        assert_eq!(fmt_duration(secs(230)), "3m50s");
        assert_eq!(fmt_duration(secs(3720)), "1h02m");
    }

    #[test]
    fn rate_eta_extrapolates_the_rate_so_far() {
        assert_eq!(rate_eta(25, 100, secs(10)), Some(secs(30)));
        assert_eq!(rate_eta(0, 100, secs(10)), None);
        assert_eq!(rate_eta(100, 100, secs(10)), Some(secs(0)));
    }

    /// At the start only the previous build speaks; at the end only the rate so far.
    #[test]
    fn build_eta_moves_from_history_to_the_observed_rate() {
        // Previous build: 600 s. Nothing done yet: the whole previous duration is left.
        assert_eq!(build_eta(0, 8800, secs(0), secs(600)), Some(secs(600)));
        // Halfway, at the previous pace (300 s): 300 s left by both guesses.
        let half = build_eta(4400, 8800, secs(300), secs(600)).unwrap();
        assert!((half.as_secs_f64() - 300.0).abs() < 1e-6, "{half:?}");
        // Halfway but twice as slow as last time: between the two guesses (300 and 600 s).
        let slow = build_eta(4400, 8800, secs(600), secs(600)).unwrap();
        assert!(slow > secs(300) && slow < secs(600), "{slow:?}");
        // Past the expected count: small, never negative.
        let over = build_eta(9000, 8800, secs(700), secs(600)).unwrap();
        assert!(over < secs(10), "{over:?}");
        assert_eq!(build_eta(10, 0, secs(1), secs(600)), None);
    }

    /// An incremental rebuild recorded as a few objects: a few objects in, most of it is left.
    #[test]
    fn build_eta_for_an_incremental_rebuild() {
        let eta = build_eta(1, 12, secs(3), secs(31)).unwrap();
        assert!(eta > secs(20) && eta < secs(35), "{eta:?}");
    }

    /// The previous build spent 90 % of its 100 s in the first half of its steps: at half the
    /// steps only 10 s are left, scaled by how much slower this build is at the same point.
    #[test]
    fn curve_eta_follows_where_the_previous_build_spent_its_time() {
        let marks: Vec<f64> = (1..=10)
            .map(|s| {
                if s <= 5 {
                    s as f64 * 18.0
                } else {
                    90.0 + (s - 5) as f64 * 2.0
                }
            })
            .collect();
        let curve = curve_of(&marks, 100.0, 11);
        assert_eq!(curve.len(), 11);
        assert_eq!((curve[0], curve[5], curve[10]), (0.0, 90.0, 100.0));
        let eta = curve_eta(5, 10, secs(90), secs(0), &curve).unwrap();
        assert!((eta.as_secs_f64() - 10.0).abs() < 1e-6, "{eta:?}");
        // Twice as slow as last time at the same point (90 % of its time): nearly twice the time
        // left (the pace counts by the share of the previous build's time it covers).
        let eta = curve_eta(5, 10, secs(180), secs(0), &curve).unwrap();
        assert!((eta.as_secs_f64() - 19.0).abs() < 1e-6, "{eta:?}");
        // The same slowdown seen a tenth of the way in moves the estimate only a little.
        let early =
            curve_eta(1, 100, secs(4), secs(0), &curve_of(&[2.0; 100], 100.0, 101)).unwrap();
        assert!(early > secs(98) && early < secs(110), "{early:?}");
        // Nothing done yet: the whole previous duration.
        assert_eq!(curve_eta(0, 10, secs(0), secs(0), &curve), Some(secs(100)));
        // All steps done: nothing left to extrapolate.
        assert_eq!(curve_eta(10, 10, secs(99), secs(0), &curve), Some(secs(0)));
        assert_eq!(curve_eta(1, 10, secs(1), secs(0), &[]), None);
    }

    /// A long step (make prints a link's line when it starts) counts down while it runs, up to
    /// where the previous build's next step came (here the end), then holds.
    #[test]
    fn curve_eta_counts_down_within_a_long_step() {
        // Steps at 1, 2, 3 s, then a 21 s link to the end (the curve's last point is make's exit).
        let curve = curve_of(&[1.0, 2.0, 3.0, 23.0], 24.0, 5);
        let at_start = curve_eta(3, 4, secs(3), secs(0), &curve).unwrap();
        let midway = curve_eta(3, 4, secs(3), secs(10), &curve).unwrap();
        let stalled = curve_eta(3, 4, secs(3), secs(60), &curve).unwrap();
        assert_eq!(at_start, secs(21));
        assert_eq!(midway, secs(11));
        assert_eq!(stalled, secs(0));
    }

    #[test]
    fn matrix_eta_divides_by_parallelism() {
        // 4 cells done in 40 s of cell time (10 s each), 6 left, 2 at a time: 3 waves of 10 s.
        assert_eq!(matrix_eta(secs(40), 4, 6, 2), Some(secs(30)));
        assert_eq!(matrix_eta(secs(40), 4, 6, 0), Some(secs(60)));
        assert_eq!(matrix_eta(secs(0), 0, 6, 2), None);
        assert_eq!(matrix_eta(secs(40), 4, 0, 2), Some(secs(0)));
    }
}
