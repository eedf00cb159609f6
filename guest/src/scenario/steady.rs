//! `steady`: CPU-bound workers spread over several cgroups. A group-aware scheduler must still
//! give every worker CPU time, and equal workers in equal cgroups roughly equal shares.

use super::cgroup::Subtree;
use super::metrics::to_worker_metrics;
use super::work::Body;
use super::workers::{self, WorkerSpec};
use super::{Env, MetricDirection, Outcome, Params, Scenario, ScenarioError, ScenarioInfo};
use std::time::Duration;

pub struct Steady;

impl Scenario for Steady {
    fn info(&self) -> ScenarioInfo {
        let mut metrics = super::common_metrics();
        metrics.push(super::metric(
            "cgroup_spread",
            "ratio",
            MetricDirection::LowerIsBetter,
            false,
            "(max-min)/mean of per-worker work units averaged per cgroup",
        ));
        super::mark_headlines(
            &mut metrics,
            &["total_work_units", "max_gap_ms", "cgroup_spread"],
        );
        ScenarioInfo {
            name: "steady".into(),
            purpose: "CPU-bound workers spread round-robin over several cgroups: progress, gaps \
                      and fairness within and across cgroups"
                .into(),
            params: vec![
                super::int_param("cgroups", "number of sibling cgroups", 1, 16, Some(2), "2"),
                super::int_param(
                    "workers",
                    "CPU-bound worker processes in total",
                    1,
                    1024,
                    None,
                    "one per online CPU, at least one per cgroup",
                ),
            ],
            metrics,
            checks: super::progress_checks(),
            needs_cgroup: true,
        }
    }

    fn run(&self, p: &Params, duration: Duration, env: &Env) -> Result<Outcome, ScenarioError> {
        let root = env
            .cgroup
            .as_ref()
            .ok_or_else(|| super::setup_err("steady", "needs a writable cgroup v2 hierarchy"))?;
        let ncg = p.int_or("cgroups", 2) as usize;
        let n = p.int_or("workers", env.cpus.len().max(ncg) as i64) as usize;
        let names: Vec<String> = (0..ncg).map(|i| format!("cg{i}")).collect();
        let tree = Subtree::create(root, &[], &names).map_err(|e| super::setup_err("steady", e))?;
        let specs: Vec<WorkerSpec> = (0..n)
            .map(|i| WorkerSpec {
                cgroup: Some(tree.children[i % ncg].clone()),
                ..WorkerSpec::new(&names[i % ncg], Body::Spin)
            })
            .collect();
        let results =
            workers::run(&specs, duration, &[]).map_err(|e| super::setup_err("steady", e))?;
        drop(tree);
        let mut out = to_worker_metrics(&results, duration, "wake");
        let per_cg: Vec<f64> = names
            .iter()
            .map(|g| {
                let v: Vec<f64> = results
                    .iter()
                    .filter(|r| &r.group == g)
                    .map(|r| r.work_units as f64)
                    .collect();
                v.iter().sum::<f64>() / v.len().max(1) as f64
            })
            .collect();
        let mean = per_cg.iter().sum::<f64>() / per_cg.len() as f64;
        let spread = if mean > 0.0 {
            (per_cg.iter().copied().fold(f64::MIN, f64::max)
                - per_cg.iter().copied().fold(f64::MAX, f64::min))
                / mean
        } else {
            0.0
        };
        out.metrics.insert("cgroup_spread".into(), spread);
        Ok(out)
    }
}
