//! `cpuset`: disjoint cgroup cpusets, CPU-bound workers in each. Checks isolation: every worker
//! must only ever run on the CPUs of its own cpuset (sched_ext schedulers that dispatch to
//! arbitrary CPUs' queues break this).

use super::cgroup::{Subtree, write};
use super::metrics::to_worker_metrics;
use super::work::Body;
use super::workers::{self, WorkerSpec};
use super::{
    CheckInfo, CheckOp, Env, MetricDirection, Outcome, Params, Scenario, ScenarioError,
    ScenarioInfo,
};
use std::time::Duration;

pub struct Cpuset;

const NAME: &str = "cpuset";

impl Scenario for Cpuset {
    fn info(&self) -> ScenarioInfo {
        let mut metrics = super::common_metrics();
        metrics.push(super::metric(
            "isolation_violations",
            "cpus",
            MetricDirection::LowerIsBetter,
            true,
            "CPUs outside its cpuset that a worker was seen on (sched_getcpu after each chunk); \
             the aggregate is the sum over workers",
        ));
        metrics.push(super::metric(
            "cpus_seen",
            "cpus",
            MetricDirection::Counter,
            true,
            "distinct CPUs the worker was seen on",
        ));
        super::mark_headlines(&mut metrics, &["isolation_violations", "total_work_units"]);
        let mut checks = super::progress_checks();
        checks.push(CheckInfo {
            metric: "isolation_violations".into(),
            op: CheckOp::AtMost,
            default_threshold: Some(0.0),
            per_worker: true,
            doc: "isolation held: no worker ran outside its cpuset".into(),
        });
        ScenarioInfo {
            name: NAME.into(),
            purpose: "disjoint cgroup cpusets with CPU-bound workers in each; every worker must \
                      stay on its own CPUs"
                .into(),
            params: vec![
                super::int_param(
                    "groups",
                    "cgroups, each with a disjoint slice of the online CPUs (at most one per CPU)",
                    1,
                    64,
                    None,
                    "2 (1 on a single CPU)",
                ),
                super::int_param(
                    "workers_per_group",
                    "CPU-bound workers per cgroup",
                    1,
                    256,
                    None,
                    "the number of CPUs in the group's set",
                ),
            ],
            metrics,
            checks,
            needs_cgroup: true,
        }
    }

    fn run(&self, p: &Params, duration: Duration, env: &Env) -> Result<Outcome, ScenarioError> {
        let err = |e: String| super::setup_err(NAME, e);
        let root = env
            .cgroup
            .as_ref()
            .ok_or_else(|| err("needs a writable cgroup v2 hierarchy".into()))?;
        if !root.controllers().iter().any(|c| c == "cpuset") {
            return Err(err(format!(
                "the cpuset controller is not available in {} (needs CONFIG_CPUSETS and +cpuset \
                 in the parent's cgroup.subtree_control)",
                root.path.display()
            )));
        }
        let ncpu = env.cpus.len();
        let groups = p.int_or("groups", 2.min(ncpu) as i64) as usize;
        if groups > ncpu {
            return Err(err(format!(
                "groups={groups} exceeds the {ncpu} online CPUs; use groups <= {ncpu}"
            )));
        }
        let sets: Vec<Vec<u32>> = (0..groups)
            .map(|g| {
                let (lo, hi) = (g * ncpu / groups, (g + 1) * ncpu / groups);
                env.cpus[lo..hi].to_vec()
            })
            .collect();
        let names: Vec<String> = (0..groups).map(|g| format!("set{g}")).collect();
        let tree = Subtree::create(root, &["cpuset"], &names).map_err(err)?;
        let mut specs = Vec::new();
        let mut owner = Vec::new();
        for (g, set) in sets.iter().enumerate() {
            let list = set.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            write(&tree.children[g], "cpuset.cpus", &list).map_err(err)?;
            let per = p.int_or("workers_per_group", set.len() as i64) as usize;
            for _ in 0..per {
                specs.push(WorkerSpec {
                    cgroup: Some(tree.children[g].clone()),
                    ..WorkerSpec::new(&names[g], Body::Spin)
                });
                owner.push(g);
            }
        }
        let results = workers::run(&specs, duration, &[]).map_err(err)?;
        drop(tree);
        let mut out = to_worker_metrics(&results, duration, "wake");
        let mut total = 0.0;
        for (i, r) in results.iter().enumerate() {
            let set = &sets[owner[i]];
            let foreign = r.cpus_seen.iter().filter(|c| !set.contains(c)).count() as f64;
            total += foreign;
            out.workers[i]
                .extra
                .insert("isolation_violations".into(), foreign);
            out.workers[i]
                .extra
                .insert("cpus_seen".into(), r.cpus_seen.len() as f64);
        }
        out.metrics.insert("isolation_violations".into(), total);
        Ok(out)
    }
}
