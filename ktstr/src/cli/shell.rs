//! `ktstr shell`: boot a kernel into a busybox shell on the terminal, or run one command in the
//! guest and exit with its status.
//!
//! Interactive: COM1 (console) is the user's terminal (Ctrl-C goes to the guest, Ctrl-A X quits
//! QEMU). `--exec`: the console is captured like a `run` cell (log, crash detection, watchdog) and
//! followed live onto stdout; the kernel is quiet (`loglevel=1`) unless `--dmesg`, so stdout is the
//! command's output (plus any panic).

use super::bad_input;
use super::run::{parse_duration, write_json};
use super::vm_args::{VmArgs, announce};
use crate::cell::{self, Cell, Workload};
use crate::initramfs;
use crate::vm::{ConsoleMode, VmConfig, cmdline};
use ktstr_guest::protocol::GuestMessage;
use ktstr_matrix::result::{CellResult, Outcome};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub vm: VmArgs,
    /// Run this command with /bin/sh -c in the guest and exit with its status.
    #[arg(long)]
    pub exec: Option<String>,
    /// Show kernel messages (otherwise the kernel boots quiet).
    #[arg(long)]
    pub dmesg: bool,
    /// Host watchdog (default: 10 min with --exec, none interactively).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// With --exec: write the JSON CellResult here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// With --exec: where the kernel console goes (default: a run directory under the cache,
    /// removed when the command succeeds, kept and named otherwise).
    #[arg(long)]
    pub console_log: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    // Cheap checks first, silent; resolving the kernel may build it for minutes, so it comes
    // after them; the backend line is printed only once every input has been accepted.
    let checked = args.vm.check_kernel()?;
    let topology = args.vm.topology()?;
    let files = args.vm.files()?;
    if args.exec.is_none() && args.json.is_some() {
        return Err(bad_input(
            "--json needs --exec (an interactive shell has no result to write)",
        ));
    }
    let selected = args.vm.preflight(args.console_log.as_deref())?;
    let kernel = args.vm.resolve_kernel(checked)?.image;
    announce(&selected);
    let cmdline_extra = if args.dmesg {
        Vec::new()
    } else {
        cmdline::quiet()
    };
    let cell = Cell {
        kernel,
        workload: Workload::Shell {
            exec: args.exec.clone(),
        },
        topology,
        memory_mib: args.vm.memory_mib,
        files,
        cpu_budget: args.vm.cpu_budget,
        cmdline_extra,
    };

    let Some(_) = &args.exec else {
        let initramfs = initramfs::build(&cell.initramfs_spec())?;
        let cfg = VmConfig {
            kernel: cell.kernel.clone(),
            initramfs,
            topology,
            memory_mib: cell.memory_mib,
            cmdline_extra: cell.cmdline_extra.clone(),
            console: ConsoleMode::Interactive,
            timeout: args.timeout.unwrap_or_else(|| cell.default_watchdog()),
            cpu_budget: cell.cpu_budget,
        };
        let run = selected.backend.run(&cfg)?;
        let code = run.messages.iter().find_map(|m| match m {
            GuestMessage::Result(r) => r.exit_code,
            _ => None,
        });
        return Ok(code.unwrap_or(crate::exit::FAILURE));
    };

    // Without --console-log, a per-run directory under the cache (kept only as evidence).
    let (run_dir, console_log) = super::run::console_target(args.console_log.as_deref())?;
    // The follower must not print a previous run's log.
    let _ = std::fs::remove_file(&console_log);
    let req = cell
        .request(console_log.clone(), args.timeout)
        .map_err(|e| bad_input(format!("--memory-mib: {e}")))?;
    let (tx, rx) = mpsc::channel();
    let backend = selected.backend;
    let worker = std::thread::spawn(move || {
        let r = cell::run_cell(&req, backend.as_ref());
        let _ = tx.send(());
        r
    });
    follow(&console_log, &rx, !args.dmesg);
    let result = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the cell thread panicked"))?;
    if let Some(out) = &args.json {
        write_json(out, &result)?;
    }
    // The default log was only a relay to stdout; it is kept (and named) when it is evidence.
    if let Some(d) = &run_dir {
        if result.outcome == Outcome::Pass {
            let _ = std::fs::remove_dir_all(d);
        } else {
            write_json(&d.join("result.json"), &result)?;
            eprintln!("ktstr: console log: {}", console_log.display());
        }
    }
    Ok(exit_code(&result))
}

/// CMD's status when the guest reported one; otherwise a message and exit 1.
fn exit_code(r: &CellResult) -> i32 {
    let code = r.report.as_ref().and_then(|rep| rep.exit_code);
    match (r.outcome, code) {
        (Outcome::Pass, Some(c)) => c,
        _ if crate::cancel::requested() => {
            eprintln!("ktstr: interrupted; the VM was stopped");
            crate::exit::INTERRUPTED
        }
        _ => {
            let outcome = format!("{:?}", r.outcome).to_lowercase();
            eprintln!(
                "ktstr: {outcome}: {}",
                r.reason
                    .as_deref()
                    .unwrap_or("no exit status from the guest")
            );
            if !matches!(r.outcome, Outcome::Pass) && !r.console_tail.is_empty() {
                eprintln!("--- console tail ---\n{}", r.console_tail.trim_end());
            }
            crate::exit::FAILURE
        }
    }
}

/// Copies the growing console log to stdout until `done` fires, then drains the rest. With
/// `quiet`, the kernel's own shutdown line (`reboot: Restarting system`, KERN_EMERG so loglevel=1
/// does not hide it) is dropped: it is the agent's normal power-off, not output of the command.
fn follow(log: &Path, done: &mpsc::Receiver<()>, quiet: bool) {
    let mut out = std::io::stdout();
    let mut file = None;
    let mut buf = [0u8; 8192];
    let mut line = Vec::new();
    loop {
        let finished = match done.recv_timeout(Duration::from_millis(50)) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
            Err(mpsc::RecvTimeoutError::Timeout) => false,
        };
        if file.is_none() {
            file = std::fs::File::open(log).ok();
        }
        if let Some(f) = &mut file {
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                for &b in &buf[..n] {
                    line.push(b);
                    if b == b'\n' {
                        if !(quiet && is_shutdown_noise(&line)) {
                            let _ = out.write_all(&line);
                        }
                        line.clear();
                    }
                }
            }
            let _ = out.flush();
        }
        if finished {
            let _ = out.write_all(&line);
            let _ = out.flush();
            return;
        }
    }
}

fn is_shutdown_noise(line: &[u8]) -> bool {
    let s = String::from_utf8_lossy(line);
    let msg = s.trim_start().trim_start_matches('[');
    let msg = msg.split_once("] ").map_or(msg, |(_, m)| m).trim_end();
    matches!(msg, "reboot: Restarting system" | "reboot: Power down")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_shutdown_line_is_noise() {
        assert!(is_shutdown_noise(
            b"[    4.511841] reboot: Restarting system\r\n"
        ));
        assert!(!is_shutdown_noise(
            b"reboot: Restarting system is what I printed? no\n"
        ));
        assert!(!is_shutdown_noise(b"2\n"));
    }
}
