//! Kernel sources: find them (Debian's /usr/src tarballs, the cache, kernel.org), identify them by
//! content (tarball sha256, git tree id, or a hash of a local tree's files) and materialize them as
//! an extracted tree under the cache, one per identity, so a tree is extracted once.

use super::git_remote;
use super::sha256_file;
use super::spec::KernelSpec;
use super::{KernelError, io};
use crate::progress::Progress;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// An identified source. Serialized into every cache entry's metadata.json.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Source {
    /// `tarball`, `git` or `path`.
    pub kind: String,
    /// Tarball path, repository, or directory.
    pub location: String,
    /// Git ref as given.
    #[serde(default)]
    pub reference: Option<String>,
    /// `tarball-sha256:<hex>`, `git-tree:<oid>` or `files-sha256:<hex>`.
    pub identity: String,
    /// Kernel release (`6.12.117`) when known without extracting.
    pub version: Option<String>,
    /// False for dirty local git trees.
    pub reproducible: bool,
}

/// Where Debian's linux-source-X.Y packages put their tarballs (overridable for tests).
pub(super) fn debian_src_dir() -> PathBuf {
    std::env::var_os("KTSTR_DEBIAN_SRC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/src".into())
}

/// kernel.org's base URL (overridable so the download path is testable offline).
pub fn kernel_org_url() -> String {
    std::env::var("KTSTR_KERNEL_ORG_URL")
        .unwrap_or_else(|_| "https://cdn.kernel.org/pub/linux/kernel".into())
        .trim_end_matches('/')
        .to_string()
}

fn tarballs_dir() -> PathBuf {
    super::releases::tarballs_dir()
}
fn trees_dir() -> PathBuf {
    crate::paths::sources_dir().join("trees")
}

/// Identifies a source cheaply where possible (stat cache for tarballs, ref lookup for git),
/// fetching it if it is not here.
pub fn identify(spec: &KernelSpec, spec_str: &str, offline: bool) -> Result<Source, KernelError> {
    identify_inner(spec, spec_str, offline, true)
}

/// Identifies a source from what is already here: nothing is downloaded, fetched or extracted
/// (a dry run's survey). A release that would have to be fetched is `SourceNotFound`.
pub fn identify_local(spec: &KernelSpec, spec_str: &str) -> Result<Source, KernelError> {
    identify_inner(spec, spec_str, true, false)
}

fn identify_inner(
    spec: &KernelSpec,
    spec_str: &str,
    offline: bool,
    fetch: bool,
) -> Result<Source, KernelError> {
    match spec {
        KernelSpec::Version {
            major,
            minor,
            patch,
        } => identify_version(*major, *minor, *patch, spec_str, offline, fetch),
        KernelSpec::Tar(path) => {
            if !path.is_file() {
                return Err(KernelError::BadSpec {
                    spec: spec_str.into(),
                    why: format!("no such tarball {}", path.display()),
                });
            }
            tarball_source(path)
        }
        KernelSpec::Git { repo, reference } => identify_git(repo, reference, offline),
        KernelSpec::Path(dir) => identify_path(dir, spec_str),
        KernelSpec::Image(_) => unreachable!("images have no source"),
    }
}

