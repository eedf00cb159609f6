//! The report's layout: the default matrix's terminal report fits one screen, report.md stays
//! within GitHub's step-summary limit and says when it cuts, labels are escaped and abbreviated,
//! the HTML grid carries p on hover. Golden files as in `report.rs` (`KTSTR_UPDATE_GOLDEN=1`).

mod common;

use ktstr_matrix::plan::{CellKey, Column, cell_id};
use ktstr_matrix::provenance::{HostInfo, KernelBuild};
use ktstr_matrix::report::{self, Thresholds};
use ktstr_matrix::store::{self, CellRecord, Loaded, Record, RunRecord, Writer};
use ktstr_matrix::{html, render};
use std::path::{Path, PathBuf};

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

/// The default matrix's shape (matrix/default-matrix.toml): one 6.12 column, eevdf and
/// kernel:scx_simple, steady on 1n1l2c1t, 3 repeats, with the steady scenario's metrics.
fn default_matrix_run(kernel: &str) -> (RunRecord, Vec<CellRecord>) {
    let mut spec = common::spec(&[kernel], &["eevdf", "kernel:scx_simple"], &["1n1l2c1t"], 3);
    spec.configs = vec![vec!["sched_ext".into(), "steal-time".into()]];
    let column = Column {
        kernel: kernel.into(),
        configs: spec.configs[0].clone(),
    };
    let mut cells = Vec::new();
    for sched in ["eevdf", "kernel:scx_simple"] {
        for repeat in 0..3u32 {
            let key = CellKey {
                kernel: kernel.into(),
                configs: column.configs.clone(),
                sched: sched.into(),
                scenario: spec.scenarios[0].clone(),
                topology: "1n1l2c1t".into(),
                duration_ms: 2000,
                repeat,
            };
            let j = repeat as f64;
            let simple = sched != "eevdf";
            let metrics = [
                (
                    "total_work_units",
                    if simple { 1890.0 } else { 2000.0 } + 10.0 * j,
                ),
                ("max_gap_ms", if simple { 31.0 } else { 12.0 } + j),
                ("cgroup_spread", 0.02 + 0.01 * j),
                ("min_work_units", 480.0 + j),
                ("fairness_spread", 0.05 + 0.001 * j),
                ("workers", 2.0),
                ("clock_resolution_us", 1.0),
                ("scx_enable_seq", 1.0),
            ];
            let inputs = common::inputs(&key);
            cells.push(CellRecord {
                format_version: store::STORE_FORMAT_VERSION,
                id: cell_id(&key, &inputs),
                key,
                inputs,
                result: common::passed(&metrics, 9000.0 + 100.0 * j),
                finished_at: 1_700_000_100,
            });
        }
    }
    let run = RunRecord {
        format_version: store::STORE_FORMAT_VERSION,
        ktstr_version: "0.1.0".into(),
        spec,
        columns: vec![column.clone()],
        started_at: 1_700_000_000,
        origin: None,
        host: Some(HostInfo {
            cpu_model: "AMD EPYC 7B13".into(),
            cores: 2,
            memory_mib: 7859,
            kernel: "6.1.0-40-cloud-amd64".into(),
            qemu_version: Some(
                "QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u16)".into(),
            ),
        }),
        kernels: vec![KernelBuild {
            column,
            key: format!("k-{kernel}"),
            release: "6.12.117".into(),
            image_sha256: "3f1c0a9e5b7d2c4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e".into(),
        }],
    };
    (run, cells)
}

fn store_run(dir: &Path, run: RunRecord, cells: Vec<CellRecord>) -> Loaded {
    let w = Writer::open(dir).unwrap();
    w.append(&Record::Run(Box::new(run))).unwrap();
    for c in cells {
        w.append(&Record::Cell(Box::new(c))).unwrap();
    }
    store::read(w.path()).unwrap()
}

/// Rows a terminal `width` columns wide shows for `text`.
fn screen_rows(text: &str, width: usize) -> usize {
    text.lines()
        .map(|l| l.chars().count().div_ceil(width).max(1))
        .sum()
}

