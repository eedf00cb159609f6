//! The scheduler under test: start, confirm attachment, classify how it ended, stop.

use super::kmsg::{Kmsg, Line};
use super::reaper;
use crate::protocol::{SchedulerEnding, SchedulerLaunch, SchedulerReport};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const SCX: &str = "/sys/kernel/sched_ext";
const OUTPUT: &str = "/tmp/ktstr-scheduler.out";
/// How much of the scheduler's output goes into the report.
const TAIL_BYTES: usize = 4096;
/// SIGINT lets scx schedulers detach cleanly; after this they get SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub struct Running {
    pid: libc::pid_t,
    report: SchedulerReport,
    kmsg: Kmsg,
    /// sched_ext lines seen so far (kept for the final classification).
    lines: Vec<Line>,
}

impl Running {
    /// The scheduler's process (whose descriptors say which BPF programs are its own).
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }
}

pub fn scx_state() -> Option<String> {
    std::fs::read_to_string(format!("{SCX}/state"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Spawns the scheduler and waits (bounded) for `state == enabled`. On failure the scheduler is
/// stopped and the report says why it never attached.
pub fn start(launch: &SchedulerLaunch) -> Result<Running, Box<SchedulerReport>> {
    let report = SchedulerReport {
        name: launch.name.clone(),
        attached: false,
        attach_ms: None,
        ops: None,
        ending: SchedulerEnding::StillAttached,
        output_tail: String::new(),
        events: BTreeMap::new(),
        bpf_programs: Vec::new(),
    };
    let never = |mut r: SchedulerReport, reason: String| {
        r.ending = SchedulerEnding::NeverAttached { reason };
        Box::new(r)
    };
    if !Path::new(SCX).is_dir() {
        return Err(never(
            report,
            format!("the kernel has no sched_ext ({SCX} missing: CONFIG_SCHED_CLASS_EXT is off)"),
        ));
    }
    let kmsg = Kmsg::from_now();
    let out = std::fs::File::create(OUTPUT)
        .and_then(|f| Ok((f.try_clone()?, f)))
        .map_err(|e| format!("creating {OUTPUT}: {e}"));
    let (o1, o2) = match out {
        Ok(v) => v,
        Err(e) => return Err(never(report, e)),
    };
    let spawned = Instant::now();
    let child = std::process::Command::new(&launch.path)
        .args(&launch.args)
        .stdin(std::process::Stdio::null())
        .stdout(o1)
        .stderr(o2)
        .env("PATH", "/bin:/sbin:/usr/bin:/usr/sbin")
        .spawn();
    let pid = match child {
        Ok(c) => c.id() as libc::pid_t,
        Err(e) => return Err(never(report, format!("spawning {}: {e}", launch.path))),
    };
    let mut running = Running {
        pid,
        report: report.clone(),
        kmsg,
        lines: Vec::new(),
    };
    let timeout = Duration::from_millis(launch.attach_timeout_ms);
    loop {
        if scx_state().as_deref() == Some("enabled") {
            running.report.attached = true;
            running.report.attach_ms = Some(spawned.elapsed().as_millis() as u64);
            running.report.ops = std::fs::read_to_string(format!("{SCX}/root/ops"))
                .ok()
                .map(|s| s.trim().to_string());
            return Ok(running);
        }
        let exited = reaper::try_wait(pid);
        let timed_out = spawned.elapsed() >= timeout;
        if exited.is_none() && !timed_out {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        // The kernel may have enabled and ejected it before we looked (e.g. a stall of PID 1
        // itself): that is an ejection, not a failure to attach.
        running.lines.extend(sched_ext_lines(&mut running.kmsg));
        let state = scx_state().unwrap_or_default();
        let mut report = running.report.clone();
        if let Some(reason) = ejection(&running.lines, &state) {
            report.attached = running.lines.iter().any(|l| l.text.contains("\" enabled"));
            report.ending = SchedulerEnding::Ejected { reason };
            if exited.is_none() {
                stop(pid);
            }
            report.output_tail = tail(OUTPUT);
            return Err(Box::new(report));
        }
        let reason = match exited {
            Some(st) => exited_before_attaching(st),
            None => {
                stop(pid);
                format!(
                    "{SCX}/state still '{state}' {} ms after spawn",
                    launch.attach_timeout_ms
                )
            }
        };
        report.output_tail = tail(OUTPUT);
        return Err(never(report, with_kmsg(reason, &running.lines)));
    }
}

/// Why a scheduler that exited before attaching did: its telling output line and, for a
/// program the kernel refused, the verifier's own words (which that line lacks).
fn exited_before_attaching(status: i32) -> String {
    let said = last_line(&tail(OUTPUT)).unwrap_or("no output".into());
    let verifier = super::verifier_log::verdict_in_file(OUTPUT)
        .map(|v| format!("; {v}"))
        .unwrap_or_default();
    format!(
        "exited ({}) before attaching; {said}{verifier}",
        describe_status(status)
    )
}

/// The kernel's reason when it disabled the scheduler with an error (pr_err "BPF scheduler "x"
/// disabled (reason)" plus the following message line), with the evidence.
fn ejection(lines: &[Line], state: &str) -> Option<String> {
    let err_lines: Vec<&Line> = lines.iter().filter(|l| l.level <= 3).collect();
    let reason = err_lines.iter().find_map(|l| {
        let rest = l.text.split_once("disabled (")?.1;
        Some(rest.strip_suffix(')').unwrap_or(rest).to_string())
    })?;
    let evidence = err_lines
        .iter()
        .map(|l| l.text.as_str())
        .collect::<Vec<_>>()
        .join(" | ");
    Some(format!(
        "{reason} (kernel: {evidence}; state now '{state}')"
    ))
}

fn with_kmsg(reason: String, lines: &[Line]) -> String {
    match lines.last() {
        Some(l) => format!("{reason}; kernel: {}", l.text),
        None => reason,
    }
}

fn sched_ext_lines(k: &mut Kmsg) -> Vec<Line> {
    k.drain()
        .into_iter()
        .filter(|l| l.text.contains("sched_ext"))
        .collect()
}

/// Records how the scheduler's run ended (before stopping it), then stops it.
pub fn finish(mut r: Running) -> SchedulerReport {
    let state = scx_state().unwrap_or_default();
    let exited = reaper::try_wait(r.pid);
    r.lines.extend(sched_ext_lines(&mut r.kmsg));
    r.report.ending = if let Some(reason) = ejection(&r.lines, &state) {
        SchedulerEnding::Ejected { reason }
    } else if let Some(st) = exited {
        SchedulerEnding::Exited {
            code: libc::WIFEXITED(st).then(|| libc::WEXITSTATUS(st)),
            signal: libc::WIFSIGNALED(st).then(|| libc::WTERMSIG(st)),
            reason: format!(
                "exited on its own ({}); state now '{state}'; last output: {}",
                describe_status(st),
                last_line(&tail(OUTPUT)).unwrap_or("none".into())
            ),
        }
    } else if state != "enabled" {
        let kernel = r
            .lines
            .last()
            .map(|l| l.text.clone())
            .unwrap_or("no sched_ext kernel message".into());
        SchedulerEnding::Ejected {
            reason: format!("{SCX}/state is '{state}' while the scheduler still runs; {kernel}"),
        }
    } else {
        SchedulerEnding::StillAttached
    };
    r.report.events = read_events();
    if exited.is_none() {
        stop(r.pid);
    }
    r.report.output_tail = tail(OUTPUT);
    r.report
}

/// SIGINT, bounded wait, SIGKILL.
fn stop(pid: libc::pid_t) {
    if pid <= 0 {
        return;
    }
    // SAFETY: signalling our own, not yet reaped, child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    if reaper::wait(pid, Some(STOP_GRACE)).is_none() {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = reaper::wait(pid, Some(STOP_GRACE));
    }
}

/// Numeric sched_ext attributes (`nr_rejected`, `enable_seq`, ...) and, on kernels that have
/// it, `root/events` (`name value` lines).
pub fn read_events() -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(SCX) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(v) = std::fs::read_to_string(e.path()) {
                if let Ok(n) = v.trim().parse() {
                    out.insert(name, n);
                }
            }
        }
    }
    if let Ok(ev) = std::fs::read_to_string(format!("{SCX}/root/events")) {
        for l in ev.lines() {
            let mut it = l.split_whitespace();
            if let (Some(k), Some(v)) = (it.next(), it.next()) {
                if let Ok(n) = v.parse() {
                    out.insert(k.to_lowercase(), n);
                }
            }
        }
    }
    out
}