fn identify_version(
    major: u32,
    minor: u32,
    patch: Option<u32>,
    spec_str: &str,
    offline: bool,
    fetch: bool,
) -> Result<Source, KernelError> {
    let offline = offline || offline_by_env();
    // `6.12` is the newest 6.12.y that can be had, wherever it comes from.
    let avail = super::releases::available(major, minor, offline);
    let patch = patch.or_else(|| avail.releases.keys().next_back().copied());
    let mut tried = Vec::new();
    let deb = debian_src_dir().join(format!("linux-source-{major}.{minor}.tar.xz"));
    let wanted = |v: &str| match patch {
        Some(p) => {
            v == format!("{major}.{minor}.{p}") || (p == 0 && v == format!("{major}.{minor}"))
        }
        None => v == format!("{major}.{minor}") || v.starts_with(&format!("{major}.{minor}.")),
    };
    if deb.is_file() {
        let mut src = tarball_source(&deb)?;
        if src.version.is_none() && fetch {
            // Debian names the tarball by X.Y only: the release is in its Makefile.
            let tree = materialize(&src, &mut Progress::new(true, spec_str))?;
            src.version = tree_version(&tree);
            remember_version(&deb, src.version.as_deref());
        }
        match &src.version {
            Some(v) if wanted(v) => return Ok(src),
            v => tried.push(format!(
                "{}: is {}, not {spec_str}",
                deb.display(),
                v.as_deref().unwrap_or("an unknown version")
            )),
        }
    } else {
        tried.push(format!(
            "{}: missing (`apt-get install linux-source-{major}.{minor}` provides it)",
            deb.display()
        ));
    }
    let cached = super::releases::cached_tarballs(major, minor);
    let hit = match patch {
        Some(p) => cached.get(&p),
        None => cached.values().next_back(),
    };
    if let Some(path) = hit {
        let mut src = tarball_source(path)?;
        if let Some(p) = patch {
            src.version = Some(format!("{major}.{minor}.{p}"));
            remember_version(path, src.version.as_deref());
        }
        return Ok(src);
    }
    tried.push(format!(
        "{} and {}: no {spec_str} tarball",
        super::releases::tarballs_dir().display(),
        crate::paths::sources_dir().join("distro").display()
    ));
    let listed = patch.and_then(|p| avail.releases.get(&p));
    if !fetch {
        tried.push(format!(
            "not fetched: {} (nothing is downloaded or extracted here)",
            listed.map_or("not listed anywhere".into(), |o| o.describe())
        ));
        return Err(KernelError::SourceNotFound {
            spec: spec_str.into(),
            tried: tried
                .iter()
                .map(|t| format!("  - {t}"))
                .collect::<Vec<_>>()
                .join("\n"),
        });
    }
    if let Some(super::releases::Origin::DistroArchive { package, version }) = listed {
        let path = super::releases::fetch_distro(package, version)?;
        let mut src = tarball_source(&path)?;
        src.version = Some(format!("{major}.{minor}.{}", patch.unwrap_or(0)));
        remember_version(&path, src.version.as_deref());
        return Ok(src);
    }
    if offline {
        tried.push("the distro archive: not tried (offline)".into());
    } else {
        tried.push(format!(
            "the distro archive: `apt-cache madison linux-source-{major}.{minor}` does not list {spec_str}"
        ));
    }
    let ver = match patch {
        Some(p) if p > 0 => format!("{major}.{minor}.{p}"),
        _ => format!("{major}.{minor}"),
    };
    if offline {
        tried.push("kernel.org: not tried (offline)".into());
    } else {
        match download(major, &ver) {
            Ok(path) => return tarball_source(&path),
            // Ctrl-C and refused input (a bad signature, plain http) are not "not found".
            Err(
                e @ (KernelError::Interrupted
                | KernelError::UnverifiedSums { .. }
                | KernelError::InsecureUrl { .. }),
            ) => return Err(e),
            Err(e) => tried.push(format!("kernel.org: {e}")),
        }
    }
    Err(KernelError::SourceNotFound {
        spec: spec_str.into(),
        tried: tried
            .iter()
            .map(|t| format!("  - {t}"))
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

/// `KTSTR_OFFLINE` set (and not `0`): no network at all.
pub(super) fn offline_by_env() -> bool {
    std::env::var_os("KTSTR_OFFLINE").is_some_and(|v| v != "0")
}

/// Downloads linux-VER.tar.xz and checks it against kernel.org's signed sha256sums.asc (see
/// [`super::signed_sums`]); Ctrl-C stops it within [`super::fetch::POLL`], leaving nothing.
fn download(major: u32, ver: &str) -> Result<PathBuf, KernelError> {
    let base = format!("{}/v{major}.x", kernel_org_url());
    let name = format!("linux-{ver}.tar.xz");
    let sums_url = format!("{base}/sha256sums.asc");
    let dl_err = |url: &str, why: String| KernelError::Download {
        url: url.into(),
        why,
    };
    let sums = super::signed_sums::fetch(&sums_url)?;
    let expected = super::signed_sums::lookup(&sums, &name)
        .ok_or_else(|| dl_err(&sums_url, format!("no checksum listed for {name}")))?;
    let url = format!("{base}/{name}");
    let dir = tarballs_dir();
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io("creating a temp file"))?;
    let reader = super::fetch::get(&url)?;
    let total = reader.content_length();
    let mut reader = crate::progress::download::ProgressReader::new(reader, total, &name, true);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| reader.get_ref().error(e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        std::io::Write::write_all(&mut tmp, &buf[..n]).map_err(io("writing the download"))?;
    }
    let got = hex::encode(hasher.finalize());
    if got != expected {
        return Err(dl_err(
            &url,
            format!("sha256 mismatch: got {got}, sha256sums.asc says {expected}"),
        ));
    }
    let dest = dir.join(&name);
    tmp.persist(&dest).map_err(|e| KernelError::Io {
        what: format!("installing {}", dest.display()),
        source: e.error,
    })?;
    Ok(dest)
}

// ---- tarballs: sha256 once per (path, size, mtime, inode) -------------------------------------

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
struct StatEntry {
    size: u64,
    mtime_ns: i128,
    ino: u64,
    sha256: String,
    version: Option<String>,
}

fn stat_cache_path() -> PathBuf {
    crate::paths::sources_dir().join("stat-cache.json")
}

fn load_stat_cache() -> BTreeMap<String, StatEntry> {
    std::fs::read(stat_cache_path())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn store_stat_cache(map: &BTreeMap<String, StatEntry>) {
    // Best effort: losing it only costs a re-hash.
    let path = stat_cache_path();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
        if let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir)
            && serde_json::to_writer_pretty(&mut tmp, map).is_ok()
        {
            let _ = tmp.persist(&path);
        }
    }
}

fn stat_key(path: &Path) -> Option<(String, u64, i128, u64)> {
    use std::os::unix::fs::MetadataExt;
    let abs = std::fs::canonicalize(path).ok()?;
    let m = std::fs::metadata(&abs).ok()?;
    let mtime = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
    Some((abs.display().to_string(), m.size(), mtime, m.ino()))
}

fn tarball_source(path: &Path) -> Result<Source, KernelError> {
    let (abs, size, mtime_ns, ino) = stat_key(path).ok_or_else(|| KernelError::BadSpec {
        spec: path.display().to_string(),
        why: "cannot stat the tarball".into(),
    })?;
    let mut cache = load_stat_cache();
    let entry = match cache.get(&abs) {
        Some(e) if e.size == size && e.mtime_ns == mtime_ns && e.ino == ino => e.clone(),
        _ => {
            let sha256 = sha256_file(path)?;
            let version = Path::new(&abs)
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("linux-"))
                .and_then(|n| n.split(".tar").next())
                .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
                .map(str::to_string);
            let e = StatEntry {
                size,
                mtime_ns,
                ino,
                sha256,
                version,
            };
            cache.insert(abs.clone(), e.clone());
            store_stat_cache(&cache);
            e
        }
    };
    Ok(Source {
        kind: "tarball".into(),
        location: abs,
        reference: None,
        identity: format!("tarball-sha256:{}", entry.sha256),
        version: entry.version,
        reproducible: true,
    })
}

