//! What a worker does between progress reports.

use super::scoreboard::{Tracker, mono_ns};
use std::hint::black_box;
use std::os::fd::RawFd;

/// Iterations of the spin loop per work unit: short, so that a worker reports progress many times
/// per scheduler tick even under TCG. Fixed (not calibrated) so that work units compare across
/// runs on the same host.
pub const CHUNK_ITERS: u32 = 10_000;

#[derive(Debug, Clone)]
pub enum Body {
    /// CPU-bound: one chunk per unit.
    Spin,
    /// Ping-pong over pipes: each message carries the sender's CLOCK_MONOTONIC; the receiver's
    /// latency sample is arrival minus that timestamp. One unit per message received.
    PingPong {
        rx: RawFd,
        tx: RawFd,
        initiator: bool,
    },
    /// Ping-pong over a shared futex word (see `futex.rs`); same samples and units as `PingPong`.
    FutexPingPong {
        pair: *const super::futex::FutexPair,
        initiator: bool,
    },
    /// Interactive: sleep, then a short burst. Latency sample = how late the wake-up was.
    Sleeper { sleep_us: u64, burst_chunks: u32 },
    /// fork() a child that exits at once, reap it; one unit per fork.
    Forker,
}

/// One chunk of CPU work the compiler cannot elide.
pub fn spin_chunk() {
    let mut x: u64 = black_box(0x2545_f491_4f6c_dd1d);
    for i in 0..CHUNK_ITERS {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        if i % 64 == 0 {
            x = black_box(x);
        }
    }
    black_box(x);
}

pub fn run_body(body: &Body, t: &mut Tracker) {
    match *body {
        Body::Spin => loop {
            spin_chunk();
            if !t.progress() {
                break;
            }
        },
        Body::PingPong { rx, tx, initiator } => ping_pong(rx, tx, initiator, t),
        Body::FutexPingPong { pair, initiator } => super::futex::ping_pong(pair, initiator, t),
        Body::Sleeper {
            sleep_us,
            burst_chunks,
        } => loop {
            let before = mono_ns();
            std::thread::sleep(std::time::Duration::from_micros(sleep_us));
            let late = mono_ns().saturating_sub(before + sleep_us * 1000);
            t.latency(late);
            for _ in 0..burst_chunks {
                spin_chunk();
            }
            if !t.progress() {
                break;
            }
        },
        Body::Forker => loop {
            // SAFETY: the child calls only _exit, which is async-signal-safe.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: leaving the fresh child at once without running any of our code.
                unsafe { libc::_exit(0) };
            }
            if pid > 0 {
                let mut st = 0;
                // SAFETY: reaping the child we just forked.
                unsafe { libc::waitpid(pid, &mut st, 0) };
            }
            if !t.progress() {
                break;
            }
        },
    }
}

fn ping_pong(rx: RawFd, tx: RawFd, initiator: bool, t: &mut Tracker) {
    let send = || {
        let now = mono_ns().to_ne_bytes();
        // SAFETY: writing 8 bytes from a live buffer to our pipe; 8 < PIPE_BUF so it is atomic,
        // and with one message in flight the pipe never fills.
        unsafe { libc::write(tx, now.as_ptr().cast(), now.len()) };
    };
    if initiator {
        send();
    }
    while !t.stopped() {
        let mut pfd = libc::pollfd {
            fd: rx,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polling one valid pollfd; the timeout bounds how late `stop` is noticed even
        // when the peer is gone.
        let n = unsafe { libc::poll(&mut pfd, 1, 50) };
        if n <= 0 {
            continue;
        }
        let mut buf = [0u8; 8];
        // SAFETY: reading at most 8 bytes into our buffer.
        let r = unsafe { libc::read(rx, buf.as_mut_ptr().cast(), buf.len()) };
        if r != 8 {
            // Peer closed (0) or interrupted: nothing to time; the loop condition decides.
            if r == 0 {
                break;
            }
            continue;
        }
        let sent = u64::from_ne_bytes(buf);
        t.latency(mono_ns().saturating_sub(sent));
        if !t.progress() {
            break;
        }
        send();
    }
}
