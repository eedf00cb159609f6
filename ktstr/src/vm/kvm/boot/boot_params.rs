//! Boot step: the initrd, the command line and `struct boot_params` (zero page) with the
//! e820 map — everything the kernel reads from its loader before it touches hardware.

use super::layout::{self, CMDLINE, CMDLINE_MAX, ZERO_PAGE};
use super::loader::LoadedKernel;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use std::path::Path;
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Why the initrd, the command line or the zero page could not be written.
#[derive(Debug, Error)]
pub enum BootParamsError {
    #[error("cannot read initramfs: {0}")]
    ReadInitrd(#[source] std::io::Error),
    #[error(
        "{memory_mib} MiB of guest memory is too small for a {initrd_kib} KiB initramfs plus the kernel; raise --memory-mib"
    )]
    NoRoomForInitrd { memory_mib: u32, initrd_kib: u64 },
    #[error("cannot copy the initramfs into guest memory: {0}")]
    CopyInitrd(#[source] vm_memory::GuestMemoryError),
    #[error("kernel command line is {len} bytes; this kernel accepts at most {limit}")]
    CmdlineTooLong { len: usize, limit: usize },
    #[error("cannot write the command line: {0}")]
    WriteCmdline(#[source] vm_memory::GuestMemoryError),
    #[error("cannot write boot_params: {0}")]
    WriteZeroPage(#[source] vm_memory::GuestMemoryError),
}

/// "HdrS": the setup header magic.
const HDRS: u32 = 0x5372_6448;
const BOOT_FLAG: u16 = 0xaa55;
/// type_of_loader 0xff = "undefined" loader; the kernel only uses it for diagnostics.
const UNDEFINED_LOADER: u8 = 0xff;
/// Default initrd_addr_max when there is no setup header to take it from (ELF boot).
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x7fff_ffff;

#[derive(Debug, Clone, Copy)]
pub struct Initrd {
    pub addr: u64,
    pub size: u64,
}

/// Copies the initramfs to the highest page-aligned address below the end of low RAM (and below
/// the kernel's `initrd_addr_max`) so it cannot overlap the kernel's decompression area.
pub fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &Path,
    memory_mib: u32,
    kernel: &LoadedKernel,
) -> Result<Initrd, BootParamsError> {
    let data = std::fs::read(path).map_err(BootParamsError::ReadInitrd)?;
    let max = kernel
        .setup_header
        .map(|h| u64::from(h.initrd_addr_max))
        .filter(|&m| m != 0)
        .unwrap_or(DEFAULT_INITRD_ADDR_MAX);
    let top = layout::low_ram_end(memory_mib).min(max + 1);
    let size = data.len() as u64;
    let addr = top.checked_sub(size).map(|a| a & !0xfff).unwrap_or(0);
    // A bzImage decompresses to its preferred address and needs `init_size` bytes there; demand
    // that room instead of letting the guest crash mysteriously.
    let kernel_room = match kernel.setup_header {
        Some(h) => kernel.end.max(h.pref_address + u64::from(h.init_size)),
        None => kernel.end,
    };
    if addr < kernel_room.max(layout::HIMEM_START) {
        return Err(BootParamsError::NoRoomForInitrd {
            memory_mib,
            initrd_kib: size >> 10,
        });
    }
    mem.write_slice(&data, GuestAddress(addr))
        .map_err(BootParamsError::CopyInitrd)?;
    Ok(Initrd { addr, size })
}

/// Writes the command line and the zero page.
pub fn write_boot_params(
    mem: &GuestMemoryMmap,
    kernel: &LoadedKernel,
    initrd: Initrd,
    cmdline: &str,
    memory_mib: u32,
    acpi_rsdp: u64,
) -> Result<(), BootParamsError> {
    let limit = kernel
        .setup_header
        .map(|h| h.cmdline_size as usize)
        .filter(|&s| s != 0)
        .unwrap_or(CMDLINE_MAX - 1)
        .min(CMDLINE_MAX - 1);
    if cmdline.len() > limit || cmdline.contains('\0') {
        return Err(BootParamsError::CmdlineTooLong {
            len: cmdline.len(),
            limit,
        });
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE))
        .map_err(BootParamsError::WriteCmdline)?;

    let mut params = boot_params::default();
    if let Some(hdr) = kernel.setup_header {
        params.hdr = hdr;
    }
    params.hdr.type_of_loader = UNDEFINED_LOADER;
    params.hdr.boot_flag = BOOT_FLAG;
    params.hdr.header = HDRS;
    params.hdr.cmd_line_ptr = CMDLINE as u32;
    params.hdr.cmdline_size = bytes.len() as u32;
    params.hdr.ramdisk_image = initrd.addr as u32;
    params.hdr.ramdisk_size = initrd.size as u32;
    if params.hdr.kernel_alignment == 0 {
        params.hdr.kernel_alignment = 0x0100_0000;
    }
    params.acpi_rsdp_addr = acpi_rsdp;
    let map = layout::e820_map(memory_mib);
    for (i, &(addr, size, kind)) in map.iter().enumerate() {
        params.e820_table[i] = boot_e820_entry {
            addr,
            size,
            r#type: kind,
        };
    }
    params.e820_entries = map.len() as u8;
    mem.write_obj(params, GuestAddress(ZERO_PAGE))
        .map_err(BootParamsError::WriteZeroPage)
}
