//! One bisection step: a candidate run as a small matrix (one kernel column, one cell kind,
//! `repeats` repeats) through a session in its own directory, and the evidence read back from
//! its stored results. Asking for more repeats later resumes the same directory, so the cells
//! already run are kept and only the new repeats boot.

use super::candidates::Candidate;
use crate::kernel;
use crate::matrix_runner::{KtstrRunner, KtstrValidator};
use ktstr_matrix::engine::{RunOptions, Subscriber};
use ktstr_matrix::plan;
use ktstr_matrix::result::Outcome;
use ktstr_matrix::session::{Session, SessionError};
use ktstr_matrix::spec::{MatrixSpec, ScenarioSel};
use ktstr_matrix::store;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The cell every candidate runs; only the kernel changes between steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellTemplate {
    pub configs: Vec<String>,
    pub sched: String,
    pub scenario: String,
    /// Values are JSON text, as in matrix specs.
    pub params: BTreeMap<String, String>,
    pub topology: String,
    pub duration_ms: u64,
    pub memory_mib: u32,
    /// Set when the candidates are scheduler commits: the kernel every step boots (the
    /// candidate is then the cell's scheduler, not its kernel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
}

impl CellTemplate {
    /// The matrix of one candidate: its kernel with the template's scheduler, or (a scheduler
    /// bisection) the fixed kernel with the candidate as the scheduler.
    pub fn cell_spec(&self, candidate: &str, repeats: u32) -> MatrixSpec {
        match &self.kernel {
            None => self.spec(candidate, repeats),
            Some(kernel) => {
                let mut spec = self.spec(kernel, repeats);
                spec.scheds = vec![candidate.to_string()];
                spec
            }
        }
    }

    pub fn spec(&self, kernel: &str, repeats: u32) -> MatrixSpec {
        MatrixSpec {
            kernels: vec![kernel.to_string()],
            configs: vec![self.configs.clone()],
            scheds: vec![self.sched.clone()],
            scenarios: vec![ScenarioSel {
                name: self.scenario.clone(),
                params: self.params.clone(),
            }],
            topologies: vec![self.topology.clone()],
            repeats,
            duration_ms: self.duration_ms,
            jobs: None,
            overcommit: false,
            baseline: None,
            memory_mib: self.memory_mib,
        }
    }
}

/// What a candidate's runs showed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Cells run so far (all repeats, whatever their outcome).
    pub runs: u32,
    /// The bisected metric of every cell that ran its scenario to the end.
    pub samples: Vec<f64>,
    /// Cells that did not pass (failed, crashed, timed out, errored).
    pub failures: u32,
    /// Why the candidate cannot be tested (a build failure, no samples), if so.
    pub untestable: Option<String>,
    /// The outcome reasons of the cells that did not pass, one each (evidence for the report).
    pub reasons: Vec<String>,
    /// sha256 of the kernel image, when it was built.
    pub image_sha256: Option<String>,
    /// Seconds the make of this kernel's cache entry took (an incremental step build is short).
    pub build_s: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("the step's matrix names things that do not exist: {0}")]
    Invalid(String),
}

/// Everything a step needs besides the candidate.
pub struct StepContext<'a> {
    pub runner: &'a KtstrRunner,
    pub template: &'a CellTemplate,
    /// `None`: the bisection is on outcomes, not a metric.
    pub metric: Option<&'a str>,
    pub jobs: usize,
    pub cpu_budget: Option<u32>,
    pub subscribers: &'a [&'a dyn Subscriber],
    pub cancelled: &'a (dyn Fn() -> bool + Sync),
}

/// Runs `cand` until it has `repeats` cells in `dir` and returns its evidence. `None` when Ctrl-C
/// stopped it.
pub fn run(
    ctx: &StepContext,
    cand: &Candidate,
    repeats: u32,
    dir: &Path,
) -> Result<Option<Evidence>, StepError> {
    let spec = ctx.template.cell_spec(&cand.spec, repeats);
    let vcpus = plan::validate(&spec, &KtstrValidator)
        .map_err(|errs| StepError::Invalid(errs.join("; ")))?;
    let plan = plan::expand(&spec, &vcpus);
    let session = Session::open(dir, true)?;
    let opts = RunOptions {
        jobs: ctx.jobs,
        cpu_budget: ctx.cpu_budget,
        memory_budget_mib: crate::host_memory::guest_budget_mib(),
        done_ids: Default::default(),
        ktstr_version: env!("CARGO_PKG_VERSION").into(),
    };
    let ran = session.run(ctx.runner, &plan, opts, ctx.subscribers, ctx.cancelled)?;
    if ran.cancelled {
        return Ok(None);
    }
    let loaded = store::read(&session.results_path()).map_err(SessionError::Stored)?;
    let mut ev = evidence(&loaded.cells, ctx.metric);
    if ev.untestable.is_none() {
        if ctx.template.kernel.is_some() {
            super::sched_axis::add_sched_facts(&mut ev, &cand.spec);
        } else {
            add_kernel_facts(&mut ev, &loaded.cells);
        }
    }
    Ok(Some(ev))
}

