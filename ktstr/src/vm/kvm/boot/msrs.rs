//! Boot step: MSRs a BIOS would have initialised: syscall MSRs zeroed, fast strings on, MTRRs
//! enabled with write-back as the default type (without it the guest maps all RAM uncached and
//! boots many times slower).

use kvm_bindings::{Msrs, kvm_msr_entry};
use kvm_ioctls::VcpuFd;
use thiserror::Error;

/// Why the boot MSRs could not be set.
#[derive(Debug, Error)]
pub enum MsrsError {
    #[error("building the MSR list: {0}")]
    List(#[source] vmm_sys_util::fam::Error),
    #[error("KVM_SET_MSRS: {0}")]
    Set(#[source] kvm_ioctls::Error),
    #[error("KVM_SET_MSRS set only {set} of {total} boot MSRs (first refused: {first_refused:#x})")]
    Refused {
        set: usize,
        total: usize,
        first_refused: u32,
    },
}

const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MISC_ENABLE_FAST_STRING: u64 = 1;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MTRR_ENABLE: u64 = 1 << 11;
const MTRR_TYPE_WRBACK: u64 = 6;

pub fn boot_msrs() -> Vec<(u32, u64)> {
    vec![
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WRBACK),
    ]
}

pub fn setup_msrs(vcpu: &VcpuFd) -> Result<(), MsrsError> {
    let list = boot_msrs();
    let entries: Vec<kvm_msr_entry> = list
        .iter()
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    let msrs = Msrs::from_entries(&entries).map_err(MsrsError::List)?;
    let set = vcpu.set_msrs(&msrs).map_err(MsrsError::Set)?;
    if set != entries.len() {
        return Err(MsrsError::Refused {
            set,
            total: entries.len(),
            first_refused: entries[set].index,
        });
    }
    Ok(())
}
