//! Runs a scenario in a forked child of PID 1: its workers are then the child's children (so its
//! own waits work while PID 1 reaps orphans), and a crash of scenario code cannot take PID 1
//! down. The child sends its report back as JSON through a pipe.

use super::reaper;
use crate::protocol::{ScenarioReport, ScenarioRun};
use crate::scenario::{self, Env};
use std::io::Read;
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

/// Time beyond the duration for setup, teardown and the workers' exit grace.
const SLACK: Duration = Duration::from_secs(30);

pub fn run(run: &ScenarioRun) -> Result<ScenarioReport, String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    let duration = Duration::from_millis(run.duration_ms);
    // SAFETY: the agent is single-threaded here; the child runs the scenario and leaves with
    // _exit, never returning into the agent.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: the child owns its copy of the write end; the read end is not its business.
        unsafe { libc::close(fds[0]) };
        let res = std::panic::catch_unwind(|| {
            scenario::run(
                &run.scenario,
                &run.params,
                duration,
                &run.thresholds,
                &Env::detect(),
            )
            .map_err(|e| e.to_string())
        })
        .unwrap_or_else(|_| Err("the scenario panicked (see the console)".into()));
        let json = serde_json::to_vec(&res).unwrap_or_default();
        // SAFETY: the write end is ours; write_all-style loop over a live buffer.
        unsafe {
            let mut off = 0;
            while off < json.len() {
                let n = libc::write(fds[1], json[off..].as_ptr().cast(), json.len() - off);
                if n <= 0 {
                    break;
                }
                off += n as usize;
            }
            libc::_exit(0)
        }
    }
    // SAFETY: closing the parent's copy of the write end so that EOF arrives when the child is
    // gone; the read end becomes an owned File.
    let mut rd = unsafe {
        libc::close(fds[1]);
        libc::fcntl(fds[0], libc::F_SETFL, libc::O_NONBLOCK);
        std::fs::File::from_raw_fd(fds[0])
    };
    let deadline =
        Instant::now() + scenario::time_bound(&run.scenario, &run.params, duration) + SLACK;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut eof = false;
    let mut status = None;
    while !(eof && status.is_some()) {
        while !eof {
            match rd.read(&mut chunk) {
                Ok(0) => eof = true,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => break,
            }
        }
        if status.is_none() {
            status = reaper::try_wait(pid);
        }
        if Instant::now() > deadline {
            // SAFETY: killing our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = reaper::wait(pid, Some(Duration::from_secs(5)));
            return Err(format!(
                "scenario '{}' did not finish within {} s of its {} ms duration; killed",
                run.scenario,
                SLACK.as_secs(),
                run.duration_ms
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let st = status.unwrap_or(0);
    if libc::WIFSIGNALED(st) {
        return Err(format!(
            "the scenario process died from signal {}",
            libc::WTERMSIG(st)
        ));
    }
    let res: Result<ScenarioReport, String> = serde_json::from_slice(&buf)
        .map_err(|e| format!("scenario process sent no usable report: {e}"))?;
    res
}