/// The release the stat cache knows for a tarball, if its stat still matches (no hashing).
pub(super) fn known_version(path: &Path) -> Option<String> {
    let (abs, size, mtime_ns, ino) = stat_key(path)?;
    load_stat_cache()
        .get(&abs)
        .filter(|e| e.size == size && e.mtime_ns == mtime_ns && e.ino == ino)
        .and_then(|e| e.version.clone())
}

fn remember_version(path: &Path, version: Option<&str>) {
    let Some((abs, ..)) = stat_key(path) else {
        return;
    };
    let mut cache = load_stat_cache();
    if let Some(e) = cache.get_mut(&abs) {
        e.version = version.map(str::to_string);
        store_stat_cache(&cache);
    }
}

// ---- git -------------------------------------------------------------------------------------

fn git_err(e: git2::Error) -> KernelError {
    KernelError::Git(e.message().to_string())
}

pub(crate) fn open_repo(
    repo: &str,
    reference: &str,
    offline: bool,
) -> Result<git2::Repository, KernelError> {
    if git_remote::is_url(repo) {
        return git_remote::open(repo, reference, offline);
    }
    git2::Repository::open(repo).map_err(|e| KernelError::BadSpec {
        spec: format!("git:{repo}#{reference}"),
        why: format!("cannot open the repository: {}", e.message()),
    })
}

fn identify_git(repo: &str, reference: &str, offline: bool) -> Result<Source, KernelError> {
    let r = open_repo(repo, reference, offline)?;
    let obj = r
        .revparse_single(reference)
        .or_else(|_| r.revparse_single("refs/ktstr/fetched"))
        .map_err(|e| KernelError::BadSpec {
            spec: format!("git:{repo}#{reference}"),
            why: format!("unknown ref: {}", e.message()),
        })?;
    let commit = obj.peel_to_commit().map_err(git_err)?;
    let tree = commit.tree().map_err(git_err)?;
    let version = tree
        .get_path(Path::new("Makefile"))
        .ok()
        .and_then(|e| e.to_object(&r).ok())
        .and_then(|o| {
            o.as_blob()
                .map(|b| String::from_utf8_lossy(b.content()).into_owned())
        })
        .and_then(|t| makefile_version(&t));
    Ok(Source {
        kind: "git".into(),
        location: repo.to_string(),
        reference: Some(reference.to_string()),
        identity: format!("git-tree:{}", tree.id()),
        version,
        reproducible: true,
    })
}

