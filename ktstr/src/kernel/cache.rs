//! The kernel cache.
//!
//! Layout under `paths::kernels_dir()`:
//! - `<key>/`: an entry: `bzImage`, `vmlinux` (DWARF stripped, symbols + .BTF kept), `config`,
//!   `build.log`, `metadata.json` (inputs, timings, sizes and sha256 of each file).
//! - `index/<recipe>.json`: recipe hash -> key, so a hit needs no configure run.
//! - `builds/<key>/`: the kept O= tree (gc-able) for incremental rebuilds and in-tree tools.
//! - `.locks/`: one lock file per key / recipe / source tree.
//!
//! The key is sha256 over source identity, the final normalized .config, the toolchain identity and
//! [`super::RECIPE_VERSION`]. The recipe hash replaces the .config by what produces it (base config
//! and fragment texts), which is a pure function of the same inputs, so recipe -> key is stable.
//! Entries are staged in a temp dir and renamed into place: a reader never sees half an entry.

use super::locks::try_lock;
use super::sha256_file;
use super::source::Source;
use super::spec::ConfigPart;
use super::{KernelError, ResolvedKernel, io};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const IMAGE: &str = "bzImage";
pub const VMLINUX: &str = "vmlinux";
pub const CONFIG: &str = "config";
pub const BUILD_LOG: &str = "build.log";
const METADATA: &str = "metadata.json";
const LAST_USED: &str = ".last-used";

pub fn builds_root() -> PathBuf {
    crate::paths::kernels_dir().join("builds")
}
pub fn build_dir(key: &str) -> PathBuf {
    builds_root().join(key)
}
fn index_dir() -> PathBuf {
    crate::paths::kernels_dir().join("index")
}

