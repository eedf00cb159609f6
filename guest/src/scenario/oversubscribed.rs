//! `oversubscribed`: more CPU-bound workers than CPUs (default 2 per CPU). Exposes schedulers
//! that starve or unfairly favour some runnable tasks once the run queues are never empty.

use super::work::Body;
use super::workers::{self, WorkerSpec};
use super::{Env, Outcome, Params, Scenario, ScenarioError, ScenarioInfo};
use std::time::Duration;

pub struct Oversubscribed;

impl Scenario for Oversubscribed {
    fn info(&self) -> ScenarioInfo {
        let mut metrics = super::common_metrics();
        super::mark_headlines(
            &mut metrics,
            &["min_work_units", "max_gap_ms", "fairness_spread"],
        );
        ScenarioInfo {
            name: "oversubscribed".into(),
            purpose: "per_cpu CPU-bound workers per online CPU (default 2): no starvation and a \
                      bounded gap while every run queue is overloaded"
                .into(),
            params: vec![super::int_param(
                "per_cpu",
                "CPU-bound workers per online CPU",
                1,
                64,
                Some(2),
                "2",
            )],
            metrics,
            checks: super::progress_checks(),
            needs_cgroup: false,
        }
    }

    fn run(&self, p: &Params, duration: Duration, env: &Env) -> Result<Outcome, ScenarioError> {
        let n = p.int_or("per_cpu", 2) as usize * env.cpus.len();
        let specs = vec![WorkerSpec::new("spin", Body::Spin); n];
        let results =
            workers::run(&specs, duration, &[]).map_err(|reason| ScenarioError::Setup {
                scenario: "oversubscribed".into(),
                reason,
            })?;
        Ok(super::metrics::to_worker_metrics(
            &results, duration, "wake",
        ))
    }
}