fn describe_status(st: i32) -> String {
    if libc::WIFSIGNALED(st) {
        format!("signal {}", libc::WTERMSIG(st))
    } else {
        format!("exit code {}", libc::WEXITSTATUS(st))
    }
}

fn tail(path: &str) -> String {
    let b = std::fs::read(path).unwrap_or_default();
    let start = b.len().saturating_sub(TAIL_BYTES);
    String::from_utf8_lossy(&b[start..]).into_owned()
}

/// The most telling output line: the last one mentioning an error, else the last one.
fn last_line(s: &str) -> Option<String> {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let telling = ["error", "invalid", "fail", "unknown", "cannot", "not "];
    lines
        .iter()
        .rev()
        .find(|l| {
            let l = l.to_lowercase();
            telling.iter().any(|t| l.contains(t))
        })
        .or(lines.last())
        .map(|l| l.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(level: u8, text: &str) -> Line {
        Line {
            level,
            text: text.into(),
        }
    }

    #[test]
    fn ejection_needs_an_error_level_disable() {
        let clean = [
            line(6, "sched_ext: BPF scheduler \"simple\" enabled"),
            line(
                6,
                "sched_ext: BPF scheduler \"simple\" disabled (unregistered from user space)",
            ),
        ];
        assert_eq!(ejection(&clean, "disabled"), None);
        let stall = [
            line(6, "sched_ext: BPF scheduler \"qmap\" enabled"),
            line(
                3,
                "sched_ext: BPF scheduler \"qmap\" disabled (runnable task stall)",
            ),
            line(3, "sched_ext: qmap: init[1] failed to run for 5.088s"),
        ];
        let r = ejection(&stall, "disabled").unwrap();
        assert!(r.starts_with("runnable task stall (kernel: "), "{r}");
        assert!(r.contains("failed to run for 5.088s"), "{r}");
    }

    #[test]
    fn telling_line_prefers_errors() {
        assert_eq!(
            last_line("starting\nlibbpf: failed to load\nbye\n").as_deref(),
            Some("libbpf: failed to load")
        );
        assert_eq!(last_line("a\nb\n\n").as_deref(), Some("b"));
        assert_eq!(last_line(""), None);
    }
}
