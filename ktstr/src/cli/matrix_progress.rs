//! The matrix's terminal display, as an engine subscriber: a line per finished cell (also when
//! stderr is not a terminal, for CI logs) and an overall bar.

use ktstr_matrix::engine::{Event, Subscriber};
use ktstr_matrix::result::Outcome;
use std::sync::Mutex;

/// Terminal progress: a line per finished cell and an overall bar.
pub struct Progress {
    bar: indicatif::ProgressBar,
    failed: Mutex<usize>,
}

impl Progress {
    pub fn new() -> Self {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "[{elapsed_precise}] {bar:30} {pos}/{len} cells {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Progress {
            bar,
            failed: Mutex::new(0),
        }
    }
}

impl Progress {
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
            Event::CellStarted { .. } => {}
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
                self.bar.set_message(if f > 0 {
                    format!("{f} not passed")
                } else {
                    String::new()
                });
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
