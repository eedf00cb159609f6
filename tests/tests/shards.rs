//! `ktstr matrix --shard K/N` and `ktstr merge` end to end: a small real matrix (the shared 6.12
//! `sched_ext+steal-time` kernel, EEVDF and `kernel:scx_simple`, two scenarios) run whole in one
//! process and as 3 shards, whose merge must hold the same cells with the same outcomes. Then
//! what a merge refuses (a shard of another spec) and what it lists (a missing shard).

use ktstr_e2e::ktstr_bin;
use ktstr_matrix::result::Outcome;
use ktstr_matrix::shard::Shard;
use ktstr_matrix::store;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The spec: 1 kernel x 2 schedulers x 2 scenarios x 1 repeat = 4 cells.
const SPEC: [&str; 14] = [
    "--kernels",
    "6.12",
    "--configs",
    "sched_ext+steal-time",
    "--scheds",
    "eevdf,kernel:scx_simple",
    "--scenarios",
    "smoke,steady",
    "--topologies",
    "1n1l2c1t",
    "--repeats",
    "1",
    "--duration",
    "2s",
];

fn run(args: &[&str], out: Option<&Path>) -> Output {
    let mut c = Command::new(ktstr_bin());
    c.args(args);
    if let Some(o) = out {
        c.arg("--out").arg(o);
    }
    let o = c.output().expect("running ktstr");
    eprintln!(
        "$ ktstr {} -> {:?}\n{}",
        args.join(" "),
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn matrix(extra: &[&str], out: &Path) -> Output {
    let args: Vec<&str> = ["matrix"]
        .iter()
        .chain(&SPEC)
        .chain(extra)
        .copied()
        .collect();
    run(&args, Some(out))
}

/// Cell label -> outcome, from a run directory's results.
fn outcomes(dir: &Path) -> BTreeMap<String, Outcome> {
    store::read(&dir.join(store::RESULTS_FILE))
        .expect("results.jsonl readable")
        .cells
        .iter()
        .map(|c| (c.key.label(), c.result.outcome))
        .collect()
}

/// (column, scheduler, scenario, topology, repeat, outcome) of every cell of report.json.
fn report_cells(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut cells: Vec<String> = json["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {} {} {} {} {}",
                c["column"], c["sched"], c["scenario"], c["topology"], c["repeat"], c["outcome"]
            )
        })
        .collect();
    cells.sort();
    cells
}

#[test]
fn three_shards_merged_equal_the_whole_matrix() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    let w = matrix(&[], &whole);
    assert!(matches!(w.status.code(), Some(0) | Some(1)));
    let want = outcomes(&whole);
    assert_eq!(want.len(), 4, "{want:?}");
    // The cells really ran (a sched_ext kernel and scheduler, no missing build).
    assert!(
        want.values().all(|o| *o == Outcome::Pass),
        "the whole run's cells: {want:?}"
    );

    // Preparing a shard into the caches runs nothing and writes no results.
    let built = tmp.path().join("built");
    let b = matrix(&["--build-only", "--shard", "1/3"], &built);
    assert_eq!(b.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&b.stderr).contains("build only"));
    assert!(!built.join(store::RESULTS_FILE).exists());

    let mut dirs = Vec::new();
    let mut per_shard = 0;
    for k in 1..=3u32 {
        let dir = tmp.path().join(format!("shard-{k}"));
        let shard = format!("{k}/3");
        let o = matrix(&["--shard", &shard], &dir);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(matches!(o.status.code(), Some(0) | Some(1)), "{stderr}");
        assert!(stderr.contains(&format!("-> shard {shard}")), "{stderr}");
        let loaded = store::read(&dir.join(store::RESULTS_FILE)).unwrap();
        let origin = loaded.run.origin.expect("the run record says where it ran");
        assert_eq!(origin.shard, Some(Shard { index: k, count: 3 }));
        assert!(origin.cores >= 1 && !origin.host.is_empty());
        per_shard += loaded.cells.len();
        dirs.push(dir);
    }
    assert_eq!(per_shard, 4, "every cell ran in exactly one shard");

    let merged = tmp.path().join("merged");
    let mut args = vec!["merge".to_string(), "--out".into()];
    args.push(merged.display().to_string());
    args.extend(dirs.iter().map(|d| d.display().to_string()));
    let m = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert_eq!(
        m.status.code(),
        w.status.code(),
        "same verdict as the whole"
    );
    assert_eq!(outcomes(&merged), want, "same cells, same outcomes");
    assert_eq!(report_cells(&merged), report_cells(&whole));
    for f in ["report.md", "report.html", "junit.xml", "merge.json"] {
        assert!(merged.join(f).is_file(), "{f}");
    }

    a_missing_shard_is_listed(tmp.path(), &dirs);
    a_shard_of_another_spec_is_refused(tmp.path(), &dirs);
}

