//! `ktstr matrix --emit slurm` end to end on a real single-node Slurm cluster
//! (`ktstr_testbed::slurm`).

use ktstr_testbed::slurm::Cluster;
use std::time::{Duration, Instant};

/// `scontrol show job` fields of one job (kept MinJobAge after it ends; no accounting here).
fn job_state(c: &Cluster, id: &str) -> String {
    let out = c
        .command("scontrol")
        .args(["show", "job", "-o", id])
        .output()
        .expect("scontrol");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .find_map(|f| f.strip_prefix("JobState="))
        .unwrap_or("UNKNOWN")
        .to_string()
}

#[test]
fn the_cluster_runs_a_job() {
    let c = Cluster::start(2, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    let out = c
        .command("sbatch")
        .args([
            "--parsable",
            "--wrap",
            "echo hello from slurm",
            "-o",
            "/tmp/scaleout-smoke/o.txt",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}\n{}", c.logs());
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let until = Instant::now() + Duration::from_secs(60);
    while job_state(&c, &id) != "COMPLETED" {
        assert!(
            Instant::now() < until,
            "{}\n{}",
            job_state(&c, &id),
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
