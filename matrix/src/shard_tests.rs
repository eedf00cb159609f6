use super::*;
use crate::plan::expand;
use crate::spec::{MatrixSpec, ScenarioSel};
use std::collections::{BTreeMap, HashMap};

fn spec(kernels: &[&str], configs: &[&str], scheds: &[&str], scenarios: &[&str]) -> MatrixSpec {
    MatrixSpec {
        kernels: kernels.iter().map(|s| s.to_string()).collect(),
        configs: configs
            .iter()
            .map(|c| crate::spec::parse_config_set(c))
            .collect(),
        scheds: scheds.iter().map(|s| s.to_string()).collect(),
        scenarios: scenarios
            .iter()
            .map(|n| ScenarioSel {
                name: n.to_string(),
                params: BTreeMap::new(),
            })
            .collect(),
        topologies: vec!["1n1l2c1t".into(), "1n2l2c1t".into()],
        repeats: 3,
        duration_ms: 2000,
        jobs: None,
        overcommit: false,
        baseline: None,
        memory_mib: 256,
    }
}

fn plan_of(s: &MatrixSpec) -> Plan {
    expand(s, &BTreeMap::new())
}

fn assignment(plan: &Plan, count: u32) -> HashMap<CellKey, u32> {
    let a = Assigner::new(&plan.columns, count);
    plan.cells
        .iter()
        .map(|c| (c.key.clone(), a.shard_of(&c.key)))
        .collect()
}

fn big() -> MatrixSpec {
    spec(
        &["6.1", "6.6", "6.12"],
        &["sched_ext", "sched_ext+debug"],
        &["eevdf", "kernel:scx_simple", "scx_rusty"],
        &["steady", "wake", "mixed"],
    )
}

#[test]
fn shard_flags_parse_and_bad_ones_name_the_fix() {
    assert_eq!("2/5".parse(), Ok(Shard { index: 2, count: 5 }));
    assert_eq!("1/1".parse(), Ok(Shard { index: 1, count: 1 }));
    for bad in ["0/3", "4/3"] {
        let e = bad.parse::<Shard>().unwrap_err();
        assert!(matches!(e, ShardError::OutOfRange { count: 3, .. }), "{e}");
        assert!(e.to_string().contains("1/3 .. 3/3"), "{e}");
        assert!(e.to_string().contains(bad), "{e}");
    }
    for bad in ["a/b", "3", "1/", "-1/3", "1/3/5"] {
        let e = bad.parse::<Shard>().unwrap_err();
        assert_eq!(e, ShardError::Syntax(bad.into()), "{bad}");
        assert!(e.to_string().contains("e.g. --shard 2/5"));
    }
    assert!(matches!(
        "1/0".parse::<Shard>(),
        Err(ShardError::NoShards(_))
    ));
    assert!(matches!(
        "1/10001".parse::<Shard>(),
        Err(ShardError::TooMany(_))
    ));
}

#[test]
fn every_cell_lands_in_exactly_one_shard() {
    let plan = plan_of(&big());
    for count in [1, 2, 3, 5, 7, 16, 40] {
        let mut seen: HashMap<CellKey, u32> = HashMap::new();
        for k in 1..=count {
            let part = select(&plan, Shard { index: k, count });
            for c in &part.cells {
                assert!(
                    seen.insert(c.key.clone(), k).is_none(),
                    "{} in two shards of {count}",
                    c.key.label()
                );
            }
            // A shard's plan builds exactly the columns its cells use.
            let used: BTreeSet<Column> = part.cells.iter().map(|c| c.key.column()).collect();
            assert_eq!(part.columns.iter().cloned().collect::<BTreeSet<_>>(), used);
        }
        assert_eq!(seen.len(), plan.cells.len(), "count {count}");
        let loads = loads(&plan, count);
        assert_eq!(
            loads.iter().map(|l| l.cells).sum::<usize>(),
            plan.cells.len()
        );
    }
}

