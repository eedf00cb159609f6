//! PID 1 inside the VM: mount, announce, run the cell, send exactly one result, reboot.
//!
//! Whatever happens (bad spec, scheduler failure, a panic of the agent itself) the host gets one
//! `Result` frame and the VM ends: PID 1 exiting would panic the kernel and lose the reason.

mod bpf_stats;
mod bpf_sys;
mod channel;
mod kmsg;
mod mounts;
mod reaper;
mod runner;
mod sched;
mod shell;
mod verifier_log;

use crate::protocol::{
    AgentStarted, CellSpec, Check, GuestMessage, GuestReport, GuestStatus, KernelInfo, Mode,
    PROTOCOL_VERSION, SPEC_PATH, ScenarioRun, SchedulerEnding,
};
use channel::Channel;
use std::sync::Mutex;

/// The last panic's message, for the Error result.
static PANIC: Mutex<Option<String>> = Mutex::new(None);

/// The agent's entry point. Never returns.
pub fn main() -> ! {
    std::panic::set_hook(Box::new(|info| {
        let msg = info.to_string().replace('\n', " ");
        eprintln!("ktstr-guest: panic: {msg}");
        *PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
    }));
    let mount_errors = mounts::mount_all();
    for e in &mount_errors {
        eprintln!("ktstr-guest: {e}");
    }
    let mut chan = Channel::open().unwrap_or_else(|e| {
        eprintln!("ktstr-guest: {e}");
        Channel::closed()
    });
    let kernel = kernel_info();
    chan.send(&GuestMessage::AgentStarted(AgentStarted {
        protocol_version: PROTOCOL_VERSION,
        uptime_ms: uptime_ms(),
        kernel_release: kernel.release.clone(),
        online_cpus: kernel.online_cpus,
    }));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_cell(&kernel)));
    let report = match &outcome {
        Ok(r) => r.clone(),
        Err(_) => {
            let msg = PANIC
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_else(|| "unknown panic".into());
            report(&kernel, error(format!("the guest agent panicked: {msg}")))
        }
    };
    // (A panic already printed its one line from the hook.)
    if let (GuestStatus::Error { message }, Ok(_)) = (&report.status, &outcome) {
        eprintln!("ktstr-guest: error: {message}");
    }
    chan.send_result(report);
    power_off()
}

fn run_cell(kernel: &KernelInfo) -> GuestReport {
    // Lets the end-to-end tests prove that a panic of the agent still yields an Error result.
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if cmdline.split_whitespace().any(|w| w == "ktstr.test_panic") {
        panic!("ktstr.test_panic on the kernel command line");
    }
    let spec = match read_spec() {
        Ok(s) => s,
        Err(e) => return report(kernel, error(e)),
    };
    match spec.mode {
        Mode::Shell { exec } => {
            shell::install_busybox();
            match shell::run(exec.as_deref()) {
                Ok(code) => GuestReport {
                    exit_code: Some(code),
                    ..report(kernel, GuestStatus::Passed)
                },
                Err(e) => report(kernel, error(e)),
            }
        }
        Mode::Scenario(run) => run_scenario(kernel, &run),
    }
}

fn run_scenario(kernel: &KernelInfo, run: &ScenarioRun) -> GuestReport {
    // Validate before starting a scheduler: a bad parameter must not cost an attach.
    if let Err(e) = crate::scenario::validate(&run.scenario, &run.params)
        .and_then(|()| crate::scenario::validate_thresholds(&run.scenario, &run.thresholds))
    {
        return report(kernel, error(e.to_string()));
    }
    let running = match &run.scheduler {
        None => None,
        Some(l) => match sched::start(l) {
            Ok(r) => Some(r),
            Err(sched_report) => {
                let what = describe_ending(&sched_report.ending);
                // Ejected during the attach: the scheduler's fault (Failed); anything else means
                // the cell could not run as asked (Error).
                let status = match sched_report.ending {
                    SchedulerEnding::Ejected { .. } => GuestStatus::Failed {
                        reason: format!("scheduler {} {what}", l.name),
                    },
                    _ => error(format!("scheduler {} {what}", l.name)),
                };
                return GuestReport {
                    scheduler: Some(*sched_report),
                    ..report(kernel, status)
                };
            }
        },
    };
    // Opened after the attach, so the window's run figures are the scenario's, not the load's.
    let bpf_window = running.as_ref().map(|r| bpf_stats::begin(r.pid()));
    let scenario = runner::run(run);
    // Read while the scheduler still runs: its descriptors say which programs are its own.
    let bpf = bpf_window.map(bpf_stats::end);
    let mut sched_report = running.map(sched::finish);
    let bpf_metrics = match (bpf, sched_report.as_mut()) {
        (Some((programs, metrics)), Some(r)) => {
            r.bpf_programs = programs;
            metrics
        }
        _ => Default::default(),
    };
    let mut out = report(kernel, GuestStatus::Passed);
    match scenario {
        Ok(mut s) => {
            if let Some(r) = &sched_report {
                for (k, v) in &r.events {
                    s.metrics.insert(format!("scx_{k}"), *v as f64);
                }
                s.metrics.extend(bpf_metrics);
                let attached = matches!(r.ending, SchedulerEnding::StillAttached);
                s.checks.push(Check {
                    metric: "scheduler_attached".into(),
                    worker: None,
                    value: if attached { 1.0 } else { 0.0 },
                    threshold: 1.0,
                    passed: attached,
                    message: if attached {
                        format!("scheduler {} still attached at the end", r.name)
                    } else {
                        format!("scheduler {} {}", r.name, describe_ending(&r.ending))
                    },
                });
            }
            let failed: Vec<&str> = s
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| c.message.as_str())
                .collect();
            if !failed.is_empty() {
                out.status = GuestStatus::Failed {
                    reason: failed.join("; "),
                };
            }
            out.scenario = Some(s);
        }
        Err(e) => out.status = error(e),
    }
    out.scheduler = sched_report;
    out.uptime_ms = uptime_ms();
    out
}

