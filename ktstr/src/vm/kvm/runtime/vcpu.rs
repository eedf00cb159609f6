//! The vCPUs at run time: one host thread per vCPU running KVM_RUN and handling the exits that
//! reach userspace. With the in-kernel irqchip and PIT, HLT, LAPIC, IOAPIC, PIC and PIT stay in the
//! kernel; what is left is port I/O (UARTs, the i8042 reset line), stray MMIO, and the ends of
//! the VM: shutdown (triple fault on `reboot=t`), system events, and errors.
//!
//! Everything here treats guest input as hostile: unknown ports read as 0xff (no device),
//! unknown MMIO reads as zeros, and no guest action can panic the VMM.

use crate::vm::kvm::devices::{cmos, pm, serial::Uarts};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::os::unix::thread::JoinHandleExt;
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a vCPU thread could not start or be placed.
#[derive(Debug, Error)]
pub enum VcpuError {
    #[error("sched_setaffinity({cpus:?}): {source}")]
    Affinity {
        cpus: Vec<usize>,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot spawn vCPU thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// i8042 command port: writing 0xfe pulses the CPU reset line.
const I8042_COMMAND: u16 = 0x64;
const I8042_DATA: u16 = 0x60;

const I8042_RESET: u8 = 0xfe;

/// Why a vCPU thread stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum VcpuStop {
    /// The host asked it to stop (another vCPU ended the VM, watchdog, cancel).
    Requested,
    /// The guest ended the VM: reboot / power off / triple fault.
    GuestShutdown(String),
    /// KVM could not run the guest (emulation failure, failed entry …).
    Fault(String),
}

/// State shared by all vCPU threads of one VM.
#[derive(Debug)]
pub struct Shared {
    pub stop: AtomicBool,
    pub uarts: Arc<Uarts>,
    pub cmos: cmos::Cmos,
    pub pm: pm::Pm,
}

/// Signal used to kick a vCPU thread out of KVM_RUN (the handler does nothing; the point is
/// the EINTR).
fn kick_signal() -> i32 {
    vmm_sys_util::signal::SIGRTMIN() + 2
}

extern "C" fn noop_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Failure leaves the default action (terminate) for a signal nobody else sends; the
        // kick path then never runs because the VM would not have started either.
        let _ = vmm_sys_util::signal::register_signal_handler(kick_signal(), noop_handler);
    });
}

/// Handles one OUT; `Some` ends this vCPU.
pub fn io_out(shared: &Shared, port: u16, data: &[u8]) -> Option<VcpuStop> {
    if shared.pm.io_out(port, data).is_some() {
        return None;
    }
    let &value = data.first()?;
    if port == I8042_COMMAND && value == I8042_RESET {
        return Some(VcpuStop::GuestShutdown("i8042 reset".into()));
    }
    if data.len() == 1 {
        if port == cmos::INDEX {
            shared.cmos.select(value);
        } else {
            shared.uarts.write(port, value);
        }
    }
    None
}

/// Handles one IN: UART registers, the CMOS clock, everything else absent (0xff). The i8042
/// reads as absent too: an all-ones status makes Linux's probe give up at once ("No controller
/// found") instead of waiting seconds for a controller that never answers.
pub fn io_in(shared: &Shared, port: u16, data: &mut [u8]) {
    if shared.pm.io_in(port, data).is_some() {
        return;
    }
    let v = if data.len() == 1 {
        match port {
            I8042_COMMAND | I8042_DATA => None,
            cmos::DATA => Some(shared.cmos.read()),
            _ => shared.uarts.read(port),
        }
    } else {
        None
    };
    data.fill(v.unwrap_or(0xff));
}

