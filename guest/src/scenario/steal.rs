//! `steal`: one spinning worker pinned to every vCPU, and the guest's steal time from /proc/stat
//! before and after. Steal is time the host did not run a vCPU that wanted to run: it tells
//! scheduler noise from host noise (needs CONFIG_PARAVIRT_TIME_ACCOUNTING and a hypervisor that
//! reports steal; under TCG it stays 0).

use super::metrics::to_worker_metrics;
use super::work::Body;
use super::workers::{self, WorkerSpec};
use super::{
    CheckOp, Env, MetricDirection, Outcome, Params, Scenario, ScenarioError, ScenarioInfo,
};
use std::collections::BTreeMap;
use std::time::Duration;

pub struct Steal;

impl Scenario for Steal {
    fn info(&self) -> ScenarioInfo {
        let mut metrics = super::common_metrics();
        metrics.push(super::metric(
            "steal_ticks",
            "USER_HZ ticks",
            MetricDirection::LowerIsBetter,
            true,
            "steal time over the run (/proc/stat; per worker: its CPU's)",
        ));
        metrics.push(super::metric(
            "steal_ms",
            "ms",
            MetricDirection::LowerIsBetter,
            false,
            "steal_ticks in milliseconds",
        ));
        super::mark_headlines(&mut metrics, &["steal_ms", "total_work_units"]);
        let mut checks = super::progress_checks();
        checks.push(super::optional_check(
            "steal_ticks",
            CheckOp::AtMost,
            false,
            "total steal ticks; off unless a threshold is given",
        ));
        ScenarioInfo {
            name: "steal".into(),
            purpose: "a spinning worker pinned to every vCPU; guest steal ticks before/after"
                .into(),
            params: vec![],
            metrics,
            checks,
            needs_cgroup: false,
        }
    }

    fn run(&self, _p: &Params, duration: Duration, env: &Env) -> Result<Outcome, ScenarioError> {
        let specs: Vec<WorkerSpec> = env
            .cpus
            .iter()
            .map(|&c| WorkerSpec {
                pin: Some(c),
                ..WorkerSpec::new("spin", Body::Spin)
            })
            .collect();
        let before = read_steal().map_err(|e| super::setup_err("steal", e))?;
        let results =
            workers::run(&specs, duration, &[]).map_err(|e| super::setup_err("steal", e))?;
        let after = read_steal().map_err(|e| super::setup_err("steal", e))?;
        let delta = |k: &str| {
            after
                .get(k)
                .unwrap_or(&0)
                .saturating_sub(*before.get(k).unwrap_or(&0))
        };
        let mut out = to_worker_metrics(&results, duration, "wake");
        for (w, &cpu) in out.workers.iter_mut().zip(&env.cpus) {
            w.extra
                .insert("steal_ticks".into(), delta(&format!("cpu{cpu}")) as f64);
        }
        let total = delta("cpu");
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        out.metrics.insert("steal_ticks".into(), total as f64);
        out.metrics
            .insert("steal_ms".into(), total as f64 * 1000.0 / hz);
        Ok(out)
    }
}

/// Steal ticks by /proc/stat line name (`cpu` = all, `cpuN`).
pub fn read_steal() -> Result<BTreeMap<String, u64>, String> {
    let stat =
        std::fs::read_to_string("/proc/stat").map_err(|e| format!("reading /proc/stat: {e}"))?;
    Ok(parse_steal(&stat))
}

fn parse_steal(stat: &str) -> BTreeMap<String, u64> {
    stat.lines()
        .filter(|l| l.starts_with("cpu"))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?.to_string();
            // user nice system idle iowait irq softirq steal
            let steal = f.nth(7)?.parse().ok()?;
            Some((name, steal))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_proc_stat_steal_column() {
        let s = "cpu  10 0 5 100 1 0 2 42 0 0\ncpu0 5 0 2 50 0 0 1 40 0 0\ncpu1 5 0 3 50 1 0 1 2 0 0\nintr 1\n";
        let m = super::parse_steal(s);
        assert_eq!(m["cpu"], 42);
        assert_eq!(m["cpu0"], 40);
        assert_eq!(m["cpu1"], 2);
        assert_eq!(m.len(), 3);
    }
}