/// One readable clause for a failed check, e.g. "was ejected by the kernel: runnable task stall".
fn describe_ending(e: &SchedulerEnding) -> String {
    match e {
        SchedulerEnding::StillAttached => "is still attached".into(),
        SchedulerEnding::NeverAttached { reason } => format!("never attached: {reason}"),
        SchedulerEnding::Exited { reason, .. } => format!("did not stay attached: {reason}"),
        SchedulerEnding::Ejected { reason } => format!("was ejected by the kernel: {reason}"),
    }
}

fn read_spec() -> Result<CellSpec, String> {
    let text = std::fs::read_to_string(SPEC_PATH)
        .map_err(|e| format!("reading the cell spec {SPEC_PATH}: {e}"))?;
    let spec: CellSpec = serde_json::from_str(&text)
        .map_err(|e| format!("parsing the cell spec {SPEC_PATH}: {e}"))?;
    if spec.protocol_version != PROTOCOL_VERSION {
        return Err(format!(
            "cell spec has protocol version {}, this agent speaks {PROTOCOL_VERSION}; rebuild ktstr",
            spec.protocol_version
        ));
    }
    Ok(spec)
}

fn error(message: String) -> GuestStatus {
    GuestStatus::Error { message }
}

fn report(kernel: &KernelInfo, status: GuestStatus) -> GuestReport {
    GuestReport {
        status,
        kernel: kernel.clone(),
        exit_code: None,
        scheduler: None,
        scenario: None,
        uptime_ms: uptime_ms(),
    }
}

fn kernel_info() -> KernelInfo {
    KernelInfo {
        release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        sched_ext: std::path::Path::new("/sys/kernel/sched_ext").is_dir(),
        online_cpus: crate::scenario::Env::detect_cpus().len() as u32,
    }
}

fn uptime_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

fn power_off() -> ! {
    // What the guest wrote to its console (an interactive shell's last lines) is still in the
    // tty's transmit buffer; the reboot would drop it.
    // SAFETY: tcdrain on fd 1 (the console, or not a tty: then it fails harmlessly).
    unsafe { libc::tcdrain(1) };
    // SAFETY: sync and reboot take no pointers; RB_AUTOBOOT with reboot=t on the cmdline ends
    // QEMU (-no-reboot) and the KVM VMM (triple fault).
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
    }
    // reboot failed (not PID 1 / no CAP_SYS_BOOT): never return, PID 1 must not exit.
    eprintln!(
        "ktstr-guest: reboot failed: {}",
        std::io::Error::last_os_error()
    );
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn shell_exec_reports_exit_codes_and_signal_deaths() {
        assert_eq!(shell::run(Some("true")), Ok(0));
        assert_eq!(shell::run(Some("exit 3")), Ok(3));
        assert_eq!(shell::run(Some("kill -9 $$")), Ok(128 + 9));
    }

    #[test]
    fn scenario_runs_in_a_forked_child_and_reports_back() {
        let run = ScenarioRun {
            scheduler: None,
            scenario: "smoke".into(),
            params: [("workers".to_string(), serde_json::json!(2))].into(),
            duration_ms: 300,
            thresholds: BTreeMap::new(),
        };
        let r = runner::run(&run).unwrap();
        assert_eq!(r.workers.len(), 2);
        assert!(r.workers.iter().all(|w| w.work_units > 0));
        assert!(r.checks.iter().all(|c| c.passed), "{:?}", r.checks);
    }

    #[test]
    fn a_scenario_error_comes_back_as_an_error() {
        let run = ScenarioRun {
            scheduler: None,
            scenario: "cpuset".into(),
            params: [("groups".to_string(), serde_json::json!(64))].into(),
            duration_ms: 100,
            thresholds: BTreeMap::new(),
        };
        // 64 groups exceed this host's CPUs, or cgroups/cpuset are unavailable: either way a
        // readable error naming the scenario, carried through the pipe.
        let e = runner::run(&run).unwrap_err();
        assert!(e.contains("cpuset"), "{e}");
    }

    #[test]
    fn ending_descriptions_read_as_sentences() {
        let e = SchedulerEnding::Ejected {
            reason: "runnable task stall".into(),
        };
        assert_eq!(
            describe_ending(&e),
            "was ejected by the kernel: runnable task stall"
        );
    }
}
