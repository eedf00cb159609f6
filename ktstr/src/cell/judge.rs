//! What a VM produced -> the cell's outcome: a pure mapping, unit-tested without booting.

use super::ms;
use crate::vm::console::{CrashKind, classify};
use crate::vm::{VmEnd, VmRun};
use ktstr_guest::protocol::{GuestMessage, GuestReport, GuestStatus, PROTOCOL_VERSION};
use ktstr_matrix::result::{CellResult, HostTimings, Outcome, RESULT_FORMAT_VERSION};
use std::time::Duration;

/// Multi-threaded QEMU TCG sometimes runs kernel text that was just live-patched as if the
/// patch's temporary int3 were still there, and the kernel oopses on it (seen in the nested
/// harness, in L1 and in L2: docs/benchmarks.md, "KVM backend"). Such a cell stays
/// `crashed`, since the kernel is what is under test, but its reason says the emulator may be
/// the cause.
fn tcg_int3_hint(line: &str, backend: &str) -> &'static str {
    if backend.contains("tcg") && line.contains("int3") {
        " (under QEMU TCG an int3 oops can be the emulator's cross-modifying-code fault, not the kernel's: run the cell again before blaming the kernel)"
    } else {
        ""
    }
}

/// Whether `r` is a crash that QEMU TCG's cross-modifying-code fault explains (see
/// [`tcg_int3_hint`]): such a cell is booted once more.
pub fn tcg_int3_fault(r: &CellResult) -> bool {
    r.outcome == Outcome::Crashed
        && r.backend.contains("tcg")
        && r.reason
            .as_deref()
            .is_some_and(|why| why.starts_with("kernel crashed") && why.contains("int3"))
}

/// The sched_ext selftests make BPF schedulers fail on purpose (their `*_fail` tests), so
/// their console's sched_ext errors are the tests at work; the runner's verdicts judge them.
fn provokes_sched_ext_errors(r: &GuestReport) -> bool {
    r.scenario
        .as_ref()
        .is_some_and(|s| s.name == ktstr_guest::scenario::selftests::NAME)
}

