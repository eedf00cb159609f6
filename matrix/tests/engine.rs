//! Engine orchestration with a mock runner: CPU budget, resume, events, validation.

mod common;

use common::{NameValidator, inputs, passed, spec};
use ktstr_matrix::engine::{
    self, Artifact, CellRunner, Event, RunOptions, StoreSubscriber, Subscriber,
};
use ktstr_matrix::plan::{self, CellInputs, Plan, PlannedCell};
use ktstr_matrix::result::CellResult;
use ktstr_matrix::store;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Counts vCPUs in flight. Each run waits (bounded) until `want_peak` cells have been in flight
/// together, so the test observes real overlap instead of hoping for it.
struct Mock {
    in_flight: Mutex<(u32, u32, u32)>, // (vcpus now, max vcpus seen, max cells seen)
    cells_now: AtomicU32,
    cv: Condvar,
    want_peak: u32,
    /// Bound on the wait for overlap (short where no overlap is expected).
    wait: Duration,
    runs: Mutex<Vec<String>>,
    /// Cancel after this many finished cells (simulates Ctrl-C / kill).
    cancel_after: Option<usize>,
    finished: AtomicUsize,
    cancel: AtomicBool,
}

impl Mock {
    fn new(want_peak: u32, cancel_after: Option<usize>) -> Self {
        Mock {
            in_flight: Mutex::new((0, 0, 0)),
            cells_now: AtomicU32::new(0),
            cv: Condvar::new(),
            want_peak,
            wait: Duration::from_secs(3),
            runs: Mutex::new(Vec::new()),
            cancel_after,
            finished: AtomicUsize::new(0),
            cancel: AtomicBool::new(false),
        }
    }
}

impl CellRunner for Mock {
    type Prepared = ();
    type Error = std::convert::Infallible;
    fn survey(&self, _plan: &Plan) -> Vec<Artifact> {
        vec![]
    }
    fn prepare(&self, _plan: &Plan, _emit: &(dyn Fn(Event) + Sync)) -> Result<(), Self::Error> {
        Ok(())
    }
    fn inputs(&self, _: &(), cell: &PlannedCell) -> CellInputs {
        let mut i = inputs(&cell.key);
        if cell.key.sched == "scx_rusty" && cell.key.kernel == "6.1" {
            i.skip = Some("no sched_ext".into());
        }
        i
    }
    fn run(&self, _: &(), cell: &PlannedCell) -> CellResult {
        self.runs.lock().unwrap().push(cell.key.label());
        {
            let mut g = self.in_flight.lock().unwrap();
            let cells = self.cells_now.fetch_add(1, Ordering::SeqCst) + 1;
            g.0 += cell.vcpus;
            g.1 = g.1.max(g.0);
            g.2 = g.2.max(cells);
            self.cv.notify_all();
            // Bounded wait for overlap; the bound only matters if the budget wrongly serializes.
            let _ = self
                .cv
                .wait_timeout_while(g, self.wait, |g| g.2 < self.want_peak)
                .unwrap();
        }
        let mut g = self.in_flight.lock().unwrap();
        g.0 -= cell.vcpus;
        self.cells_now.fetch_sub(1, Ordering::SeqCst);
        drop(g);
        let n = self.finished.fetch_add(1, Ordering::SeqCst) + 1;
        if self.cancel_after.is_some_and(|c| n >= c) {
            self.cancel.store(true, Ordering::SeqCst);
        }
        passed(&[("max_gap_ms", 10.0)], 1.0)
    }
}

fn make_plan(s: &ktstr_matrix::spec::MatrixSpec) -> Plan {
    let vcpus = plan::validate(s, &NameValidator).unwrap();
    plan::expand(s, &vcpus)
}

fn opts(jobs: usize, budget: Option<u32>, done: HashSet<String>) -> RunOptions {
    RunOptions {
        jobs,
        cpu_budget: budget,
        memory_budget_mib: None,
        done_ids: done,
        ktstr_version: "0.1.0".into(),
    }
}

#[test]
fn cpu_budget_bounds_vcpus_in_flight_and_allows_overlap() {
    // 8 cells of 2 vCPUs, budget 4: two at a time, never more.
    let p = make_plan(&spec(
        &["6.12"],
        &["eevdf", "kernel:scx_simple"],
        &["1n1l2c1t"],
        4,
    ));
    assert_eq!(p.cells.len(), 8);
    let m = Mock::new(2, None);
    let never = || false;
    let s = engine::run(&m, &(), &p, &opts(8, Some(4), HashSet::new()), &[], &never);
    assert_eq!(s.ran.len(), 8);
    let g = m.in_flight.lock().unwrap();
    assert_eq!(g.1, 4, "max vCPUs in flight");
    assert_eq!(g.2, 2, "max cells in flight");
}

#[test]
fn memory_budget_bounds_cells_in_flight_when_cpus_are_unlimited() {
    // 8 cells of 256 MiB, 3 cells' worth of memory less one MiB: two at a time, never three.
    let p = make_plan(&spec(
        &["6.12"],
        &["eevdf", "kernel:scx_simple"],
        &["1n1l2c1t"],
        4,
    ));
    assert_eq!(p.spec.memory_mib, 256);
    let m = Mock::new(2, None);
    let never = || false;
    let mut o = opts(8, None, HashSet::new());
    o.memory_budget_mib = Some(3 * 256 - 1);
    let s = engine::run(&m, &(), &p, &o, &[], &never);
    assert_eq!(s.ran.len(), 8);
    let g = m.in_flight.lock().unwrap();
    assert_eq!(g.2, 2, "max cells in flight");
}

