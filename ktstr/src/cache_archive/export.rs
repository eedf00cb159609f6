//! Writing a cache archive from chosen entries.

use super::{ArchiveError, CacheDirs, FORMAT, MANIFEST, Manifest, TOP, io, is_hash};
use crate::kernel::cache::Metadata;
use crate::sched::cache::Entry as SchedEntry;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What to export. Both lists empty: every entry of both caches.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    /// A cache key (or a prefix of at least 8 hex digits), a kernel spec as built (`6.12`), or
    /// `SPEC/FRAGMENT+FRAGMENT` for the entry built with exactly those config fragments.
    pub kernels: Vec<String>,
    /// A scheduler index key (`cargo-scx_rusty@1.1.4`), a binary name (`scx_rusty`), or
    /// `kernel:NAME` (that in-tree scheduler of the selected kernels, or of every cached one).
    pub scheds: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct ExportReport {
    pub archive: PathBuf,
    pub kernels: Vec<String>,
    pub scheds: Vec<String>,
    pub bytes: u64,
}

/// A scheduler index key and its entry.
type SchedIndexEntry = (String, SchedEntry);

struct KernelEntry {
    key: String,
    meta: Metadata,
}

fn kernel_entries(dirs: &CacheDirs) -> Vec<KernelEntry> {
    let mut out: Vec<KernelEntry> = std::fs::read_dir(&dirs.kernels)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let key = e.file_name().into_string().ok().filter(|k| is_hash(k))?;
            let b = std::fs::read(e.path().join("metadata.json")).ok()?;
            let meta = serde_json::from_slice(&b).ok()?;
            Some(KernelEntry { key, meta })
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

fn sched_entries(dirs: &CacheDirs) -> Vec<SchedIndexEntry> {
    let mut out: Vec<SchedIndexEntry> = std::fs::read_dir(dirs.scheds.join("index"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let key = e.file_name().into_string().ok()?;
            let key = key.strip_suffix(".json")?.to_string();
            let text = std::fs::read_to_string(e.path()).ok()?;
            let entry: SchedEntry = serde_json::from_str(&text).ok()?;
            entry.path.is_file().then_some((key, entry))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The config fragments an entry was built with, in order (the implicit `base` left out).
fn fragments(meta: &Metadata) -> Vec<String> {
    meta.inputs
        .parts
        .iter()
        .filter(|p| p.name != "base")
        .map(|p| {
            if p.name == "inline" {
                p.text.trim().to_string()
            } else {
                p.name.clone()
            }
        })
        .collect()
}

fn kernel_matches(sel: &str, e: &KernelEntry) -> bool {
    if sel.len() >= 8 && sel.bytes().all(|b| b.is_ascii_hexdigit()) {
        return e.key.starts_with(&sel.to_ascii_lowercase());
    }
    match sel.split_once('/') {
        Some((spec, frags)) => {
            let want: Vec<&str> = frags.split(['+', ',']).filter(|f| !f.is_empty()).collect();
            e.meta.inputs.spec == spec && fragments(&e.meta) == want
        }
        None => e.meta.inputs.spec == sel,
    }
}

fn sched_matches(sel: &str, key: &str, e: &SchedEntry, kernel_keys: &BTreeSet<String>) -> bool {
    if let Some(name) = sel.strip_prefix("kernel:") {
        return key
            .strip_prefix("kernel-")
            .and_then(|rest| rest.split_once('-'))
            .is_some_and(|(k, n)| {
                n == name && (kernel_keys.is_empty() || kernel_keys.contains(k))
            });
    }
    key == sel || e.name == sel
}

fn no_match(selector: &str, cached: Vec<String>) -> ArchiveError {
    ArchiveError::NoMatch {
        selector: selector.to_string(),
        cached: if cached.is_empty() {
            "nothing".into()
        } else {
            cached.join(", ")
        },
    }
}

/// Resolves the selection to kernel keys and scheduler index entries, each selector matching
/// at least one entry.
fn choose(
    dirs: &CacheDirs,
    sel: &Selection,
) -> Result<(Vec<KernelEntry>, Vec<SchedIndexEntry>), ArchiveError> {
    let everything = sel.kernels.is_empty() && sel.scheds.is_empty();
    let mut kernels = kernel_entries(dirs);
    if !everything {
        let mut keep = BTreeSet::new();
        for s in &sel.kernels {
            let hits: Vec<_> = kernels.iter().filter(|e| kernel_matches(s, e)).collect();
            if hits.is_empty() {
                let cached = kernels
                    .iter()
                    .map(|e| {
                        format!(
                            "{} ({}/{})",
                            &e.key[..12],
                            e.meta.inputs.spec,
                            fragments(&e.meta).join("+")
                        )
                    })
                    .collect();
                return Err(no_match(&format!("--kernel {s}"), cached));
            }
            keep.extend(hits.iter().map(|e| e.key.clone()));
        }
        kernels.retain(|e| keep.contains(&e.key));
    }
    let kernel_keys: BTreeSet<String> = kernels.iter().map(|e| e.key.clone()).collect();
    let mut scheds = sched_entries(dirs);
    if !everything {
        let mut keep = BTreeSet::new();
        for s in &sel.scheds {
            let hits: Vec<_> = scheds
                .iter()
                .filter(|(k, e)| sched_matches(s, k, e, &kernel_keys))
                .collect();
            if hits.is_empty() {
                let cached = scheds.iter().map(|(k, _)| k.clone()).collect();
                return Err(no_match(&format!("--sched {s}"), cached));
            }
            keep.extend(hits.iter().map(|(k, _)| k.clone()));
        }
        scheds.retain(|(k, _)| keep.contains(k));
    }
    Ok((kernels, scheds))
}

/// Writes the chosen entries to `out` (via a temp file renamed into place).
pub fn export(dirs: &CacheDirs, sel: &Selection, out: &Path) -> Result<ExportReport, ArchiveError> {
    let (kernels, scheds) = choose(dirs, sel)?;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".ktstr-export-")
        .tempfile_in(parent)
        .map_err(io(format!("creating a temp file in {}", parent.display())))?;
    let enc = zstd::stream::Encoder::new(tmp.as_file(), 3).map_err(io("zstd"))?;
    let mut tar = tar::Builder::new(enc);
    tar.follow_symlinks(false);
    let manifest = Manifest {
        format: FORMAT,
        ktstr_version: env!("CARGO_PKG_VERSION").into(),
        kernels: kernels.iter().map(|e| e.key.clone()).collect(),
        scheds: scheds.iter().map(|(k, _)| k.clone()).collect(),
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    append_bytes(&mut tar, &format!("{TOP}/{MANIFEST}"), &json)?;
    for e in &kernels {
        add_kernel(&mut tar, dirs, &e.key)?;
    }
    add_recipe_index(&mut tar, dirs, &manifest.kernels)?;
    for (key, e) in &scheds {
        let name = format!("{TOP}/scheds/store/{}/{}", e.sha256, e.name);
        tar.append_path_with_name(&e.path, &name)
            .map_err(io(format!("archiving {}", e.path.display())))?;
        let idx = dirs.scheds.join("index").join(format!("{key}.json"));
        tar.append_path_with_name(&idx, format!("{TOP}/scheds/index/{key}.json"))
            .map_err(io(format!("archiving {}", idx.display())))?;
    }
    let enc = tar.into_inner().map_err(io("finishing the archive"))?;
    enc.finish().map_err(io("finishing the zstd stream"))?;
    tmp.as_file()
        .sync_all()
        .map_err(io("syncing the archive"))?;
    // Readable by everyone, like the caches it came from: it is meant to be handed on.
    let _ = tmp
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644));
    tmp.persist(out).map_err(|e| ArchiveError::Io {
        what: format!("writing {}", out.display()),
        source: e.error,
    })?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(ExportReport {
        archive: out.to_path_buf(),
        kernels: manifest.kernels,
        scheds: manifest.scheds,
        bytes,
    })
}

fn append_bytes<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
) -> Result<(), ArchiveError> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, name, data)
        .map_err(io(format!("archiving {name}")))
}

