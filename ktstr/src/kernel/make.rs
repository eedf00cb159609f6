//! Running the kernel's `make`: fixed build identity (so two clean builds give the same image),
//! debug-info path mapping, a clean environment, the output logged in full and its last line shown
//! in the progress, and the whole process group stopped on Ctrl-C.

use super::{KernelError, io};
use crate::progress::Progress;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Fixed build identity: `uname -v` and the banner would otherwise carry the date, user and host,
/// and the build counter; with these two clean builds of the same inputs give the same image.
pub const REPRO_ENV: &[(&str, &str)] = &[
    ("KBUILD_BUILD_TIMESTAMP", "2024-01-01 00:00:00 UTC"),
    ("KBUILD_BUILD_USER", "ktstr"),
    ("KBUILD_BUILD_HOST", "ktstr"),
    ("KBUILD_BUILD_VERSION", "1"),
    ("SOURCE_DATE_EPOCH", "1704067200"),
    ("LC_ALL", "C"),
    ("TZ", "UTC"),
];

/// `-fdebug-prefix-map` for the source tree and the O= tree, passed as KCFLAGS and KAFLAGS.
///
/// With DEBUG_INFO the compiler writes both absolute paths into DWARF (DW_AT_comp_dir is the O=
/// tree, file names start with the source tree). DWARF is stripped from the image, but the
/// vmlinux and vDSO build-id notes are hashes over it and do land in the image, so a build in
/// another cache root gave another bzImage (Documentation/kbuild/reproducible-builds.rst,
/// "Absolute filenames"). Kbuild itself (6.1, 6.12) already maps `__FILE__` with
/// `-fmacro-prefix-map=$(srctree)/=`; a `-ffile-prefix-map` here would override that and change
/// the strings, so only debug info is mapped. Make sees the trees by their real paths.
pub fn prefix_map_flags(tree: &Path, out: &Path) -> String {
    let mut flags = Vec::new();
    for dir in [tree, out] {
        let mut forms = vec![dir.to_path_buf()];
        if let Ok(real) = std::fs::canonicalize(dir)
            && real != dir
        {
            forms.push(real);
        }
        for f in forms {
            flags.push(format!("-fdebug-prefix-map={}=.", f.display()));
        }
    }
    flags.join(" ")
}

/// `make -C tree O=out -jN targets`, output appended to `log`, last line shown in the progress.
pub fn run_make(
    tree: &Path,
    out: &Path,
    targets: &[&str],
    jobs: usize,
    log: &Path,
    progress: &Progress,
    what: &str,
) -> Result<(), KernelError> {
    let mut logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io(format!("opening {}", log.display())))?;
    let prefix_map = prefix_map_flags(tree, out);
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(tree)
        .arg(format!("O={}", out.display()))
        .arg(format!("-j{}", jobs.max(1)))
        .args(targets)
        .envs(REPRO_ENV.iter().copied())
        // Overrides a user's KCFLAGS too: they would change the image without changing the key.
        .env("KCFLAGS", &prefix_map)
        .env("KAFLAGS", &prefix_map)
        // Kconfig reads these; a user's environment must not change the config.
        .env_remove("KCONFIG_CONFIG")
        .env_remove("KCONFIG_ALLCONFIG")
        .env_remove("ARCH")
        .env_remove("CROSS_COMPILE")
        .env_remove("LOCALVERSION")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Own process group so an interruption stops make's whole tree; dies with ktstr.
    crate::cancel::contain(&mut cmd);
    let _ = writeln!(
        logf,
        "$ KCFLAGS='{prefix_map}' make -C {} O={} -j{} {}",
        tree.display(),
        out.display(),
        jobs,
        targets.join(" ")
    );
    let mut child = cmd.spawn().map_err(io("starting make"))?;
    let _tracked = crate::cancel::TrackedGroup::new(child.id());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let mut readers = Vec::new();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let _ = writeln!(logf, "{line}");
                progress.line(&line);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => progress.tick(),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if crate::cancel::requested() {
            // SAFETY: kill(2) on the process group we created for this child; no memory involved.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) };
            let _ = child.wait();
            return Err(KernelError::Interrupted);
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child.wait().map_err(io("waiting for make"))?;
    if status.success() {
        return Ok(());
    }
    Err(KernelError::Command {
        what: what.to_string(),
        code: status.code(),
        log: log.to_path_buf(),
        tail: crate::progress::log_tail(log, 30),
    })
}
