//! Host prerequisites for building schedulers, checked before a build starts so a missing package
//! is one line naming the Debian packages to install, not a failure minutes into `cargo install`.

use super::SchedError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What is being built; each needs a different minimum clang.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildKind {
    /// scx crates 1.1.x (their build script refuses clang < 18: `-mcpu=v4`).
    Crate,
    /// The kernel's `tools/sched_ext` (needs clang >= 16 for its BPF).
    KernelTools,
}

impl BuildKind {
    fn min_clang(self) -> u32 {
        match self {
            BuildKind::Crate => 18,
            BuildKind::KernelTools => 16,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Toolchain {
    /// The clang to give the build (`BPF_CLANG` for scx crates, `CLANG=` for the kernel's make).
    pub clang: String,
    pub clang_major: u32,
}

/// Finds a usable clang (honouring `BPF_CLANG`) and checks the libraries the build links against.
pub fn check(kind: BuildKind) -> Result<Toolchain, SchedError> {
    let min = kind.min_clang();
    let mut missing: Vec<&str> = Vec::new();
    let mut detail: Vec<String> = Vec::new();

    let clang = find_clang(min);
    if clang.is_none() {
        missing.push("clang-19");
        detail.push(match std::env::var("BPF_CLANG") {
            Ok(c) => format!("BPF_CLANG={c} is not clang >= {min}"),
            Err(_) => format!("no clang >= {min} on PATH (tried clang-21..clang-{min}, clang)"),
        });
    }
    if !on_path("pkg-config") {
        missing.push("pkg-config");
        detail.push("no pkg-config".into());
    } else {
        for (lib, pkg) in [("libelf", "libelf-dev"), ("zlib", "zlib1g-dev")] {
            let ok = Command::new("pkg-config")
                .args(["--exists", lib])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                missing.push(pkg);
                detail.push(format!("pkg-config cannot find {lib}"));
            }
        }
    }
    match kind {
        BuildKind::Crate => {
            // bindgen (in scx_utils' and libbpf-sys' build scripts) loads libclang at run time.
            if find_libclang().is_none() {
                missing.push("libclang1-19");
                detail.push(
                    "no libclang.so for bindgen (set LIBCLANG_PATH if it is elsewhere)".into(),
                );
            }
            if !on_path("cargo") {
                detail.push("no cargo on PATH (install Rust with rustup)".into());
            }
        }
        BuildKind::KernelTools => {
            for (tool, pkg) in [("make", "make"), ("gcc", "gcc")] {
                if !on_path(tool) {
                    missing.push(pkg);
                    detail.push(format!("no {tool}"));
                }
            }
        }
    }
    match clang {
        Some((clang, clang_major)) if detail.is_empty() => Ok(Toolchain { clang, clang_major }),
        _ => Err(SchedError::MissingPrereqs {
            what: match kind {
                BuildKind::Crate => "scx crates",
                BuildKind::KernelTools => "the kernel's tools/sched_ext",
            },
            detail: detail.join("; "),
            packages: missing.join(" "),
        }),
    }
}

fn find_clang(min: u32) -> Option<(String, u32)> {
    if let Ok(c) = std::env::var("BPF_CLANG") {
        return clang_major(&c).filter(|v| *v >= min).map(|v| (c, v));
    }
    let mut names: Vec<String> = (min..=21).rev().map(|v| format!("clang-{v}")).collect();
    names.push("clang".into());
    names
        .into_iter()
        .filter(|n| on_path(n))
        .find_map(|n| clang_major(&n).filter(|v| *v >= min).map(|v| (n, v)))
}

/// `clang --version` -> major ("Debian clang version 19.1.7 (...)" -> 19).
fn clang_major(clang: &str) -> Option<u32> {
    let out = Command::new(clang).arg("--version").output().ok()?;
    parse_clang_major(&String::from_utf8_lossy(&out.stdout))
}

fn parse_clang_major(version_output: &str) -> Option<u32> {
    let line = version_output
        .lines()
        .find(|l| l.contains("clang version"))?;
    let rest = &line[line.find("clang version")? + "clang version".len()..];
    rest.trim().split('.').next()?.parse().ok()
}

fn find_libclang() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("LIBCLANG_PATH") {
        dirs.push(p.into());
    }
    if let Ok(out) = Command::new("llvm-config").arg("--libdir").output() {
        dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    if let Ok(rd) = std::fs::read_dir("/usr/lib") {
        let mut llvm: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("llvm-"))
            })
            .map(|p| p.join("lib"))
            .collect();
        llvm.sort();
        dirs.extend(llvm.into_iter().rev());
    }
    dirs.push("/usr/lib/x86_64-linux-gnu".into());
    dirs.into_iter().find_map(|d| {
        std::fs::read_dir(&d)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name().is_some_and(|n| {
                    n.to_string_lossy().starts_with("libclang")
                        && n.to_string_lossy().contains(".so")
                }) && !p.to_string_lossy().contains("libclang-cpp")
            })
    })
}

/// The executable `name` on PATH, if any.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable_file(p))
}

fn on_path(name: &str) -> bool {
    which(name).is_some()
}

pub fn is_executable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_clang_versions() {
        assert_eq!(
            parse_clang_major("Debian clang version 19.1.7 (3+b1)\nTarget: x86_64-pc-linux-gnu\n"),
            Some(19)
        );
        assert_eq!(parse_clang_major("clang version 16.0.6\n"), Some(16));
        assert_eq!(parse_clang_major("gcc (Debian 12.2.0-14) 12.2.0\n"), None);
    }

    #[test]
    fn which_finds_sh_and_not_nonsense() {
        assert!(which("sh").is_some());
        assert!(which("no-such-binary-ktstr-xyz").is_none());
    }
}
