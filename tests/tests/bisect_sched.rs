//! Schedulers built from git and bisected over their commits, on a real scheduler history:
//! scx_rusty's released source as a git repository with a commit that busy-waits in every
//! `ops.enqueue` (`ktstr_e2e::sched_history`). `ktstr run` builds a ref once (a second
//! resolution runs no cargo); `ktstr bisect --sched NAME@git:REPO --good --bad` names the slowing
//! commit. Every build goes through one cargo target dir per repository, so each step after the
//! first builds incrementally.
//!
//! The tests share one build place; they run one after the other (a lock), and in a file of
//! their own so that no other test's VMs share the host cores while the bisection measures.

use ktstr::bisect::record::{BisectReport, Conclusion};
use ktstr_e2e::ktstr_bin;
use ktstr_e2e::sched_history::{self, BAD, GOOD, SLOW};
use ktstr_matrix::result::{CellResult, Outcome};
use std::process::{Command, Output};
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn show(what: &str, run: &Output) -> (String, String) {
    let (out, err) = (
        String::from_utf8_lossy(&run.stdout).into_owned(),
        String::from_utf8_lossy(&run.stderr).into_owned(),
    );
    eprintln!("--- {what} stdout ---\n{out}--- stderr ---\n{err}");
    (out, err)
}

/// One short `ktstr run` of `sched` on the shared sched_ext kernel, with its JSON result.
fn ktstr_run(sched: &str) -> (Output, Option<CellResult>) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("result.json");
    let out = Command::new(ktstr_bin())
        .args([
            "run",
            "--kernel",
            "6.12",
            "--config",
            "sched_ext,steal-time",
        ])
        .args(["--sched", sched, "--scenario", "steady", "--duration", "2s"])
        .args(["--topology", "1n1l1c1t", "--json"])
        .arg(&json)
        .output()
        .expect("running ktstr run");
    let result = std::fs::read(&json)
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("--json writes a CellResult"));
    (out, result)
}

/// The run passed with the scheduler attached (scx_rusty's ops name starts with `rusty`).
fn assert_attached(run: &Output, result: Option<CellResult>) {
    let (out, err) = show("run", run);
    assert_eq!(run.status.code(), Some(0), "{out}{err}");
    let result = result.expect("a result");
    assert_eq!(result.outcome, Outcome::Pass, "{:?}", result.reason);
    let s = result
        .report
        .and_then(|r| r.scheduler)
        .expect("a scheduler report");
    assert!(s.attached);
    assert!(
        s.ops.as_deref().is_some_and(|o| o.starts_with("rusty")),
        "{:?}",
        s.ops
    );
}

#[test]
fn a_scheduler_from_a_git_ref_runs_and_a_second_resolution_builds_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let h = sched_history::sched_history();
    let spec = h.spec(&h.main[GOOD]);
    let (first, result) = ktstr_run(&spec);
    assert_attached(&first, result);
    let (again, result) = ktstr_run(&spec);
    let err = String::from_utf8_lossy(&again.stderr).into_owned();
    assert_attached(&again, result);
    assert!(
        !err.contains("ktstr: building scx_rusty"),
        "the second resolution built again: {err}"
    );
}

#[test]
fn bad_scheduler_sources_are_refused_before_anything_builds() {
    let h = sched_history::sched_history();
    let repo = h.repo.display().to_string();
    let cases = [
        (format!("scx_rusty@git:{repo}#no-such-ref"), "unknown ref"),
        (
            "scx_rusty@git:/no/such/repo#main".to_string(),
            "/no/such/repo",
        ),
        (format!("scx_nope@git:{repo}#main"), "no Cargo.toml"),
        (format!("scx_rusty@git:{repo}#"), "empty ref"),
        ("scx_rusty@path:/no/such/dir".to_string(), "not a directory"),
    ];
    for (spec, needle) in cases {
        let t0 = std::time::Instant::now();
        let (r, _) = ktstr_run(&spec);
        let (_, err) = show(&spec, &r);
        assert_eq!(r.status.code(), Some(2), "{spec}: {err}");
        assert!(err.contains(needle), "{spec}: {err}");
        assert!(
            t0.elapsed().as_secs() < 20,
            "{spec} took {:?}",
            t0.elapsed()
        );
    }
    // A scheduler bisection with a ref that does not exist.
    let out = tempfile::tempdir().unwrap();
    let r = Command::new(ktstr_bin())
        .args([
            "bisect",
            "--sched",
            &h.repo_spec(),
            "--good",
            "nope",
            "--bad",
            "main",
        ])
        .args(["--config", "sched_ext,steal-time", "--scenario", "wake"])
        .args(["--metric", "wake_p50_us", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let (_, err) = show("bisect with a bad ref", &r);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn bisect_names_the_commit_that_slowed_the_scheduler() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let h = sched_history::sched_history();
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(ktstr_bin())
        .args(["bisect", "--sched", &h.repo_spec()])
        .args([
            "--good",
            &h.main[GOOD],
            "--bad",
            &h.main[BAD],
            "--first-parent",
        ])
        .args(["--kernel", "6.12", "--config", "sched_ext,steal-time"])
        .args([
            "--scenario",
            "wake",
            "--metric",
            "wake_p50_us",
            "--threshold",
            "20",
        ])
        .args(["--topology", "1n1l1c1t", "--duration", "2s", "--out"])
        .arg(out.path())
        .output()
        .expect("running ktstr bisect");
    let (stdout, _) = show("bisect", &run);
    assert_eq!(run.status.code(), Some(0), "{stdout}");
    let text = std::fs::read_to_string(out.path().join("bisect.json")).unwrap();
    let r: BisectReport = serde_json::from_str(&text).unwrap();
    match &r.conclusion {
        Conclusion::Culprit { commit, .. } => assert_eq!(commit, &h.main[SLOW], "{stdout}"),
        other => panic!("expected the slowing commit, got {other:?}"),
    }
    assert!(stdout.contains(&h.main[SLOW][..12]), "{stdout}");
    // Every candidate ran the fixed kernel with its own scheduler commit.
    assert_eq!(r.template.kernel.as_deref(), Some("6.12"));
    assert!(r.candidates.iter().all(|c| c.spec == h.spec(&c.id)));
    // Builds beyond the endpoints stay within ceil(log2 N) + 3, and a step's scheduler build
    // time is recorded.
    assert!(r.builds <= r.log2_bound + 3, "{} builds", r.builds);
    assert!(r.tested.iter().any(|t| t.build_s.is_some()), "{text}");
}
