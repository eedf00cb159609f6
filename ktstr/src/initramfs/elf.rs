//! The shared-library closure of a dynamically linked binary, resolved the way glibc's ld.so
//! resolves it on the host: DT_RPATH (when there is no DT_RUNPATH), DT_RUNPATH, /etc/ld.so.cache
//! (read through `ldconfig -p`), then the default directories; plus the ELF interpreter (PT_INTERP).
//!
//! Each library goes into the guest at the path the host lookup found it at (not canonicalised),
//! so the guest's ld.so finds it by the same search. Libraries found through `$ORIGIN` are placed
//! relative to the binary's guest location instead, since that is where the guest's `$ORIGIN` points.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use thiserror::Error;

/// glibc's default search directories for x86-64 (Debian multiarch first, then the FHS ones).
const DEFAULT_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

#[derive(Debug, Error)]
pub enum ElfError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid ELF file: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error(
        "{binary} needs {lib}, which is not found on this host (searched RUNPATH, ld.so.cache, {dirs}): install the library or pass it with -i"
    )]
    Missing {
        binary: PathBuf,
        lib: String,
        dirs: String,
    },
}

/// One file of the closure: read it from `host`, place it at `guest`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Placed {
    pub host: PathBuf,
    pub guest: String,
}

#[derive(Debug, Default)]
pub struct Closure {
    pub files: Vec<Placed>,
    /// Some library was found only through ld.so.cache, so the guest needs the cache too.
    pub used_ld_cache: bool,
}

/// True if `bytes` start with the ELF magic.
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

/// Libraries (and the interpreter) that `binary` (whose bytes are `bytes`, placed at `guest_path`)
/// needs, transitively. A static binary yields an empty closure.
pub fn closure(binary: &Path, bytes: &[u8], guest_path: &str) -> Result<Closure, ElfError> {
    let mut out = Closure::default();
    // guest path -> host path: dedups libraries reached through several binaries/paths.
    let mut placed: BTreeMap<String, PathBuf> = BTreeMap::new();
    // By soname: the loader loads each soname once, whoever asks for it.
    let mut seen: HashMap<String, ()> = HashMap::new();
    let mut queue: VecDeque<(PathBuf, Vec<u8>, String)> = VecDeque::new();
    queue.push_back((binary.to_path_buf(), bytes.to_vec(), guest_path.to_string()));
    let mut first = true;
    while let Some((host, data, guest)) = queue.pop_front() {
        let elf = goblin::elf::Elf::parse(&data).map_err(|e| ElfError::Parse {
            path: host.clone(),
            reason: e.to_string(),
        })?;
        if first {
            first = false;
            if let Some(interp) = elf.interpreter {
                placed.insert(interp.to_string(), PathBuf::from(interp));
            }
        }
        let host_dir = host.parent().unwrap_or(Path::new("/")).to_path_buf();
        let guest_dir = Path::new(&guest)
            .parent()
            .unwrap_or(Path::new("/"))
            .to_string_lossy()
            .into_owned();
        // DT_RPATH is ignored when DT_RUNPATH is present (ld.so(8)).
        let search: Vec<&str> = if elf.runpaths.is_empty() {
            elf.rpaths.iter().flat_map(|r| r.split(':')).collect()
        } else {
            elf.runpaths.iter().flat_map(|r| r.split(':')).collect()
        };
        for lib in &elf.libraries {
            if seen.insert((*lib).to_string(), ()).is_some() {
                continue;
            }
            let found = if lib.contains('/') {
                let p = PathBuf::from(lib);
                p.is_file()
                    .then(|| (p.clone(), p.to_string_lossy().into_owned()))
            } else {
                find(lib, &search, &host_dir, &guest_dir, &mut out.used_ld_cache)
            };
            let Some((lib_host, lib_guest)) = found else {
                return Err(ElfError::Missing {
                    binary: host.clone(),
                    lib: (*lib).to_string(),
                    dirs: DEFAULT_DIRS.join(", "),
                });
            };
            let lib_bytes = std::fs::read(&lib_host).map_err(|e| ElfError::Io {
                path: lib_host.clone(),
                source: e,
            })?;
            placed.insert(lib_guest.clone(), lib_host.clone());
            queue.push_back((lib_host, lib_bytes, lib_guest));
        }
    }
    out.files = placed
        .into_iter()
        .map(|(guest, host)| Placed { host, guest })
        .collect();
    Ok(out)
}

