//! The releases of one stable series (`6.12.y`) that can be had, and ranges over them.
//!
//! Where a release can come from, in the order [`super::source`] tries them: a tarball already
//! in the cache (downloaded earlier, from kernel.org or the distro archive), the distro's
//! installed source package (`/usr/src/linux-source-X.Y.tar.xz`), every version of that package
//! the distro archive still carries (`apt-cache madison`, fetched with `apt-get download`, whose
//! `.deb` apt verifies against the archive's signed index), and kernel.org (its
//! `sha256sums.asc` lists every tarball of the series) when online.
//!
//! A range `6.12.107..6.12.118` expands over what is available and names the releases it left
//! out, so an offline machine bisects what it has and says what it skipped.

use super::spec::KernelSpec;
use super::{KernelError, io};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `X.Y.A..X.Y.B`: the releases of one series from A to B, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseRange {
    pub major: u32,
    pub minor: u32,
    pub first: u32,
    pub last: u32,
}

/// Where one release can be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A tarball in the cache (kernel.org's or a fetched distro package's).
    Cached(PathBuf),
    /// The installed distro source package.
    Installed(PathBuf),
    /// A version of the distro source package in the archive, not yet fetched.
    DistroArchive { package: String, version: String },
    /// Listed in kernel.org's sha256sums.asc, not yet downloaded.
    KernelOrg,
}

impl Origin {
    pub fn describe(&self) -> String {
        match self {
            Origin::Cached(p) => format!("cached {}", p.display()),
            Origin::Installed(p) => format!("installed {}", p.display()),
            Origin::DistroArchive { package, version } => {
                format!("distro archive {package}={version}")
            }
            Origin::KernelOrg => "kernel.org".into(),
        }
    }
}

/// The releases of a series that can be had, newest last, and the sources that were not asked.
#[derive(Debug, Clone, Default)]
pub struct Available {
    pub releases: BTreeMap<u32, Origin>,
    pub not_consulted: Vec<String>,
}

/// A range expanded over what is available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    /// Kernel specs (`6.12.111`), oldest first.
    pub specs: Vec<String>,
    /// Patch levels inside the range that no source has.
    pub left_out: Vec<u32>,
    pub not_consulted: Vec<String>,
}

impl Expansion {
    /// One line for the user: what the range became and what it skipped.
    pub fn describe(&self, range: &str) -> String {
        let mut s = format!("{range}: {}", self.specs.join(", "));
        if !self.left_out.is_empty() {
            let series = self.specs.first().map_or("", |v| series_prefix(v));
            let skipped: Vec<String> = self
                .left_out
                .iter()
                .map(|p| format!("{series}{p}"))
                .collect();
            s.push_str(&format!("; not available here: {}", skipped.join(", ")));
        }
        if !self.not_consulted.is_empty() {
            s.push_str(&format!(" ({})", self.not_consulted.join("; ")));
        }
        s
    }
}

fn series_prefix(version: &str) -> &str {
    version.rfind('.').map_or("", |i| &version[..=i])
}

/// `Some` when `spec` is a range (contains `..`), with its parse result.
pub fn parse_range(spec: &str) -> Option<Result<ReleaseRange, KernelError>> {
    let (a, b) = spec.trim().split_once("..")?;
    let bad = |why: &str| KernelError::BadSpec {
        spec: spec.to_string(),
        why: why.to_string(),
    };
    let exact = |s: &str| match KernelSpec::parse(s) {
        Ok(KernelSpec::Version {
            major,
            minor,
            patch: Some(p),
        }) => Some((major, minor, p)),
        _ => None,
    };
    let (Some((ma, mi, first)), Some((mb, mib, last))) = (exact(a), exact(b)) else {
        return Some(Err(bad(
            "a range is X.Y.A..X.Y.B with two full releases, e.g. 6.12.107..6.12.118",
        )));
    };
    if (ma, mi) != (mb, mib) {
        return Some(Err(bad(
            "a range stays within one stable series (6.12.107..6.12.118); list releases of different series with commas",
        )));
    }
    if first >= last {
        return Some(Err(bad(
            "the first release of a range must be older than the last",
        )));
    }
    Some(Ok(ReleaseRange {
        major: ma,
        minor: mi,
        first,
        last,
    }))
}

