//! `ktstr shell`: an interactive busybox shell on the console, or one command.

use super::reaper;
use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

const PATH: &str = "/bin:/sbin:/usr/bin:/usr/sbin";

/// Busybox applets as symlinks (`nproc`, `cat`, ...), in case the initramfs only has `sh`.
pub fn install_busybox() {
    if !Path::new("/bin/busybox").exists() {
        return;
    }
    for d in ["/bin", "/sbin", "/usr/bin", "/usr/sbin"] {
        let _ = std::fs::create_dir_all(d);
    }
    if let Ok(c) = Command::new("/bin/busybox")
        .args(["--install", "-s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        let _ = reaper::wait(c.id() as libc::pid_t, None);
    }
}

/// The console's tty (`/sys/class/tty/console/active` lists them; the last one is /dev/console).
fn console_tty() -> String {
    std::fs::read_to_string("/sys/class/tty/console/active")
        .ok()
        .and_then(|s| s.split_whitespace().last().map(|t| format!("/dev/{t}")))
        .unwrap_or_else(|| "/dev/ttyS0".into())
}

/// Read by the interactive shell at start (`ENV`).
const SHRC: &str = "/tmp/.ktstr-shrc";
/// When the interactive shell (the console's session leader) exits, the kernel hangs up the
/// console tty and drops what is still in its transmit buffer: the last lines, e.g. the echo of
/// `exit` (seen on both backends). Re-applying the tty's own settings with busybox `stty`
/// (TCSETSW, which waits for the output to drain) on the way out keeps them.
const SHRC_TEXT: &str = "trap 'stty \"$(stty -g)\" 2>/dev/null' EXIT\n";

/// Runs `/bin/sh -c cmd` (stdout/stderr on the console) or, without `cmd`, an interactive shell
/// with the console as its controlling tty (job control, Ctrl-C). Returns the exit code
/// (128+signal for a signal death).
pub fn run(cmd: Option<&str>) -> Result<i32, String> {
    let mut c = Command::new("/bin/sh");
    c.env_clear()
        .env("PATH", PATH)
        .env("HOME", "/tmp")
        .env("TERM", "linux");
    match cmd {
        Some(cmd) => {
            c.arg("-c").arg(cmd).stdin(Stdio::null());
        }
        None => {
            let tty = CString::new(console_tty()).map_err(|e| e.to_string())?;
            c.env("PS1", "ktstr# ");
            if std::fs::write(SHRC, SHRC_TEXT).is_ok() {
                c.env("ENV", SHRC);
            }
            // SAFETY: the closure runs between fork and exec and only calls async-signal-safe
            // functions (setsid, open, ioctl, dup2, close) on data prepared before the fork.
            unsafe {
                c.pre_exec(move || {
                    libc::setsid();
                    let fd = libc::open(tty.as_ptr(), libc::O_RDWR);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::ioctl(fd, libc::TIOCSCTTY, 0);
                    for t in 0..3 {
                        libc::dup2(fd, t);
                    }
                    if fd > 2 {
                        libc::close(fd);
                    }
                    Ok(())
                });
            }
        }
    }
    let child = c.spawn().map_err(|e| format!("starting /bin/sh: {e}"))?;
    let st = reaper::wait(child.id() as libc::pid_t, None).ok_or("shell vanished")?;
    Ok(reaper::exit_code(st))
}
