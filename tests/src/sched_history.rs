//! A real scheduler history to bisect: scx_rusty's released source from crates.io as a git
//! repository with commits on top.
//!
//! Branch `main` (linear), [`COMMITS`] commits: [`GOOD`] is the crate as published, then a README
//! edit, [`SLOW`] which busy-waits [`SLOW_ENQUEUE_US`] µs in every `ops.enqueue` (every
//! wake-up goes through it), then a comment in `main.rs`, [`BAD`] the tip. The crate's
//! `Cargo.lock` is committed, so every commit builds the same dependencies (`cargo build
//! --locked`) from the registry: no GitHub.
//!
//! The source is the crate in cargo's registry (`cargo install scx_rusty`, as the scheduler tests
//! do, leaves it there) or, failing that, the `.crate` from crates.io. The repository is cached
//! under `<cache root>/test-fixtures/`, built in a temp dir renamed into place under a lock;
//! identities and dates are fixed, so the shas are the same on every machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const CRATE: &str = "scx_rusty";
pub const VERSION: &str = "1.1.4";
/// Bumped whenever the commits below change.
pub const FIXTURE_VERSION: u32 = 1;
pub const COMMITS: usize = 5;
pub const GOOD: usize = 0;
pub const SLOW: usize = 2;
pub const BAD: usize = 4;
/// The busy wait [`SLOW`] adds to every `ops.enqueue`, in microseconds.
pub const SLOW_ENQUEUE_US: u32 = 100;

const BPF: &str = "src/bpf/main.bpf.c";
const ENQUEUE: &str = "BPF_STRUCT_OPS(rusty_enqueue,";
const ENQUEUE_ANCHOR: &str = "\ts32 cpu = -1;\n";

/// The fixture repository (bare) and the commits of `main`, oldest first.
#[derive(Debug, Clone)]
pub struct SchedHistory {
    pub repo: PathBuf,
    pub main: Vec<String>,
}

impl SchedHistory {
    /// `scx_rusty@git:<repo>` (no ref: the spec a scheduler bisection takes).
    pub fn repo_spec(&self) -> String {
        format!("{CRATE}@git:{}", self.repo.display())
    }
    /// `scx_rusty@git:<repo>#<sha>`.
    pub fn spec(&self, sha: &str) -> String {
        format!("{}#{sha}", self.repo_spec())
    }
}

/// The fixture, built on first use (seconds) and cached across test runs.
pub fn sched_history() -> &'static SchedHistory {
    static H: OnceLock<SchedHistory> = OnceLock::new();
    H.get_or_init(|| build_or_reuse(&ktstr::paths::cache_root().join("test-fixtures")))
}

pub fn build_or_reuse(root: &Path) -> SchedHistory {
    let name = format!("{CRATE}-{VERSION}-history-v{FIXTURE_VERSION}");
    let dir = root.join(&name);
    std::fs::create_dir_all(root).expect("creating the fixtures dir");
    let _lock = ktstr::lock::FileLock::exclusive(&root.join(format!("{name}.lock")), || {
        eprintln!("another test is building the {name} fixture; waiting for it")
    })
    .expect("locking the fixture");
    if !dir.join("repo.git").is_dir() {
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-sched-history-")
            .tempdir_in(root)
            .expect("fixture temp dir");
        let src = crate_source(tmp.path());
        build(&src, &tmp.path().join("repo.git"), &tmp.path().join("work"));
        std::fs::rename(tmp.keep(), &dir).expect("installing the fixture");
    }
    let repo = dir.join("repo.git");
    let out = git(&repo, None)
        .args(["rev-list", "--first-parent", "--reverse", "main"])
        .output()
        .expect("git rev-list");
    let main: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(main.len(), COMMITS, "main of {}", repo.display());
    SchedHistory { repo, main }
}

