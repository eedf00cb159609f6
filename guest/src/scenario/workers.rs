//! Worker processes and their shared-memory scoreboard.
//!
//! Every worker is a forked process that publishes its progress into its own slot of a
//! `MAP_SHARED | MAP_ANONYMOUS` mapping after each chunk of work: the parent then sees the last
//! published state even for a worker that never runs again (starved, or killed at the end).
//! Workers measure their own gaps (time between chunk ends, CLOCK_MONOTONIC), which is precise
//! and includes time spent descheduled.

use super::work::{self, Body};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Latency samples kept per worker; beyond this only count and max are tracked.
pub const LAT_CAP: usize = 8192;
/// Bits for CPUs seen; enough for 1024 CPUs.
const CPU_WORDS: usize = 16;
/// How long after `stop` a worker may take to notice and exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// Label of equal workers (fairness is computed within a group).
    pub group: String,
    /// cgroup directory to move the worker into before it starts.
    pub cgroup: Option<PathBuf>,
    pub body: Body,
    /// Pin the worker to this CPU (sched_setaffinity) before it starts.
    pub pin: Option<u32>,
}

impl WorkerSpec {
    pub fn new(group: &str, body: Body) -> WorkerSpec {
        WorkerSpec {
            group: group.into(),
            cgroup: None,
            body,
            pin: None,
        }
    }
}

/// What the parent learned about one worker.
#[derive(Debug, Clone, Default)]
pub struct WorkerResult {
    pub group: String,
    pub work_units: u64,
    pub cpu_time_ms: f64,
    pub longest_gap_ms: f64,
    pub migrations: u64,
    pub cpus_seen: Vec<u32>,
    /// Up to [`LAT_CAP`] latency samples (ns), in arrival order.
    pub latencies_ns: Vec<u64>,
    pub lat_count: u64,
    pub lat_max_ns: u64,
    /// Had to be killed after the grace period (never noticed `stop`).
    pub killed: bool,
}

#[repr(C)]
struct Header {
    go: AtomicU32,
    stop: AtomicU32,
    start_ns: AtomicU64,
}

