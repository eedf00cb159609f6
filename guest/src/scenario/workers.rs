//! Worker processes: forked, moved into their cgroups, started together, stopped and reaped.
//!
//! Every worker is a forked process that publishes its progress into its own slot of the
//! scoreboard (`scoreboard.rs`, a `MAP_SHARED | MAP_ANONYMOUS` mapping) after each chunk of work: the parent then sees the last
//! published state even for a worker that never runs again (starved, or killed at the end).
//! Workers measure their own gaps (time between chunk ends, CLOCK_MONOTONIC), which is precise
//! and includes time spent descheduled.

use super::scoreboard::{LAT_CAP, Scoreboard, mono_ns};
use super::work::{self, Body};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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

/// Forks one process per spec, moves each into its cgroup, starts them together, lets them run
/// for `duration`, stops them and collects their results. `close_after_fork` are descriptors the
/// workers inherited (pipes) that the parent closes once every worker exists.
pub fn run(
    specs: &[WorkerSpec],
    duration: Duration,
    close_after_fork: &[RawFd],
) -> Result<Vec<WorkerResult>, String> {
    let shared = Scoreboard::new(specs.len()).map_err(|e| format!("mmap scoreboard: {e}"))?;
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
                cpus_seen: slot.cpus_seen(),
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
fn child_main(shared: &Scoreboard, i: usize, spec: &WorkerSpec) -> ! {
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
        let mut t = shared.tracker(i);
        work::run_body(&spec.body, &mut t);
    }))
    .is_ok();
    // SAFETY: _exit skips the parent's atexit handlers and destructors, which belong to the
    // parent (a test harness, or the agent).
    unsafe { libc::_exit(if ok { 0 } else { 101 }) }
}
