//! Property tests of results.jsonl: whatever text a run or a cell record holds (labels, reasons,
//! console tails with any characters, any finite metric), it reads back as written; and a torn
//! last line costs only that line, on read and on the next append.

mod common;

use ktstr_matrix::plan::cell_id;
use ktstr_matrix::store::{CellRecord, RESULTS_FILE, Record, STORE_FORMAT_VERSION, Writer, read};
use proptest::prelude::*;

/// Finite numbers of every magnitude (JSON has no NaN or infinity; the guest never sends them).
fn metric() -> impl Strategy<Value = f64> {
    prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO
}

fn cell(
    kernel: &str,
    reason: Option<String>,
    console: String,
    metrics: Vec<(String, f64)>,
) -> CellRecord {
    let (_, cells) = common::fixture();
    let mut c = cells[0].clone();
    c.key.kernel = kernel.to_string();
    let m: Vec<(&str, f64)> = metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    c.result = common::passed(&m, 4000.0);
    c.result.reason = reason;
    c.result.console_tail = console;
    c.inputs = common::inputs(&c.key);
    c.id = cell_id(&c.key, &c.inputs);
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn records_read_back_as_written(
        kernels in prop::collection::vec(any::<String>(), 1..4),
        reason in proptest::option::of(any::<String>()),
        console in any::<String>(),
        metrics in prop::collection::vec((any::<String>(), metric()), 0..4),
        torn in 0usize..200,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut run, _) = common::fixture();
        run.spec.kernels = kernels.clone();
        run.format_version = STORE_FORMAT_VERSION;
        let cells: Vec<CellRecord> = kernels
            .iter()
            .map(|k| cell(k, reason.clone(), console.clone(), metrics.clone()))
            .collect();
        {
            let w = Writer::open(dir.path()).unwrap();
            w.append(&Record::Run(Box::new(run.clone()))).unwrap();
            for c in &cells {
                w.append(&Record::Cell(Box::new(c.clone()))).unwrap();
            }
        }
        let path = dir.path().join(RESULTS_FILE);
        let loaded = read(&path).unwrap();
        prop_assert_eq!(&loaded.run, &run);
        // Later records of one cell id replace earlier ones; distinct kernels are distinct cells.
        let mut expect: Vec<CellRecord> = Vec::new();
        for c in &cells {
            match expect.iter_mut().find(|e| e.id == c.id) {
                Some(e) => *e = c.clone(),
                None => expect.push(c.clone()),
            }
        }
        prop_assert_eq!(&loaded.cells, &expect);
        prop_assert!(loaded.notice.is_none());

        // A record cut short by a kill: read ignores it, the next writer cuts it off.
        let mut extra = serde_json::to_vec(&Record::Cell(Box::new(cell("torn", None, String::new(), vec![])))).unwrap();
        extra.truncate(torn.min(extra.len() - 1).max(1));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&extra);
        std::fs::write(&path, &bytes).unwrap();
        let loaded = read(&path).unwrap();
        prop_assert_eq!(&loaded.cells, &expect);
        prop_assert!(loaded.notice.is_some());
        let last = cell("after", None, String::new(), vec![]);
        Writer::open(dir.path()).unwrap().append(&Record::Cell(Box::new(last.clone()))).unwrap();
        let loaded = read(&path).unwrap();
        expect.push(last);
        prop_assert_eq!(loaded.cells, expect);
    }
}

/// Found by `records_read_back_as_written`: without serde_json's `float_roundtrip` this metric
/// came back one unit in the last place off, so a report rendered from the file differed from
/// the run's own.
#[test]
fn a_tiny_metric_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = common::fixture();
    let c = cell(
        "6.12",
        None,
        String::new(),
        vec![("m".into(), 2.9365745096171877e-158)],
    );
    let w = Writer::open(dir.path()).unwrap();
    w.append(&Record::Run(Box::new(run))).unwrap();
    w.append(&Record::Cell(Box::new(c.clone()))).unwrap();
    let loaded = read(&dir.path().join(RESULTS_FILE)).unwrap();
    assert_eq!(loaded.cells, vec![c]);
}