/// A shard missing from the merge: its cells are listed as missing, never dropped.
fn a_missing_shard_is_listed(tmp: &Path, dirs: &[PathBuf]) {
    let (k, lost) = (1..=3)
        .map(|k| (k, outcomes(&dirs[k - 1]).len()))
        .find(|(_, n)| *n > 0)
        .unwrap();
    let partial = tmp.join("partial");
    let mut args = vec!["merge".to_string(), "--out".into()];
    args.push(partial.display().to_string());
    args.extend(
        (1..=3)
            .filter(|i| *i != k)
            .map(|i| dirs[i - 1].display().to_string()),
    );
    let p = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
    let stderr = String::from_utf8_lossy(&p.stderr);
    assert_eq!(p.status.code(), Some(1), "missing cells fail the run");
    assert!(
        stderr.contains(&format!("shard {k}/3 is missing")),
        "{stderr}"
    );
    let got = outcomes(&partial);
    assert_eq!(got.len(), 4, "every cell listed");
    assert_eq!(got.values().filter(|o| **o == Outcome::Error).count(), lost);
    let md = std::fs::read_to_string(partial.join("report.md")).unwrap();
    assert!(md.contains(&format!("--shard {k}/3")), "{md}");
}

/// A shard of another spec is refused, naming it and the field.
fn a_shard_of_another_spec_is_refused(tmp: &Path, dirs: &[PathBuf]) {
    let other = tmp.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let text = std::fs::read_to_string(dirs[0].join(store::RESULTS_FILE)).unwrap();
    std::fs::write(
        other.join(store::RESULTS_FILE),
        text.replace("\"repeats\":1", "\"repeats\":2"),
    )
    .unwrap();
    let bad = tmp.join("bad");
    let r = run(
        &[
            "merge",
            "--out",
            &bad.display().to_string(),
            &dirs[1].display().to_string(),
            &other.display().to_string(),
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&other.display().to_string()) && stderr.contains("`repeats` is 2"),
        "{stderr}"
    );
    assert!(!bad.join(store::RESULTS_FILE).exists());
}

#[test]
fn bad_shards_exit_2_before_anything_is_built() {
    let tmp = tempfile::tempdir().unwrap();
    for (shard, says) in [("0/3", "1/3 .. 3/3"), ("4/3", "1/3 .. 3/3"), ("a/b", "K/N")] {
        let o = matrix(&["--shard", shard], &tmp.path().join("x"));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(shard) && stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("plan"), "nothing planned: {stderr}");
    }
    let mut c = Command::new(ktstr_bin());
    c.args(["matrix", "--dry-run", "--shard", "1/3"])
        .env("BUILDKITE_PARALLEL_JOB", "1")
        .env("BUILDKITE_PARALLEL_JOB_COUNT", "3");
    let o = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--shard 1/3") && stderr.contains("BUILDKITE_PARALLEL_JOB=1"),
        "{stderr}"
    );
}
