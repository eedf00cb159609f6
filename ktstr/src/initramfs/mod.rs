//! Initramfs builder: cpio newc, zstd (the kernel's RD_ZSTD), deterministic, cached by sha256.
//!
//! Layout of every image:
//! - `/init`: the static guest agent ([`GUEST_AGENT`]), PID 1.
//! - `/bin/busybox` (Debian `busybox-static`) and a symlink per applet (`/bin/sh`, `/sbin/poweroff`
//!   ... as `busybox --list-full` names them) for shells and `--exec` commands.
//! - `/ktstr/cell.json`: the [`CellSpec`] (protocol::SPEC_PATH).
//! - extra files (`-i host[:guest]`): at `guest` if given (absolute), else at
//!   `/ktstr/files/<file name>` (protocol::FILES_DIR); executable bits are kept. A host symlink is
//!   followed: the guest gets a regular file with the content of the file it names. Guest paths
//!   are checked before anything is built ([`guest_paths`]); every path of the image is absolute
//!   and free of `.`/`..`, and nothing is placed below a symlink of the image ([`archive::Tree`]).
//! - the shared-library closure of every ELF among them (see [`elf`]), and `/etc/ld.so.cache` when a
//!   library was found only through it.
//! - `/dev/console` (5:1), since the kernel opens it for init's stdio before anything is mounted;
//!   `/dev/null` (1:3), which Rust's runtime opens for the agent's stdio when the kernel could not
//!   (no console tty: the kvm backend's MMIO console) and aborts without; and empty mount points
//!   (`/proc`, `/sys`, `/dev`, `/tmp`, `/run`).
//!
//! The image is `paths::initramfs_dir()/<sha256 of the uncompressed cpio>.cpio.zst`: hashing the
//! archive bytes makes the key cover every input by construction. Building the cpio in memory is
//! cheap (tens of ms); compression, the costly part, only happens on a cache miss, into a temp file
//! renamed into place so concurrent builders and crashes never expose a partial image.

pub mod archive;
pub mod elf;
pub mod guest_paths;

use crate::paths;
use archive::{Node, Tree};
use ktstr_guest::protocol::{CellSpec, FILES_DIR, SPEC_PATH};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// The static guest agent, built by build.rs and embedded here; it becomes /init.
pub static GUEST_AGENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ktstr-guest"));

/// Where Debian's busybox-static installs busybox.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";

/// Directories of every image (mount points, and where `-i` files land by default).
pub const MOUNT_DIRS: [&str; 7] = ["/proc", "/sys", "/dev", "/tmp", "/run", "/root", FILES_DIR];

/// Prefix of an image being written (a temp file in the initramfs cache).
const TEMP_PREFIX: &str = ".initramfs-";

/// zstd level: a low level compresses an image fast and the kernel unpacks it fast even under
/// TCG; higher levels save little on binaries and cost seconds per cache miss.
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, Clone)]
pub struct InitramfsSpec {
    pub cell: CellSpec,
    /// (host path, guest path). An empty guest path means `/ktstr/files/<file name>`.
    pub files: Vec<(PathBuf, String)>,
    /// Static busybox to include; `None` = [`DEFAULT_BUSYBOX`].
    pub busybox: Option<PathBuf>,
}

