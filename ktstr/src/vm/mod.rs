//! VM backends. Every backend boots the same kernel + initramfs with the same serial layout
//! (COM1 = kernel console, COM2 = framed results from the guest agent) and returns a [`VmRun`];
//! turning that into a pass/fail result is `cell`'s job, not the backend's.

pub mod capped_log;
pub mod cmdline;
pub mod console;
pub mod kvm;
pub mod pvh;
pub mod qemu;
pub mod result_channel;
pub mod select;

use crate::topology::Topology;
use ktstr_guest::protocol::GuestMessage;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// What to boot and how.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// bzImage or ELF vmlinux.
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub topology: Topology,
    pub memory_mib: u32,
    /// Appended to [`cmdline::base`].
    pub cmdline_extra: Vec<String>,
    pub console: ConsoleMode,
    /// Host-side watchdog: the VM is killed after this and the run ends as [`VmEnd::TimedOut`].
    pub timeout: Duration,
    /// Confine vCPU threads to this many host CPUs (`--cpu-budget`); `None` = no confinement.
    pub cpu_budget: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConsoleMode {
    /// Console bytes go to this log file (and the backend keeps a tail and watches for crashes).
    Capture { log: PathBuf },
    /// Console is the user's terminal (`ktstr shell` without `--exec`).
    Interactive,
}

/// How the VM stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum VmEnd {
    /// The guest powered off / rebooted (the agent's normal end, or a kernel panic with panic=-1).
    Shutdown,
    /// The watchdog fired.
    TimedOut,
    /// Ctrl-C or a cancel request.
    Cancelled,
}

/// Everything a backend observed during one boot.
#[derive(Debug, Clone)]
pub struct VmRun {
    pub end: VmEnd,
    /// Decoded frames from COM2, in order.
    pub messages: Vec<GuestMessage>,
    /// Frames on COM2 that could not be decoded (garbage, checksum errors), and the limits of
    /// [`result_channel`] that were hit.
    pub frame_errors: Vec<String>,
    /// Last lines of the kernel console (empty in interactive mode).
    pub console_tail: String,
    pub console_log: Option<PathBuf>,
    /// First console line that marks a kernel crash (`Kernel panic`, `BUG:`, oops, sched_ext error).
    pub crash_line: Option<String>,
    /// Host wall time from spawn to the agent's `AgentStarted` frame.
    pub to_agent: Option<Duration>,
    /// Host wall time from spawn to the `Result` frame.
    pub to_result: Option<Duration>,
    pub wall: Duration,
    /// Backend description for reports, e.g. `qemu-tcg/microvm` or `kvm`.
    pub backend: String,
}

#[derive(Debug, Error)]
pub enum VmError {
    #[error("{tool} not found: {fix}")]
    MissingTool { tool: String, fix: String },
    #[error("kernel image {path}: {reason}")]
    BadKernel { path: PathBuf, reason: String },
    #[error("{0}")]
    Config(String),
    #[error("backend {backend} failed to start: {reason}")]
    Spawn { backend: String, reason: String },
    #[error("I/O error on {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A boot step of the own KVM VMM failed; the message names the step and why.
    #[error(transparent)]
    Kvm(#[from] kvm::KvmError),
}

/// A way to boot a VM. Implementations must never leave a VM running after `run` returns,
/// including on cancel and on the watchdog.
pub trait Backend: Send + Sync {
    /// Short description for reports and the "chosen backend" line.
    fn describe(&self) -> String;
    fn run(&self, cfg: &VmConfig) -> Result<VmRun, VmError>;
}

/// For interactive consoles: blocks until `started` says the guest agent has sent its first
/// frame (its console tty is then open and buffers input; bytes sent earlier meet a UART the
/// kernel has not set up yet and are lost). Holds `state` only weakly, so a VM that ends first
/// is not kept alive; returns false then.
pub(crate) fn wait_for_agent<T>(state: &std::sync::Weak<T>, started: impl Fn(&T) -> bool) -> bool {
    loop {
        let Some(s) = state.upgrade() else {
            return false;
        };
        if started(&s) {
            return true;
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(20));
    }
}
