//! One cell: [`pipeline::Cell`] -> boot request -> initramfs + backend run -> `CellResult`.
//!
//! [`run_cell`] never panics and never returns an error: every fault (initramfs, backend start,
//! kernel crash, watchdog, agent silence, garbage on the result channel) becomes an outcome with a
//! one-line reason and the console tail as evidence. [`judge`] is the pure mapping from what the
//! VM produced to the outcome, so it is unit-tested without booting.

mod judge;
pub mod pipeline;
pub mod programs;

pub use judge::judge;
pub use pipeline::{Cell, CellError, SchedulerBinary, Workload, boot_allowance};

use crate::initramfs::{self, InitramfsSpec};
use crate::topology::Topology;
use crate::vm::{Backend, ConsoleMode, VmConfig};
use ktstr_guest::protocol::CellSpec;
use ktstr_matrix::result::{CellResult, HostTimings};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a backend boots: see [`pipeline::Cell::request`], which builds it for every front end.
#[derive(Debug, Clone, PartialEq)]
pub struct CellRequest {
    /// bzImage or vmlinux (validated by the caller, e.g. `kernel::image::probe`).
    pub kernel: PathBuf,
    pub cell: CellSpec,
    /// (host path, guest path); an empty guest path means `/ktstr/files/<name>`.
    pub files: Vec<(PathBuf, String)>,
    pub topology: Topology,
    pub memory_mib: u32,
    /// Host-side watchdog for the whole boot (boot allowance + scenario + teardown).
    pub timeout: Duration,
    pub cpu_budget: Option<u32>,
    /// Where the kernel console is written.
    pub console_log: PathBuf,
    /// Extra kernel command line items (after `vm::cmdline::base`).
    pub cmdline_extra: Vec<String>,
}

impl CellRequest {
    /// A request with the defaults `ktstr run` uses for everything but the essentials.
    pub fn new(kernel: PathBuf, cell: CellSpec, console_log: PathBuf) -> Self {
        CellRequest {
            kernel,
            cell,
            files: Vec::new(),
            topology: Topology::default(),
            memory_mib: 512,
            timeout: Duration::from_secs(120),
            cpu_budget: None,
            console_log,
            cmdline_extra: Vec::new(),
        }
    }
}

/// Builds (or finds in the cache) the cell's initramfs, then boots it: see [`boot_cell`].
pub fn run_cell(req: &CellRequest, backend: &dyn Backend) -> CellResult {
    let spec = InitramfsSpec::new(req.cell.clone(), req.files.clone());
    match initramfs::build(&spec) {
        Ok(initramfs) => boot_cell(req, &initramfs, backend),
        Err(e) => CellResult::error(
            format!("initramfs: {e}"),
            HostTimings::default(),
            backend.describe(),
        ),
    }
}

/// Boots `initramfs`, which must be the image built from `req.cell` and `req.files` (callers that
/// built it already, like the matrix runner, skip re-assembling and re-hashing it per cell).
///
/// A boot whose kernel died of QEMU TCG's int3 fault ([`judge::tcg_int3_fault`]) is booted once
/// more, and only once: that fault is the emulator's, and a matrix would otherwise report it as
/// the kernel's crash. The first boot's console is kept next to the log (`<log>.tcg-int3`) as
/// evidence; a second fault is reported as the crash it is.
pub fn boot_cell(req: &CellRequest, initramfs: &Path, backend: &dyn Backend) -> CellResult {
    let first = boot_once(req, initramfs, backend);
    if !judge::tcg_int3_fault(&first) {
        return first;
    }
    let kept = req.console_log.with_extension("log.tcg-int3");
    let _ = std::fs::rename(&req.console_log, &kept);
    eprintln!(
        "ktstr: the guest died of QEMU TCG's int3 fault (the emulator's, not the kernel's); booting the cell once more (first console: {})",
        kept.display()
    );
    boot_once(req, initramfs, backend)
}

