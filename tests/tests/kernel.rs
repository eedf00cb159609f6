//! Kernels on real builds: resolve -> configure -> build -> cache, through the normal cache so the
//! one cold sched_ext build (`6.12` + `sched_ext,steal-time`) is shared by every test of a run
//! (and by the other test files). Tests that corrupt or rebuild that entry take the write side
//! of [`ENTRY`]; the others read.

use ktstr::kernel::{self, KernelSpec, ResolveOptions, cache, source};
use ktstr_e2e::ktstr_bin;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::RwLock;
use std::time::{Duration, Instant};

const SPEC: &str = "6.12";
const CONFIG: &str = "sched_ext,steal-time";

static ENTRY: RwLock<()> = RwLock::new(());

fn ktstr(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(ktstr_bin());
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().expect("running ktstr");
    eprintln!(
        "$ ktstr {}\n-> {:?}\n{}{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn opts() -> ResolveOptions {
    ResolveOptions {
        progress: true,
        ..Default::default()
    }
}

/// The shared sched_ext kernel (built on first use in a run, then a cache hit).
fn shared_kernel() -> kernel::ResolvedKernel {
    kernel::resolve(SPEC, &[CONFIG.to_string()], &opts())
        .expect("building 6.12 + sched_ext,steal-time")
}

#[test]
fn sched_ext_kernel_boots_with_the_requested_options() {
    let _r = ENTRY.read().unwrap();
    let k = shared_kernel();
    assert!(k.sched_ext, "CONFIG_SCHED_CLASS_EXT must be on");
    assert!(k.version.starts_with("6.12."), "version {}", k.version);
    let vmlinux = k.vmlinux.as_ref().expect("vmlinux kept");
    let sections = Command::new("readelf")
        .arg("-S")
        .arg(vmlinux)
        .output()
        .expect("readelf");
    let sections = String::from_utf8_lossy(&sections.stdout);
    assert!(sections.contains(".BTF"), "stripped vmlinux must keep .BTF");
    assert!(!sections.contains(".debug_info"), "DWARF must be stripped");

    // What booted, read back from the guest's /proc/config.gz.
    let out = ktstr(
        &[
            "shell",
            "--kernel",
            SPEC,
            "--config",
            CONFIG,
            "--exec",
            "zcat /proc/config.gz | grep -E '^CONFIG_(SCHED_CLASS_EXT|PARAVIRT_TIME_ACCOUNTING|FUNCTION_TRACER)='",
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "shell failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for opt in [
        "CONFIG_SCHED_CLASS_EXT=y",
        "CONFIG_PARAVIRT_TIME_ACCOUNTING=y",
        "CONFIG_FUNCTION_TRACER=y",
    ] {
        assert!(
            stdout.lines().any(|l| l.trim() == opt),
            "guest config lacks {opt}:\n{stdout}"
        );
    }
}

#[test]
fn second_resolution_is_a_cache_hit() {
    let _r = ENTRY.read().unwrap();
    let first = shared_kernel();
    let t = Instant::now();
    let again = shared_kernel();
    let took = t.elapsed();
    assert!(again.cache_hit, "second resolution must not build");
    assert_eq!(first.key, again.key);
    // Generous for unoptimized test builds (sha256 of ~22 MiB); the release figure is in
    // docs/benchmarks.md (`ktstr bench cache`).
    assert!(took < Duration::from_secs(5), "cache hit took {took:?}");
    // The CLI agrees and reports the hit.
    let out = ktstr(
        &["kernel", "build", SPEC, "--config", CONFIG, "--json"],
        &[],
    );
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["cache_hit"], true);
    assert_eq!(v["key"].as_str(), first.key.as_deref());
}

#[test]
fn changed_fragment_gives_a_new_key_without_building() {
    let _r = ENTRY.read().unwrap();
    let built = shared_kernel();
    // A private copy of kernel-configs/ with steal-time changed by one option.
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel-configs");
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let plan = |configs_dir: &Path| -> serde_json::Value {
        let out = ktstr(
            &[
                "kernel", "build", SPEC, "--config", CONFIG, "--plan", "--json",
            ],
            &[("KTSTR_CONFIGS_DIR", configs_dir)],
        );
        assert!(out.status.success(), "plan failed");
        serde_json::from_slice(&out.stdout).expect("plan json")
    };
    let same = plan(dir.path());
    assert_eq!(
        same["key"].as_str(),
        built.key.as_deref(),
        "identical fragments, identical key"
    );
    assert_eq!(same["cached"], true);
    let st = dir.path().join("steal-time");
    let mut text = std::fs::read_to_string(&st).unwrap();
    text.push_str("# A changed fragment must give a new key.\nCONFIG_SCHED_AUTOGROUP=y\n");
    std::fs::write(&st, text).unwrap();
    let changed = plan(dir.path());
    assert_ne!(
        changed["key"].as_str(),
        built.key.as_deref(),
        "changed fragment, same key"
    );
    assert_eq!(changed["cached"], false);
}

#[test]
fn dropped_option_fails_naming_the_unmet_dependency() {
    // base turns PARAVIRT on; turning it off again makes Kconfig drop PARAVIRT_TIME_ACCOUNTING.
    let out = ktstr(
        &[
            "kernel",
            "build",
            SPEC,
            "--config",
            "CONFIG_PARAVIRT=n,steal-time",
            "--plan",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "dropped options are bad input");
    let line = err
        .lines()
        .find(|l| l.contains("CONFIG_PARAVIRT_TIME_ACCOUNTING=y"))
        .unwrap_or_else(|| panic!("no line names the dropped option:\n{err}"));
    assert!(line.contains("unmet: PARAVIRT is not set"), "{line}");
    // Malformed items and unknown fragments fail before any work.
    let t = Instant::now();
    let out = ktstr(
        &["kernel", "build", SPEC, "--config", "sched_ext,stealtime"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `steal-time`"));
    let out = ktstr(
        &["kernel", "build", SPEC, "--config", "CONFIG_HZ=fast"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "bad input must be rejected before any work"
    );
}

fn corrupt(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0xff;
    std::fs::write(path, b).unwrap();
}

#[test]
fn corrupted_entry_is_detected_and_rebuilt() {
    let _w = ENTRY.write().unwrap();
    let k = shared_kernel();
    let entry = cache::Entry::open(k.key.as_deref().unwrap()).unwrap();
    let before = entry.metadata().unwrap();
    corrupt(&k.image);
    assert!(entry.verify().is_err(), "verify must notice a flipped byte");
    let out = ktstr(
        &["kernel", "build", SPEC, "--config", CONFIG, "--json"],
        &[],
    );
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is corrupt"),
        "a notice names the corruption"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["cache_hit"], false,
        "a corrupt entry is rebuilt, not served"
    );
    let entry = cache::Entry::open(k.key.as_deref().unwrap()).unwrap();
    entry.verify().expect("rebuilt entry verifies");
    let after = entry.metadata().unwrap();
    // The kept O= tree makes this an incremental make that reproduces the same image.
    assert_eq!(
        before.files["bzImage"].sha256,
        after.files["bzImage"].sha256
    );
}

#[test]
fn concurrent_builds_of_one_key_build_once() {
    let _w = ENTRY.write().unwrap();
    let k = shared_kernel();
    // Corrupt the entry so both processes must (re)build the same key at the same time.
    corrupt(k.vmlinux.as_ref().unwrap());
    let spawn = || {
        Command::new(ktstr_bin())
            .args(["kernel", "build", SPEC, "--config", CONFIG, "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let mut built = 0;
    for o in &outs {
        eprintln!("{}", String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success());
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["key"].as_str(), k.key.as_deref());
        if v["cache_hit"] == false {
            built += 1;
        }
    }
    assert_eq!(
        built, 1,
        "exactly one process builds; the other waits and reuses"
    );
    cache::Entry::open(k.key.as_deref().unwrap())
        .unwrap()
        .verify()
        .unwrap();
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A tiny "kernel" repo: tag v1 (kernel/sched.c = "first"), then main one commit ahead.
/// Returns the repo and v1's tree id.
fn small_repo() -> (tempfile::TempDir, String) {
    // No leading dot: git daemon refuses paths with a "/." component.
    let repo = tempfile::Builder::new()
        .prefix("ktstr-git-")
        .tempdir()
        .unwrap();
    let r = repo.path();
    git(r, &["init", "-q", "-b", "main"]);
    std::fs::write(
        r.join("Makefile"),
        "VERSION = 6\nPATCHLEVEL = 99\nSUBLEVEL = 1\nEXTRAVERSION =\n",
    )
    .unwrap();
    std::fs::create_dir(r.join("kernel")).unwrap();
    std::fs::write(r.join("kernel/sched.c"), "first\n").unwrap();
    git(r, &["add", "."]);
    git(r, &["commit", "-q", "-m", "one"]);
    git(r, &["tag", "v1"]);
    let tree1 = git(r, &["rev-parse", "v1^{tree}"]);
    std::fs::write(r.join("kernel/sched.c"), "second\n").unwrap();
    git(r, &["commit", "-q", "-am", "two"]);
    (repo, tree1)
}

#[test]
fn git_spec_resolves_a_ref() {
    let (repo, tree1) = small_repo();
    let r = repo.path();
    let spec = format!("git:{}#v1", r.display());
    let src = source::identify(&KernelSpec::parse(&spec).unwrap(), &spec, true).unwrap();
    assert_eq!(
        src.identity,
        format!("git-tree:{tree1}"),
        "keyed by the ref's tree id"
    );
    assert_eq!(src.version.as_deref(), Some("6.99.1"));
    let mut progress = ktstr::progress::Progress::new(false, &spec);
    let tree = source::materialize(&src, &mut progress).unwrap();
    assert_eq!(
        std::fs::read_to_string(tree.join("kernel/sched.c")).unwrap(),
        "first\n"
    );
    // HEAD is the other commit, with another identity.
    let head = format!("git:{}#main", r.display());
    let src2 = source::identify(&KernelSpec::parse(&head).unwrap(), &head, true).unwrap();
    assert_ne!(src2.identity, src.identity);
    // An unknown ref is bad input naming the spec.
    let bad = format!("git:{}#nope", r.display());
    let err = source::identify(&KernelSpec::parse(&bad).unwrap(), &bad, true).unwrap_err();
    assert!(
        err.is_bad_input() && err.to_string().contains("unknown ref"),
        "{err}"
    );
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (bounded) until something accepts connections on `port`.
fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "server on port {port} never came up"
        );
        std::thread::yield_now();
    }
}

/// `git daemon` exporting the repos under `base` on 127.0.0.1; killed on drop.
struct GitDaemon(std::process::Child, u16);

impl GitDaemon {
    fn start(base: &Path) -> Self {
        let port = closed_port();
        let child = Command::new("git")
            .arg("daemon")
            .arg("--export-all")
            .arg("--reuseaddr")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("git daemon");
        wait_listening(port);
        Self(child, port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Smart HTTP on 127.0.0.1: each request is handed to `git http-backend` (CGI) serving the repos
/// under `root`, the transport https:// uses, minus TLS.
fn serve_git_http(root: &Path) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || git_cgi(stream, &root));
        }
    });
    format!("http://{addr}")
}

fn git_cgi(stream: std::net::TcpStream, root: &Path) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    // Keep-alive: serve requests until the client closes.
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = std::collections::HashMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let mut body = Vec::new();
        if headers
            .get("transfer-encoding")
            .is_some_and(|v| v == "chunked")
        {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            let n = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            body.resize(n, 0);
            reader.read_exact(&mut body).unwrap();
        }
        let mut words = request.split_whitespace();
        let method = words.next().unwrap_or("GET").to_string();
        let target = words.next().unwrap_or("/").to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let mut child = Command::new("git")
            .arg("http-backend")
            .env("GIT_PROJECT_ROOT", root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REQUEST_METHOD", &method)
            .env("PATH_INFO", path)
            .env("QUERY_STRING", query)
            .env(
                "CONTENT_TYPE",
                headers.get("content-type").map_or("", String::as_str),
            )
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("REMOTE_ADDR", "127.0.0.1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&body).unwrap();
        let cgi = child.wait_with_output().unwrap().stdout;
        // CGI output: headers (the status as a `Status:` header), a blank line, the body.
        let split = cgi
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("CGI headers");
        let head = String::from_utf8_lossy(&cgi[..split]).into_owned();
        let payload = &cgi[split + 4..];
        let mut status = "200 OK".to_string();
        let mut response = String::new();
        for line in head.lines() {
            match line.split_once(':') {
                Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().into(),
                _ => response.push_str(&format!("{line}\r\n")),
            }
        }
        let _ = write!(
            out,
            "HTTP/1.1 {status}\r\n{response}Content-Length: {}\r\n\r\n",
            payload.len()
        );
        if out.write_all(payload).is_err() {
            return;
        }
    }
}

#[test]
fn git_spec_fetches_a_remote_ref_with_the_local_identity() {
    let (repo, tree1) = small_repo();
    let base = repo.path().parent().unwrap();
    let name = repo.path().file_name().unwrap().to_str().unwrap();
    let daemon = GitDaemon::start(base);
    let http = serve_git_http(base);
    for url in [
        format!("git://127.0.0.1:{}/{name}", daemon.1),
        format!("{http}/{name}"),
    ] {
        let spec = format!("git:{url}#v1");
        let parsed = KernelSpec::parse(&spec).unwrap();
        let src = source::identify(&parsed, &spec, false).unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!(
            src.identity,
            format!("git-tree:{tree1}"),
            "{url}: the same tree as the local path, so the same cache key"
        );
        assert_eq!(src.version.as_deref(), Some("6.99.1"));
        let tree =
            source::materialize(&src, &mut ktstr::progress::Progress::new(false, &spec)).unwrap();
        assert_eq!(
            std::fs::read_to_string(tree.join("kernel/sched.c")).unwrap(),
            "first\n"
        );
        // A branch is fetched too; offline, the mirror answers without the server.
        let main = format!("git:{url}#main");
        let src_main = source::identify(&KernelSpec::parse(&main).unwrap(), &main, false).unwrap();
        assert_ne!(src_main.identity, src.identity);
        let again = source::identify(&parsed, &spec, true).unwrap();
        assert_eq!(again.identity, src.identity);
        // The mirror is keyed by URL and the ports are random: do not leave it in the cache.
        std::fs::remove_dir_all(ktstr::kernel::git_remote::mirror_dir(&url)).unwrap();
    }
}

#[test]
fn unreachable_remote_fails_fast_naming_the_url_and_the_fix() {
    let port = closed_port();
    for url in [
        format!("https://127.0.0.1:{port}/linux.git"),
        format!("ssh://git@127.0.0.1:{port}/linux.git"),
    ] {
        let spec = format!("git:{url}#v6.12");
        let parsed = KernelSpec::parse(&spec).unwrap();
        let t = Instant::now();
        let err = source::identify(&parsed, &spec, false)
            .unwrap_err()
            .to_string();
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t.elapsed()
        );
        assert!(err.contains(&url), "{err}");
        assert!(err.contains("fix:"), "{err}");
        // Built with TLS and ssh: the transport exists, only the server is missing.
        assert!(!err.contains("unsupported URL protocol"), "{err}");
        // Offline, a URL never fetched is bad input saying so.
        let off = source::identify(&parsed, &spec, true).unwrap_err();
        assert!(off.is_bad_input(), "{off}");
        assert!(off.to_string().contains("never fetched"), "{off}");
        let _ = std::fs::remove_dir_all(ktstr::kernel::git_remote::mirror_dir(&url));
    }
}

#[test]
fn two_clean_builds_give_the_same_image() {
    // The shared kernel (sched_ext: DEBUG_INFO + BTF, where absolute paths could leak into the
    // image through the build-id) against one clean build of the same spec in its own cache
    // root, so another O= path; the extracted source is shared through a symlink. One extra cold
    // build, as the two tinyconfig + base builds this replaced.
    let shared_sources = ktstr::paths::sources_dir();
    // Make sure the 6.12 source is extracted before the clean build and the shared one race for it.
    let spec = KernelSpec::parse(SPEC).unwrap();
    let src = source::identify(&spec, SPEC, true).unwrap();
    source::materialize(&src, &mut ktstr::progress::Progress::new(true, SPEC)).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&shared_sources, cache_dir.path().join("sources")).unwrap();
    let t = Instant::now();
    let out = ktstr(
        &["kernel", "build", SPEC, "--config", CONFIG, "--json"],
        &[("KTSTR_CACHE_DIR", cache_dir.path())],
    );
    assert!(out.status.success(), "clean build failed");
    eprintln!(
        "clean {SPEC} + {CONFIG} build took {:?} (wall)",
        t.elapsed()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cache_hit"], false, "a clean build");
    let clean = cache_dir
        .path()
        .join("kernels")
        .join(v["key"].as_str().unwrap());
    let clean_meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(clean.join("metadata.json")).unwrap()).unwrap();

    // Other tests corrupt and rebuild the shared entry: read it under the read side.
    let _r = ENTRY.read().unwrap();
    let shared = shared_kernel();
    assert_eq!(
        v["key"].as_str(),
        shared.key.as_deref(),
        "same inputs, same key"
    );
    let image = ktstr::digest::sha256_file(&shared.image).unwrap();
    assert_eq!(
        clean_meta["files"]["bzImage"]["sha256"].as_str(),
        Some(image.as_str()),
        "same inputs in another O= tree, same bzImage sha256"
    );
    let vmlinux = ktstr::digest::sha256_file(shared.vmlinux.as_ref().unwrap()).unwrap();
    assert_eq!(
        clean_meta["files"]["vmlinux"]["sha256"].as_str(),
        Some(vmlinux.as_str()),
        "same kept vmlinux (symbols, .BTF, build-id)"
    );
}
