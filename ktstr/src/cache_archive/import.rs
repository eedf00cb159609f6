//! Verifying and installing a cache archive.

use super::{ArchiveError, CacheDirs, FORMAT, MANIFEST, Manifest, TOP, io, is_hash, is_plain_name};
use crate::kernel::cache::{Metadata, content_key};
use crate::kernel::configure::normalize;
use crate::sched::cache::{Cache as SchedCache, Entry as SchedEntry};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, serde::Serialize)]
pub struct ImportReport {
    /// Kernel keys installed by this import.
    pub kernels: Vec<String>,
    /// Scheduler index keys installed by this import.
    pub scheds: Vec<String>,
    /// Entries the cache already held intact (left as they were).
    pub already_present: Vec<String>,
}

/// Verifies every entry of `archive`, then installs those the cache lacks.
pub fn import(dirs: &CacheDirs, archive: &Path) -> Result<ImportReport, ArchiveError> {
    let label = archive.display().to_string();
    let unreadable = |why: String| ArchiveError::Unreadable {
        archive: label.clone(),
        why,
    };
    let mut f = std::fs::File::open(archive).map_err(|e| unreadable(e.to_string()))?;
    let mut magic = [0u8; 4];
    let zstd_magic = f.read_exact(&mut magic).is_ok() && magic == [0x28, 0xb5, 0x2f, 0xfd];
    if !zstd_magic {
        return Err(unreadable(
            "not a ktstr cache archive (a .tar.zst from `ktstr cache export`)".into(),
        ));
    }
    let f = std::fs::File::open(archive).map_err(|e| unreadable(e.to_string()))?;
    let dec = zstd::stream::Decoder::new(std::io::BufReader::new(f)).map_err(io("zstd"))?;
    std::fs::create_dir_all(&dirs.kernels)
        .map_err(io(format!("creating {}", dirs.kernels.display())))?;
    // Staged inside the kernel cache (one filesystem, so installing is a rename); a dot name is
    // never taken for an entry, and the dir is removed on every exit but SIGKILL.
    let stage = tempfile::Builder::new()
        .prefix(".import-")
        .tempdir_in(&dirs.kernels)
        .map_err(io("creating the import staging dir"))?;
    crate::kernel::extract::unpack_contained(dec, stage.path(), &label).map_err(|e| match e {
        crate::kernel::KernelError::Interrupted => ArchiveError::Interrupted,
        e => unreadable(format!("corrupt archive: {e}")),
    })?;
    let root = stage.path();
    let text = std::fs::read(root.join(MANIFEST))
        .map_err(|_| unreadable(format!("no {TOP}/{MANIFEST}: not a ktstr cache archive")))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| unreadable(format!("{MANIFEST}: {e}")))?;
    if manifest.format != FORMAT {
        return Err(unreadable(format!(
            "archive format {} (this ktstr reads {FORMAT}); export it with this ktstr version",
            manifest.format
        )));
    }
    let tampered = |entry: String, why: String| ArchiveError::Tampered {
        archive: label.clone(),
        entry,
        why,
    };
    for key in &manifest.kernels {
        if !is_hash(key) {
            return Err(tampered(format!("kernel {key}"), "not a cache key".into()));
        }
        let rel = format!("kernels/{key}");
        no_symlink(root, &rel)
            .and_then(|()| verify_kernel_dir(&root.join(&rel), key).map(drop))
            .map_err(|why| tampered(format!("kernel {key}"), why))?;
    }
    let mut scheds = Vec::new();
    for key in &manifest.scheds {
        let staged =
            verify_sched(root, key).map_err(|why| tampered(format!("scheduler {key}"), why))?;
        scheds.push((key.clone(), staged));
    }
    let recipes = recipe_index(root, &manifest.kernels);
    let mut report = ImportReport::default();
    for key in &manifest.kernels {
        install_kernel(dirs, &root.join("kernels").join(key), key, &mut report)?;
    }
    for (recipe, key) in recipes {
        write_recipe(dirs, &recipe, &key)?;
    }
    let cache = SchedCache::new(dirs.scheds.clone());
    for (key, (entry, bin)) in scheds {
        let _held = cache.lock(&key).map_err(|e| ArchiveError::Io {
            what: format!("locking scheduler {key}"),
            source: std::io::Error::other(e.to_string()),
        })?;
        if cache.lookup(&key).is_some_and(|e| e.sha256 == entry.sha256) {
            report.already_present.push(key);
            continue;
        }
        cache
            .insert(&key, &entry.name, &bin, &entry.origin)
            .map_err(|e| ArchiveError::Io {
                what: format!("installing scheduler {key}"),
                source: std::io::Error::other(e.to_string()),
            })?;
        report.scheds.push(key);
    }
    Ok(report)
}

