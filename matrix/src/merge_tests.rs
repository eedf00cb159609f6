use super::*;
use crate::plan::Plan;
use crate::result::{Outcome, RESULT_FORMAT_VERSION};
use crate::shard::select;
use crate::spec::{MatrixSpec, ScenarioSel};

fn spec() -> MatrixSpec {
    MatrixSpec {
        kernels: vec!["6.1".into(), "6.12".into()],
        configs: vec![vec!["sched_ext".into()]],
        scheds: vec!["eevdf".into(), "kernel:scx_simple".into()],
        scenarios: vec![ScenarioSel {
            name: "steady".into(),
            params: Default::default(),
        }],
        topologies: vec!["1n1l2c1t".into()],
        repeats: 3,
        duration_ms: 2000,
        jobs: None,
        overcommit: false,
        baseline: None,
        memory_mib: 256,
    }
}

fn result(outcome: Outcome, wall_ms: f64) -> CellResult {
    CellResult {
        format_version: RESULT_FORMAT_VERSION,
        outcome,
        reason: None,
        report: None,
        console_tail: String::new(),
        timings: HostTimings {
            wall_ms,
            ..Default::default()
        },
        backend: "qemu-tcg/microvm".into(),
    }
}

fn record(key: &CellKey, finished_at: u64, wall_ms: f64) -> CellRecord {
    let inputs = CellInputs {
        kernel: format!("k-{}", key.kernel),
        ..Default::default()
    };
    CellRecord {
        format_version: STORE_FORMAT_VERSION,
        id: cell_id(key, &inputs),
        key: key.clone(),
        inputs,
        result: result(Outcome::Pass, wall_ms),
        finished_at,
    }
}

/// The output of one shard of `plan` (every cell run), as `ktstr matrix --shard` stores it.
fn shard_output(plan: &Plan, s: Shard, finished_at: u64) -> Input {
    let part = select(plan, s);
    Input {
        dir: PathBuf::from(format!("out/shard-{}", s.index)),
        loaded: Loaded {
            run: RunRecord {
                format_version: STORE_FORMAT_VERSION,
                ktstr_version: "0.1.0".into(),
                spec: plan.spec.clone(),
                columns: part.columns.clone(),
                started_at: finished_at - 10,
                origin: Some(RunOrigin {
                    shard: Some(s),
                    host: format!("node{}", s.index),
                    cores: 2,
                }),
            },
            cells: part
                .cells
                .iter()
                .map(|c| record(&c.key, finished_at, c.key.repeat as f64))
                .collect(),
            notice: None,
        },
    }
}

fn plan() -> Plan {
    expand(&spec(), &BTreeMap::new())
}

fn shards(plan: &Plan, n: u32) -> Vec<Input> {
    (1..=n)
        .map(|index| shard_output(plan, Shard { index, count: n }, 100))
        .collect()
}

#[test]
fn every_shard_merges_into_the_whole_plan_in_plan_order() {
    let plan = plan();
    let m = merge(&shards(&plan, 3), None).unwrap();
    let keys: Vec<&CellKey> = m.cells.iter().map(|c| &c.key).collect();
    let want: Vec<&CellKey> = plan.cells.iter().map(|c| &c.key).collect();
    assert_eq!(keys, want);
    assert!(m.cells.iter().all(|c| c.result.outcome == Outcome::Pass));
    assert!(m.summary.missing_cells.is_empty() && m.summary.missing_shards.is_empty());
    assert!(m.summary.notices.is_empty());
    assert_eq!(m.run.columns, plan.columns);
    assert_eq!(
        m.summary
            .inputs
            .iter()
            .map(|s| s.cells_taken)
            .sum::<usize>(),
        plan.cells.len()
    );
    assert_eq!(m.summary.shard_count, Some(3));
}

#[test]
fn a_missing_shard_is_listed_and_its_cells_are_errors_that_say_so() {
    let plan = plan();
    let mut inputs = shards(&plan, 3);
    let gone = inputs.remove(1);
    let lost = gone.loaded.cells.len();
    assert!(lost > 0, "shard 2/3 of this plan has cells");
    let m = merge(&inputs, None).unwrap();
    assert_eq!(m.cells.len(), plan.cells.len(), "no cell dropped");
    assert_eq!(
        m.summary.missing_shards,
        vec![MissingShard {
            shard: Shard { index: 2, count: 3 },
            cells_missing: lost
        }]
    );
    assert_eq!(m.summary.missing_cells.len(), lost);
    let missing: Vec<&CellRecord> = m
        .cells
        .iter()
        .filter(|c| c.result.backend == MISSING_BACKEND)
        .collect();
    assert_eq!(missing.len(), lost);
    for c in missing {
        assert_eq!(c.result.outcome, Outcome::Error);
        let reason = c.result.reason.as_deref().unwrap();
        assert!(reason.contains("--shard 2/3"), "{reason}");
    }
    assert!(m.summary.notices[0].contains("shard 2/3 is missing"));

    // The shard run later, merged with the first merge's output: complete, placeholders gone.
    let first = Input {
        dir: "merged".into(),
        loaded: Loaded {
            run: m.run.clone(),
            cells: m.cells.clone(),
            notice: None,
        },
    };
    let m2 = merge(&[first, gone], None).unwrap();
    assert!(m2.summary.missing_cells.is_empty());
    assert!(m2.cells.iter().all(|c| c.result.backend != MISSING_BACKEND));
}

