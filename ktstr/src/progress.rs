//! Progress of long host-side work (kernel builds, source extraction): a spinner with the phase,
//! the elapsed time and the last line of the tool's output on a terminal; plain phase lines
//! otherwise, so CI logs show where the time went.

use std::path::Path;
use std::time::{Duration, Instant};

/// Phase, elapsed time and the last make line; a spinner on a terminal, phase lines otherwise.
#[derive(Debug)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    lines: bool,
    start: Instant,
    phase: String,
}

impl Progress {
    pub fn new(enabled: bool, label: &str) -> Self {
        use std::io::IsTerminal;
        let tty = enabled && std::io::stderr().is_terminal();
        let bar = tty.then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {prefix}: {wide_msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            b.set_prefix(label.to_string());
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Self {
            bar,
            lines: enabled && !tty,
            start: Instant::now(),
            phase: String::new(),
        }
    }

    pub fn phase(&mut self, phase: &str) {
        self.phase = phase.to_string();
        if let Some(b) = &self.bar {
            b.set_message(phase.to_string());
        } else if self.lines {
            eprintln!(
                "[{:>6.1}s] kernel: {phase}",
                self.start.elapsed().as_secs_f64()
            );
        }
    }

    /// Shows the tool's latest output line next to the phase (terminal only).
    pub fn line(&self, line: &str) {
        if let Some(b) = &self.bar {
            b.set_message(format!("{} | {}", self.phase, line.trim()));
        }
    }

    pub fn finish(&mut self, what: &str) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if self.lines || what == "built" {
            eprintln!(
                "[{:>6.1}s] kernel: {what}",
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}

/// The last `n` lines of a build log, for an error message (empty if it cannot be read).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
