//! The matrix's side of `sched-ext-selftests`: each column whose cells run it gets its kernel's
//! selftests runner (built once, cached per kernel), every cell's `tests` names are checked
//! against that runner's list before any cell boots (bad input), and the cells carry the runner.
//! The selftests attach their own schedulers, so only the `eevdf` cells of the scenario run; the
//! others are skipped with that reason.

use super::prepare::{PrepareError, ReadyKernel};
use crate::cell::{Cell, Workload};
use crate::sched::{self, Source, selftests::Selftests};
use ktstr_guest::scenario::selftests::NAME;
use ktstr_matrix::plan::{Column, Plan, PlannedCell};
use std::collections::HashMap;

/// A column's selftests.
pub(crate) enum SelftestsReady {
    Ready(Selftests),
    /// This kernel cannot run them (no sched_ext): its cells are skipped.
    Skipped(String),
    /// The build failed (or the kernel did): its cells are errors with this reason.
    Failed(String),
}

fn runs_selftests(cell: &PlannedCell) -> bool {
    cell.key.scenario.name == NAME
}

/// The selftests of every column that runs the scenario; unknown test names and missing build
/// packages stop the run (exit 2).
pub(super) fn prepare(
    plan: &Plan,
    kernels: &HashMap<Column, Result<ReadyKernel, String>>,
    say: &(dyn Fn(String) + Sync),
) -> Result<HashMap<Column, SelftestsReady>, PrepareError> {
    let mut out = HashMap::new();
    for cell in plan.cells.iter().filter(|c| runs_selftests(c)) {
        let col = cell.key.column();
        if !out.contains_key(&col) {
            let ready = for_column(&col, kernels.get(&col), say)?;
            out.insert(col.clone(), ready);
        }
        if let Some(SelftestsReady::Ready(st)) = out.get(&col) {
            st.guest_params(&super::json_params(&cell.key.scenario.params))
                .map_err(|source| PrepareError::Selftests {
                    column: col.label(),
                    source,
                })?;
        }
    }
    Ok(out)
}

fn for_column(
    col: &Column,
    kernel: Option<&Result<ReadyKernel, String>>,
    say: &(dyn Fn(String) + Sync),
) -> Result<SelftestsReady, PrepareError> {
    let k = match kernel {
        Some(Ok(k)) => &k.kernel,
        Some(Err(e)) => return Ok(SelftestsReady::Failed(format!("kernel: {e}"))),
        None => return Ok(SelftestsReady::Failed("kernel was not prepared".into())),
    };
    if let Some(reason) = sched::sched_missing_reason(k) {
        return Ok(SelftestsReady::Skipped(format!("{NAME}: {reason}")));
    }
    Ok(match sched::selftests::for_kernel(k) {
        Ok(st) => {
            say(format!(
                "{NAME} for {}: ready ({} tests)",
                col.label(),
                st.tests.len()
            ));
            SelftestsReady::Ready(st)
        }
        Err(e) if e.is_bad_input() => {
            return Err(PrepareError::Sched {
                sched: NAME.into(),
                column: col.label(),
                source: e,
            });
        }
        Err(e) => {
            say(format!("{NAME} for {}: FAILED: {e}", col.label()));
            SelftestsReady::Failed(format!("{NAME}: {e}"))
        }
    })
}

/// Plan estimate of a selftests build (docs/schedulers.md, "Measured"); it only sizes the plan.
const BUILD_ESTIMATE: std::time::Duration = std::time::Duration::from_secs(60);

/// The selftests runner `col` needs, if any of its cells runs them, for the plan's list of what
/// will be built.
pub(super) fn survey(
    plan: &Plan,
    col: &Column,
    kernel_key: Option<&str>,
    cache: &sched::cache::Cache,
) -> Option<ktstr_matrix::engine::Artifact> {
    plan.cells
        .iter()
        .any(|c| runs_selftests(c) && c.key.column() == *col)
        .then(|| ktstr_matrix::engine::Artifact {
            kind: "scheduler".into(),
            name: format!("{NAME} for {}", col.label()),
            cached: kernel_key.is_some_and(|k| cache.lookup(&sched::selftests::key(k)).is_some()),
            estimate: BUILD_ESTIMATE,
        })
}

/// Why `cell` does not run, when it is a selftests cell that cannot.
pub(super) fn skip_reason(
    cell: &PlannedCell,
    ready: &HashMap<Column, SelftestsReady>,
) -> Option<String> {
    if !runs_selftests(cell) {
        return None;
    }
    let eevdf = sched::validate_spec(&cell.key.sched).is_ok_and(|s| s.source == Source::Eevdf);
    if !eevdf {
        return Some(format!(
            "{NAME} attaches its own BPF schedulers, one per test: it runs under eevdf only"
        ));
    }
    match ready.get(&cell.key.column()) {
        Some(SelftestsReady::Skipped(reason)) => Some(reason.clone()),
        _ => None,
    }
}

