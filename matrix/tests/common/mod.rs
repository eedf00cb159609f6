//! Shared fixtures for the engine tests: a mock runner (orchestration only: no VMs are involved in
//! what these tests check) and a deterministic results set.
#![allow(dead_code)]

use ktstr_guest::protocol::{GuestReport, GuestStatus, KernelInfo, ScenarioReport};
use ktstr_matrix::plan::{CellInputs, CellKey, Column, Validator, cell_id};
use ktstr_matrix::result::{CellResult, HostTimings, Outcome, RESULT_FORMAT_VERSION};
use ktstr_matrix::spec::{MatrixSpec, ScenarioSel};
use ktstr_matrix::store::{CellRecord, RunRecord, STORE_FORMAT_VERSION};
use std::collections::BTreeMap;

pub struct NameValidator;

impl Validator for NameValidator {
    fn kernel(&self, spec: &str) -> Result<(), String> {
        ["6.1", "6.12"]
            .contains(&spec)
            .then_some(())
            .ok_or_else(|| format!("kernel {spec:?} is unknown: use 6.1 or 6.12"))
    }
    fn config_fragment(&self, name: &str) -> Result<(), String> {
        ["sched_ext", "steal-time", "base"]
            .contains(&name)
            .then_some(())
            .ok_or_else(|| format!("config fragment {name:?} is unknown"))
    }
    fn sched(&self, spec: &str) -> Result<(), String> {
        ["eevdf", "kernel:scx_simple", "scx_rusty"]
            .contains(&spec)
            .then_some(())
            .ok_or_else(|| format!("scheduler {spec:?} is unknown"))
    }
    fn scenario(&self, name: &str, params: &BTreeMap<String, String>) -> Result<(), String> {
        if !["steady", "wake"].contains(&name) {
            return Err(format!("scenario {name:?} is unknown"));
        }
        if let Some(k) = params.keys().find(|k| *k != "workers") {
            return Err(format!("scenario {name}: unknown parameter {k:?}"));
        }
        Ok(())
    }
    fn topology(&self, spec: &str, memory_mib: u32) -> Result<u32, String> {
        if memory_mib < 128 {
            return Err(format!(
                "topology {spec}: memory {memory_mib} MiB is too little"
            ));
        }
        match spec {
            "1n1l1c1t" => Ok(1),
            "1n1l2c1t" => Ok(2),
            "1n2l2c1t" => Ok(4),
            _ => Err(format!("topology {spec:?} is malformed")),
        }
    }
}

pub fn spec(kernels: &[&str], scheds: &[&str], topologies: &[&str], repeats: u32) -> MatrixSpec {
    MatrixSpec {
        kernels: kernels.iter().map(|s| s.to_string()).collect(),
        configs: vec![vec!["sched_ext".into()]],
        scheds: scheds.iter().map(|s| s.to_string()).collect(),
        scenarios: vec![ScenarioSel {
            name: "steady".into(),
            params: BTreeMap::new(),
        }],
        topologies: topologies.iter().map(|s| s.to_string()).collect(),
        repeats,
        duration_ms: 2000,
        jobs: None,
        overcommit: false,
        baseline: None,
        memory_mib: 256,
    }
}

pub fn passed(metrics: &[(&str, f64)], wall_ms: f64) -> CellResult {
    CellResult {
        format_version: RESULT_FORMAT_VERSION,
        outcome: Outcome::Pass,
        reason: None,
        report: Some(GuestReport {
            status: GuestStatus::Passed,
            kernel: KernelInfo {
                release: "6.12.117".into(),
                sched_ext: true,
                online_cpus: 2,
            },
            exit_code: None,
            scheduler: None,
            scenario: Some(ScenarioReport {
                name: "steady".into(),
                duration_ms: 2000,
                workers: vec![],
                metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                checks: vec![],
            }),
            uptime_ms: 4000,
        }),
        console_tail: String::new(),
        timings: HostTimings {
            to_agent_ms: Some(1700.0),
            to_result_ms: Some(3900.0),
            wall_ms,
        },
        backend: "qemu-tcg/microvm".into(),
    }
}

pub fn inputs(key: &CellKey) -> CellInputs {
    CellInputs {
        kernel: format!("k-{}", key.kernel),
        config: "cfg".into(),
        sched: format!("s-{}", key.sched),
        initramfs: "i".into(),
        ktstr_version: "0.1.0".into(),
        skip: None,
    }
}

/// A stored run with known numbers: 6.1 and 6.12, eevdf and scx_simple, 3 repeats. scx_simple on
/// 6.12 has a 50 % worse max_gap_ms than on 6.1 (a regression); one crashed and one skipped cell.
pub fn fixture() -> (RunRecord, Vec<CellRecord>) {
    let mut s = spec(
        &["6.1", "6.12"],
        &["eevdf", "kernel:scx_simple"],
        &["1n1l2c1t"],
        3,
    );
    s.scheds.push("scx_rusty".into());
    let columns: Vec<Column> = ["6.1", "6.12"]
        .iter()
        .map(|k| Column {
            kernel: k.to_string(),
            configs: vec!["sched_ext".into()],
        })
        .collect();
    let run = RunRecord {
        format_version: STORE_FORMAT_VERSION,
        ktstr_version: "0.1.0".into(),
        spec: s.clone(),
        columns,
        started_at: 1_700_000_000,
        origin: None,
    };
    let mut cells = Vec::new();
    for (ki, kernel) in ["6.1", "6.12"].iter().enumerate() {
        for sched in ["eevdf", "kernel:scx_simple", "scx_rusty"] {
            for r in 0..3u32 {
                let key = CellKey {
                    kernel: kernel.to_string(),
                    configs: vec!["sched_ext".into()],
                    sched: sched.into(),
                    scenario: s.scenarios[0].clone(),
                    topology: "1n1l2c1t".into(),
                    duration_ms: 2000,
                    repeat: r,
                };
                let jitter = r as f64;
                let gap = match (sched, ki) {
                    ("kernel:scx_simple", 1) => 15.0 + jitter,
                    _ => 10.0 + jitter * 0.5,
                };
                let work = 1000.0 + 10.0 * jitter + if sched == "eevdf" { 0.0 } else { 5.0 };
                let mut result = passed(
                    &[("max_gap_ms", gap), ("min_work_units", work)],
                    4000.0 + 100.0 * jitter,
                );
                if sched == "scx_rusty" && *kernel == "6.12" && r == 2 {
                    result.outcome = Outcome::Crashed;
                    result.reason = Some("kernel panic: BUG: scheduling while atomic".into());
                    result.report = None;
                    result.console_tail = "BUG: scheduling while atomic".into();
                }
                if sched == "scx_rusty" && *kernel == "6.1" {
                    result.outcome = Outcome::Skipped;
                    result.reason = Some("scx_rusty needs CONFIG_FUNCTION_TRACER".into());
                    result.report = None;
                }
                let inputs = inputs(&key);
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
    }
    (run, cells)
}
