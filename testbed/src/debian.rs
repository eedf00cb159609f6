//! Debian's prebuilt `linux-image-6.12.*-cloud-amd64` kernel: a real kernel for tests and EEVDF
//! baselines without building one. It lacks CONFIG_SCHED_CLASS_EXT, but boots under QEMU TCG
//! and carries kvm.ko / kvm-amd.ko (xz), which the nested KVM harness insmods.
//!
//! The package is fetched with `apt-get download` (or taken from a local .deb) and unpacked with
//! `dpkg -x` into `paths::debian_dir()/<package>/`; an extracted tree is reused, so repeated calls
//! are cheap and work offline. Extraction goes to a temp dir renamed into place, so a crash never
//! leaves a half-extracted tree that a later call would trust.

use ktstr::paths;
use std::path::{Path, PathBuf};
use std::process::Command;
use thiserror::Error;

/// Package name pattern: `linux-image-6.12.<N>+deb12-cloud-amd64-unsigned`.
const PREFIX: &str = "linux-image-6.12.";
const SUFFIX: &str = "-cloud-amd64-unsigned";

#[derive(Debug, Clone)]
pub struct DebianKernel {
    /// `boot/vmlinuz-<release>` (a bzImage).
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` (kernel/arch/x86/kvm/kvm.ko.xz etc.).
    pub modules_dir: PathBuf,
    /// `boot/config-<release>`.
    pub config: PathBuf,
    /// The kernel release, e.g. `6.12.117+deb12-cloud-amd64`.
    pub release: String,
}

#[derive(Debug, Error)]
pub enum DebianError {
    #[error("{tool} is needed to fetch the Debian cloud kernel: {fix}")]
    MissingTool { tool: String, fix: String },
    #[error(
        "no linux-image-6.12.*-cloud-amd64-unsigned package is known to apt: run `apt-get update` (Debian bookworm with bookworm-backports or newer), or pass a local .deb"
    )]
    NoPackage,
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{path}: {reason}")]
    BadPackage { path: PathBuf, reason: String },
    #[error(
        "cache directory {path} is not writable ({source}): set KTSTR_CACHE_DIR to a writable directory"
    )]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Returns the extracted Debian cloud kernel, fetching and unpacking it on first use.
/// `local_deb`: use this .deb instead of `apt-get download`.
pub fn fetch(local_deb: Option<&Path>) -> Result<DebianKernel, DebianError> {
    let root = paths::debian_dir();
    std::fs::create_dir_all(&root).map_err(|e| DebianError::Cache {
        path: root.clone(),
        source: e,
    })?;
    if let Some(deb) = local_deb {
        let name = package_name_of(deb)?;
        return extract_once(&root, &name, deb);
    }
    // Offline-friendly: an already extracted tree wins, newest first.
    if let Some(name) = newest(list_extracted(&root)) {
        return locate(&root.join(&name));
    }
    let name = newest(apt_candidates()?).ok_or(DebianError::NoPackage)?;
    let dl = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(&root)
        .map_err(|e| DebianError::Cache {
            path: root.clone(),
            source: e,
        })?;
    run(
        Command::new("apt-get")
            .args(["download", "-q", &name])
            .current_dir(dl.path()),
        "apt-get download",
    )?;
    let deb = std::fs::read_dir(dl.path())
        .ok()
        .and_then(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "deb"))
        })
        .ok_or_else(|| DebianError::Command {
            what: "apt-get download".into(),
            detail: format!("no .deb appeared in {}", dl.path().display()),
        })?;
    extract_once(&root, &name, &deb)
}

/// `linux-image-6.12.117+deb12-cloud-amd64-unsigned_6.12.117-1~deb12u1_amd64.deb` -> package name.
fn package_name_of(deb: &Path) -> Result<String, DebianError> {
    let bad = |reason: &str| DebianError::BadPackage {
        path: deb.to_path_buf(),
        reason: reason.into(),
    };
    if !deb.is_file() {
        return Err(bad(
            "no such file; pass a linux-image-6.12.*-cloud-amd64-unsigned .deb",
        ));
    }
    let file = deb
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| bad("file name is not UTF-8"))?;
    let name = file.split('_').next().unwrap_or(file);
    if !name.starts_with("linux-image-") {
        return Err(bad("not a linux-image-* package"));
    }
    Ok(name.to_string())
}

fn extract_once(root: &Path, name: &str, deb: &Path) -> Result<DebianKernel, DebianError> {
    let dest = root.join(name);
    if dest.is_dir() {
        return locate(&dest);
    }
    let tmp = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(root)
        .map_err(|e| DebianError::Cache {
            path: root.to_path_buf(),
            source: e,
        })?;
    run(
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(tmp.path()),
        "dpkg-deb -x",
    )?;
    locate(tmp.path())?;
    let tmp_path = tmp.keep();
    if let Err(e) = std::fs::rename(&tmp_path, &dest) {
        let _ = std::fs::remove_dir_all(&tmp_path);
        // Another process won the race: its tree is as good as ours.
        if !dest.is_dir() {
            return Err(DebianError::Cache {
                path: dest,
                source: e,
            });
        }
    }
    locate(&dest)
}

/// Finds vmlinuz, config and the modules dir in an extracted tree.
fn locate(tree: &Path) -> Result<DebianKernel, DebianError> {
    let bad = |reason: String| DebianError::BadPackage {
        path: tree.to_path_buf(),
        reason,
    };
    let boot = tree.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .map_err(|e| bad(format!("no boot/ directory: {e}")))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .ok_or_else(|| bad("no boot/vmlinuz-*".into()))?;
    let release = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or_default()
        .to_string();
    // Debian ships modules under /lib (pre-usrmerge packages) or /usr/lib.
    let modules_dir = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| tree.join(d).join(&release))
        .find(|p| p.is_dir())
        .ok_or_else(|| bad(format!("no lib/modules/{release}")))?;
    Ok(DebianKernel {
        config: boot.join(format!("config-{release}")),
        vmlinuz,
        modules_dir,
        release,
    })
}

fn list_extracted(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
                .collect()
        })
        .unwrap_or_default()
}

/// Package names apt knows (from the local package lists; no network).
fn apt_candidates() -> Result<Vec<String>, DebianError> {
    let out = run(
        Command::new("apt-cache").args([
            "search",
            "--names-only",
            r"^linux-image-6\.12\..*-cloud-amd64-unsigned$",
        ]),
        "apt-cache search",
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        .map(str::to_string)
        .collect())
}

/// Highest 6.12 patch level (`linux-image-6.12.<N>+...`).
fn newest(names: Vec<String>) -> Option<String> {
    names.into_iter().max_by_key(|n| {
        n[PREFIX.len()..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|d| d.parse::<u32>().ok())
            .unwrap_or(0)
    })
}

fn run(cmd: &mut Command, what: &str) -> Result<String, DebianError> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DebianError::MissingTool {
                fix:
                    "run on Debian/Ubuntu (apt, dpkg) or pass a local .deb with dpkg-deb installed"
                        .into(),
                tool: tool.clone(),
            }
        } else {
            DebianError::Command {
                what: what.into(),
                detail: e.to_string(),
            }
        }
    })?;
    if !out.status.success() {
        return Err(DebianError::Command {
            what: what.into(),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_compares_patch_levels_numerically() {
        let names = [
            "linux-image-6.12.9+deb12-cloud-amd64-unsigned",
            "linux-image-6.12.117+deb12-cloud-amd64-unsigned",
            "linux-image-6.12.23+deb12-cloud-amd64-unsigned",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            newest(names).as_deref(),
            Some("linux-image-6.12.117+deb12-cloud-amd64-unsigned")
        );
    }

    #[test]
    fn local_deb_must_exist_and_be_a_linux_image() {
        assert!(matches!(
            package_name_of(Path::new("/nonexistent/x.deb")),
            Err(DebianError::BadPackage { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hello_1.0_amd64.deb");
        std::fs::write(&p, b"x").unwrap();
        assert!(package_name_of(&p).is_err());
        let p = dir
            .path()
            .join("linux-image-6.12.1+deb12-cloud-amd64-unsigned_1_amd64.deb");
        std::fs::write(&p, b"x").unwrap();
        assert_eq!(
            package_name_of(&p).unwrap(),
            "linux-image-6.12.1+deb12-cloud-amd64-unsigned"
        );
    }
}
