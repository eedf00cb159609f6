//! Store reading (torn lines, newer formats) and report rendering from a stored results file,
//! checked against golden files (regenerate with `KTSTR_UPDATE_GOLDEN=1`).

mod common;

use ktstr_matrix::report::{self, Direction, Thresholds, Verdict};
use ktstr_matrix::store::{self, Record, Writer};
use ktstr_matrix::{html, render};
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn check_golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("KTSTR_UPDATE_GOLDEN").is_some() {
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
        "{name} differs from the golden file {}; diff it, and regenerate with KTSTR_UPDATE_GOLDEN=1 if the change is intended.\n--- actual ---\n{actual}",
        path.display()
    );
}

/// Writes the fixture through the real writer.
fn write_fixture(dir: &Path) -> PathBuf {
    let (run, cells) = common::fixture();
    let w = Writer::open(dir).unwrap();
    w.append(&Record::Run(Box::new(run))).unwrap();
    for c in cells {
        w.append(&Record::Cell(Box::new(c))).unwrap();
    }
    w.path().to_path_buf()
}

#[test]
fn stored_results_file_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_fixture(dir.path());
    check_golden("results.jsonl", &std::fs::read_to_string(path).unwrap());
}

#[test]
fn report_renders_from_the_stored_file() {
    // Rendered from the checked-in file, not the in-memory fixture: this is what
    // `ktstr report DIR` does with a results.jsonl from an earlier run.
    let loaded = store::read(&golden_dir().join("results.jsonl")).unwrap();
    assert!(loaded.notice.is_none());
    let r = report::single("out", &loaded, None, &Thresholds::default());
    // The fixture's known regression: scx_simple's max_gap_ms on 6.12 vs 6.1 (15,16,17 vs 10,10.5,11).
    assert_eq!(r.summary.regressions, 1, "{:#?}", r.regressions);
    let g = &r.regressions[0];
    assert_eq!(
        (
            g.metric.as_str(),
            g.sched.as_str(),
            g.column.as_str(),
            g.comparison.against.as_str()
        ),
        (
            "max_gap_ms",
            "kernel:scx_simple",
            "6.12/sched_ext",
            "6.1/sched_ext"
        )
    );
    assert_eq!(g.comparison.p_worse, Some(0.05));
    // Against eevdf on the same kernel it is reported as worse, without failing the run.
    let gap = r.tables.iter().find(|t| t.metric == "max_gap_ms").unwrap();
    let simple = gap
        .rows
        .iter()
        .find(|row| row.sched == "kernel:scx_simple")
        .unwrap();
    let on_612 = simple
        .stats
        .iter()
        .find(|s| s.column == "6.12/sched_ext")
        .unwrap();
    assert_eq!(
        on_612.vs_eevdf.as_ref().unwrap().verdict,
        Verdict::WorseThanEevdf
    );
    assert_eq!(
        (r.summary.crashed, r.summary.skipped, r.summary.pass),
        (1, 3, 14)
    );
    // min_work_units moved by 0.5 %: below the minimum effect, so not flagged.
    assert!(
        r.tables
            .iter()
            .filter(|t| t.metric == "min_work_units")
            .all(|t| t
                .rows
                .iter()
                .flat_map(|row| &row.stats)
                .flat_map(|s| s.vs_eevdf.iter().chain(&s.vs_baseline))
                .all(|c| c.verdict != Verdict::Regression))
    );
    assert!(r.summary.failed());
    // report.json opens with the same grid: scx_simple on 6.12 is worse against both sides.
    let row = r
        .summary_grid
        .iter()
        .find(|row| row.sched == "kernel:scx_simple")
        .unwrap();
    let on_612 = row
        .entries
        .iter()
        .find(|e| e.column == "6.12/sched_ext")
        .unwrap();
    let gap = &on_612.headline[0];
    assert_eq!(gap.metric, "max_gap_ms");
    let worse = ktstr_matrix::summary::Mark::Worse;
    assert_eq!(gap.vs_baseline.as_ref().unwrap().mark, worse);
    assert_eq!(gap.vs_eevdf.as_ref().unwrap().mark, worse);
    check_golden("report.md", &render::markdown(&r));
    check_golden(
        "report.json",
        &(serde_json::to_string_pretty(&r).unwrap() + "\n"),
    );
    check_golden("junit.xml", &render::junit(&r));
    check_golden("report.txt", &render::terminal(&r));
    let detail = render::TerminalOptions {
        detail: true,
        ..Default::default()
    };
    check_golden("report-detail.txt", &render::terminal_with(&r, detail));
    check_golden("report.html", &html::html(&r));
    let page = html::html(&r);
    // Self-contained: the one script is inline, nothing is fetched.
    assert!(
        page.contains("data:image/svg+xml,<svg")
            && !page.contains("<script src")
            && !page.contains("http://cdn")
    );
}

