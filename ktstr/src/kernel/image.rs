//! Recognising a bootable x86-64 kernel image before anything is spent on booting it.
//!
//! Two formats boot: a bzImage (what `make bzImage` and distributions ship as vmlinuz; the x86 boot
//! protocol puts the magic `HdrS` at offset 0x202) and an uncompressed ELF `vmlinux` (64-bit x86-64;
//! QEMU boots it through its PVH note, the own VMM through its ELF loader).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Offset of the `HdrS` magic in the x86 boot protocol's setup header.
const HDRS_OFFSET: usize = 0x202;
/// Offset of the boot protocol version (u16, little endian) in the setup header.
const VERSION_OFFSET: usize = 0x206;
/// Bytes needed to classify: the setup header ends well before 0x300.
const PROBE_LEN: usize = 0x300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// x86 boot protocol image; the field is the protocol version (e.g. 0x020f).
    BzImage { boot_protocol: u16 },
    /// ELF64 x86-64 vmlinux.
    Elf,
}

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("kernel image {0} does not exist: pass the path of a bzImage or vmlinux")]
    Missing(PathBuf),
    #[error("kernel image {path} cannot be read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a kernel image ({reason}): pass a bzImage (arch/x86/boot/bzImage, /boot/vmlinuz-*) or an x86-64 ELF vmlinux"
    )]
    NotAKernel { path: PathBuf, reason: String },
}

/// Reads the head of `path` and says which kind of kernel image it is.
pub fn probe(path: &Path) -> Result<ImageKind, ImageError> {
    let mut f = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ImageError::Missing(path.to_path_buf())
        } else {
            ImageError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })?;
    if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(ImageError::NotAKernel {
            path: path.to_path_buf(),
            reason: "it is a directory".into(),
        });
    }
    let mut head = Vec::with_capacity(PROBE_LEN);
    f.by_ref()
        .take(PROBE_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| ImageError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
    classify(&head).map_err(|reason| ImageError::NotAKernel {
        path: path.to_path_buf(),
        reason,
    })
}

/// Classifies the first bytes of a file (pure, for tests).
pub fn classify(head: &[u8]) -> Result<ImageKind, String> {
    if head.len() >= 20 && head[..4] == *b"\x7fELF" {
        // EI_CLASS 2 = 64-bit, EI_DATA 1 = little endian, e_machine 62 = x86-64.
        let machine = u16::from_le_bytes([head[18], head[19]]);
        if head[4] != 2 || head[5] != 1 || machine != 62 {
            return Err(format!(
                "an ELF file but not x86-64 (class {}, machine {machine})",
                head[4]
            ));
        }
        return Ok(ImageKind::Elf);
    }
    if head.len() >= VERSION_OFFSET + 2 && &head[HDRS_OFFSET..HDRS_OFFSET + 4] == b"HdrS" {
        let boot_protocol = u16::from_le_bytes([head[VERSION_OFFSET], head[VERSION_OFFSET + 1]]);
        // 2.06 added the fields every modern loader (and QEMU's) relies on.
        if boot_protocol < 0x0206 {
            return Err(format!("boot protocol {boot_protocol:#06x} is too old"));
        }
        return Ok(ImageKind::BzImage { boot_protocol });
    }
    if head.len() < PROBE_LEN.min(HDRS_OFFSET + 4) {
        return Err(format!("only {} bytes long", head.len()));
    }
    Err("no bzImage HdrS magic and no ELF header".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bz(version: u16) -> Vec<u8> {
        let mut h = vec![0u8; PROBE_LEN];
        h[HDRS_OFFSET..HDRS_OFFSET + 4].copy_from_slice(b"HdrS");
        h[VERSION_OFFSET..VERSION_OFFSET + 2].copy_from_slice(&version.to_le_bytes());
        h
    }

    #[test]
    fn recognises_bzimage_and_elf() {
        assert_eq!(
            classify(&bz(0x020f)),
            Ok(ImageKind::BzImage {
                boot_protocol: 0x020f
            })
        );
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[18] = 62;
        assert_eq!(classify(&elf), Ok(ImageKind::Elf));
    }

    #[test]
    fn rejects_other_files() {
        assert!(classify(b"#!/bin/sh\necho hi\n").is_err());
        assert!(classify(&vec![0u8; PROBE_LEN]).is_err());
        assert!(classify(&bz(0x0200)).is_err());
        let mut arm = vec![0u8; 64];
        arm[..4].copy_from_slice(b"\x7fELF");
        arm[4] = 2;
        arm[5] = 1;
        arm[18] = 183; // aarch64
        assert!(classify(&arm).is_err());
    }

    #[test]
    fn probe_names_missing_file_and_directory() {
        let err = probe(Path::new("/nonexistent/bzImage")).unwrap_err();
        assert!(matches!(err, ImageError::Missing(_)));
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            probe(dir.path()),
            Err(ImageError::NotAKernel { .. })
        ));
    }
}
