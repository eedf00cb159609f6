//! The boot path end to end on Debian's prebuilt cloud kernel (6.12, no sched_ext) under QEMU:
//! `ktstr shell --exec` output and exit status, a script piped into the interactive shell and a
//! terminal typing into it, `ktstr run --scenario smoke`, topology as the guest sees it, a kernel
//! panic and the watchdog as results with evidence, no QEMU left behind (watchdog, Ctrl-C, ktstr
//! killed), and bad input refused with exit 2 before any VM.

use ktstr_e2e as e2e;
use ktstr_matrix::result::{CellResult, Outcome};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn kernel() -> &'static str {
    e2e::debian_kernel_args()[1]
}

fn shell(extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["shell", "--kernel", kernel()];
    args.extend_from_slice(extra);
    let out = e2e::ktstr(&args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn read_result(p: &Path) -> CellResult {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).expect("CellResult JSON")
}

#[test]
fn exec_prints_the_requested_cpu_count() {
    let (code, stdout, _) = shell(&["--topology", "1n1l3c1t", "--exec", "nproc"]);
    assert_eq!(code, 0);
    // The kernel is quiet: stdout is the command's output alone.
    assert_eq!(stdout.trim(), "3", "stdout: {stdout:?}");
}

#[test]
fn exec_exits_with_the_commands_status() {
    let (code, _, _) = shell(&["--exec", "exit 3"]);
    assert_eq!(code, 3);
}

/// `ktstr shell` (interactive) with stdin, stdout and stderr piped.
fn piped_shell() -> Child {
    Command::new(e2e::ktstr_bin())
        .args(["shell", "--kernel", kernel(), "--timeout", "120s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A script piped into the interactive shell (stdin not a terminal) reaches the guest's shell
/// only once it runs, not the half-set-up UART at boot: the guest evaluates the arithmetic and
/// the shell's exit status is ktstr's.
#[test]
fn piped_script_reaches_the_interactive_shell() {
    use std::io::Write;
    let out = e2e::once_more_on_tcg_int3(|| {
        let mut child = piped_shell();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"echo KTSTR-TTY $((6*7))\nexit 3\n")
            .unwrap();
        child.wait_with_output().unwrap()
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.lines().any(|l| l.trim() == "KTSTR-TTY 42"),
        "stdout: {stdout:?}"
    );
    assert_eq!(out.status.code(), Some(3));
}

/// The shell's last output survives its exit. Ctrl-S (XOFF) holds the guest console's output
/// in the tty's buffer while `echo; exit` runs; Ctrl-Q releases it 4 s later. Without the
/// agent's drain-on-exit, the kernel's hangup of the console at the shell's exit drops the
/// held line. A slow guest that has
/// not exited by then passes either way; the test cannot pass with output lost at exit.
#[test]
fn held_output_survives_the_shells_exit() {
    use std::io::Write;
    let out = e2e::once_more_on_tcg_int3(|| {
        let mut child = piped_shell();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"\x13echo TAIL-MARK; exit 3\n").unwrap();
        std::thread::sleep(Duration::from_secs(4));
        // The guest may be gone already (a broken pipe is then the expected outcome).
        let _ = stdin.write_all(b"\x11");
        drop(stdin);
        child.wait_with_output().unwrap()
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.trim() == "TAIL-MARK"),
        "stdout: {stdout:?}"
    );
    assert_eq!(out.status.code(), Some(3));
}

/// `ktstr shell` on a real terminal (a pty from util-linux `script`): QEMU's stdio console, no
/// socket in between. Like a person, the test types only once the guest's prompt is shown; the
/// guest evaluates the arithmetic and the shell's exit status comes back through ktstr and script.
#[test]
fn a_terminal_reaches_the_interactive_shell() {
    let (status, text) = e2e::once_more_if_tcg_int3(type_into_a_terminal, |(_, t)| t.clone());
    eprintln!("{text}");
    assert!(
        text.lines().any(|l| l.trim() == "KTSTR-TTY 42"),
        "terminal output: {text:?}"
    );
    assert_eq!(status, Some(3), "terminal output: {text:?}");
}

/// One `ktstr shell` in `script`'s pty, typed into: its exit status (None if the expected text
/// never came) and everything the terminal showed.
fn type_into_a_terminal() -> (Option<i32>, String) {
    use std::io::{Read, Write};
    let cmd = format!(
        "{} shell --kernel {} --timeout 120s",
        e2e::ktstr_bin().display(),
        kernel()
    );
    let mut child = Command::new("script")
        .args(["--quiet", "--return", "--command", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux script");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(110);
    // Typed as a person would: each line once the previous answer is on the screen.
    let mut stdin = child.stdin.take().unwrap();
    for (wait_for, line) in [
        ("ktstr# ", &b"echo KTSTR-TTY $((6*7))\r"[..]),
        ("KTSTR-TTY 42", b"exit 3\r"),
    ] {
        while !String::from_utf8_lossy(&seen).contains(wait_for) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(bytes) => seen.extend(bytes),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let text = String::from_utf8_lossy(&seen).into_owned();
                    return (None, format!("{text}\n(no {wait_for:?} came)"));
                }
            }
        }
        stdin.write_all(line).unwrap();
    }
    let status = child.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    seen.extend(rx.try_iter().flatten());
    (status.code(), String::from_utf8_lossy(&seen).into_owned())
}

#[test]
fn two_llcs_show_as_two_packages() {
    let (code, stdout, _) = shell(&[
        "--topology",
        "1n2l2c1t",
        "--exec",
        "nproc; cat /sys/devices/system/cpu/cpu*/topology/physical_package_id | sort -u | wc -l",
    ]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    assert_eq!(lines, ["4", "2"], "stdout: {stdout:?}");
}

#[test]
fn two_nodes_show_as_two_numa_nodes() {
    let (code, stdout, _) = shell(&[
        "--topology",
        "2n1l1c1t",
        "--exec",
        "cat /sys/devices/system/node/node1/cpulist",
    ]);
    assert_eq!(code, 0);
    assert_eq!(stdout.trim(), "1", "stdout: {stdout:?}");
}

/// A dynamically linked host binary runs in the guest: its shared-library closure (here libc,
/// libselinux, libpcre2 and the ELF interpreter) came along, at the default and at a custom path.
#[test]
fn included_dynamic_binary_runs_with_its_libraries() {
    let (code, stdout, _) = shell(&[
        "-i",
        "/bin/ls",
        "-i",
        "/bin/ls:/opt/tools/myls",
        "--exec",
        "/ktstr/files/ls /ktstr/files && /opt/tools/myls -d /opt/tools",
    ]);
    assert_eq!(code, 0, "stdout: {stdout}");
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    assert_eq!(lines, ["ls", "/opt/tools"], "stdout: {stdout:?}");
}

#[test]
fn run_smoke_gives_every_worker_work() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let out = e2e::ktstr(&[
        "run",
        "--kernel",
        kernel(),
        "--scenario",
        "smoke",
        "--duration",
        "2s",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let r = read_result(&json);
    assert_eq!(r.outcome, Outcome::Pass, "{r:#?}");
    let sc = r
        .report
        .as_ref()
        .and_then(|g| g.scenario.as_ref())
        .expect("scenario report");
    assert_eq!(sc.name, "smoke");
    assert!(!sc.workers.is_empty());
    for w in &sc.workers {
        assert!(w.work_units > 0, "worker {} did no work: {sc:#?}", w.id);
    }
    let (agent, result) = (
        r.timings.to_agent_ms.unwrap(),
        r.timings.to_result_ms.unwrap(),
    );
    assert!(
        agent < result && result <= r.timings.wall_ms,
        "{:?}",
        r.timings
    );
    // The table names the outcome, and the console log it names is kept in a per-run directory
    // of the cache, next to the result.
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("pass"));
    let log = table
        .lines()
        .filter(|l| l.contains("console"))
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
        .map(Path::new)
        .unwrap_or_else(|| panic!("no console path in {table}"));
    let dir = log.parent().unwrap();
    assert_eq!(
        dir.parent().and_then(Path::file_name),
        Some("runs".as_ref()),
        "{}",
        log.display()
    );
    let console = std::fs::read_to_string(log).unwrap();
    assert!(console.contains("Linux version"), "{console}");
    assert_eq!(read_result(&dir.join("result.json")).outcome, Outcome::Pass);
}

#[test]
fn kernel_panic_is_crashed_with_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let (code, _, stderr) = shell(&[
        "--exec",
        "echo c > /proc/sysrq-trigger",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    let r = read_result(&json);
    assert_eq!(r.outcome, Outcome::Crashed, "{r:#?}");
    assert!(
        r.reason.as_deref().unwrap_or("").contains("Kernel panic"),
        "{r:#?}"
    );
    assert!(r.console_tail.contains("sysrq"), "tail: {}", r.console_tail);
    assert!(stderr.contains("crashed"));
}

/// Starts `ktstr shell --exec 'sleep 1000'` and waits until its QEMU is running.
// The child is returned to the caller, which waits for it; clippy cannot see across the return.
#[allow(clippy::zombie_processes)]
fn start_sleeper(extra: &[&str], json: &Path) -> (Child, u32) {
    let mut child = Command::new(e2e::ktstr_bin())
        .args([
            "shell",
            "--kernel",
            kernel(),
            "--exec",
            "sleep 1000",
            "--json",
        ])
        .arg(json)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(q) = e2e::qemu_children(child.id()).first() {
            return (child, *q);
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no qemu appeared within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_gone(pid: u32, within: Duration) {
    let start = Instant::now();
    while e2e::pid_alive(pid) {
        assert!(start.elapsed() < within, "qemu {pid} still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn watchdog_times_out_and_leaves_no_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let (mut child, qemu) = start_sleeper(&["--timeout", "25s"], &json);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(!e2e::pid_alive(qemu), "qemu {qemu} outlived its cell");
    let r = read_result(&json);
    assert_eq!(r.outcome, Outcome::Timeout, "{r:#?}");
    assert!(r.timings.wall_ms >= 25_000.0);
    assert!(!r.console_tail.is_empty() || r.reason.is_some());
}

#[test]
fn ctrl_c_and_kill_leave_no_qemu() {
    let dir = tempfile::tempdir().unwrap();
    // Ctrl-C: ktstr kills and reaps QEMU, then exits. (--cpu-budget 1 confines QEMU to 1 CPU.)
    let (mut child, qemu) = start_sleeper(&["--cpu-budget", "1"], &dir.path().join("a.json"));
    let status = std::fs::read_to_string(format!("/proc/{qemu}/status")).unwrap();
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim();
    assert!(
        allowed.parse::<u32>().is_ok(),
        "one CPU allowed, got {allowed:?}"
    );
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let start = Instant::now();
    let status = child.wait().unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(status.code(), Some(130), "Ctrl-C exits 128+SIGINT");
    wait_gone(qemu, Duration::from_secs(1));
    // ktstr SIGKILLed: QEMU's parent-death signal takes it down.
    let (mut child, qemu) = start_sleeper(&[], &dir.path().join("b.json"));
    child.kill().unwrap();
    child.wait().unwrap();
    wait_gone(qemu, Duration::from_secs(5));
}

/// Bad input: exit 2, one line naming the input, no VM and no kernel build (so it is fast). A
/// ktstr still running after the limit is killed with its process group (a build's `make` too).
fn refused(args: &[&str], envs: &[(&str, &str)], names: &str) {
    use std::os::unix::process::CommandExt;
    const LIMIT: Duration = Duration::from_secs(5);
    let start = Instant::now();
    let mut c = Command::new(e2e::ktstr_bin());
    c.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (k, v) in envs {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > LIMIT {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!("ktstr {args:?} still running after {LIMIT:?} (building or booting?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("$ ktstr {args:?} {envs:?}\n{stderr}");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains(names), "{stderr}");
}

#[test]
fn bad_input_exits_2_before_booting() {
    let k = kernel();
    refused(
        &[
            "shell",
            "--kernel",
            "/nonexistent/bzImage",
            "--exec",
            "true",
        ],
        &[],
        "/nonexistent/bzImage",
    );
    refused(
        &["shell", "--kernel", "/etc/passwd", "--exec", "true"],
        &[],
        "not a kernel image",
    );
    refused(
        &["run", "--kernel", k, "--topology", "1n2x"],
        &[],
        "--topology",
    );
    refused(
        &["shell", "--kernel", k, "--topology", "0n1l1c1t"],
        &[],
        "--topology",
    );
    refused(
        &["run", "--kernel", k, "--duration", "1s"],
        &[("PATH", "/nonexistent")],
        "apt-get install qemu-system-x86",
    );
    refused(
        &["run", "--kernel", k, "--duration", "1s"],
        &[("KTSTR_CACHE_DIR", "/etc/passwd/cache")],
        "KTSTR_CACHE_DIR",
    );
    refused(&["run", "--kernel", k, "--scenario", "nope"], &[], "nope");
    refused(
        &["shell", "--kernel", k, "--memory-mib", "0"],
        &[],
        "--memory-mib",
    );
    refused(
        &[
            "run",
            "--kernel",
            k,
            "--topology",
            "4n1l1c1t",
            "--memory-mib",
            "200",
        ],
        &[],
        "--memory-mib",
    );
    refused(
        &[
            "run",
            "--kernel",
            k,
            "--console-log",
            "/proc/nope/console.log",
        ],
        &[],
        "--console-log",
    );
    refused(
        &["shell", "--kernel", k, "-i", "/nonexistent/file"],
        &[],
        "/nonexistent/file",
    );
}

/// A kernel spec that would need a build (no cached kernel has this inline item) does not delay
/// the checks of the other inputs: they are refused in seconds, before any build starts.
#[test]
fn bad_input_is_refused_before_a_kernel_build() {
    let unbuilt = "sched_ext,CONFIG_LOG_BUF_SHIFT=13";
    refused(
        &[
            "shell",
            "--kernel",
            "6.12",
            "--config",
            unbuilt,
            "--topology",
            "9x",
            "--exec",
            "true",
        ],
        &[],
        "--topology",
    );
    refused(
        &[
            "shell",
            "--kernel",
            "6.12",
            "--config",
            unbuilt,
            "-i",
            "/nonexistent/file",
        ],
        &[],
        "/nonexistent/file",
    );
    refused(
        &[
            "run",
            "--kernel",
            "6.12",
            "--config",
            unbuilt,
            "--memory-mib",
            "1",
        ],
        &[],
        "--memory-mib",
    );
    refused(
        &[
            "shell",
            "--kernel",
            "6.12",
            "--config",
            "sched_exd",
            "--exec",
            "true",
        ],
        &[],
        "sched_exd",
    );
    refused(
        &["shell", "--kernel", "6.12.x", "--topology", "9x"],
        &[],
        "--kernel 6.12.x",
    );
    // `-i` guest paths: one that climbs out of the image, one that takes ktstr's /init, and two
    // inputs at one place are refused with the other inputs, not after the kernel build.
    for (include, names) in [
        (
            "/bin/true:/opt/../../etc/x",
            "-i /bin/true:/opt/../../etc/x",
        ),
        ("/bin/true:/init", "guest agent"),
    ] {
        refused(
            &[
                "shell", "--kernel", "6.12", "--config", unbuilt, "-i", include, "--exec", "true",
            ],
            &[],
            names,
        );
    }
    refused(
        &[
            "shell",
            "--kernel",
            "6.12",
            "--config",
            unbuilt,
            "-i",
            "/bin/true:/opt/t",
            "-i",
            "/bin/false:/opt/t",
            "--exec",
            "true",
        ],
        &[],
        "-i /bin/true",
    );
}