/// Expands `range` over what is available. Fewer than two releases is bad input: nothing to
/// compare, nothing to bisect.
pub fn expand(range: &ReleaseRange, spec: &str, offline: bool) -> Result<Expansion, KernelError> {
    let avail = available(range.major, range.minor, offline);
    let inside: Vec<u32> = avail
        .releases
        .keys()
        .copied()
        .filter(|p| (range.first..=range.last).contains(p))
        .collect();
    let left_out = (range.first..=range.last)
        .filter(|p| !avail.releases.contains_key(p))
        .collect();
    let expansion = Expansion {
        specs: inside
            .iter()
            .map(|p| format!("{}.{}.{p}", range.major, range.minor))
            .collect(),
        left_out,
        not_consulted: avail.not_consulted.clone(),
    };
    if expansion.specs.len() < 2 {
        let have: Vec<String> = avail
            .releases
            .keys()
            .map(|p| format!("{}.{}.{p}", range.major, range.minor))
            .collect();
        return Err(KernelError::BadSpec {
            spec: spec.to_string(),
            why: format!(
                "only {} release(s) of this range can be had here ({}); available: {}{}; widen the range or install/download more releases",
                expansion.specs.len(),
                expansion.specs.join(", "),
                if have.is_empty() {
                    "none".into()
                } else {
                    have.join(", ")
                },
                if avail.not_consulted.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", avail.not_consulted.join("; "))
                }
            ),
        });
    }
    Ok(expansion)
}

/// Expands every range in a list of kernel specs in place; other specs pass through. Returns the
/// expanded list and one line per range saying what it became.
pub fn expand_list(
    specs: &[String],
    offline: bool,
) -> Result<(Vec<String>, Vec<String>), KernelError> {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for spec in specs {
        match parse_range(spec) {
            None => out.push(spec.clone()),
            Some(range) => {
                let e = expand(&range?, spec, offline)?;
                notes.push(e.describe(spec));
                out.extend(e.specs);
            }
        }
    }
    Ok((out, notes))
}

/// Every release of `major.minor` that some source has (or, online, could fetch).
pub fn available(major: u32, minor: u32, offline: bool) -> Available {
    let mut a = Available::default();
    let offline = offline || super::source::offline_by_env();
    if !offline {
        match kernel_org_releases(major, minor) {
            Ok(patches) => {
                for p in patches {
                    a.releases.insert(p, Origin::KernelOrg);
                }
            }
            Err(why) => a.not_consulted.push(format!("kernel.org: {why}")),
        }
    } else {
        a.not_consulted.push("kernel.org: offline".into());
    }
    let package = format!("linux-source-{major}.{minor}");
    if !offline {
        for (patch, version) in archive_versions(&package, major, minor) {
            a.releases.insert(
                patch,
                Origin::DistroArchive {
                    package: package.clone(),
                    version,
                },
            );
        }
    } else {
        a.not_consulted
            .push(format!("the distro archive's {package}: offline"));
    }
    if let Some((path, patch)) = installed(major, minor) {
        a.releases.insert(patch, Origin::Installed(path));
    }
    for (patch, path) in cached_tarballs(major, minor) {
        a.releases.insert(patch, Origin::Cached(path));
    }
    a
}

/// `(upstream patch level, distro version)` of every version of `package` the archive lists.
fn archive_versions(package: &str, major: u32, minor: u32) -> Vec<(u32, String)> {
    let Ok(out) = Command::new("apt-cache")
        .args(["madison", package])
        .output()
    else {
        return Vec::new();
    };
    parse_madison(&String::from_utf8_lossy(&out.stdout), major, minor)
}

/// Parses `apt-cache madison` lines (` pkg | 6.12.115-2~deb12u1 | http://... Packages`); source
/// lines (`Sources`) are skipped, the first binary line per upstream release kept (madison lists
/// the preferred first).
pub fn parse_madison(text: &str, major: u32, minor: u32) -> Vec<(u32, String)> {
    let mut seen = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        if fields.len() < 3 || fields[2].ends_with("Sources") {
            continue;
        }
        let version = fields[1];
        if let Some(p) = upstream_patch(version, major, minor) {
            seen.entry(p).or_insert_with(|| version.to_string());
        }
    }
    seen.into_iter().collect()
}

/// The upstream patch level of a distro version (`6.12.115-2~deb12u1` -> 115).
pub fn upstream_patch(version: &str, major: u32, minor: u32) -> Option<u32> {
    let upstream = version.split(['-', '~', '+']).next()?;
    let rest = upstream.strip_prefix(&format!("{major}.{minor}."))?;
    rest.parse().ok()
}

