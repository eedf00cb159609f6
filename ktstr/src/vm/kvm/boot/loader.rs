//! Boot step: load the kernel image: a bzImage with linux-loader, an ELF vmlinux with
//! `copy_elf`.

use super::layout::HIMEM_START;
use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::{KernelLoader, bzimage::BzImage};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use thiserror::Error;
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Why the kernel image could not be loaded (the caller adds the image's path).
#[derive(Debug, Error)]
pub enum LoaderError {
    #[error("cannot open: {0}")]
    Open(#[source] std::io::Error),
    #[error("cannot read the image header: {0}")]
    ReadHeader(#[source] std::io::Error),
    #[error(
        "neither an ELF vmlinux nor a bzImage the loader accepts ({0}); pass arch/x86/boot/bzImage or vmlinux"
    )]
    NotBzImage(#[source] linux_loader::loader::Error),
    #[error("cannot map the ELF: {0}")]
    MapElf(#[source] std::io::Error),
    #[error("not an x86_64 ELF vmlinux the loader accepts: {0}")]
    BadElf(String),
    #[error("cannot write the ELF to {addr:#x}: {source}")]
    Write {
        addr: u64,
        #[source]
        source: vm_memory::GuestMemoryError,
    },
}

/// Where the loaded kernel starts executing in 64-bit mode.
#[derive(Debug, Clone)]
pub struct LoadedKernel {
    pub entry: u64,
    /// End of the loaded image (guest physical); the initrd must not overlap it.
    pub end: u64,
    /// The bzImage setup header (copied into boot_params); `None` for ELF.
    pub setup_header: Option<setup_header>,
    pub format: &'static str,
}

/// Offset of `startup_64` from the start of the protected-mode part of a bzImage
/// (Documentation/arch/x86/boot.rst, "64-bit BOOT PROTOCOL").
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;

pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<LoadedKernel, LoaderError> {
    let mut f = File::open(path).map_err(LoaderError::Open)?;
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic).map_err(LoaderError::ReadHeader)?;
    if &magic == b"\x7fELF" {
        return copy_elf(mem, &f);
    }
    let r = BzImage::load(mem, None, &mut f, Some(GuestAddress(HIMEM_START)))
        .map_err(LoaderError::NotBzImage)?;
    Ok(LoadedKernel {
        entry: r.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET,
        end: r.kernel_end,
        setup_header: r.setup_header,
        format: "bzImage",
    })
}

/// Guest page size: the granule at which all-zero source data is skipped.
const PAGE: usize = 4096;
/// Copy granule, below glibc's 4 KiB switch to `rep movsb` on ERMS CPUs: QEMU's TCG (the nested
/// test bed) runs that one byte per iteration, vector moves many bytes at a time. The copy is
/// then a small part of a load, the rest being the host faulting in and zeroing the destination
/// pages (docs/benchmarks.md, "where the kernel load's time goes").
const CHUNK: usize = 2048;

/// Loads an ELF vmlinux as linux-loader's `Elf::load` does (every PT_LOAD at its `p_paddr`,
/// entry `e_entry`) but copying less and more cheaply: the file is read through a read-only
/// mapping (no read() into a buffer), and source pages that are all zero are skipped, since
/// `mem` is fresh anonymous memory that already reads as zero (an extracted vmlinux carries its
/// .bss and .brk as file data, a large part of a distribution kernel). Guest memory is only
/// ever written, never replaced by file pages: mapping the file copy-on-write takes the load
/// off the set-up but not off the boot, which then faults in 4 KiB file pages instead of 2 MiB
/// copied ones, and mapping it with MAP_POPULATE was slower than this copy (docs/benchmarks.md,
/// "console without exits, cheaper kernel load" and "mapping the kernel instead").
fn copy_elf(mem: &GuestMemoryMmap, f: &File) -> Result<LoadedKernel, LoaderError> {
    use goblin::elf::program_header::PT_LOAD;
    use goblin::elf::{Elf, header};
    let bad = LoaderError::BadElf;
    // SAFETY: a read-only private mapping of the file. The kernel cache replaces files by
    // rename, never in place, so the bytes neither change nor vanish (SIGBUS) while mapped;
    // the mapping is dropped before this function returns.
    let file = unsafe { memmap2::Mmap::map(f) }.map_err(LoaderError::MapElf)?;
    let elf = Elf::parse(&file).map_err(|e| bad(e.to_string()))?;
    if !elf.is_64 || !elf.little_endian || elf.header.e_machine != header::EM_X86_64 {
        return Err(bad("not a little-endian 64-bit x86_64 ELF".into()));
    }
    if elf.entry < HIMEM_START {
        return Err(bad(format!("entry {:#x} below 1 MiB", elf.entry)));
    }
    let mut end = 0;
    for ph in elf.program_headers.iter().filter(|p| p.p_type == PT_LOAD) {
        let (addr, filesz) = (ph.p_paddr, ph.p_filesz);
        let data = usize::try_from(ph.p_offset)
            .ok()
            .zip(usize::try_from(filesz).ok())
            .and_then(|(o, n)| file.get(o..o.checked_add(n)?))
            .ok_or_else(|| {
                bad(format!(
                    "segment at {addr:#x} lies past the end of the file"
                ))
            })?;
        let seg_end = addr
            .checked_add(ph.p_memsz.max(filesz))
            .filter(|&e| fits(mem, addr, e))
            .ok_or_else(|| {
                bad(format!(
                    "segment {addr:#x}+{:#x} is not inside guest RAM (raise --memory-mib)",
                    ph.p_memsz
                ))
            })?;
        copy_nonzero_pages(mem, data, addr)?;
        end = end.max(seg_end);
    }
    if end == 0 {
        return Err(bad("no loadable segment".into()));
    }
    Ok(LoadedKernel {
        entry: elf.entry,
        end,
        setup_header: None,
        format: "elf",
    })
}

/// Whether `start..end` lies inside one guest memory region.
fn fits(mem: &GuestMemoryMmap, start: u64, end: u64) -> bool {
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
    mem.find_region(GuestAddress(start))
        .is_some_and(|r| end <= r.start_addr().0 + r.len())
}

/// Writes `data` to guest memory at `addr`, guest page by guest page, leaving out pages whose
/// bytes are all zero (writing them would only fault in and zero host memory for nothing).
fn copy_nonzero_pages(mem: &GuestMemoryMmap, data: &[u8], addr: u64) -> Result<(), LoaderError> {
    use vm_memory::Bytes;
    let mut at = 0;
    while at < data.len() {
        let to = addr + at as u64;
        let page_left = PAGE - (to % PAGE as u64) as usize;
        let page = &data[at..data.len().min(at + page_left)];
        if page.iter().any(|&b| b != 0) {
            for (i, chunk) in page.chunks(CHUNK).enumerate() {
                let dst = GuestAddress(to + (i * CHUNK) as u64);
                mem.write_slice(chunk, dst)
                    .map_err(|source| LoaderError::Write {
                        addr: dst.0,
                        source,
                    })?;
            }
        }
        at += page.len();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn garbage_image_is_rejected_not_panicking() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[0x5a; 8192]).unwrap();
        let err = load_kernel(&mem, f.path()).unwrap_err();
        assert!(matches!(err, LoaderError::NotBzImage(_)), "{err}");
        assert!(err.to_string().contains("bzImage"), "{err}");
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"\x7fELF garbage").unwrap();
        let err = load_kernel(&mem, f.path()).unwrap_err();
        assert!(matches!(err, LoaderError::BadElf(_)), "{err}");
        assert!(err.to_string().contains("ELF"), "{err}");
    }

    /// A hand-made ELF: A starts mid-page with a .bss tail, B's file offset and address disagree
    /// modulo the page size, C has no file data, D is writable with an all-zero page.
    fn small_elf() -> Vec<u8> {
        let mut elf = vec![0u8; 0x8000];
        elf[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
        let put = |e: &mut Vec<u8>, at: usize, v: &[u8]| e[at..at + v.len()].copy_from_slice(v);
        put(&mut elf, 16, &2u16.to_le_bytes()); // ET_EXEC
        put(&mut elf, 18, &62u16.to_le_bytes()); // EM_X86_64
        put(&mut elf, 20, &1u32.to_le_bytes());
        put(&mut elf, 24, &0x20_0800u64.to_le_bytes()); // e_entry
        put(&mut elf, 32, &64u64.to_le_bytes()); // e_phoff
        for (at, v) in [(52, 64u16), (54, 56), (56, 4), (58, 64)] {
            put(&mut elf, at, &v.to_le_bytes());
        }
        // (offset, paddr, filesz, memsz, flags)
        let segs = [
            (0x1800u64, 0x20_0800u64, 0x2a00u64, 0x4000u64, 5u32),
            (0x5004, 0x30_0010, 0x100, 0x100, 5),
            (0, 0x40_0000, 0, 0x1000, 6),
            (0x6000, 0x50_0000, 0x2000, 0x2000, 6),
        ];
        for (i, (off, paddr, filesz, memsz, flags)) in segs.into_iter().enumerate() {
            let at = 64 + i * 56;
            put(&mut elf, at, &1u32.to_le_bytes()); // PT_LOAD
            put(&mut elf, at + 4, &flags.to_le_bytes());
            for (k, v) in [off, paddr, paddr, filesz, memsz].into_iter().enumerate() {
                put(&mut elf, at + 8 + 8 * k, &v.to_le_bytes());
            }
        }
        for (i, b) in elf.iter_mut().enumerate().skip(0x1800) {
            if !(0x6000..0x7000).contains(&i) {
                *b = (i * 7 % 251) as u8 + 1; // never zero: a missing copy shows
            }
        }
        elf
    }

    /// Guest memory after `load_kernel` holds exactly what linux-loader's `Elf::load` puts
    /// there, with the same entry and end, although zero pages were skipped.
    #[test]
    fn elf_load_matches_linux_loader() {
        use linux_loader::loader::elf::Elf;
        use vm_memory::Bytes;
        let elf = small_elf();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&elf).unwrap();
        let ram = super::super::layout::create_memory(64, false).unwrap();
        let got = load_kernel(&ram.mem, f.path()).unwrap();
        let theirs = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap();
        let want = Elf::load(
            &theirs,
            None,
            &mut std::io::Cursor::new(&elf),
            Some(GuestAddress(HIMEM_START)),
        )
        .unwrap();
        assert_eq!((got.entry, got.end), (want.kernel_load.0, want.kernel_end));
        assert_eq!(got.end, 0x50_2000);
        let read = |m: &GuestMemoryMmap| {
            let mut v = vec![0u8; 0x50_0000];
            m.read_slice(&mut v, GuestAddress(0x10_0000)).unwrap();
            v
        };
        let ours = read(&ram.mem);
        assert!(
            ours == read(&theirs),
            "guest memory differs from linux-loader's"
        );
        let at = |a: u64| ours[(a - 0x10_0000) as usize];
        assert_eq!((at(0x20_0800), at(0x30_0010)), (elf[0x1800], elf[0x5004]));
        assert_eq!((at(0x50_0fff), at(0x50_1000)), (0, elf[0x7000]));
    }

    #[test]
    fn segment_beyond_guest_ram_names_the_fix() {
        let mut elf = small_elf();
        // D's p_paddr far above 64 MiB.
        elf[64 + 3 * 56 + 24..64 + 3 * 56 + 32].copy_from_slice(&(1u64 << 33).to_le_bytes());
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&elf).unwrap();
        let ram = super::super::layout::create_memory(64, false).unwrap();
        let err = load_kernel(&ram.mem, f.path()).unwrap_err().to_string();
        assert!(err.contains("raise --memory-mib"), "{err}");
    }
}
