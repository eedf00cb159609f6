//! Boot step 1: the guest physical memory layout and the guest memory itself.
//!
//! The low 1 MiB holds the boot structures the VMM writes (GDT, zero page, page tables, command
//! line, MP table in the EBDA); the kernel goes at 1 MiB (bzImage) or at its ELF physical
//! addresses (vmlinux, usually 16 MiB); the initrd goes at the top of RAM below 4 GiB. RAM above
//! [`MMIO_GAP_START`] is moved above 4 GiB so the LAPIC/IOAPIC window stays free, as on real
//! hardware.

use vm_memory::{GuestAddress, GuestMemoryMmap};

/// GDT with the flat 64-bit code/data segments the kernel's 64-bit entry expects.
pub const BOOT_GDT: u64 = 0x500;
/// An empty IDT: the kernel installs its own before enabling interrupts.
pub const BOOT_IDT: u64 = 0x520;
/// `struct boot_params` (the "zero page"), pointed to by %rsi at entry.
pub const ZERO_PAGE: u64 = 0x7000;
/// Initial stack (grows down, below the page tables).
pub const BOOT_STACK: u64 = 0x8ff0;
/// Identity-mapping page tables for the first 1 GiB (2 MiB pages).
pub const PML4: u64 = 0x9000;
pub const PDPTE: u64 = 0xa000;
pub const PDE: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE: u64 = 0x20000;
/// Room reserved for the command line (the kernel's own limit is in the setup header).
pub const CMDLINE_MAX: usize = 4096;
/// Extended BIOS data area: the MP floating pointer and table live here (Linux scans it).
pub const EBDA_START: u64 = 0x9fc00;
/// End of conventional memory; 0xa0000..1 MiB is the legacy VGA/ROM hole.
pub const LOW_RAM_END: u64 = 0xa0000;
/// Where protected-mode kernel code is loaded (bzImage) and where "high" memory starts.
pub const HIMEM_START: u64 = 0x10_0000;
/// The 32-bit MMIO hole (LAPIC at 0xfee00000, IOAPIC at 0xfec00000) starts here.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
pub const FOUR_GIB: u64 = 0x1_0000_0000;
/// Smallest memory that boots a test kernel with an initramfs at all.
pub const MIN_MEMORY_MIB: u32 = 64;

/// RAM ranges (guest address, size) for `memory_mib` of guest memory.
pub fn ram_ranges(memory_mib: u32) -> Vec<(GuestAddress, usize)> {
    let size = u64::from(memory_mib) << 20;
    if size <= MMIO_GAP_START {
        vec![(GuestAddress(0), size as usize)]
    } else {
        vec![
            (GuestAddress(0), MMIO_GAP_START as usize),
            (GuestAddress(FOUR_GIB), (size - MMIO_GAP_START) as usize),
        ]
    }
}

/// End (exclusive) of RAM below 4 GiB: the initrd is placed just under it.
pub fn low_ram_end(memory_mib: u32) -> u64 {
    (u64::from(memory_mib) << 20).min(MMIO_GAP_START)
}

/// e820 entry type for usable RAM / reserved.
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

/// The e820 map handed to the kernel: (addr, size, type).
pub fn e820_map(memory_mib: u32) -> Vec<(u64, u64, u32)> {
    let mut map = vec![
        (0, EBDA_START, E820_RAM),
        (EBDA_START, LOW_RAM_END - EBDA_START, E820_RESERVED),
    ];
    for (start, size) in ram_ranges(memory_mib) {
        let (start, end) = (start.0.max(HIMEM_START), start.0 + size as u64);
        if end > start {
            map.push((start, end - start, E820_RAM));
        }
    }
    map
}

/// Allocates guest memory. Performance mode asks for transparent huge pages (fewer EPT/NPT
/// misses during boot); the kernel ignores the advice when THP is off, so it is best effort.
pub fn create_memory(memory_mib: u32, huge_pages: bool) -> Result<GuestMemoryMmap, String> {
    let mem = GuestMemoryMmap::from_ranges(&ram_ranges(memory_mib))
        .map_err(|e| format!("cannot allocate {memory_mib} MiB of guest memory: {e}"))?;
    if huge_pages {
        use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
        for region in mem.iter() {
            let Ok(host) = mem.get_host_address(region.start_addr()) else {
                continue;
            };
            // SAFETY: `host .. host+len` is exactly one mapping owned by `mem`, alive for this
            // call; madvise only changes paging advice and cannot invalidate the mapping.
            unsafe {
                libc::madvise(host.cast(), region.len() as usize, libc::MADV_HUGEPAGE);
            }
        }
    }
    Ok(mem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_memory_skips_the_mmio_gap() {
        let r = ram_ranges(4096);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].0, GuestAddress(FOUR_GIB));
        assert_eq!(r[0].1 as u64 + r[1].1 as u64, 4096 << 20);
        let e = e820_map(4096);
        assert!(
            e.iter()
                .all(|&(a, s, _)| a + s <= MMIO_GAP_START || a >= FOUR_GIB)
        );
        assert_eq!(low_ram_end(256), 256 << 20);
    }
}
