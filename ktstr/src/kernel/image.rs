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

/// The uncompressed kernel inside a bzImage, if it is an x86-64 ELF with a PVH entry note.
///
/// Why: under TCG the guest spends seconds decompressing its own kernel (an 11 MB zstd payload
/// in Debian's image: ~40% of the time to the agent); decompressing natively on the host and
/// booting the ELF through its PVH entry skips that. The payload's place comes from the setup
/// header (`payload_offset`/`payload_length`, boot protocol >= 2.08); zstd, gzip and xz payloads
/// are understood (the kernel's defaults); anything else is an error and the caller boots the
/// bzImage as is.
pub fn extract_pvh_vmlinux(bzimage: &[u8]) -> Result<Vec<u8>, String> {
    let version = classify(bzimage)?;
    match version {
        ImageKind::BzImage { boot_protocol } if boot_protocol >= 0x0208 => {}
        other => return Err(format!("{other:?} carries no payload description")),
    }
    let u32_at = |off: usize| -> Result<usize, String> {
        bzimage
            .get(off..off + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| "truncated setup header".to_string())
    };
    // setup_sects 0 means 4 (boot protocol); protected-mode code follows the setup sectors.
    let setup_sects = match bzimage.get(0x1f1).copied() {
        Some(0) | None => 4,
        Some(n) => n as usize,
    };
    let start = (setup_sects + 1) * 512 + u32_at(0x248)?;
    let len = u32_at(0x24c)?;
    let payload = bzimage
        .get(start..start.saturating_add(len))
        .ok_or_else(|| "payload lies outside the file".to_string())?;
    let mut out = Vec::new();
    let res = if payload.starts_with(b"\x28\xb5\x2f\xfd") {
        // The kernel appends the uncompressed size after the frame: read one frame only.
        zstd::stream::read::Decoder::with_buffer(payload)
            .map(|d| d.single_frame())
            .and_then(|mut d| d.read_to_end(&mut out))
    } else if payload.starts_with(b"\x1f\x8b") {
        flate2::read::GzDecoder::new(payload).read_to_end(&mut out)
    } else if payload.starts_with(b"\xfd7zXZ\x00") {
        xz_one_stream(payload, &mut out)
    } else {
        return Err(format!(
            "payload compression {:02x?} is not zstd, gzip or xz",
            &payload[..payload.len().min(4)]
        ));
    };
    res.map_err(|e| format!("decompressing the payload: {e}"))?;
    if classify(&out) != Ok(ImageKind::Elf) {
        return Err("the payload is not an x86-64 ELF".into());
    }
    if !has_pvh_note(&out) {
        return Err("the kernel has no PVH entry (CONFIG_PVH is off)".into());
    }
    Ok(out)
}

/// Decodes the first xz stream of `input`. xz2's reader fails on the kernel's trailing size word
/// after the stream, so the stream is driven directly and stopped at its end.
fn xz_one_stream(mut input: &[u8], out: &mut Vec<u8>) -> std::io::Result<usize> {
    use xz2::stream::{Action, Status, Stream};
    let mut s = Stream::new_stream_decoder(u64::MAX, 0).map_err(std::io::Error::other)?;
    loop {
        if out.capacity() - out.len() < 1 << 20 {
            out.reserve(16 << 20);
        }
        let (in0, out0) = (s.total_in(), s.total_out());
        let status = s
            .process_vec(input, out, Action::Run)
            .map_err(std::io::Error::other)?;
        input = &input[(s.total_in() - in0) as usize..];
        if status == Status::StreamEnd {
            return Ok(out.len());
        }
        if s.total_in() == in0 && s.total_out() == out0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "xz stream ends early",
            ));
        }
    }
}

/// True if the ELF has the Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY = 18) QEMU boots through.
pub fn has_pvh_note(elf: &[u8]) -> bool {
    let Ok(parsed) = goblin::elf::Elf::parse(elf) else {
        return false;
    };
    let Some(notes) = parsed.iter_note_headers(elf) else {
        return false;
    };
    notes
        .flatten()
        .any(|n| n.n_type == 18 && n.name.trim_end_matches('\0') == "Xen")
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
    fn xz_stream_with_trailing_size_word_decodes() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut enc = Vec::new();
        std::io::Read::read_to_end(&mut xz2::read::XzEncoder::new(&data[..], 6), &mut enc).unwrap();
        enc.extend_from_slice(&(data.len() as u32).to_le_bytes());
        let mut out = Vec::new();
        xz_one_stream(&enc, &mut out).unwrap();
        assert_eq!(out, data);
        let mut out = Vec::new();
        assert!(xz_one_stream(&enc[..enc.len() / 2], &mut out).is_err());
    }

    /// Debian's cloud kernel when a test run has it extracted (the e2e tests fetch it).
    #[test]
    fn extracts_the_elf_from_a_real_bzimage() {
        let dir = crate::paths::debian_dir();
        let image = std::fs::read_dir(&dir).ok().and_then(|rd| {
            rd.flatten()
                .map(|e| e.path().join("boot"))
                .filter_map(|b| std::fs::read_dir(b).ok())
                .flat_map(|rd| rd.flatten().map(|e| e.path()))
                .find(|p| p.to_string_lossy().contains("vmlinuz-"))
        });
        let Some(image) = image else {
            eprintln!("no Debian kernel in {}; skipped", dir.display());
            return;
        };
        let bz = std::fs::read(&image).unwrap();
        let elf = extract_pvh_vmlinux(&bz).unwrap();
        assert!(elf.len() > bz.len());
        assert!(has_pvh_note(&elf));
        assert!(
            extract_pvh_vmlinux(&elf).is_err(),
            "an ELF is not a bzImage"
        );
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