// ---- local trees -----------------------------------------------------------------------------

fn identify_path(dir: &Path, spec_str: &str) -> Result<Source, KernelError> {
    if !dir.join("Makefile").is_file() || !dir.join("Kconfig").is_file() {
        return Err(KernelError::BadSpec {
            spec: spec_str.into(),
            why: "not a kernel source tree (no Makefile and Kconfig)".into(),
        });
    }
    let abs = std::fs::canonicalize(dir).map_err(io(format!("resolving {}", dir.display())))?;
    let version = std::fs::read_to_string(abs.join("Makefile"))
        .ok()
        .and_then(|t| makefile_version(&t));
    let mut src = Source {
        kind: "path".into(),
        location: abs.display().to_string(),
        reference: None,
        identity: String::new(),
        version,
        reproducible: true,
    };
    if let Ok(r) = git2::Repository::open(&abs)
        && r.workdir()
            .and_then(|w| std::fs::canonicalize(w).ok())
            .as_deref()
            == Some(&abs)
    {
        let mut o = git2::StatusOptions::new();
        o.include_untracked(true).include_ignored(false);
        let clean = r
            .statuses(Some(&mut o))
            .map(|s| s.is_empty())
            .unwrap_or(false);
        if clean && let Ok(tree) = r.head().and_then(|h| h.peel_to_tree()) {
            src.identity = format!("git-tree:{}", tree.id());
            return Ok(src);
        }
        // Dirty: still buildable, keyed by its files, but nobody can rebuild it from a commit.
        src.reproducible = false;
    }
    src.identity = format!("files-sha256:{}", hash_tree(&abs)?);
    Ok(src)
}