#[test]
fn the_default_matrix_report_fits_one_screen() {
    let dir = tempfile::tempdir().unwrap();
    let (run, cells) = default_matrix_run("6.12");
    let loaded = store_run(dir.path(), run, cells);
    check_golden(
        "default-matrix/results.jsonl",
        &std::fs::read_to_string(dir.path().join(store::RESULTS_FILE)).unwrap(),
    );
    // Rendered from the stored file, as `ktstr report DIR` does.
    let loaded_again = store::read(&golden("default-matrix/results.jsonl")).unwrap();
    assert_eq!(loaded_again, loaded);
    let r = report::single("out", &loaded_again, None, &Thresholds::default());
    let text = render::terminal(&r);
    check_golden("default-matrix/report.txt", &text);
    assert!(
        screen_rows(&text, 100) < 60,
        "{} rows on a 100-column terminal:\n{text}",
        screen_rows(&text, 100)
    );
    // The summary holds the headline metrics and none of the counters.
    for m in ["total_work_units", "max_gap_ms", "cgroup_spread"] {
        assert!(text.contains(m), "{m} missing:\n{text}");
    }
    for m in [
        "min_work_units",
        "workers",
        "scx_enable_seq",
        "clock_resolution_us",
    ] {
        assert!(!text.contains(m), "{m} is not a headline:\n{text}");
    }
    // scx_simple is worse than eevdf on every repeat: the test says so.
    assert!(
        text.contains("max_gap_ms 32 ms eevdf +146.2% worse"),
        "{text}"
    );
    assert!(
        text.contains("host: AMD EPYC 7B13, 2 cores, 7.7 GiB"),
        "{text}"
    );
    assert!(
        text.contains("kernel 6.12/sched_ext+steal-time: 6.12.117"),
        "{text}"
    );
    // --detail adds every compared metric, in one table for the one scenario x topology.
    let detail = render::terminal_with(
        &r,
        render::TerminalOptions {
            detail: true,
            ..Default::default()
        },
    );
    assert!(
        detail.contains("min_work_units (units, higher is better)"),
        "{detail}"
    );
    assert_eq!(detail.matches("steady / 1n1l2c1t\n").count(), 1, "{detail}");
    check_golden("default-matrix/report.md", &render::markdown(&r));
}

#[test]
fn a_real_default_matrix_run_fits_one_screen() {
    // `ktstr matrix` with no arguments, stored as it ran (QEMU TCG on a 2-core host).
    let loaded = store::read(&golden("default-matrix-real/results.jsonl")).unwrap();
    assert_eq!(loaded.cells.len(), 6);
    let r = report::single("out", &loaded, None, &Thresholds::default());
    let text = render::terminal(&r);
    check_golden("default-matrix-real/report.txt", &text);
    assert!(screen_rows(&text, 100) < 60, "{text}");
    assert!(text.starts_with("PASS: 6 cells: 6 pass"), "{text}");
    for m in [
        "total_work_units",
        "max_gap_ms",
        "cgroup_spread",
        "QEMU emulator version",
    ] {
        assert!(text.contains(m), "{m} missing:\n{text}");
    }
}

#[test]
fn colour_only_when_asked() {
    let (run, cells) = default_matrix_run("6.12");
    let dir = tempfile::tempdir().unwrap();
    let loaded = store_run(dir.path(), run, cells);
    let r = report::single("out", &loaded, None, &Thresholds::default());
    assert!(!render::terminal(&r).contains('\x1b'));
    let coloured = render::terminal_with(
        &r,
        render::TerminalOptions {
            color: true,
            ..Default::default()
        },
    );
    // The worse entry is red, the verdict green (no regression against a baseline column).
    assert!(
        coloured.contains("\x1b[31m") || coloured.contains("\x1b[38;5;9m"),
        "{coloured:?}"
    );
    assert!(coloured.contains("\x1b[1;32mPASS"), "{coloured:?}");
}

