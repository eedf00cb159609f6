//! The engine: plan -> prepare (through the runner) -> run cells in parallel under a CPU and
//! memory budget ([`crate::budget`]).
//! It emits [`Event`]s; the terminal progress and the result store are subscribers.

use crate::budget::{Demand, SlotBudget};
use crate::plan::{CellInputs, CellKey, Plan, PlannedCell, cell_id};
use crate::result::{CellResult, Outcome};
use crate::store::{CellRecord, Record, STORE_FORMAT_VERSION, unix_now};
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One thing to build or fetch before the cells run, as shown in the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    /// `kernel`, `scheduler`, `initramfs`.
    pub kind: String,
    pub name: String,
    pub cached: bool,
    /// Expected cost when not cached.
    pub estimate: Duration,
}

/// ktstr implements this: it knows kernels, schedulers, initramfs and VMs; the engine does not.
pub trait CellRunner: Sync {
    /// Whatever `prepare` produced that `run` needs (paths of images, initramfs ...).
    type Prepared: Sync;
    /// Why preparation stopped the run (bad input: a build failure only fails its cells).
    type Error: std::error::Error + Send + Sync + 'static;
    /// What must be built or fetched, and whether it is cached (for the plan; builds nothing).
    fn survey(&self, plan: &Plan) -> Vec<Artifact>;
    /// Builds every distinct kernel, scheduler and initramfs once. An error here stops the run.
    fn prepare(
        &self,
        plan: &Plan,
        emit: &(dyn Fn(Event) + Sync),
    ) -> Result<Self::Prepared, Self::Error>;
    /// The hashes of every input of one cell (and whether it must be skipped).
    fn inputs(&self, prepared: &Self::Prepared, cell: &PlannedCell) -> CellInputs;
    /// Runs one cell in its own VM. Never panics: every fault is an outcome.
    fn run(&self, prepared: &Self::Prepared, cell: &PlannedCell) -> CellResult;
    /// Each prepared column's kernel and its final .config, for the report's "what was compared".
    fn kernel_builds(&self, _prepared: &Self::Prepared) -> Vec<crate::provenance::PreparedKernel> {
        Vec::new()
    }
    /// The machine that runs the cells (CPU, memory, QEMU version), for the report.
    fn host(&self) -> Option<crate::provenance::HostInfo> {
        None
    }
    /// Expected wall time of one cell (boot + duration + teardown), for the estimate.
    fn cell_estimate(&self, cell: &PlannedCell) -> Duration {
        Duration::from_millis(cell.key.duration_ms) + Duration::from_secs(5)
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    /// A line of preparation progress (building kernel ..., scheduler cached ...).
    Prepare(String),
    /// Cells are about to run: `total` in the plan, `resumed` already in the store.
    Start {
        total: usize,
        resumed: usize,
    },
    CellStarted {
        key: CellKey,
    },
    CellFinished {
        record: Box<CellRecord>,
        elapsed: Duration,
        done: usize,
        total: usize,
    },
    /// Ctrl-C: no new cells start; running ones are torn down by the runner.
    Cancelled,
    Finished {
        wall: Duration,
    },
}

pub trait Subscriber: Sync {
    fn on_event(&self, ev: &Event);
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker threads (cells in flight at most).
    pub jobs: usize,
    /// Sum of vCPUs in flight; `None` = unlimited (`--overcommit`).
    pub cpu_budget: Option<u32>,
    /// Sum of guest memory (MiB) in flight; `None` = unlimited. Every cell of a plan asks
    /// `spec.memory_mib`.
    pub memory_budget_mib: Option<u64>,
    /// Cell ids already in the store (`--resume`).
    pub done_ids: HashSet<String>,
    pub ktstr_version: String,
}

/// Records of the cells that ran in this invocation (resumed ones are not included).
#[derive(Debug)]
pub struct RunSummary {
    pub ran: Vec<CellRecord>,
    pub resumed: usize,
    pub cancelled: bool,
    pub wall: Duration,
}

/// Runs every cell of the plan that is not already done. `cancelled` is polled between cells.
pub fn run<R: CellRunner>(
    runner: &R,
    prepared: &R::Prepared,
    plan: &Plan,
    opts: &RunOptions,
    subscribers: &[&dyn Subscriber],
    cancelled: &(dyn Fn() -> bool + Sync),
) -> RunSummary {
    let t0 = Instant::now();
    let emit = |ev: Event| subscribers.iter().for_each(|s| s.on_event(&ev));
    let mut todo = Vec::new();
    let mut resumed = 0;
    for cell in &plan.cells {
        let mut inputs = runner.inputs(prepared, cell);
        inputs.ktstr_version = opts.ktstr_version.clone();
        let id = cell_id(&cell.key, &inputs);
        if opts.done_ids.contains(&id) {
            resumed += 1;
        } else {
            todo.push((cell, inputs, id));
        }
    }
    let total = plan.cells.len();
    emit(Event::Start { total, resumed });
    let budget = SlotBudget::new(opts.cpu_budget, opts.memory_budget_mib);
    let memory_mib = u64::from(plan.spec.memory_mib);
    let done = Mutex::new((resumed, Vec::new()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .thread_name(|i| format!("ktstr-cell-{i}"))
        .build()
        .expect("a rayon pool of a few threads can be built");
    let cancel_seen = std::sync::atomic::AtomicBool::new(false);
    pool.scope(|s| {
        for (cell, inputs, id) in todo {
            let (budget, done, emit, cancel_seen) = (&budget, &done, &emit, &cancel_seen);
            s.spawn(move |_| {
                // A skipped cell boots nothing, so it takes no slot.
                let _slot = inputs.skip.is_none().then(|| {
                    budget.acquire(Demand {
                        vcpus: cell.vcpus,
                        memory_mib,
                    })
                });
                if cancelled() {
                    if !cancel_seen.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        emit(Event::Cancelled);
                    }
                    return;
                }
                let started = Instant::now();
                let result = if let Some(reason) = &inputs.skip {
                    skipped(reason)
                } else {
                    emit(Event::CellStarted {
                        key: cell.key.clone(),
                    });
                    runner.run(prepared, cell)
                };
                // A VM torn down by Ctrl-C did not finish: do not store it, so --resume reruns it.
                if cancelled()
                    && matches!(
                        result.outcome,
                        Outcome::Error | Outcome::Crashed | Outcome::Timeout
                    )
                {
                    return;
                }
                let record = CellRecord {
                    format_version: STORE_FORMAT_VERSION,
                    id,
                    key: cell.key.clone(),
                    inputs,
                    result,
                    finished_at: unix_now(),
                };
                let n = {
                    let mut d = done.lock().unwrap_or_else(|p| p.into_inner());
                    d.0 += 1;
                    d.1.push(record.clone());
                    d.0
                };
                emit(Event::CellFinished {
                    record: Box::new(record),
                    elapsed: started.elapsed(),
                    done: n,
                    total,
                });
            });
        }
    });
    let wall = t0.elapsed();
    emit(Event::Finished { wall });
    let (_, ran) = done.into_inner().unwrap_or_else(|p| p.into_inner());
    RunSummary {
        ran,
        resumed,
        cancelled: cancelled(),
        wall,
    }
}

fn skipped(reason: &str) -> CellResult {
    CellResult::skipped(reason.to_string())
}

/// The store as a subscriber: appends each finished cell at once.
pub struct StoreSubscriber {
    pub writer: crate::store::Writer,
    /// First write error (reported at the end; the run goes on so the VMs are not wasted).
    pub error: Mutex<Option<crate::store::StoreError>>,
}

impl Subscriber for StoreSubscriber {
    fn on_event(&self, ev: &Event) {
        if let Event::CellFinished { record, .. } = ev
            && let Err(e) = self.writer.append(&Record::Cell(record.clone()))
        {
            let mut err = self.error.lock().unwrap_or_else(|p| p.into_inner());
            err.get_or_insert(e);
        }
    }
}

/// Plan estimate: builds (serial) + cells packed into the CPU budget.
pub fn estimate<R: CellRunner>(
    runner: &R,
    plan: &Plan,
    artifacts: &[Artifact],
    cpu_budget: u32,
) -> Duration {
    let builds: Duration = artifacts
        .iter()
        .filter(|a| !a.cached)
        .map(|a| a.estimate)
        .sum();
    let cpu_secs: f64 = plan
        .cells
        .iter()
        .map(|c| runner.cell_estimate(c).as_secs_f64() * c.vcpus.min(cpu_budget) as f64)
        .sum();
    builds + Duration::from_secs_f64(cpu_secs / cpu_budget.max(1) as f64)
}