/// Everything that went into a build, recorded in metadata.json.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Inputs {
    pub spec: String,
    pub source: Source,
    pub base_config: Option<PathBuf>,
    pub parts: Vec<ConfigPart>,
    pub toolchain: BTreeMap<String, String>,
    pub recipe_version: u32,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FileInfo {
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Metadata {
    pub key: String,
    pub version: String,
    pub sched_ext: bool,
    /// False for dirty local trees: the key is content-based, but no commit reproduces it.
    pub reproducible: bool,
    /// Built on top of an earlier build's O= tree (a kept one after a corrupted entry, or a
    /// bisection worktree's) rather than from scratch.
    pub incremental: bool,
    pub created_unix: u64,
    pub timings: BTreeMap<String, f64>,
    /// Wall time of the last from-scratch build of this key (survives incremental rebuilds).
    #[serde(default)]
    pub cold_total_s: Option<f64>,
    pub files: BTreeMap<String, FileInfo>,
    pub inputs: Inputs,
}

impl Metadata {
    pub fn new(
        key: &str,
        inputs: &Inputs,
        version: &str,
        sched_ext: bool,
        incremental: bool,
        timings: BTreeMap<String, f64>,
        stage: &Path,
    ) -> Result<Self, KernelError> {
        let mut files = BTreeMap::new();
        for name in [IMAGE, VMLINUX, CONFIG] {
            let p = stage.join(name);
            let size = std::fs::metadata(&p)
                .map_err(io(format!("stat {}", p.display())))?
                .len();
            files.insert(
                name.to_string(),
                FileInfo {
                    size,
                    sha256: sha256_file(&p)?,
                },
            );
        }
        Ok(Self {
            key: key.to_string(),
            version: version.to_string(),
            sched_ext,
            reproducible: inputs.source.reproducible,
            incremental,
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            cold_total_s: if incremental {
                Entry::open(key)
                    .and_then(|e| e.metadata().ok())
                    .and_then(|m| {
                        let own = (!m.incremental).then(|| m.timings.get("total_s").copied());
                        m.cold_total_s.or(own.flatten())
                    })
            } else {
                timings.get("total_s").copied()
            },
            timings,
            files,
            inputs: inputs.clone(),
        })
    }
}

fn sha256_json(v: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

/// Hash of what produces the final .config (cheap to compute: no configure run).
pub fn recipe_hash(
    identity: &str,
    base: Option<&Path>,
    parts: &[ConfigPart],
    toolchain: &BTreeMap<String, String>,
) -> Result<String, KernelError> {
    let base = match base {
        Some(b) => format!("config-sha256:{}", sha256_file(b)?),
        None => "tinyconfig".to_string(),
    };
    let parts: Vec<_> = parts.iter().map(|p| (&p.name, &p.text)).collect();
    Ok(sha256_json(&serde_json::json!({
        "recipe_version": super::RECIPE_VERSION,
        "source": identity,
        "base": base,
        "parts": parts,
        "toolchain": toolchain,
    })))
}

/// The cache key.
pub fn content_key(
    identity: &str,
    normalized_config: &str,
    toolchain: &BTreeMap<String, String>,
) -> String {
    sha256_json(&serde_json::json!({
        "recipe_version": super::RECIPE_VERSION,
        "source": identity,
        "config": normalized_config,
        "toolchain": toolchain,
    }))
}

/// A cache entry directory (may be corrupt: call [`Entry::verify`]).
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub dir: PathBuf,
}

impl Entry {
    pub fn open(key: &str) -> Option<Self> {
        let dir = crate::paths::kernels_dir().join(key);
        dir.join(METADATA).is_file().then(|| Self {
            key: key.to_string(),
            dir,
        })
    }

    pub fn metadata(&self) -> Result<Metadata, KernelError> {
        let p = self.dir.join(METADATA);
        let b = std::fs::read(&p).map_err(io(format!("reading {}", p.display())))?;
        serde_json::from_slice(&b).map_err(|e| KernelError::Io {
            what: format!("parsing {}", p.display()),
            source: std::io::Error::other(e),
        })
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG)
    }

    /// Every file matches the size and sha256 recorded at install time.
    pub fn verify(&self) -> Result<(), String> {
        self.verified().map(drop)
    }

    /// [`Entry::verify`], returning the metadata it read.
    pub fn verified(&self) -> Result<Metadata, String> {
        let meta = self.metadata().map_err(|e| e.to_string())?;
        if meta.key != self.key {
            return Err(format!("metadata.json names key {}", meta.key));
        }
        for name in [IMAGE, VMLINUX, CONFIG] {
            let info = meta
                .files
                .get(name)
                .ok_or(format!("metadata.json lacks {name}"))?;
            let p = self.dir.join(name);
            let size = std::fs::metadata(&p)
                .map_err(|e| format!("{name}: {e}"))?
                .len();
            if size != info.size {
                return Err(format!("{name} is {size} bytes, expected {}", info.size));
            }
            let sum = sha256_file(&p).map_err(|e| e.to_string())?;
            if sum != info.sha256 {
                return Err(format!("{name} sha256 is {sum}, expected {}", info.sha256));
            }
        }
        Ok(meta)
    }

    /// The entry as a resolved kernel; marks it used (for `gc --keep`).
    pub fn resolved(&self, cache_hit: bool) -> ResolvedKernel {
        self.resolved_with(self.metadata().ok(), cache_hit)
    }

    pub fn resolved_with(&self, meta: Option<Metadata>, cache_hit: bool) -> ResolvedKernel {
        let _ = std::fs::File::create(self.dir.join(LAST_USED));
        ResolvedKernel {
            image: self.dir.join(IMAGE),
            vmlinux: Some(self.dir.join(VMLINUX)),
            config: Some(self.dir.join(CONFIG)),
            key: Some(self.key.clone()),
            version: meta
                .as_ref()
                .map(|m| m.version.clone())
                .unwrap_or_else(|| "unknown".into()),
            sched_ext: meta.as_ref().is_some_and(|m| m.sched_ext),
            cache_hit,
        }
    }

    fn last_used(&self) -> std::time::SystemTime {
        [self.dir.join(LAST_USED), self.dir.join(METADATA)]
            .iter()
            .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .max()
            .unwrap_or(std::time::UNIX_EPOCH)
    }
}

pub fn lookup_recipe(recipe: &str) -> Option<Entry> {
    let b = std::fs::read(index_dir().join(format!("{recipe}.json"))).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
    Entry::open(v.get("key")?.as_str()?)
}

pub fn record_recipe(recipe: &str, key: &str) -> Result<(), KernelError> {
    let dir = index_dir();
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(&dir).map_err(io("creating an index temp file"))?;
    std::io::Write::write_all(
        &mut tmp,
        serde_json::json!({ "key": key }).to_string().as_bytes(),
    )
    .map_err(io("writing the index"))?;
    tmp.persist(dir.join(format!("{recipe}.json")))
        .map_err(|e| KernelError::Io {
            what: "installing the index".into(),
            source: e.error,
        })?;
    Ok(())
}

/// Renames a fully written staging dir into place (replacing a corrupt entry).
pub fn install(
    key: &str,
    stage: crate::scratch::ScratchDir,
    meta: &Metadata,
) -> Result<Entry, KernelError> {
    let json = serde_json::to_vec_pretty(meta).map_err(|e| KernelError::Io {
        what: "serializing metadata.json".into(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(stage.path().join(METADATA), json).map_err(io("writing metadata.json"))?;
    let root = crate::paths::kernels_dir();
    let dest = root.join(key);
    if std::fs::symlink_metadata(&dest).is_ok() {
        // A corrupt entry: moved aside first so the rename below stays atomic for readers.
        crate::scratch::move_aside(&dest)
            .map_err(io(format!("moving {} aside", dest.display())))?;
    }
    stage
        .install_as(&dest)
        .map_err(io(format!("installing {}", dest.display())))?;
    Entry::open(key).ok_or_else(|| KernelError::Io {
        what: format!("installing {}", dest.display()),
        source: std::io::Error::other("metadata.json missing after rename"),
    })
}

/// All entries, most recently used first.
pub fn list() -> Vec<(Entry, Option<Metadata>)> {
    let root = crate::paths::kernels_dir();
    let mut entries: Vec<Entry> = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| Entry::open(&name))
                .flatten()
        })
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.last_used()));
    entries
        .into_iter()
        .map(|e| {
            let m = e.metadata().ok();
            (e, m)
        })
        .collect()
}

