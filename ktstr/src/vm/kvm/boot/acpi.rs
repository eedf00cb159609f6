//! Boot step: ACPI tables — RSDP, XSDT, a FADT with an empty DSDT, the MADT (one LAPIC per
//! vCPU by APIC ID, the IOAPIC, LINT1 = NMI) and, for more than one node, SRAT (CPU and memory
//! affinity) and SLIT (distances). Kernels without MP-table parsing (Debian's cloud kernels)
//! need the MADT to see more than one CPU, and NUMA needs SRAT.
//!
//! The FADT is a full (not hardware-reduced) one: hardware-reduced ACPI makes Linux drop the
//! legacy PIC and with it the ISA IRQ mapping the UARTs use (they would then need AML device
//! descriptions). Its only fixed hardware is a PM1 event/control block pair, emulated by
//! [`crate::vm::kvm::devices::pm::Pm`] (SCI_EN always set, no events); no SMI command port means
//! "always in ACPI mode".
//! The tables live in the BIOS area at [`ACPI_START`]; the RSDP address is also in boot_params.

use super::cpuid::ApicLayout;
use super::layout;
use super::mptable::IO_APIC_DEFAULT_PHYS_BASE;
use crate::topology::Topology;
use crate::vm::kvm::devices::pm::{PM1_CNT_LEN, PM1_EVT_LEN, PM1A_CNT, PM1A_EVT};
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Why the ACPI tables could not be written.
#[derive(Debug, Error)]
pub enum AcpiError {
    #[error("ACPI tables for topology {topology} do not fit below {end:#x}")]
    TooLarge { topology: Topology, end: u64 },
    #[error("cannot write ACPI tables: {0}")]
    Write(#[source] vm_memory::GuestMemoryError),
}

pub const ACPI_START: u64 = 0xe0000;
/// The tables must end before the MP table.
const ACPI_END: u64 = super::mptable::MPTABLE_START;
const OEM_ID: &[u8; 6] = b"KTSTR ";
const OEM_TABLE_ID: &[u8; 8] = b"KTSTRVMM";
const LAPIC_BASE: u32 = 0xfee0_0000;
/// SCI interrupt (never raised: there are no events).
const SCI_IRQ: u16 = 9;
/// FADT flags: PWR_BUTTON and SLP_BUTTON (bits 4, 5) = no fixed-feature buttons.
const FADT_NO_BUTTONS: u32 = (1 << 4) | (1 << 5);
/// IAPC_BOOT_ARCH: VGA not present (bit 2); the 8042 bit (1) stays clear so Linux skips it.
const IAPC_NO_VGA: u16 = 1 << 2;

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// A system description table: 36-byte header + body, length and checksum filled in.
fn sdt(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(36 + body.len());
    t.extend(signature);
    t.extend(((36 + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0);
    t.extend(OEM_ID);
    t.extend(OEM_TABLE_ID);
    t.extend(1u32.to_le_bytes()); // OEM revision
    t.extend(b"KTST"); // creator id
    t.extend(1u32.to_le_bytes()); // creator revision
    t.extend(body);
    t[9] = checksum(&t);
    t
}

fn fadt(dsdt: u64) -> Vec<u8> {
    // Body of a revision 6 FADT: 276 bytes in total, offsets below are from the table start.
    let mut b = vec![0u8; 276 - 36];
    let at = |off: usize| off - 36;
    b[at(40)..at(44)].copy_from_slice(&(dsdt as u32).to_le_bytes());
    b[at(46)..at(48)].copy_from_slice(&SCI_IRQ.to_le_bytes());
    b[at(56)..at(60)].copy_from_slice(&u32::from(PM1A_EVT).to_le_bytes());
    b[at(64)..at(68)].copy_from_slice(&u32::from(PM1A_CNT).to_le_bytes());
    b[at(88)] = PM1_EVT_LEN;
    b[at(89)] = PM1_CNT_LEN;
    b[at(109)..at(111)].copy_from_slice(&IAPC_NO_VGA.to_le_bytes());
    b[at(112)..at(116)].copy_from_slice(&FADT_NO_BUTTONS.to_le_bytes());
    b[at(131)] = 5; // FADT minor version (ACPI 6.5)
    b[at(140)..at(148)].copy_from_slice(&dsdt.to_le_bytes());
    // Generic address structures: system I/O space, register width, then the port.
    for (off, width, port) in [(148, 32u8, PM1A_EVT), (172, 16u8, PM1A_CNT)] {
        b[at(off)] = 1;
        b[at(off) + 1] = width;
        b[at(off) + 4..at(off) + 12].copy_from_slice(&u64::from(port).to_le_bytes());
    }
    b[at(268)..at(276)].copy_from_slice(b"KTSTRKVM");
    sdt(b"FACP", 6, &b)
}

fn madt(layout: &ApicLayout) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(LAPIC_BASE.to_le_bytes());
    b.extend(1u32.to_le_bytes()); // PCAT_COMPAT: the (in-kernel) dual 8259 is present
    for cpu in 0..layout.topo.cpus() {
        // Processor Local APIC: uid, APIC id, enabled.
        b.extend([0u8, 8, cpu as u8, layout.apic_id(cpu) as u8]);
        b.extend(1u32.to_le_bytes());
    }
    // I/O APIC: id, reserved, address, GSI base 0.
    b.extend([1u8, 12, (layout.max_apic_id() + 1) as u8, 0]);
    b.extend(IO_APIC_DEFAULT_PHYS_BASE.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    // Local APIC NMI: all processors (0xff), default flags, LINT1.
    b.extend([4u8, 6, 0xff, 0, 0, 1]);
    sdt(b"APIC", 5, &b)
}

/// Guest-physical RAM ranges of each node: total RAM split evenly in 2 MiB units, in address
/// order, across the MMIO gap where needed.
pub fn node_memory(memory_mib: u32, nodes: u32) -> Vec<Vec<(u64, u64)>> {
    let ranges: Vec<(u64, u64)> = layout::ram_ranges(memory_mib)
        .into_iter()
        .map(|(a, s)| (a.0, s as u64))
        .collect();
    let total: u64 = ranges.iter().map(|r| r.1).sum();
    let unit = 2 << 20;
    let per = (total / u64::from(nodes)) / unit * unit;
    let mut out = vec![Vec::new(); nodes as usize];
    let (mut ri, mut off) = (0usize, 0u64);
    for (n, node) in out.iter_mut().enumerate() {
        let mut want = if n as u32 == nodes - 1 { u64::MAX } else { per };
        while want > 0 && ri < ranges.len() {
            let (base, size) = ranges[ri];
            let take = want.min(size - off);
            node.push((base + off, take));
            off += take;
            want = want.saturating_sub(take);
            if off == size {
                ri += 1;
                off = 0;
            }
        }
    }
    out
}

fn srat(layout: &ApicLayout, memory_mib: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(1u32.to_le_bytes()); // reserved, must be 1
    b.extend(0u64.to_le_bytes());
    for cpu in 0..layout.topo.cpus() {
        let node = layout.node(cpu);
        b.extend([0u8, 16, node as u8, layout.apic_id(cpu) as u8]);
        b.extend(1u32.to_le_bytes()); // enabled
        b.push(0); // SAPIC EID
        b.extend(&node.to_le_bytes()[1..4]);
        b.extend(0u32.to_le_bytes()); // clock domain
    }
    for (node, ranges) in node_memory(memory_mib, layout.topo.nodes)
        .into_iter()
        .enumerate()
    {
        for (base, len) in ranges {
            b.extend([1u8, 40]);
            b.extend((node as u32).to_le_bytes());
            b.extend(0u16.to_le_bytes());
            b.extend(base.to_le_bytes());
            b.extend(len.to_le_bytes());
            b.extend(0u32.to_le_bytes());
            b.extend(1u32.to_le_bytes()); // enabled
            b.extend(0u64.to_le_bytes());
        }
    }
    sdt(b"SRAT", 3, &b)
}

fn slit(nodes: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(u64::from(nodes).to_le_bytes());
    for i in 0..nodes {
        for j in 0..nodes {
            b.push(if i == j { 10 } else { 20 });
        }
    }
    sdt(b"SLIT", 1, &b)
}

/// Writes every table; returns the RSDP address.
pub fn write(
    mem: &GuestMemoryMmap,
    layout: &ApicLayout,
    memory_mib: u32,
) -> Result<u64, AcpiError> {
    let mut tables: Vec<Vec<u8>> = vec![madt(layout)];
    if layout.topo.nodes > 1 {
        tables.push(srat(layout, memory_mib));
        tables.push(slit(layout.topo.nodes));
    }
    // Layout: RSDP (36 bytes, padded to 64), DSDT, FADT, the rest, then the XSDT pointing at them.
    let rsdp_addr = ACPI_START;
    let mut next = ACPI_START + 64;
    let mut blobs: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut place = |t: Vec<u8>, blobs: &mut Vec<(u64, Vec<u8>)>| {
        let addr = next;
        next = (next + t.len() as u64 + 15) & !15;
        blobs.push((addr, t));
        addr
    };
    let dsdt = place(sdt(b"DSDT", 2, &[]), &mut blobs);
    let mut pointers = vec![place(fadt(dsdt), &mut blobs)];
    for t in tables {
        pointers.push(place(t, &mut blobs));
    }
    let body: Vec<u8> = pointers.iter().flat_map(|p| p.to_le_bytes()).collect();
    let xsdt = place(sdt(b"XSDT", 1, &body), &mut blobs);
    if next > ACPI_END {
        return Err(AcpiError::TooLarge {
            topology: layout.topo,
            end: ACPI_END,
        });
    }
    let mut rsdp = Vec::with_capacity(36);
    rsdp.extend(b"RSD PTR ");
    rsdp.push(0);
    rsdp.extend(OEM_ID);
    rsdp.push(2); // revision: ACPI 2.0+, XSDT
    rsdp.extend(0u32.to_le_bytes()); // no RSDT
    rsdp.extend(36u32.to_le_bytes());
    rsdp.extend(xsdt.to_le_bytes());
    rsdp.extend([0u8; 4]);
    rsdp[8] = checksum(&rsdp[..20]);
    rsdp[32] = checksum(&rsdp);
    blobs.push((rsdp_addr, rsdp));
    for (addr, t) in blobs {
        mem.write_slice(&t, GuestAddress(addr))
            .map_err(AcpiError::Write)?;
    }
    Ok(rsdp_addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    #[test]
    fn tables_checksum_and_describe_the_topology() {
        let l = ApicLayout::new("2n1l2c1t".parse().unwrap());
        let m = madt(&l);
        assert_eq!(sum(&m), 0);
        assert_eq!(
            u32::from_le_bytes(m[4..8].try_into().unwrap()) as usize,
            m.len()
        );
        let s = srat(&l, 512);
        assert_eq!(sum(&s), 0);
        // CPU 2 (first of node 1) is in proximity domain 1.
        let cpu2 = 48 + 2 * 16;
        assert_eq!((s[cpu2], s[cpu2 + 2], s[cpu2 + 3]), (0, 1, 2));
        assert_eq!(fadt(0x1234).len(), 276);
        assert_eq!(sum(&fadt(0x1234)), 0);
        assert_eq!(sum(&slit(2)), 0);
    }

    #[test]
    fn node_memory_covers_ram_across_the_gap() {
        let n = node_memory(4096, 2);
        let total: u64 = n.iter().flatten().map(|r| r.1).sum();
        assert_eq!(total, 4096 << 20);
        assert_eq!(n[0].iter().map(|r| r.1).sum::<u64>(), 2048 << 20);
        assert!(n[1].iter().any(|r| r.0 >= layout::FOUR_GIB));
    }
}
