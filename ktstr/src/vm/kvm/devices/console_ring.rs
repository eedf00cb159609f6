//! Part of the serial devices ([`super::serial`]): COM1's transmit register as a KVM coalesced
//! PIO zone, and the MMIO console's register page ([`super::mmio_console`]) as a coalesced MMIO
//! zone.
//!
//! Without it every console byte costs a VM exit to this process (two with the LSR poll), and
//! under nested virtualisation each exit is expensive. With it, KVM appends the guest's THR
//! writes to a ring page shared with userspace and the guest goes on at once; the bytes are
//! handed to the UART model before the next access to any UART register (so no register
//! change or read overtakes earlier bytes), periodically, and when the VM ends. Reads, and
//! writes to other registers, still exit. A full ring makes KVM exit as before.
//!
//! kvm-ioctls exposes the ring only through `&mut VcpuFd`, which the vCPU threads own while
//! they run; the drains here must also happen from other threads (the next UART access may
//! come from another vCPU, the end-of-run drain from the main thread), so this module maps
//! the VM's ring page itself.

use kvm_bindings::{KVM_COALESCED_MMIO_PAGE_OFFSET, kvm_coalesced_mmio, kvm_coalesced_mmio_ring};
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// One byte the guest wrote without an exit: to a port (`pio`) or to guest-physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingWrite {
    pub pio: bool,
    pub addr: u64,
    pub value: u8,
}

/// The VM's coalesced MMIO/PIO ring page, mapped from a vCPU fd (every vCPU fd maps the same
/// per-VM page). Consumers must be serialised; [`super::serial::Uarts`] keeps it in a mutex.
#[derive(Debug)]
pub struct ConsoleRing {
    page: NonNull<u8>,
    page_size: usize,
}

// SAFETY: the mapping is plain shared memory; the kernel writes entries and `last`, we write
// `first`, both through atomics. Exclusive consumption is ensured by `&mut self` on `drain`.
unsafe impl Send for ConsoleRing {}

impl ConsoleRing {
    /// Maps the ring page of `vcpu_fd`'s VM.
    pub fn map(vcpu_fd: &impl AsRawFd) -> std::io::Result<Self> {
        // SAFETY: sysconf has no memory-safety preconditions.
        let page_size = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 => n as usize,
            _ => return Err(std::io::Error::last_os_error()),
        };
        let offset = libc::off_t::from(KVM_COALESCED_MMIO_PAGE_OFFSET) * page_size as libc::off_t;
        // SAFETY: a fresh shared mapping of one page of a KVM vCPU fd at the offset KVM defines
        // for the coalesced ring; it aliases no Rust object, and failure is checked below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page_size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                vcpu_fd.as_raw_fd(),
                offset,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let page = NonNull::new(addr.cast()).ok_or_else(std::io::Error::last_os_error)?;
        Ok(ConsoleRing { page, page_size })
    }

    /// Entries the page holds (KVM_COALESCED_MMIO_MAX in the kernel's uapi header).
    fn capacity(&self) -> u32 {
        ((self.page_size - size_of::<kvm_coalesced_mmio_ring>()) / size_of::<kvm_coalesced_mmio>())
            as u32
    }

    fn index(&self, field: usize) -> &AtomicU32 {
        // SAFETY: `first` (offset 0) and `last` (offset 4) are aligned u32s inside the mapped
        // page, which lives as long as `self`; the kernel accesses them concurrently, hence
        // atomics.
        unsafe { &*self.page.as_ptr().add(field).cast::<AtomicU32>() }
    }

    /// Takes every queued write off the ring, oldest first, and hands it to `apply`.
    pub fn drain(&mut self, mut apply: impl FnMut(RingWrite)) {
        let (first, last) = (self.index(0), self.index(4));
        let cap = self.capacity();
        // Acquire pairs with the kernel's write barrier before it advances `last`.
        let end = last.load(Ordering::Acquire);
        let mut at = first.load(Ordering::Relaxed);
        // A corrupt index (the guest cannot write this page, but stay defensive) ends the drain.
        while at != end && at < cap && end < cap {
            let offset = size_of::<kvm_coalesced_mmio_ring>()
                + at as usize * size_of::<kvm_coalesced_mmio>();
            // SAFETY: `at < capacity`, so the entry lies inside the mapped page; the kernel
            // finished writing it before publishing `last` (acquire above); read_volatile
            // because the memory is shared with the kernel.
            let entry: kvm_coalesced_mmio = unsafe {
                std::ptr::read_volatile(self.page.as_ptr().add(offset).cast::<kvm_coalesced_mmio>())
            };
            // SAFETY: both union members are u32s; any bit pattern is valid.
            let pio = unsafe { entry.__bindgen_anon_1.pio };
            // The zones are byte registers: a wider write is not a UART access.
            if entry.len == 1 {
                apply(RingWrite {
                    pio: pio == 1,
                    addr: entry.phys_addr,
                    value: entry.data[0],
                });
            }
            at = (at + 1) % cap;
            // Release: the entry is read before the kernel may reuse its slot.
            first.store(at, Ordering::Release);
        }
    }
}

