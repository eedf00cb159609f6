//! Bad input and Ctrl-C without a VM: each case is refused (exit 2) or stopped (exit 130)
//! before anything is built or booted, so these tests take seconds.

use ktstr_e2e::ktstr_bin;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn ktstr_in(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(ktstr_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("ktstr runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_cell_larger_than_the_host_memory_is_refused_before_any_build() {
    let dir = tempfile::tempdir().unwrap();
    // Within the 1 TiB guest-size bound, far beyond any CI host's memory.
    std::fs::write(
        dir.path().join("m.toml"),
        "kernels = [\"6.12\"]\nscheds = [\"eevdf\"]\nmemory_mib = 1000000\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = ktstr_in(
        dir.path(),
        &["matrix", "--file", "m.toml", "--out", out.to_str().unwrap()],
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("memory_mib = 1000000") && e.contains("m.toml"),
        "{e}"
    );
    assert!(e.contains("MemAvailable"), "{e}");
    assert!(!e.contains("plan:"), "refused before the plan: {e}");
    assert!(!out.exists(), "no output directory for refused input");
}

/// Runs `ktstr args`, killing it if it has not ended within `bound` (a hang fails the test
/// instead of wedging it).
fn ktstr_bounded(dir: &std::path::Path, args: &[&str], bound: Duration) -> Output {
    let child = Command::new(ktstr_bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ktstr runs");
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(bound) {
        Ok(out) => out.expect("ktstr output"),
        Err(_) => {
            // SAFETY: kill(2) of the child this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("ktstr {args:?} still ran after {bound:?}");
        }
    }
}

#[test]
fn a_fifo_is_refused_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // Nobody ever writes to the FIFO: reading it would block forever.
    let cases: [&[&str]; 5] = [
        &[
            "run",
            "--kernel",
            "6.12",
            "--config",
            "sched_ext",
            "--sched",
            "./fifo",
        ],
        &["matrix", "--dry-run", "--scheds", "./fifo"],
        &["matrix", "--file", "fifo"],
        &[
            "run",
            "--kernel",
            "6.12",
            "--config",
            "sched_ext",
            "-i",
            "fifo",
        ],
        // Opening a FIFO for writing blocks too.
        &[
            "run",
            "--kernel",
            "6.12",
            "--config",
            "sched_ext",
            "--console-log",
            "fifo",
        ],
    ];
    for args in cases {
        let o = ktstr_bounded(dir.path(), args, Duration::from_secs(60));
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains("fifo"), "{args:?} names the input: {e}");
    }
}

/// Holds every kernel-cache lock a first `kernel build` of a (deliberately unbuildable) tree
/// took, starts the same build again, and sends one SIGINT once it says that it waits.
#[test]
fn one_ctrl_c_ends_a_wait_for_a_kernel_cache_lock() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("Makefile"), "VERSION = 6\nPATCHLEVEL = 12\n").unwrap();
    std::fs::write(src.join("Kconfig"), "").unwrap();
    let cache = dir.path().join("cache");
    let spec = format!("path:{}", src.display());
    let build = || {
        let mut c = Command::new(ktstr_bin());
        c.args(["kernel", "build", &spec])
            .env("KTSTR_CACHE_DIR", &cache)
            .stdin(Stdio::null());
        c
    };
    // The first build fails at `make tinyconfig` in well under a second; its locks stay as files.
    let first = build().output().unwrap();
    assert!(!first.status.success());
    let locks_dir = cache.join("kernels/.locks");
    let held: Vec<std::fs::File> = std::fs::read_dir(&locks_dir)
        .unwrap()
        .map(|e| {
            let f = std::fs::File::options()
                .write(true)
                .open(e.unwrap().path())
                .unwrap();
            // SAFETY: flock(2) on a file descriptor this test owns.
            assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
            f
        })
        .collect();
    assert!(!held.is_empty(), "the first build took a lock");

    let mut child = build().stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let waiting = Instant::now() + Duration::from_secs(60);
    loop {
        let line = rx
            .recv_timeout(waiting.saturating_duration_since(Instant::now()))
            .expect("ktstr says it waits for the lock");
        if line.contains("waiting for it") {
            break;
        }
    }
    let t0 = Instant::now();
    // SAFETY: kill(2) of the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            panic!("ktstr still waited for the lock 10 s after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = t0.elapsed();
    assert_eq!(status.code(), Some(130));
    assert!(took < Duration::from_secs(2), "stopped after {took:?}");
    drop(held);
}

/// Every numeric flag out of its range: exit 2 naming the flag, before anything is built (no
/// case here gets as far as resolving a kernel).
#[test]
fn out_of_range_numbers_are_refused_naming_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let run = ["run", "--kernel", "6.12", "--config", "sched_ext"];
    let with = |base: &[&'static str], more: &[&'static str]| -> Vec<&'static str> {
        base.iter().chain(more).copied().collect()
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (with(&run, &["--duration", "1e23s"]), "--duration"),
        (with(&run, &["--duration", "nan"]), "--duration"),
        (with(&run, &["--timeout", "0s"]), "--timeout"),
        (with(&run, &["--cpu-budget", "0"]), "--cpu-budget 0"),
        (with(&run, &["--cpu-budget", "4000000"]), "--cpu-budget"),
        (with(&run, &["--memory-mib", "0"]), "--memory-mib"),
        (with(&run, &["--memory-mib", "4000000"]), "--memory-mib"),
        (with(&run, &["--memory-mib", "1000000"]), "--memory-mib"),
        (
            with(&run, &["--scenario", "steady", "--param", "workers=nan"]),
            "workers",
        ),
        (
            vec!["matrix", "--dry-run", "--min-effect", "nan"],
            "--min-effect",
        ),
        (
            vec!["matrix", "--dry-run", "--min-effect", "1e23"],
            "--min-effect",
        ),
        (
            vec!["matrix", "--dry-run", "--repeats", "4000000"],
            "repeats",
        ),
        (vec!["matrix", "--dry-run", "--jobs", "0"], "jobs"),
        (vec!["matrix", "--dry-run", "--jobs", "4000000"], "jobs"),
        (
            vec!["matrix", "--dry-run", "--duration", "1e23s"],
            "duration",
        ),
        (vec!["matrix", "--dry-run", "--shard", "3/2"], "--shard"),
        (
            vec!["matrix", "--emit", "slurm", "--shards", "4000000"],
            "--shards",
        ),
        (
            vec!["kernel", "build", "6.12", "--jobs", "4000000"],
            "--jobs",
        ),
        (
            vec![
                "bisect",
                "--kernels",
                "6.12,6.12",
                "--scenario",
                "steady",
                "--metric",
                "x",
                "--threshold",
                "nan",
            ],
            "--threshold",
        ),
    ];
    for (args, names) in cases {
        let o = ktstr_bounded(dir.path(), &args, Duration::from_secs(60));
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(names), "{args:?} names {names}: {e}");
        assert!(!e.contains("panicked"), "{args:?}: {e}");
    }
}
