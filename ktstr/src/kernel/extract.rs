//! Extracting a kernel tarball into the source cache, contained: a tarball is untrusted input.
//!
//! Every entry lands under the destination. Symlinks are created as they are (they may point
//! anywhere: kernel trees have relative ones) but are never followed while writing: an entry
//! whose path goes through a symlink is refused, and an entry that replaces a symlink removes the
//! link first instead of writing through it. Hard links must name an earlier entry of the same
//! archive; anything else (absolute, outside, missing) is refused. Devices and FIFOs are skipped.

use super::{KernelError, io};
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use tar::EntryType;

/// Extracts `path` (xz, gzip, zstd or plain tar, one top directory, stripped) into `dest`.
pub(crate) fn extract_tarball(path: &Path, dest: &Path) -> Result<(), KernelError> {
    let mut f = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
    let mut magic = [0u8; 6];
    let n = f.read(&mut magic).map_err(io("reading the tarball"))?;
    let f = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
    let f = std::io::BufReader::with_capacity(1 << 20, f);
    let reader: Box<dyn Read> = match &magic[..n] {
        [0xfd, b'7', b'z', b'X', b'Z', 0] => Box::new(xz2::read::XzDecoder::new(f)),
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(f)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            Box::new(zstd::stream::Decoder::new(f).map_err(io("zstd"))?)
        }
        _ => Box::new(f),
    };
    unpack_contained(reader, dest, &path.display().to_string())?;
    if !dest.join("Makefile").is_file() {
        return Err(KernelError::BadSpec {
            spec: path.display().to_string(),
            why: "not a kernel source tarball (no top-level Makefile)".into(),
        });
    }
    Ok(())
}

/// Unpacks a tar stream (one top directory, stripped) into `dest` under the rules above; also
/// used for cache archives (`crate::cache_archive`). `label` names the archive in errors.
pub(crate) fn unpack_contained(
    reader: impl Read,
    dest: &Path,
    label: &str,
) -> Result<(), KernelError> {
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_mtime(true);
    let bad = |why: String| KernelError::BadSpec {
        spec: label.to_string(),
        why,
    };
    for (i, entry) in ar.entries().map_err(|e| bad(e.to_string()))?.enumerate() {
        if i % 4096 == 0 && crate::cancel::requested() {
            return Err(KernelError::Interrupted);
        }
        let mut entry = entry.map_err(|e| bad(format!("corrupt tarball: {e}")))?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let p = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let Some(rel) = in_tree(&p) else { continue };
        let out = dest.join(&rel);
        if let Some(parent) = rel.parent() {
            check_no_symlink(dest, parent).map_err(|why| bad(format!("{}: {why}", p.display())))?;
            let dir = dest.join(parent);
            std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        // Never write through what an earlier entry left at this path (a symlink above all).
        if let Ok(m) = std::fs::symlink_metadata(&out)
            && !m.is_dir()
        {
            std::fs::remove_file(&out).map_err(io(format!("replacing {}", out.display())))?;
        }
        match kind {
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| bad(e.to_string()))?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let inside = in_tree(&target)
                    .filter(|t| check_no_symlink(dest, t).is_ok())
                    .map(|t| dest.join(t))
                    .filter(|t| t.is_file());
                let Some(inside) = inside else {
                    return Err(bad(format!(
                        "{}: a hard link to {} is not an earlier file of the archive",
                        p.display(),
                        target.display()
                    )));
                };
                std::fs::hard_link(&inside, &out)
                    .map_err(io(format!("linking {}", out.display())))?;
            }
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::GNUSparse => {
                entry
                    .unpack(&out)
                    .map_err(io(format!("extracting {} (disk full?)", rel.display())))?;
            }
            // Devices, FIFOs and the like have no place in a source tree.
            _ => {}
        }
    }
    Ok(())
}

/// The entry's path below the tarball's top directory, if it is a plain relative path (no `..`,
/// no root, no prefix) that names something below it.
fn in_tree(p: &Path) -> Option<PathBuf> {
    let mut comps = p
        .components()
        .skip_while(|c| matches!(c, Component::CurDir));
    comps.next()?;
    let rel: PathBuf = comps.collect();
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    (plain && !rel.as_os_str().is_empty()).then_some(rel)
}

/// Refuses a relative path of which some prefix under `root` is a symlink.
fn check_no_symlink(root: &Path, rel: &Path) -> Result<(), String> {
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "goes through the symlink {}; refusing to write outside the tree",
                    at.display()
                ));
            }
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    enum E<'a> {
        File(&'a str, &'a str),
        Symlink(&'a str, &'a str),
        HardLink(&'a str, &'a str),
    }

    fn tarball(dir: &Path, entries: &[E]) -> PathBuf {
        let path = dir.join("t.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let mut add = |kind: EntryType, name: &str, link: Option<&str>, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // Raw header fields: hostile names that the builder's own checks would refuse.
            let name_field = &mut h.as_old_mut().name;
            name_field[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            b.append(&h, data).unwrap();
        };
        add(EntryType::Regular, "linux/Makefile", None, b"VERSION = 6\n");
        for e in entries {
            match e {
                E::File(n, d) => add(EntryType::Regular, n, None, d.as_bytes()),
                E::Symlink(n, t) => add(EntryType::Symlink, n, Some(t), b""),
                E::HardLink(n, t) => add(EntryType::Link, n, Some(t), b""),
            }
        }
        b.finish().unwrap();
        path
    }

    #[test]
    fn a_symlink_in_the_path_cannot_take_a_write_outside() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let dest = dir.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        let t = tarball(
            dir.path(),
            &[
                E::Symlink("linux/esc", outside.to_str().unwrap()),
                E::File("linux/esc/F", "pwned"),
            ],
        );
        let e = extract_tarball(&t, &dest).unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");
        assert!(!outside.join("F").exists());
    }

    #[test]
    fn a_file_replacing_a_symlink_does_not_write_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let dest = dir.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        let t = tarball(
            dir.path(),
            &[
                E::Symlink("linux/a", victim.to_str().unwrap()),
                E::File("linux/a", "pwned"),
                // A symlink may point anywhere; it is created, not followed.
                E::Symlink("linux/rel", "../x"),
            ],
        );
        extract_tarball(&t, &dest).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(dest.join("a")).unwrap(), "pwned");
        assert_eq!(
            std::fs::read_link(dest.join("rel")).unwrap(),
            Path::new("../x")
        );
    }

    #[test]
    fn hard_links_must_name_an_earlier_file_of_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        let t = tarball(dir.path(), &[E::HardLink("linux/h", "linux/Makefile")]);
        extract_tarball(&t, &dest).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("h")).unwrap(),
            "VERSION = 6\n"
        );
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s").unwrap();
        for target in [secret.to_str().unwrap(), "linux/../../secret", "linux/nope"] {
            let dest = dir.path().join(format!("d{}", target.len()));
            std::fs::create_dir(&dest).unwrap();
            let t = tarball(dir.path(), &[E::HardLink("linux/h", target)]);
            let e = extract_tarball(&t, &dest).unwrap_err().to_string();
            assert!(e.contains("hard link"), "{target}: {e}");
            assert!(!dest.join("h").exists());
        }
    }

    #[test]
    fn dot_dot_and_absolute_entries_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        let t = tarball(
            dir.path(),
            &[E::File("linux/../../up", "x"), E::File("/abs", "x")],
        );
        extract_tarball(&t, &dest).unwrap();
        assert!(!dir.path().join("up").exists());
        assert!(!dest.join("up").exists());
    }
}
