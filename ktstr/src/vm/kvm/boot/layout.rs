//! Boot step: the guest physical memory layout and the guest memory itself.
//!
//! The low 1 MiB holds the boot structures the VMM writes (GDT, zero page, page tables, command
//! line, MP table in the EBDA); the kernel goes at 1 MiB (bzImage) or at its ELF physical
//! addresses (vmlinux, usually 16 MiB); the initrd goes at the top of RAM below 4 GiB. RAM above
//! [`MMIO_GAP_START`] is moved above 4 GiB so the LAPIC/IOAPIC window stays free, as on real
//! hardware.

use thiserror::Error;
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Why guest memory could not be set up.
#[derive(Debug, Error)]
pub enum MemoryError {
    #[error("cannot allocate {mib} MiB of guest memory: {source}")]
    Map {
        mib: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot allocate {mib} MiB of guest memory: {source}")]
    Region {
        mib: u32,
        #[source]
        source: vm_memory::mmap::MmapRegionError,
    },
    #[error("cannot allocate {mib} MiB of guest memory: guest region at {start:#x} overflows")]
    RegionOverflow { mib: u32, start: u64 },
    #[error("cannot allocate {mib} MiB of guest memory: {source}")]
    Regions {
        mib: u32,
        #[source]
        source: vm_memory::GuestRegionCollectionError,
    },
    #[error("guest memory at {start:#x} has no host mapping: {source}")]
    HostAddress {
        start: u64,
        #[source]
        source: vm_memory::GuestMemoryError,
    },
}

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

/// Host pages KVM can map with one nested/extended page-table entry when THP backs them.
pub const HUGE_PAGE: usize = 2 << 20;

/// Guest RAM and the host mappings behind it. The mappings are ours (vm-memory only borrows
/// them), so they are unmapped when this is dropped: keep it alive until the VM fd is closed.
pub struct GuestRam {
    pub mem: GuestMemoryMmap,
    _maps: Vec<Mapping>,
}

/// One anonymous mapping (address kept as an integer so `GuestRam` stays `Send`).
struct Mapping {
    addr: usize,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `addr..addr+len` is exactly a mapping `map_aligned` created and nothing else
        // unmaps; the `GuestMemoryMmap` borrowing it is dropped first (field order in GuestRam).
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

/// Maps `len` bytes of anonymous memory at a [`HUGE_PAGE`]-aligned address. Guest RAM starts
/// at 2 MiB-aligned guest addresses, so host and guest offsets agree within each 2 MiB page and
/// KVM can back the guest with 2 MiB NPT/EPT entries when THP gives huge pages; a plain mmap is
/// only 4 KiB aligned, which forces 4 KiB entries and one nested page fault per guest page
/// touched (measured nested: see docs/benchmarks.md, "KVM backend").
fn map_aligned(len: usize) -> std::io::Result<Mapping> {
    let total = len + HUGE_PAGE;
    // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            total,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    let raw = raw as usize;
    let addr = (raw + HUGE_PAGE - 1) & !(HUGE_PAGE - 1);
    let (head, tail) = (addr - raw, raw + total - (addr + len));
    // SAFETY: both ranges lie inside the mapping just created and outside `addr..addr+len`;
    // trimming them leaves exactly the aligned part mapped.
    unsafe {
        if head > 0 {
            libc::munmap(raw as *mut libc::c_void, head);
        }
        if tail > 0 {
            libc::munmap((addr + len) as *mut libc::c_void, tail);
        }
    }
    Ok(Mapping { addr, len })
}

/// Allocates guest memory, 2 MiB aligned. Performance mode asks for transparent huge pages
/// (MADV_HUGEPAGE: fewer nested page faults and TLB misses); without it the memory is marked
/// MADV_NOHUGEPAGE so `--no-perf-mode` means 4 KiB pages even where THP is `always`. The
/// kernel ignores the advice when THP is not built in, so it is best effort.
pub fn create_memory(memory_mib: u32, huge_pages: bool) -> Result<GuestRam, MemoryError> {
    use vm_memory::{GuestRegionMmap, MmapRegion};
    let mib = memory_mib;
    let mut maps = Vec::new();
    let mut regions = Vec::new();
    for (start, size) in ram_ranges(memory_mib) {
        let m = map_aligned(size).map_err(|source| MemoryError::Map { mib, source })?;
        let advice = if huge_pages {
            libc::MADV_HUGEPAGE
        } else {
            libc::MADV_NOHUGEPAGE
        };
        // SAFETY: `m` is a live mapping of exactly `size` bytes; madvise only changes paging
        // advice and cannot invalidate it.
        unsafe { libc::madvise(m.addr as *mut libc::c_void, size, advice) };
        // SAFETY: `m.addr..+size` is a valid read/write anonymous private mapping that outlives
        // the region (both live in the returned GuestRam, the mapping dropped last).
        let region = unsafe {
            MmapRegion::<()>::build_raw(
                m.addr as *mut u8,
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            )
        }
        .map_err(|source| MemoryError::Region { mib, source })?;
        maps.push(m);
        regions.push(
            GuestRegionMmap::new(region, start).ok_or(MemoryError::RegionOverflow {
                mib,
                start: start.0,
            })?,
        );
    }
    let mem = GuestMemoryMmap::from_regions(regions)
        .map_err(|source| MemoryError::Regions { mib, source })?;
    Ok(GuestRam { mem, _maps: maps })
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

    /// Every region's host address is 2 MiB aligned, so guest and host offsets agree within a
    /// huge page; memory is usable and zeroed.
    #[test]
    fn guest_ram_is_huge_page_aligned() {
        use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryRegion};
        for huge in [true, false] {
            let ram = create_memory(4096, huge).unwrap();
            assert_eq!(ram.mem.num_regions(), 2);
            for r in ram.mem.iter() {
                let host = ram.mem.get_host_address(r.start_addr()).unwrap() as usize;
                assert_eq!(host % HUGE_PAGE, 0, "{host:#x}");
            }
            ram.mem
                .write_obj(0xabcdu64, GuestAddress(FOUR_GIB + 8))
                .unwrap();
            assert_eq!(
                ram.mem.read_obj::<u64>(GuestAddress(FOUR_GIB + 8)).unwrap(),
                0xabcd
            );
            assert_eq!(ram.mem.read_obj::<u64>(GuestAddress(1 << 20)).unwrap(), 0);
        }
    }
}
