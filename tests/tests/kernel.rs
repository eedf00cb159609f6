//! Kernels on real builds: resolve -> configure -> build -> cache, through the normal cache so the
//! one cold sched_ext build (`6.12` + `sched_ext,steal-time`) is shared by every test of a run
//! (and by the other test files). Tests that corrupt or rebuild that entry take the write side
//! of [`ENTRY`]; the others read.

use ktstr::kernel::{self, KernelSpec, ResolveOptions, cache, source};
use ktstr_e2e::ktstr_bin;
use std::path::{Path, PathBuf};
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

#[test]
fn git_spec_resolves_a_ref() {
    let repo = tempfile::tempdir().unwrap();
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

    let spec = format!("git:{}#v1", r.display());
    let src = source::identify(&KernelSpec::parse(&spec).unwrap(), &spec, true).unwrap();
    assert_eq!(
        src.identity,
        format!("git-tree:{tree1}"),
        "keyed by the ref's tree id"
    );
    assert_eq!(src.version.as_deref(), Some("6.99.1"));
    let mut progress = kernel::build::Progress::new(false, &spec);
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

/// A one-shot HTTP/1.1 server on 127.0.0.1 serving `files` (path -> body) until the test ends.
fn serve(files: Vec<(String, Vec<u8>)>) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            // Drain the headers.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut s = stream;
            match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(body);
                }
                None => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        }
    });
    format!("http://{addr}")
}

#[test]
fn version_download_verifies_sha256_and_offline_lists_what_was_tried() {
    // A tiny "kernel" tarball; 9.9.1 exists neither in /usr/src nor in the (private) cache.
    let work = tempfile::tempdir().unwrap();
    let top = work.path().join("linux-9.9.1");
    std::fs::create_dir(&top).unwrap();
    std::fs::write(
        top.join("Makefile"),
        "VERSION = 9\nPATCHLEVEL = 9\nSUBLEVEL = 1\nEXTRAVERSION =\n",
    )
    .unwrap();
    std::fs::write(
        top.join("Kconfig"),
        "# not a real kernel: configure fails after the download\n",
    )
    .unwrap();
    let st = Command::new("tar")
        .current_dir(work.path())
        .args(["-cJf", "linux-9.9.1.tar.xz", "linux-9.9.1"])
        .status()
        .unwrap();
    assert!(st.success());
    let tarball = std::fs::read(work.path().join("linux-9.9.1.tar.xz")).unwrap();
    let sum = ktstr::kernel::source::sha256_file(&work.path().join("linux-9.9.1.tar.xz")).unwrap();
    let good = format!(
        "{sum}  linux-9.9.1.tar.xz\n{}  linux-9.9.tar.xz\n",
        "0".repeat(64)
    );
    let bad = format!("{}  linux-9.9.1.tar.xz\n", "1".repeat(64));
    let url_good = serve(vec![
        ("/v9.x/sha256sums.asc".into(), good.into_bytes()),
        ("/v9.x/linux-9.9.1.tar.xz".into(), tarball.clone()),
    ]);
    let url_bad = serve(vec![
        ("/v9.x/sha256sums.asc".into(), bad.into_bytes()),
        ("/v9.x/linux-9.9.1.tar.xz".into(), tarball.clone()),
    ]);
    let cache_dir = tempfile::tempdir().unwrap();
    let c = cache_dir.path();
    let build = |url: &str, extra: &[(&str, &Path)]| {
        let url = PathBuf::from(url);
        let mut envs: Vec<(&str, &Path)> = vec![
            ("KTSTR_CACHE_DIR", c),
            ("KTSTR_KERNEL_ORG_URL", url.as_path()),
        ];
        envs.extend_from_slice(extra);
        ktstr(&["kernel", "build", "9.9.1", "--plan"], &envs)
    };
    let tarballs = c.join("sources/tarballs");

    // Checksum mismatch: refused, nothing left behind.
    let out = build(&url_bad, &[]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sha256 mismatch"));
    assert!(
        !tarballs.join("linux-9.9.1.tar.xz").exists(),
        "an unverified download must not be kept"
    );
    let leftovers = std::fs::read_dir(&tarballs).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "no temp files left in {}", tarballs.display());

    // Good checksum: downloaded, verified, kept; then it fails later (not a real kernel tree).
    let out = build(&url_good, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("download"), "{err}");
    let kept = tarballs.join("linux-9.9.1.tar.xz");
    assert_eq!(ktstr::kernel::source::sha256_file(&kept).unwrap(), sum);

    // Offline with nothing local: one clear error listing each place tried.
    let empty = tempfile::tempdir().unwrap();
    let out = ktstr(
        &["kernel", "build", "9.8", "--offline"],
        &[("KTSTR_CACHE_DIR", empty.path())],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("apt-get install linux-source-9.8"), "{err}");
    assert!(err.contains("kernel.org: not tried (offline)"), "{err}");
}

#[test]
fn two_clean_builds_give_the_same_image() {
    // The cheapest config that exercises the whole recipe: tinyconfig + base (no BTF/DWARF).
    // Each build gets its own cache (so its own O= path); the extracted source is shared.
    let shared_sources = ktstr::paths::sources_dir();
    // Make sure the 6.12 source is extracted once before the two builds race for it.
    let spec = KernelSpec::parse(SPEC).unwrap();
    let src = source::identify(&spec, SPEC, true).unwrap();
    source::materialize(&src, &mut kernel::build::Progress::new(true, SPEC)).unwrap();
    let caches = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for c in &caches {
        std::os::unix::fs::symlink(&shared_sources, c.path().join("sources")).unwrap();
    }
    let t = Instant::now();
    let children: Vec<_> = caches
        .iter()
        .map(|c| {
            Command::new(ktstr_bin())
                .args(["kernel", "build", SPEC, "--config", "base", "--json"])
                .env("KTSTR_CACHE_DIR", c.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut sums = Vec::new();
    for child in children {
        let o = child.wait_with_output().unwrap();
        eprintln!("{}", String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success());
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["cache_hit"], false, "a clean build");
        let image = PathBuf::from(v["image"].as_str().unwrap());
        sums.push((
            v["key"].as_str().unwrap().to_string(),
            source::sha256_file(&image).unwrap(),
        ));
    }
    eprintln!(
        "two clean tinyconfig+base builds took {:?} (wall, in parallel)",
        t.elapsed()
    );
    assert_eq!(sums[0].0, sums[1].0, "same inputs, same key");
    assert_eq!(sums[0].1, sums[1].1, "same inputs, same image sha256");
}
