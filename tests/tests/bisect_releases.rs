//! `ktstr bisect --kernels RANGE` over real 6.12.y releases: the range expands over the releases
//! this machine can have (the installed `linux-source-6.12`, the versions the Debian archive still
//! carries, fetched with `apt-get download`), the endpoints are built and measured, and the
//! bisection ends with its evidence printed, whatever it finds. Ranges in `ktstr matrix --kernels`
//! expand the same way; a range with fewer than two releases is bad input.
//!
//! In a file of its own so that no other test's VMs share the host cores while it measures.

use ktstr::bisect::record::{BisectReport, Conclusion};
use ktstr_e2e::ktstr_bin;
use std::process::Command;

/// Releases of the archive: 6.12.115 and 6.12.117 are fetched once into the source cache, 6.12.118
/// is the installed package the other tests build (its kernel is shared through the cache).
const RANGE: &str = "6.12.115..6.12.118";

#[test]
fn a_release_bisection_runs_end_to_end_and_prints_its_evidence() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(ktstr_bin())
        .args([
            "bisect",
            "--kernels",
            RANGE,
            "--config",
            "sched_ext,steal-time",
        ])
        .args(["--scenario", "steady", "--metric", "total_work_units"])
        .args([
            "--threshold",
            "10",
            "--topology",
            "1n1l1c1t",
            "--duration",
            "2s",
        ])
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("running ktstr bisect");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("--- stdout ---\n{stdout}--- stderr ---\n{stderr}");
    // The range said what it became.
    assert!(
        stderr.contains("6.12.115, 6.12.117, 6.12.118"),
        "the range's expansion is printed:\n{stderr}"
    );
    let code = run.status.code();
    assert!(
        matches!(code, Some(0) | Some(3) | Some(4)),
        "a culprit, no regression or inconclusive, not an error: {code:?}"
    );
    let text = std::fs::read_to_string(out.path().join("bisect.json")).expect("bisect.json");
    let r: BisectReport = serde_json::from_str(&text).expect("bisect.json parses");
    let ids: Vec<&str> = r.candidates.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["6.12.115", "6.12.117", "6.12.118"]);
    assert_eq!((r.good.as_str(), r.bad.as_str()), ("6.12.115", "6.12.118"));
    // The endpoints were measured with repeats; their samples and p-values are the evidence.
    let endpoints = r.endpoints.as_ref().expect("the endpoints were checked");
    let good = r
        .tested
        .iter()
        .find(|t| t.commit == "6.12.115")
        .expect("good tested");
    let bad = r
        .tested
        .iter()
        .find(|t| t.commit == "6.12.118")
        .expect("bad tested");
    for t in [good, bad] {
        assert!(t.samples.len() >= 2, "{t:?}");
        assert!(t.samples.iter().all(|s| s.is_finite() && *s > 0.0), "{t:?}");
        assert!(t.image_sha256.is_some(), "{t:?}");
    }
    assert_ne!(
        good.image_sha256, bad.image_sha256,
        "two releases, two images"
    );
    let headline = stdout.lines().last().unwrap_or("");
    match &r.conclusion {
        Conclusion::NoRegression { .. } => {
            assert_eq!(code, Some(3));
            assert!(headline.contains("no regression"), "{stdout}");
        }
        Conclusion::Culprit { .. } | Conclusion::Range { .. } => assert_eq!(code, Some(0)),
        _ => assert_eq!(code, Some(4)),
    }
    let md = std::fs::read_to_string(out.path().join("bisect.md")).unwrap();
    assert!(md.contains("6.12.115") && md.contains("6.12.118"), "{md}");
    let _ = endpoints;
}

#[test]
fn ranges_expand_in_the_matrix_and_a_range_of_one_release_is_bad_input() {
    // A dry run expands the range and surveys, fetching and building nothing.
    let run = Command::new(ktstr_bin())
        .args([
            "matrix",
            "--kernels",
            "6.12.115..6.12.118",
            "--configs",
            "sched_ext",
        ])
        .args(["--scheds", "eevdf", "--dry-run"])
        .env("KTSTR_OFFLINE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("6.12.116"), "the gap is named:\n{stderr}");
    assert!(stderr.contains("6.12.118/sched_ext"), "{stderr}");
    // 6.12.119 does not exist yet: a range ending there has only 6.12.118 (offline, nothing else).
    let run = Command::new(ktstr_bin())
        .args(["bisect", "--kernels", "6.12.118..6.12.119", "--outcome"])
        .args(["--scenario", "smoke"])
        .env("KTSTR_OFFLINE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("6.12.118..6.12.119"), "{stderr}");
    assert!(stderr.contains("widen the range"), "{stderr}");
    for bad in ["6.12.118..6.12.100", "6.1.1..6.12.2", "6.12..6.12.5"] {
        let run = Command::new(ktstr_bin())
            .args(["matrix", "--kernels", bad, "--dry-run"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains(bad), "{bad}: {stderr}");
    }
}
