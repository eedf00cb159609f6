//! `ktstr report R1 ... R6` (history) from stored runs: six runs made from the shared fixture,
//! checked in under tests/golden/history/ (the ktstr CLI test reads them too), and the history's
//! terminal and markdown renderings checked against golden files (`KTSTR_UPDATE_GOLDEN=1`).
//!
//! What the runs hold: scx_simple's max_gap_ms on 6.12 is 30 % higher from R4 on (worse);
//! eevdf's min_work_units on 6.1 is 20 % higher from R4 on (better); eevdf's max_gap_ms on 6.12
//! triples in R3 alone (an outlier, not a change); R2 lacks scx_rusty on 6.12 and R5 lacks the
//! 6.1 column (a different matrix); everything else moves by at most 1 %.

mod common;

use ktstr_matrix::history::{self, ChangeKind, History, RunInput};
use ktstr_matrix::history_render;
use ktstr_matrix::render::TerminalOptions;
use ktstr_matrix::store::{self, CellRecord, Loaded, Record, RunRecord, Writer};
use std::path::{Path, PathBuf};

const RUNS: usize = 6;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn check_golden(name: &str, actual: &str) {
    let path = golden(name);
    if std::env::var_os("KTSTR_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (regenerate with KTSTR_UPDATE_GOLDEN=1)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{name} differs from {}; regenerate with KTSTR_UPDATE_GOLDEN=1 if intended.\n--- actual ---\n{actual}",
        path.display()
    );
}

fn scale_metric(c: &mut CellRecord, metric: &str, by: f64) {
    if let Some(v) = c
        .result
        .report
        .as_mut()
        .and_then(|g| g.scenario.as_mut())
        .and_then(|s| s.metrics.get_mut(metric))
    {
        *v *= by;
    }
}

/// Run `i` (0-based) of the series.
fn history_run(i: usize) -> (RunRecord, Vec<CellRecord>) {
    let (mut run, cells) = common::fixture();
    run.started_at += i as u64 * 86_400;
    let mut kept = Vec::new();
    for mut c in cells {
        let (sched, kernel) = (c.key.sched.clone(), c.key.kernel.clone());
        let (sched, kernel) = (sched.as_str(), kernel.as_str());
        if (i == 1 && sched == "scx_rusty" && kernel == "6.12") || (i == 4 && kernel == "6.1") {
            continue;
        }
        // At most +-1 % from run to run and repeat to repeat.
        let wobble = 1.0 + ((i * 7 + c.key.repeat as usize * 3) % 5) as f64 * 0.005 - 0.01;
        for m in ["max_gap_ms", "min_work_units"] {
            scale_metric(&mut c, m, wobble);
        }
        if i >= 3 && sched == "kernel:scx_simple" && kernel == "6.12" {
            scale_metric(&mut c, "max_gap_ms", 1.3);
        }
        if i >= 3 && sched == "eevdf" && kernel == "6.1" {
            scale_metric(&mut c, "min_work_units", 1.2);
        }
        if i == 2 && sched == "eevdf" && kernel == "6.12" {
            scale_metric(&mut c, "max_gap_ms", 3.0);
        }
        kept.push(c);
    }
    if i == 4 {
        run.spec.kernels.retain(|k| k != "6.1");
        run.columns.retain(|c| c.kernel != "6.1");
    }
    (run, kept)
}

fn stored(i: usize) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (run, cells) = history_run(i);
    let w = Writer::open(dir.path()).unwrap();
    w.append(&Record::Run(Box::new(run))).unwrap();
    for c in cells {
        w.append(&Record::Cell(Box::new(c))).unwrap();
    }
    std::fs::read_to_string(w.path()).unwrap()
}

fn load_checked_in() -> Vec<(String, Loaded)> {
    (1..=RUNS)
        .map(|i| {
            let dir = format!("history/r{i}");
            let l = store::read(&golden(&dir).join(store::RESULTS_FILE)).unwrap();
            (dir, l)
        })
        .collect()
}

fn build(runs: &[(String, Loaded)]) -> History {
    let inputs: Vec<RunInput> = runs
        .iter()
        .map(|(dir, loaded)| RunInput {
            dir: dir.clone(),
            loaded,
        })
        .collect();
    history::history(&inputs, 0.05, 0.05)
}

#[test]
fn stored_history_runs_are_stable() {
    for i in 0..RUNS {
        check_golden(&format!("history/r{}/results.jsonl", i + 1), &stored(i));
    }
}

#[test]
fn history_finds_the_changes_and_lists_missing_cells() {
    let h = build(&load_checked_in());
    let changed: Vec<(String, &str, &str, ChangeKind)> = h
        .series
        .iter()
        .filter_map(|s| {
            let c = s.change.as_ref()?;
            Some((
                s.cell.label(),
                s.metric.as_str(),
                c.run_label.as_str(),
                c.kind,
            ))
        })
        .collect();
    assert_eq!(
        changed,
        vec![
            (
                "eevdf @ 6.1/sched_ext 1n1l2c1t steady".to_string(),
                "min_work_units",
                "R4",
                ChangeKind::Better
            ),
            (
                "kernel:scx_simple @ 6.12/sched_ext 1n1l2c1t steady".to_string(),
                "max_gap_ms",
                "R4",
                ChangeKind::Worse
            ),
        ],
        "{:#?}",
        h.series
    );
    assert!(h.worse());
    assert_eq!((h.summary.worse, h.summary.better), (1, 1));
    // The 6.1 column is a gap in R5; scx_rusty on 6.12 is absent from R2.
    let gaps: Vec<(String, Vec<String>)> = h
        .missing
        .iter()
        .map(|m| (m.cell.label(), m.absent_from.clone()))
        .collect();
    assert!(gaps.contains(&(
        "scx_rusty @ 6.12/sched_ext 1n1l2c1t steady".into(),
        vec!["R2".into()]
    )));
    assert!(gaps.contains(&(
        "eevdf @ 6.1/sched_ext 1n1l2c1t steady".into(),
        vec!["R5".into()]
    )));
    let eevdf_61 = h
        .series
        .iter()
        .find(|s| s.cell.column == "6.1/sched_ext" && s.cell.sched == "eevdf")
        .unwrap();
    assert!(eevdf_61.points[4].is_none() && eevdf_61.points[3].is_some());
}

#[test]
fn history_renderings_match_golden() {
    let h = build(&load_checked_in());
    let plain = TerminalOptions {
        color: false,
        detail: false,
        tty: false,
    };
    check_golden("history.txt", &history_render::terminal(&h, plain));
    check_golden("history.md", &history_render::markdown(&h));
    let coloured = history_render::terminal(
        &h,
        TerminalOptions {
            color: true,
            ..plain
        },
    );
    assert!(coloured.contains("\x1b["), "{coloured}");
    // history.json reads back (floats to the last digit aside).
    let back: History = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
    assert_eq!(
        (&back.summary, &back.missing, &back.runs),
        (&h.summary, &h.missing, &h.runs)
    );
    let html = history_render::html(&h);
    assert!(html.contains("class=\"worse\"") && html.contains("class=\"better\""));
}
