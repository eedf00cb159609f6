//! Boot step 2: load the kernel image: a bzImage with linux-loader, an ELF vmlinux mapped from
//! its file ([`load_kernel`]).

use super::layout::HIMEM_START;
use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::{KernelLoader, bzimage::BzImage};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use vm_memory::{GuestAddress, GuestMemoryMmap};

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

pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<LoadedKernel, String> {
    let mut f = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic)
        .map_err(|e| format!("cannot read the image header: {e}"))?;
    if &magic == b"\x7fELF" {
        return map_elf(mem, &f);
    }
    let r = BzImage::load(mem, None, &mut f, Some(GuestAddress(HIMEM_START))).map_err(|e| {
        format!("neither an ELF vmlinux nor a bzImage the loader accepts ({e}); pass arch/x86/boot/bzImage or vmlinux")
    })?;
    Ok(LoadedKernel {
        entry: r.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET,
        end: r.kernel_end,
        setup_header: r.setup_header,
        format: "bzImage",
    })
}

/// Base page size: the granule of the file mappings.
const PAGE: u64 = 4096;

/// Loads an ELF vmlinux the way linux-loader's `Elf::load` does (every PT_LOAD at its
/// `p_paddr`, entry `e_entry`), but copying as little as possible: each whole page of a
/// read-only segment's file data (text and rodata, half of a Debian kernel) is mapped
/// MAP_PRIVATE|MAP_FIXED from the file over the guest RAM mapping, so the guest faults it
/// straight from the host page cache and its few writes (alternatives) stay private (COW).
/// Writable segments are copied, skipping all-zero pages (fresh memory already reads as zero):
/// they hold the kernel's early page tables, and with those in file pages KVM maps read-only
/// until the first write, L2 triple-faulted or L1 died in 2 of 3 nested runs of the kvm_nested
/// test (QEMU TCG as L0). Copying all of a 57 MB kernel into fresh memory cost 1.5-3.7 s nested
/// under TCG, where every page fault, zeroing and copy is emulated (docs/benchmarks.md, "KVM
/// backend").
///
/// Guest RAM stays one host mapping per region (one KVM slot, one e820 RAM range): only the
/// pages behind it change. Partial pages at a segment's ends, and segments whose file offset
/// and address disagree modulo the page size, are copied instead; bytes past `p_filesz` are
/// the untouched anonymous memory, i.e. zero. `mem` must be fresh (zeroed) memory, as for
/// linux-loader, which does not clear `.bss` either.
fn map_elf(mem: &GuestMemoryMmap, f: &File) -> Result<LoadedKernel, String> {
    use goblin::container::{Container, Ctx, Endian};
    use goblin::elf::program_header::{PF_W, PT_LOAD};
    use goblin::elf::{Elf, ProgramHeader, header};
    use std::os::unix::fs::FileExt;
    let bad = |why: String| format!("not an x86_64 ELF vmlinux the loader accepts: {why}");
    let mut head = [0u8; header::header64::SIZEOF_EHDR];
    f.read_exact_at(&mut head, 0)
        .map_err(|e| bad(format!("short ELF header ({e})")))?;
    let ehdr = Elf::parse_header(&head).map_err(|e| bad(e.to_string()))?;
    if ehdr.e_ident[header::EI_CLASS] != header::ELFCLASS64
        || ehdr.e_ident[header::EI_DATA] != header::ELFDATA2LSB
        || ehdr.e_machine != header::EM_X86_64
    {
        return Err(bad("not a little-endian 64-bit x86_64 ELF".into()));
    }
    if ehdr.e_entry < HIMEM_START {
        return Err(bad(format!("entry {:#x} below 1 MiB", ehdr.e_entry)));
    }
    let ctx = Ctx::new(Container::Big, Endian::Little);
    let mut raw = vec![0u8; usize::from(ehdr.e_phnum) * ProgramHeader::size(ctx)];
    f.read_exact_at(&mut raw, ehdr.e_phoff)
        .map_err(|e| bad(format!("cannot read the program headers ({e})")))?;
    let phdrs = ProgramHeader::parse(&raw, 0, usize::from(ehdr.e_phnum), ctx)
        .map_err(|e| bad(e.to_string()))?;
    let file_len = f.metadata().map_err(|e| bad(e.to_string()))?.len();
    let mut end = 0;
    for ph in phdrs
        .iter()
        .filter(|p| p.p_type == PT_LOAD && p.p_filesz > 0)
    {
        let (addr, off, filesz) = (ph.p_paddr, ph.p_offset, ph.p_filesz);
        let seg_end = addr.checked_add(ph.p_memsz.max(filesz));
        let file_end = off.checked_add(filesz);
        if file_end.is_none_or(|e| e > file_len) {
            return Err(bad(format!(
                "segment at {addr:#x} lies past the end of the file"
            )));
        }
        let Some(seg_end) = seg_end.filter(|&e| fits(mem, addr, e)) else {
            return Err(bad(format!(
                "segment {addr:#x}+{:#x} is not inside guest RAM",
                ph.p_memsz
            )));
        };
        // Whole pages of file data that can be mapped; the rest is copied.
        let (mut lo, mut hi) = (addr.next_multiple_of(PAGE), (addr + filesz) / PAGE * PAGE);
        let writable = ph.p_flags & PF_W != 0;
        if writable || addr % PAGE != off % PAGE || hi <= lo || !private_anonymous(mem, addr) {
            (lo, hi) = (addr + filesz, addr + filesz);
        }
        if hi > lo {
            map_file_pages(mem, f, GuestAddress(lo), hi - lo, off + (lo - addr))?;
        }
        copy_from_file(mem, f, addr, off, lo - addr)?;
        copy_from_file(mem, f, hi, off + (hi - addr), addr + filesz - hi)?;
        end = end.max(seg_end);
    }
    if end == 0 {
        return Err(bad("no loadable segment".into()));
    }
    Ok(LoadedKernel {
        entry: ehdr.e_entry,
        end,
        setup_header: None,
        format: "elf",
    })
}