#[test]
fn fewer_than_three_repeats_never_flags() {
    let loaded = store::read(&golden_dir().join("results.jsonl")).unwrap();
    let t = Thresholds {
        min_repeats: 4,
        ..Default::default()
    };
    let r = report::single("out", &loaded, None, &t);
    assert_eq!(r.summary.regressions, 0);
}

#[test]
fn compare_two_runs() {
    let loaded = store::read(&golden_dir().join("results.jsonl")).unwrap();
    let r = report::compare("a", &loaded, "b", &loaded, &Thresholds::default());
    // Identical runs: b:X vs a:X never regresses (and differences from eevdf never count).
    assert!(r.regressions.is_empty(), "{:#?}", r.regressions);
    assert!(
        r.columns.iter().any(
            |c| c.id == "b:6.12/sched_ext" && c.baseline.as_deref() == Some("a:6.12/sched_ext")
        )
    );
    check_golden("compare.md", &render::markdown(&r));
}

#[test]
fn torn_last_line_is_ignored_with_a_notice_and_cut_before_appending() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_fixture(dir.path());
    let full = store::read(&path).unwrap();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"record\":\"cell\",\"format_version\":1,\"id\":\"ab");
    std::fs::write(&path, &text).unwrap();
    let torn = store::read(&path).unwrap();
    assert_eq!(torn.cells.len(), full.cells.len());
    assert!(
        torn.notice.as_deref().unwrap().contains("torn"),
        "{:?}",
        torn.notice
    );
    // Reopening for --resume cuts the torn bytes; the next record lands on its own line.
    let w = Writer::open(dir.path()).unwrap();
    w.append(&Record::Cell(Box::new(full.cells[0].clone())))
        .unwrap();
    let again = store::read(&path).unwrap();
    assert!(again.notice.is_none());
    assert_eq!(again.cells.len(), full.cells.len());
}

#[test]
fn damaged_middle_line_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_fixture(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[2] = "{not json";
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err = store::read(&path).unwrap_err().to_string();
    assert!(err.contains(":3:"), "{err}");
}

#[test]
fn newer_format_version_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_fixture(dir.path());
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"record\":\"cell\",\"format_version\":2,\"something_new\":true}\n");
    std::fs::write(&path, &text).unwrap();
    let err = store::read(&path).unwrap_err();
    assert!(matches!(
        err,
        store::StoreError::NewerFormat {
            found: 2,
            supported: 1,
            ..
        }
    ));
    let msg = err.to_string();
    assert!(
        msg.contains("newer ktstr") && msg.contains("format_version 2"),
        "{msg}"
    );
}

#[test]
fn a_rerun_cell_replaces_the_old_sample_for_its_key() {
    let mut loaded = store::read(&golden_dir().join("results.jsonl")).unwrap();
    let before = report::single("out", &loaded, None, &Thresholds::default());
    // The same cell again with a rebuilt kernel (new inputs, new id) and a changed value.
    let mut again = loaded.cells[0].clone();
    again.inputs.kernel = "rebuilt".into();
    again.id = ktstr_matrix::plan::cell_id(&again.key, &again.inputs);
    loaded.cells.push(again);
    let after = report::single("out", &loaded, None, &Thresholds::default());
    assert_eq!(after.summary.cells, before.summary.cells);
}

