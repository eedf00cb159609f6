//! Building: dependency check, `make O=` with fixed KBUILD_* so builds are reproducible, a progress
//! line (phase + elapsed + last make line), the full log kept, and installation of the cache entry.

use super::cache::{self, Entry, Inputs};
use super::configure::Configured;
use super::make::run_make;
use super::{KernelError, ResolveOptions, io};
use crate::progress::Progress;
use std::collections::BTreeMap;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Free space a tinyconfig+sched_ext build needs (O= tree ~0.9 GiB, source ~1.4 GiB, entry).
const NEED_MIB: u64 = 3 * 1024;

const TOOLS: [&str; 4] = ["gcc", "ld", "pahole", "make"];

/// (canonical path, size, mtime) of each tool: when none changed, neither did their versions.
/// A distribution upgrade rewrites the drivers along with cc1/collect2, so the drivers suffice.
fn tools_fingerprint() -> Vec<(String, u64, i128)> {
    use std::os::unix::fs::MetadataExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    TOOLS
        .iter()
        .map(|bin| {
            std::env::split_paths(&path)
                .map(|d| d.join(bin))
                .find(|p| p.is_file())
                .and_then(|p| std::fs::canonicalize(p).ok())
                .and_then(|p| {
                    let m = std::fs::metadata(&p).ok()?;
                    let mtime = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
                    Some((p.display().to_string(), m.size(), mtime))
                })
                .unwrap_or_else(|| (format!("missing {bin}"), 0, 0))
        })
        .collect()
}

/// Versions of the tools whose output ends up in the image; part of the cache key. Remembered per
/// tools fingerprint: spawning four `--version`s is most of a cache hit's time otherwise.
pub fn toolchain_identity() -> BTreeMap<String, String> {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Memo {
        fingerprint: Vec<(String, u64, i128)>,
        identity: BTreeMap<String, String>,
    }
    let memo_path = crate::paths::kernels_dir().join("toolchain.json");
    let fingerprint = tools_fingerprint();
    if let Some(m) = std::fs::read(&memo_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Memo>(&b).ok())
        && m.fingerprint == fingerprint
    {
        return m.identity;
    }
    let identity = toolchain_versions();
    // Best effort: without the memo the next hit just spawns the tools again.
    if let Some(dir) = memo_path.parent()
        && std::fs::create_dir_all(dir).is_ok()
        && let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir)
        && serde_json::to_writer(
            &mut tmp,
            &Memo {
                fingerprint,
                identity: identity.clone(),
            },
        )
        .is_ok()
    {
        let _ = tmp.persist(&memo_path);
    }
    identity
}

fn toolchain_versions() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, args) in [
        ("cc", &["gcc", "--version"][..]),
        ("ld", &["ld", "--version"]),
        ("pahole", &["pahole", "--version"]),
        ("make", &["make", "--version"]),
    ] {
        let v = Command::new(args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "missing".into());
        out.insert(name.to_string(), v);
    }
    out
}

fn in_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

