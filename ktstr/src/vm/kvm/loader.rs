//! Boot step 2: load the kernel image (bzImage or ELF vmlinux) with linux-loader.

use super::layout::HIMEM_START;
use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::{KernelLoader, bzimage::BzImage, elf::Elf};
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
        let r = Elf::load(mem, None, &mut f, Some(GuestAddress(HIMEM_START)))
            .map_err(|e| format!("the ELF loader rejected it: {e}"))?;
        return Ok(LoadedKernel {
            entry: r.kernel_load.0,
            end: r.kernel_end,
            setup_header: None,
            format: "elf",
        });
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
}