#[test]
fn a_long_git_column_is_abbreviated_with_its_spec_once_in_a_legend() {
    let sha = "5edbb0c71a2b3c4d5e6f708192a3b4c5d6e7f809";
    let kernel = format!("git:/path/to/linux#{sha}");
    let (run, cells) = default_matrix_run(&kernel);
    let dir = tempfile::tempdir().unwrap();
    let loaded = store_run(dir.path(), run, cells);
    let r = report::single("out", &loaded, None, &Thresholds::default());
    let full = format!("{kernel}/sched_ext+steal-time");
    assert_eq!(r.columns[0].id, full, "report.json keeps the full id");
    for text in [render::terminal(&r), render::markdown(&r)] {
        assert!(
            text.contains("linux#5edbb0c/sched_ext+steal-time"),
            "{text}"
        );
        assert_eq!(
            text.matches(&full).count(),
            1,
            "the full spec once:\n{text}"
        );
        let tables = text.lines().filter(|l| l.starts_with(['|', '│']));
        assert!(tables.into_iter().all(|l| !l.contains(&kernel)), "{text}");
    }
}

#[test]
fn markdown_escapes_what_it_prints() {
    let (run, mut cells) = default_matrix_run("path:/src/a|b<c>");
    cells[0].result.outcome = ktstr_matrix::result::Outcome::Fail;
    cells[0].result.reason = Some("worker 1 | stalled <5 ms> `x`\nsecond line".into());
    let dir = tempfile::tempdir().unwrap();
    let loaded = store_run(dir.path(), run, cells);
    let r = report::single("out", &loaded, None, &Thresholds::default());
    let md = render::markdown(&r);
    assert!(
        md.contains("worker 1 \\| stalled &lt;5 ms&gt; \\`x\\` second line"),
        "{md}"
    );
    assert!(!md.contains("<c>") && !md.contains("<5"), "{md}");
    // Every row of every table has as many cell separators as its header.
    let mut header_pipes = None;
    for line in md.lines() {
        if !line.starts_with('|') {
            header_pipes = None;
            continue;
        }
        let pipes = line.replace("\\|", "").matches('|').count();
        match header_pipes {
            None => header_pipes = Some(pipes),
            Some(h) => assert_eq!(pipes, h, "{line}\n{md}"),
        }
    }
}

#[test]
fn a_large_report_md_stays_within_the_limit_and_says_it_cut() {
    let loaded = store::read(&golden("results.jsonl")).unwrap();
    let mut big = loaded.clone();
    // 300 variants of the scenario: 300 detail blocks.
    for v in 0..300 {
        for c in &loaded.cells {
            let mut x = c.clone();
            x.key
                .scenario
                .params
                .insert("workers".into(), v.to_string());
            x.id = cell_id(&x.key, &x.inputs);
            big.cells.push(x);
        }
    }
    let r = report::single("out", &big, None, &Thresholds::default());
    let full = render::markdown(&r);
    assert!(full.len() <= render::MD_LIMIT_BYTES);
    assert!(!full.contains("stops here"), "fits whole");
    let limit = full.len() / 3;
    let cut = render::markdown_within(&r, limit);
    assert!(cut.len() <= limit, "{} > {limit}", cut.len());
    assert!(cut.contains("report.md stops here"), "{cut}");
    // The verdict and the summary always come first; no <details> block is left open.
    assert!(cut.starts_with("# ktstr matrix report: FAIL"));
    assert!(cut.contains("## Summary"));
    assert_eq!(
        cut.matches("<details>").count(),
        cut.matches("</details>").count()
    );
}

#[test]
fn the_html_grid_shows_p_on_hover() {
    let loaded = store::read(&golden("results.jsonl")).unwrap();
    let r = report::single("out", &loaded, None, &Thresholds::default());
    let page = html::html(&r);
    assert!(page.contains("<h2>Summary</h2>"), "{page}");
    assert!(
        page.contains("<span class=\"worse\" title=\"p(worse) = 0.0500\">worse</span>"),
        "{page}"
    );
}