/// Userspace exits of one vCPU by kind and port, kept only when `KTSTR_KVM_TIMINGS` is set:
/// under nesting every such exit is a trip through two kernels, so their number is the part of
/// a boot this VMM controls.
#[derive(Debug, Default)]
struct ExitTally {
    by_kind: std::collections::BTreeMap<(&'static str, u16), u64>,
    /// Time inside KVM_RUN (the guest, plus the host kernel's own exit handling).
    in_run: Duration,
    /// Time between KVM_RUN calls: this VMM's userspace exit handling.
    in_vmm: Duration,
}

impl ExitTally {
    fn enabled() -> Option<Self> {
        std::env::var_os("KTSTR_KVM_TIMINGS").map(|_| Self::default())
    }
    fn count(&mut self, kind: &'static str, port: u16) {
        *self.by_kind.entry((kind, port)).or_default() += 1;
    }
    /// `total (most frequent first, up to 12)`.
    fn summary(&self) -> String {
        let total: u64 = self.by_kind.values().sum();
        let mut top: Vec<_> = self.by_kind.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1));
        let parts: Vec<String> = top
            .iter()
            .take(12)
            .map(|((k, p), n)| format!("{k} {p:#x}: {n}"))
            .collect();
        format!(
            "{total} ({}); in KVM_RUN {} ms, in the VMM {} ms",
            parts.join(", "),
            self.in_run.as_millis(),
            self.in_vmm.as_millis()
        )
    }
    fn report(&self, index: u32) {
        eprintln!("ktstr kvm exits vcpu{index}: {}", self.summary());
    }
}

/// The KVM_RUN loop of one vCPU, with the exit tally when profiling.
pub fn run_loop(vcpu: &mut VcpuFd, shared: &Shared, index: u32) -> VcpuStop {
    let mut tally = ExitTally::enabled();
    let stop = run_exits(vcpu, shared, tally.as_mut());
    if let Some(t) = &tally {
        t.report(index);
    }
    stop
}

fn run_exits(vcpu: &mut VcpuFd, shared: &Shared, mut tally: Option<&mut ExitTally>) -> VcpuStop {
    let mut left_run = Instant::now();
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return VcpuStop::Requested;
        }
        // Clock reads only when profiling: the loop is the hot path of every exit.
        let entered = tally.is_some().then(Instant::now);
        let exit = vcpu.run();
        if let (Some(t), Some(entered)) = (tally.as_deref_mut(), entered) {
            let now = Instant::now();
            t.in_vmm += entered - left_run;
            t.in_run += now - entered;
            left_run = now;
        }
        let exit = match exit {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
            Err(e) => return VcpuStop::Fault(format!("KVM_RUN failed: {e}")),
        };
        if let Some(t) = tally.as_deref_mut() {
            match &exit {
                VcpuExit::IoOut(port, _) => t.count("out", *port),
                VcpuExit::IoIn(port, _) => t.count("in", *port),
                VcpuExit::MmioRead(..) | VcpuExit::MmioWrite(..) => t.count("mmio", 0),
                _ => t.count("other", 0),
            }
        }
        match exit {
            VcpuExit::IoOut(port, data) => {
                if let Some(stop) = io_out(shared, port, data) {
                    return stop;
                }
            }
            VcpuExit::IoIn(port, data) => io_in(shared, port, data),
            VcpuExit::MmioRead(_, data) => data.fill(0),
            VcpuExit::MmioWrite(addr, data) => {
                shared.uarts.mmio_write(addr, data);
            }
            VcpuExit::Shutdown => {
                return VcpuStop::GuestShutdown("shutdown (triple fault / reboot=t)".into());
            }
            VcpuExit::SystemEvent(kind, _) => {
                return VcpuStop::GuestShutdown(format!("system event {kind}"));
            }
            // Only reachable without an in-kernel LAPIC; with it HLT never exits.
            VcpuExit::Hlt => return VcpuStop::GuestShutdown("hlt".into()),
            VcpuExit::Intr | VcpuExit::IrqWindowOpen => {}
            VcpuExit::InternalError => {
                return VcpuStop::Fault("KVM internal error (instruction emulation failed)".into());
            }
            VcpuExit::FailEntry(reason, cpu) => {
                return VcpuStop::Fault(format!(
                    "KVM entry failed: hardware reason {reason:#x} on host cpu {cpu}"
                ));
            }
            other => return VcpuStop::Fault(format!("unexpected vCPU exit {other:?}")),
        }
    }
}