#[test]
fn two_variants_of_one_scenario_are_separate_tables() {
    let mut loaded = store::read(&golden_dir().join("results.jsonl")).unwrap();
    let before = report::single("out", &loaded, None, &Thresholds::default());
    // Every cell again as `steady` with a parameter, and a far larger gap: merged into the
    // plain variant's samples they would blur its medians; kept apart they form new tables.
    let variants: Vec<_> = loaded
        .cells
        .iter()
        .map(|c| {
            let mut v = c.clone();
            v.key.scenario.params.insert("workers".into(), "4".into());
            v.id = ktstr_matrix::plan::cell_id(&v.key, &v.inputs);
            if let Some(sc) = v.result.report.as_mut().and_then(|g| g.scenario.as_mut()) {
                for val in sc.metrics.values_mut() {
                    *val *= 100.0;
                }
            }
            v
        })
        .collect();
    loaded.cells.extend(variants);
    let after = report::single("out", &loaded, None, &Thresholds::default());
    assert_eq!(after.summary.cells, 2 * before.summary.cells);
    assert_eq!(after.tables.len(), 2 * before.tables.len());
    let plain: Vec<_> = after
        .tables
        .iter()
        .filter(|t| t.scenario == "steady")
        .collect();
    assert_eq!(plain.len(), before.tables.len());
    for (a, b) in plain.iter().zip(&before.tables) {
        assert_eq!(a.rows, b.rows, "the plain variant's figures are unchanged");
    }
    assert!(
        after
            .tables
            .iter()
            .any(|t| t.scenario == "steady[workers=4]")
    );
}

/// One scheduler on 6.1 (the baseline) and 6.12, 3 repeats of `scenario`; each metric is
/// `(baseline value, 6.12 value)`, with a 1 % spread between repeats.
fn two_kernel_run(scenario: &str, metrics: &[(&str, f64, f64)]) -> store::Loaded {
    let mut spec = common::spec(&["6.1", "6.12"], &["eevdf"], &["1n1l2c1t"], 3);
    spec.scenarios[0].name = scenario.into();
    let columns = ["6.1", "6.12"]
        .iter()
        .map(|k| ktstr_matrix::plan::Column {
            kernel: k.to_string(),
            configs: vec!["sched_ext".into()],
        })
        .collect();
    let mut cells = Vec::new();
    for (ki, kernel) in ["6.1", "6.12"].into_iter().enumerate() {
        for repeat in 0..3u32 {
            let key = ktstr_matrix::plan::CellKey {
                kernel: kernel.into(),
                configs: vec!["sched_ext".into()],
                sched: "eevdf".into(),
                scenario: spec.scenarios[0].clone(),
                topology: "1n1l2c1t".into(),
                duration_ms: 2000,
                repeat,
            };
            let values: Vec<(&str, f64)> = metrics
                .iter()
                .map(|&(m, base, cand)| {
                    let v = if ki == 0 { base } else { cand };
                    (m, v * (1.0 + 0.01 * repeat as f64))
                })
                .collect();
            let inputs = common::inputs(&key);
            cells.push(store::CellRecord {
                format_version: store::STORE_FORMAT_VERSION,
                id: ktstr_matrix::plan::cell_id(&key, &inputs),
                key,
                inputs,
                result: common::passed(&values, 4000.0),
                finished_at: 1_700_000_100,
            });
        }
    }
    store::Loaded {
        run: store::RunRecord {
            format_version: store::STORE_FORMAT_VERSION,
            ktstr_version: "0.1.0".into(),
            spec,
            columns,
            started_at: 1_700_000_000,
            host: None,
            kernels: Vec::new(),
            origin: None,
        },
        cells,
        notice: None,
    }
}

fn flagged(r: &report::Report, metric: &str) -> bool {
    r.regressions.iter().any(|g| g.metric == metric)
}

