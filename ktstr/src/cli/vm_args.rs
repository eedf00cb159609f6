//! The VM arguments `run` and `shell` share (`--kernel`, `--config`, `--topology`,
//! `--memory-mib`, `-i`, `--backend`, `--cpu-budget`, `--no-perf-mode`) and their checks, so both
//! commands accept and reject the same inputs with the same messages.

use super::bad_input;
use crate::kernel::{self, ResolvedKernel};
use crate::topology::Topology;
use crate::vm::select::{self, BackendChoice};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct VmArgs {
    /// Kernel: a version (6.12, 6.12.117), path:DIR, tar:FILE, git:REPO#REF (built and cached),
    /// or image:FILE / a path to a bzImage or ELF vmlinux.
    #[arg(long)]
    pub kernel: String,
    /// Config fragments and CONFIG_X=V items for built kernels (e.g. sched_ext,steal-time).
    #[arg(long = "config")]
    pub configs: Vec<String>,
    /// VM topology NnNlNcNt: NUMA nodes, LLCs per node, cores per LLC, threads per core.
    #[arg(long, default_value = "1n1l2c1t")]
    pub topology: String,
    #[arg(long, default_value_t = 512)]
    pub memory_mib: u32,
    /// Extra file for the guest, HOST[:GUEST] (default guest path /ktstr/files/<name>).
    #[arg(short = 'i', long = "include")]
    pub include: Vec<String>,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Confine the VM's vCPU threads to this many host CPUs.
    #[arg(long)]
    pub cpu_budget: Option<u32>,
    /// kvm backend: no vCPU pinning, no huge pages (performance mode is the default).
    #[arg(long)]
    pub no_perf_mode: bool,
}

impl VmArgs {
    /// `--topology`, checked together with `--memory-mib` (which depends on the node count).
    pub fn topology(&self) -> anyhow::Result<Topology> {
        let topology = parse_topology(&self.topology)?;
        check_memory(self.memory_mib, &topology)?;
        Ok(topology)
    }

    /// `-i` files as (host, guest path).
    pub fn files(&self) -> anyhow::Result<Vec<(PathBuf, String)>> {
        includes(&self.include)
    }

    /// The host-side checks before anything is built or booted: a writable cache, a writable
    /// `console_log` (the command's `--console-log`), a usable `--backend`. Silent: the choice is
    /// printed by [`announce`] once every input (the kernel too) has been accepted, so bad input
    /// stays one line on stderr.
    pub fn preflight(&self, console_log: Option<&Path>) -> anyhow::Result<select::Selected> {
        super::ranges::cpu_budget(self.cpu_budget, super::matrix::host_cores())?;
        check_cache_writable()?;
        check_console_log(console_log)?;
        select_backend_with(self.backend, !self.no_perf_mode)
    }

    /// `--kernel` + `--config` without building anything: the spec's syntax, the config
    /// fragments and items, and a prebuilt image (which is resolved here already: that is a file
    /// probe). Call it first; [`resolve_kernel`](Self::resolve_kernel) does the expensive part.
    pub fn check_kernel(&self) -> anyhow::Result<CheckedKernel> {
        let bad = |e: kernel::KernelError| bad_input(format!("--kernel {}: {e}", self.kernel));
        let spec = kernel::KernelSpec::parse(&self.kernel).map_err(bad)?;
        if spec.needs_build() {
            kernel::spec::parse_configs(&self.configs, &kernel::spec::fragments_dir())
                .map_err(|e| bad_input(format!("--config: {e}")))?;
            return Ok(CheckedKernel(None));
        }
        self.resolve_kernel(CheckedKernel(None))
            .map(|k| CheckedKernel(Some(k)))
    }

    /// `--kernel` + `--config`: every spec form goes through `kernel::resolve` (built and cached).
    /// Expensive: call it after the cheap checks.
    pub fn resolve_kernel(&self, checked: CheckedKernel) -> anyhow::Result<ResolvedKernel> {
        match checked.0 {
            Some(k) => Ok(k),
            None => super::kernel::resolve_args(&self.kernel, &self.configs),
        }
    }
}

/// A `--kernel` that passed [`VmArgs::check_kernel`]: a prebuilt image already resolved, or a
/// spec still to be resolved (maybe built).
pub struct CheckedKernel(Option<ResolvedKernel>);

/// Prints the backend choice: the last step before a VM starts, after all input was accepted.
pub fn announce(selected: &select::Selected) {
    eprintln!("ktstr: {}", selected.why);
}

/// `--kernel` -> a bootable image, for commands without `--config`.
pub fn kernel_image(spec: &str) -> anyhow::Result<PathBuf> {
    Ok(super::kernel::resolve_args(spec, &[])?.image)
}

pub fn parse_topology(s: &str) -> anyhow::Result<Topology> {
    s.parse::<Topology>()
        .map_err(|e| bad_input(format!("--topology: {e}")))
}