/// Whether `start..end` lies inside one guest memory region (one contiguous host mapping).
fn fits(mem: &GuestMemoryMmap, start: u64, end: u64) -> bool {
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
    mem.find_region(GuestAddress(start))
        .is_some_and(|r| end <= r.start_addr().0 + r.len())
}

/// Whether the region holding `addr` is private anonymous memory, which a private file
/// mapping may replace page by page without changing what anyone else sees.
fn private_anonymous(mem: &GuestMemoryMmap, addr: u64) -> bool {
    use vm_memory::GuestMemoryBackend;
    mem.find_region(GuestAddress(addr)).is_some_and(|r| {
        r.file_offset().is_none()
            && r.flags() & libc::MAP_PRIVATE != 0
            && r.flags() & libc::MAP_ANONYMOUS != 0
    })
}

fn copy_from_file(
    mem: &GuestMemoryMmap,
    f: &File,
    addr: u64,
    off: u64,
    len: u64,
) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    use vm_memory::Bytes;
    if len == 0 {
        return Ok(());
    }
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, off)
        .map_err(|e| format!("cannot read the ELF segment at file offset {off:#x}: {e}"))?;
    // Page by page (guest pages), leaving all-zero ones alone: writing zeros would only fault
    // in and zero host pages for nothing (.bss is in the file of an extracted vmlinux).
    let mut at = 0;
    while at < buf.len() {
        let page_end = (addr + at as u64 + PAGE) / PAGE * PAGE;
        let n = ((page_end - addr) as usize).min(buf.len()) - at;
        let chunk = &buf[at..at + n];
        if chunk.iter().any(|&b| b != 0) {
            let to = addr + at as u64;
            mem.write_slice(chunk, GuestAddress(to))
                .map_err(|e| format!("cannot write the ELF segment to {to:#x}: {e}"))?;
        }
        at += n;
    }
    Ok(())
}

