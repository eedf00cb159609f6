//! Stopping ktstr in the middle of a kernel build: one Ctrl-C (SIGINT) ends it with exit 130
//! within seconds and stops the `make` it started; a SIGKILL of ktstr takes its `make` with it
//! (PR_SET_PDEATHSIG), so nothing keeps building for nobody.
//!
//! The build is of a config no other test uses, so it is never cached: ktstr is stopped while
//! it configures (make runs from the first seconds), and nothing is left in the cache.

use ktstr_e2e::{ktstr_bin, pid_alive};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A kernel build that is never in the cache (it is always stopped before it finishes).
fn start_build() -> Child {
    Command::new(ktstr_bin())
        .args([
            "kernel",
            "build",
            "6.12",
            "--config",
            "sched_ext,CONFIG_LOG_BUF_SHIFT=13",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ktstr")
}

/// Pids of `make` processes whose parent is `parent`.
fn make_children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let ppid: Option<u32> = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if head.ends_with("(make") && ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// Waits (polling) until ktstr runs a make, and returns its pids.
fn wait_for_make(ktstr: &mut Child) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let makes = make_children(ktstr.id());
        if !makes.is_empty() {
            return makes;
        }
        assert!(
            ktstr.try_wait().unwrap().is_none(),
            "ktstr ended before it ran make"
        );
        assert!(Instant::now() < deadline, "no make within 300 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_gone(pids: &[u32], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if pids.iter().all(|p| !pid_alive(*p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn one_ctrl_c_stops_a_kernel_build_with_exit_130() {
    let mut ktstr = start_build();
    let makes = wait_for_make(&mut ktstr);
    // SAFETY: kill(2) on the child we spawned.
    unsafe { libc::kill(ktstr.id() as i32, libc::SIGINT) };
    let t0 = Instant::now();
    let out = ktstr.wait_with_output().unwrap();
    let took = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} to stop:\n{stderr}"
    );
    assert!(
        wait_gone(&makes, Duration::from_secs(5)),
        "make still runs: {makes:?}"
    );
}

#[test]
fn a_killed_ktstr_takes_its_make_with_it() {
    let mut ktstr = start_build();
    let makes = wait_for_make(&mut ktstr);
    ktstr.kill().unwrap();
    let _ = ktstr.wait();
    assert!(
        wait_gone(&makes, Duration::from_secs(5)),
        "make outlived a SIGKILLed ktstr: {makes:?}"
    );
}
