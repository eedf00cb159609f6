//! `ktstr matrix` end to end: a real small matrix through the ktstr binary (real kernels, QEMU,
//! the guest agent, a real sched_ext scheduler), and resume after the ktstr process is killed.
//!
//! Kernels: Debian's prebuilt cloud kernel (no sched_ext: its scheduler cells must be skipped with
//! a reason) and the 6.12 `sched_ext+steal-time` kernel built through ktstr's kernel cache, the
//! same recipe as `ktstr_e2e::sched_ext_kernel_args`, so one cold build serves every e2e test.

use ktstr_e2e::ktstr_bin;
use ktstr_matrix::result::Outcome;
use ktstr_matrix::store;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn debian_image() -> PathBuf {
    ktstr_e2e::debian_kernel().vmlinuz.clone()
}

fn load(out: &Path) -> store::Loaded {
    store::read(&out.join(store::RESULTS_FILE)).expect("results.jsonl readable")
}

#[test]
fn real_matrix_end_to_end() {
    let deb = debian_image();
    let out = tempfile::tempdir().unwrap();
    let kernels = format!("image:{},6.12", deb.display());
    let run = Command::new(ktstr_bin())
        .args([
            "matrix",
            "--kernels",
            &kernels,
            "--configs",
            "sched_ext+steal-time",
        ])
        .args([
            "--scheds",
            "eevdf,kernel:scx_simple",
            "--scenarios",
            "steady",
        ])
        .args([
            "--topologies",
            "1n1l2c1t",
            "--repeats",
            "1",
            "--duration",
            "2s",
            "--out",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    let code = run.status.code();
    assert!(matches!(code, Some(0) | Some(1)), "exit {code:?}\n{stderr}");
    assert!(stderr.contains("plan: 4 cells"), "{stderr}");
    // stderr is a pipe here, as in CI: progress comes as plain lines (cells done/total with an
    // ETA from the cells finished so far), never as bar redraws.
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with("cells ")).collect();
    assert!(
        progress
            .iter()
            .any(|l| l.starts_with("cells 1/4 (25 %), ETA ") && l.ends_with('s')),
        "{stderr}"
    );
    assert_eq!(progress.last(), Some(&"cells 4/4 (100 %)"), "{stderr}");
    assert!(!stderr.contains('\r'), "bar redraws in a log: {stderr}");
    let loaded = load(out.path());
    assert_eq!(loaded.cells.len(), 4, "{stderr}");
    let cell = |kernel_is_image: bool, sched: &str| {
        loaded
            .cells
            .iter()
            .find(|c| c.key.kernel.starts_with("image:") == kernel_is_image && c.key.sched == sched)
            .unwrap_or_else(|| panic!("no cell {sched} image={kernel_is_image}"))
    };
    let deb_scx = cell(true, "kernel:scx_simple");
    assert_eq!(
        deb_scx.result.outcome,
        Outcome::Skipped,
        "{:?}",
        deb_scx.result.reason
    );
    assert!(
        deb_scx
            .result
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("SCHED_CLASS_EXT")
    );
    for (img, sched) in [
        (true, "eevdf"),
        (false, "eevdf"),
        (false, "kernel:scx_simple"),
    ] {
        let c = cell(img, sched);
        assert_eq!(
            c.result.outcome,
            Outcome::Pass,
            "{}: {:?}\n{}",
            c.key.label(),
            c.result.reason,
            c.result.console_tail
        );
        assert!(!c.inputs.kernel.is_empty() && !c.inputs.initramfs.is_empty());
    }
    // The scheduler really ran: the guest saw it attached.
    let sched = cell(false, "kernel:scx_simple")
        .result
        .report
        .as_ref()
        .unwrap();
    assert!(sched.scheduler.as_ref().is_some_and(|s| s.attached));
    assert_eq!(
        code,
        Some(0),
        "all cells passed or skipped, no repeats to flag: {stderr}"
    );
    // Every output, and `ktstr report DIR` re-renders them with the same verdict.
    for f in ["report.md", "report.json", "report.html", "junit.xml"] {
        assert!(out.path().join(f).is_file(), "{f}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["summary"]["skipped"], 1);
    // report.html links each booted cell's console log: every link names a file that exists.
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    let logs: Vec<&str> = json["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["evidence"]["log"].as_str())
        .collect();
    assert_eq!(logs.len(), 3, "the three cells that ran have a log");
    for log in logs {
        assert!(out.path().join(log).is_file(), "{log}");
        assert!(html.contains(&format!("<a href=\"{log}\">")), "{log}");
    }
    let again = Command::new(ktstr_bin())
        .arg("report")
        .arg(out.path())
        .output()
        .unwrap();
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // What was compared: the host, and each kernel with its release; the built kernel's final
    // .config is kept in the run directory (the prebuilt image has none).
    let pv = &json["provenance"];
    assert!(pv["host"]["cores"].as_u64().unwrap() >= 1, "{pv}");
    let kernels = pv["kernels"].as_array().unwrap();
    let built = kernels.iter().find(|k| k["spec"] == "6.12").unwrap();
    assert_eq!(built["config_recorded"], true, "{pv}");
    assert!(
        built["release"].as_str().unwrap().starts_with("6.12"),
        "{pv}"
    );
    // The image column's long spec is shown abbreviated, with the full spec once in a legend.
    let shown = String::from_utf8_lossy(&again.stdout);
    let legend = format!("= image:{}/sched_ext+steal-time", deb.display());
    assert_eq!(shown.matches(&legend).count(), 1, "{shown}");
    assert!(shown.lines().count() < 60, "{shown}");
}

#[test]
fn resume_after_kill_does_not_rerun_finished_cells() {
    let deb = debian_image();
    let out = tempfile::tempdir().unwrap();
    let kernel = format!("image:{}", deb.display());
    let args = |c: &mut Command| {
        c.args([
            "matrix",
            "--kernels",
            &kernel,
            "--configs",
            "",
            "--scheds",
            "eevdf",
        ])
        .args([
            "--scenarios",
            "smoke",
            "--topologies",
            "1n1l1c1t",
            "--repeats",
            "4",
        ])
        .args(["--duration", "1s", "--jobs", "1", "--out"])
        .arg(out.path());
    };
    let mut cmd = Command::new(ktstr_bin());
    args(&mut cmd);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill ktstr (SIGKILL: no chance to clean up) once at least one cell is stored.
    let results = out.path().join(store::RESULTS_FILE);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let cells = std::fs::read_to_string(&results)
            .map(|t| t.matches("\"record\":\"cell\"").count())
            .unwrap_or(0);
        if cells >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no cell finished in 300 s");
        assert!(
            child.try_wait().unwrap().is_none(),
            "ktstr ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = load(out.path());
    let done = before.cells.len();
    assert!(
        (1..4).contains(&done),
        "{done} cells stored before the kill"
    );

    let mut cmd = Command::new(ktstr_bin());
    args(&mut cmd);
    let run = cmd.arg("--resume").output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    // 0 or 1: what is checked here is resumption, not the scenario's verdict.
    assert!(matches!(run.status.code(), Some(0) | Some(1)), "{stderr}");
    assert!(
        stderr.contains(&format!("resume: {done} of 4 cells already done")),
        "{stderr}"
    );
    let after = load(out.path());
    assert_eq!(after.cells.len(), 4);
    // Finished cells were not run again: their records are the very same (same finish time),
    // and the file holds exactly one record per cell.
    for c in &before.cells {
        let a = after.cells.iter().find(|x| x.id == c.id).unwrap();
        assert_eq!(a.finished_at, c.finished_at);
        assert_eq!(a.result.timings, c.result.timings);
    }
    let text = std::fs::read_to_string(&results).unwrap();
    assert_eq!(text.matches("\"record\":\"cell\"").count(), 4, "{text}");
}