/// Maps `len` bytes of `f` from `off` over guest RAM at `addr` (all page aligned, checked by
/// the caller to lie in one private anonymous region).
fn map_file_pages(
    mem: &GuestMemoryMmap,
    f: &File,
    addr: GuestAddress,
    len: u64,
    off: u64,
) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    use vm_memory::GuestMemoryBackend;
    let host = mem
        .get_host_address(addr)
        .map_err(|e| format!("guest address {:#x}: {e}", addr.0))?;
    // SAFETY: `host..host+len` lies inside one live private anonymous mapping that backs guest
    // RAM (`fits` + `private_anonymous`), page aligned (guest regions start page aligned on
    // page-aligned host addresses). MAP_FIXED swaps the pages behind it for private copy-on-write
    // pages of the file, which stay read/write and valid until the whole range is unmapped with
    // the guest memory, so every pointer into it stays valid; no Rust reference into guest
    // memory exists (vm-memory accesses it through raw volatile pointers). The file range is
    // inside the file (checked against its length), so no access raises SIGBUS unless the file
    // is truncated while the VM runs; the cache replaces files by rename, never in place.
    let r = unsafe {
        libc::mmap(
            host.cast(),
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_FIXED,
            f.as_raw_fd(),
            off as libc::off_t,
        )
    };
    if r == libc::MAP_FAILED {
        return Err(format!(
            "cannot map the ELF at file offset {off:#x} to {:#x}: {}",
            addr.0,
            std::io::Error::last_os_error()
        ));
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
        assert!(err.contains("bzImage"), "{err}");
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"\x7fELF garbage").unwrap();
        assert!(load_kernel(&mem, f.path()).unwrap_err().contains("ELF"));
    }

    /// A hand-made ELF: segment A is page-congruent (partial head page, whole pages, partial
    /// tail page, then .bss), segment B is not (copied), C has no file data.
    fn small_elf() -> Vec<u8> {
        let mut elf = vec![0u8; 0x8000];
        elf[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
        let put16 =
            |e: &mut Vec<u8>, at: usize, v: u16| e[at..at + 2].copy_from_slice(&v.to_le_bytes());
        let put32 =
            |e: &mut Vec<u8>, at: usize, v: u32| e[at..at + 4].copy_from_slice(&v.to_le_bytes());
        let put64 =
            |e: &mut Vec<u8>, at: usize, v: u64| e[at..at + 8].copy_from_slice(&v.to_le_bytes());
        put16(&mut elf, 16, 2); // ET_EXEC
        put16(&mut elf, 18, 62); // EM_X86_64
        put32(&mut elf, 20, 1);
        put64(&mut elf, 24, 0x20_0800); // e_entry
        put64(&mut elf, 32, 64); // e_phoff
        put16(&mut elf, 52, 64);
        put16(&mut elf, 54, 56);
        put16(&mut elf, 56, 4);
        put16(&mut elf, 58, 64);
        // (offset, paddr, filesz, memsz, flags): D is writable, so copied, with a zero page.
        let segs = [
            (0x1800, 0x20_0800, 0x2a00, 0x4000, 5),
            (0x5004, 0x30_0010, 0x100, 0x100, 5),
            (0, 0x40_0000, 0, 0x1000, 6),
            (0x6000, 0x50_0000, 0x2000, 0x2000, 6),
        ];
        for (i, (off, paddr, filesz, memsz, flags)) in segs.into_iter().enumerate() {
            let at = 64 + i * 56;
            put32(&mut elf, at, 1); // PT_LOAD
            put32(&mut elf, at + 4, flags);
            put64(&mut elf, at + 8, off);
            put64(&mut elf, at + 16, paddr);
            put64(&mut elf, at + 24, paddr);
            put64(&mut elf, at + 32, filesz);
            put64(&mut elf, at + 40, memsz);
        }
        for (i, b) in elf.iter_mut().enumerate().skip(0x1800) {
            if !(0x6000..0x7000).contains(&i) {
                *b = (i * 7 % 251) as u8 + 1; // never zero: a missing copy shows
            }
        }
        elf
    }

    /// The mapped load gives the guest the same bytes as linux-loader's copying ELF loader
    /// (file data, zero .bss, zero tail of the last file page although the file has data
    /// there), the same entry and end; the kernel's pages really are the file's, and guest
    /// writes do not reach the file.
    #[test]
    fn mapped_elf_reads_like_a_copied_one() {
        use linux_loader::loader::elf::Elf;
        use vm_memory::{Bytes, GuestMemoryBackend};
        let elf = small_elf();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&elf).unwrap();
        let ram = super::super::layout::create_memory(64, false).unwrap();
        let got = load_kernel(&ram.mem, f.path()).unwrap();
        let copied = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap();
        let want = Elf::load(
            &copied,
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
        let (ours, theirs) = (read(&ram.mem), read(&copied));
        assert!(ours == theirs, "guest memory differs from linux-loader's");
        let at = |a: u64| ours[(a - 0x10_0000) as usize];
        assert_eq!(at(0x20_0800), elf[0x1800]);
        assert_eq!(at(0x20_31ff), elf[0x1800 + 0x29ff]);
        assert_eq!(
            (at(0x20_3200), at(0x20_47ff)),
            (0, 0),
            "tail and .bss read as zero"
        );
        assert_eq!(at(0x30_0010), elf[0x5004]);
        assert_eq!((at(0x50_0fff), at(0x50_1000)), (0, elf[0x7000]));

        let host = ram.mem.get_host_address(GuestAddress(0x20_1000)).unwrap() as usize;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let name = f.path().to_str().unwrap();
        let mapped: Vec<usize> = maps
            .lines()
            .filter(|l| l.ends_with(name))
            .filter_map(|l| usize::from_str_radix(l.split('-').next()?, 16).ok())
            .collect();
        assert_eq!(mapped, [host], "only A's whole pages map {name}:\n{maps}");
        ram.mem.write_obj(0u64, GuestAddress(0x20_1000)).unwrap();
        assert_eq!(ram.mem.read_obj::<u64>(GuestAddress(0x20_1000)).unwrap(), 0);
        assert_eq!(
            std::fs::read(f.path()).unwrap(),
            elf,
            "a guest write reached the file"
        );
    }

    /// A segment pointing past the file's end is refused, not mapped (which would SIGBUS).
    #[test]
    fn truncated_elf_is_rejected() {
        let mut elf = small_elf();
        elf.truncate(0x3000);
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&elf).unwrap();
        let ram = super::super::layout::create_memory(64, false).unwrap();
        let err = load_kernel(&ram.mem, f.path()).unwrap_err();
        assert!(err.contains("ELF") && err.contains("past the end"), "{err}");
    }
}