/// Maps what a VM produced to the cell's outcome.
pub fn judge(run: &VmRun, timeout: Duration) -> CellResult {
    let report: Option<GuestReport> = run.messages.iter().find_map(|m| match m {
        GuestMessage::Result(r) => Some((**r).clone()),
        _ => None,
    });
    let results = run
        .messages
        .iter()
        .filter(|m| matches!(m, GuestMessage::Result(_)))
        .count();
    let version_mismatch = run.messages.iter().find_map(|m| match m {
        GuestMessage::AgentStarted(a) if a.protocol_version != PROTOCOL_VERSION => {
            Some(a.protocol_version)
        }
        _ => None,
    });
    let crash = run.crash_line.as_deref().map(|l| (classify(l), l));
    let agent_started = run.to_agent.is_some();

    let (outcome, reason) = if let Some((Some(CrashKind::Kernel), line)) = crash {
        (
            Outcome::Crashed,
            Some(format!(
                "kernel crashed: {}{}",
                line.trim(),
                tcg_int3_hint(line, &run.backend)
            )),
        )
    } else if let Some(v) = version_mismatch {
        (
            Outcome::Error,
            Some(format!(
                "guest agent speaks protocol {v}, host speaks {PROTOCOL_VERSION}: rebuild ktstr so the embedded agent matches"
            )),
        )
    } else if results > 1 {
        (
            Outcome::Error,
            Some(format!(
                "the agent sent {results} result frames; exactly one is expected"
            )),
        )
    } else if let Some(r) = &report {
        match (&r.status, crash) {
            (GuestStatus::Passed, Some((Some(CrashKind::SchedExt), line)))
                if !provokes_sched_ext_errors(r) =>
            {
                (
                    Outcome::Fail,
                    Some(format!("sched_ext error: {}", line.trim())),
                )
            }
            (GuestStatus::Passed, _) => (Outcome::Pass, None),
            (GuestStatus::Failed { reason }, _) => (Outcome::Fail, Some(reason.clone())),
            (GuestStatus::Error { message }, _) => (Outcome::Error, Some(message.clone())),
        }
    } else if run.end == VmEnd::TimedOut {
        let stage = if agent_started {
            "the agent started but sent no result"
        } else {
            "the kernel never reached the agent"
        };
        (
            Outcome::Timeout,
            Some(format!(
                "watchdog fired after {:.0} s: {stage}",
                timeout.as_secs_f64()
            )),
        )
    } else if run.end == VmEnd::Cancelled {
        (Outcome::Error, Some("cancelled (Ctrl-C)".into()))
    } else if !run.frame_errors.is_empty() {
        (
            Outcome::Error,
            Some(format!(
                "no valid result on the result channel: {}",
                run.frame_errors.join("; ")
            )),
        )
    } else if let Some((Some(CrashKind::SchedExt), line)) = crash {
        (
            Outcome::Crashed,
            Some(format!("sched_ext error, then no result: {}", line.trim())),
        )
    } else if let Some((None, line)) = crash {
        // The backend's own account of the end (e.g. the kvm VMM: "the guest ended the VM
        // (shutdown (triple fault …)) before its result").
        let stage = if agent_started {
            "the agent had started"
        } else {
            "before the agent started"
        };
        (
            Outcome::Crashed,
            Some(format!("no result ({stage}): {}", line.trim())),
        )
    } else {
        let stage = if agent_started {
            "the agent started but the VM ended without a result"
        } else {
            "the VM ended before the agent started (kernel or initramfs problem)"
        };
        (Outcome::Crashed, Some(stage.to_string()))
    };
    CellResult {
        format_version: RESULT_FORMAT_VERSION,
        outcome,
        reason,
        report,
        console_tail: run.console_tail.clone(),
        timings: HostTimings {
            to_agent_ms: run.to_agent.map(ms),
            to_result_ms: run.to_result.map(ms),
            wall_ms: ms(run.wall),
        },
        backend: run.backend.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktstr_guest::protocol::{AgentStarted, KernelInfo};

    fn started() -> GuestMessage {
        GuestMessage::AgentStarted(AgentStarted {
            protocol_version: PROTOCOL_VERSION,
            uptime_ms: 1,
            kernel_release: "6.12".into(),
            online_cpus: 2,
        })
    }

    fn result(status: GuestStatus) -> GuestMessage {
        GuestMessage::Result(Box::new(GuestReport {
            status,
            kernel: KernelInfo::default(),
            exit_code: Some(0),
            scheduler: None,
            scenario: None,
            uptime_ms: 2,
        }))
    }

    fn run(messages: Vec<GuestMessage>, end: VmEnd, crash: Option<&str>) -> VmRun {
        VmRun {
            end,
            to_agent: messages
                .iter()
                .any(|m| matches!(m, GuestMessage::AgentStarted(_)))
                .then_some(Duration::from_secs(1)),
            messages,
            frame_errors: vec![],
            console_tail: "tail\n".into(),
            console_log: None,
            crash_line: crash.map(String::from),
            to_result: None,
            wall: Duration::from_secs(2),
            backend: "mock".into(),
        }
    }

    const T: Duration = Duration::from_secs(9);

    #[test]
    fn guest_status_maps_to_outcome() {
        let r = judge(
            &run(
                vec![started(), result(GuestStatus::Passed)],
                VmEnd::Shutdown,
                None,
            ),
            T,
        );
        assert_eq!((r.outcome, r.reason), (Outcome::Pass, None));
        let r = judge(
            &run(
                vec![
                    started(),
                    result(GuestStatus::Failed {
                        reason: "worker 1 starved".into(),
                    }),
                ],
                VmEnd::Shutdown,
                None,
            ),
            T,
        );
        assert_eq!(r.outcome, Outcome::Fail);
        assert_eq!(r.reason.as_deref(), Some("worker 1 starved"));
        let r = judge(
            &run(
                vec![result(GuestStatus::Error {
                    message: "bad".into(),
                })],
                VmEnd::Shutdown,
                None,
            ),
            T,
        );
        assert_eq!(r.outcome, Outcome::Error);
    }

    #[test]
    fn faults_map_to_crashed_timeout_error() {
        let r = judge(
            &run(
                vec![started()],
                VmEnd::Shutdown,
                Some("[ 1.0] Kernel panic - not syncing: x"),
            ),
            T,
        );
        assert_eq!(r.outcome, Outcome::Crashed);
        assert!(r.reason.unwrap().contains("Kernel panic"));
        assert_eq!(r.console_tail, "tail\n");
        // A kernel crash beats a result that arrived before it.
        let r = judge(
            &run(
                vec![result(GuestStatus::Passed)],
                VmEnd::Shutdown,
                Some("BUG: oops"),
            ),
            T,
        );
        assert_eq!(r.outcome, Outcome::Crashed);
        assert!(!r.reason.unwrap().contains("emulator"));
        // An int3 oops under TCG stays a crash, with the emulator named as a possible cause.
        let mut tcg = run(
            vec![started()],
            VmEnd::Shutdown,
            Some("Oops: int3: 0000 [#1]"),
        );
        tcg.backend = "qemu-tcg/microvm".into();
        let r = judge(&tcg, T);
        assert_eq!(r.outcome, Outcome::Crashed);
        assert!(r.reason.unwrap().contains("cross-modifying-code"));
        assert!(tcg_int3_fault(&judge(&tcg, T)));
        tcg.backend = "kvm".into();
        assert!(!judge(&tcg, T).reason.unwrap().contains("emulator"));
        assert!(!tcg_int3_fault(&judge(&tcg, T)));
        let r = judge(&run(vec![started()], VmEnd::TimedOut, None), T);
        assert_eq!(r.outcome, Outcome::Timeout);
        assert!(r.reason.unwrap().contains("agent started"));
        let r = judge(&run(vec![], VmEnd::Shutdown, None), T);
        assert_eq!(r.outcome, Outcome::Crashed);
        // The VMM's own account of a reset is quoted as such, not called a sched_ext error.
        let vmm =
            "kvm: the guest ended the VM (shutdown (triple fault / reboot=t)) before its result";
        let r = judge(&run(vec![started()], VmEnd::Shutdown, Some(vmm)), T);
        assert_eq!(r.outcome, Outcome::Crashed);
        assert_eq!(
            r.reason.as_deref(),
            Some(format!("no result (the agent had started): {vmm}").as_str())
        );
        let mut garbage = run(vec![started()], VmEnd::Shutdown, None);
        garbage.frame_errors = vec!["frame checksum mismatch".into()];
        let r = judge(&garbage, T);
        assert_eq!(r.outcome, Outcome::Error);
        assert!(r.reason.unwrap().contains("checksum"));
        let r = judge(
            &run(
                vec![result(GuestStatus::Passed), result(GuestStatus::Passed)],
                VmEnd::Shutdown,
                None,
            ),
            T,
        );
        assert_eq!(r.outcome, Outcome::Error);
    }

    #[test]
    fn sched_ext_error_fails_a_passing_run() {
        let r = judge(
            &run(
                vec![started(), result(GuestStatus::Passed)],
                VmEnd::Shutdown,
                Some("sched_ext: BPF scheduler \"x\" errored, disabling"),
            ),
            T,
        );
        assert_eq!(r.outcome, Outcome::Fail);
    }

    #[test]
    fn the_selftests_own_sched_ext_errors_do_not_fail_them() {
        let mut report = match result(GuestStatus::Passed) {
            GuestMessage::Result(r) => r,
            _ => unreachable!(),
        };
        report.scenario = Some(ktstr_guest::protocol::ScenarioReport {
            name: ktstr_guest::scenario::selftests::NAME.into(),
            ..Default::default()
        });
        let line = "sched_ext: BPF scheduler \"ddsp_bogus_dsq_fail\" disabled (runtime error)";
        let r = judge(
            &run(
                vec![started(), GuestMessage::Result(report.clone())],
                VmEnd::Shutdown,
                Some(line),
            ),
            T,
        );
        assert_eq!((r.outcome, r.reason), (Outcome::Pass, None));
        // A kernel crash still is one.
        let r = judge(
            &run(
                vec![started(), GuestMessage::Result(report)],
                VmEnd::Shutdown,
                Some("BUG: kernel NULL pointer dereference"),
            ),
            T,
        );
        assert_eq!(r.outcome, Outcome::Crashed);
    }
}