impl InitramfsSpec {
    pub fn new(cell: CellSpec, files: Vec<(PathBuf, String)>) -> Self {
        InitramfsSpec {
            cell,
            files,
            busybox: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum InitramfsError {
    #[error("{path}: cannot read ({source}): check the path given with -i")]
    Input {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "busybox not found at {0}: install it with `apt-get install busybox-static` (a static busybox is needed for guest shells)"
    )]
    NoBusybox(PathBuf),
    #[error("busybox at {path} is not usable: {reason}; install Debian's busybox-static")]
    BadBusybox { path: PathBuf, reason: String },
    #[error(transparent)]
    Tree(#[from] archive::TreeError),
    #[error(transparent)]
    Elf(#[from] elf::ElfError),
    #[error(
        "initramfs cache {path} is not writable ({source}): set KTSTR_CACHE_DIR to a writable directory"
    )]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Guest path of an extra file: `guest` if non-empty, else `/ktstr/files/<file name>`.
pub fn guest_path_for(host: &Path, guest: &str) -> String {
    if !guest.is_empty() {
        return guest.to_string();
    }
    let name = host
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    format!("{FILES_DIR}/{name}")
}

/// Parses a `-i host[:guest]` argument (guest must be absolute if given).
pub fn parse_include(arg: &str) -> (PathBuf, String) {
    match arg.split_once(':') {
        Some((host, guest)) if guest.starts_with('/') => (PathBuf::from(host), guest.to_string()),
        _ => (PathBuf::from(arg), String::new()),
    }
}

/// Builds (or finds in the cache) the initramfs for `spec`; returns its path.
pub fn build(spec: &InitramfsSpec) -> Result<PathBuf, InitramfsError> {
    let tree = assemble(spec)?;
    let cpio = tree.to_cpio().map_err(|e| InitramfsError::Cache {
        path: PathBuf::from("<memory>"),
        source: e,
    })?;
    install(&paths::initramfs_dir(), &cpio)
}

/// True when the cached image at `path` is one whole zstd frame of `cpio_len` bytes (what a
/// truncated or overwritten file is not); cheap: frame headers only, nothing is decompressed.
fn image_intact(path: &Path, cpio_len: usize) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    matches!(zstd::zstd_safe::find_frame_compressed_size(&bytes), Ok(n) if n == bytes.len())
        && matches!(
            zstd::zstd_safe::get_frame_content_size(&bytes),
            Ok(Some(n)) if n == cpio_len as u64
        )
}

/// The image of `cpio` in the cache `dir`, compressed and written there unless an intact one is
/// already; a damaged one is replaced with a notice.
fn install(dir: &Path, cpio: &[u8]) -> Result<PathBuf, InitramfsError> {
    let key = hex::encode(Sha256::digest(cpio));
    let out = dir.join(format!("{key}.cpio.zst"));
    if out.is_file() {
        if image_intact(&out, cpio.len()) {
            return Ok(out);
        }
        eprintln!(
            "notice: cached initramfs {} is damaged (not one whole zstd frame of the image); rebuilding it",
            out.display()
        );
    }
    let dir = dir.to_path_buf();
    let cache_err = |source| InitramfsError::Cache {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(cache_err)?;
    // Temp files of killed builds: an hour untouched means nobody writes them.
    crate::scratch::sweep(&dir, &[TEMP_PREFIX]);
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(&dir)
        .map_err(cache_err)?;
    let compressed = zstd::bulk::compress(cpio, ZSTD_LEVEL).map_err(cache_err)?;
    tmp.write_all(&compressed).map_err(cache_err)?;
    tmp.as_file().sync_all().map_err(cache_err)?;
    // Readable by everyone: the image holds no secrets and other users' VMs may share the cache.
    let _ = tmp
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644));
    tmp.persist(&out).map_err(|e| InitramfsError::Cache {
        path: out.clone(),
        source: e.error,
    })?;
    Ok(out)
}

/// The full tree for `spec` (exposed for tests and `ktstr` diagnostics).
pub fn assemble(spec: &InitramfsSpec) -> Result<Tree, InitramfsError> {
    let mut t = Tree::new();
    t.insert(
        "/init",
        Node::File {
            data: Arc::new(GUEST_AGENT.to_vec()),
            mode: 0o755,
        },
    )?;
    let cell = serde_json::to_vec_pretty(&spec.cell).expect("CellSpec always serializes");
    t.insert(
        SPEC_PATH,
        Node::File {
            data: Arc::new(cell),
            mode: 0o644,
        },
    )?;
    t.insert("/dev/console", Node::CharDev { major: 5, minor: 1 })?;
    t.insert("/dev/null", Node::CharDev { major: 1, minor: 3 })?;
    for d in MOUNT_DIRS {
        t.insert_if_absent(d, Node::Dir)?;
    }

    let mut used_ld_cache = false;
    for (host, guest) in &spec.files {
        let guest = guest_path_for(host, guest);
        let data = std::fs::read(host).map_err(|e| InitramfsError::Input {
            path: host.clone(),
            source: e,
        })?;
        let mode = std::fs::metadata(host)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644);
        if elf::is_elf(&data) {
            let c = elf::closure(host, &data, &guest)?;
            used_ld_cache |= c.used_ld_cache;
            for p in c.files {
                let lib = std::fs::read(&p.host).map_err(|e| InitramfsError::Input {
                    path: p.host.clone(),
                    source: e,
                })?;
                t.insert(
                    &p.guest,
                    Node::File {
                        data: Arc::new(lib),
                        mode: 0o755,
                    },
                )?;
            }
        }
        t.insert(
            &guest,
            Node::File {
                data: Arc::new(data),
                mode,
            },
        )?;
    }
    if used_ld_cache && let Ok(cache) = std::fs::read("/etc/ld.so.cache") {
        t.insert_if_absent(
            "/etc/ld.so.cache",
            Node::File {
                data: Arc::new(cache),
                mode: 0o644,
            },
        )?;
    }
    add_busybox(&mut t, spec.busybox.as_deref())?;
    Ok(t)
}

