//! report.html of a 1,000+-cell stored run, opened in Debian's headless chromium: it loads (parse,
//! script, layout) in under 2 s, the file stays under 5 MB, and the page's DOM holds the heatmap,
//! a section for every cell, tables that sort when a header is clicked, and a grid link that
//! opens the folded section it points into.
//!
//! The stored run is a fixture: results.jsonl written through the store with the scenario
//! catalogue's own metrics, console tails of the length real cells produce, and a few failures.
//! Needs `chromium` (scripts/setup.sh installs it).

mod common;

use ktstr_guest::protocol::{SchedulerEnding, SchedulerReport};
use ktstr_guest::scenario::{MetricDirection, catalogue};
use ktstr_matrix::plan::{CellKey, Column, cell_id};
use ktstr_matrix::report::Thresholds;
use ktstr_matrix::result::Outcome;
use ktstr_matrix::session;
use ktstr_matrix::spec::ScenarioSel;
use ktstr_matrix::store::{self, CellRecord, Record, RunRecord, Writer};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const KERNELS: [&str; 6] = ["6.1", "6.6", "6.10", "6.11", "6.12", "6.13"];
const SCHEDS: [&str; 4] = ["eevdf", "kernel:scx_simple", "scx_rusty", "scx_lavd"];
const TOPOLOGIES: [&str; 3] = ["1n1l2c1t", "1n2l2c1t", "2n2l2c2t"];
const SCENARIOS: usize = 5;
const REPEATS: u32 = 3;
const MAX_LOAD_MS: f64 = 2000.0;
const MAX_BYTES: u64 = 5 * 1000 * 1000;

/// A console tail as long as a real cell's (about 4 KB: the last lines of a boot and shutdown).
fn console_tail(seed: usize) -> String {
    (0..50)
        .map(|i| {
            format!(
                "[{:>5}.{:06}] sched_ext: cpu{} dispatch queue {} depth {}, rq clock {}\n",
                i / 10,
                seed * 7919 % 1_000_000,
                i % 8,
                i,
                seed % 17,
                seed * 31 + i
            )
        })
        .collect()
}

/// Scenarios from the catalogue with a headline metric, and their compared metrics.
fn scenarios() -> Vec<(String, Vec<(String, bool)>)> {
    catalogue()
        .into_iter()
        .filter(|s| s.metrics.iter().any(|m| m.headline))
        .take(SCENARIOS)
        .map(|s| {
            let metrics = s
                .metrics
                .iter()
                .filter(|m| m.direction != MetricDirection::Counter)
                .map(|m| {
                    (
                        m.name.clone(),
                        m.direction == MetricDirection::HigherIsBetter,
                    )
                })
                .collect();
            (s.name, metrics)
        })
        .collect()
}

fn stored_run(dir: &Path) -> usize {
    let scenarios = scenarios();
    assert_eq!(
        scenarios.len(),
        SCENARIOS,
        "the catalogue has fewer scenarios"
    );
    let mut spec = common::spec(&KERNELS, &SCHEDS, &TOPOLOGIES, REPEATS);
    spec.scenarios = scenarios
        .iter()
        .map(|(name, _)| ScenarioSel {
            name: name.clone(),
            params: BTreeMap::new(),
        })
        .collect();
    let columns: Vec<Column> = KERNELS
        .iter()
        .map(|k| Column {
            kernel: k.to_string(),
            configs: vec!["sched_ext".into()],
        })
        .collect();
    let w = Writer::open(dir).unwrap();
    w.append(&Record::Run(Box::new(RunRecord {
        format_version: store::STORE_FORMAT_VERSION,
        ktstr_version: "0.1.0".into(),
        spec: spec.clone(),
        columns,
        started_at: 1_700_000_000,
        host: None,
        kernels: Vec::new(),
        origin: None,
    })))
    .unwrap();
    let mut n = 0;
    for (ki, kernel) in KERNELS.iter().enumerate() {
        for (si, sched) in SCHEDS.iter().enumerate() {
            for (sel, (_, metrics)) in spec.scenarios.iter().zip(&scenarios) {
                for topology in TOPOLOGIES {
                    for repeat in 0..REPEATS {
                        let key = CellKey {
                            kernel: kernel.to_string(),
                            configs: vec!["sched_ext".into()],
                            sched: sched.to_string(),
                            scenario: sel.clone(),
                            topology: topology.into(),
                            duration_ms: 2000,
                            repeat,
                        };
                        // Later kernels drift: scx_rusty gets worse, scx_lavd better.
                        let drift = match si {
                            2 => 1.0 + 0.08 * ki as f64,
                            3 => 1.0 - 0.05 * ki as f64,
                            _ => 1.0,
                        };
                        let values: Vec<(String, f64)> = metrics
                            .iter()
                            .enumerate()
                            .map(|(mi, (m, higher))| {
                                let base = 100.0 * (mi + 1) as f64 + repeat as f64;
                                let v = if *higher { base / drift } else { base * drift };
                                (m.clone(), v)
                            })
                            .collect();
                        let refs: Vec<(&str, f64)> =
                            values.iter().map(|(m, v)| (m.as_str(), *v)).collect();
                        let mut result = common::passed(&refs, 9000.0 + n as f64);
                        result.console_tail = console_tail(n);
                        if let Some(rep) = result.report.as_mut()
                            && si > 0
                        {
                            rep.scheduler = Some(SchedulerReport {
                                name: sched.to_string(),
                                attached: true,
                                attach_ms: Some(40),
                                ops: Some(sched.to_string()),
                                ending: SchedulerEnding::StillAttached,
                                output_tail: "local=12 global=3\nlocal=40 global=9\n".into(),
                                events: BTreeMap::new(),
                                bpf_programs: Vec::new(),
                            });
                        }
                        if n % 97 == 5 {
                            result.outcome = Outcome::Crashed;
                            result.reason = Some("kernel panic: scheduling while atomic".into());
                            result.report = None;
                        }
                        let inputs = common::inputs(&key);
                        w.append(&Record::Cell(Box::new(CellRecord {
                            format_version: store::STORE_FORMAT_VERSION,
                            id: cell_id(&key, &inputs),
                            key,
                            inputs,
                            result,
                            finished_at: 1_700_000_100,
                        })))
                        .unwrap();
                        n += 1;
                    }
                }
            }
        }
    }
    n
}