#[test]
fn a_cell_keeps_its_shard_when_cells_are_added_elsewhere() {
    let before = big();
    let mut after = before.clone();
    after.scheds.push("scx_bpfland".into());
    after.scenarios.push(ScenarioSel {
        name: "fork-churn".into(),
        params: BTreeMap::new(),
    });
    after.topologies.push("2n2l2c1t".into());
    after.repeats = 5;
    // Spec order does not matter either: only identities do.
    after.scheds.reverse();
    after.kernels.reverse();
    for count in [2, 3, 4, 7, 12] {
        let old = assignment(&plan_of(&before), count);
        let new = assignment(&plan_of(&after), count);
        for (key, shard) in &old {
            assert_eq!(new[key], *shard, "{} moved (N={count})", key.label());
        }
    }
}

#[test]
fn shards_are_balanced_for_a_large_matrix() {
    // The matrix: 5 kernels x 3 config sets x 6 x 8 x 3 x 5 = 10,800 cells.
    let mut s = spec(
        &["6.1", "6.6", "6.10", "6.12", "6.13"],
        &["sched_ext", "sched_ext+debug", "sched_ext+steal-time"],
        &["eevdf", "a", "b", "c", "d", "e"],
        &[
            "steady",
            "wake",
            "mixed",
            "smoke",
            "cpuset",
            "fork-churn",
            "steal",
            "oversubscribed",
        ],
    );
    s.topologies.push("2n2l2c1t".into());
    s.repeats = 5;
    let plan = plan_of(&s);
    assert_eq!(plan.cells.len(), 10_800);
    for count in [3, 5, 10, 15, 30, 100] {
        let l = loads(&plan, count);
        let ideal = plan.cells.len() as f64 / f64::from(count);
        let max = l.iter().map(|x| x.cells).max().unwrap() as f64;
        assert!(max / ideal < 1.3, "N={count}: max {max} vs {ideal}");
        let per_shard = slots_per_shard(plan.columns.len(), count);
        assert!(
            l.iter().all(|x| x.columns.len() <= per_shard),
            "N={count}: a shard builds more kernels than it has slots"
        );
    }
}

#[test]
fn slots_per_shard_trades_builds_for_balance() {
    assert_eq!(slots_per_shard(15, 3), 5);
    assert_eq!(slots_per_shard(15, 15), 1);
    assert_eq!(slots_per_shard(15, 10), 3);
    assert_eq!(slots_per_shard(1, 10), 1);
    assert_eq!(slots_per_shard(15, 100), 1);
}

#[test]
fn shards_are_kernel_affine() {
    let plan = plan_of(&big());
    // 6 columns over 3 shards: each column is run by exactly one shard.
    let loads = loads(&plan, 3);
    let total_builds: usize = loads.iter().map(|l| l.columns.len()).sum();
    assert_eq!(total_builds, plan.columns.len(), "{loads:?}");
    // 6 columns over 12 shards: each column spreads over 2 shards, none builds more than it must.
    let loads12 = super::loads(&plan, 12);
    let builds: usize = loads12.iter().map(|l| l.columns.len()).sum();
    assert!(builds <= 2 * plan.columns.len(), "{loads12:?}");
    // The nextest-like alternative (every shard a bit of every column) builds each kernel on
    // every shard; affinity builds far fewer.
    assert!(builds < 12 * plan.columns.len());
    // One column spreads over every shard, so that no shard idles.
    let one = plan_of(&spec(
        &["6.12"],
        &["sched_ext"],
        &["eevdf", "kernel:scx_simple", "scx_rusty"],
        &["steady", "wake", "mixed"],
    ));
    let l = super::loads(&one, 4);
    assert!(l.iter().all(|x| x.cells > 0), "{l:?}");
}

