//! The QEMU backend's run loop against a stand-in `qemu-system-x86_64` (a shell script that writes
//! to the chardev paths it is given): garbage on the result channel, a crash line followed by a
//! hang, and the watchdog. Real QEMU boots are covered by tests/tests/boot.rs; these pin the
//! orchestration paths a real guest rarely takes, in a second each.

use super::*;
use crate::cell::judge;
use crate::topology::Topology;
use ktstr_matrix::result::Outcome;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A fake QEMU running `body` with $CON, $RES and $KMSG set to the console, result and kernel
/// log chardev paths.
fn fake(dir: &Path, body: &str) -> QemuBackend {
    let script = dir.join("qemu-system-x86_64");
    let text = format!(
        "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in\n  file,id=con,path=*) CON=${{a#file,id=con,path=}};;\n  file,id=res,path=*) RES=${{a#file,id=res,path=}};;\n  file,id=kmsg,path=*) KMSG=${{a#file,id=kmsg,path=}};;\nesac; done\n{body}\n"
    );
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    QemuBackend {
        binary: script,
        machine: Machine::Pc,
        accel: Accel::Tcg,
        pvh: false,
        cpu: None,
        kernel_log: None,
    }
}

fn cfg(dir: &Path, timeout: Duration) -> VmConfig {
    VmConfig {
        kernel: "/nonexistent/k".into(),
        initramfs: "/nonexistent/i".into(),
        topology: Topology::default(),
        memory_mib: 64,
        cmdline_extra: vec![],
        console: ConsoleMode::Capture {
            log: dir.join("console.log"),
        },
        timeout,
        cpu_budget: None,
    }
}

#[test]
fn garbage_on_the_result_channel_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let be = fake(
        dir.path(),
        "echo booting > $CON; printf 'noise\\n@@KTSTR 5 00000000\\nhello\\n' > $RES",
    );
    let t = Duration::from_secs(20);
    let run = be.run(&cfg(dir.path(), t)).unwrap();
    assert_eq!(run.end, VmEnd::Shutdown);
    assert!(run.messages.is_empty());
    assert!(
        run.frame_errors.iter().any(|e| e.contains("checksum")),
        "{:?}",
        run.frame_errors
    );
    assert!(run.console_tail.contains("booting"));
    let r = judge(&run, t);
    assert_eq!(r.outcome, Outcome::Error);
    assert!(r.reason.unwrap().contains("checksum"));
}

/// The VM was killed for its crash line, [`CRASH_GRACE`] after it, not at its own end.
fn assert_killed_within_the_crash_grace(run: &VmRun) {
    assert!(
        run.wall < CRASH_GRACE + Duration::from_secs(5),
        "{:?}",
        run.wall
    );
}

#[test]
fn crash_line_then_hang_is_killed_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let be = fake(
        dir.path(),
        "echo '[ 1.0] Kernel panic - not syncing: test' > $CON; exec sleep 60",
    );
    let t = Duration::from_secs(30);
    let run = be.run(&cfg(dir.path(), t)).unwrap();
    assert_killed_within_the_crash_grace(&run);
    assert!(run.crash_line.as_deref().unwrap().contains("Kernel panic"));
    let log = std::fs::read_to_string(dir.path().join("console.log")).unwrap();
    assert!(log.contains("Kernel panic"));
    assert_eq!(judge(&run, t).outcome, Outcome::Crashed);
}

/// [`fake`] with the kernel log port (COM3, `$KMSG`) logging to `dir/kernel.log`.
fn with_kernel_log(dir: &Path, body: &str) -> QemuBackend {
    QemuBackend {
        kernel_log: Some(dir.join("kernel.log")),
        ..fake(dir, body)
    }
}

#[test]
fn with_a_kernel_log_port_crash_text_on_the_console_is_not_the_guests() {
    let dir = tempfile::tempdir().unwrap();
    // As in the nested harness: the guest's program prints another kernel's panic and carries on.
    let be = with_kernel_log(
        dir.path(),
        "echo 'inner: Kernel panic - not syncing: test' > $CON; echo booted > $KMSG; \
         sleep 5; echo done >> $CON",
    );
    let run = be.run(&cfg(dir.path(), Duration::from_secs(30))).unwrap();
    assert_eq!(run.end, VmEnd::Shutdown);
    assert!(run.wall >= Duration::from_secs(5), "{:?}", run.wall);
    assert!(run.console_tail.contains("done"), "{}", run.console_tail);
    // The only crash line is how QEMU ended (by itself, before a result), not the quoted panic.
    let line = run.crash_line.unwrap_or_default();
    assert!(line.contains("reset or powered off"), "{line}");
    assert!(!line.contains("Kernel panic"), "{line}");
    let kernel = std::fs::read_to_string(dir.path().join("kernel.log")).unwrap();
    assert_eq!(kernel, "booted\n");
}

#[test]
fn with_a_kernel_log_port_its_crash_line_ends_the_vm() {
    let dir = tempfile::tempdir().unwrap();
    let be = with_kernel_log(
        dir.path(),
        "echo '[ 1.0] Kernel panic - not syncing: test' > $KMSG; exec sleep 60",
    );
    let run = be.run(&cfg(dir.path(), Duration::from_secs(30))).unwrap();
    assert_killed_within_the_crash_grace(&run);
    assert!(run.crash_line.unwrap().contains("Kernel panic"));
}

#[test]
fn qemu_ending_by_itself_before_a_result_says_how() {
    let dir = tempfile::tempdir().unwrap();
    // A guest that resets: QEMU (-no-reboot) exits 0.
    let be = fake(dir.path(), "echo booting > $CON; exit 0");
    let t = Duration::from_secs(20);
    let run = be.run(&cfg(dir.path(), t)).unwrap();
    let line = run.crash_line.clone().unwrap_or_default();
    assert!(line.contains("reset or powered off"), "{line}");
    let r = judge(&run, t);
    assert_eq!(r.outcome, Outcome::Crashed);
    assert!(r.reason.unwrap().contains("before the agent started"));
    // QEMU itself crashing.
    let be = fake(dir.path(), "echo booting > $CON; kill -SEGV $$");
    let run = be.run(&cfg(dir.path(), t)).unwrap();
    let line = run.crash_line.unwrap_or_default();
    assert!(line.contains("died of signal 11"), "{line}");
}

#[test]
fn watchdog_kills_a_silent_vm() {
    let dir = tempfile::tempdir().unwrap();
    let be = fake(dir.path(), "exec sleep 60");
    let t = Duration::from_millis(500);
    let run = be.run(&cfg(dir.path(), t)).unwrap();
    assert_eq!(run.end, VmEnd::TimedOut);
    assert!(
        run.wall >= t && run.wall < Duration::from_secs(5),
        "{:?}",
        run.wall
    );
    assert_eq!(judge(&run, t).outcome, Outcome::Timeout);
}

#[test]
fn qemu_failing_to_start_is_a_spawn_error_with_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let be = fake(dir.path(), "echo 'qemu: could not load kernel' >&2; exit 1");
    let err = be
        .run(&cfg(dir.path(), Duration::from_secs(10)))
        .unwrap_err();
    assert!(err.to_string().contains("could not load kernel"), "{err}");
}