/// Loads report.html in an iframe, forces its layout and reports (as elements of its own DOM,
/// which `--dump-dom` prints) the time that took, what the page holds, and whether a click on
/// the cells table's `wall s` header sorted it.
const PROBE: &str = r#"<!DOCTYPE html><html><body><pre id="probe">waiting</pre><script>
var f = document.createElement('iframe');
f.style.width = '1280px'; f.style.height = '900px';
var t0 = performance.now();
f.onload = function () {
  var d = f.contentDocument;
  var height = d.documentElement.scrollHeight;
  var ms = performance.now() - t0;
  var table = d.getElementById('cell-table');
  var th = table.tHead.rows[0].cells[7];
  th.click(); th.click();
  var first = parseFloat(table.tBodies[0].rows[0].cells[7].textContent);
  var max = 0;
  Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
    max = Math.max(max, parseFloat(r.cells[7].textContent));
  });
  // A link into a folded part opens it: follow the first grid entry's link.
  var target = d.querySelector('#summary td.h a').getAttribute('href');
  f.contentWindow.location.hash = target;
  f.contentWindow.ktstrOpen();
  var opened = true;
  for (var e = d.getElementById(target.slice(1)); e; e = e.parentElement) {
    if (e.tagName === 'DETAILS' && !e.open) opened = false;
  }
  document.getElementById('probe').textContent = [
    'load_ms=' + ms.toFixed(1),
    'height=' + height,
    'heatmap_entries=' + d.querySelectorAll('#summary td.h').length,
    'cell_blocks=' + d.querySelectorAll('section.cell details').length,
    'plots=' + d.querySelectorAll('img.plot').length,
    'sorted_desc=' + (first === max),
    'link_opens_fold=' + opened
  ].join(' ');
};
f.src = 'report.html';
document.body.appendChild(f);
</script></body></html>"#;

fn probe_value<'a>(dom: &'a str, name: &str) -> &'a str {
    let at = dom
        .find(&format!("{name}="))
        .unwrap_or_else(|| panic!("the probe did not report {name}: {dom}"));
    let rest = &dom[at + name.len() + 1..];
    let end = rest.find([' ', '<']).unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn a_thousand_cell_report_loads_in_chromium_under_2_s_and_5_mb() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cells = stored_run(dir);
    assert!(cells >= 1000, "{cells} cells");
    let started = Instant::now();
    let r = session::render(dir, None, &Thresholds::default()).unwrap();
    let render_s = started.elapsed().as_secs_f64();
    assert_eq!(r.cells.len(), cells);
    assert!(r.summary.regressions > 0, "the drift should be flagged");
    let html = dir.join("report.html");
    let bytes = std::fs::metadata(&html).unwrap().len();
    std::fs::write(dir.join("probe.html"), PROBE).unwrap();
    let started = Instant::now();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            "--dump-dom",
        ])
        .arg(format!("file://{}", dir.join("probe.html").display()))
        .output()
        .expect(
            "chromium is needed for this test: run scripts/setup.sh (apt-get install chromium)",
        );
    let browser_s = started.elapsed().as_secs_f64();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let load_ms: f64 = probe_value(&dom, "load_ms").parse().unwrap();
    eprintln!(
        "{cells} cells: report.html {bytes} bytes, rendered in {render_s:.2} s; chromium load {load_ms:.0} ms ({browser_s:.1} s with browser start); {}",
        dom.trim()
    );
    assert!(bytes < MAX_BYTES, "report.html is {bytes} bytes");
    assert!(
        load_ms < MAX_LOAD_MS,
        "report.html took {load_ms} ms to load"
    );
    let rows = SCHEDS.len() * SCENARIOS * TOPOLOGIES.len();
    assert_eq!(
        probe_value(&dom, "heatmap_entries"),
        (rows * KERNELS.len()).to_string()
    );
    assert_eq!(probe_value(&dom, "cell_blocks"), cells.to_string());
    assert_ne!(probe_value(&dom, "plots"), "0");
    assert_eq!(probe_value(&dom, "sorted_desc"), "true");
    assert_eq!(probe_value(&dom, "link_opens_fold"), "true");
}