fn add_busybox(t: &mut Tree, path: Option<&Path>) -> Result<(), InitramfsError> {
    // `KTSTR_BUSYBOX` serves systems without Debian's layout (the nix package sets it).
    let from_env = std::env::var_os("KTSTR_BUSYBOX").map(PathBuf::from);
    let path = path
        .or(from_env.as_deref())
        .unwrap_or(Path::new(DEFAULT_BUSYBOX));
    let data = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => InitramfsError::NoBusybox(path.to_path_buf()),
        _ => InitramfsError::Input {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    let bad = |reason: String| InitramfsError::BadBusybox {
        path: path.to_path_buf(),
        reason,
    };
    if !elf::is_elf(&data) {
        return Err(bad("not an ELF binary".into()));
    }
    // A dynamic busybox would need its libraries; Debian's `busybox` (non-static) is a common
    // mix-up, so say so instead of producing a guest whose shell cannot start.
    let parsed = goblin::elf::Elf::parse(&data).map_err(|e| bad(e.to_string()))?;
    if parsed.interpreter.is_some() {
        return Err(bad("it is dynamically linked".into()));
    }
    let applets = applet_list(path).map_err(bad)?;
    t.insert(
        DEFAULT_BUSYBOX,
        Node::File {
            data: Arc::new(data),
            mode: 0o755,
        },
    )?;
    for applet in applets {
        let guest = format!("/{applet}");
        if guest == DEFAULT_BUSYBOX || Tree::normalise(&guest).is_err() {
            continue;
        }
        t.insert_if_absent(&guest, Node::Symlink(DEFAULT_BUSYBOX.into()))?;
    }
    Ok(())
}

/// `busybox --list-full`: `bin/sh`, `usr/bin/awk`, ... (sorted so the image stays deterministic).
fn applet_list(busybox: &Path) -> Result<Vec<String>, String> {
    let out = std::process::Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| format!("cannot run it: {e}"))?;
    if !out.status.success() {
        return Err(format!("`--list-full` failed with {}", out.status));
    }
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v.dedup();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktstr_guest::protocol::{Mode, PROTOCOL_VERSION};

    fn spec(files: Vec<(PathBuf, String)>) -> InitramfsSpec {
        InitramfsSpec::new(
            CellSpec {
                protocol_version: PROTOCOL_VERSION,
                mode: Mode::Shell {
                    exec: Some("true".into()),
                },
            },
            files,
        )
    }

    #[test]
    fn include_args_parse() {
        assert_eq!(
            parse_include("/a/b"),
            (PathBuf::from("/a/b"), String::new())
        );
        assert_eq!(
            parse_include("/a/b:/opt/b"),
            (PathBuf::from("/a/b"), "/opt/b".to_string())
        );
        assert_eq!(
            guest_path_for(Path::new("/x/scx_rusty"), ""),
            "/ktstr/files/scx_rusty"
        );
    }

    #[test]
    fn tree_has_agent_spec_busybox_and_closure() {
        let t = assemble(&spec(vec![(PathBuf::from("/bin/ls"), String::new())])).unwrap();
        assert!(matches!(
            t.get("/init"),
            Some(Node::File { mode: 0o755, .. })
        ));
        assert!(t.get(SPEC_PATH).is_some());
        assert!(matches!(t.get("/bin/sh"), Some(Node::Symlink(s)) if s == DEFAULT_BUSYBOX));
        assert!(t.get("/ktstr/files/ls").is_some());
        assert!(t.get("/lib64/ld-linux-x86-64.so.2").is_some());
        assert!(matches!(
            t.get("/dev/console"),
            Some(Node::CharDev { major: 5, minor: 1 })
        ));
        assert!(matches!(
            t.get("/dev/null"),
            Some(Node::CharDev { major: 1, minor: 3 })
        ));
    }

    #[test]
    fn missing_input_is_named() {
        let err = assemble(&spec(vec![(
            PathBuf::from("/nonexistent/sched"),
            String::new(),
        )]))
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/sched"), "{err}");
        let mut s = spec(vec![]);
        s.busybox = Some(PathBuf::from("/nonexistent/busybox"));
        assert!(matches!(assemble(&s), Err(InitramfsError::NoBusybox(_))));
    }

    #[test]
    fn a_damaged_cached_image_is_rebuilt_and_temp_leftovers_go() {
        let dir = tempfile::tempdir().unwrap();
        let cpio = assemble(&spec(vec![])).unwrap().to_cpio().unwrap();
        let out = install(dir.path(), &cpio).unwrap();
        let good = std::fs::read(&out).unwrap();
        // Truncated (a disk that filled, a copy cut short): the next build writes it again.
        std::fs::write(&out, &good[..good.len() / 2]).unwrap();
        assert_eq!(install(dir.path(), &cpio).unwrap(), out);
        assert_eq!(std::fs::read(&out).unwrap(), good);
        // Another image's bytes under this name.
        let other = zstd::bulk::compress(b"other", ZSTD_LEVEL).unwrap();
        std::fs::write(&out, other).unwrap();
        install(dir.path(), &cpio).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), good);
        // A killed build's temp file, untouched for longer than anyone writes one.
        let stale = dir.path().join(format!("{TEMP_PREFIX}killed"));
        std::fs::write(&stale, b"partial").unwrap();
        let old = std::time::SystemTime::now() - crate::scratch::UNOWNED_GRACE * 2;
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::fs::remove_file(&out).unwrap();
        install(dir.path(), &cpio).unwrap();
        assert!(!stale.exists());
    }

    #[test]
    fn build_is_deterministic_and_cached() {
        let a = assemble(&spec(vec![])).unwrap().to_cpio().unwrap();
        let b = assemble(&spec(vec![])).unwrap().to_cpio().unwrap();
        assert_eq!(Sha256::digest(&a), Sha256::digest(&b));
        let c = assemble(&spec(vec![(PathBuf::from("/bin/true"), String::new())]))
            .unwrap()
            .to_cpio()
            .unwrap();
        assert_ne!(Sha256::digest(&a), Sha256::digest(&c));
    }
}
