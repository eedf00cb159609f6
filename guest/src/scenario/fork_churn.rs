//! `fork-churn`: processes that fork a child which exits at once, and reap it, in a loop. Stresses
//! the scheduler's task creation/exit paths (init_task/enable/exit_task in sched_ext) and
//! wake-up of the parent.

use super::metrics::to_worker_metrics;
use super::work::Body;
use super::workers::{self, WorkerSpec};
use super::{Env, MetricDirection, Outcome, Params, Scenario, ScenarioError, ScenarioInfo};
use std::time::Duration;

pub struct ForkChurn;

impl Scenario for ForkChurn {
    fn info(&self) -> ScenarioInfo {
        let mut metrics = super::common_metrics();
        metrics.push(super::metric(
            "fork_rate_per_s",
            "1/s",
            MetricDirection::HigherIsBetter,
            false,
            "forks (each reaped) per second over all forkers",
        ));
        // The longest gap of a forker is its longest fork+reap.
        super::mark_headlines(&mut metrics, &["fork_rate_per_s", "max_gap_ms"]);
        let mut checks = super::progress_checks();
        checks.push(super::optional_check(
            "fork_rate_per_s",
            super::CheckOp::AtLeast,
            false,
            "minimum fork rate; off unless a threshold is given",
        ));
        ScenarioInfo {
            name: "fork-churn".into(),
            purpose: "processes forking short-lived children in a loop: fork/exit rate and \
                      the longest fork+reap"
                .into(),
            params: vec![super::int_param(
                "forkers",
                "forking processes",
                1,
                256,
                None,
                "one per online CPU",
            )],
            metrics,
            checks,
            needs_cgroup: false,
        }
    }

    fn run(&self, p: &Params, duration: Duration, env: &Env) -> Result<Outcome, ScenarioError> {
        let n = p.int_or("forkers", env.cpus.len() as i64) as usize;
        let specs = vec![WorkerSpec::new("forker", Body::Forker); n];
        let results =
            workers::run(&specs, duration, &[]).map_err(|e| super::setup_err("fork-churn", e))?;
        let mut out = to_worker_metrics(&results, duration, "wake");
        let total: u64 = results.iter().map(|r| r.work_units).sum();
        out.metrics.insert(
            "fork_rate_per_s".into(),
            total as f64 / duration.as_secs_f64().max(1e-9),
        );
        Ok(out)
    }
}
