//! Part of the serial devices ([`super::serial`]): the kernel's console on an 8250 UART in
//! MMIO whose registers the guest reads from memory, so printing a byte costs no exit to this
//! process.
//!
//! Why: before each console byte the kernel polls the UART's line status register (LSR) until
//! the transmitter is empty. On a port UART that read always exits to the VMM, one exit per
//! byte, and those polls are nearly all of a boot's userspace exits (docs/benchmarks.md, "the
//! kernel console on an MMIO UART"). Here the register page is a read-only memory slot whose
//! LSR always says "transmitter empty", so those polls are plain memory reads; the writes
//! fault into KVM, which queues them in the coalesced ring ([`super::console_ring`]) without
//! leaving the kernel.
//!
//! `console=uart8250,mmio,…` starts the kernel's 8250 early console there (Linux hands
//! `console=` to earlycon too), which only polls LSR and writes THR; `keep_bootcon` keeps it for
//! the whole run. No registered UART matches that address, so no port console (ttyS0) is
//! enabled next to it and every line arrives once. The
//! guest's /dev/console then has no tty: the agent's stdio falls back to ttyS0 (COM1, still a
//! port UART, for user-space output and terminal input), which lands in the same console log.

use kvm_bindings::{KVM_MEM_READONLY, kvm_userspace_memory_region};
use kvm_ioctls::VmFd;
use std::ptr::NonNull;

/// Guest-physical address of the register page: in the MMIO gap below 4 GiB, clear of the
/// IOAPIC (0xfec0_0000) and the LAPIC (0xfee0_0000).
pub const BASE: u64 = 0xfe00_0000;
const PAGE: usize = 4096;
const THR: u64 = 0;
const LCR: u64 = 3;
const LSR: usize = 5;
/// LSR: transmit holding register and transmitter empty, the two bits the early console waits on.
const LSR_TX_EMPTY: u8 = 0x60;
/// LCR: divisor latch access; while set, offset 0 is the divisor, not a byte to print.
const LCR_DLAB: u8 = 0x80;

/// `KTSTR_KVM_CONSOLE=port` keeps the kernel console on COM1's port UART (the qemu backend's
/// console), for telling a problem of this console from another one.
pub fn wanted() -> bool {
    std::env::var("KTSTR_KVM_CONSOLE").map_or(true, |v| v != "port")
}

/// The kernel command line items for this console (they replace `console=ttyS0` and
/// `earlyprintk=`).
pub fn cmdline() -> Vec<String> {
    vec![
        format!("console=uart8250,mmio,{BASE:#x},115200"),
        "keep_bootcon".into(),
    ]
}

/// True for the items [`cmdline`] replaces.
pub fn replaced(item: &str) -> bool {
    item.starts_with("console=ttyS0") || item.starts_with("earlyprintk=")
}

/// The host page behind the guest's read-only register page.
#[derive(Debug)]
pub struct RegisterPage {
    page: NonNull<u8>,
}

// SAFETY: the page is plain anonymous memory that only KVM (for the guest's reads) and this
// struct's constructor touch; it is never written after construction.
unsafe impl Send for RegisterPage {}
// SAFETY: as for Send: no method writes through the pointer, so shared access cannot race.
unsafe impl Sync for RegisterPage {}

impl RegisterPage {
    /// A page whose LSR says "transmitter empty" and whose other registers read as 0.
    pub fn new() -> std::io::Result<Self> {
        // SAFETY: a fresh private anonymous mapping; failure is checked below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let page = NonNull::new(addr.cast::<u8>()).ok_or_else(std::io::Error::last_os_error)?;
        // SAFETY: LSR (5) lies inside the PAGE-byte mapping just created, which nothing else
        // references yet.
        unsafe { page.as_ptr().add(LSR).write(LSR_TX_EMPTY) };
        Ok(RegisterPage { page })
    }

    /// Maps the page read-only at [`BASE`] in memory slot `slot` (one no RAM region uses).
    pub fn register(&self, vm: &VmFd, slot: u32) -> Result<(), kvm_ioctls::Error> {
        let region = kvm_userspace_memory_region {
            slot,
            flags: KVM_MEM_READONLY,
            guest_phys_addr: BASE,
            memory_size: PAGE as u64,
            userspace_addr: self.page.as_ptr() as u64,
        };
        // SAFETY: the page is mapped for as long as `self` lives, and the VM holding `self`
        // drops it only after the VM fd is closed; the slot overlaps no other slot (BASE is in
        // the MMIO gap, which no RAM region covers).
        unsafe { vm.set_user_memory_region(region) }
    }
}

impl Drop for RegisterPage {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; KVM no longer uses it (see `register`).
        unsafe { libc::munmap(self.page.as_ptr().cast(), PAGE) };
    }
}

/// What the guest's writes to the register page mean: console bytes are THR writes while the
/// divisor latch is off; every other write only configures a UART that has no line to drive.
#[derive(Debug, Default)]
pub struct WriteDecoder {
    dlab: bool,
}

impl WriteDecoder {
    /// The console byte a write of `value` at guest address `addr` carries, if any.
    pub fn write(&mut self, addr: u64, value: u8) -> Option<u8> {
        match addr.checked_sub(BASE)? {
            LCR => {
                self.dlab = value & LCR_DLAB != 0;
                None
            }
            THR if !self.dlab => Some(value),
            _ => None,
        }
    }
}

/// True if `addr` is a register of this UART.
pub fn contains(addr: u64) -> bool {
    addr.checked_sub(BASE).is_some_and(|o| o < 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The early console's set-up writes the divisor through offset 0 with DLAB set: that byte
    /// is not console output; what follows with DLAB clear is.
    #[test]
    fn only_thr_writes_outside_the_divisor_latch_are_console_bytes() {
        let mut d = WriteDecoder::default();
        let got: Vec<u8> = [
            (LCR, 0x03),
            (1, 0),
            (LCR, 0x83),
            (THR, 0x01),
            (1, 0x00),
            (LCR, 0x03),
            (THR, b'o'),
            (THR, b'k'),
            (8, b'x'),
        ]
        .into_iter()
        .filter_map(|(off, v)| d.write(BASE + off, v))
        .collect();
        assert_eq!(got, b"ok");
        assert_eq!(d.write(0x3f8, b'p'), None, "not this UART");
    }

    #[test]
    fn the_page_says_transmitter_empty() {
        let p = RegisterPage::new().unwrap();
        // SAFETY: test-only; reads inside the page.
        let (lsr, ier) = unsafe { (*p.page.as_ptr().add(LSR), *p.page.as_ptr().add(1)) };
        assert_eq!(lsr & LSR_TX_EMPTY, LSR_TX_EMPTY);
        assert_eq!(ier, 0);
    }

    #[test]
    fn the_command_line_names_one_console_and_replaces_the_port_ones() {
        let c = cmdline();
        assert_eq!(c[0], "console=uart8250,mmio,0xfe000000,115200");
        assert!(replaced("console=ttyS0,115200") && replaced("earlyprintk=serial,ttyS0,115200"));
        assert!(!c.iter().any(|i| replaced(i)));
        assert!(contains(BASE + 5) && !contains(BASE + 8) && !contains(0x3fd));
    }
}