/// Why `cell` cannot run, when its column's selftests failed to build.
pub(super) fn failure(
    cell: &PlannedCell,
    ready: &HashMap<Column, SelftestsReady>,
) -> Option<String> {
    match ready.get(&cell.key.column()) {
        Some(SelftestsReady::Failed(e)) if runs_selftests(cell) => Some(e.clone()),
        _ => None,
    }
}

/// Puts the runner into a selftests cell and gives the guest the explicit test list.
pub(super) fn equip(
    mut cell: Cell,
    planned: &PlannedCell,
    ready: &HashMap<Column, SelftestsReady>,
) -> Result<Cell, String> {
    if !runs_selftests(planned) {
        return Ok(cell);
    }
    let Some(SelftestsReady::Ready(st)) = ready.get(&planned.key.column()) else {
        return Err(format!("{NAME}: no runner was prepared for this kernel"));
    };
    if let Workload::Scenario { params, .. } = &mut cell.workload {
        *params = st.guest_params(params).map_err(|e| e.to_string())?;
    }
    cell.files.push(st.initramfs_file());
    Ok(cell)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::cache::Entry;
    use crate::topology::Topology;
    use ktstr_matrix::plan::CellKey;
    use ktstr_matrix::spec::ScenarioSel;
    use std::collections::BTreeMap;

    fn planned(sched: &str, scenario: &str, tests: Option<&str>) -> PlannedCell {
        PlannedCell {
            key: CellKey {
                kernel: "6.12".into(),
                configs: vec!["sched_ext".into()],
                sched: sched.into(),
                scenario: ScenarioSel {
                    name: scenario.into(),
                    params: tests
                        .map(|t| ("tests".to_string(), t.to_string()))
                        .into_iter()
                        .collect(),
                },
                topology: "1n1l2c1t".into(),
                duration_ms: 2000,
                repeat: 0,
            },
            vcpus: 2,
        }
    }

    fn ready(col: &Column, r: SelftestsReady) -> HashMap<Column, SelftestsReady> {
        HashMap::from([(col.clone(), r)])
    }

    fn runner() -> Selftests {
        Selftests {
            runner: Entry {
                name: "runner".into(),
                sha256: "0".into(),
                path: "/cache/store/0/runner".into(),
                origin: "test".into(),
                build_s: None,
            },
            tests: vec!["exit".into(), "minimal".into()],
        }
    }

    #[test]
    fn only_eevdf_cells_of_a_kernel_with_sched_ext_run_the_selftests() {
        let eevdf = planned("eevdf", NAME, None);
        let col = eevdf.key.column();
        let built = ready(&col, SelftestsReady::Ready(runner()));
        assert_eq!(skip_reason(&eevdf, &built), None);
        let scx = planned("kernel:scx_simple", NAME, None);
        assert!(
            skip_reason(&scx, &built)
                .unwrap()
                .contains("runs under eevdf only")
        );
        // Other scenarios are not this module's business, whatever the scheduler.
        assert_eq!(
            skip_reason(&planned("kernel:scx_simple", "steady", None), &built),
            None
        );
        let no_scx = ready(&col, SelftestsReady::Skipped("no sched_ext".into()));
        assert_eq!(
            skip_reason(&eevdf, &no_scx).as_deref(),
            Some("no sched_ext")
        );
        let broken = ready(&col, SelftestsReady::Failed("make failed".into()));
        assert_eq!(failure(&eevdf, &broken).as_deref(), Some("make failed"));
        assert_eq!(failure(&planned("eevdf", "steady", None), &broken), None);
    }

    #[test]
    fn a_selftests_cell_carries_the_runner_and_the_explicit_list() {
        let p = planned("eevdf", NAME, None);
        let built = ready(&p.key.column(), SelftestsReady::Ready(runner()));
        let topology: Topology = "1n1l2c1t".parse().unwrap();
        let cell = super::super::cell_of("/k".into(), &p, None, 512, None).unwrap();
        assert_eq!(cell.topology, topology);
        let cell = equip(cell, &p, &built).unwrap();
        assert_eq!(
            cell.files,
            vec![(
                std::path::PathBuf::from("/cache/store/0/runner"),
                "/ktstr/selftests/runner".to_string()
            )]
        );
        let Workload::Scenario { params, .. } = &cell.workload else {
            panic!("a scenario cell")
        };
        assert_eq!(
            params,
            &BTreeMap::from([("tests".to_string(), serde_json::json!("exit,minimal"))])
        );
        // The watchdog covers both tests at their default timeout, not the 2 s duration.
        assert!(cell.default_watchdog() >= std::time::Duration::from_secs(120));
        let missing = equip(
            super::super::cell_of("/k".into(), &p, None, 512, None).unwrap(),
            &p,
            &HashMap::new(),
        );
        assert!(missing.is_err());
    }
}
