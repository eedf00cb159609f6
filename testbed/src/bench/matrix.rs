//! `ktstr bench matrix`: parallel efficiency of the matrix engine on real VMs. Runs N cells (EEVDF,
//! one scenario, a small topology) under the CPU budget and compares the wall time with the
//! ideal: the sum over cells of (cell wall time x vCPUs) / host cores. Efficiency = ideal / wall.

use ktstr::cli::bad_input;
use ktstr::matrix_runner::{KtstrRunner, KtstrValidator};
use ktstr::vm::select::{BackendChoice, select};
use ktstr_matrix::engine::{self, CellRunner, RunOptions};
use ktstr_matrix::engine::{Event, Subscriber};
use ktstr_matrix::plan;
use ktstr_matrix::spec::{MatrixSpec, ScenarioSel};
use ktstr_matrix::stats::median;
use std::collections::HashSet;
use std::sync::Mutex;

/// Engine-side time per cell (includes ktstr's per-cell work around the VM: the boot request,
/// VM spawn and reap, judging the result), and that time minus the VM's own wall time.
struct Elapsed(Mutex<Vec<(f64, f64)>>);
impl Subscriber for Elapsed {
    fn on_event(&self, ev: &Event) {
        if let Event::CellFinished {
            elapsed, record, ..
        } = ev
        {
            let engine_s = elapsed.as_secs_f64();
            let overhead_s = engine_s - record.result.timings.wall_ms / 1000.0;
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((engine_s, overhead_s));
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cells to run (repeats of one cell kind).
    #[arg(long, default_value_t = 8)]
    pub cells: u32,
    /// Kernel spec; default: Debian's prebuilt cloud kernel (no build needed).
    #[arg(long)]
    pub kernel: Option<String>,
    #[arg(long, default_value = "smoke")]
    pub scenario: String,
    #[arg(long, default_value = "1n1l1c1t")]
    pub topology: String,
    #[arg(long, default_value = "2s")]
    pub duration: String,
    /// Also run the same cells one at a time, for the speedup.
    #[arg(long)]
    pub serial: bool,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let kernel = match a.kernel {
        Some(k) => k,
        None => format!(
            "image:{}",
            crate::debian::fetch(None)
                .map_err(|e| bad_input(e.to_string()))?
                .vmlinuz
                .display()
        ),
    };
    let spec = cells_spec(kernel, a.scenario, a.topology, a.cells, &a.duration)?;
    let vcpus = plan::validate(&spec, &KtstrValidator).map_err(|e| bad_input(e.join("\n")))?;
    let plan = plan::expand(&spec, &vcpus);
    // The same count `ktstr matrix` budgets with by default.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let selected = select(BackendChoice::Auto).map_err(|e| bad_input(e.to_string()))?;
    eprintln!("{}", selected.why);
    let out = tempfile::tempdir()?;
    let runner = KtstrRunner {
        backend: selected.backend,
        logs_dir: out.path().join("logs"),
        cpu_budget: None,
        memory_mib: spec.memory_mib,
        build_cores: cores as usize,
        kernel_opts: Default::default(),
        files: Vec::new(),
    };
    let prepared = runner
        .prepare(&plan, &|_| {})
        .map_err(|e| bad_input(e.to_string()))?;
    let cancelled = ktstr::cancel::requested;
    let mut passes = vec![("parallel", cores as usize)];
    if a.serial {
        passes.push(("serial", 1));
    }
    println!(
        "| pass | cells | vCPUs/cell | host cores | wall s | median VM s | ideal s (sum VM x vCPU / cores) | efficiency | ideal s from engine cell time | scheduling efficiency | median engine - VM s per cell |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, jobs) in passes {
        let opts = RunOptions {
            jobs,
            cpu_budget: Some(cores),
            memory_budget_mib: None,
            done_ids: HashSet::new(),
            ktstr_version: env!("CARGO_PKG_VERSION").into(),
        };
        let el = Elapsed(Mutex::new(Vec::new()));
        let s = engine::run(&runner, &prepared, &plan, &opts, &[&el], &cancelled);
        let not_passed: Vec<_> = s
            .ran
            .iter()
            // A failed check still ran the whole scenario; only cells that did not run to the
            // end would distort the timing.
            .filter(|r| {
                !matches!(
                    r.result.outcome,
                    ktstr_matrix::result::Outcome::Pass | ktstr_matrix::result::Outcome::Fail
                )
            })
            .map(|r| format!("{}: {:?}", r.key.label(), r.result.reason))
            .collect();
        if !not_passed.is_empty() {
            anyhow::bail!(
                "cells did not run to the end, the figures would be meaningless:\n{}",
                not_passed.join("\n")
            );
        }
        let v = plan.cells[0].vcpus;
        let walls: Vec<f64> = s
            .ran
            .iter()
            .map(|r| r.result.timings.wall_ms / 1000.0)
            .collect();
        let ideal = walls.iter().sum::<f64>() * f64::from(v.min(cores)) / f64::from(cores);
        let wall = s.wall.as_secs_f64();
        let per_cell = el.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let engine_ideal = per_cell.iter().map(|(e, _)| e).sum::<f64>() * f64::from(v.min(cores))
            / f64::from(cores);
        let overheads: Vec<f64> = per_cell.iter().map(|(_, o)| *o).collect();
        println!(
            "| {name} | {} | {v} | {cores} | {wall:.1} | {:.1} | {ideal:.1} | {:.0}% | {engine_ideal:.1} | {:.0}% | {:.3} |",
            walls.len(),
            median(&walls).unwrap_or(f64::NAN),
            100.0 * ideal / wall,
            100.0 * engine_ideal / wall,
            median(&overheads).unwrap_or(f64::NAN)
        );
    }
    Ok(ktstr::exit::OK)
}

/// `cells` repeats of one EEVDF cell: the same kind of cell every time, so the cells differ only
/// in when they run.
fn cells_spec(
    kernel: String,
    scenario: String,
    topology: String,
    cells: u32,
    duration: &str,
) -> anyhow::Result<MatrixSpec> {
    Ok(MatrixSpec {
        kernels: vec![kernel],
        configs: vec![vec![]],
        scheds: vec!["eevdf".into()],
        scenarios: vec![ScenarioSel {
            name: scenario,
            params: Default::default(),
        }],
        topologies: vec![topology],
        repeats: cells,
        duration_ms: ktstr_matrix::spec::parse_duration_ms(duration).map_err(bad_input)?,
        jobs: None,
        overcommit: false,
        baseline: None,
        memory_mib: 256,
    })
}