/// A kernel entry dir is what its metadata says: every recorded file has the recorded size and
/// sha256, and the key is the content key of the recorded inputs and the config.
pub(super) fn verify_kernel_dir(dir: &Path, key: &str) -> Result<Metadata, String> {
    let b = std::fs::read(dir.join("metadata.json")).map_err(|e| format!("metadata.json: {e}"))?;
    let meta: Metadata = serde_json::from_slice(&b).map_err(|e| format!("metadata.json: {e}"))?;
    if meta.key != key {
        return Err(format!("metadata.json names key {}", meta.key));
    }
    for name in [
        crate::kernel::cache::IMAGE,
        crate::kernel::cache::VMLINUX,
        crate::kernel::cache::CONFIG,
    ] {
        let info = meta
            .files
            .get(name)
            .ok_or(format!("metadata.json lacks {name}"))?;
        let p = dir.join(name);
        let size = std::fs::symlink_metadata(&p)
            .map_err(|e| format!("{name}: {e}"))
            .and_then(|m| {
                if m.is_file() {
                    Ok(m.len())
                } else {
                    Err(format!("{name} is not a regular file"))
                }
            })?;
        if size != info.size {
            return Err(format!("{name} is {size} bytes, expected {}", info.size));
        }
        let sum = crate::digest::sha256_file(&p).map_err(|e| format!("{name}: {e}"))?;
        if sum != info.sha256 {
            return Err(format!("{name} sha256 is {sum}, expected {}", info.sha256));
        }
    }
    if meta.inputs.recipe_version != crate::kernel::RECIPE_VERSION {
        return Err(format!(
            "built under kernel recipe version {} (this ktstr: {})",
            meta.inputs.recipe_version,
            crate::kernel::RECIPE_VERSION
        ));
    }
    let config = std::fs::read_to_string(dir.join(crate::kernel::cache::CONFIG))
        .map_err(|e| format!("config: {e}"))?;
    let recomputed = content_key(
        &meta.inputs.source.identity,
        &normalize(&config),
        &meta.inputs.toolchain,
    );
    if recomputed != key {
        return Err(format!(
            "its inputs and config hash to {recomputed}, not to its key"
        ));
    }
    Ok(meta)
}

/// A staged scheduler: its index entry and the binary, which must hash to its store name.
fn verify_sched(root: &Path, key: &str) -> Result<(SchedEntry, PathBuf), String> {
    if !is_plain_name(key) {
        return Err("not a scheduler index key".into());
    }
    let rel = format!("scheds/index/{key}.json");
    no_symlink(root, &rel)?;
    let idx = root.join(rel);
    let text = std::fs::read_to_string(&idx).map_err(|e| format!("index: {e}"))?;
    let entry: SchedEntry = serde_json::from_str(&text).map_err(|e| format!("index: {e}"))?;
    if !is_hash(&entry.sha256) || !is_plain_name(&entry.name) {
        return Err(format!(
            "index names {}/{}, not a store entry",
            entry.sha256, entry.name
        ));
    }
    let rel = format!("scheds/store/{}/{}", entry.sha256, entry.name);
    no_symlink(root, &rel)?;
    let bin = root.join(rel);
    if !std::fs::symlink_metadata(&bin).is_ok_and(|m| m.is_file()) {
        return Err(format!("{} is missing or not a regular file", entry.name));
    }
    let sum = crate::digest::sha256_file(&bin).map_err(|e| format!("{}: {e}", entry.name))?;
    if sum != entry.sha256 {
        return Err(format!(
            "{} sha256 is {sum}, expected {}",
            entry.name, entry.sha256
        ));
    }
    Ok((entry, bin))
}

/// Staged recipe index entries that point at a key of the archive.
/// No component of `rel` below `root` is a symlink: the archive's own links may point anywhere,
/// and what is verified and then moved into the cache must be what the archive holds.
fn no_symlink(root: &Path, rel: &str) -> Result<(), String> {
    let mut at = root.to_path_buf();
    for part in rel.split('/') {
        at.push(part);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(format!("{rel}: the archive makes {part} a symlink"));
        }
    }
    Ok(())
}

fn recipe_index(root: &Path, keys: &[String]) -> Vec<(String, String)> {
    if no_symlink(root, "kernels/index").is_err() {
        return Vec::new();
    }
    std::fs::read_dir(root.join("kernels/index"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let recipe = name.strip_suffix(".json").filter(|r| is_hash(r))?;
            let b = std::fs::read(e.path()).ok()?;
            let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
            let key = v.get("key")?.as_str()?;
            keys.iter()
                .any(|k| k == key)
                .then(|| (recipe.to_string(), key.to_string()))
        })
        .collect()
}

/// Moves a verified staged entry into place under the key's lock (the lock a build of that key
/// takes), unless an intact copy is already there.
fn install_kernel(
    dirs: &CacheDirs,
    staged: &Path,
    key: &str,
    report: &mut ImportReport,
) -> Result<(), ArchiveError> {
    let lock = dirs.kernel_lock_path(key);
    let _held = crate::lock::FileLock::exclusive(&lock, || {
        eprintln!("notice: another ktstr holds kernel {key}; waiting for it")
    })
    .map_err(io(format!("locking {}", lock.display())))?;
    let dest = dirs.kernels.join(key);
    if dest.exists() {
        if verify_kernel_dir(&dest, key).is_ok() {
            report.already_present.push(key.to_string());
            return Ok(());
        }
        // A corrupt entry: moved aside so readers see the old or the new one, never a mix.
        let trash = tempfile::Builder::new()
            .prefix(".trash-")
            .tempdir_in(&dirs.kernels)
            .map_err(io("trash dir"))?;
        std::fs::rename(&dest, trash.path().join("old"))
            .map_err(io(format!("moving {} aside", dest.display())))?;
    }
    std::fs::rename(staged, &dest).map_err(io(format!("installing {}", dest.display())))?;
    report.kernels.push(key.to_string());
    Ok(())
}

fn write_recipe(dirs: &CacheDirs, recipe: &str, key: &str) -> Result<(), ArchiveError> {
    let dir = dirs.kernels.join("index");
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io("creating an index temp file"))?;
    std::fs::write(tmp.path(), serde_json::json!({ "key": key }).to_string())
        .map_err(io("writing the index"))?;
    tmp.persist(dir.join(format!("{recipe}.json")))
        .map_err(|e| ArchiveError::Io {
            what: "installing the index".into(),
            source: e.error,
        })?;
    Ok(())
}