#[test]
fn budget_smaller_than_a_cell_runs_it_alone() {
    // 4-vCPU cells on a 2-CPU budget: one at a time (and they still run).
    let p = make_plan(&spec(&["6.12"], &["eevdf"], &["1n2l2c1t"], 3));
    let mut m = Mock::new(2, None);
    // Overlap must not happen here; wait briefly for it so a broken budget would show.
    m.wait = Duration::from_millis(300);
    let never = || false;
    let s = engine::run(&m, &(), &p, &opts(4, Some(2), HashSet::new()), &[], &never);
    assert_eq!(s.ran.len(), 3);
    assert_eq!(m.in_flight.lock().unwrap().2, 1);
}

#[test]
fn overcommit_lifts_the_budget() {
    let p = make_plan(&spec(&["6.12"], &["eevdf"], &["1n2l2c1t"], 3));
    let m = Mock::new(3, None);
    let never = || false;
    engine::run(&m, &(), &p, &opts(3, None, HashSet::new()), &[], &never);
    assert_eq!(m.in_flight.lock().unwrap().1, 12);
}

struct Recorder(Mutex<Vec<String>>);
impl Subscriber for Recorder {
    fn on_event(&self, ev: &Event) {
        let s = match ev {
            Event::Start { total, resumed } => format!("start {total} {resumed}"),
            Event::CellFinished { done, total, .. } => format!("finished {done}/{total}"),
            Event::Finished { .. } => "end".into(),
            _ => return,
        };
        self.0.lock().unwrap().push(s);
    }
}

#[test]
fn interrupted_run_resumes_without_rerunning_finished_cells() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(&["6.1", "6.12"], &["eevdf", "scx_rusty"], &["1n1l2c1t"], 2);
    let p = make_plan(&s);
    assert_eq!(p.cells.len(), 8);
    let write_run = |w: &store::Writer| {
        w.append(&store::Record::Run(Box::new(store::RunRecord {
            format_version: store::STORE_FORMAT_VERSION,
            ktstr_version: "0.1.0".into(),
            spec: s.clone(),
            columns: p.columns.clone(),
            started_at: 0,
            host: None,
            kernels: Vec::new(),
            origin: None,
        })))
        .unwrap()
    };
    // First run: "Ctrl-C" after 3 cells finished; jobs=1 so exactly 3 VM runs happen.
    let m = Mock::new(1, Some(3));
    let sub = StoreSubscriber {
        writer: store::Writer::open(dir.path()).unwrap(),
        error: Mutex::new(None),
    };
    write_run(&sub.writer);
    let cancel = || m.cancel.load(Ordering::SeqCst);
    let first = engine::run(
        &m,
        &(),
        &p,
        &opts(1, Some(2), HashSet::new()),
        &[&sub],
        &cancel,
    );
    assert!(first.cancelled);
    let loaded = store::read(&dir.path().join(store::RESULTS_FILE)).unwrap();
    // 3 VM cells plus the skipped (no-VM) cells that came before the cancel point.
    assert_eq!(loaded.cells.len(), first.ran.len());
    assert_eq!(m.runs.lock().unwrap().len(), 3);
    let done: HashSet<String> = loaded.cells.iter().map(|c| c.id.clone()).collect();

    // Resume: only the remaining cells run, and none of the finished ones again.
    let m2 = Mock::new(1, None);
    let rec = Recorder(Mutex::new(vec![]));
    let sub2 = StoreSubscriber {
        writer: store::Writer::open(dir.path()).unwrap(),
        error: Mutex::new(None),
    };
    write_run(&sub2.writer);
    let never = || false;
    let second = engine::run(
        &m2,
        &(),
        &p,
        &opts(1, Some(2), done.clone()),
        &[&sub2, &rec],
        &never,
    );
    assert_eq!(second.resumed, done.len());
    assert_eq!(second.ran.len() + done.len(), 8);
    let first_runs: HashSet<String> = m.runs.lock().unwrap().iter().cloned().collect();
    for r in m2.runs.lock().unwrap().iter() {
        assert!(!first_runs.contains(r), "{r} ran twice");
    }
    let events = rec.0.lock().unwrap();
    assert_eq!(events[0], format!("start 8 {}", done.len()));
    assert_eq!(events.last().unwrap(), "end");
    assert_eq!(
        store::read(&dir.path().join(store::RESULTS_FILE))
            .unwrap()
            .cells
            .len(),
        8
    );
}

#[test]
fn every_unknown_name_is_reported_together() {
    let mut s = spec(
        &["6.1", "5.99"],
        &["eevdf", "scx_nope"],
        &["1n1l2c1t", "2x"],
        1,
    );
    s.configs = vec![vec!["sched_ext".into(), "steal-tme".into()]];
    s.scenarios[0].name = "stedy".into();
    s.baseline = Some("7.0".into());
    let errs = plan::validate(&s, &NameValidator).unwrap_err();
    let all = errs.join("\n");
    for name in ["5.99", "steal-tme", "scx_nope", "stedy", "2x", "7.0"] {
        assert!(all.contains(name), "{name} missing from:\n{all}");
    }
    assert_eq!(errs.len(), 6);
}

#[test]
fn changed_inputs_change_the_cell_identity() {
    let p = make_plan(&spec(&["6.12"], &["eevdf"], &["1n1l2c1t"], 2));
    let a = inputs(&p.cells[0].key);
    let mut b = a.clone();
    b.kernel = "rebuilt".into();
    assert_ne!(
        plan::cell_id(&p.cells[0].key, &a),
        plan::cell_id(&p.cells[0].key, &b)
    );
    assert_ne!(
        plan::cell_id(&p.cells[0].key, &a),
        plan::cell_id(&p.cells[1].key, &a)
    );
}
