//! `ktstr bisect` on a real kernel history: Debian's 6.12 source as a git repository with a series
//! of commits on top (`ktstr_e2e::kernel_history`): one busy-waits in `try_to_wake_up()`, one does
//! not build. The bisection must name the slowing commit, skip the broken one, and build no more
//! than ceil(log2 N) + 3 kernels beyond the endpoints; a history without a regression must end
//! with "no regression between the endpoints".
//!
//! In a file of its own so that no other test's VMs share the host cores while it measures.

use ktstr::bisect::record::{BisectReport, Conclusion};
use ktstr_e2e::kernel_history::{self, KernelHistory};
use ktstr_e2e::ktstr_bin;
use std::path::Path;
use std::process::{Command, Output};

/// The cell every commit runs: EEVDF (the kernel's own scheduler is what the history changes) on
/// one vCPU, so two cells run side by side on a 2-core host.
/// `extra` goes before `--out` (e.g. `--resume`).
fn bisect(h: &KernelHistory, good: &str, bad: &str, out: &Path, extra: &[&str]) -> Output {
    let run = bisect_command(h, good, bad, out, extra)
        .output()
        .expect("running ktstr bisect");
    eprintln!(
        "--- stdout ---\n{}--- stderr ---\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    run
}

fn bisect_command(h: &KernelHistory, good: &str, bad: &str, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(ktstr_bin());
    cmd.args(["bisect", "--good", &h.spec(good), "--bad", &h.spec(bad)])
        .args(["--first-parent", "--config", "sched_ext,steal-time"])
        .args([
            "--scenario",
            "wake",
            "--metric",
            "wake_p50_us",
            "--threshold",
            "20",
        ])
        .args(["--topology", "1n1l1c1t", "--duration", "2s"])
        .args(extra)
        .arg("--out")
        .arg(out);
    cmd
}

fn report(out: &Path) -> BisectReport {
    let text = std::fs::read_to_string(out.join("bisect.json")).expect("bisect.json");
    serde_json::from_str(&text).expect("bisect.json parses")
}

#[test]
fn bisect_names_the_slowing_commit_and_skips_the_broken_one() {
    let h = kernel_history::kernel_history();
    let out = tempfile::tempdir().unwrap();
    let run = bisect(h, h.good(), h.bad(), out.path(), &[]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{stdout}");
    let r = report(out.path());
    match &r.conclusion {
        Conclusion::Culprit {
            commit, suspicious, ..
        } => {
            assert_eq!(commit, h.slow(), "{stdout}");
            assert_eq!(suspicious, &None);
        }
        other => panic!("expected the slowing commit, got {other:?}"),
    }
    assert!(
        stdout.contains(&format!("first bad commit: {}", h.slow())),
        "{stdout}"
    );
    let n = r.candidates.len() - 2;
    let bound = (n as f64).log2().ceil() as u32 + 3;
    assert!(r.builds <= bound, "{} builds > {bound}", r.builds);
    // The broken commit lies on the search's path: it is skipped with the build failure as the
    // reason, never called good or bad.
    let broken = r
        .tested
        .iter()
        .find(|t| t.commit == h.broken())
        .expect("the broken commit was tried");
    assert!(broken.verdict.is_none(), "{broken:?}");
    assert!(
        broken.untestable.as_deref().unwrap_or("").contains("build"),
        "{broken:?}"
    );
    // Every step was journaled as it happened, and the reports were written.
    let journal = std::fs::read_to_string(out.path().join("bisect.jsonl")).unwrap();
    assert!(journal.lines().count() >= r.tested.len());
    let md = std::fs::read_to_string(out.path().join("bisect.md")).unwrap();
    assert!(md.contains(&h.slow()[..12]), "{md}");
    assert!(
        std::fs::read_to_string(out.path().join("bisect.html"))
            .unwrap()
            .contains("<svg")
    );

    // --resume on a finished bisection replays it from the stored cells and cached kernels.
    let again = bisect(h, h.good(), h.bad(), out.path(), &["--resume"]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{stderr}");
    assert_eq!(report(out.path()).conclusion, r.conclusion);
    // The matrix progress prints `[done/total] outcome label` for every cell that ran, and the
    // kernel build its phases (`kernel: build`).
    let booted = stderr.lines().filter(|l| is_cell_line(l)).count();
    assert_eq!(booted, 0, "a resumed bisection ran cells again:\n{stderr}");
    assert!(
        !stderr.contains("kernel: build"),
        "a resumed bisection built again:\n{stderr}"
    );
}

/// `[3/8] pass    eevdf @ ...`
fn is_cell_line(l: &str) -> bool {
    l.strip_prefix('[')
        .and_then(|r| r.split_once("] "))
        .and_then(|(n, _)| n.split_once('/'))
        .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
}

#[test]
fn a_history_without_a_regression_says_so() {
    let h = kernel_history::kernel_history();
    let out = tempfile::tempdir().unwrap();
    let calm_tip = h.calm.last().expect("the calm branch");
    let run = bisect(h, h.good(), calm_tip, out.path(), &[]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("no regression between the endpoints"),
        "{stdout}"
    );
    assert!(matches!(
        report(out.path()).conclusion,
        Conclusion::NoRegression { .. }
    ));
}

/// Ctrl-C in the middle of a bisection keeps every finished step, and `--resume` (what a job
/// engine's requeue after a preemption runs) ends with the same culprit without redoing them.
#[test]
fn an_interrupted_bisection_resumes_to_the_same_culprit() {
    let h = kernel_history::kernel_history();
    let out = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(out.path().join("first-run.log")).unwrap();
    let mut child = bisect_command(h, h.good(), h.bad(), out.path(), &[])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting ktstr bisect");
    // Interrupted once both endpoints are journaled, i.e. in the middle of the search.
    let journal = out.path().join("bisect.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1800);
    let lines = |p: &Path| std::fs::read_to_string(p).map_or(0, |t| t.lines().count());
    while lines(&journal) < 2 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "ended before its endpoints were done"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no endpoints within 30 min"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // SAFETY: kill(2) on the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let first = std::fs::read_to_string(out.path().join("first-run.log")).unwrap();
    assert_eq!(status.code(), Some(130), "{first}");
    assert!(
        first.contains("--resume"),
        "the interruption says how to continue:\n{first}"
    );
    let kept = std::fs::read_to_string(&journal).unwrap();
    assert!(kept.lines().count() >= 2);

    let again = bisect(h, h.good(), h.bad(), out.path(), &["--resume"]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert_eq!(again.status.code(), Some(0), "{stdout}");
    match &report(out.path()).conclusion {
        Conclusion::Culprit { commit, .. } => assert_eq!(commit, h.slow()),
        other => panic!("expected the slowing commit, got {other:?}"),
    }
    let after = std::fs::read_to_string(&journal).unwrap();
    assert!(
        after.starts_with(&kept),
        "the resumed run appends, it does not rewrite"
    );
}