#[test]
fn a_drop_in_fork_rate_is_a_regression_and_a_rise_in_cpu_time_is_not() {
    let loaded = two_kernel_run(
        "fork-churn",
        &[
            ("fork_rate_per_s", 1000.0, 600.0),
            ("cpu_time_ms", 100.0, 200.0),
        ],
    );
    let r = report::single("out", &loaded, None, &Thresholds::default());
    assert!(flagged(&r, "fork_rate_per_s"), "{:#?}", r.regressions);
    assert!(!flagged(&r, "cpu_time_ms"), "{:#?}", r.regressions);
    assert_eq!(r.summary.regressions, 1);
    let rate = r
        .tables
        .iter()
        .find(|t| t.metric == "fork_rate_per_s")
        .unwrap();
    assert_eq!(rate.direction, Direction::HigherIsBetter);
    assert_eq!(rate.unit.as_deref(), Some("1/s"));
    assert!(rate.headline);
    // The opposite move of each: a rise in the fork rate is an improvement, never a regression.
    let loaded = two_kernel_run("fork-churn", &[("fork_rate_per_s", 600.0, 1000.0)]);
    let r = report::single("out", &loaded, None, &Thresholds::default());
    assert!(r.regressions.is_empty(), "{:#?}", r.regressions);
}

#[test]
fn counters_get_no_table_in_any_rendering() {
    let counters = [
        "scx_enable_seq",
        "workers",
        "clock_resolution_us",
        "cpu_time_ms",
    ];
    let mut metrics: Vec<(&str, f64, f64)> = counters.iter().map(|&c| (c, 1.0, 9.0)).collect();
    metrics.push(("max_gap_ms", 10.0, 10.0));
    let loaded = two_kernel_run("steady", &metrics);
    let r = report::single("out", &loaded, None, &Thresholds::default());
    let tables: Vec<&str> = r.tables.iter().map(|t| t.metric.as_str()).collect();
    assert_eq!(tables, ["max_gap_ms"]);
    assert!(r.regressions.is_empty(), "{:#?}", r.regressions);
    let json = serde_json::to_string(&r).unwrap();
    for text in [
        render::markdown(&r),
        render::terminal(&r),
        html::html(&r),
        render::junit(&r),
        json,
    ] {
        for c in counters {
            assert!(!text.contains(c), "{c} appears in\n{text}");
        }
    }
}

#[test]
fn a_metric_unknown_to_the_catalogue_is_shown_and_never_flagged() {
    let loaded = two_kernel_run(
        "steady",
        &[
            ("brand_new_latency_us", 10.0, 100.0),
            ("brand_new_ops", 100.0, 10.0),
        ],
    );
    let r = report::single("out", &loaded, None, &Thresholds::default());
    assert!(r.regressions.is_empty(), "{:#?}", r.regressions);
    assert_eq!(r.tables.len(), 2);
    for t in &r.tables {
        assert_eq!(t.direction, Direction::Unknown);
        assert_eq!(t.unit, None);
        let c = t.rows[0].stats[1].vs_baseline.as_ref().unwrap();
        assert_eq!(c.verdict, Verdict::Undirected);
    }
    let md = render::markdown(&r);
    assert!(
        md.contains("brand_new_latency_us (direction unknown"),
        "{md}"
    );
    // Likewise for a scenario the catalogue does not know at all.
    let loaded = two_kernel_run("from-a-newer-agent", &[("max_gap_ms", 10.0, 100.0)]);
    let r = report::single("out", &loaded, None, &Thresholds::default());
    assert!(r.regressions.is_empty(), "{:#?}", r.regressions);
    assert_eq!(r.tables[0].direction, Direction::Unknown);
}

#[test]
fn headline_metrics_come_first() {
    let loaded = two_kernel_run(
        "wake",
        &[
            ("fairness_spread", 0.1, 0.1),
            ("median_work_units", 100.0, 100.0),
            ("wake_p50_us", 50.0, 50.0),
            ("total_work_units", 1000.0, 1000.0),
        ],
    );
    let r = report::single("out", &loaded, None, &Thresholds::default());
    let order: Vec<(&str, bool)> = r
        .tables
        .iter()
        .map(|t| (t.metric.as_str(), t.headline))
        .collect();
    assert_eq!(
        order,
        [
            ("total_work_units", true),
            ("wake_p50_us", true),
            ("fairness_spread", false),
            ("median_work_units", false),
        ]
    );
}
