//! The matrix's terminal display, as an engine subscriber: a line per finished cell (also when
//! stderr is not a terminal, for CI logs) and an overall bar with cells done/total and an ETA
//! (from the finished cells' mean duration and how many run at once); off a terminal a
//! `cells n/N (p %), ETA ...` line every tenth of the cells or every half minute.

use crate::progress::eta::{fmt_duration, matrix_eta};
use crate::progress::plain::RateLimit;
use ktstr_matrix::engine::{Event, Subscriber};
use ktstr_matrix::result::Outcome;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Terminal progress: a line per finished cell and an overall bar.
pub struct Progress {
    bar: indicatif::ProgressBar,
    failed: Mutex<usize>,
    pace: Mutex<Pace>,
}

/// What the ETA is computed from: cells finished in this run (resumed ones took no time here),
/// their summed durations, and the most cells seen in flight at once.
#[derive(Debug)]
struct Pace {
    in_flight: usize,
    parallel: usize,
    finished: usize,
    cell_time: Duration,
    rate: RateLimit,
}

impl Pace {
    fn new() -> Self {
        Pace {
            in_flight: 0,
            parallel: 1,
            finished: 0,
            cell_time: Duration::ZERO,
            rate: RateLimit::new(Instant::now()),
        }
    }

    fn started(&mut self) {
        self.in_flight += 1;
        self.parallel = self.parallel.max(self.in_flight);
    }

    fn finished(&mut self, elapsed: Duration) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.finished += 1;
        self.cell_time += elapsed;
    }

    fn eta(&self, done: usize, total: usize) -> Option<Duration> {
        matrix_eta(
            self.cell_time,
            self.finished,
            total.saturating_sub(done),
            self.parallel,
        )
    }

    /// `cells 3/10 (30 %), ETA 1m20s`; no ETA once all are done.
    fn line(&self, done: usize, total: usize) -> String {
        let pct = done * 100 / total.max(1);
        match self.eta(done, total) {
            Some(eta) if done < total => {
                format!("cells {done}/{total} ({pct} %), ETA {}", fmt_duration(eta))
            }
            _ => format!("cells {done}/{total} ({pct} %)"),
        }
    }
}

impl Progress {
    pub fn new() -> Self {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "[{elapsed_precise}] {bar:30} cells {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Progress {
            bar,
            failed: Mutex::new(0),
            pace: Mutex::new(Pace::new()),
        }
    }
}

impl Progress {
    fn pace(&self) -> std::sync::MutexGuard<'_, Pace> {
        self.pace.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// indicatif draws nothing when stderr is not a terminal (CI logs); the per-cell lines must
    /// still appear there.
    fn line(&self, s: String) {
        if self.bar.is_hidden() {
            eprintln!("{s}");
        } else {
            self.bar.println(s);
        }
    }
}

impl Subscriber for Progress {
    fn on_event(&self, ev: &Event) {
        match ev {
            Event::Prepare(s) => self.line(format!("prepare: {s}")),
            Event::Start { total, resumed } => {
                self.bar.set_length(*total as u64);
                self.bar.set_position(*resumed as u64);
                if *resumed > 0 {
                    self.line(format!("resume: {resumed} of {total} cells already done"));
                }
            }
            Event::CellStarted { .. } => self.pace().started(),
            Event::CellFinished {
                record,
                elapsed,
                done,
                total,
            } => {
                let r = &record.result;
                let outcome = format!("{:?}", r.outcome).to_lowercase();
                if !matches!(r.outcome, Outcome::Pass | Outcome::Skipped) {
                    *self.failed.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                }
                // The first line only: a build failure's reason carries the log's tail, which
                // the stored result and the reports keep in full.
                let reason = r
                    .reason
                    .as_deref()
                    .and_then(|s| s.lines().next())
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default();
                self.line(format!(
                    "[{done}/{total}] {outcome:<7} {} ({:.1} s){reason}",
                    record.key.label(),
                    elapsed.as_secs_f64()
                ));
                self.bar.set_position(*done as u64);
                let f = *self.failed.lock().unwrap_or_else(|p| p.into_inner());
                let mut pace = self.pace();
                pace.finished(*elapsed);
                let eta = pace
                    .eta(*done, *total)
                    .map(|e| format!("ETA {}", fmt_duration(e)))
                    .unwrap_or_default();
                self.bar.set_message(if f > 0 {
                    format!("{eta} ({f} not passed)")
                } else {
                    eta
                });
                let fraction = *done as f64 / (*total).max(1) as f64;
                if self.bar.is_hidden() && pace.rate.due(Instant::now(), Some(fraction)) {
                    eprintln!("{}", pace.line(*done, *total));
                }
            }
            Event::Cancelled => self.line(
                "interrupted: no new cells start; run again with --resume to continue".into(),
            ),
            Event::Finished { wall } => {
                self.bar.finish_and_clear();
                eprintln!("ran in {:.1} s", wall.as_secs_f64());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two cells at a time, 10 s each: after 4 of 10, three waves of 10 s are left.
    #[test]
    fn eta_from_finished_cells_and_parallelism() {
        let mut p = Pace::new();
        p.started();
        p.started();
        for _ in 0..4 {
            p.finished(Duration::from_secs(10));
            p.started();
        }
        assert_eq!(p.parallel, 2);
        assert_eq!(p.eta(4, 10), Some(Duration::from_secs(30)));
        assert_eq!(p.line(4, 10), "cells 4/10 (40 %), ETA 30s");
        assert_eq!(p.line(10, 10), "cells 10/10 (100 %)");
        assert_eq!(Pace::new().line(0, 10), "cells 0/10 (0 %)");
    }
}