/// Every tool and header a tinyconfig + sched_ext build needs, with the Debian package providing it.
pub fn check_deps() -> Result<(), KernelError> {
    const BINS: &[(&str, &str)] = &[
        ("make", "make"),
        ("gcc", "gcc"),
        ("ld", "binutils"),
        ("strip", "binutils"),
        ("flex", "flex"),
        ("bison", "bison"),
        ("bc", "bc"),
        ("pahole", "dwarves"),
        ("cpio", "cpio"),
        ("zstd", "zstd"),
        ("xz", "xz-utils"),
        ("perl", "perl"),
    ];
    const HEADERS: &[(&str, &str)] = &[("gelf.h", "libelf-dev"), ("openssl/ssl.h", "libssl-dev")];
    let mut missing = Vec::new();
    let mut pkgs = Vec::new();
    for (bin, pkg) in BINS {
        if !in_path(bin) {
            missing.push(bin.to_string());
            pkgs.push(*pkg);
        }
    }
    for (h, pkg) in HEADERS {
        let found = [
            "/usr/include",
            "/usr/local/include",
            "/usr/include/x86_64-linux-gnu",
        ]
        .iter()
        .any(|d| Path::new(d).join(h).is_file());
        if !found {
            missing.push(h.to_string());
            pkgs.push(*pkg);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    pkgs.dedup();
    Err(KernelError::MissingDeps {
        missing: missing.join(", "),
        packages: pkgs.join(" "),
    })
}

/// The cores this process may use (affinity and cgroup quota aware).
pub fn allowed_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Fails early when the cache's filesystem cannot hold a build; returns the kernels dir.
pub(super) fn check_disk_space() -> Result<std::path::PathBuf, KernelError> {
    let root = crate::paths::kernels_dir();
    std::fs::create_dir_all(&root).map_err(io(format!("creating {}", root.display())))?;
    let avail_mib = fs4::available_space(&root)
        .map(|b| b / (1 << 20))
        .unwrap_or(u64::MAX);
    if avail_mib < NEED_MIB {
        return Err(KernelError::DiskFull {
            dir: root,
            avail_mib,
            need_mib: NEED_MIB,
        });
    }
    Ok(root)
}

/// Builds `conf` into the kept O= tree of `key` and installs the cache entry atomically.
pub fn build_and_install(
    key: &str,
    tree: &Path,
    conf: Configured,
    inputs: &Inputs,
    opts: &ResolveOptions,
    progress: &mut Progress,
    started: Instant,
) -> Result<Entry, KernelError> {
    check_disk_space()?;
    let version = conf.version.clone();
    // Keep the O= tree per key: rebuilding a corrupted entry is then an incremental make.
    let dir = cache::build_dir(key);
    // Same key = same .config, so whatever a previous (even interrupted) build left is reusable:
    // make deletes half-written targets when it is stopped.
    let incremental = dir.join(".config").is_file();
    if incremental {
        conf.discard();
    } else {
        if std::fs::symlink_metadata(&dir).is_ok() {
            // A build tree without its .config is what an interrupted removal left.
            eprintln!(
                "notice: build tree {} is incomplete (no .config); moving it aside",
                dir.display()
            );
            crate::scratch::move_aside(&dir)
                .map_err(io(format!("moving {} aside", dir.display())))?;
        }
        let tmp = conf.build_dir.clone();
        conf.install_as(&dir).map_err(io(format!(
            "renaming {} to {}",
            tmp.display(),
            dir.display()
        )))?;
    }
    let site = BuildSite {
        key,
        tree,
        out: &dir,
        version,
        incremental,
    };
    make_and_install(&site, inputs, opts, progress, started)
}

/// What to build where: the source tree, the O= tree holding the final .config, and the key the
/// result is installed under.
pub struct BuildSite<'a> {
    pub key: &'a str,
    pub tree: &'a Path,
    pub out: &'a Path,
    pub version: String,
    /// The O= tree holds an earlier build that make updates (recorded in the metadata).
    pub incremental: bool,
}

/// Runs `make bzImage` in `site.out` and installs the result as the cache entry of `site.key`.
pub fn make_and_install(
    site: &BuildSite,
    inputs: &Inputs,
    opts: &ResolveOptions,
    progress: &mut Progress,
    started: Instant,
) -> Result<Entry, KernelError> {
    let root = check_disk_space()?;
    let (dir, incremental) = (site.out, site.incremental);
    // Source identification/extraction and configure, everything before make.
    let prepare_s = started.elapsed().as_secs_f64();
    let log = dir.join("build.log");
    let _ = std::fs::remove_file(&log);
    let jobs = if opts.jobs == 0 {
        allowed_jobs()
    } else {
        opts.jobs
    };
    progress.phase(&format!(
        "build{} -j{jobs} (log {})",
        if incremental { " (incremental)" } else { "" },
        log.display()
    ));
    let t = Instant::now();
    progress.start_build(&site.version, incremental);
    run_make(
        site.tree,
        dir,
        &["bzImage"],
        jobs,
        &log,
        progress,
        "kernel build",
    )?;
    progress.finish_build();
    let build_s = t.elapsed().as_secs_f64();

    progress.phase("install");
    let t = Instant::now();
    let stage = crate::scratch::ScratchDir::new_in(&root, cache::STAGE_PREFIX)
        .map_err(io("creating a staging dir"))?;
    let s = stage.path();
    std::fs::copy(dir.join("arch/x86/boot/bzImage"), s.join(cache::IMAGE))
        .map_err(io("copying bzImage (disk full?)"))?;
    // DWARF is most of vmlinux; symbols and .BTF (which tools/sched_ext and BPF loaders read) stay.
    let out = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(s.join(cache::VMLINUX))
        .arg(dir.join("vmlinux"))
        .output()
        .map_err(io("running strip"))?;
    if !out.status.success() {
        return Err(KernelError::Command {
            what: "strip --strip-debug vmlinux".into(),
            code: out.status.code(),
            log: log.clone(),
            tail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    std::fs::copy(dir.join(".config"), s.join(cache::CONFIG)).map_err(io("copying .config"))?;
    std::fs::copy(&log, s.join(cache::BUILD_LOG)).map_err(io("copying build.log"))?;
    let config_text =
        std::fs::read_to_string(s.join(cache::CONFIG)).map_err(io("reading .config"))?;
    let sched_ext = config_text.lines().any(|l| l == "CONFIG_SCHED_CLASS_EXT=y");
    let mut timings = BTreeMap::new();
    timings.insert("source_and_configure_s".to_string(), prepare_s);
    timings.insert("build_s".to_string(), build_s);
    timings.insert("install_s".to_string(), t.elapsed().as_secs_f64());
    timings.insert("total_s".to_string(), started.elapsed().as_secs_f64());
    let meta = cache::Metadata::new(
        site.key,
        inputs,
        &site.version,
        sched_ext,
        incremental,
        timings,
        s,
    )?;
    let entry = cache::install(site.key, stage, &meta)?;
    progress.finish("built");
    Ok(entry)
}
