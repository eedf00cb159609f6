//! `wake`: ping-pong pairs over pipes. Each message carries the sender's CLOCK_MONOTONIC, so the
//! receiver measures the full wake-up path (write -> wake -> scheduled -> read). Reports wake-up
//! latency p50/p99/max: what an interactive or I/O-bound task feels.

use super::futex::FutexPairs;
use super::metrics::to_worker_metrics;
use super::work::Body;
use super::workers::{self, WorkerSpec};
use super::{Env, Outcome, Params, Scenario, ScenarioError, ScenarioInfo};
use std::time::Duration;

pub struct Wake;

impl Scenario for Wake {
    fn info(&self) -> ScenarioInfo {
        let mut metrics = super::common_metrics();
        metrics.extend(super::wake_metrics());
        super::mark_headlines(
            &mut metrics,
            &["total_work_units", "wake_p50_us", "wake_p99_us"],
        );
        let mut checks = super::progress_checks();
        super::wake_checks(&mut checks);
        ScenarioInfo {
            name: "wake".into(),
            purpose: "ping-pong pairs over pipes or a shared futex: wake-up latency \
                      p50/p99/max and round trips"
                .into(),
            params: vec![
                super::int_param(
                    "pairs",
                    "ping-pong pairs (two processes each)",
                    1,
                    256,
                    None,
                    "one per two online CPUs, at least 1",
                ),
                super::choice_param(
                    "mechanism",
                    "how a worker wakes its peer: `pipe` (write/poll/read) or `futex` \
                     (FUTEX_WAKE/FUTEX_WAIT on a shared word: no file, no copy)",
                    &[PIPE, FUTEX],
                    PIPE,
                ),
            ],
            metrics,
            checks,
            needs_cgroup: false,
        }
    }

    fn run(&self, p: &Params, duration: Duration, env: &Env) -> Result<Outcome, ScenarioError> {
        let pairs = p.int_or("pairs", (env.cpus.len() / 2).max(1) as i64) as usize;
        if p.str_or("mechanism", PIPE) == FUTEX {
            return run_futex(pairs, duration);
        }
        let mut fds = Vec::new();
        let mut specs = Vec::new();
        for _ in 0..pairs {
            let (a_rx, b_tx) = pipe().map_err(|e| super::setup_err("wake", e))?;
            let (b_rx, a_tx) = pipe().map_err(|e| super::setup_err("wake", e))?;
            fds.extend([a_rx, b_tx, b_rx, a_tx]);
            specs.push(WorkerSpec::new(
                "pair",
                Body::PingPong {
                    rx: a_rx,
                    tx: a_tx,
                    initiator: true,
                },
            ));
            specs.push(WorkerSpec::new(
                "pair",
                Body::PingPong {
                    rx: b_rx,
                    tx: b_tx,
                    initiator: false,
                },
            ));
        }
        let results =
            workers::run(&specs, duration, &fds).map_err(|e| super::setup_err("wake", e))?;
        Ok(to_worker_metrics(&results, duration, "wake"))
    }
}

const PIPE: &str = "pipe";
const FUTEX: &str = "futex";

fn run_futex(pairs: usize, duration: Duration) -> Result<Outcome, ScenarioError> {
    let shared =
        FutexPairs::new(pairs).map_err(|e| super::setup_err("wake", format!("mmap: {e}")))?;
    let specs: Vec<WorkerSpec> = (0..pairs)
        .flat_map(|i| {
            [true, false].map(|initiator| {
                WorkerSpec::new(
                    "pair",
                    Body::FutexPingPong {
                        pair: shared.pair(i),
                        initiator,
                    },
                )
            })
        })
        .collect();
    // `shared` outlives the workers: `workers::run` reaps them all before returning.
    let results = workers::run(&specs, duration, &[]).map_err(|e| super::setup_err("wake", e))?;
    Ok(to_worker_metrics(&results, duration, "wake"))
}

/// (read end, write end)
fn pipe() -> Result<(i32, i32), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    Ok((fds[0], fds[1]))
}
