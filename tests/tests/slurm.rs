//! `ktstr matrix --emit slurm` end to end on a real single-node Slurm cluster
//! (`ktstr_testbed::slurm`): the emitted job array of 3 shards and its `afterany` merge job run a
//! small real matrix (the shared 6.12 sched_ext kernel, eevdf and kernel:scx_simple), one shard
//! is cancelled mid-run and submitted again, resumes, and the merged report holds the same
//! cells with the same outcomes as the same matrix run in one process.
//!
//! The node offers this machine's 2 cores and each shard asks for its topology's 2 vCPUs, so
//! Slurm runs the shards one at a time (three TCG guests at once on 2 shared cores would time
//! cells out and make the comparison about load, not about sharding).

use ktstr_e2e::ktstr_bin;
use ktstr_matrix::result::Outcome;
use ktstr_matrix::store;
use ktstr_testbed::slurm::Cluster;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const MATRIX: &[&str] = &[
    "--kernels",
    "6.12",
    "--configs",
    "sched_ext+steal-time",
    "--scheds",
    "eevdf,kernel:scx_simple",
    "--scenarios",
    "steady",
    "--topologies",
    "1n1l2c1t",
    "--repeats",
    "3",
    "--duration",
    "2s",
];
const SHARDS: u32 = 3;
const TERMINAL: &[&str] = &[
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
];

/// A job's state from `scontrol show job` (kept for MinJobAge after it ends; this cluster has
/// no accounting database for sacct).
fn job_state(c: &Cluster, id: &str) -> String {
    let out = c
        .command("scontrol")
        .args(["show", "job", "-o", id])
        .output()
        .expect("scontrol");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find_map(|f| f.strip_prefix("JobState="))
        .unwrap_or("UNKNOWN")
        .to_string()
}

/// Polls until every job in `ids` has ended, or panics at the deadline with the queue and logs.
fn wait_ended(c: &Cluster, ids: &[String], deadline: Instant, out: &Path) {
    loop {
        let states: Vec<String> = ids.iter().map(|id| job_state(c, id)).collect();
        if states.iter().all(|s| TERMINAL.contains(&s.as_str())) {
            return;
        }
        if Instant::now() > deadline {
            let q = c.command("squeue").output().unwrap();
            panic!(
                "jobs {ids:?} still {states:?} at the deadline\n{}\n{}\n{}",
                String::from_utf8_lossy(&q.stdout),
                slurm_logs(out),
                c.logs()
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The jobs' own output files (ktstr's stderr).
fn slurm_logs(out: &Path) -> String {
    let mut s = String::new();
    for e in std::fs::read_dir(out).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("slurm-") {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            s.push_str(&format!("--- {name} ---\n{text}\n"));
        }
    }
    s
}

fn sbatch(c: &Cluster, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = c.command("sbatch");
    cmd.arg("--parsable").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "sbatch {args:?}: {o:?}\n{}", c.logs());
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    id.split(';').next().unwrap().to_string()
}

fn outcomes(dir: &Path) -> BTreeMap<String, Outcome> {
    let loaded = store::read(&dir.join(store::RESULTS_FILE))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    loaded
        .cells
        .iter()
        .map(|c| (c.key.label(), c.result.outcome))
        .collect()
}

/// The shard with the most cells, from the plan `--dry-run` prints (it is the one cancelled:
/// it has a cell stored before it is cancelled and one left to run after).
fn largest_shard() -> (u32, usize) {
    let o = Command::new(ktstr_bin())
        .arg("matrix")
        .args(MATRIX)
        .args(["--shard", &format!("1/{SHARDS}"), "--dry-run"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{text}");
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start_matches([' ', '-', '>']);
            let rest = l.strip_prefix("shard ")?;
            let (k, rest) = rest.split_once('/')?;
            let cells = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((k.parse().ok()?, cells))
        })
        .max_by_key(|&(_, n)| n)
        .unwrap_or_else(|| panic!("no shard loads in the plan:\n{text}"))
}

/// Raw results.jsonl lines of cells (the run record left out).
fn cell_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(store::RESULTS_FILE))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(r#""record":"cell""#))
        .map(str::to_string)
        .collect()
}

