//! Kernels: spec -> source -> configure -> build -> cache.
//!
//! [`resolve`] turns a spec (`6.12`, `path:DIR`, `tar:FILE`, `git:REPO#REF`, `image:FILE`) and
//! config parts (`sched_ext,steal-time`, `CONFIG_FOO=y`) into a bootable image. A build is keyed by
//! the content of everything that can change its output (see [`cache`]); a second resolution of the
//! same inputs is a cache hit that reads a small index, stats the source and hashes the entry's
//! files to check their integrity.

pub mod build;
pub mod cache;
pub mod configure;
pub mod extract;
pub mod fetch;
pub mod git_remote;
pub mod image;
pub mod locks;
pub mod make;
pub mod releases;
pub mod signed_sums;
pub mod source;
pub mod spec;
pub mod worktree;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use spec::KernelSpec;

/// Bumped whenever the way ktstr configures or builds a kernel changes its output; part of every
/// cache key so old entries are not reused for a different recipe.
/// 2: `-ffile-prefix-map` of the source and O= trees (DEBUG_INFO images independent of the paths).
pub const RECIPE_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("kernel spec `{spec}`: {why}")]
    BadSpec { spec: String, why: String },
    #[error("config `{item}`: {why}")]
    BadConfig { item: String, why: String },
    #[error("kernel source for `{spec}` not found; tried:\n{tried}")]
    SourceNotFound { spec: String, tried: String },
    #[error(
        "missing build dependencies: {missing}; install them with `apt-get install {packages}`"
    )]
    MissingDeps { missing: String, packages: String },
    #[error("configure failed: requested options were dropped by Kconfig:\n{details}")]
    Dropped { details: String },
    #[error("{what} failed (exit {code:?}); full log: {log}\n--- last lines ---\n{tail}")]
    Command {
        what: String,
        code: Option<i32>,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "not enough disk space in {dir}: {avail_mib} MiB free, a kernel build needs about {need_mib} MiB"
    )]
    DiskFull {
        dir: PathBuf,
        avail_mib: u64,
        need_mib: u64,
    },
    #[error("download of {url} failed: {why}")]
    Download { url: String, why: String },
    /// sha256sums.asc without a good signature by a key ktstr ships ([`signed_sums`]).
    #[error(
        "refusing {url}: {why}\nfix: use a mirror that serves kernel.org's own signed sha256sums.asc \
         (the default https://cdn.kernel.org does), or pass a tarball you checked yourself as tar:PATH"
    )]
    UnverifiedSums { url: String, why: String },
    /// A plain-http URL without the opt-in ([`fetch::allow_http`]).
    #[error(
        "refusing {url}: plain http:// can be altered in transit\nfix: use an https:// mirror, or set \
         KTSTR_ALLOW_HTTP=1 to accept it (downloads are still checked against the signed sums)"
    )]
    InsecureUrl { url: String },
    #[error("git: {0}")]
    Git(String),
    #[error("git: cannot fetch {url}: {why}\nfix: {fix}")]
    GitFetch {
        url: String,
        why: String,
        fix: String,
    },
    #[error("interrupted")]
    Interrupted,
    #[error("worktree: {0}")]
    Worktree(#[from] worktree::WorktreeError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl KernelError {
    /// True for errors in the user's input (exit code 2 at the CLI).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::BadSpec { .. }
                | Self::BadConfig { .. }
                | Self::SourceNotFound { .. }
                | Self::MissingDeps { .. }
                | Self::Dropped { .. }
                | Self::InsecureUrl { .. }
        )
    }
}

/// [`crate::digest::sha256_file`] with the kernel module's error.
pub(crate) fn sha256_file(path: &Path) -> Result<String, KernelError> {
    crate::digest::sha256_file(path).map_err(io(format!("hashing {}", path.display())))
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> KernelError {
    let what = what.into();
    move |source| KernelError::Io { what, source }
}

/// A kernel ready to boot.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ResolvedKernel {
    pub image: PathBuf,
    /// vmlinux with symbols and .BTF (DWARF stripped); None for images without one.
    pub vmlinux: Option<PathBuf>,
    pub config: Option<PathBuf>,
    /// Cache key of a built kernel; None for `image:` specs.
    pub key: Option<String>,
    /// Kernel release, e.g. `6.12.117`; `unknown` when it cannot be read.
    pub version: String,
    /// CONFIG_SCHED_CLASS_EXT=y in the final config (false when unknown).
    pub sched_ext: bool,
    /// True when served from the cache without building.
    #[serde(default)]
    pub cache_hit: bool,
}

/// How to resolve.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    /// Use this .config instead of tinyconfig as the base.
    pub base_config: Option<PathBuf>,
    /// `make -j`; 0 = the cores this process may use.
    pub jobs: usize,
    /// Configure and compute the key, but do not build (see [`Plan`]).
    pub plan_only: bool,
    /// Never touch the network.
    pub offline: bool,
    /// Show a progress bar (when stderr is a terminal).
    pub progress: bool,
    /// A persistent worktree for `git:` specs (one per bisection): each uncached commit is
    /// synced into `<worktree>/src` (only changed files rewritten) and built incrementally in
    /// `<worktree>/out`; the result enters the cache under the key a clean build gets. See
    /// [`worktree`].
    pub worktree: Option<PathBuf>,
}

