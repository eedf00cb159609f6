//! Console capture shared by backends: log file, bounded tail, crash-line detection.
//!
//! A backend feeds every console byte to [`Console::feed`] as it arrives; the console appends it to
//! the log file, keeps the last [`TAIL_LINES`] lines in memory (a multi-minute console never grows
//! ktstr's memory) and reports the first line that marks a crash, so the backend can react while
//! the VM is still running.

use std::collections::VecDeque;
use std::fs::File;
use std::path::Path;

/// Lines kept for the evidence tail (a panic with its stack trace fits).
pub const TAIL_LINES: usize = 80;
/// Bound on one line: a console spewing without newlines still stays bounded.
pub(crate) const MAX_LINE: usize = 4096;
/// Heads of the two parts of a tail that starts with a first kernel warning (see
/// [`Evidence::tail`], read back by [`tail_excerpt`]).
const WARNING_HEAD: &str = "--- first kernel warning";
const LAST_HEAD: &str = "--- last ";

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
    // Without "[   12.345678] " so patterns can anchor on the message.
    let msg = message(line);
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

/// What a console says as evidence, kept while the bytes stream by: the last [`TAIL_LINES`]
/// lines, the first crash line, and the first kernel warning. Shared by every backend, so a
/// console line means the same under each.
#[derive(Debug, Default)]
pub struct Evidence {
    tail: VecDeque<String>,
    partial: Vec<u8>,
    crash: Option<(CrashKind, String)>,
    /// The first `WARNING:` line, with the message line the kernel prints before it, and the
    /// number of the line it is on.
    first_warning: Option<(u64, String)>,
    lines: u64,
}

