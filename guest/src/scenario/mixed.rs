//! `mixed`: interactive sleepers next to batch spinners. The classic latency-vs-throughput
//! tension: sleepers must wake promptly although every CPU has a runnable spinner.

use super::metrics::to_worker_metrics;
use super::work::Body;
use super::workers::{self, WorkerSpec};
use super::{Env, Outcome, Params, Scenario, ScenarioError, ScenarioInfo};
use std::time::Duration;

pub struct Mixed;

impl Scenario for Mixed {
    fn info(&self) -> ScenarioInfo {
        let mut metrics = super::common_metrics();
        metrics.extend(super::wake_metrics());
        super::mark_headlines(
            &mut metrics,
            &["wake_p50_us", "wake_p99_us", "total_work_units"],
        );
        let mut checks = super::progress_checks();
        super::wake_checks(&mut checks);
        ScenarioInfo {
            name: "mixed".into(),
            purpose: "interactive sleepers (sleep, short burst) alongside CPU-bound batch \
                      workers: the sleepers' wake-up lateness p50/p99/max, batch progress"
                .into(),
            params: vec![
                super::int_param(
                    "interactive",
                    "sleeper processes",
                    1,
                    512,
                    None,
                    "one per online CPU",
                ),
                super::int_param(
                    "batch",
                    "CPU-bound processes",
                    0,
                    512,
                    None,
                    "one per online CPU",
                ),
                super::int_param(
                    "sleep_us",
                    "sleep between bursts",
                    50,
                    1_000_000,
                    Some(1000),
                    "1000",
                ),
                super::int_param(
                    "burst_chunks",
                    "work units per burst",
                    0,
                    1000,
                    Some(1),
                    "1",
                ),
            ],
            metrics,
            checks,
            needs_cgroup: false,
        }
    }

    fn run(&self, p: &Params, duration: Duration, env: &Env) -> Result<Outcome, ScenarioError> {
        let ncpu = env.cpus.len() as i64;
        let sleeper = Body::Sleeper {
            sleep_us: p.int_or("sleep_us", 1000) as u64,
            burst_chunks: p.int_or("burst_chunks", 1) as u32,
        };
        let mut specs =
            vec![WorkerSpec::new("interactive", sleeper); p.int_or("interactive", ncpu) as usize];
        specs.extend(vec![
            WorkerSpec::new("batch", Body::Spin);
            p.int_or("batch", ncpu) as usize
        ]);
        let results =
            workers::run(&specs, duration, &[]).map_err(|e| super::setup_err("mixed", e))?;
        Ok(to_worker_metrics(&results, duration, "wake"))
    }
}
