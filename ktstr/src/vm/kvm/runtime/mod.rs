//! The VM at run time: where the [`vcpu`] threads run ([`placement`]), the watch over them until
//! the guest ends, the watchdog fires or the user cancels ([`run`]), and the user's
//! [`terminal`] during `ktstr shell`.

pub mod terminal;
pub mod vcpu;

use super::Vm;
use super::devices::{cmos, pm, serial};
use crate::vm::{ConsoleMode, VmConfig, VmEnd, VmError, VmRun};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// After the Result frame, how long the guest may take to reboot before the VMM stops it.
const RESULT_GRACE: Duration = Duration::from_secs(10);
/// How often the watch wakes when no vCPU reports: also the longest a console byte waits in the
/// console ring when nothing else exits.
const WATCH_TICK: Duration = Duration::from_millis(20);

/// Round-robin start offset for pinning, so parallel VMs of one process spread over the host.
static NEXT_PIN: AtomicUsize = AtomicUsize::new(0);

/// Host CPUs for each vCPU: confined to the first `budget` allowed CPUs when a budget is set;
/// in performance mode each vCPU gets its own CPU when there are enough.
pub fn placement(
    vcpus: u32,
    allowed: &[usize],
    budget: Option<u32>,
    perf_mode: bool,
) -> Result<Vec<Vec<usize>>, VmError> {
    let vcpus = vcpus as usize;
    let pool: Vec<usize> = match budget {
        Some(0) => return Err(VmError::Config("--cpu-budget 0: use at least 1".into())),
        Some(k) if k as usize > allowed.len() => {
            return Err(VmError::Config(format!(
                "--cpu-budget {k} exceeds the {} host CPUs this process may use; use at most {}",
                allowed.len(),
                allowed.len()
            )));
        }
        Some(k) => allowed[..k as usize].to_vec(),
        None => allowed.to_vec(),
    };
    if perf_mode && vcpus <= pool.len() && !pool.is_empty() {
        let base = if budget.is_some() {
            0
        } else {
            NEXT_PIN.fetch_add(vcpus, Ordering::Relaxed)
        };
        return Ok((0..vcpus)
            .map(|i| vec![pool[(base + i) % pool.len()]])
            .collect());
    }
    let shared = if budget.is_some() { pool } else { Vec::new() };
    Ok(vec![shared; vcpus])
}

/// How the watch ended.
#[derive(Debug)]
struct Ending {
    end: VmEnd,
    /// A vCPU that could not run the guest (or could not start).
    fault: Option<String>,
    /// How the guest ended the VM itself (reset, triple fault, power off).
    shutdown_why: Option<String>,
}

/// Runs `vm`'s vCPUs on `places` until the VM ends, then stops them all and returns what the
/// console and the result channel saw. `start` is when the caller started the VM (the
/// watchdog's and the timings' origin); `backend` describes it for the report.
pub fn run(
    vm: Vm,
    places: Vec<Vec<usize>>,
    cfg: &VmConfig,
    start: Instant,
    backend: String,
) -> VmRun {
    let shared = Arc::new(vcpu::Shared {
        stop: AtomicBool::new(false),
        uarts: vm.uarts.clone(),
        cmos: cmos::Cmos::default(),
        pm: pm::Pm::default(),
    });
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::new();
    let mut spawn_failure = None;
    for (i, (fd, cpus)) in vm.vcpus.into_iter().zip(places).enumerate() {
        match vcpu::spawn(i as u32, fd, shared.clone(), cpus, tx.clone()) {
            Ok(t) => threads.push(t),
            Err(e) => {
                spawn_failure = Some(Ending {
                    end: VmEnd::Shutdown,
                    fault: Some(e.to_string()),
                    shutdown_why: None,
                });
                break;
            }
        }
    }
    let ending = spawn_failure.unwrap_or_else(|| watch(&vm.uarts, &rx, start + cfg.timeout));
    vcpu::stop_all(&shared, threads);
    let wall = start.elapsed();
    vm.uarts.drain_console_ring();

    let (console_tail, mut crash_line) = {
        let mut c = serial::lock(&vm.uarts.com1);
        c.writer_mut().finish();
        if let Some(m) = &c.writer().milestones {
            eprintln!("ktstr kvm console: {}", m.report());
        }
        let evidence = &c.writer().evidence;
        (
            evidence.tail(),
            evidence.crash().map(|(_, line)| line.clone()),
        )
    };
    if let Some(f) = ending.fault {
        crash_line.get_or_insert(format!("kvm: {f}"));
    }
    let results = serial::lock(&vm.uarts.com2).writer().received();
    // A guest that resets itself before its result (no panic on the console) says how.
    if let (None, Some(why)) = (results.to_result, ending.shutdown_why) {
        crash_line.get_or_insert(format!(
            "kvm: the guest ended the VM ({why}) before its result"
        ));
    }
    VmRun {
        end: ending.end,
        messages: results.messages,
        frame_errors: results.frame_errors,
        console_tail,
        console_log: match &cfg.console {
            ConsoleMode::Capture { log } => Some(log.clone()),
            ConsoleMode::Interactive => None,
        },
        crash_line,
        to_agent: results.to_agent,
        to_result: results.to_result,
        wall,
        backend,
    }
}

/// Waits for the first of: a vCPU that stops (the guest ended the VM, or a fault), the result's
/// grace period over, a cancel request, the `deadline`.
fn watch(
    uarts: &serial::Uarts,
    rx: &mpsc::Receiver<(u32, vcpu::VcpuStop)>,
    deadline: Instant,
) -> Ending {
    let ending = |end, fault, shutdown_why| Ending {
        end,
        fault,
        shutdown_why,
    };
    let mut result_seen: Option<Instant> = None;
    loop {
        // A guest that stops exiting (idle, hung) still has its last console bytes shown.
        uarts.drain_console_ring();
        // The agent reboots right after its Result; a guest that hangs instead still ends
        // with its result after a grace period, not as a timeout.
        if result_seen.is_none() && serial::lock(&uarts.com2).writer().to_result().is_some() {
            result_seen = Some(Instant::now());
        }
        if result_seen.is_some_and(|t| t.elapsed() > RESULT_GRACE) {
            return ending(VmEnd::Shutdown, None, None);
        }
        if crate::cancel::requested() {
            return ending(VmEnd::Cancelled, None, None);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return ending(VmEnd::TimedOut, None, None);
        }
        match rx.recv_timeout(left.min(WATCH_TICK)) {
            Ok((_, vcpu::VcpuStop::Requested)) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok((_, vcpu::VcpuStop::GuestShutdown(why))) => {
                return ending(VmEnd::Shutdown, None, Some(why));
            }
            Ok((i, vcpu::VcpuStop::Fault(f))) => {
                return ending(VmEnd::Shutdown, Some(format!("vCPU {i}: {f}")), None);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return ending(VmEnd::Shutdown, None, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_honours_budget_and_perf_mode() {
        let allowed = [0, 1, 2, 3];
        let p = placement(8, &allowed, Some(2), true).unwrap();
        assert!(p.iter().all(|c| c == &vec![0, 1]));
        let p = placement(2, &allowed, Some(2), true).unwrap();
        assert_eq!(p, vec![vec![0], vec![1]]);
        let p = placement(2, &allowed, None, false).unwrap();
        assert!(p.iter().all(Vec::is_empty));
        assert!(placement(2, &allowed, Some(5), true).is_err());
        assert!(placement(2, &allowed, Some(0), true).is_err());
    }
}
