//! Boot step: 64-bit entry state of the boot vCPU — identity page tables, a flat GDT, long
//! mode control registers, general registers (%rip = kernel entry, %rsi = zero page) — and of
//! every vCPU: the FPU and the LAPIC's LINT pins. Application processors are left in the
//! wait-for-SIPI state; the guest starts them through the in-kernel LAPIC.

use super::layout::{BOOT_GDT, BOOT_IDT, BOOT_STACK, PDE, PDPTE, PML4, ZERO_PAGE};
use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment};
use kvm_ioctls::VcpuFd;
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Why the boot tables or a vCPU's registers could not be set.
#[derive(Debug, Error)]
pub enum RegsError {
    #[error("cannot write boot tables at {addr:#x}: {source}")]
    Tables {
        addr: u64,
        #[source]
        source: vm_memory::GuestMemoryError,
    },
    /// A register ioctl failed; `ioctl` names it (e.g. `KVM_SET_SREGS`).
    #[error("{ioctl}: {source}")]
    Ioctl {
        ioctl: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
}

fn ioctl(ioctl: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> RegsError {
    move |source| RegsError::Ioctl { ioctl, source }
}

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;
/// Page table entry bits: present | writable (| page size for 2 MiB leaves).
const PTE_PW: u64 = 0x3;
const PTE_PW_PS: u64 = 0x83;

/// GDT descriptors (flags, base, limit) in the layout of Documentation/arch/x86/boot.rst:
/// null, 64-bit code (selector 0x08), data (0x10), TSS (0x18).
const GDT: [u64; 4] = [
    0,
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];

const fn gdt_entry(flags: u64, base: u64, limit: u64) -> u64 {
    ((base & 0xff00_0000) << 32)
        | ((flags & 0x0000_f0ff) << 40)
        | ((limit & 0x000f_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
}

fn segment(entry: u64, index: u16) -> kvm_segment {
    let bit = |shift: u32| ((entry >> shift) & 1) as u8;
    let g = bit(55);
    let mut limit = (((entry >> 32) & 0x000f_0000) | (entry & 0xffff)) as u32;
    if g == 1 {
        limit = (limit << 12) | 0xfff;
    }
    let present = bit(47);
    kvm_segment {
        base: ((entry >> 32) & 0xff00_0000) | ((entry >> 16) & 0x00ff_ffff),
        limit,
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g,
        avl: bit(52),
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

/// Writes GDT, IDT and the identity map of the first 1 GiB into guest memory.
pub fn write_boot_tables(mem: &GuestMemoryMmap) -> Result<(), RegsError> {
    let w = |addr: u64, v: u64| {
        mem.write_obj(v, GuestAddress(addr))
            .map_err(|source| RegsError::Tables { addr, source })
    };
    for (i, e) in GDT.iter().enumerate() {
        w(BOOT_GDT + 8 * i as u64, *e)?;
    }
    w(BOOT_IDT, 0)?;
    w(PML4, PDPTE | PTE_PW)?;
    w(PDPTE, PDE | PTE_PW)?;
    for i in 0..512u64 {
        w(PDE + 8 * i, (i << 21) | PTE_PW_PS)?;
    }
    Ok(())
}

/// Puts the boot vCPU in 64-bit mode at `entry`.
pub fn setup_boot_vcpu(vcpu: &VcpuFd, entry: u64) -> Result<(), RegsError> {
    let mut sregs = vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))?;
    let code = segment(GDT[1], 1);
    let data = segment(GDT[2], 2);
    let tss = segment(GDT[3], 3);
    sregs.gdt.base = BOOT_GDT;
    sregs.gdt.limit = (GDT.len() * 8 - 1) as u16;
    sregs.idt.base = BOOT_IDT;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.cr3 = PML4;
    sregs.cr4 |= X86_CR4_PAE;
    sregs.cr0 |= X86_CR0_PE | X86_CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    vcpu.set_sregs(&sregs).map_err(ioctl("KVM_SET_SREGS"))?;

    let regs = kvm_regs {
        rflags: 0x2,
        rip: entry,
        rsp: BOOT_STACK,
        rbp: BOOT_STACK,
        rsi: ZERO_PAGE,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(ioctl("KVM_SET_REGS"))
}

/// Power-on FPU state (x87 control word, MXCSR defaults) for every vCPU.
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(ioctl("KVM_SET_FPU"))
}

/// LAPIC LVT0 = ExtINT (the PIC's output) and LVT1 = NMI, as a BIOS leaves them.
pub fn setup_lint(vcpu: &VcpuFd) -> Result<(), RegsError> {
    const APIC_LVT0: usize = 0x350;
    const APIC_LVT1: usize = 0x360;
    const APIC_MODE_NMI: u32 = 0x4;
    const APIC_MODE_EXTINT: u32 = 0x7;
    let mut lapic = vcpu.get_lapic().map_err(ioctl("KVM_GET_LAPIC"))?;
    for (off, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
        let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[off + i] as u8);
        let v = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
        for (i, b) in v.to_le_bytes().into_iter().enumerate() {
            lapic.regs[off + i] = b as _;
        }
    }
    vcpu.set_lapic(&lapic).map_err(ioctl("KVM_SET_LAPIC"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_segments_decode_as_long_mode() {
        let cs = segment(GDT[1], 1);
        assert_eq!((cs.l, cs.db, cs.present, cs.s, cs.type_), (1, 0, 1, 1, 0xb));
        assert_eq!(cs.limit, 0xffff_ffff);
        assert_eq!(cs.selector, 8);
        let ds = segment(GDT[2], 2);
        assert_eq!((ds.l, ds.db, ds.type_), (0, 1, 3));
        assert_eq!(segment(0, 0).unusable, 1);
    }
}
