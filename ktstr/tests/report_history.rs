//! `ktstr report R1 R2 ... Rn` through the binary, on stored results (no VM): the six runs of
//! matrix/tests/history.rs (made with the matrix crate's types) and a real default-matrix run
//! kept under matrix/tests/golden/default-matrix-real.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../matrix/tests/golden")
}

fn run_dir(i: usize) -> String {
    golden().join(format!("history/r{i}")).display().to_string()
}

fn ktstr(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ktstr"))
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("NO_COLOR")
        .output()
        .expect("running ktstr");
    eprintln!(
        "ktstr {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn history_of_six_runs_flags_the_change_and_writes_its_files() {
    let out = tempfile::tempdir().unwrap();
    let dirs: Vec<String> = (1..=6).map(run_dir).collect();
    let mut args = vec!["report"];
    args.extend(dirs.iter().map(String::as_str));
    let files = out.path().join("h");
    let files_arg = files.display().to_string();
    args.extend(["--out", &files_arg, "--color", "never"]);
    let o = ktstr(&args, &[]);
    assert_eq!(o.status.code(), Some(1), "a worse change point exits 1");
    let text = stdout(&o);
    assert!(text.contains("worse from R4: 16 → 20.9 ms"), "{text}");
    assert!(text.contains("better from R4"), "{text}");
    assert!(text.contains("absent from R5") && text.contains("absent from R2"));
    assert!(!text.contains("\x1b["), "--color never");
    for f in ["history.md", "history.json", "history.html"] {
        assert!(files.join(f).is_file(), "{f}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(files.join("history.json")).unwrap())
            .unwrap();
    assert_eq!(json["summary"]["worse"], 1);
    assert_eq!(json["summary"]["better"], 1);
    assert_eq!(json["runs"][3]["dir"], dirs[3].as_str());
}

#[test]
fn sort_time_orders_the_runs_by_their_start() {
    let dirs: Vec<String> = [6, 2, 4, 1, 5, 3].into_iter().map(run_dir).collect();
    let mut args = vec!["report", "--sort", "time", "--color", "always"];
    args.extend(dirs.iter().map(String::as_str));
    let o = ktstr(&args, &[]);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(text.contains(&format!("R4 {} (", run_dir(4))), "{text}");
    assert!(text.contains("worse from R4"), "{text}");
    assert!(text.contains("\x1b["), "--color always");
    // As given, the same runs have no single step: the shuffled order puts the changed runs
    // at R1, R3 and R5.
    let mut given = vec!["report"];
    given.extend(dirs.iter().map(String::as_str));
    assert!(!stdout(&ktstr(&given, &[])).contains("worse from"));
}

#[test]
fn a_real_run_three_times_has_no_change_point() {
    let real = golden().join("default-matrix-real").display().to_string();
    let o = ktstr(&["report", &real, &real, &real, "--color", "auto"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("over 3 runs, 0 change points"), "{text}");
    assert!(text.contains("kernel:scx_simple @ 6.12/sched_ext+steal-time"));
    // Not a terminal: `auto` is plain.
    assert!(!text.contains("\x1b["));
}

#[test]
fn two_runs_keep_the_pairwise_comparison() {
    let o = ktstr(
        &["report", &run_dir(1), &run_dir(4), "--color", "never"],
        &[],
    );
    let text = stdout(&o);
    assert!(!text.contains("ktstr history"), "{text}");
    // R4's 30 % worse max_gap_ms of scx_simple on 6.12 is a regression of b against a.
    assert_eq!(o.status.code(), Some(1), "{text}");
}

#[test]
fn bad_input_exits_2_before_any_work() {
    let empty = tempfile::tempdir().unwrap();
    let empty_dir = empty.path().display().to_string();
    let out = empty.path().join("out");
    let out_arg = out.display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                run_dir(1),
                empty_dir.clone(),
                run_dir(3),
                "--out".into(),
                out_arg,
            ],
            "has no results.jsonl",
        ),
        (
            vec![run_dir(1), run_dir(2), "--sort".into(), "time".into()],
            "--sort applies to a history: give 3 or more run directories",
        ),
        (
            vec![
                run_dir(1),
                run_dir(2),
                run_dir(3),
                "--alpha".into(),
                "1.5".into(),
            ],
            "--alpha 1.5",
        ),
        (
            vec![
                run_dir(1),
                run_dir(2),
                run_dir(3),
                "--baseline".into(),
                "6.1".into(),
            ],
            "--baseline applies to one run",
        ),
        (
            vec![run_dir(1), run_dir(2), run_dir(3), "--min-effect=-1".into()],
            "--min-effect",
        ),
    ];
    for (args, message) in cases {
        let mut all = vec!["report"];
        all.extend(args.iter().map(String::as_str));
        let o = ktstr(&all, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "nothing rendered for {args:?}");
    }
    assert!(!out.exists(), "no output written on bad input");
}