#[test]
fn engine_variables_give_one_based_shards() {
    let env = |pairs: &[(&str, &str)]| {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_engines(&move |k: &str| m.get(k).cloned())
    };
    let one = |r: Result<Vec<EngineShard>, ShardError>| r.unwrap()[0].shard;
    // --array=0-2 and --array=1-3: the same three shards.
    for (id, min) in [("0", "0"), ("1", "1")] {
        let s = one(env(&[
            ("SLURM_ARRAY_TASK_ID", id),
            ("SLURM_ARRAY_TASK_MIN", min),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]));
        assert_eq!(s, Shard { index: 1, count: 3 });
    }
    let s = one(env(&[
        ("SLURM_ARRAY_TASK_ID", "7"),
        ("SLURM_ARRAY_TASK_MIN", "3"),
        ("SLURM_ARRAY_TASK_STEP", "2"),
        ("SLURM_ARRAY_TASK_COUNT", "3"),
    ]));
    assert_eq!(s, Shard { index: 3, count: 3 });
    let e = env(&[
        ("SLURM_ARRAY_TASK_ID", "5"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
        ("SLURM_ARRAY_TASK_COUNT", "3"),
    ])
    .unwrap_err();
    assert!(e.to_string().contains("--array=1-3"), "{e}");
    let e = env(&[("SLURM_ARRAY_TASK_ID", "2")]).unwrap_err();
    assert!(e.to_string().contains("SLURM_ARRAY_TASK_MIN"), "{e}");

    let s = one(env(&[("JOB_COMPLETION_INDEX", "0"), (K8S_COUNT_VAR, "4")]));
    assert_eq!(s, Shard { index: 1, count: 4 });
    let e = env(&[("JOB_COMPLETION_INDEX", "0")]).unwrap_err();
    assert!(e.to_string().contains(K8S_COUNT_VAR), "{e}");
    let e = env(&[("JOB_COMPLETION_INDEX", "4"), (K8S_COUNT_VAR, "4")]).unwrap_err();
    assert!(e.to_string().contains("JOB_COMPLETION_INDEX=4"), "{e}");

    let s = one(env(&[
        ("BUILDKITE_PARALLEL_JOB", "2"),
        ("BUILDKITE_PARALLEL_JOB_COUNT", "3"),
    ]));
    assert_eq!(s, Shard { index: 3, count: 3 });
    let e = env(&[("BUILDKITE_PARALLEL_JOB", "x")]).unwrap_err();
    assert!(
        e.to_string().contains("BUILDKITE_PARALLEL_JOB=\"x\""),
        "{e}"
    );
    assert!(env(&[]).unwrap().is_empty());
}

#[test]
fn the_flag_and_the_engines_must_agree() {
    let slurm = EngineShard {
        shard: Shard { index: 2, count: 3 },
        source: "SLURM_ARRAY_TASK_ID=1 (SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_COUNT=3)".into(),
    };
    let s23 = Shard { index: 2, count: 3 };
    assert_eq!(resolve(None, std::slice::from_ref(&slurm)), Ok(Some(s23)));
    assert_eq!(
        resolve(Some(s23), std::slice::from_ref(&slurm)),
        Ok(Some(s23))
    );
    assert_eq!(resolve(Some(s23), &[]), Ok(Some(s23)));
    assert_eq!(resolve(None, &[]), Ok(None));
    let e = resolve(
        Some(Shard { index: 1, count: 3 }),
        std::slice::from_ref(&slurm),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("--shard 1/3") && msg.contains("SLURM_ARRAY_TASK_ID=1") && msg.contains("2/3"),
        "{msg}"
    );
    let bk = EngineShard {
        shard: Shard { index: 1, count: 3 },
        source: "BUILDKITE_PARALLEL_JOB=0 (BUILDKITE_PARALLEL_JOB_COUNT=3)".into(),
    };
    let e = resolve(None, &[slurm, bk]).unwrap_err();
    assert!(e.to_string().contains("BUILDKITE_PARALLEL_JOB=0"), "{e}");
}
