//! `ktstr bisect` through the binary: bad input exits 2 before anything is built or booted.

use ktstr_e2e::ktstr_bin;
use std::path::Path;
use std::process::Command;

/// A tiny repository (not a kernel: every case here must fail before a build) with two commits.
fn repo(dir: &Path) -> (String, String) {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q"]);
    std::fs::write(dir.join("Makefile"), "VERSION = 6\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-qm", "first"]);
    let first = git(&["rev-parse", "HEAD"]);
    std::fs::write(dir.join("Makefile"), "VERSION = 6\nPATCHLEVEL = 12\n").unwrap();
    git(&["commit", "-qam", "second"]);
    let second = git(&["rev-parse", "HEAD"]);
    (first, second)
}

#[test]
fn bad_input_exits_2_naming_it_before_anything_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let (first, second) = repo(&src);
    let spec = |r: &str| format!("git:{}#{r}", src.display());
    let out = dir.path().join("out");
    let (good, bad) = (spec(&first), spec(&second));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--metric".into(), "no_such_metric".into()],
            "has no such metric",
        ),
        (vec!["--metric".into(), "workers".into()], "counter"),
        (
            vec![
                "--metric".into(),
                "wake_p99_us".into(),
                "--threshold".into(),
                "NaN".into(),
            ],
            "--threshold",
        ),
        (
            vec!["--outcome".into(), "--topology".into(), "0n1l1c1t".into()],
            "topology",
        ),
    ];
    for (extra, needle) in cases {
        let mut args: Vec<String> = vec![
            "bisect".into(),
            "--good".into(),
            good.clone(),
            "--bad".into(),
            bad.clone(),
            "--scenario".into(),
            "wake".into(),
            "--out".into(),
            out.display().to_string(),
        ];
        args.extend(extra);
        expect_bad_input(&args, needle);
    }
    let refs: Vec<(String, String, &str)> = vec![
        (spec("no-such-ref"), bad.clone(), "unknown ref"),
        (bad.clone(), good.clone(), "not an ancestor"),
        ("6.12".into(), bad.clone(), "not a git kernel spec"),
        (good.clone(), good.clone(), "same commit"),
    ];
    for (g, b, needle) in refs {
        let args: Vec<String> = [
            "bisect",
            "--good",
            &g,
            "--bad",
            &b,
            "--scenario",
            "wake",
            "--outcome",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.display().to_string()])
        .collect();
        expect_bad_input(&args, needle);
    }
    // Neither --metric nor --outcome: the command line says what is missing.
    let args: Vec<String> = [
        "bisect",
        "--good",
        &good,
        "--bad",
        &bad,
        "--scenario",
        "wake",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    expect_bad_input(&args, "--metric");
    assert!(
        !out.exists(),
        "bad input must not create the output directory"
    );
}

fn expect_bad_input(args: &[String], needle: &str) {
    let run = Command::new(ktstr_bin()).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{args:?}\n{stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: {needle:?} not in\n{stderr}"
    );
    assert!(
        !stderr.contains("building") && !stderr.contains("resolving"),
        "{args:?} built something:\n{stderr}"
    );
}
