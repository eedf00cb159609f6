//! Futex ping-pong for `wake` (`mechanism=futex`): the two workers of a pair hand a turn word
//! back and forth in a `MAP_SHARED` page and sleep in FUTEX_WAIT until it is theirs. Unlike a
//! pipe there is no file and no copy: the latency is the scheduler's wake-up path (futex_wake ->
//! enqueue -> picked -> running) plus the futex hash lookup.
//!
//! The futexes are shared, not FUTEX_PRIVATE_FLAG: workers are separate processes (fork), and a
//! private futex is keyed by the address space, so a wake from the peer would never find the
//! waiter.

use super::scoreboard::{SharedMapping, Tracker, mono_ns};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Whose turn it is; 0 (a fresh mapping) is nobody's: the initiator's first message sets
/// [`TURN_RESPONDER`].
const TURN_INITIATOR: u32 = 1;
const TURN_RESPONDER: u32 = 2;
/// How long one FUTEX_WAIT sleeps at most, so that `stop` is noticed when the peer is gone.
const WAIT_SLICE_NS: i64 = 50_000_000;

/// One pair's shared state: whose turn it is, and when the message that gave it was sent
/// (CLOCK_MONOTONIC ns), written before the turn is handed over.
#[repr(C)]
pub struct FutexPair {
    turn: AtomicU32,
    sent_ns: AtomicU64,
}

/// `n` pairs in an anonymous shared mapping, inherited by the forked workers.
pub struct FutexPairs {
    map: SharedMapping,
    n: usize,
}

impl FutexPairs {
    pub fn new(n: usize) -> std::io::Result<FutexPairs> {
        Ok(FutexPairs {
            map: SharedMapping::new(n * size_of::<FutexPair>())?,
            n,
        })
    }

    /// The address of pair `i`, for [`super::work::Body::FutexPingPong`]; valid while `self`
    /// lives (the workers inherit the mapping and exit before the parent drops it).
    pub fn pair(&self, i: usize) -> *const FutexPair {
        assert!(i < self.n);
        // SAFETY: pair i lies within the mapping (len = n pairs); page-aligned base and an
        // 8-byte-multiple #[repr(C)] struct keep it aligned; zero is nobody's turn / 0 ns.
        unsafe { self.map.ptr().cast::<FutexPair>().add(i) }
    }
}

/// Sleeps while `word` still holds `expected`, at most [`WAIT_SLICE_NS`]. Spurious returns
/// (EAGAIN: it changed already; EINTR; ETIMEDOUT) are fine: the caller re-checks the word.
fn futex_wait(word: &AtomicU32, expected: u32) {
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: WAIT_SLICE_NS,
    };
    // SAFETY: FUTEX_WAIT reads the aligned u32 behind `word` (a live atomic in a shared mapping)
    // and takes a relative timeout we own; uaddr2/val3 are unused by this op.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address as the key of the waiters to wake (at most 1);
    // the timeout, uaddr2 and val3 arguments are unused by this op.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            1u32,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// One side of the pair. Each received turn is one latency sample (now - the sender's stamp)
/// and one unit of progress, as in the pipe variant.
pub fn ping_pong(pair: *const FutexPair, initiator: bool, t: &mut Tracker) {
    // SAFETY: `pair` comes from `FutexPairs::pair`, whose mapping this forked worker inherited
    // and keeps until it exits; the fields are atomics, so sharing it is sound.
    let pair = unsafe { &*pair };
    let (mine, theirs) = if initiator {
        (TURN_INITIATOR, TURN_RESPONDER)
    } else {
        (TURN_RESPONDER, TURN_INITIATOR)
    };
    let send = || {
        pair.sent_ns.store(mono_ns(), Ordering::Relaxed);
        // Release: the stamp is visible to whoever sees the turn.
        pair.turn.store(theirs, Ordering::Release);
        futex_wake(&pair.turn);
    };
    if initiator {
        send();
    }
    while !t.stopped() {
        let turn = pair.turn.load(Ordering::Acquire);
        if turn != mine {
            futex_wait(&pair.turn, turn);
            continue;
        }
        t.latency(mono_ns().saturating_sub(pair.sent_ns.load(Ordering::Relaxed)));
        if !t.progress() {
            break;
        }
        send();
    }
    // A peer still waiting for its turn must not sleep out a whole slice after the end.
    futex_wake(&pair.turn);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_start_with_nobodys_turn_and_are_distinct() {
        let pairs = FutexPairs::new(3).unwrap();
        let addrs: Vec<usize> = (0..3).map(|i| pairs.pair(i) as usize).collect();
        assert!(
            addrs
                .windows(2)
                .all(|w| w[1] - w[0] == size_of::<FutexPair>())
        );
        // SAFETY: pair 2 is inside the live mapping.
        let p = unsafe { &*pairs.pair(2) };
        assert_eq!(p.turn.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_unwoken_wait_sleeps_about_one_slice() {
        // The word holds the expected value and nobody wakes it: the kernel sleeps the slice.
        let w = AtomicU32::new(TURN_INITIATOR);
        let start = std::time::Instant::now();
        futex_wait(&w, TURN_INITIATOR);
        let slept = start.elapsed();
        assert!(
            slept >= std::time::Duration::from_nanos(WAIT_SLICE_NS as u64 * 9 / 10)
                && slept < std::time::Duration::from_secs(5),
            "{slept:?}"
        );
    }
}