impl Evidence {
    /// Takes console bytes; returns the first crash line if these bytes completed it (or a
    /// kernel crash that upgrades an earlier sched_ext error).
    pub fn feed(&mut self, bytes: &[u8]) -> Option<(CrashKind, String)> {
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
        self.lines += 1;
        let kind = classify(&line);
        let found = match (&self.crash, kind) {
            (None, Some(k)) => Some((k, line.clone())),
            // A kernel crash after a sched_ext error is the more important evidence.
            (Some((CrashKind::SchedExt, _)), Some(CrashKind::Kernel)) => {
                Some((CrashKind::Kernel, line.clone()))
            }
            _ => None,
        };
        if let Some(f) = &found {
            self.crash = Some(f.clone());
        }
        if self.first_warning.is_none() && message(&line).starts_with("WARNING: ") {
            // The line before, still the tail's last: the warning's message (none after a bare
            // "cut here").
            let before = match self.tail.back() {
                Some(prev) if !prev.contains("cut here") => format!("{prev}\n"),
                _ => String::new(),
            };
            self.first_warning = Some((self.lines, format!("{before}{line}")));
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
        found
    }

    /// The first crash line seen (upgraded to a kernel crash if one followed a sched_ext error).
    pub fn crash(&self) -> Option<&(CrashKind, String)> {
        self.crash.as_ref()
    }

    /// Lines completed so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// The last `n` completed lines (at most the tail's), oldest first.
    pub fn last_lines(&self, n: usize) -> impl Iterator<Item = &str> {
        let skip = self.tail.len().saturating_sub(n);
        self.tail.iter().skip(skip).map(String::as_str)
    }

    /// The last lines, including an unterminated last line. A first kernel warning that has
    /// scrolled out of them comes first: it is often the cause of what the tail shows (a
    /// warning's register and CPUID dumps alone can fill the tail).
    pub fn tail(&self) -> String {
        let mut s = String::new();
        let first_in_tail = self.lines + 1 - self.tail.len() as u64;
        if let Some((at, warning)) = &self.first_warning
            && *at < first_in_tail
        {
            s.push_str(&format!(
                "{WARNING_HEAD}, console line {at} ---\n{warning}\n{LAST_HEAD}{} lines ---\n",
                self.tail.len()
            ));
        }
        for l in &self.tail {
            s.push_str(l);
            s.push('\n');
        }
        if !self.partial.is_empty() {
            s.push_str(&String::from_utf8_lossy(&self.partial));
            s.push('\n');
        }
        s
    }
}

/// The last `n` lines of an [`Evidence::tail`], after its first-warning block if it has one.
pub fn tail_excerpt(tail: &str, n: usize) -> String {
    let (head, rest) = match tail.find(&format!("\n{LAST_HEAD}")) {
        Some(i) if tail.starts_with(WARNING_HEAD) => {
            let end = tail[i + 1..]
                .find('\n')
                .map_or(tail.len(), |j| i + 1 + j + 1);
            tail.split_at(end)
        }
        _ => ("", tail),
    };
    let lines: Vec<&str> = rest.lines().collect();
    format!(
        "{head}{}",
        lines[lines.len().saturating_sub(n)..].join("\n")
    )
}

/// A console line without its "[   12.345678] " timestamp.
fn message(line: &str) -> &str {
    match line.find("] ") {
        Some(i) if line.trim_start().starts_with('[') => &line[i + 2..],
        _ => line,
    }
}

/// A console log file plus its [`Evidence`] (the qemu backend's console).
#[derive(Debug)]
pub struct Console {
    log: Option<super::capped_log::CappedLog>,
    evidence: Evidence,
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
                Some(super::capped_log::CappedLog::new(File::create(p)?))
            }
            None => None,
        };
        Ok(Console {
            log,
            evidence: Evidence::default(),
            bytes: 0,
        })
    }

    /// Appends bytes; returns the first crash line if these bytes completed it.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<(CrashKind, String)> {
        self.bytes += bytes.len() as u64;
        if let Some(log) = &mut self.log {
            // The log is evidence, not the result: a full disk must not fail the run.
            let _ = log.write_bytes(bytes);
            // Flushed per chunk so the file's head is complete up to the moment the VM dies.
            let _ = log.flush();
        }
        self.evidence.feed(bytes)
    }

    /// The first crash line seen (upgraded to a kernel crash if one followed a sched_ext error).
    pub fn crash(&self) -> Option<&(CrashKind, String)> {
        self.evidence.crash()
    }

    /// See [`Evidence::tail`].
    pub fn tail(&self) -> String {
        self.evidence.tail()
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

    /// The kernel's WARN output: the message line, then `WARNING:`; dumps after it push both out
    /// of the tail, and the tail then starts with them.
    #[test]
    fn first_warning_is_kept_when_it_scrolls_out() {
        let mut e = Evidence::default();
        e.feed(b"[ 0.5] ------------[ cut here ]------------\n");
        e.feed(b"[ 0.5] XSAVE consistency problem: size 2696 != kernel_size 576\n");
        e.feed(b"[ 0.5] WARNING: CPU: 0 PID: 0 at arch/x86/kernel/fpu/xstate.c:605 x\n");
        e.feed(b"[ 0.6] WARNING: CPU: 1 PID: 0 at a second one\n");
        assert!(
            !e.tail().contains("first kernel warning"),
            "still in the tail"
        );
        for i in 0..TAIL_LINES {
            e.feed(format!("[ 0.7] CPUID[0d, {i:02x}]: eax=0\n").as_bytes());
        }
        let tail = e.tail();
        let head: Vec<&str> = tail.lines().take(4).collect();
        assert_eq!(head[0], "--- first kernel warning, console line 3 ---");
        assert!(head[1].contains("XSAVE consistency problem"), "{tail}");
        assert!(head[2].contains("xstate.c:605"), "{tail}");
        assert_eq!(head[3], format!("--- last {TAIL_LINES} lines ---"));
        assert!(!tail.contains("a second one"));
        assert_eq!(tail.lines().count(), TAIL_LINES + 4);
        let short = tail_excerpt(&tail, 2);
        assert_eq!(short.lines().count(), 4 + 2, "{short}");
        assert!(
            short.contains("XSAVE") && short.ends_with(&format!("{:02x}]: eax=0", TAIL_LINES - 1))
        );
        assert_eq!(tail_excerpt("a\nb\nc\n", 2), "b\nc");
        assert!(e.crash().is_none(), "a warning is not a crash");
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
