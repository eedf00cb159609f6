//! Picking a backend for `--backend auto|kvm|qemu`, with one line saying which and why.
//!
//! An openable /dev/kvm is not proof that KVM can run a stock kernel (software KVMs such as
//! kvm-pvm fail on xsave/int3/cmpxchg16b/VEX), so `auto` and `kvm` first run the probe guest of
//! [`super::kvm::probe`] (milliseconds on real hardware, once per process):
//! - probe passes: `auto` picks the own kvm backend, `qemu` uses `-accel kvm`;
//! - the probe guest ran but died on an instruction: this KVM cannot run stock kernels, and QEMU
//!   would use the same KVM, so `auto`/`qemu` use TCG and `kvm` is refused;
//! - the probe could not even set up its VM (an ioctl our VMM needs is missing) while /dev/kvm
//!   opens: `auto` falls back to QEMU with `-accel kvm`, whose setup path differs;
//! - no /dev/kvm: TCG.

use super::kvm::{KvmBackend, probe};
use super::qemu::{Accel, Machine, QemuBackend};
use super::{Backend, VmError};
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BackendChoice {
    /// The fastest backend that works here.
    #[default]
    Auto,
    /// ktstr's own KVM VMM.
    Kvm,
    /// QEMU (KVM acceleration where usable, else TCG).
    Qemu,
}

pub struct Selected {
    pub backend: Box<dyn Backend>,
    /// E.g. "backend qemu-tcg/q35: /dev/kvm cannot run stock kernels here".
    pub why: String,
}

impl std::fmt::Debug for Selected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selected")
            .field("backend", &self.backend.describe())
            .field("why", &self.why)
            .finish()
    }
}

/// QEMU machine type used unless `KTSTR_QEMU_MACHINE` names another (see docs/benchmarks.md for
/// the boot-time measurements behind the choice).
pub const DEFAULT_MACHINE: Machine = Machine::Microvm;

/// The machine type from `KTSTR_QEMU_MACHINE`, else [`DEFAULT_MACHINE`].
pub fn qemu_machine() -> Result<Machine, VmError> {
    match std::env::var("KTSTR_QEMU_MACHINE") {
        Ok(s) if !s.is_empty() => Machine::parse(&s).ok_or_else(|| {
            VmError::Config(format!(
                "KTSTR_QEMU_MACHINE={s:?} is not a machine type ktstr supports: use microvm, q35 or pc"
            ))
        }),
        _ => Ok(DEFAULT_MACHINE),
    }
}

/// Options the backends take from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectOpts {
    /// kvm backend: pin vCPUs and use huge pages (`--no-perf-mode` turns it off).
    pub perf_mode: bool,
}

impl Default for SelectOpts {
    fn default() -> Self {
        SelectOpts { perf_mode: true }
    }
}

/// The probe's verdict, computed once per process.
pub fn kvm_verdict() -> &'static Result<(), probe::ProbeError> {
    static VERDICT: OnceLock<Result<(), probe::ProbeError>> = OnceLock::new();
    VERDICT.get_or_init(probe::probe)
}

/// QEMU with `-accel kvm` on the configured machine type.
pub fn qemu_kvm_backend() -> Result<Box<dyn Backend>, VmError> {
    Ok(Box::new(QemuBackend::new(qemu_machine()?, Accel::Kvm)?))
}

fn qemu_tcg(why: String) -> Result<Selected, VmError> {
    let be = QemuBackend::new(qemu_machine()?, Accel::Tcg)?;
    Ok(Selected {
        why: format!("backend {}: {why}", be.describe()),
        backend: Box::new(be),
    })
}

pub fn select(choice: BackendChoice) -> Result<Selected, VmError> {
    select_with(choice, SelectOpts::default())
}

/// What the kvm choice line says the probe showed (see `probe`).
const PROBE_PASSED: &str =
    "/dev/kvm passed the probe (int3, cmpxchg16b; xsave and VEX where offered)";

pub fn select_with(choice: BackendChoice, opts: SelectOpts) -> Result<Selected, VmError> {
    let kvm = || KvmBackend {
        perf_mode: opts.perf_mode,
    };
    match (choice, kvm_verdict()) {
        (BackendChoice::Kvm, Ok(())) => Ok(Selected {
            why: format!("backend kvm: requested; {PROBE_PASSED}"),
            backend: Box::new(kvm()),
        }),
        (BackendChoice::Kvm, Err(probe::ProbeError::NoDevice(e))) => Err(VmError::MissingTool {
            tool: "/dev/kvm".into(),
            fix: format!(
                "{e}; load kvm-intel or kvm-amd and make /dev/kvm accessible, or use --backend qemu"
            ),
        }),
        (BackendChoice::Kvm, Err(e)) => Err(VmError::Config(format!(
            "--backend kvm: this /dev/kvm cannot run a stock kernel ({e}); use --backend qemu (TCG) or auto"
        ))),
        (BackendChoice::Auto, Ok(())) => Ok(Selected {
            why: format!("backend kvm: {PROBE_PASSED}"),
            backend: Box::new(kvm()),
        }),
        (BackendChoice::Qemu, Ok(())) | (BackendChoice::Auto, Err(probe::ProbeError::Setup(_))) => {
            let be = QemuBackend::new(qemu_machine()?, Accel::Kvm)?;
            let why = match kvm_verdict() {
                Err(e) => format!(
                    "backend {}: the own VMM could not set up a VM ({e}), QEMU drives KVM its own way",
                    be.describe()
                ),
                Ok(()) => format!("backend {}: /dev/kvm passed the probe", be.describe()),
            };
            Ok(Selected {
                why,
                backend: Box::new(be),
            })
        }
        (BackendChoice::Auto | BackendChoice::Qemu, Err(e)) => qemu_tcg(format!(
            "TCG, since /dev/kvm cannot run a stock kernel here ({e})"
        )),
    }
}