/// The step's evidence from its stored cells.
pub fn evidence(cells: &[store::CellRecord], metric: Option<&str>) -> Evidence {
    let mut ev = Evidence {
        runs: cells.len() as u32,
        ..Default::default()
    };
    let mut built = false;
    for c in cells {
        let r = &c.result;
        if r.report.is_some() {
            built = true;
        }
        if r.outcome != Outcome::Pass {
            ev.failures += 1;
            ev.reasons.push(
                r.reason
                    .clone()
                    .unwrap_or_else(|| format!("{:?}", r.outcome)),
            );
        }
        // A failed check still ran the scenario to the end: its figures count.
        if let (Some(m), Outcome::Pass | Outcome::Fail) = (metric, r.outcome)
            && let Some(v) = r
                .report
                .as_ref()
                .and_then(|rep| rep.scenario.as_ref())
                .and_then(|sc| sc.metrics.get(m))
        {
            ev.samples.push(*v);
        }
    }
    // No cell reached the guest: the kernel did not build (or was not prepared). That is not
    // what is bisected: skip the candidate, as `git bisect run` does with exit 125.
    if !built && !cells.is_empty() && cells.iter().all(|c| c.result.outcome == Outcome::Error) {
        ev.untestable = Some(format!(
            "not testable: {}",
            ev.reasons
                .first()
                .map(String::as_str)
                .unwrap_or("no cell ran")
        ));
    } else if let Some(m) = metric
        && ev.samples.is_empty()
    {
        ev.untestable = Some(format!(
            "no cell produced {m}: {}",
            ev.reasons
                .first()
                .map(String::as_str)
                .unwrap_or("no cell ran")
        ));
    }
    ev
}

/// The built image's hash (a culprit whose image equals its parent's is suspicious) and the
/// build time, from the metadata of the cache entry the cells name (their kernel input is the
/// entry's key): nothing is resolved or hashed again.
fn add_kernel_facts(ev: &mut Evidence, cells: &[store::CellRecord]) {
    let Some(meta) = cells
        .iter()
        .map(|c| c.inputs.kernel.as_str())
        .find(|k| !k.is_empty())
        .and_then(kernel::cache::Entry::open)
        .and_then(|e| e.metadata().ok())
    else {
        return;
    };
    ev.image_sha256 = meta
        .files
        .get(kernel::cache::IMAGE)
        .map(|f| f.sha256.clone());
    ev.build_s = meta.timings.get("build_s").copied();
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktstr_guest::protocol::{GuestReport, GuestStatus, KernelInfo, ScenarioReport};
    use ktstr_matrix::plan::{CellInputs, CellKey};
    use ktstr_matrix::result::{CellResult, HostTimings};

    fn cell(outcome: Outcome, metric: Option<f64>, reason: Option<&str>) -> store::CellRecord {
        let report = metric.map(|v| GuestReport {
            status: GuestStatus::Passed,
            kernel: KernelInfo::default(),
            exit_code: None,
            scheduler: None,
            scenario: Some(ScenarioReport {
                name: "wake".into(),
                duration_ms: 1000,
                workers: vec![],
                metrics: [("wake_round_trips".to_string(), v)].into(),
                checks: vec![],
                subtests: vec![],
            }),
            uptime_ms: 1,
        });
        store::CellRecord {
            format_version: store::STORE_FORMAT_VERSION,
            id: format!("{metric:?}{reason:?}"),
            key: CellKey {
                kernel: "git:/r#1".into(),
                configs: vec![],
                sched: "eevdf".into(),
                scenario: ScenarioSel {
                    name: "wake".into(),
                    params: Default::default(),
                },
                topology: "1n1l2c1t".into(),
                duration_ms: 1000,
                repeat: 0,
            },
            inputs: CellInputs::default(),
            result: CellResult {
                format_version: ktstr_matrix::result::RESULT_FORMAT_VERSION,
                outcome,
                reason: reason.map(String::from),
                report,
                console_tail: String::new(),
                timings: HostTimings::default(),
                backend: "qemu".into(),
            },
            finished_at: 0,
        }
    }

    #[test]
    fn samples_come_from_cells_that_ran_the_scenario() {
        let cells = [
            cell(Outcome::Pass, Some(10.0), None),
            cell(Outcome::Fail, Some(12.0), Some("check failed")),
            cell(Outcome::Crashed, None, Some("kernel crashed: BUG")),
        ];
        let ev = evidence(&cells, Some("wake_round_trips"));
        assert_eq!(ev.samples, vec![10.0, 12.0]);
        assert_eq!((ev.runs, ev.failures), (3, 2));
        assert_eq!(ev.untestable, None);
        // On outcomes, the same cells are two failures of three.
        let ev = evidence(&cells, None);
        assert!(ev.samples.is_empty() && ev.untestable.is_none());
        assert_eq!(ev.failures, 2);
    }

    #[test]
    fn a_kernel_that_did_not_build_is_untestable_not_bad() {
        let reason = "kernel git:/r#1/sched_ext: kernel build failed (exit Some(2))";
        let cells = [
            cell(Outcome::Error, None, Some(reason)),
            cell(Outcome::Error, None, Some(reason)),
        ];
        for metric in [Some("wake_round_trips"), None] {
            let ev = evidence(&cells, metric);
            assert!(
                ev.untestable
                    .as_deref()
                    .unwrap()
                    .contains("kernel build failed")
            );
        }
        // Every boot crashed: on a metric there is nothing to compare (untestable) ...
        let crashed = [cell(Outcome::Crashed, None, Some("kernel crashed: BUG"))];
        assert!(
            evidence(&crashed, Some("wake_round_trips"))
                .untestable
                .is_some()
        );
        // ... but on outcomes a crash is exactly what is bisected.
        let ev = evidence(&crashed, None);
        assert_eq!((ev.untestable, ev.failures), (None, 1));
    }
}