/// The installed source package's tarball and its release (from the package database: cheap,
/// no extraction).
fn installed(major: u32, minor: u32) -> Option<(PathBuf, u32)> {
    let path = super::source::debian_src_dir().join(format!("linux-source-{major}.{minor}.tar.xz"));
    if !path.is_file() {
        return None;
    }
    if let Some(v) = super::source::known_version(&path) {
        let p = v.strip_prefix(&format!("{major}.{minor}."))?.parse().ok()?;
        return Some((path, p));
    }
    let out = Command::new("dpkg-query")
        .args([
            "-W",
            "-f=${Version}",
            &format!("linux-source-{major}.{minor}"),
        ])
        .output()
        .ok()?;
    let p = upstream_patch(String::from_utf8_lossy(&out.stdout).trim(), major, minor)?;
    Some((path, p))
}

/// Cached tarballs of the series: kernel.org's `linux-X.Y.Z.tar.xz` and fetched distro packages.
pub fn cached_tarballs(major: u32, minor: u32) -> BTreeMap<u32, PathBuf> {
    let mut found = BTreeMap::new();
    for dir in [tarballs_dir(), distro_dir()] {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".tar.xz") else {
                continue;
            };
            // kernel.org's `linux-6.12.7`, a distro package's `linux-source-6.12_6.12.7-1`.
            let version = match stem.split_once('_') {
                Some((_, v)) => Some(v),
                None => stem.strip_prefix("linux-"),
            };
            if let Some(p) = version.and_then(|v| upstream_patch(v, major, minor)) {
                found.insert(p, e.path());
            }
        }
    }
    found
}

pub(super) fn tarballs_dir() -> PathBuf {
    crate::paths::sources_dir().join("tarballs")
}

/// Where fetched distro source packages' tarballs live.
pub(super) fn distro_dir() -> PathBuf {
    crate::paths::sources_dir().join("distro")
}

/// The patch levels kernel.org's sha256sums.asc lists for the series.
fn kernel_org_releases(major: u32, minor: u32) -> Result<Vec<u32>, String> {
    let url = format!(
        "{}/v{major}.x/sha256sums.asc",
        super::source::kernel_org_url()
    );
    let text = super::signed_sums::fetch(&url).map_err(|e| e.to_string())?;
    let prefix = format!("linux-{major}.{minor}.");
    let mut patches: Vec<u32> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|f| {
            f.strip_prefix(&prefix)?
                .strip_suffix(".tar.xz")?
                .parse()
                .ok()
        })
        .collect();
    patches.sort_unstable();
    patches.dedup();
    Ok(patches)
}

