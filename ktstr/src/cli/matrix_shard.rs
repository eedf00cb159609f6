//! `ktstr matrix --shard K/N`: which shard this process runs (the flag, or the job engine's own
//! variables, which must agree), where it runs (the run record's host and cores), and what every
//! shard of the plan builds and runs (printed with the plan).

use super::bad_input;
use ktstr_matrix::plan::Plan;
use ktstr_matrix::shard::{self, Shard};
use ktstr_matrix::store::RunOrigin;

/// At most this many shards are listed one per line in the plan; the rest are summed up.
const LISTED_SHARDS: usize = 32;

/// The shard to run, from `--shard` and the engines' variables in the process environment.
pub fn resolve(flag: Option<&str>) -> anyhow::Result<Option<Shard>> {
    let flag = flag
        .map(str::parse::<Shard>)
        .transpose()
        .map_err(|e| bad_input(e.to_string()))?;
    let engines = shard::from_engines(&|name| std::env::var(name).ok())
        .map_err(|e| bad_input(e.to_string()))?;
    shard::resolve(flag, &engines).map_err(|e| bad_input(e.to_string()))
}

/// This host's name: the kernel's, else `$HOSTNAME`, else `unknown`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

pub fn origin(shard: Option<Shard>, cores: u32) -> RunOrigin {
    RunOrigin {
        shard,
        host: host_name(),
        cores,
    }
}

/// Every shard's cells and kernel builds, this one marked; then this shard's own plan.
pub fn print_loads(plan: &Plan, this: Shard) {
    let loads = shard::loads(plan, this.count);
    eprintln!(
        "shards: {} cells of the whole plan over {} shards (kernel-affine: a shard builds only its \
         cells' kernels)",
        plan.cells.len(),
        this.count
    );
    let line = |l: &shard::ShardLoad| {
        let kernels: Vec<String> = l.columns.iter().map(|c| c.label()).collect();
        format!(
            "  {} shard {:<7} {:>6} cells  builds {}",
            if l.shard == this { "->" } else { "  " },
            l.shard.to_string(),
            l.cells,
            if kernels.is_empty() {
                "nothing".to_string()
            } else {
                kernels.join(", ")
            }
        )
    };
    let mut shown: Vec<&shard::ShardLoad> = loads.iter().take(LISTED_SHARDS).collect();
    if !shown.iter().any(|l| l.shard == this) {
        shown.push(&loads[(this.index - 1) as usize]);
    }
    for l in &shown {
        eprintln!("{}", line(l));
    }
    if loads.len() > shown.len() {
        let max = loads.iter().map(|l| l.cells).max().unwrap_or(0);
        let min = loads.iter().map(|l| l.cells).min().unwrap_or(0);
        eprintln!(
            "     ... {} more shards ({min}..{max} cells each)",
            loads.len() - shown.len()
        );
    }
}

/// The backend of `--build-only`, which boots nothing.
pub struct NoVm;

impl crate::vm::Backend for NoVm {
    fn describe(&self) -> String {
        "none (--build-only)".into()
    }
    fn run(&self, _cfg: &crate::vm::VmConfig) -> Result<crate::vm::VmRun, crate::vm::VmError> {
        Err(crate::vm::VmError::Config(
            "--build-only boots nothing: run the matrix without it".into(),
        ))
    }
}

/// `--build-only`: prepares every kernel, scheduler and initramfs of `plan` into the caches and
/// runs no cell. Exit 1 when something could not be built (each named), 130 on Ctrl-C.
pub fn build_only(runner: &crate::matrix_runner::KtstrRunner, plan: &Plan) -> anyhow::Result<i32> {
    use ktstr_matrix::engine::{CellRunner, Subscriber};
    let progress = super::matrix_progress::Progress::new();
    let prepared = runner
        .prepare(plan, &|ev| progress.on_event(&ev))
        .map_err(|e| bad_input(e.to_string()))?;
    if crate::cancel::requested() {
        return Ok(crate::exit::INTERRUPTED);
    }
    let failures = prepared.failures();
    if failures.is_empty() {
        eprintln!(
            "build only: every kernel, scheduler and initramfs of {} cell(s) is in the cache",
            plan.cells.len()
        );
        return Ok(crate::exit::OK);
    }
    eprintln!("build only: {} could not be built:", failures.len());
    for f in &failures {
        eprintln!("  {}", f.lines().next().unwrap_or(f));
    }
    Ok(crate::exit::FAILURE)
}