/// sha256 over (relative path, kind/mode, content) of every file, in sorted order, skipping .git.
pub fn hash_tree(root: &Path) -> Result<String, KernelError> {
    use std::os::unix::fs::PermissionsExt;
    let mut h = Sha256::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(io(format!("reading {}", dir.display())))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        // Reverse so the stack pops directories in sorted order.
        for e in entries.into_iter().rev() {
            let name = e.file_name();
            if rel.as_os_str().is_empty() && name == ".git" {
                continue;
            }
            let r = rel.join(&name);
            let ft = e.file_type().map_err(io(format!("stat {}", r.display())))?;
            h.update(r.as_os_str().as_encoded_bytes());
            h.update([0]);
            if ft.is_dir() {
                h.update(b"d");
                stack.push(r);
            } else if ft.is_symlink() {
                let t = std::fs::read_link(e.path())
                    .map_err(io(format!("readlink {}", r.display())))?;
                h.update(b"l");
                h.update(t.as_os_str().as_encoded_bytes());
            } else {
                let mode = e
                    .metadata()
                    .map(|m| m.permissions().mode() & 0o111)
                    .unwrap_or(0);
                h.update(if mode != 0 { b"x" } else { b"f" });
                let mut f = std::fs::File::open(e.path())
                    .map_err(io(format!("opening {}", r.display())))?;
                std::io::copy(&mut f, &mut h).map_err(io(format!("reading {}", r.display())))?;
            }
            h.update([0]);
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// `6.12.117` from a top-level Makefile's VERSION/PATCHLEVEL/SUBLEVEL/EXTRAVERSION.
pub fn makefile_version(text: &str) -> Option<String> {
    let get = |k: &str| {
        text.lines().take(20).find_map(|l| {
            let (lhs, rhs) = l.split_once('=')?;
            (lhs.trim() == k).then(|| rhs.trim().to_string())
        })
    };
    let (v, p) = (get("VERSION")?, get("PATCHLEVEL")?);
    let s = get("SUBLEVEL").unwrap_or_default();
    let e = get("EXTRAVERSION").unwrap_or_default();
    Some(match s.as_str() {
        "" | "0" => format!("{v}.{p}{e}"),
        _ => format!("{v}.{p}.{s}{e}"),
    })
}

pub fn tree_version(tree: &Path) -> Option<String> {
    makefile_version(&std::fs::read_to_string(tree.join("Makefile")).ok()?)
}

// ---- materialize -----------------------------------------------------------------------------

/// Name of the lock guarding an extracted tree (exclusive: extraction, gc; shared: in use).
pub fn tree_lock_name(src: &Source) -> String {
    format!("tree-{}", src.identity.replace(':', "-"))
}

/// The extracted tree of a source, held in use (shared lock) until the returned guard drops.
pub fn materialize_in_use(
    src: &Source,
    progress: &mut Progress,
) -> Result<(PathBuf, Option<super::locks::Lock>), KernelError> {
    if src.kind == "path" {
        return Ok((PathBuf::from(&src.location), None));
    }
    loop {
        let tree = materialize(src, progress)?;
        let guard = super::locks::lock_shared(&tree_lock_name(src))?;
        // gc may have removed it between extraction and the shared lock.
        if tree_complete(&tree) {
            return Ok((tree, Some(guard)));
        }
    }
}

/// Prefix of a tree being extracted or exported (a [`crate::scratch::ScratchDir`]).
pub(super) const EXTRACT_PREFIX: &str = ".extract-";

/// An installed tree is complete: it is renamed into place only once whole, and removed only
/// after being moved aside. A tree without its Makefile is what an older, interrupted `gc` left.
fn tree_complete(dest: &Path) -> bool {
    dest.join("Makefile").is_file()
}

/// The extracted tree of a source (extracting or exporting it on first use). A damaged tree is
/// moved aside and extracted again; what killed extractions left is removed first.
pub fn materialize(src: &Source, progress: &mut Progress) -> Result<PathBuf, KernelError> {
    if src.kind == "path" {
        return Ok(PathBuf::from(&src.location));
    }
    let lock = super::locks::lock_path(&tree_lock_name(src));
    materialize_in(&trees_dir(), &lock, src, progress)
}

/// [`materialize`] into `parent`, serialised by the lock file `lock`.
fn materialize_in(
    parent: &Path,
    lock: &Path,
    src: &Source,
    progress: &mut Progress,
) -> Result<PathBuf, KernelError> {
    crate::scratch::sweep(parent, &[EXTRACT_PREFIX]);
    let dest = parent.join(src.identity.replace(':', "-"));
    if tree_complete(&dest) {
        return Ok(dest);
    }
    std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    // One extraction per identity even with concurrent resolutions.
    let _lock = super::locks::lock_file(lock)?;
    if tree_complete(&dest) {
        return Ok(dest);
    }
    if std::fs::symlink_metadata(&dest).is_ok() {
        eprintln!(
            "notice: source tree {} is incomplete (no Makefile: an interrupted removal); moving it aside and extracting it again",
            dest.display()
        );
        crate::scratch::move_aside(&dest)
            .map_err(io(format!("moving {} aside", dest.display())))?;
    }
    let tmp = crate::scratch::ScratchDir::new_in(parent, EXTRACT_PREFIX)
        .map_err(io(format!("creating a temp dir in {}", parent.display())))?;
    match src.kind.as_str() {
        "tarball" => {
            progress.phase(&format!("extract {}", src.location));
            super::extract::extract_tarball(Path::new(&src.location), tmp.path())?
        }
        "git" => {
            progress.phase(&format!(
                "export {}#{}",
                src.location,
                src.reference.as_deref().unwrap_or("")
            ));
            export_git(src, tmp.path())?
        }
        other => unreachable!("unknown source kind {other}"),
    }
    if crate::cancel::requested() {
        return Err(KernelError::Interrupted);
    }
    tmp.install_as(&dest)
        .map_err(io(format!("installing {}", dest.display())))?;
    Ok(dest)
}

/// The repository of an identified `git` source and the id of its tree. identify() fetched the
/// tree just now: a remote is opened from its mirror without fetching again.
pub(crate) fn open_git_source(src: &Source) -> Result<(git2::Repository, git2::Oid), KernelError> {
    let r = if git_remote::is_url(&src.location) {
        git_remote::open_fetched(&src.location)?
    } else {
        open_repo(
            &src.location,
            src.reference.as_deref().unwrap_or("HEAD"),
            true,
        )?
    };
    let oid = src.identity.strip_prefix("git-tree:").unwrap_or_default();
    let oid = git2::Oid::from_str(oid).map_err(git_err)?;
    Ok((r, oid))
}

/// The source's tree into `dest`, contained (every path stays under `dest`; see
/// [`super::worktree::full_export`], which a bisection's first sync uses too).
fn export_git(src: &Source, dest: &Path) -> Result<(), KernelError> {
    let (r, oid) = open_git_source(src)?;
    let tree = r.find_tree(oid).map_err(git_err)?;
    super::worktree::full_export(&r, &tree, dest)?;
    if !tree_complete(dest) {
        return Err(KernelError::BadSpec {
            spec: format!(
                "git:{}#{}",
                src.location,
                src.reference.as_deref().unwrap_or("")
            ),
            why: "not a kernel source tree (no top-level Makefile)".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "materialize_tests.rs"]
mod materialize_tests;
