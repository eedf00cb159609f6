//! The host programs a scenario needs in the guest (a packaged benchmark such as `hackbench`):
//! the scenario catalogue declares them ([`HostProgram`]: file names to look for, guest path,
//! Debian package); this module finds them on the host's `PATH`, the way a shell would, and
//! the initramfs packs them with their shared-library closure like any other file.
//!
//! A program that is missing is bad input (exit 2), found by [`resolve`] while `run`, `matrix`
//! and `bisect` validate their inputs, before anything is built or booted.

use ktstr_guest::scenario::{self, HostProgram};
use std::cmp::Ordering;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProgramError {
    #[error(
        "scenario '{scenario}' runs {guest_path}, and no {looked} on this host's PATH ({path}) is an ELF binary: install it with `apt-get install {package}`"
    )]
    Missing {
        scenario: String,
        guest_path: String,
        looked: String,
        path: String,
        package: String,
    },
}

/// (host path, guest path) of every program scenario `name` needs, found on this process's
/// `PATH`, except those whose guest path is in `brought`: a file the user brings with `-i` to
/// that path (their own build of the benchmark) replaces the host's. An unknown scenario needs
/// nothing here (scenario validation names it).
pub fn resolve(name: &str, brought: &[String]) -> Result<Vec<(PathBuf, String)>, ProgramError> {
    resolve_on(name, brought, std::env::var_os("PATH").unwrap_or_default())
}

/// [`resolve`] with an explicit `PATH` value.
pub fn resolve_on(
    name: &str,
    brought: &[String],
    path: OsString,
) -> Result<Vec<(PathBuf, String)>, ProgramError> {
    let programs = scenario::host_programs(name).unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    programs
        .iter()
        .filter(|p| !brought.contains(&p.guest_path))
        .map(|p| {
            find(p, &dirs)
                .map(|host| (host, p.guest_path.clone()))
                .ok_or_else(|| ProgramError::Missing {
                    scenario: name.to_string(),
                    guest_path: p.guest_path.clone(),
                    looked: p
                        .candidates
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(" or "),
                    path: path.to_string_lossy().into_owned(),
                    package: p.package.clone(),
                })
        })
        .collect()
}

/// The first candidate, in the catalogue's order, that some `PATH` directory holds as an ELF
/// binary (a script, such as Debian's `perf` wrapper, would not run in the guest).
fn find(p: &HostProgram, dirs: &[PathBuf]) -> Option<PathBuf> {
    p.candidates.iter().find_map(|c| match c.strip_suffix('*') {
        Some(prefix) => dirs
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flat_map(|rd| rd.flatten().map(|e| e.path()))
            .filter(|f| {
                f.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
                    && is_elf(f)
            })
            .max_by(|a, b| version_cmp(&a.to_string_lossy(), &b.to_string_lossy())),
        None => dirs.iter().map(|d| d.join(c)).find(|f| is_elf(f)),
    })
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    path.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
        && crate::initramfs::elf::is_elf(&magic)
}

/// Compares names with their digit runs as numbers, so `perf_6.12` sorts after `perf_6.9`.
fn version_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let o = match (x, y) {
            ((true, n), (true, m)) => n
                .trim_start_matches('0')
                .len()
                .cmp(&m.trim_start_matches('0').len())
                .then_with(|| n.trim_start_matches('0').cmp(m.trim_start_matches('0'))),
            ((_, n), (_, m)) => n.cmp(m),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ca.len().cmp(&cb.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write_exe(path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn versions_compare_by_number() {
        assert_eq!(version_cmp("perf_6.12", "perf_6.9"), Ordering::Greater);
        assert_eq!(version_cmp("perf_6.1", "perf_6.1"), Ordering::Equal);
        assert_eq!(version_cmp("perf_5.10", "perf_6.1"), Ordering::Less);
    }

    #[test]
    fn the_real_benchmarks_are_found_on_this_host() {
        // scripts/setup.sh installs rt-tests, linux-perf and stress-ng.
        for (scenario, guest) in [
            ("hackbench", "/usr/bin/hackbench"),
            ("perf-sched-pipe", "/usr/bin/perf"),
            ("perf-sched-messaging", "/usr/bin/perf"),
            ("stress-ng", "/usr/bin/stress-ng"),
        ] {
            let found = resolve_on(scenario, &[], "/usr/local/bin:/usr/bin:/bin".into())
                .unwrap_or_else(|e| panic!("{e}"));
            let [(host, g)] = &found[..] else {
                panic!("{found:?}")
            };
            assert_eq!(g, guest);
            assert!(is_elf(host), "{}", host.display());
        }
        assert_eq!(resolve_on("steady", &[], OsString::new()), Ok(vec![]));
        assert_eq!(
            resolve_on("no-such-scenario", &[], OsString::new()),
            Ok(vec![])
        );
    }

    #[test]
    fn a_missing_program_names_the_package_and_the_fix() {
        let empty = tempfile::tempdir().unwrap();
        let e = resolve_on("hackbench", &[], empty.path().into()).unwrap_err();
        // Brought with -i to its guest path, the host's copy is not needed.
        let brought = ["/usr/bin/hackbench".to_string()];
        assert_eq!(
            resolve_on("hackbench", &brought, empty.path().into()),
            Ok(vec![])
        );
        let msg = e.to_string();
        assert!(msg.contains("apt-get install rt-tests"), "{msg}");
        assert!(msg.contains("'hackbench'"), "{msg}");
        assert!(msg.contains(&empty.path().display().to_string()), "{msg}");
    }

    #[test]
    fn a_wrapper_script_is_passed_over_for_the_versioned_binary() {
        let dir = tempfile::tempdir().unwrap();
        let elf = std::fs::read("/bin/true").unwrap();
        write_exe(
            &dir.path().join("perf"),
            b"#!/bin/sh\nexec perf_$(uname -r) \"$@\"\n",
        );
        write_exe(&dir.path().join("perf_6.1"), &elf);
        write_exe(&dir.path().join("perf_6.12"), &elf);
        write_exe(&dir.path().join("perf_6.9"), &elf);
        let found = resolve_on("perf-sched-pipe", &[], dir.path().into()).unwrap();
        assert_eq!(
            found,
            vec![(dir.path().join("perf_6.12"), "/usr/bin/perf".to_string())]
        );
        // With only the script, perf counts as missing.
        for v in ["perf_6.1", "perf_6.12", "perf_6.9"] {
            std::fs::remove_file(dir.path().join(v)).unwrap();
        }
        let e = resolve_on("perf-sched-pipe", &[], dir.path().into()).unwrap_err();
        assert!(e.to_string().contains("apt-get install linux-perf"), "{e}");
    }
}