#[derive(Debug, Default, serde::Serialize)]
pub struct GcReport {
    pub removed_entries: Vec<String>,
    pub removed_build_trees: usize,
    pub removed_source_trees: usize,
    pub freed_bytes: u64,
}

/// Removes a cache directory the way nothing can see half of: moved aside first, so an
/// interrupted gc leaves a `.trash-*` dir (swept by the next operation), never a partial entry
/// or tree under its real name.
fn remove(p: &Path, report: &mut GcReport) -> bool {
    let size = crate::scratch::size_of(p);
    if crate::scratch::move_aside(p).is_ok() {
        report.freed_bytes += size;
        true
    } else {
        false
    }
}

/// Prefix of a kernel entry being staged (in the kernels dir).
pub const STAGE_PREFIX: &str = ".tmp-";

/// Removes what killed kernel operations left in the kernel cache and the sources: scratch dirs
/// whose owner is gone, old temp files and everything moved aside. Cheap when there is nothing
/// (five directory reads); run at the start of every resolution and by gc.
pub fn sweep_leftovers() -> crate::scratch::Swept {
    let mut total = crate::scratch::Swept::default();
    for (dir, prefixes) in [
        (crate::paths::kernels_dir(), &[STAGE_PREFIX][..]),
        (builds_root(), &[super::configure::CFG_PREFIX][..]),
        (
            crate::paths::sources_dir().join("trees"),
            &[super::source::EXTRACT_PREFIX][..],
        ),
        // Downloads and distro package fetches: temp names without an owner file, removed
        // once an hour untouched (a download in progress keeps writing).
        (super::releases::tarballs_dir(), &[".tmp"][..]),
        (super::releases::distro_dir(), &[".fetch-", ".tmp"][..]),
    ] {
        let s = crate::scratch::sweep(&dir, prefixes);
        total.removed += s.removed;
        total.bytes += s.bytes;
    }
    total
}

/// Keeps the `keep` most recently used entries; removes the others, the build trees and extracted
/// sources nobody kept needs, and stale temp dirs. Locked (in-use) items are skipped.
pub fn gc(keep: usize, drop_build_trees: bool) -> GcReport {
    let mut report = GcReport::default();
    let all = list();
    let mut kept_keys = Vec::new();
    let mut kept_sources = Vec::new();
    for (i, (entry, meta)) in all.iter().enumerate() {
        if i < keep {
            kept_keys.push(entry.key.clone());
            if let Some(m) = meta {
                kept_sources.push(m.inputs.source.identity.replace(':', "-"));
            }
            continue;
        }
        let Some(_l) = try_lock(&entry.key) else {
            continue;
        };
        if remove(&entry.dir, &mut report) {
            report.removed_entries.push(entry.key.clone());
        }
    }
    // Index files pointing at removed entries are harmless (lookups miss) but clutter.
    for e in std::fs::read_dir(index_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let stale = std::fs::read(e.path())
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("key")?.as_str().map(str::to_string))
            .is_none_or(|k| !kept_keys.contains(&k));
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let swept = sweep_leftovers();
    report.freed_bytes += swept.bytes;
    for e in std::fs::read_dir(builds_root())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        // Scratch dirs are the sweep's: in use, or too young to judge.
        let drop = !name.starts_with('.') && (drop_build_trees || !kept_keys.contains(&name));
        if drop && try_lock(&name).is_some() && remove(&e.path(), &mut report) {
            report.removed_build_trees += 1;
        }
    }
    let trees = crate::paths::sources_dir().join("trees");
    for e in std::fs::read_dir(&trees).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let drop = !name.starts_with('.') && !kept_sources.contains(&name);
        if drop && try_lock(&format!("tree-{name}")).is_some() && remove(&e.path(), &mut report) {
            report.removed_source_trees += 1;
        }
    }
    // Planned configs (`--plan`) are small; keep only those of kept kernels.
    for e in std::fs::read_dir(crate::paths::kernels_dir().join("plans"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if !kept_keys.iter().any(|k| name.starts_with(k.as_str())) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    report
}
