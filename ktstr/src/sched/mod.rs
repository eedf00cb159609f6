//! Scheduler specs -> binaries to pack into the initramfs.
//!
//! [`validate_spec`] checks a spec without building anything (the matrix validates every spec up
//! front); [`resolve`] turns a spec plus the kernel it will run on into a [`ResolvedSched`],
//! building and caching the binary on a miss. The grammar is in [`spec`] and docs/schedulers.md.

pub mod cache;
pub mod cargo;
pub mod from_source;
pub mod kernel_tools;
pub mod selftests;
pub mod source_build;
pub mod spec;
pub mod toolchain;

use std::path::{Path, PathBuf};

pub use spec::{DEFAULT_CRATE_VERSION, KERNEL_TOOLS, KNOWN_CRATES, SchedSpec, Source};

/// What a cell runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedSched {
    /// No sched_ext scheduler: the kernel's own EEVDF (the baseline).
    Eevdf,
    /// A sched_ext scheduler binary on the host, to be packed into the initramfs and started
    /// with `args`. `name` is the display name (`scx_rusty`, `kernel:scx_simple`).
    Binary {
        name: String,
        path: PathBuf,
        args: Vec<String>,
    },
    /// This scheduler cannot run on this kernel (e.g. no CONFIG_SCHED_CLASS_EXT); not a failure.
    Skipped { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    #[error("scheduler spec {spec:?}: {msg}")]
    BadSpec { spec: String, msg: String },
    #[error("unknown scheduler {name:?}{hint}")]
    Unknown { name: String, hint: String },
    #[error("scheduler {path}: {why}")]
    NotExecutable { path: PathBuf, why: String },
    #[error(
        "cannot build {what}: {detail}; install the missing Debian packages: apt-get install {packages}"
    )]
    MissingPrereqs {
        what: &'static str,
        detail: String,
        packages: String,
    },
    #[error("building {what} failed (full log: {}):\n{tail}", log.display())]
    Build {
        what: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{0}")]
    Kernel(String),
    #[error("scheduler cache {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl SchedError {
    /// Errors the user fixes by changing the command line or installing packages: exit code 2
    /// at the CLI edge, reported before any kernel build or boot.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            SchedError::BadSpec { .. }
                | SchedError::Unknown { .. }
                | SchedError::NotExecutable { .. }
                | SchedError::MissingPrereqs { .. }
        )
    }
}

/// Parses `spec` and checks what can be checked without building: known names (or a binary on
/// PATH), and that a path is an ELF executable for this machine.
pub fn validate_spec(spec: &str) -> Result<SchedSpec, SchedError> {
    let parsed = spec::parse(spec)?;
    match &parsed.source {
        Source::Eevdf => {}
        Source::KernelTool(t) => {
            if !KERNEL_TOOLS.contains(&t.as_str()) {
                return Err(unknown(&format!("kernel:{t}"), t));
            }
        }
        Source::Crate {
            name,
            version,
            explicit,
        } => {
            let known = *explicit || KNOWN_CRATES.contains(&name.as_str());
            if !known && (version.is_some() || toolchain::which(name).is_none()) {
                return Err(unknown(name, name));
            }
        }
        Source::Path(p) => check_elf_executable(p)?,
        Source::Git { .. } | Source::Tree { .. } => from_source::validate(spec, &parsed.source)?,
    }
    Ok(parsed)
}

fn unknown(shown: &str, bare: &str) -> SchedError {
    let sugg = spec::suggestions(bare);
    let mut hint = String::new();
    if !sugg.is_empty() {
        hint.push_str(&format!("; did you mean {}?", sugg.join(" or ")));
    }
    hint.push_str(&format!(
        " (known: eevdf, {}, {}; another crate: cargo:NAME@VERSION; a file: ./PATH)",
        KERNEL_TOOLS
            .iter()
            .map(|t| format!("kernel:{t}"))
            .collect::<Vec<_>>()
            .join(", "),
        KNOWN_CRATES.join(", ")
    ));
    SchedError::Unknown {
        name: shown.to_string(),
        hint,
    }
}