/// One kernel entry, read under a shared lock on its key so no rebuild replaces it meanwhile and
/// `gc` skips it.
fn add_kernel<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    dirs: &CacheDirs,
    key: &str,
) -> Result<(), ArchiveError> {
    let lock = dirs.kernel_lock_path(key);
    let _held =
        crate::lock::FileLock::shared(&lock).map_err(io(format!("locking {}", lock.display())))?;
    let dir = dirs.kernels.join(key);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(io(format!("reading {}", dir.display())))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        // `.last-used` is this machine's bookkeeping, not content.
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    for f in files {
        let name = f
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .into_owned();
        tar.append_path_with_name(&f, format!("{TOP}/kernels/{key}/{name}"))
            .map_err(io(format!("archiving {}", f.display())))?;
    }
    Ok(())
}

fn add_recipe_index<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    dirs: &CacheDirs,
    keys: &[String],
) -> Result<(), ArchiveError> {
    let mut recipes: Vec<(String, Vec<u8>)> = std::fs::read_dir(dirs.kernels.join("index"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let b = std::fs::read(e.path()).ok()?;
            let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
            let key = v.get("key")?.as_str()?;
            keys.iter().any(|k| k == key).then_some((name, b))
        })
        .collect();
    recipes.sort();
    for (name, b) in recipes {
        append_bytes(tar, &format!("{TOP}/kernels/index/{name}"), &b)?;
    }
    Ok(())
}