/// Fetches `package=version` from the distro archive and keeps its kernel tarball in the cache
/// as `distro/<package>_<version>.tar.xz`. apt checks the `.deb` against the archive's signed
/// index; only the one tarball member is taken out of it.
pub fn fetch_distro(package: &str, version: &str) -> Result<PathBuf, KernelError> {
    let dir = distro_dir();
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let dest = dir.join(format!("{package}_{version}.tar.xz"));
    let _lock = super::locks::lock(&format!("distro-{package}_{version}"))?;
    if dest.is_file() {
        return Ok(dest);
    }
    let tmp = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(&dir)
        .map_err(io("creating a temp dir"))?;
    let failed = |why: String| KernelError::Download {
        url: format!("apt-get download {package}={version}"),
        why,
    };
    // apt's own connect/read timeouts bound a stalled mirror; Ctrl-C stops it at once.
    let log = tmp.path().join("apt-get.log");
    let log_file = std::fs::File::create(&log).map_err(io("creating the apt-get log"))?;
    let mut cmd = Command::new("apt-get");
    cmd.args([
        "-o",
        "Acquire::http::Timeout=30",
        "-o",
        "Acquire::https::Timeout=30",
    ])
    .args(["download", &format!("{package}={version}")])
    .current_dir(tmp.path())
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(log_file);
    use super::signed_sums::{RunError, run_bounded};
    match run_bounded(&mut cmd, std::time::Duration::from_secs(60 * 60)) {
        Ok(true) => {}
        Ok(false) => return Err(failed(tail(&std::fs::read(&log).unwrap_or_default()))),
        Err(RunError::Interrupted) => return Err(KernelError::Interrupted),
        Err(RunError::Spawn(e)) => return Err(failed(format!("cannot run apt-get: {e}"))),
        Err(RunError::TimedOut) => return Err(failed("still running after an hour".into())),
    }
    let deb = std::fs::read_dir(tmp.path())
        .map_err(io("listing the download"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| failed("apt-get left no .deb".into()))?;
    let member = format!("./usr/src/{package}.tar.xz");
    let part = tmp.path().join("tarball.part");
    extract_deb_member(&deb, &member, &part).map_err(failed)?;
    std::fs::rename(&part, &dest).map_err(io(format!("installing {}", dest.display())))?;
    Ok(dest)
}

/// Copies one regular-file member of a .deb's data archive to `dest` (never writes anything
/// else: the member's own path is not used).
fn extract_deb_member(deb: &Path, member: &str, dest: &Path) -> Result<(), String> {
    let mut child = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run dpkg-deb: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut archive = tar::Archive::new(stdout);
    let mut found = false;
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        if path == Path::new(member) && entry.header().entry_type().is_file() {
            let mut f = std::fs::File::create(dest).map_err(|e| e.to_string())?;
            std::io::copy(&mut entry, &mut f).map_err(|e| e.to_string())?;
            f.sync_all().map_err(|e| e.to_string())?;
            found = true;
            break;
        }
    }
    // The rest of the stream is not needed; dpkg-deb stops on the closed pipe.
    drop(archive);
    let _ = child.wait();
    if found {
        Ok(())
    } else {
        Err(format!("the package has no {member}"))
    }
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MADISON: &str = "\
linux-source-6.12 | 6.12.118-1~deb12u1 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-source-6.12 | 6.12.117-1~deb12u1 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-source-6.12 | 6.12.115-2~deb12u1 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-source-6.12 | 6.12.115-1~deb12u1 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-source-6.12 | 6.12.111-1~deb12u1 | http://deb.debian.org/debian-security bookworm-security/main Sources
linux-source-6.12 | 6.1.99-1 | http://deb.debian.org/debian bookworm/main amd64 Packages
";

    #[test]
    fn madison_gives_one_preferred_version_per_release_of_the_series() {
        let v = parse_madison(MADISON, 6, 12);
        assert_eq!(
            v,
            vec![
                (115, "6.12.115-2~deb12u1".to_string()),
                (117, "6.12.117-1~deb12u1".to_string()),
                (118, "6.12.118-1~deb12u1".to_string()),
            ]
        );
    }

    #[test]
    fn ranges_parse_and_bad_ranges_say_why() {
        let r = parse_range("6.12.107..6.12.118").unwrap().unwrap();
        assert_eq!((r.major, r.minor, r.first, r.last), (6, 12, 107, 118));
        assert!(parse_range("6.12.118").is_none());
        for (bad, why) in [
            ("6.12..6.12.118", "two full releases"),
            ("6.1.1..6.12.118", "one stable series"),
            ("6.12.118..6.12.107", "older than the last"),
            ("6.12.5..6.12.5", "older than the last"),
            ("6.12.x..6.12.9", "two full releases"),
        ] {
            let e = parse_range(bad).unwrap().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains(bad), "{bad}: the message names the input: {e}");
        }
    }

    #[test]
    fn upstream_patch_reads_distro_and_kernel_org_names() {
        assert_eq!(upstream_patch("6.12.115-2~deb12u1", 6, 12), Some(115));
        assert_eq!(upstream_patch("6.12.7", 6, 12), Some(7));
        assert_eq!(upstream_patch("6.1.99-1", 6, 12), None);
        assert_eq!(upstream_patch("6.12", 6, 12), None);
    }

    #[test]
    fn an_expansion_names_what_it_left_out() {
        let e = Expansion {
            specs: vec!["6.12.107".into(), "6.12.111".into()],
            left_out: vec![108, 109, 110],
            not_consulted: vec!["kernel.org: offline".into()],
        };
        let d = e.describe("6.12.107..6.12.111");
        assert!(d.contains("6.12.107, 6.12.111"), "{d}");
        assert!(
            d.contains("not available here: 6.12.108, 6.12.109, 6.12.110"),
            "{d}"
        );
        assert!(d.contains("kernel.org: offline"), "{d}");
    }
}
