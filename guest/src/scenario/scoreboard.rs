//! The shared memory between a scenario's parent and its forked workers: an anonymous
//! `MAP_SHARED` mapping ([`SharedMapping`]), the scoreboard laid out in it ([`Scoreboard`]: a
//! header, one slot per worker, latency samples) and the [`Tracker`] through which a worker
//! publishes into its slot. Kept apart from the worker bodies (`work.rs`, `futex.rs`) and from
//! the process handling (`workers.rs`) so that each of those depends on this file and not on
//! each other.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Latency samples kept per worker; beyond this only count and max are tracked.
pub const LAT_CAP: usize = 8192;
/// Bits for CPUs seen; enough for 1024 CPUs.
pub(crate) const CPU_WORDS: usize = 16;

/// CLOCK_MONOTONIC in nanoseconds: the clock every gap and latency is measured with.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the valid timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// An anonymous `MAP_SHARED` mapping, zero-filled: forked workers inherit it, so it is how they
/// and the parent share counters without pipes. Unmapped on drop.
pub(crate) struct SharedMapping {
    ptr: *mut u8,
    len: usize,
}

impl SharedMapping {
    pub(crate) fn new(len: usize) -> std::io::Result<SharedMapping> {
        let len = len.max(1);
        // SAFETY: an anonymous shared mapping with no address hint; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SharedMapping {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The page-aligned start; `len` bytes from it are valid while `self` lives.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped; borrowers hold `&self`, so none outlive it.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The run's control words, written by the parent and read by every worker.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) go: AtomicU32,
    pub(crate) stop: AtomicU32,
    pub(crate) start_ns: AtomicU64,
}

/// One worker's published progress.
#[repr(C)]
pub(crate) struct Slot {
    pub(crate) work_units: AtomicU64,
    pub(crate) max_gap_ns: AtomicU64,
    pub(crate) last_progress_ns: AtomicU64,
    pub(crate) migrations: AtomicU64,
    pub(crate) cpus_seen: [AtomicU64; CPU_WORDS],
    pub(crate) lat_count: AtomicU64,
    pub(crate) lat_max_ns: AtomicU64,
}

impl Slot {
    /// The CPUs this worker was seen on, ascending.
    pub(crate) fn cpus_seen(&self) -> Vec<u32> {
        (0..CPU_WORDS * 64)
            .filter(|&c| self.cpus_seen[c / 64].load(Ordering::Relaxed) & (1 << (c % 64)) != 0)
            .map(|c| c as u32)
            .collect()
    }
}

/// The shared mapping: header, then `n` slots, then `n * LAT_CAP` sample words.
pub(crate) struct Scoreboard {
    map: SharedMapping,
    n: usize,
}

impl Scoreboard {
    pub(crate) fn new(n: usize) -> std::io::Result<Scoreboard> {
        let len = size_of::<Header>() + n * size_of::<Slot>() + n * LAT_CAP * 8;
        Ok(Scoreboard {
            map: SharedMapping::new(len)?,
            n,
        })
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a Header; page-aligned, zero-filled (a valid Header of
        // atomics), and lives as long as `self`.
        unsafe { &*(self.map.ptr() as *const Header) }
    }

    pub(crate) fn slot(&self, i: usize) -> &Slot {
        assert!(i < self.n);
        // SAFETY: slot i lies within the mapping (len computed in `new`); Header and Slot are
        // both 8-byte multiples so the slot is aligned; zero is a valid Slot.
        unsafe {
            &*(self
                .map
                .ptr()
                .add(size_of::<Header>() + i * size_of::<Slot>()) as *const Slot)
        }
    }

    pub(crate) fn samples(&self, i: usize) -> &[AtomicU64] {
        assert!(i < self.n);
        let off = size_of::<Header>() + self.n * size_of::<Slot>() + i * LAT_CAP * 8;
        // SAFETY: LAT_CAP words of worker i within the mapping, 8-byte aligned, zero-filled.
        unsafe { std::slice::from_raw_parts(self.map.ptr().add(off) as *const AtomicU64, LAT_CAP) }
    }

    /// Worker `i`'s tracker, its clock starting at the run's start.
    pub(crate) fn tracker(&self, i: usize) -> Tracker<'_> {
        let header = self.header();
        Tracker {
            header,
            slot: self.slot(i),
            samples: self.samples(i),
            last_ns: header.start_ns.load(Ordering::SeqCst),
            last_cpu: -1,
            units: 0,
            max_gap: 0,
            migrations: 0,
            lat_count: 0,
            lat_max: 0,
        }
    }
}

/// Handed to a worker body: publishes progress and says when to stop.
pub struct Tracker<'a> {
    header: &'a Header,
    slot: &'a Slot,
    samples: &'a [AtomicU64],
    last_ns: u64,
    last_cpu: i32,
    units: u64,
    max_gap: u64,
    migrations: u64,
    lat_count: u64,
    lat_max: u64,
}

impl Tracker<'_> {
    /// Records one unit of progress; returns false once the run is over.
    pub fn progress(&mut self) -> bool {
        let now = mono_ns();
        let gap = now.saturating_sub(self.last_ns);
        if gap > self.max_gap {
            self.max_gap = gap;
            self.slot.max_gap_ns.store(gap, Ordering::Relaxed);
        }
        self.last_ns = now;
        self.units += 1;
        self.slot.last_progress_ns.store(now, Ordering::Relaxed);
        self.slot.work_units.store(self.units, Ordering::Relaxed);
        // SAFETY: sched_getcpu has no arguments and no preconditions.
        let cpu = unsafe { libc::sched_getcpu() };
        if cpu >= 0 && cpu != self.last_cpu {
            if self.last_cpu >= 0 {
                self.migrations += 1;
                self.slot
                    .migrations
                    .store(self.migrations, Ordering::Relaxed);
            }
            self.last_cpu = cpu;
            let (w, b) = (cpu as usize / 64, cpu as usize % 64);
            if w < CPU_WORDS {
                self.slot.cpus_seen[w].fetch_or(1 << b, Ordering::Relaxed);
            }
        }
        !self.stopped()
    }

    pub fn stopped(&self) -> bool {
        self.header.stop.load(Ordering::Relaxed) != 0
    }

    /// Records one latency sample.
    pub fn latency(&mut self, ns: u64) {
        if (self.lat_count as usize) < LAT_CAP {
            self.samples[self.lat_count as usize].store(ns, Ordering::Relaxed);
        }
        self.lat_count += 1;
        self.slot.lat_count.store(self.lat_count, Ordering::Relaxed);
        if ns > self.lat_max {
            self.lat_max = ns;
            self.slot.lat_max_ns.store(ns, Ordering::Relaxed);
        }
    }
}
