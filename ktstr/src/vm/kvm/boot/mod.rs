//! The boot steps: everything written into guest memory and vCPU state before the first
//! KVM_RUN, one module per step family, each with its own error type (gathered in
//! [`super::KvmError`]). [`super::build_vm`] runs them in order.

pub mod acpi;
pub mod boot_params;
pub mod cpuid;
pub mod layout;
pub mod loader;
pub mod mptable;
pub mod msrs;
pub mod regs;
