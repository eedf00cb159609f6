//! Boot step: the Intel MultiProcessor Specification 1.4 table. It lists every vCPU by APIC ID
//! (so the guest brings up exactly the requested CPUs), the in-kernel IOAPIC, ISA IRQ routing and
//! the LAPIC LINT0 (ExtINT from the PIC) / LINT1 (NMI) wiring, for kernels built without ACPI
//! (the others read the same from [`super::acpi`]'s MADT).
//!
//! The floating pointer and the table live in the BIOS area at 0xf0000 (Linux scans
//! 0xf0000..0x100000 for `_MP_`), which has room for [`crate::topology::MAX_CPUS`] entries, unlike
//! the 1 KiB EBDA.

use super::cpuid::ApicLayout;
use crate::topology::Topology;
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Why the MP table could not be built or written.
#[derive(Debug, Error)]
pub enum MptableError {
    #[error(
        "topology {topology} needs APIC IDs up to {max_apic_id}; the kvm backend's xAPIC MP table supports at most 254 (use fewer CPUs or power-of-two core/thread counts)"
    )]
    TooManyApicIds {
        topology: Topology,
        max_apic_id: u32,
    },
    #[error("cannot write the MP table: {0}")]
    Write(#[source] vm_memory::GuestMemoryError),
}

pub const MPTABLE_START: u64 = 0xf0000;
const APIC_DEFAULT_PHYS_BASE: u32 = 0xfee0_0000;
pub const IO_APIC_DEFAULT_PHYS_BASE: u32 = 0xfec0_0000;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
/// IRQs routed through the IOAPIC (the in-kernel IOAPIC has 24 pins).
const IOAPIC_PINS: u8 = 24;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTPROCESSOR: u8 = 2;
/// CPUID signature/feature words in processor entries (family 6, FPU + APIC): informational.
const CPU_STEPPING: u32 = 0x600;
const CPU_FEATURE_APIC: u32 = 0x200;
const CPU_FEATURE_FPU: u32 = 0x001;
const MP_IRQTYPE_INT: u8 = 0;
const MP_IRQTYPE_NMI: u8 = 1;
const MP_IRQTYPE_EXTINT: u8 = 3;

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// The MP floating pointer followed by the configuration table, as bytes.
pub fn build(layout: &ApicLayout) -> Result<Vec<u8>, MptableError> {
    let cpus = layout.topo.cpus();
    let ioapic_id = layout.max_apic_id() + 1;
    if ioapic_id > 0xfe {
        return Err(MptableError::TooManyApicIds {
            topology: layout.topo,
            max_apic_id: layout.max_apic_id(),
        });
    }
    let mut entries = Vec::new();
    let mut count = 0u16;
    for cpu in 0..cpus {
        let mut e = vec![0u8, layout.apic_id(cpu) as u8, APIC_VERSION];
        e.push(CPU_ENABLED | if cpu == 0 { CPU_BOOTPROCESSOR } else { 0 });
        e.extend(CPU_STEPPING.to_le_bytes());
        e.extend((CPU_FEATURE_APIC | CPU_FEATURE_FPU).to_le_bytes());
        e.extend([0u8; 8]);
        entries.extend(e);
        count += 1;
    }
    // Bus 0: ISA.
    entries.extend([1u8, 0]);
    entries.extend(b"ISA   ");
    count += 1;
    // The IOAPIC.
    entries.extend([2u8, ioapic_id as u8, IOAPIC_VERSION, 1]);
    entries.extend(IO_APIC_DEFAULT_PHYS_BASE.to_le_bytes());
    count += 1;
    // ISA IRQ i -> IOAPIC pin i, all plain INTs: an ExtINT pin entry makes Linux look for the
    // 8259 behind the IOAPIC (check_timer) and crash when the table does not match KVM's wiring.
    for irq in 0..IOAPIC_PINS {
        entries.extend([3u8, MP_IRQTYPE_INT, 0, 0, 0, irq, ioapic_id as u8, irq]);
        count += 1;
    }
    // LINT0 of the BSP (APIC 0) = ExtINT from the PIC; LINT1 of every LAPIC (0xff) = NMI.
    entries.extend([4u8, MP_IRQTYPE_EXTINT, 0, 0, 0, 0, 0, 0]);
    entries.extend([4u8, MP_IRQTYPE_NMI, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let table_addr = MPTABLE_START as u32 + 16;
    let mut table = Vec::with_capacity(44 + entries.len());
    table.extend(b"PCMP");
    table.extend(((44 + entries.len()) as u16).to_le_bytes());
    table.push(4); // spec revision 1.4
    table.push(0); // checksum, below
    table.extend(b"KTSTR   "); // OEM id
    table.extend(b"KVM-VMM     "); // product id
    table.extend(0u32.to_le_bytes()); // OEM table pointer
    table.extend(0u16.to_le_bytes()); // OEM table size
    table.extend(count.to_le_bytes());
    table.extend(APIC_DEFAULT_PHYS_BASE.to_le_bytes());
    table.extend(0u32.to_le_bytes()); // extended table length/checksum
    table.extend(entries);
    table[7] = checksum(&table);

    let mut mpf = Vec::with_capacity(16);
    mpf.extend(b"_MP_");
    mpf.extend(table_addr.to_le_bytes());
    mpf.extend([1u8, 4, 0, 0, 0, 0, 0, 0]);
    mpf[10] = checksum(&mpf);
    mpf.extend(table);
    Ok(mpf)
}

pub fn write(mem: &GuestMemoryMmap, layout: &ApicLayout) -> Result<(), MptableError> {
    let bytes = build(layout)?;
    mem.write_slice(&bytes, GuestAddress(MPTABLE_START))
        .map_err(MptableError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_counts_are_consistent() {
        let l = ApicLayout::new("1n2l2c1t".parse().unwrap());
        let b = build(&l).unwrap();
        assert_eq!(&b[..4], b"_MP_");
        assert_eq!(b[..16].iter().fold(0u8, |a, x| a.wrapping_add(*x)), 0);
        let t = &b[16..];
        let len = u16::from_le_bytes([t[4], t[5]]) as usize;
        assert_eq!(len, t.len());
        assert_eq!(t.iter().fold(0u8, |a, x| a.wrapping_add(*x)), 0);
        let count = u16::from_le_bytes([t[34], t[35]]);
        // 4 CPUs + bus + IOAPIC + 24 IRQs + 2 local.
        assert_eq!(count, 4 + 1 + 1 + 24 + 2);
        // Processor entries: first is the BSP, APIC IDs in order.
        assert_eq!(t[44 + 3], CPU_ENABLED | CPU_BOOTPROCESSOR);
        assert_eq!(t[44 + 20 + 1], 1);
    }

    #[test]
    fn too_many_apic_ids_is_a_clear_error() {
        let l = ApicLayout::new("1n64l3c1t".parse().unwrap());
        let err = build(&l).unwrap_err();
        assert!(matches!(err, MptableError::TooManyApicIds { .. }), "{err}");
        assert!(err.to_string().contains("APIC IDs"), "{err}");
    }
}
