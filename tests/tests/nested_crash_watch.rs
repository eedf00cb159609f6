//! The nested harness's crash watch on L1 (Debian's cloud kernel under QEMU TCG): L1's console
//! carries the inner ktstr's output, L2 crash text included, so only L1's own kernel lines (its
//! kept `earlycon` on COM3, `nested::kernel_log`) may end L1. One L1 boot, no L2: the script
//! prints a quoted crash line on the console, then puts a real emergency-level line into L1's
//! kernel log through /dev/kmsg and sleeps far past the test's timeout.

use ktstr::vm::VmEnd;
use ktstr_e2e as e2e;
use ktstr_testbed::nested::{self, L1Request};
use std::time::Duration;

const QUOTED: &str = "L2 said: Kernel panic - not syncing: quoted, not from L1";
const STILL_RUNNING: &str = "KTSTR-WATCH still running";
const INJECTED: &str = "Kernel panic - not syncing: ktstr crash watch test";

#[test]
fn only_l1_own_kernel_lines_end_l1() {
    e2e::debian_kernel();
    let dir = tempfile::tempdir().expect("temp dir");
    // The sleep outlasts the crash grace (3 s): had the quoted line ended L1, the marker after it
    // would never be printed.
    let script = format!(
        "echo '{QUOTED}'\nsleep 8\necho '{STILL_RUNNING}'\n\
         echo '<0>{INJECTED}' > /dev/kmsg\nsleep 3600\n"
    );
    let log = dir.path().join("l1-console.log");
    let mut req = L1Request::new(e2e::ktstr_bin(), script, log.clone());
    req.timeout = Duration::from_secs(900);
    let out = nested::run_l1(&req).expect("L1 boot");
    assert!(
        out.console.contains(STILL_RUNNING),
        "the quoted crash line ended L1 (or L1 died before it); end {:?}, crash line {:?}\n{}",
        out.run.end,
        out.run.crash_line,
        out.run.console_tail
    );
    // Killed by the watch: without it, `sleep 3600` runs into the 900 s timeout.
    assert_eq!(out.run.end, VmEnd::Shutdown, "{}", out.run.console_tail);
    let crash = out.run.crash_line.clone().unwrap_or_default();
    assert!(crash.contains(INJECTED), "crash line {crash:?}");
    let kernel = std::fs::read_to_string(nested::kernel_log(&log)).expect("L1 kernel log");
    assert!(kernel.contains(INJECTED), "{kernel}");
    assert!(!kernel.contains(QUOTED), "{kernel}");
}
