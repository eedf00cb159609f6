//! The matrix session with a mock runner (orchestration only: no VM is involved in what these
//! tests check): claiming the output directory, resume, preparation errors, the run record, the
//! stored cells, Ctrl-C during preparation, and the rendered report files.

mod common;

use common::{NameValidator, inputs, passed, spec};
use ktstr_matrix::engine::{Artifact, CellRunner, Event, RunOptions, Subscriber};
use ktstr_matrix::plan::{self, CellInputs, Plan, PlannedCell};
use ktstr_matrix::report::Thresholds;
use ktstr_matrix::result::CellResult;
use ktstr_matrix::session::{self, REPORT_FILES, Session, SessionError};
use ktstr_matrix::store;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, thiserror::Error)]
#[error("kernel 9.9 does not exist: use 6.1 or 6.12")]
struct NoSuchKernel;

struct Mock {
    fail_prepare: bool,
    runs: AtomicUsize,
}

impl CellRunner for Mock {
    type Prepared = ();
    type Error = NoSuchKernel;
    fn survey(&self, _plan: &Plan) -> Vec<Artifact> {
        vec![]
    }
    fn prepare(&self, _plan: &Plan, emit: &(dyn Fn(Event) + Sync)) -> Result<(), NoSuchKernel> {
        emit(Event::Prepare("kernel 6.12: cached".into()));
        if self.fail_prepare {
            Err(NoSuchKernel)
        } else {
            Ok(())
        }
    }
    fn inputs(&self, _: &(), cell: &PlannedCell) -> CellInputs {
        inputs(&cell.key)
    }
    fn run(&self, _: &(), cell: &PlannedCell) -> CellResult {
        self.runs.fetch_add(1, Ordering::SeqCst);
        passed(&[("max_gap_ms", 10.0 + cell.key.repeat as f64)], 1.0)
    }
}

#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Subscriber for Lines {
    fn on_event(&self, ev: &Event) {
        let line = match ev {
            Event::Prepare(s) => format!("prepare {s}"),
            Event::CellFinished { done, total, .. } => format!("cell {done}/{total}"),
            _ => return,
        };
        self.0.lock().unwrap().push(line);
    }
}

fn opts() -> RunOptions {
    RunOptions {
        jobs: 2,
        cpu_budget: Some(2),
        memory_budget_mib: None,
        done_ids: Default::default(),
        ktstr_version: "test".into(),
    }
}

fn plan() -> Plan {
    let s = spec(&["6.12"], &["eevdf", "kernel:scx_simple"], &["1n1l1c1t"], 3);
    let vcpus = plan::validate(&s, &NameValidator).unwrap();
    plan::expand(&s, &vcpus)
}

#[test]
fn a_session_stores_every_cell_and_renders_every_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mock = Mock {
        fail_prepare: false,
        runs: AtomicUsize::new(0),
    };
    let lines = Lines::default();
    let session = Session::open(&out, false).unwrap();
    let ran = session
        .run(&mock, &plan(), opts(), &[&lines], &|| false)
        .unwrap();
    assert!(!ran.cancelled);
    assert_eq!(ran.summary.unwrap().ran.len(), 6);
    let lines = lines.0.into_inner().unwrap();
    assert_eq!(lines[0], "prepare kernel 6.12: cached");
    assert!(lines.contains(&"cell 6/6".to_string()), "{lines:?}");
    let loaded = store::read(&session.results_path()).unwrap();
    assert_eq!(loaded.cells.len(), 6);
    assert_eq!(loaded.run.ktstr_version, "test");

    let report = session::render(&out, None, &Thresholds::default()).unwrap();
    assert!(!report.summary.failed());
    for f in REPORT_FILES {
        let text = std::fs::read_to_string(out.join(f)).unwrap();
        assert!(!text.is_empty(), "{f} is empty");
    }
    let e = session::render(&out, Some("7.0"), &Thresholds::default()).unwrap_err();
    assert!(matches!(e, SessionError::UnknownBaseline { .. }), "{e}");
    assert!(e.is_bad_input());
}

#[test]
fn a_used_directory_needs_resume_and_resume_runs_only_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let mock = Mock {
        fail_prepare: false,
        runs: AtomicUsize::new(0),
    };
    Session::open(out, false)
        .unwrap()
        .run(&mock, &plan(), opts(), &[], &|| false)
        .unwrap();
    let e = Session::open(out, false).unwrap_err();
    assert!(matches!(e, SessionError::ResultsExist { .. }), "{e}");
    assert!(e.to_string().contains("--resume"), "{e}");
    assert!(e.is_bad_input());

    let resumed = Session::open(out, true).unwrap();
    assert_eq!(resumed.done_ids().len(), 6);
    let ran = resumed.run(&mock, &plan(), opts(), &[], &|| false).unwrap();
    assert_eq!(ran.summary.unwrap().resumed, 6);
    assert_eq!(mock.runs.load(Ordering::SeqCst), 6, "nothing ran twice");
}

#[test]
fn two_runs_cannot_write_one_directory_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = Session::open(dir.path(), true).unwrap();
    let e = Session::open(dir.path(), true).unwrap_err();
    assert!(matches!(e, SessionError::Busy { .. }), "{e}");
    assert!(e.is_bad_input());
    assert!(e.to_string().contains("another ktstr run"), "{e}");
    drop(first);
    Session::open(dir.path(), true).expect("free again once the first run ended");
}

#[test]
fn a_preparation_error_is_typed_bad_input_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock {
        fail_prepare: true,
        runs: AtomicUsize::new(0),
    };
    let session = Session::open(dir.path(), false).unwrap();
    let e = session
        .run(&mock, &plan(), opts(), &[], &|| false)
        .unwrap_err();
    assert!(matches!(e, SessionError::Prepare(_)), "{e}");
    assert!(e.is_bad_input());
    assert!(e.to_string().contains("9.9"), "{e}");
    assert!(!session.results_path().exists());
}

#[test]
fn ctrl_c_during_preparation_runs_no_cell() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Mock {
        fail_prepare: false,
        runs: AtomicUsize::new(0),
    };
    let session = Session::open(dir.path(), false).unwrap();
    let ran = session.run(&mock, &plan(), opts(), &[], &|| true).unwrap();
    assert!(ran.cancelled && ran.summary.is_none());
    assert_eq!(mock.runs.load(Ordering::SeqCst), 0);
}