/// The whole matrix in one process, the reference: its exit code and cell outcomes.
fn run_in_one_process(out: &Path) -> (Option<i32>, BTreeMap<String, Outcome>) {
    let run = Command::new(ktstr_bin())
        .arg("matrix")
        .args(MATRIX)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let code = run.status.code();
    assert!(
        matches!(code, Some(0) | Some(1)),
        "{code:?}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    (code, outcomes(out))
}

/// Runs `ktstr matrix --emit slurm`'s script as a user would; returns the array's and the merge
/// job's ids (checked to depend with `afterany`).
fn submit_emitted(c: &Cluster, tmp: &Path, out: &Path) -> (String, String) {
    let emitted = Command::new(ktstr_bin())
        .arg("matrix")
        .args(MATRIX)
        .args(["--emit", "slurm", "--shards", &SHARDS.to_string()])
        .output()
        .unwrap();
    assert!(emitted.status.success(), "{emitted:?}");
    let script = tmp.join("ktstr-slurm.sh");
    std::fs::write(&script, &emitted.stdout).unwrap();
    let submitted = c
        .command("bash")
        .arg(&script)
        .env("KTSTR", ktstr_bin())
        .env("KTSTR_OUT", out)
        .current_dir(tmp)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&submitted.stdout).into_owned();
    assert!(submitted.status.success(), "{submitted:?}\n{}", c.logs());
    // "shards: job array A (1-3); merge: job M; results: ..."
    let field = |after: &str, end: char| {
        said.split(after)
            .nth(1)
            .and_then(|s| s.split(end).next())
            .unwrap_or_else(|| panic!("{said}"))
            .to_string()
    };
    let (array, merge) = (field("job array ", ' '), field("merge: job ", ';'));
    let shown = c
        .command("scontrol")
        .args(["show", "job", "-o", &merge])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(
        shown.contains(&format!("Dependency=afterany:{array}")),
        "{shown}"
    );
    (array, merge)
}

/// Cancels job `id` once it runs and has stored a cell in `dir`.
fn cancel_mid_run(c: &Cluster, id: &str, dir: &Path, deadline: Instant, out: &Path) {
    loop {
        let state = job_state(c, id);
        if state == "RUNNING" && !cell_lines(dir).is_empty() {
            break;
        }
        assert!(
            !TERMINAL.contains(&state.as_str()),
            "{id} ended ({state}) before it could be cancelled mid-run\n{}",
            slurm_logs(out)
        );
        assert!(Instant::now() < deadline, "{}", slurm_logs(out));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(c.command("scancel").arg(id).status().unwrap().success());
}

/// Submits shard `k` again on its own, and a merge after it; returns both job ids.
fn resubmit(c: &Cluster, out: &Path, k: u32) -> (String, String) {
    let shard_script = out.join("ktstr-shard.sbatch");
    let again = sbatch(
        c,
        &[shard_script.to_str().unwrap()],
        &[("KTSTR_SHARD_INDEX", &k.to_string())],
    );
    let merge_script = out.join("ktstr-merge.sbatch");
    let dependency = format!("--dependency=afterany:{again}");
    let merge = sbatch(c, &[&dependency, merge_script.to_str().unwrap()], &[]);
    (again, merge)
}

#[test]
fn emitted_slurm_array_and_merge_equal_one_process_and_a_cancelled_shard_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let deadline = Instant::now() + Duration::from_secs(50 * 60);
    let (code, want) = run_in_one_process(&tmp.path().join("single"));
    assert_eq!(want.len(), 6);
    let (victim, victim_cells) = largest_shard();
    assert!(victim_cells >= 2, "shard {victim} has {victim_cells} cells");

    let c = Cluster::start(2, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    let out = tmp.path().join("out");
    let (array, merge) = submit_emitted(&c, tmp.path(), &out);
    let victim_id = format!("{array}_{victim}");
    let victim_dir = out.join(format!("shard-{victim}-of-{SHARDS}"));
    cancel_mid_run(&c, &victim_id, &victim_dir, deadline, &out);
    let ids: Vec<String> = (1..=SHARDS)
        .map(|k| format!("{array}_{k}"))
        .chain([merge.clone()])
        .collect();
    wait_ended(&c, &ids, deadline, &out);
    assert_eq!(job_state(&c, &victim_id), "CANCELLED");
    // afterany: the merge ran although a shard was cancelled, and lists what it lacks (which
    // fails it: missing cells count as errors).
    assert_eq!(job_state(&c, &merge), "FAILED", "{}", slurm_logs(&out));
    let merge_log = std::fs::read_to_string(out.join(format!("slurm-merge-{merge}.log"))).unwrap();
    assert!(merge_log.contains("missing:"), "{merge_log}");
    let before = cell_lines(&victim_dir);
    assert!(!before.is_empty() && before.len() < victim_cells);
    let merged = out.join("merged");
    let first = outcomes(&merged);
    let errors = first.values().filter(|o| **o == Outcome::Error).count();
    assert_eq!(first.len(), want.len());
    assert!(errors >= victim_cells - before.len(), "{first:?}");

    // Submitted again on its own, the shard resumes: the cells stored before the cancel stay as
    // they were (not run again), the rest run.
    let (again, merge2) = resubmit(&c, &out, victim);
    wait_ended(&c, &[again, merge2.clone()], deadline, &out);
    // The merge exits as the one-process run did (1: a failed cell or a flagged regression).
    let want_state = if code == Some(0) {
        "COMPLETED"
    } else {
        "FAILED"
    };
    assert_eq!(job_state(&c, &merge2), want_state, "{}", slurm_logs(&out));
    let after = cell_lines(&victim_dir);
    assert_eq!(after.len(), victim_cells, "{}", slurm_logs(&out));
    for line in &before {
        assert!(
            after.contains(line),
            "a cell stored before the cancel was run again: {line}"
        );
    }
    // The merged report: the same cells with the same outcomes as the one-process run.
    assert_eq!(outcomes(&merged), want, "{}", slurm_logs(&out));
}