/// What a resolution would build: the key and the final config, without building.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub key: String,
    pub cached: bool,
    pub config: PathBuf,
    pub version: String,
}

/// Resolves a spec to a bootable kernel, building it if it is not cached.
pub fn resolve(
    spec: &str,
    configs: &[String],
    opts: &ResolveOptions,
) -> Result<ResolvedKernel, KernelError> {
    match resolve_or_plan(
        spec,
        configs,
        &ResolveOptions {
            plan_only: false,
            ..opts.clone()
        },
    )? {
        Outcome::Kernel(k) => Ok(k),
        Outcome::Plan(_) => unreachable!("plan_only was false"),
    }
}

/// Configures and computes the key without building.
pub fn plan(spec: &str, configs: &[String], opts: &ResolveOptions) -> Result<Plan, KernelError> {
    match resolve_or_plan(
        spec,
        configs,
        &ResolveOptions {
            plan_only: true,
            ..opts.clone()
        },
    )? {
        Outcome::Plan(p) => Ok(p),
        Outcome::Kernel(k) => Ok(Plan {
            key: k.key.clone().unwrap_or_default(),
            cached: true,
            config: k.config.clone().unwrap_or_default(),
            version: k.version,
        }),
    }
}

/// What a dry run can say about a kernel without fetching, extracting, configuring or building:
/// whether this exact recipe is in the cache (and its key when it is).
pub fn survey(
    spec_str: &str,
    configs: &[String],
    opts: &ResolveOptions,
) -> Result<Option<String>, KernelError> {
    let spec = KernelSpec::parse(spec_str)?;
    if matches!(spec, KernelSpec::Image(_)) {
        return Ok(None);
    }
    let parts = spec::parse_configs(configs, &spec::fragments_dir())?;
    let Ok(src) = source::identify_local(&spec, spec_str) else {
        return Ok(None);
    };
    let recipe = cache::recipe_hash(
        &src.identity,
        opts.base_config.as_deref(),
        &parts,
        &build::toolchain_identity(),
    )?;
    Ok(cache::lookup_recipe(&recipe)
        .filter(|e| e.verify().is_ok())
        .map(|e| e.key.clone()))
}

enum Outcome {
    Kernel(ResolvedKernel),
    Plan(Plan),
}

fn resolve_or_plan(
    spec_str: &str,
    configs: &[String],
    opts: &ResolveOptions,
) -> Result<Outcome, KernelError> {
    let spec = KernelSpec::parse(spec_str)?;
    if let KernelSpec::Image(path) = &spec {
        if !configs.is_empty() {
            return Err(KernelError::BadConfig {
                item: configs.join(","),
                why: format!(
                    "`{spec_str}` is a prebuilt image; --config only applies to kernels ktstr builds"
                ),
            });
        }
        return image_kernel(path).map(Outcome::Kernel);
    }
    // All input checks before any expensive work.
    let parts = spec::parse_configs(configs, &spec::fragments_dir())?;
    if let Some(base) = &opts.base_config
        && !base.is_file()
    {
        return Err(KernelError::BadConfig {
            item: base.display().to_string(),
            why: "the base .config does not exist".into(),
        });
    }
    let started = Instant::now();
    // What killed builds left (scratch dirs, half-removed trees) goes before anything new.
    cache::sweep_leftovers();
    let src = source::identify(&spec, spec_str, opts.offline)?;
    let toolchain = build::toolchain_identity();
    let recipe = cache::recipe_hash(
        &src.identity,
        opts.base_config.as_deref(),
        &parts,
        &toolchain,
    )?;

    // Fast path: this recipe was built before and its entry is intact.
    if let Some(entry) = cache::lookup_recipe(&recipe) {
        match entry.verified() {
            Ok(meta) => {
                let k = entry.resolved_with(Some(meta), true);
                if opts.plan_only {
                    return Ok(Outcome::Plan(Plan {
                        key: entry.key.clone(),
                        cached: true,
                        config: entry.config_path(),
                        version: k.version,
                    }));
                }
                return Ok(Outcome::Kernel(k));
            }
            Err(why) => eprintln!(
                "notice: cached kernel {} is corrupt ({why}); rebuilding it",
                entry.key
            ),
        }
    }

    build::check_deps()?;
    let _recipe_lock = locks::lock(&format!("recipe-{recipe}"))?;
    // Another process may have built it while we waited for the lock.
    if let Some(entry) = cache::lookup_recipe(&recipe)
        && entry.verify().is_ok()
    {
        return Ok(Outcome::Kernel(entry.resolved(true)));
    }
    let mut progress = crate::progress::Progress::new(opts.progress, spec_str);
    progress.set_recipe(&recipe);
    let worktree = match (&opts.worktree, &spec) {
        (Some(dir), KernelSpec::Git { .. }) => Some(worktree::Worktree::open(dir)?),
        _ => None,
    };
    let (tree, _tree_in_use) = match &worktree {
        Some(wt) => (worktree::sync_source(wt, &src, &mut progress)?, None),
        None => source::materialize_in_use(&src, &mut progress)?,
    };
    let conf = configure::configure(&tree, opts.base_config.as_deref(), &parts, &mut progress)?;
    let key = cache::content_key(&src.identity, &conf.normalized, &toolchain);
    if opts.plan_only {
        let cached = cache::Entry::open(&key).is_some_and(|e| e.verify().is_ok());
        // The configure dir is temporary: keep the planned .config where the user can read it.
        let plans = crate::paths::kernels_dir().join("plans");
        std::fs::create_dir_all(&plans).map_err(io(format!("creating {}", plans.display())))?;
        let config = plans.join(format!("{key}.config"));
        std::fs::copy(conf.build_dir.join(".config"), &config)
            .map_err(io(format!("writing {}", config.display())))?;
        let plan = Plan {
            key,
            cached,
            config,
            version: conf.version.clone(),
        };
        progress.finish("planned");
        return Ok(Outcome::Plan(plan));
    }
    let _key_lock = locks::lock(&key)?;
    if let Some(entry) = cache::Entry::open(&key)
        && entry.verify().is_ok()
    {
        cache::record_recipe(&recipe, &key)?;
        conf.discard();
        progress.finish("cached");
        return Ok(Outcome::Kernel(entry.resolved(true)));
    }
    let inputs = cache::Inputs {
        spec: spec_str.to_string(),
        source: src.clone(),
        base_config: opts.base_config.clone(),
        parts: parts.clone(),
        toolchain,
        recipe_version: RECIPE_VERSION,
    };
    let entry = match &worktree {
        Some(wt) => worktree::build(wt, &key, conf, &inputs, opts, &mut progress, started)?,
        None => build::build_and_install(&key, &tree, conf, &inputs, opts, &mut progress, started)?,
    };
    cache::record_recipe(&recipe, &key)?;
    Ok(Outcome::Kernel(entry.resolved(false)))
}