/// The file must exist, be executable, and be an ELF executable (not a library, not a script)
/// for this machine's architecture, since the guest runs on the same architecture.
pub fn check_elf_executable(p: &Path) -> Result<(), SchedError> {
    let not = |why: String| SchedError::NotExecutable {
        path: p.to_path_buf(),
        why,
    };
    // A FIFO or a device would block the read (or never end it): only regular files are read.
    if std::fs::metadata(p).is_ok_and(|m| !m.is_file()) {
        return Err(not(
            "not a regular file (a FIFO, device or directory); give the path of a built scheduler binary".into(),
        ));
    }
    let bytes = std::fs::read(p)
        .map_err(|e| not(format!("{e}; give the path of a built scheduler binary")))?;
    if !toolchain::is_executable_file(p) {
        return Err(not("not executable (chmod +x it)".into()));
    }
    let elf = goblin::elf::Elf::parse(&bytes).map_err(|e| {
        not(format!(
            "not an ELF executable ({e}); give the compiled scheduler, not a script or source"
        ))
    })?;
    let host = if cfg!(target_arch = "x86_64") {
        goblin::elf::header::EM_X86_64
    } else if cfg!(target_arch = "aarch64") {
        goblin::elf::header::EM_AARCH64
    } else {
        elf.header.e_machine
    };
    if elf.header.e_machine != host {
        return Err(not(format!(
            "ELF for machine {} but the guest is {}",
            goblin::elf::header::machine_to_str(elf.header.e_machine),
            std::env::consts::ARCH
        )));
    }
    let is_pie = elf.interpreter.is_some()
        || elf
            .dynamic
            .as_ref()
            .is_some_and(|d| d.info.flags_1 & goblin::elf::dynamic::DF_1_PIE != 0);
    match elf.header.e_type {
        goblin::elf::header::ET_EXEC => Ok(()),
        goblin::elf::header::ET_DYN if is_pie => Ok(()),
        goblin::elf::header::ET_DYN => Err(not("a shared library, not an executable".into())),
        t => Err(not(format!(
            "ELF type {} is not an executable",
            goblin::elf::header::et_to_str(t)
        ))),
    }
}

/// What scheduler resolution needs to know about the kernel a cell boots. Built from the kernel
/// module's `ResolvedKernel`; a separate type so unit tests and development can point at any tree.
pub struct KernelFacts {
    /// `6.12.117`.
    pub version: String,
    /// CONFIG_SCHED_CLASS_EXT is set.
    pub sched_ext: bool,
    /// The config was read, so `sched_ext == false` is known rather than a guess.
    pub config_known: bool,
    /// The kernel cache key (kernel:scx_* builds are cached per key).
    pub key: Option<String>,
    pub vmlinux: Option<PathBuf>,
    /// Called only for kernel:scx_* (finding or unpacking a tree can be expensive).
    pub source_tree: Box<dyn Fn() -> Result<PathBuf, String>>,
}

/// Why `kernel` cannot run a sched_ext scheduler, if it cannot.
pub fn sched_ext_missing(kernel: &KernelFacts) -> Option<String> {
    if kernel.sched_ext {
        return None;
    }
    let mut nums = kernel
        .version
        .split(['.', '-'])
        .map(|x| x.parse::<u32>().unwrap_or(0));
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    if (major, minor) < (6, 12) && major > 0 {
        return Some(format!(
            "kernel {} predates sched_ext (merged in 6.12)",
            kernel.version
        ));
    }
    kernel.config_known.then(|| {
        format!(
            "kernel {} is built without CONFIG_SCHED_CLASS_EXT",
            kernel.version
        )
    })
}

/// Why the resolved kernel `k` cannot run sched_ext, if it cannot.
pub fn sched_missing_reason(k: &crate::kernel::ResolvedKernel) -> Option<String> {
    sched_ext_missing(&KernelFacts::of(k))
}