/// Sets this thread's CPU affinity; an empty list leaves it unchanged.
pub fn set_affinity(cpus: &[usize]) -> Result<(), VcpuError> {
    if cpus.is_empty() {
        return Ok(());
    }
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: CPU_SET only writes inside `set`, and `c` is a CPU number the kernel gave us.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: pid 0 = the calling thread; `set` is a valid cpu_set_t of the size we pass.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(VcpuError::Affinity {
            cpus: cpus.to_vec(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: as in `set_affinity`; sched_getaffinity fills the set we own.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 = this thread; the size matches `set`.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` < CPU_SETSIZE, so CPU_ISSET reads inside `set`.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// A running vCPU thread.
#[derive(Debug)]
pub struct VcpuThread {
    pub handle: JoinHandle<()>,
    pub done: Arc<AtomicBool>,
}

/// Starts vCPU `index` on its own thread, confined to `cpus` (empty = anywhere). The thread
/// reports why it stopped on `tx`.
pub fn spawn(
    index: u32,
    mut vcpu: VcpuFd,
    shared: Arc<Shared>,
    cpus: Vec<usize>,
    tx: Sender<(u32, VcpuStop)>,
) -> Result<VcpuThread, VcpuError> {
    install_kick_handler();
    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    let handle = std::thread::Builder::new()
        .name(format!("vcpu{index}"))
        .spawn(move || {
            let stop = match set_affinity(&cpus) {
                Ok(()) => run_loop(&mut vcpu, &shared, index),
                Err(e) => VcpuStop::Fault(e.to_string()),
            };
            done2.store(true, Ordering::Release);
            let _ = tx.send((index, stop));
        })
        .map_err(VcpuError::Spawn)?;
    Ok(VcpuThread { handle, done })
}

/// Stops every vCPU: sets the flag, then signals each thread until it has left KVM_RUN (a
/// single signal could land just before the thread re-enters KVM_RUN and be lost).
pub fn stop_all(shared: &Shared, threads: Vec<VcpuThread>) {
    shared.stop.store(true, Ordering::Release);
    for t in threads {
        while !t.done.load(Ordering::Acquire) {
            let tid = t.handle.as_pthread_t();
            // SAFETY: `tid` is a live thread: it is only joined below, after `done` is set.
            unsafe { libc::pthread_kill(tid, kick_signal()) };
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = t.handle.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::kvm::devices::serial::ConsoleSink;
    use crate::vm::result_channel::ResultChannel;

    fn shared() -> Shared {
        let e = || vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap();
        Shared {
            stop: AtomicBool::new(false),
            uarts: Uarts::new(
                e(),
                e(),
                ConsoleSink::new(None, false),
                ResultChannel::new(Instant::now()),
            ),
            cmos: Default::default(),
            pm: Default::default(),
        }
    }

    #[test]
    fn exit_tally_lists_the_most_frequent_first() {
        let mut t = ExitTally::default();
        for _ in 0..3 {
            t.count("in", 0x3fd);
        }
        t.count("out", 0x2f8);
        t.count("other", 0);
        t.in_run = Duration::from_millis(900);
        t.in_vmm = Duration::from_millis(12);
        assert_eq!(
            t.summary(),
            "5 (in 0x3fd: 3, other 0x0: 1, out 0x2f8: 1); in KVM_RUN 900 ms, in the VMM 12 ms"
        );
    }

    /// Random IN/OUT of every width on every port never panics; only the i8042 reset line
    /// (0xfe on 0x64) ends the VM.
    #[test]
    fn random_port_io_never_panics() {
        let s = shared();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..300_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let port = (x >> 16) as u16 % 0x800;
            let len = [1usize, 2, 4][(x >> 40) as usize % 3];
            let mut buf = [(x >> 48) as u8; 4];
            if x & 1 == 0 {
                let stop = io_out(&s, port, &buf[..len]);
                let reset = port == I8042_COMMAND && buf[0] == I8042_RESET;
                assert_eq!(stop.is_some(), reset, "port {port:#x} {buf:?}");
            } else {
                io_in(&s, port, &mut buf[..len]);
            }
        }
        let mut b = [0u8; 1];
        io_in(&s, pm::PM1A_CNT, &mut b);
        assert_eq!(b[0] & 1, 1, "SCI_EN stays set");
        io_in(&s, 0x1234, &mut b);
        assert_eq!(b[0], 0xff, "absent ports read as all ones");
    }
}
