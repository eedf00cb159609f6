//! Console capture shared by backends: log file, bounded tail, crash-line detection.
//!
//! A backend feeds every console byte to [`Console::feed`] as it arrives; the console appends it to
//! the log file, keeps the last [`TAIL_LINES`] lines in memory (a multi-minute console never grows
//! ktstr's memory) and reports the first line that marks a crash, so the backend can react while
//! the VM is still running.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Lines kept for the evidence tail (a panic with its stack trace fits).
pub const TAIL_LINES: usize = 80;
/// Bound on one line: a console spewing without newlines still stays bounded.
const MAX_LINE: usize = 4096;

/// What a crash line says about the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashKind {
    /// The kernel itself failed: panic, BUG, oops, general protection fault.
    Kernel,
    /// sched_ext reported an error (scheduler ejected, stall watchdog); the kernel lives on.
    SchedExt,
}

/// Classifies one console line (timestamp prefix allowed).
pub fn classify(line: &str) -> Option<CrashKind> {
    // Strip "[   12.345678] " so patterns can anchor on the message.
    let msg = match line.find("] ") {
        Some(i) if line.trim_start().starts_with('[') => &line[i + 2..],
        _ => line,
    };
    const KERNEL: &[&str] = &[
        "Kernel panic",
        "BUG:",
        "Oops:",
        "Oops ",
        "general protection fault",
        "kernel BUG at",
        "Unable to handle kernel",
    ];
    if KERNEL.iter().any(|p| msg.contains(p)) {
        return Some(CrashKind::Kernel);
    }
    // e.g. `sched_ext: BPF scheduler "simple" errored, disabling`,
    // `sched_ext: simple: runnable task stall (...)`.
    // A normal detach (our SIGINT at the end of a run) prints `disabled (unregistered from user
    // space)` at info level: the same "disabled (" shape as an error exit, but not a fault.
    const CLEAN_EXITS: &[&str] = &["unregistered from", "disabled by sysrq"];
    if msg.contains("sched_ext:")
        && !CLEAN_EXITS.iter().any(|p| msg.contains(p))
        && ["error", "errored", "stall", "disabled (", "fatal"]
            .iter()
            .any(|p| msg.contains(p))
    {
        return Some(CrashKind::SchedExt);
    }
    None
}

#[derive(Debug)]
pub struct Console {
    log: Option<BufWriter<File>>,
    tail: VecDeque<String>,
    partial: Vec<u8>,
    crash: Option<(CrashKind, String)>,
    bytes: u64,
}

impl Console {
    /// `log`: where to append the raw console bytes (created/truncated); `None` = tail only.
    pub fn new(log: Option<&Path>) -> std::io::Result<Self> {
        let log = match log {
            Some(p) => {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                Some(BufWriter::new(File::create(p)?))
            }
            None => None,
        };
        Ok(Console {
            log,
            tail: VecDeque::with_capacity(TAIL_LINES + 1),
            partial: Vec::new(),
            crash: None,
            bytes: 0,
        })
    }