/// The source tree a resolved (built) kernel came from, for building in-tree tools such as
/// tools/sched_ext. Re-extracts it if it was garbage-collected.
pub fn source_tree(k: &ResolvedKernel) -> Result<PathBuf, KernelError> {
    let Some(key) = &k.key else {
        return Err(KernelError::BadSpec {
            spec: k.image.display().to_string(),
            why: "a prebuilt image has no source tree; use a version, path:, tar: or git: spec"
                .into(),
        });
    };
    let entry = cache::Entry::open(key).ok_or_else(|| KernelError::BadSpec {
        spec: key.clone(),
        why: "no such cache entry".into(),
    })?;
    let meta = entry.metadata()?;
    let mut progress = crate::progress::Progress::new(false, key);
    source::materialize(&meta.inputs.source, &mut progress)
}

/// The O= build directory of a cached kernel (kept for incremental rebuilds and in-tree tools),
/// if it still exists.
pub fn build_dir(k: &ResolvedKernel) -> Option<PathBuf> {
    let dir = cache::build_dir(k.key.as_ref()?);
    dir.join(".config").is_file().then_some(dir)
}

fn image_kernel(path: &Path) -> Result<ResolvedKernel, KernelError> {
    if !path.is_file() {
        return Err(KernelError::BadSpec {
            spec: path.display().to_string(),
            why: "no such image file".into(),
        });
    }
    image::probe(path).map_err(|e| KernelError::BadSpec {
        spec: path.display().to_string(),
        why: e.to_string(),
    })?;
    let version = bzimage_version(path).unwrap_or_else(|| "unknown".into());
    // A .config next to the image (a cache entry, or an O= tree's arch/x86/boot/bzImage).
    let config = path
        .ancestors()
        .skip(1)
        .take(4)
        .flat_map(|d| [d.join("config"), d.join(".config")])
        .find(|c| c.is_file());
    let sched_ext = config
        .as_ref()
        .and_then(|c| std::fs::read_to_string(c).ok())
        .is_some_and(|t| t.lines().any(|l| l == "CONFIG_SCHED_CLASS_EXT=y"));
    Ok(ResolvedKernel {
        image: path.to_path_buf(),
        vmlinux: None,
        config,
        key: None,
        version,
        sched_ext,
        cache_hit: false,
    })
}

/// The release string of a bzImage (boot protocol: header at 0x202 "HdrS", kernel_version pointer
/// at 0x20e, relative to 0x200).
pub fn bzimage_version(path: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let mut hdr = [0u8; 0x210];
    f.read_exact(&mut hdr).ok()?;
    if &hdr[0x202..0x206] != b"HdrS" {
        return None;
    }
    let off = u16::from_le_bytes([hdr[0x20e], hdr[0x20f]]) as u64 + 0x200;
    f.seek(SeekFrom::Start(off)).ok()?;
    let mut buf = [0u8; 128];
    let n = f.read(&mut buf).ok()?;
    let s = String::from_utf8_lossy(&buf[..n]);
    s.split([' ', '\0'])
        .next()
        .map(str::to_string)
        .filter(|v| !v.is_empty())
}
