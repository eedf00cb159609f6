//! Process-wide cancellation (Ctrl-C / SIGTERM). Long-running loops poll [`requested`] and tear down
//! their VMs and temp dirs, keeping what finished. The first Ctrl-C also stops the builds ktstr
//! started ([`run_contained`]: their process groups get SIGTERM at once, so a `make` or `cargo`
//! does not run on for minutes); a second Ctrl-C exits at once (130). Children started through
//! [`contain`] die with ktstr even when it is SIGKILLed (PR_SET_PDEATHSIG).

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, Once};

static CANCELLED: AtomicBool = AtomicBool::new(false);
static PRESSES: AtomicU32 = AtomicU32::new(0);
static INSTALL: Once = Once::new();
/// Process groups of running children to stop on Ctrl-C.
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Installs the Ctrl-C/SIGTERM handler once; later calls are no-ops.
pub fn install_handler() {
    INSTALL.call_once(|| {
        // An error here means another handler is installed (e.g. by a test harness); the flag
        // can still be set through `request`.
        let _ = ctrlc::set_handler(on_signal);
    });
}

/// Runs on ctrlc's own thread, not in signal context: locking and printing are fine here.
fn on_signal() {
    CANCELLED.store(true, Ordering::SeqCst);
    let presses = PRESSES.fetch_add(1, Ordering::SeqCst) + 1;
    signal_groups(libc::SIGTERM);
    if presses >= 2 {
        signal_groups(libc::SIGKILL);
        eprintln!("interrupted twice: exiting now (finished results and cache entries are kept)");
        std::process::exit(crate::exit::INTERRUPTED);
    }
}

fn signal_groups(sig: i32) {
    let groups = GROUPS.lock().unwrap_or_else(|p| p.into_inner());
    for pgid in groups.iter() {
        // SAFETY: kill(2) on a process group this process created and still waits for.
        unsafe { libc::kill(-pgid, sig) };
    }
}

/// Makes `cmd` a child that can be stopped as a whole and that dies with ktstr: its own process
/// group (a terminal's Ctrl-C reaches ktstr, which decides), and SIGKILL when ktstr dies.
pub fn contain(cmd: &mut Command) -> &mut Command {
    let parent = std::process::id() as i32;
    cmd.process_group(0);
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system
    // calls (prctl, getppid, _exit); it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // ktstr died between fork and prctl: nobody would ever stop this child.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        })
    }
}

/// A running child's process group, stopped by the first Ctrl-C while this value lives.
pub struct TrackedGroup(i32);

impl TrackedGroup {
    pub fn new(pgid: u32) -> TrackedGroup {
        let pgid = pgid as i32;
        GROUPS.lock().unwrap_or_else(|p| p.into_inner()).push(pgid);
        // A Ctrl-C that came before the group was known still stops it.
        if requested() {
            // SAFETY: as in `signal_groups`.
            unsafe { libc::kill(-pgid, libc::SIGTERM) };
        }
        TrackedGroup(pgid)
    }
}

impl Drop for TrackedGroup {
    fn drop(&mut self) {
        let mut groups = GROUPS.lock().unwrap_or_else(|p| p.into_inner());
        groups.retain(|g| *g != self.0);
    }
}

/// `cmd.status()` for a build step: contained ([`contain`]) and stopped by Ctrl-C.
pub fn run_contained(cmd: &mut Command) -> std::io::Result<ExitStatus> {
    let mut child = contain(cmd).spawn()?;
    let _tracked = TrackedGroup::new(child.id());
    child.wait()
}

pub fn requested() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

pub fn request() {
    CANCELLED.store(true, Ordering::SeqCst);
}