/// Resolves `spec` for the kernel a cell boots: `Eevdf`, a binary (built and cached on a miss:
/// minutes for a crate, seconds for kernel:scx_*), or `Skipped` when the kernel cannot run it.
pub fn resolve(
    spec: &str,
    kernel: &crate::kernel::ResolvedKernel,
) -> Result<ResolvedSched, SchedError> {
    resolve_for(spec, &KernelFacts::of(kernel))
}

impl KernelFacts {
    pub fn of(k: &crate::kernel::ResolvedKernel) -> KernelFacts {
        let owned = k.clone();
        // A distribution image ships its config beside it (`boot/vmlinuz-R` + `boot/config-R`,
        // Debian's layout); reading it turns "unknown" into a definite no-sched_ext for them.
        let (sched_ext, config_known) = match (&k.config, distro_config(&k.image)) {
            (None, Some(text)) => (config_enables_sched_ext(&text), true),
            (config, _) => (k.sched_ext, config.is_some()),
        };
        KernelFacts {
            version: k.version.clone(),
            sched_ext,
            config_known,
            key: k.key.clone(),
            vmlinux: k.vmlinux.clone(),
            source_tree: Box::new(move || {
                crate::kernel::source_tree(&owned).map_err(|e| e.to_string())
            }),
        }
    }
}

/// `.../boot/vmlinuz-R` -> the text of `.../boot/config-R`, if present.
fn distro_config(image: &Path) -> Option<String> {
    let name = image.file_name()?.to_str()?;
    let release = name.strip_prefix("vmlinuz-")?;
    std::fs::read_to_string(image.with_file_name(format!("config-{release}"))).ok()
}

fn config_enables_sched_ext(config: &str) -> bool {
    config
        .lines()
        .any(|l| l.trim() == "CONFIG_SCHED_CLASS_EXT=y")
}

/// Resolves `spec` for `kernel` with the default cache.
pub fn resolve_for(spec: &str, kernel: &KernelFacts) -> Result<ResolvedSched, SchedError> {
    resolve_in(&cache::Cache::at_default(), spec, kernel)
}

pub fn resolve_in(
    cache: &cache::Cache,
    spec: &str,
    kernel: &KernelFacts,
) -> Result<ResolvedSched, SchedError> {
    let parsed = validate_spec(spec)?;
    if parsed.source == Source::Eevdf {
        return Ok(ResolvedSched::Eevdf);
    }
    if let Some(reason) = sched_ext_missing(kernel) {
        return Ok(ResolvedSched::Skipped {
            reason: format!("{}: {reason}", parsed.display_name()),
        });
    }
    let name = parsed.display_name();
    let path = match &parsed.source {
        Source::Eevdf => unreachable!("handled above"),
        Source::Path(p) => std::fs::canonicalize(p).map_err(|e| cache::io_err(p, e))?,
        Source::Git { .. } | Source::Tree { .. } => {
            source_build::ensure(cache, spec, &parsed.source)?.path
        }
        Source::Crate { name, version, .. } => match version {
            Some(v) => cargo::ensure(cache, name, v)?.path,
            None => match toolchain::which(name) {
                Some(p) => {
                    check_elf_executable(&p)?;
                    p
                }
                None => cargo::ensure(cache, name, DEFAULT_CRATE_VERSION)?.path,
            },
        },
        Source::KernelTool(tool) => {
            let vmlinux = kernel.vmlinux.clone().ok_or_else(|| {
                SchedError::Kernel(format!(
                    "kernel {} has no vmlinux, which kernel:{tool} needs for its BTF; use a source-built kernel",
                    kernel.version
                ))
            })?;
            let tree = (kernel.source_tree)().map_err(SchedError::Kernel)?;
            let key = match &kernel.key {
                Some(k) => k.clone(),
                None => cache::sha256_file(&vmlinux)?[..16].to_string(),
            };
            kernel_tools::ensure(cache, &key, &kernel.version, &tree, &vmlinux, tool)?.path
        }
    };
    Ok(ResolvedSched::Binary {
        name,
        path,
        args: parsed.args,
    })
}

#[cfg(test)]
mod tests;