/// (host path, guest path) of `lib`.
fn find(
    lib: &str,
    search: &[&str],
    host_dir: &Path,
    guest_dir: &str,
    used_cache: &mut bool,
) -> Option<(PathBuf, String)> {
    for dir in search {
        if dir.is_empty() {
            continue;
        }
        let origin = ["$ORIGIN", "${ORIGIN}"]
            .iter()
            .find(|o| dir.starts_with(**o));
        if let Some(o) = origin {
            let rest = &dir[o.len()..];
            let host = PathBuf::from(format!("{}{rest}", host_dir.display())).join(lib);
            if host.is_file() {
                let guest = lexical_path(&format!("{guest_dir}{rest}/{lib}"));
                return Some((host, guest));
            }
            continue;
        }
        let host = Path::new(dir).join(lib);
        if host.is_file() {
            return Some((host.clone(), host.to_string_lossy().into_owned()));
        }
    }
    if let Some(p) = ld_cache().get(lib)
        && p.is_file()
    {
        let in_default = p
            .parent()
            .is_some_and(|d| DEFAULT_DIRS.iter().any(|dd| Path::new(dd) == d));
        if !in_default {
            *used_cache = true;
        }
        return Some((p.clone(), p.to_string_lossy().into_owned()));
    }
    DEFAULT_DIRS.iter().find_map(|d| {
        let p = Path::new(d).join(lib);
        p.is_file()
            .then(|| (p.clone(), p.to_string_lossy().into_owned()))
    })
}

/// `/a/b/../c` as `/a/c`, `/..` as `/`: how the guest kernel resolves a path whose directories
/// are all real directories (in an initramfs ktstr builds, they are). `$ORIGIN/../lib` then lands
/// beside the binary's directory and never above the image's root.
fn lexical_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// soname -> path for x86-64 libraries in the host's ld.so.cache (empty if ldconfig is absent).
fn ld_cache() -> &'static HashMap<String, PathBuf> {
    static CACHE: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    CACHE.get_or_init(|| {
        for ldconfig in ["ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"] {
            if let Ok(out) = std::process::Command::new(ldconfig).arg("-p").output()
                && out.status.success()
            {
                return parse_ldconfig(&String::from_utf8_lossy(&out.stdout));
            }
        }
        HashMap::new()
    })
}

/// Parses `ldconfig -p` lines: `\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1`.
/// The first entry per soname wins, as in ld.so.
fn parse_ldconfig(text: &str) -> HashMap<String, PathBuf> {
    let mut map = HashMap::new();
    for line in text.lines() {
        let Some((left, path)) = line.split_once(" => ") else {
            continue;
        };
        let mut it = left.trim().splitn(2, ' ');
        let (Some(name), Some(flags)) = (it.next(), it.next()) else {
            continue;
        };
        if !flags.contains("x86-64") {
            continue;
        }
        map.entry(name.to_string())
            .or_insert_with(|| PathBuf::from(path.trim()));
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldconfig_output_is_parsed_per_arch() {
        let text = "3 libs found in cache `/etc/ld.so.cache'\n\
            \tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1\n\
            \tlibz.so.1 (libc6) => /lib/i386-linux-gnu/libz.so.1\n\
            \tlibelf.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libelf.so.1\n";
        let m = parse_ldconfig(text);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m["libz.so.1"],
            PathBuf::from("/lib/x86_64-linux-gnu/libz.so.1")
        );
    }

    /// The host's own dynamically linked tools make a real closure to check.
    #[test]
    fn closure_of_a_host_binary_has_libc_and_interpreter() {
        let bin = Path::new("/bin/ls");
        let bytes = std::fs::read(bin).unwrap();
        let c = closure(bin, &bytes, "/ktstr/files/ls").unwrap();
        let guests: Vec<&str> = c.files.iter().map(|p| p.guest.as_str()).collect();
        assert!(
            guests.iter().any(|g| g.ends_with("/libc.so.6")),
            "{guests:?}"
        );
        assert!(
            guests.iter().any(|g| g.contains("ld-linux-x86-64")),
            "{guests:?}"
        );
        for p in &c.files {
            assert!(p.host.is_file(), "{}", p.host.display());
        }
    }

    #[test]
    fn origin_relative_libraries_land_under_the_root_normalised() {
        assert_eq!(
            lexical_path("/opt/app/bin/../lib/libx.so"),
            "/opt/app/lib/libx.so"
        );
        assert_eq!(lexical_path("/a/../../../../etc/libx.so"), "/etc/libx.so");
        assert_eq!(lexical_path("/a/./b//c"), "/a/b/c");
        let tmp = tempfile::tempdir().unwrap();
        let bin_dir = tmp.path().join("app/bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        std::fs::create_dir_all(tmp.path().join("app/lib")).unwrap();
        std::fs::write(tmp.path().join("app/lib/libx.so"), b"\x7fELF").unwrap();
        let mut used = false;
        let (host, guest) = find(
            "libx.so",
            &["$ORIGIN/../lib"],
            &bin_dir,
            "/ktstr/files",
            &mut used,
        )
        .unwrap();
        assert_eq!(host, bin_dir.join("../lib/libx.so"));
        // `/ktstr/files/../lib`: one level up, not a `..` the image builder refuses.
        assert_eq!(guest, "/ktstr/lib/libx.so");
        assert!(super::super::archive::Tree::normalise(&guest).is_ok());
    }

    #[test]
    fn static_binary_has_empty_closure() {
        let bin = Path::new("/bin/busybox");
        let bytes = std::fs::read(bin).unwrap();
        let c = closure(bin, &bytes, "/bin/busybox").unwrap();
        assert!(c.files.is_empty(), "{:?}", c.files);
    }
}