    /// Appends bytes; returns the first crash line if these bytes completed it.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<(CrashKind, String)> {
        self.bytes += bytes.len() as u64;
        if let Some(log) = &mut self.log {
            // The log is evidence, not the result: a full disk must not fail the run.
            let _ = log.write_all(bytes);
            // Flushed per chunk so the file is complete up to the moment the VM dies.
            let _ = log.flush();
        }
        let mut newly = None;
        for &b in bytes {
            if b == b'\n' {
                if let Some(c) = self.finish_line()
                    && newly.is_none()
                {
                    newly = Some(c);
                }
            } else if b != b'\r' && self.partial.len() < MAX_LINE {
                self.partial.push(b);
            }
        }
        newly
    }

    fn finish_line(&mut self) -> Option<(CrashKind, String)> {
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        let found = if self.crash.is_none() {
            classify(&line).map(|k| (k, line.clone()))
        } else {
            None
        };
        // A kernel crash after a sched_ext error is the more important evidence.
        let upgrade = matches!(self.crash, Some((CrashKind::SchedExt, _)))
            && classify(&line) == Some(CrashKind::Kernel);
        if upgrade {
            self.crash = Some((CrashKind::Kernel, line.clone()));
        }
        if let Some(f) = &found {
            self.crash = Some(f.clone());
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
        if upgrade { self.crash.clone() } else { found }
    }

    /// The first crash line seen (upgraded to a kernel crash if one followed a sched_ext error).
    pub fn crash(&self) -> Option<&(CrashKind, String)> {
        self.crash.as_ref()
    }

    /// Last lines, including an unterminated last line.
    pub fn tail(&self) -> String {
        let mut s: String = self.tail.iter().fold(String::new(), |mut acc, l| {
            acc.push_str(l);
            acc.push('\n');
            acc
        });
        if !self.partial.is_empty() {
            s.push_str(&String::from_utf8_lossy(&self.partial));
            s.push('\n');
        }
        s
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_crash_lines() {
        assert_eq!(
            classify("[    3.1] Kernel panic - not syncing: sysrq triggered crash"),
            Some(CrashKind::Kernel)
        );
        assert_eq!(
            classify("[    1.0] BUG: kernel NULL pointer dereference, address: 0"),
            Some(CrashKind::Kernel)
        );
        assert_eq!(
            classify("[    1.0] Oops: 0002 [#1] PREEMPT SMP NOPTI"),
            Some(CrashKind::Kernel)
        );
        assert_eq!(
            classify("[ 5.0] sched_ext: BPF scheduler \"simple\" errored, disabling"),
            Some(CrashKind::SchedExt)
        );
        assert_eq!(classify("[    0.1] Booting the kernel."), None);
        assert_eq!(
            classify("[ 0.2] sched_ext: BPF scheduler \"x\" enabled"),
            None
        );
        // The kernel's words for a normal detach, and for real error exits (kernel/sched/ext.c).
        assert_eq!(
            classify(
                "[ 9.1] sched_ext: BPF scheduler \"simple\" disabled (unregistered from user space)"
            ),
            None
        );
        assert_eq!(
            classify("[ 9.1] sched_ext: BPF scheduler \"qmap\" disabled (runnable task stall)"),
            Some(CrashKind::SchedExt)
        );
    }

    #[test]
    fn tail_is_bounded_and_crash_found_across_chunks() {
        let mut c = Console::new(None).unwrap();
        for i in 0..500 {
            c.feed(format!("line {i}\n").as_bytes());
        }
        assert_eq!(c.tail().lines().count(), TAIL_LINES);
        assert!(c.tail().contains("line 499"));
        assert!(c.feed(b"[ 1.0] Kernel pa").is_none());
        let hit = c.feed(b"nic - not syncing\r\nmore\n").unwrap();
        assert_eq!(hit.0, CrashKind::Kernel);
        assert!(hit.1.contains("not syncing"));
        assert!(
            c.feed(b"BUG: second\n").is_none(),
            "only the first is reported"
        );
    }

    #[test]
    fn kernel_crash_upgrades_sched_ext_error() {
        let mut c = Console::new(None).unwrap();
        assert_eq!(
            c.feed(b"sched_ext: runnable task stall\n").unwrap().0,
            CrashKind::SchedExt
        );
        assert_eq!(c.feed(b"Kernel panic - x\n").unwrap().0, CrashKind::Kernel);
        assert_eq!(c.crash().unwrap().0, CrashKind::Kernel);
    }

    #[test]
    fn log_file_gets_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/console.log");
        let mut c = Console::new(Some(&p)).unwrap();
        c.feed(b"abc\ndef");
        assert_eq!(std::fs::read(&p).unwrap(), b"abc\ndef");
    }
}
