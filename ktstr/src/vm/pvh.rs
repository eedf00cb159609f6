//! The uncompressed kernel both backends boot instead of a bzImage: extracted once on the host
//! and cached by the bzImage's content hash, so no guest decompresses itself under emulation
//! (QEMU enters it through PVH, the kvm backend at its 64-bit entry).

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The kernel a backend should load for `image`: for a bzImage whose payload is a PVH-capable ELF, that
/// ELF (cached under `<cache>/vmlinux/<sha256 of the bzImage>.elf`); otherwise `image` itself.
/// Any failure (unknown compression, no PVH note, unwritable cache) falls back to `image`: the
/// bzImage always boots, only slower.
pub fn pvh_kernel(image: &Path) -> PathBuf {
    // Reading and hashing a distribution bzImage is slow under emulation (docs/benchmarks.md,
    // "KVM backend", the ELF lookup step) and would be paid on every boot: remember the answer
    // per process, keyed by what changes when the image is rebuilt in place.
    type Key = (PathBuf, u64, std::time::SystemTime);
    static SEEN: Mutex<Option<std::collections::HashMap<Key, PathBuf>>> = Mutex::new(None);
    let key = std::fs::metadata(image)
        .and_then(|m| Ok((image.to_path_buf(), m.len(), m.modified()?)))
        .ok();
    let lock = || SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let hit = key
        .as_ref()
        .and_then(|k| lock().get_or_insert_with(Default::default).get(k).cloned());
    // The cached ELF may have been removed since (cache cleaning): then look again.
    if let Some(hit) = hit.filter(|p| p.is_file()) {
        return hit;
    }
    let found = pvh_kernel_uncached(image);
    if let Some(k) = key {
        lock()
            .get_or_insert_with(Default::default)
            .insert(k, found.clone());
    }
    found
}

fn pvh_kernel_uncached(image: &Path) -> PathBuf {
    let Ok(bytes) = std::fs::read(image) else {
        return image.to_path_buf();
    };
    if !matches!(
        crate::kernel::image::classify(&bytes),
        Ok(crate::kernel::image::ImageKind::BzImage { .. })
    ) {
        return image.to_path_buf();
    }
    let dir = crate::paths::cache_root().join("vmlinux");
    let out = dir.join(format!("{}.elf", hex::encode(Sha256::digest(&bytes))));
    // Remembers "this image has no usable PVH ELF" so the payload is not decompressed per boot.
    let negative = out.with_extension("bzimage-only");
    if out.is_file() {
        return out;
    }
    if negative.is_file() {
        return image.to_path_buf();
    }
    let write = |path: &Path, data: &[u8]| -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".vmlinux-")
            .tempfile_in(&dir)?;
        std::io::Write::write_all(&mut tmp, data)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    match crate::kernel::image::extract_pvh_vmlinux(&bytes) {
        Ok(elf) if write(&out, &elf).is_ok() => out,
        Ok(_) => image.to_path_buf(),
        Err(why) => {
            let _ = write(&negative, why.as_bytes());
            image.to_path_buf()
        }
    }
}
