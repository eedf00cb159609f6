//! The report judges a `command` metric in the direction its cells' parameters give
//! (`direction.NAME`), which travels with every stored result in its cell key.

mod common;

use ktstr_matrix::plan::{CellKey, Column, cell_id};
use ktstr_matrix::report::{self, Direction, Thresholds};
use ktstr_matrix::spec::ScenarioSel;
use ktstr_matrix::store::{CellRecord, Loaded, RunRecord, STORE_FORMAT_VERSION};
use std::collections::BTreeMap;

/// eevdf on 6.1 and 6.12, 3 repeats of `command`: on 6.12 `rps` falls by 20 % and `lat_us`
/// rises by 20 %; `cpu` has no direction.
fn loaded(rps_direction: &str) -> Loaded {
    let params: BTreeMap<String, String> = [
        ("binary", "\"bench\""),
        ("direction.rps", rps_direction),
        ("direction.lat_us", "\"lower\""),
        ("unit.lat_us", "\"us\""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let scenario = ScenarioSel {
        name: "command".into(),
        params,
    };
    let mut spec = common::spec(&["6.1", "6.12"], &["eevdf"], &["1n1l2c1t"], 3);
    spec.scenarios = vec![scenario.clone()];
    let run = RunRecord {
        format_version: STORE_FORMAT_VERSION,
        ktstr_version: "0.1.0".into(),
        spec,
        columns: ["6.1", "6.12"]
            .iter()
            .map(|k| Column {
                kernel: k.to_string(),
                configs: vec!["sched_ext".into()],
            })
            .collect(),
        started_at: 1_700_000_000,
        origin: None,
        host: None,
        kernels: Vec::new(),
    };
    let mut cells = Vec::new();
    for (ki, kernel) in ["6.1", "6.12"].into_iter().enumerate() {
        for r in 0..3u32 {
            let key = CellKey {
                kernel: kernel.into(),
                configs: vec!["sched_ext".into()],
                sched: "eevdf".into(),
                scenario: scenario.clone(),
                topology: "1n1l2c1t".into(),
                duration_ms: 2000,
                repeat: r,
            };
            let worse = if ki == 1 { 0.2 } else { 0.0 };
            let j = f64::from(r);
            let mut result = common::passed(
                &[
                    ("rps", (1000.0 + j) * (1.0 - worse)),
                    ("lat_us", (50.0 + j) * (1.0 + worse)),
                    ("cpu", j),
                ],
                4000.0,
            );
            if let Some(sc) = result.report.as_mut().and_then(|g| g.scenario.as_mut()) {
                sc.name = "command".into();
            }
            let inputs = common::inputs(&key);
            cells.push(CellRecord {
                format_version: STORE_FORMAT_VERSION,
                id: cell_id(&key, &inputs),
                key,
                inputs,
                result,
                finished_at: 1_700_000_100,
            });
        }
    }
    Loaded {
        run,
        cells,
        notice: None,
    }
}

fn flagged(r: &report::Report) -> Vec<&str> {
    let mut m: Vec<&str> = r.regressions.iter().map(|g| g.metric.as_str()).collect();
    m.sort();
    m
}

#[test]
fn the_users_direction_decides_what_is_a_regression() {
    let r = report::single("out", &loaded("\"higher\""), None, &Thresholds::default());
    assert_eq!(flagged(&r), ["lat_us", "rps"], "{:#?}", r.regressions);
    let dir = |m: &str| {
        r.tables
            .iter()
            .find(|t| t.metric == m)
            .map(|t| (t.direction, t.unit.clone(), t.headline))
    };
    assert_eq!(
        dir("rps"),
        Some((Direction::HigherIsBetter, Some("value".into()), true))
    );
    assert_eq!(
        dir("lat_us"),
        Some((Direction::LowerIsBetter, Some("us".into()), true))
    );
    // No direction given: shown as a counter, never compared.
    assert_eq!(dir("cpu"), None);

    // The same numbers with rps declared lower-is-better: its fall is an improvement.
    let r = report::single("out", &loaded("\"lower\""), None, &Thresholds::default());
    assert_eq!(flagged(&r), ["lat_us"], "{:#?}", r.regressions);
}
