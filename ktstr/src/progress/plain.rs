//! Progress lines for logs (stderr not a terminal): a bounded rate, so a CI log gets a line every
//! tenth of the work or every half minute, never a redrawn bar.

use std::time::{Duration, Instant};

/// How often a plain line may be printed.
pub const STEP: f64 = 0.10;
pub const EVERY: Duration = Duration::from_secs(30);

/// Decides when the next plain line is due: when the work crosses the next `step` of its total
/// (if the total is known), or when `every` has passed since the last line.
#[derive(Debug, Clone)]
pub struct RateLimit {
    step: f64,
    every: Duration,
    next_fraction: f64,
    last: Instant,
}

impl RateLimit {
    pub fn new(start: Instant) -> Self {
        Self::with(STEP, EVERY, start)
    }

    pub fn with(step: f64, every: Duration, start: Instant) -> Self {
        Self {
            step,
            every,
            next_fraction: step,
            last: start,
        }
    }

    /// Whether a line is due at `now` with `fraction` of the work done (None: total unknown).
    pub fn due(&mut self, now: Instant, fraction: Option<f64>) -> bool {
        let crossed = fraction.is_some_and(|f| f + 1e-9 >= self.next_fraction);
        let waited = now.saturating_duration_since(self.last) >= self.every;
        if !(crossed || waited) {
            return false;
        }
        if let Some(f) = fraction {
            // Skip every step already passed: a jump from 5 % to 47 % prints one line, not four.
            self.next_fraction = ((f / self.step + 1e-9).floor() + 1.0) * self.step;
        }
        self.last = now;
        true
    }
}

/// Where plain lines go: stderr, or a closure in tests.
pub type Sink = Box<dyn FnMut(&str) + Send>;

pub fn stderr_sink() -> Sink {
    Box::new(|s: &str| eprintln!("{s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_per_tenth_of_the_work() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(t0);
        let printed: Vec<u32> = (0..=100)
            .filter(|pct| r.due(t0, Some(*pct as f64 / 100.0)))
            .collect();
        assert_eq!(printed, vec![10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
    }

    #[test]
    fn a_jump_prints_one_line() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(t0);
        assert!(!r.due(t0, Some(0.05)));
        assert!(r.due(t0, Some(0.47)));
        assert!(!r.due(t0, Some(0.49)));
        assert!(r.due(t0, Some(0.50)));
    }

    /// Slow work (or an unknown total) still shows life every half minute, and no more often.
    #[test]
    fn a_line_every_half_minute_without_progress() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(t0);
        assert!(!r.due(t0 + Duration::from_secs(29), None));
        assert!(r.due(t0 + Duration::from_secs(30), None));
        assert!(!r.due(t0 + Duration::from_secs(45), Some(0.01)));
        assert!(r.due(t0 + Duration::from_secs(61), Some(0.02)));
    }
}
