//! `smoke`: N CPU-bound workers for the duration. The first thing to run on a new kernel or
//! scheduler: does every runnable task get CPU time, and how long does any task wait?

use super::work::Body;
use super::workers::{self, WorkerSpec};
use super::{Env, Outcome, Params, Scenario, ScenarioError, ScenarioInfo};
use std::time::Duration;

pub struct Smoke;

impl Scenario for Smoke {
    fn info(&self) -> ScenarioInfo {
        let mut metrics = super::common_metrics();
        super::mark_headlines(&mut metrics, &["min_work_units", "max_gap_ms"]);
        ScenarioInfo {
            name: "smoke".into(),
            purpose: "N CPU-bound workers for the duration; every worker must make progress and \
                      none may go long without running"
                .into(),
            params: vec![super::int_param(
                "workers",
                "number of CPU-bound worker processes",
                1,
                1024,
                None,
                "one per online CPU",
            )],
            metrics,
            checks: super::progress_checks(),
            needs_cgroup: false,
        }
    }

    fn run(&self, p: &Params, duration: Duration, env: &Env) -> Result<Outcome, ScenarioError> {
        let n = p.int_or("workers", env.cpus.len() as i64) as usize;
        let specs = vec![WorkerSpec::new("spin", Body::Spin); n];
        let results =
            workers::run(&specs, duration, &[]).map_err(|reason| ScenarioError::Setup {
                scenario: "smoke".into(),
                reason,
            })?;
        Ok(super::metrics::to_worker_metrics(
            &results, duration, "wake",
        ))
    }
}