/// The unpacked crate: cargo's registry copy, else downloaded from crates.io into `tmp`.
fn crate_source(tmp: &Path) -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let want = format!("{CRATE}-{VERSION}");
    if let Ok(rd) = std::fs::read_dir(home.join("registry/src")) {
        for index in rd.flatten() {
            let p = index.path().join(&want);
            if p.join("Cargo.toml").is_file() {
                return p;
            }
        }
    }
    let url = format!("https://static.crates.io/crates/{CRATE}/{want}.crate");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "curl -sSfL '{url}' | tar xzf - -C '{}'",
            tmp.display()
        ))
        .status()
        .expect("running curl | tar");
    assert!(st.success(), "downloading {url} failed");
    tmp.join(want)
}

fn git(repo: &Path, work: Option<&Path>) -> Command {
    let mut c = Command::new("git");
    // The user's configuration (hooks, autocrlf, default branch) must not change the shas.
    c.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_DIR", repo);
    if let Some(w) = work {
        c.env("GIT_WORK_TREE", w).current_dir(w);
    }
    c
}

fn run(mut c: Command, what: &str) {
    let st = c.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(st.success(), "{what} failed");
}

fn build(src: &Path, repo: &Path, work: &Path) {
    let mut init = Command::new("git");
    init.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["init", "-q", "--bare", "--initial-branch=main"])
        .arg(repo);
    run(init, "git init");
    std::fs::create_dir_all(work).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let name = e.file_name();
        // cargo's own markers of an unpacked registry crate, not part of its source.
        if name == ".cargo-ok" || name == ".cargo_vcs_info.json" {
            continue;
        }
        copy_tree(&e.path(), &work.join(&name));
    }
    let mut time = 1_704_067_200u64;
    let mut commit = |msg: &str| {
        let mut add = git(repo, Some(work));
        add.args(["add", "-A"]);
        run(add, "git add");
        let who = "ktstr fixture";
        let mut c = git(repo, Some(work));
        c.args(["commit", "-q", "-m", msg])
            .env("GIT_AUTHOR_NAME", who)
            .env("GIT_AUTHOR_EMAIL", "fixture@ktstr.invalid")
            .env("GIT_COMMITTER_NAME", who)
            .env("GIT_COMMITTER_EMAIL", "fixture@ktstr.invalid")
            .env("GIT_AUTHOR_DATE", format!("{time} +0000"))
            .env("GIT_COMMITTER_DATE", format!("{time} +0000"));
        run(c, "git commit");
        time += 60;
    };
    commit(&format!("{CRATE} {VERSION} as published on crates.io"));
    append(
        &work.join("README.md"),
        "\nBuilt by the ktstr test fixture.\n",
    );
    commit("README: say where this tree comes from");
    let bpf = work.join(BPF);
    let text = std::fs::read_to_string(&bpf).unwrap();
    let func = text.find(ENQUEUE).expect("main.bpf.c has rusty_enqueue");
    let at = func
        + text[func..]
            .find(ENQUEUE_ANCHOR)
            .expect("rusty_enqueue declares cpu")
        + ENQUEUE_ANCHOR.len();
    let spin = format!(
        "\t{{\n\t\tu64 ktstr_end = bpf_ktime_get_ns() + {}ULL;\n\t\tu32 ktstr_i;\n\n\t\tbpf_for(ktstr_i, 0, 1000000)\n\t\t\tif (bpf_ktime_get_ns() >= ktstr_end)\n\t\t\t\tbreak;\n\t}}\n",
        u64::from(SLOW_ENQUEUE_US) * 1000
    );
    std::fs::write(&bpf, format!("{}{spin}{}", &text[..at], &text[at..])).unwrap();
    commit("enqueue: wait for the tuning parameters to settle");
    let main_rs = work.join("src/main.rs");
    let text = std::fs::read_to_string(&main_rs).unwrap();
    std::fs::write(
        &main_rs,
        format!("// Part of the ktstr scheduler fixture.\n{text}"),
    )
    .unwrap();
    commit("main: a comment");
    append(&work.join("README.md"), "See docs/bisect.md of ktstr.\n");
    commit("README: point at the bisection docs");
}

fn append(path: &Path, text: &str) {
    let mut s = std::fs::read_to_string(path).unwrap();
    s.push_str(text);
    std::fs::write(path, s).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap();
    }
}
