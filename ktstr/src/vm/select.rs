//! Picking a backend for `--backend auto|kvm|qemu`, with one line saying which and why.
//!
//! This first version knows only QEMU and always uses TCG: an openable /dev/kvm is not proof that
//! KVM can run a stock kernel (this project's dev machines have a software KVM that cannot), and
//! the probe that proves it comes with the own KVM backend.

use super::qemu::{Accel, Machine, QemuBackend};
use super::{Backend, VmError};

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

pub fn select(choice: BackendChoice) -> Result<Selected, VmError> {
    match choice {
        BackendChoice::Kvm => Err(VmError::Config(
            "--backend kvm: the own KVM backend is not available in this build; use --backend qemu"
                .into(),
        )),
        BackendChoice::Auto | BackendChoice::Qemu => {
            let machine = qemu_machine()?;
            let be = QemuBackend::new(machine, Accel::Tcg)?;
            let why = format!(
                "backend {}: TCG, since KVM is not proven able to run a stock kernel here",
                be.describe()
            );
            Ok(Selected {
                backend: Box::new(be),
                why,
            })
        }
    }
}