/// `--memory-mib` against the topology, by the cell pipeline's rule.
pub(crate) fn check_memory(mib: u32, topology: &Topology) -> anyhow::Result<()> {
    crate::cell::pipeline::check_memory(mib, topology)
        .map_err(|e| bad_input(format!("--memory-mib: {e}")))?;
    match crate::host_memory::HostMemory::read() {
        Some(host) => host
            .check_cell(mib)
            .map_err(|e| bad_input(format!("--memory-mib {mib}: {e}"))),
        None => Ok(()),
    }
}

/// `perf_mode`: false for `--no-perf-mode` (kvm backend only).
pub(crate) fn select_backend_with(
    choice: BackendChoice,
    perf_mode: bool,
) -> anyhow::Result<select::Selected> {
    select::select_with(choice, select::SelectOpts { perf_mode })
        .map_err(|e| bad_input(format!("--backend: {e}")))
}

/// `-i HOST[:GUEST]` -> (host, guest); every host file must exist and be a regular file (a
/// symlink is followed: the guest gets the file it names), and every guest path must stay under
/// the image's root without taking one of ktstr's own ([`crate::initramfs::guest_paths`]).
pub(crate) fn includes(args: &[String]) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let files = args
        .iter()
        .map(|a| {
            let (host, guest) = crate::initramfs::parse_include(a);
            if !host.is_file() {
                return Err(bad_input(format!(
                    "-i {a}: {} is not a readable file; give HOST[:/GUEST/PATH]",
                    host.display()
                )));
            }
            Ok((host, guest))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    crate::initramfs::guest_paths::check(&files)
        .map_err(|(i, e)| bad_input(format!("-i {}: {e}", args[i])))?;
    Ok(files)
}

/// Every guest file the scenario needs (a `command`'s binary) is brought in by an `-i` file.
pub(crate) fn check_guest_files(
    scenario: &str,
    params: &std::collections::BTreeMap<String, serde_json::Value>,
    files: &[(PathBuf, String)],
) -> anyhow::Result<()> {
    let needed = ktstr_guest::scenario::guest_files(scenario, params)
        .map_err(|e| bad_input(format!("--scenario/--param: {e}")))?;
    for path in needed {
        let brought = files
            .iter()
            .any(|(host, guest)| crate::initramfs::guest_path_for(host, guest) == path);
        if !brought {
            let name = path.rsplit('/').next().unwrap_or(&path);
            return Err(bad_input(format!(
                "scenario {scenario}: {path} is not brought into the guest; add -i HOST_PATH \
                 (its file name {name} lands at /ktstr/files/{name}) or -i HOST_PATH:{path}"
            )));
        }
    }
    Ok(())
}

/// The initramfs cache must be writable before anything is built or booted.
pub(crate) fn check_cache_writable() -> anyhow::Result<()> {
    let dir = crate::paths::initramfs_dir();
    let probe = std::fs::create_dir_all(&dir).and_then(|()| tempfile::tempfile_in(&dir));
    probe.map(|_| ()).map_err(|e| {
        bad_input(format!(
            "cache directory {} is not writable ({e}): set KTSTR_CACHE_DIR to a writable directory",
            dir.display()
        ))
    })
}

/// The directory a file path lands in: its parent, or `.` for a bare file name.
pub(crate) fn parent_dir(p: &Path) -> &Path {
    p.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// `--console-log` must be creatable before anything boots (else the run ends as an error).
pub(crate) fn check_console_log(path: Option<&Path>) -> anyhow::Result<()> {
    let Some(p) = path else { return Ok(()) };
    // Opening a FIFO for writing blocks until a reader comes, where Ctrl-C cannot reach it.
    if std::fs::metadata(p).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_fifo() || m.file_type().is_socket()
    }) {
        return Err(bad_input(format!(
            "--console-log {}: a FIFO or socket; give a regular file",
            p.display()
        )));
    }
    let dir = parent_dir(p);
    std::fs::create_dir_all(dir)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
        })
        .map(|_| ())
        .map_err(|e| {
            bad_input(format!(
                "--console-log {}: cannot write it ({e}); give a path in a writable directory",
                p.display()
            ))
        })
}

/// `--json FILE` is written atomically at the end (a temp file in its directory, then a rename),
/// so its directory must take a new file before anything boots: a run that cannot store its
/// result would otherwise be lost after minutes of work.
pub(crate) fn check_json_out(path: Option<&Path>) -> anyhow::Result<()> {
    let Some(p) = path else { return Ok(()) };
    let dir = parent_dir(p);
    if p.is_dir() {
        return Err(bad_input(format!(
            "--json {}: is a directory; give a file path",
            p.display()
        )));
    }
    tempfile::NamedTempFile::new_in(dir).map(drop).map_err(|e| {
        bad_input(format!(
            "--json {}: cannot create a file in {} ({e}); give a path in a writable directory",
            p.display(),
            dir.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::check_json_out;

    #[test]
    fn json_out_is_checked_without_creating_it() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("r.json");
        check_json_out(Some(&ok)).unwrap();
        assert!(!ok.exists(), "the check must leave no file behind");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let missing = dir.path().join("no/such/dir/r.json");
        let e = check_json_out(Some(&missing)).unwrap_err().to_string();
        assert!(
            e.contains("--json") && e.contains("writable directory"),
            "{e}"
        );

        let e = check_json_out(Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
    }
}