impl Drop for ConsoleRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the page `map` mapped; no reference into it outlives `self`.
        unsafe { libc::munmap(self.page.as_ptr().cast(), self.page_size) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring page in ordinary memory, laid out as KVM lays it out.
    fn fake_ring(entries: &[(u64, u8, u32)], first: u32) -> (Vec<u64>, ConsoleRing) {
        let page_size = 4096;
        let mut page = vec![0u64; page_size / 8];
        let base = page.as_mut_ptr().cast::<u8>();
        let cap = (page_size - 8) / size_of::<kvm_coalesced_mmio>();
        let mut at = first as usize;
        for &(addr, value, pio) in entries {
            let mut e = kvm_coalesced_mmio {
                phys_addr: addr,
                len: 1,
                ..Default::default()
            };
            e.__bindgen_anon_1.pio = pio;
            e.data[0] = value;
            // SAFETY: test-only; `at < cap`, so the entry is inside `page`.
            unsafe {
                base.add(8 + at * size_of::<kvm_coalesced_mmio>())
                    .cast::<kvm_coalesced_mmio>()
                    .write_unaligned(e)
            };
            at = (at + 1) % cap;
        }
        // SAFETY: test-only; offsets 0 and 4 are inside `page`.
        unsafe {
            base.cast::<u32>().write(first);
            base.add(4).cast::<u32>().write(at as u32);
        }
        let ring = ConsoleRing {
            page: NonNull::new(base).unwrap(),
            page_size,
        };
        (page, ring)
    }

    #[test]
    fn drains_in_order_across_the_wrap() {
        let entries = [(0x3f8, b'a', 1), (0xfe00_0000, b'm', 0), (0x3f8, b'b', 1)];
        // Start two slots before the end so the entries wrap around.
        let cap = ((4096 - 8) / size_of::<kvm_coalesced_mmio>()) as u32;
        let (page, mut ring) = fake_ring(&entries, cap - 2);
        let mut got = Vec::new();
        ring.drain(|w| got.push(w));
        let port = |value| RingWrite {
            pio: true,
            addr: 0x3f8,
            value,
        };
        let mmio = RingWrite {
            pio: false,
            addr: 0xfe00_0000,
            value: b'm',
        };
        assert_eq!(got, vec![port(b'a'), mmio, port(b'b')]);
        assert_eq!(
            ring.index(0).load(Ordering::Relaxed),
            1,
            "first caught up with last"
        );
        ring.drain(|w| got.push(w));
        assert_eq!(got.len(), 3, "a drained ring yields nothing more");
        std::mem::forget(ring); // the page is `page`'s, not an mmap
        drop(page);
    }

    #[test]
    fn corrupt_indices_end_the_drain() {
        let (page, mut ring) = fake_ring(&[(0x3f8, b'x', 1)], 0);
        ring.index(4).store(100_000, Ordering::Relaxed);
        let mut n = 0;
        ring.drain(|_| n += 1);
        assert_eq!(n, 0);
        std::mem::forget(ring);
        drop(page);
    }
}
