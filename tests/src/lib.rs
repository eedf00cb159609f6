//! Shared helpers for ktstr's end-to-end tests (which boot real kernels).
//!
//! Everything goes through the normal cache (`KTSTR_CACHE_DIR` if set, else ~/.cache/ktstr), so
//! the Debian kernel and the one cold sched_ext build are shared by every test of a CI run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod kernel_history;
pub mod sched_history;

/// The `ktstr` binary of this build: `target/<profile>/ktstr`, next to `target/<profile>/deps/`
/// where the test executables live.
pub fn ktstr_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("ktstr");
    assert!(
        bin.is_file(),
        "{} missing: run `cargo build -p ktstr` first",
        bin.display()
    );
    bin
}

/// Runs `ktstr ARGS`, echoing the command and its output to the test log. A run whose guest
/// died of the emulator's int3 fault ([`tcg_int3_fault`]) is run once more.
pub fn ktstr(args: &[&str]) -> Output {
    once_more_on_tcg_int3(|| ktstr_once(args))
}

/// Runs `run`, and once more if what it printed shows the guest died of [`tcg_int3_fault`].
pub fn once_more_on_tcg_int3(run: impl Fn() -> Output) -> Output {
    once_more_if_tcg_int3(run, |out| {
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    })
}

/// [`once_more_on_tcg_int3`] for any kind of run: `printed` gives what the run showed.
pub fn once_more_if_tcg_int3<T>(run: impl Fn() -> T, printed: impl Fn(&T) -> String) -> T {
    let out = run();
    let text = printed(&out);
    if !tcg_int3_fault(&text) {
        return out;
    }
    eprintln!(
        "{text}\nthe guest died of QEMU TCG's int3 fault (the bed, not ktstr): running again"
    );
    run()
}

fn ktstr_once(args: &[&str]) -> Output {
    let out = Command::new(ktstr_bin())
        .args(args)
        .output()
        .expect("running ktstr");
    eprintln!(
        "$ ktstr {}\n-> {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The guest kernel oopsed on an int3. Under multi-threaded QEMU TCG a vCPU can still run the
/// temporary int3 of a live patch (a static key flipped during boot) after the patch completed:
/// CI saw Debian's kernel die so in `sched_clock_cpu`, with the patched bytes already in memory.
/// These tests test ktstr, not the emulator, so a run that ended so may be run once more; ktstr
/// itself keeps such a cell `crashed` and names the emulator as a possible cause.
pub fn tcg_int3_fault(output: &str) -> bool {
    output.contains("Oops: int3")
}

/// Debian's prebuilt cloud kernel (fetched once into the cache). `KTSTR_DEBIAN_DEB` names a
/// local .deb to use instead of `apt-get download`.
pub fn debian_kernel() -> &'static ktstr_testbed::debian::DebianKernel {
    static K: OnceLock<ktstr_testbed::debian::DebianKernel> = OnceLock::new();
    K.get_or_init(|| {
        let deb = std::env::var_os("KTSTR_DEBIAN_DEB").map(PathBuf::from);
        ktstr_testbed::debian::fetch(deb.as_deref())
            .unwrap_or_else(|e| panic!("fetching the Debian cloud kernel: {e}"))
    })
}

/// `--kernel <Debian cloud vmlinuz>` (6.12, no sched_ext).
pub fn debian_kernel_args() -> Vec<&'static str> {
    static P: OnceLock<String> = OnceLock::new();
    let path = P.get_or_init(|| debian_kernel().vmlinuz.to_string_lossy().into_owned());
    vec!["--kernel", path.as_str()]
}

/// The sched_ext kernel every test of a run shares: 6.12 + `sched_ext,steal-time`, built by
/// ktstr on first use and a cache hit afterwards.
pub fn sched_ext_kernel_args() -> Vec<&'static str> {
    vec!["--kernel", "6.12", "--config", "sched_ext,steal-time"]
}

/// True if a process with this pid exists (and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 is the state; a zombie (Z) or dead (X) process is not running anything.
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|s| s != 'Z' && s != 'X'),
        Err(_) => false,
    }
}

/// Pids of running `qemu-system-*` processes whose parent is `parent` (e.g. a spawned `ktstr`).
pub fn qemu_children(parent: u32) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Field 4 (after "pid (comm) state") is the parent pid.
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            ppid == Some(parent) && comm.starts_with("qemu-system") && pid_alive(*pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    fn output(stderr: &str) -> Output {
        Output {
            status: ExitStatus::from_raw(0),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    /// Only the int3 oops earns a second run, and only one: a second fault is the test's result.
    #[test]
    fn only_an_int3_oops_runs_once_more() {
        let runs = Cell::new(0);
        let out = once_more_on_tcg_int3(|| {
            runs.set(runs.get() + 1);
            output("ktstr: crashed: kernel crashed: Oops: int3: 0000 [#1] PREEMPT SMP NOPTI")
        });
        assert_eq!(runs.get(), 2);
        assert!(tcg_int3_fault(&String::from_utf8_lossy(&out.stderr)));
        runs.set(0);
        once_more_on_tcg_int3(|| {
            runs.set(runs.get() + 1);
            output("ktstr: crashed: kernel crashed: Kernel panic - not syncing: sysrq")
        });
        assert_eq!(runs.get(), 1);
    }
}