#[repr(C)]
pub(crate) struct Slot {
    work_units: AtomicU64,
    max_gap_ns: AtomicU64,
    last_progress_ns: AtomicU64,
    migrations: AtomicU64,
    cpus_seen: [AtomicU64; CPU_WORDS],
    lat_count: AtomicU64,
    lat_max_ns: AtomicU64,
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

/// The shared mapping: header, then `n` slots, then `n * LAT_CAP` sample words.
struct Shared {
    map: SharedMapping,
    n: usize,
}

impl Shared {
    fn new(n: usize) -> std::io::Result<Shared> {
        let len = size_of::<Header>() + n * size_of::<Slot>() + n * LAT_CAP * 8;
        Ok(Shared {
            map: SharedMapping::new(len)?,
            n,
        })
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a Header; page-aligned, zero-filled (a valid Header of
        // atomics), and lives as long as `self`.
        unsafe { &*(self.map.ptr() as *const Header) }
    }

    fn slot(&self, i: usize) -> &Slot {
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

    fn samples(&self, i: usize) -> &[AtomicU64] {
        assert!(i < self.n);
        let off = size_of::<Header>() + self.n * size_of::<Slot>() + i * LAT_CAP * 8;
        // SAFETY: LAT_CAP words of worker i within the mapping, 8-byte aligned, zero-filled.
        unsafe { std::slice::from_raw_parts(self.map.ptr().add(off) as *const AtomicU64, LAT_CAP) }
    }
}

pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the valid timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<u32> {
    // SAFETY: cpu_set_t is plain data; zero is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity fills the set we own, of the size we pass.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return vec![0];
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads the set within its bounds.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .map(|c| c as u32)
        .collect()
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

/// Forks one process per spec, moves each into its cgroup, starts them together, lets them run
/// for `duration`, stops them and collects their results. `close_after_fork` are descriptors the
/// workers inherited (pipes) that the parent closes once every worker exists.
pub fn run(
    specs: &[WorkerSpec],
    duration: Duration,
    close_after_fork: &[RawFd],
) -> Result<Vec<WorkerResult>, String> {
    let shared = Shared::new(specs.len()).map_err(|e| format!("mmap scoreboard: {e}"))?;
    let mut pids = Vec::with_capacity(specs.len());
    let mut failure = None;
    for (i, spec) in specs.iter().enumerate() {
        // SAFETY: fork has no preconditions; the child only runs `child_main`, which never
        // returns (it ends in _exit), so no destructor of the parent's state runs twice.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            failure = Some(format!("fork: {}", std::io::Error::last_os_error()));
            break;
        }
        if pid == 0 {
            child_main(&shared, i, spec);
        }
        pids.push(pid);
        if let Some(cg) = &spec.cgroup {
            if let Err(e) = std::fs::write(cg.join("cgroup.procs"), pid.to_string()) {
                failure = Some(format!("moving worker into {}: {e}", cg.display()));
                break;
            }
        }
    }
    for &fd in close_after_fork {
        // SAFETY: closing descriptors the caller handed over for exactly this purpose.
        unsafe { libc::close(fd) };
    }
    let header = shared.header();
    let start = mono_ns();
    header.start_ns.store(start, Ordering::SeqCst);
    if failure.is_some() {
        header.stop.store(1, Ordering::SeqCst);
    }
    header.go.store(1, Ordering::SeqCst);
    if failure.is_none() {
        std::thread::sleep(duration);
    }
    let stop = mono_ns();
    header.stop.store(1, Ordering::SeqCst);
    let waited = reap_all(&pids, Instant::now() + EXIT_GRACE);
    if let Some(f) = failure {
        return Err(f);
    }
    Ok(specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let slot = shared.slot(i);
            let last = slot.last_progress_ns.load(Ordering::Relaxed);
            let tail_gap = stop.saturating_sub(if last == 0 { start } else { last });
            let gap = slot.max_gap_ns.load(Ordering::Relaxed).max(tail_gap);
            let lat_count = slot.lat_count.load(Ordering::Relaxed);
            let kept = (lat_count as usize).min(LAT_CAP);
            let (cpu_ns, killed) = waited[i];
            WorkerResult {
                group: spec.group.clone(),
                work_units: slot.work_units.load(Ordering::Relaxed),
                cpu_time_ms: cpu_ns as f64 / 1e6,
                longest_gap_ms: gap as f64 / 1e6,
                migrations: slot.migrations.load(Ordering::Relaxed),
                cpus_seen: (0..CPU_WORDS * 64)
                    .filter(|&c| {
                        slot.cpus_seen[c / 64].load(Ordering::Relaxed) & (1 << (c % 64)) != 0
                    })
                    .map(|c| c as u32)
                    .collect(),
                latencies_ns: shared.samples(i)[..kept]
                    .iter()
                    .map(|s| s.load(Ordering::Relaxed))
                    .collect(),
                lat_count,
                lat_max_ns: slot.lat_max_ns.load(Ordering::Relaxed),
                killed,
            }
        })
        .collect())
}

/// Waits for every pid until `deadline`, then kills the rest. Returns (cpu time ns, killed).
fn reap_all(pids: &[libc::pid_t], deadline: Instant) -> Vec<(u64, bool)> {
    let mut out = vec![(0u64, false); pids.len()];
    let mut pending: Vec<usize> = (0..pids.len()).collect();
    while !pending.is_empty() {
        let past = Instant::now() >= deadline;
        pending.retain(|&i| {
            if past {
                // SAFETY: signalling our own child, which we have not reaped yet.
                unsafe { libc::kill(pids[i], libc::SIGKILL) };
                out[i].1 = true;
            }
            match wait4(pids[i], !past) {
                Some(cpu) => {
                    out[i].0 = cpu;
                    false
                }
                None => true,
            }
        });
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    out
}

/// Reaps `pid` (non-blocking when `nohang`); returns its CPU time in ns once it is gone.
fn wait4(pid: libc::pid_t, nohang: bool) -> Option<u64> {
    let mut status = 0;
    // SAFETY: rusage is plain data.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if nohang { libc::WNOHANG } else { 0 };
    // SAFETY: waiting for our own child with valid out-pointers.
    let rc = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
    if rc == 0 {
        return None;
    }
    if rc < 0 {
        // ECHILD: someone else reaped it (cannot happen outside PID 1's reaper); nothing to add.
        return Some(0);
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    Some(tv(ru.ru_utime) + tv(ru.ru_stime))
}

/// The worker process: wait for `go`, run the body, exit. Never returns.
fn child_main(shared: &Shared, i: usize, spec: &WorkerSpec) -> ! {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag on this process: a worker must not outlive
    // a parent that crashed.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if let Some(cpu) = spec.pin {
        // SAFETY: cpu_set_t is plain data; CPU_SET stays within it (cpu checked against its
        // size); sched_setaffinity reads the set we pass.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if (cpu as usize) < libc::CPU_SETSIZE as usize {
                libc::CPU_SET(cpu as usize, &mut set);
                libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
            }
        }
    }
    let header = shared.header();
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        while header.go.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
        if header.stop.load(Ordering::SeqCst) != 0 {
            return;
        }
        let mut t = Tracker {
            header,
            slot: shared.slot(i),
            samples: shared.samples(i),
            last_ns: header.start_ns.load(Ordering::SeqCst),
            last_cpu: -1,
            units: 0,
            max_gap: 0,
            migrations: 0,
            lat_count: 0,
            lat_max: 0,
        };
        work::run_body(&spec.body, &mut t);
    }))
    .is_ok();
    // SAFETY: _exit skips the parent's atexit handlers and destructors, which belong to the
    // parent (a test harness, or the agent).
    unsafe { libc::_exit(if ok { 0 } else { 101 }) }
}