fn boot_once(req: &CellRequest, initramfs: &Path, backend: &dyn Backend) -> CellResult {
    let started = Instant::now();
    let error = |reason: String| {
        let timings = HostTimings {
            to_agent_ms: None,
            to_result_ms: None,
            wall_ms: ms(started.elapsed()),
        };
        CellResult::error(reason, timings, backend.describe())
    };
    let cfg = VmConfig {
        kernel: req.kernel.clone(),
        initramfs: initramfs.to_path_buf(),
        topology: req.topology,
        memory_mib: req.memory_mib,
        cmdline_extra: req.cmdline_extra.clone(),
        console: ConsoleMode::Capture {
            log: req.console_log.clone(),
        },
        timeout: req.timeout,
        cpu_budget: req.cpu_budget,
    };
    // A panic inside a backend must still become a result (the backend's guards kill the VM
    // while unwinding).
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| backend.run(&cfg)));
    match run {
        Ok(Ok(run)) => judge(&run, req.timeout),
        Ok(Err(e)) => error(format!("{}: {e}", backend.describe())),
        Err(p) => error(format!(
            "{} panicked: {}",
            backend.describe(),
            p.downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("?")
        )),
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::{VmEnd, VmError, VmRun};
    use std::sync::Mutex;

    /// A backend that replays crash lines, one per boot (orchestration only: no VM).
    struct Replay {
        backend: &'static str,
        crashes: Mutex<Vec<Option<&'static str>>>,
        boots: Mutex<u32>,
    }

    impl Backend for Replay {
        fn describe(&self) -> String {
            self.backend.into()
        }
        fn run(&self, cfg: &VmConfig) -> Result<VmRun, VmError> {
            *self.boots.lock().unwrap() += 1;
            if let ConsoleMode::Capture { log } = &cfg.console {
                std::fs::write(log, "console\n").unwrap();
            }
            let crash = self.crashes.lock().unwrap().remove(0);
            Ok(VmRun {
                end: VmEnd::Shutdown,
                messages: vec![],
                frame_errors: vec![],
                console_tail: String::new(),
                console_log: None,
                crash_line: crash.map(String::from),
                to_agent: None,
                to_result: None,
                wall: Duration::from_secs(1),
                backend: self.backend.into(),
            })
        }
    }

    fn boot(backend: &'static str, crashes: Vec<Option<&'static str>>) -> (CellResult, u32, bool) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("cell.log");
        let spec = ktstr_guest::protocol::CellSpec {
            protocol_version: ktstr_guest::protocol::PROTOCOL_VERSION,
            mode: ktstr_guest::protocol::Mode::Shell { exec: None },
        };
        let req = CellRequest::new("/k".into(), spec, log.clone());
        let be = Replay {
            backend,
            crashes: Mutex::new(crashes),
            boots: Mutex::new(0),
        };
        let r = boot_cell(&req, Path::new("/i"), &be);
        let kept = log.with_extension("log.tcg-int3").is_file();
        (r, *be.boots.lock().unwrap(), kept)
    }

    #[test]
    fn a_tcg_int3_fault_is_booted_once_more_and_the_first_console_kept() {
        let int3 = Some("[ 2.0] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI");
        let (r, boots, kept) = boot("qemu-tcg/microvm", vec![int3, Some("BUG: other")]);
        assert_eq!((boots, kept), (2, true));
        assert!(r.reason.unwrap().contains("BUG: other"));
        // Twice the same fault: reported as the crash it is, no third boot.
        let (r, boots, _) = boot("qemu-tcg/microvm", vec![int3, int3]);
        assert_eq!(boots, 2);
        assert!(judge::tcg_int3_fault(&r));
        // Not TCG, or not int3: one boot.
        assert_eq!(boot("kvm", vec![int3]).1, 1);
        assert_eq!(boot("qemu-tcg/microvm", vec![Some("Kernel panic")]).1, 1);
    }
}
