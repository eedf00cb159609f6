//! Child bookkeeping for PID 1. Orphans of the whole system are re-parented to us, so as PID 1 we
//! reap with `waitpid(-1)` and keep the statuses of the children we care about in a table;
//! `std::process::Child::wait` must not be used (its pid may already be reaped here).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static STATUSES: Mutex<Option<HashMap<libc::pid_t, i32>>> = Mutex::new(None);

fn is_pid1() -> bool {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() == 1 }
}

/// Reaps every exited child without blocking, remembering the statuses.
pub fn reap() {
    let mut table = STATUSES.lock().unwrap_or_else(|e| e.into_inner());
    let table = table.get_or_insert_with(HashMap::new);
    loop {
        let mut st = 0;
        // SAFETY: non-blocking waitpid with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
        table.insert(pid, st);
    }
}

/// The wait status of `pid` if it has exited (reaping it).
pub fn try_wait(pid: libc::pid_t) -> Option<i32> {
    if is_pid1() {
        reap();
        let mut table = STATUSES.lock().unwrap_or_else(|e| e.into_inner());
        return table.get_or_insert_with(HashMap::new).remove(&pid);
    }
    let mut st = 0;
    // SAFETY: non-blocking waitpid for our own child.
    let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
    (r == pid).then_some(st)
}

/// Waits for `pid` until `timeout` (forever when `None`), polling so orphans are reaped too.
pub fn wait(pid: libc::pid_t, timeout: Option<Duration>) -> Option<i32> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if let Some(st) = try_wait(pid) {
            return Some(st);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Exit code for a wait status: the code, or 128+signal for a signal death (as shells do).
pub fn exit_code(status: i32) -> i32 {
    if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}