#[test]
fn a_cell_stored_twice_is_taken_from_the_newest_record() {
    let plan = plan();
    let mut inputs = shards(&plan, 2);
    // Shard 1 rerun later with different results (e.g. after a preemption, into another dir).
    let mut rerun = shard_output(&plan, Shard { index: 1, count: 2 }, 500);
    for c in &mut rerun.loaded.cells {
        c.result.timings.wall_ms = 999.0;
    }
    rerun.dir = "out/shard-1-rerun".into();
    let n_rerun = rerun.loaded.cells.len();
    inputs.insert(0, rerun);
    let m = merge(&inputs, None).unwrap();
    assert_eq!(m.cells.len(), plan.cells.len());
    assert_eq!(
        m.cells
            .iter()
            .filter(|c| c.result.timings.wall_ms == 999.0)
            .count(),
        n_rerun
    );
    assert_eq!(m.summary.inputs[0].cells_taken, n_rerun);
    assert_eq!(m.summary.inputs[1].cells_superseded, n_rerun);
}

#[test]
fn a_shard_of_another_spec_is_refused_naming_the_directory_and_field() {
    let plan = plan();
    let mut inputs = shards(&plan, 2);
    inputs[1].loaded.run.spec.repeats = 5;
    let e = merge(&inputs, None).unwrap_err();
    let msg = e.to_string();
    assert!(e.is_bad_input());
    assert!(
        msg.contains("out/shard-2") && msg.contains("`repeats` is 5") && msg.contains("is 3"),
        "{msg}"
    );
    // How many jobs a machine ran is not part of what ran; another ktstr version is noticed.
    let mut inputs = shards(&plan, 2);
    inputs[1].loaded.run.spec.jobs = Some(16);
    inputs[1].loaded.run.ktstr_version = "0.2.0".into();
    let m = merge(&inputs, None).unwrap();
    assert!(
        m.summary.notices.iter().any(|n| n.contains("0.1.0, 0.2.0")),
        "{:?}",
        m.summary.notices
    );
}

#[test]
fn shards_of_different_splits_are_refused() {
    let plan = plan();
    let mut inputs = shards(&plan, 2);
    inputs.push(shard_output(&plan, Shard { index: 3, count: 3 }, 100));
    let e = merge(&inputs, None).unwrap_err();
    assert!(matches!(e, MergeError::ShardCounts { .. }), "{e}");
    assert!(e.to_string().contains("3-way"), "{e}");
}

#[test]
fn the_output_directory_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let shard = dir.path().join("s1");
    std::fs::create_dir_all(&shard).unwrap();
    std::fs::write(shard.join(store::RESULTS_FILE), "").unwrap();
    let e = check_out(&shard, std::slice::from_ref(&shard)).unwrap_err();
    assert!(matches!(e, MergeError::OutIsInput { .. }));
    let e = check_out(&shard, &[]).unwrap_err();
    assert!(matches!(e, MergeError::OutHoldsRun { .. }));
    assert!(check_out(&dir.path().join("new"), std::slice::from_ref(&shard)).is_ok());
}

#[test]
fn the_written_merge_reads_back_and_renders_with_its_notices() {
    let plan = plan();
    let mut inputs = shards(&plan, 3);
    inputs.remove(0);
    let m = merge(&inputs, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &m).unwrap();
    let back = store::read(&dir.path().join(store::RESULTS_FILE)).unwrap();
    assert_eq!(back.cells, m.cells);
    assert_eq!(back.run, m.run);
    let r = crate::session::render(dir.path(), None, &Default::default()).unwrap();
    assert_eq!(r.summary.cells, plan.cells.len());
    assert_eq!(r.summary.error, m.summary.missing_cells.len());
    assert!(r.notices.iter().any(|n| n.contains("shard 1/3 is missing")));
}
