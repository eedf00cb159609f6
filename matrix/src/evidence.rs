//! What report.html shows of one cell beyond its outcome: where its full console log is, and
//! bounded tails of the console and of the scheduler's output. Tails are cut to a few lines so a
//! report of thousands of cells stays small; the log file has everything.

use crate::plan::CellKey;
use crate::result::{CellResult, Outcome};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where a run keeps its cells' console logs, relative to its output directory.
pub const LOGS_DIR: &str = "logs";
/// Console lines kept for a cell that did not pass (the evidence of what went wrong).
const FAILED_TAIL_LINES: usize = 40;
/// Console lines kept for a passing cell.
const PASSED_TAIL_LINES: usize = 3;
/// Scheduler output lines kept.
const SCHED_TAIL_LINES: usize = 20;
/// Longest line kept; longer ones are cut (a console can print a line of megabytes).
const MAX_LINE_CHARS: usize = 300;
/// The longest log file name stem kept as is (file names are at most 255 bytes).
const MAX_LOG_STEM: usize = 200;

/// One cell's evidence, as report.json stores it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CellEvidence {
    /// The console log, relative to the run's output directory (`logs/NAME.log`); `None` when
    /// no VM ran (skipped, or stopped before boot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Last lines of the kernel console.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub console_tail: String,
    /// Last lines of the scheduler's stdout and stderr.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sched_output: String,
}

impl CellEvidence {
    pub fn is_empty(&self) -> bool {
        self.log.is_none() && self.console_tail.is_empty() && self.sched_output.is_empty()
    }
}

/// The cell's console log file name: its label plus its scenario parameters (two cells that
/// differ only in parameters must not share a log), as a plain file name.
pub fn log_name(key: &CellKey) -> String {
    let mut name = key.label();
    for (k, v) in &key.scenario.params {
        name.push_str(&format!(" {k}={v}"));
    }
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-=+,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Long parameters (a `command`'s patterns) would pass the file system's 255-byte name limit:
    // keep a readable prefix and a hash of the whole name, which stays unique.
    if safe.len() > MAX_LOG_STEM {
        let hash = hex::encode(Sha256::digest(name.as_bytes()));
        return format!("{}-{}.log", &safe[..MAX_LOG_STEM - 17], &hash[..16]);
    }
    format!("{safe}.log")
}

/// The last `n` lines of `text`, each cut to [`MAX_LINE_CHARS`].
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut out = String::new();
    for l in &lines[start..] {
        match l.char_indices().nth(MAX_LINE_CHARS) {
            Some((i, _)) => {
                out.push_str(&l[..i]);
                out.push_str(" [...]");
            }
            None => out.push_str(l),
        }
        out.push('\n');
    }
    out
}

/// The evidence of a stored cell.
pub fn of(key: &CellKey, result: &CellResult) -> CellEvidence {
    let booted = result.report.is_some() || !result.console_tail.is_empty();
    let console_lines = if result.outcome == Outcome::Pass {
        PASSED_TAIL_LINES
    } else {
        FAILED_TAIL_LINES
    };
    let sched_output = result
        .report
        .as_ref()
        .and_then(|r| r.scheduler.as_ref())
        .map(|s| last_lines(&s.output_tail, SCHED_TAIL_LINES))
        .unwrap_or_default();
    CellEvidence {
        log: booted.then(|| format!("{LOGS_DIR}/{}", log_name(key))),
        console_tail: last_lines(&result.console_tail, console_lines),
        sched_output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_keep_the_last_lines_and_cut_long_ones() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("", 5), "");
        let long = "x".repeat(MAX_LINE_CHARS + 10);
        let cut = last_lines(&long, 1);
        assert!(cut.ends_with(" [...]\n") && cut.len() < long.len());
    }
}
