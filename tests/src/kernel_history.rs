//! A real kernel history to bisect: Debian's 6.12 source as a git repository with a known
//! build break and a known scheduler slowdown in it.
//!
//! Branch `main` (linear): [`GOOD`] is the source as shipped, [`BROKEN`] does not compile,
//! [`SLOW`] busy-waits in every wake-up, [`BAD`] is the tip; the other commits only change
//! comments (in `kernel/sched/`, and one in `Documentation/` that rebuilds no object). Branch
//! `calm` forks from the first commit with two comment-only changes (no regression).
//!
//! Building it streams the tarball into `git fast-import` (no 1.4 GB extraction on disk); the
//! result is cached under `<cache root>/test-fixtures/`, keyed by the tarball's sha256 and
//! [`FIXTURE_VERSION`], built in a temp dir renamed into place under a lock, so parallel tests
//! build it once and a rerun reuses it. Identities and dates are fixed: the shas are the same on
//! every machine with the same tarball.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The source the history is made of (`KTSTR_FIXTURE_TARBALL` overrides it).
pub const DEFAULT_TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";

/// Bumped whenever the commits below change, so a cached fixture of another recipe is not used.
pub const FIXTURE_VERSION: u32 = 1;

/// Index in [`KernelHistory::main`] of the good endpoint (the source as shipped).
pub const GOOD: usize = 0;
/// Index in [`KernelHistory::main`] of the commit that does not compile.
pub const BROKEN: usize = 2;
/// Index in [`KernelHistory::main`] of the commit that busy-waits in `try_to_wake_up()`.
pub const SLOW: usize = 4;
/// Index in [`KernelHistory::main`] of the bad endpoint (the tip).
pub const BAD: usize = 8;

/// The busy delay [`SLOW`] adds to every wake-up, in microseconds.
pub const SLOW_WAKEUP_DELAY_US: u32 = 100;

const FAIR: &str = "kernel/sched/fair.c";
const CORE: &str = "kernel/sched/core.c";
const DOC: &str = "Documentation/scheduler/sched-design-CFS.rst";
const BROKEN_LINE: &str = "\nktstr fixture: a deliberate syntax error;\n";

/// The fixture repository (bare) and its commits, oldest first.
#[derive(Debug, Clone)]
pub struct KernelHistory {
    pub repo: PathBuf,
    /// The 9 commits of `main` in order: `main[GOOD]` .. `main[BAD]`.
    pub main: Vec<String>,
    /// `calm`: its fork point (`main[GOOD]`) then its 2 comment-only commits.
    pub calm: Vec<String>,
}

impl KernelHistory {
    /// The kernel spec of a commit: `git:<repo>#<sha>`.
    pub fn spec(&self, sha: &str) -> String {
        format!("git:{}#{sha}", self.repo.display())
    }
    pub fn good(&self) -> &str {
        &self.main[GOOD]
    }
    pub fn broken(&self) -> &str {
        &self.main[BROKEN]
    }
    pub fn slow(&self) -> &str {
        &self.main[SLOW]
    }
    pub fn bad(&self) -> &str {
        &self.main[BAD]
    }
}

/// The fixture, built on first use (a few minutes) and cached across test runs.
pub fn kernel_history() -> &'static KernelHistory {
    static H: OnceLock<KernelHistory> = OnceLock::new();
    H.get_or_init(|| {
        let tarball = std::env::var_os("KTSTR_FIXTURE_TARBALL")
            .map(PathBuf::from)
            .unwrap_or_else(|| DEFAULT_TARBALL.into());
        let root = ktstr::paths::cache_root().join("test-fixtures");
        build_or_reuse(&tarball, &root)
    })
}

/// The fixture made from `tarball`, under `root` (built there when missing).
pub fn build_or_reuse(tarball: &Path, root: &Path) -> KernelHistory {
    assert!(
        tarball.is_file(),
        "{} missing: `apt-get install linux-source-6.12` provides it",
        tarball.display()
    );
    let sha = ktstr::digest::sha256_file(tarball).expect("hashing the fixture tarball");
    let name = format!("kernel-history-v{FIXTURE_VERSION}-{}", &sha[..16]);
    let dir = root.join(&name);
    std::fs::create_dir_all(root).expect("creating the fixtures dir");
    let _lock = ktstr::lock::FileLock::exclusive(&root.join(format!("{name}.lock")), || {
        eprintln!("another test is building the kernel-history fixture; waiting for it")
    })
    .expect("locking the fixture");
    if !dir.join("repo.git").is_dir() {
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-kernel-history-")
            .tempdir_in(root)
            .expect("fixture temp dir");
        eprintln!(
            "building the kernel-history fixture from {}",
            tarball.display()
        );
        let started = std::time::Instant::now();
        build(tarball, &tmp.path().join("repo.git"));
        std::fs::rename(tmp.keep(), &dir).expect("installing the fixture");
        eprintln!("fixture built in {:.0}s", started.elapsed().as_secs_f64());
    }
    let repo = dir.join("repo.git");
    let main = first_parent_list(&repo, "main");
    let calm = first_parent_list(&repo, "calm");
    assert_eq!(main.len(), BAD + 1, "main of {}", repo.display());
    assert_eq!(calm.len(), 3, "calm of {}", repo.display());
    assert_eq!(calm[0], main[GOOD]);
    KernelHistory { repo, main, calm }
}

fn git(repo: &Path) -> Command {
    let mut c = Command::new("git");
    // The user's configuration (hooks, autocrlf, default branch) must not change the shas.
    c.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_DIR", repo);
    c
}

fn first_parent_list(repo: &Path, branch: &str) -> Vec<String> {
    let out = git(repo)
        .args(["rev-list", "--first-parent", "--reverse", branch])
        .output()
        .expect("running git rev-list");
    assert!(out.status.success(), "git rev-list {branch} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The files the commits after the first one edit, as shipped.
#[derive(Default)]
struct Edited {
    fair: String,
    core: String,
    doc: String,
}

fn build(tarball: &Path, repo: &Path) {
    let st = Command::new("git")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["init", "-q", "--bare", "--initial-branch=main"])
        .arg(repo)
        .status()
        .expect("git init");
    assert!(st.success(), "git init failed");
    let mut child = git(repo)
        .args(["fast-import", "--quiet", "--done"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("starting git fast-import");
    let mut w = std::io::BufWriter::with_capacity(1 << 20, child.stdin.take().unwrap());
    let mut stream = Stream {
        w: &mut w,
        time: 1_704_067_200,
    };
    let edited = stream.first_commit(tarball);
    stream.history(edited);
    writeln!(stream.w, "done").unwrap();
    w.flush().unwrap();
    drop(w);
    let st = child.wait().expect("waiting for git fast-import");
    assert!(st.success(), "git fast-import failed");
}

/// A fast-import stream being written.
struct Stream<'a, W: Write> {
    w: &'a mut W,
    /// Author and committer time of the next commit (fixed, one minute apart).
    time: u64,
}

impl<W: Write> Stream<'_, W> {
    fn commit_header(&mut self, branch: &str, mark: u32, from: Option<u32>, message: &str) {
        let who = "ktstr fixture <fixture@ktstr.invalid>";
        let t = self.time;
        self.time += 60;
        write!(
            self.w,
            "commit refs/heads/{branch}\nmark :{mark}\nauthor {who} {t} +0000\ncommitter {who} {t} +0000\ndata {}\n{message}\n",
            message.len() + 1
        )
        .unwrap();
        if let Some(f) = from {
            writeln!(self.w, "from :{f}").unwrap();
        }
    }

    fn file(&mut self, mode: &str, path: &str, content: &[u8]) {
        assert!(
            !path.contains('\n') && !path.starts_with('"'),
            "unexpected path {path:?}"
        );
        writeln!(self.w, "M {mode} inline {path}\ndata {}", content.len()).unwrap();
        self.w.write_all(content).unwrap();
        self.w.write_all(b"\n").unwrap();
    }

    /// The tarball as shipped (its top directory stripped), as mark :1 on `main`.
    fn first_commit(&mut self, tarball: &Path) -> Edited {
        let f = std::fs::File::open(tarball).expect("opening the tarball");
        let xz = xz2::read::XzDecoder::new(std::io::BufReader::with_capacity(1 << 20, f));
        let mut ar = tar::Archive::new(xz);
        self.commit_header("main", 1, None, "Linux 6.12 as shipped by Debian");
        let mut edited = Edited::default();
        let mut buf = Vec::new();
        for entry in ar.entries().expect("reading the tarball") {
            let mut entry = entry.expect("corrupt tarball");
            let path = entry.path().expect("tar path").into_owned();
            let rel: PathBuf = path.components().skip(1).collect();
            let Some(rel) = rel.to_str().filter(|r| !r.is_empty()).map(str::to_string) else {
                continue;
            };
            let kind = entry.header().entry_type();
            if kind.is_symlink() {
                let target = entry
                    .link_name()
                    .expect("link name")
                    .expect("symlink target");
                self.file("120000", &rel, target.as_os_str().as_encoded_bytes());
            } else if kind.is_file() {
                let exec = entry.header().mode().unwrap_or(0) & 0o111 != 0;
                buf.clear();
                entry.read_to_end(&mut buf).expect("reading a tar entry");
                let text = || String::from_utf8(buf.clone()).expect("utf-8 source");
                match rel.as_str() {
                    FAIR => edited.fair = text(),
                    CORE => edited.core = text(),
                    DOC => edited.doc = text(),
                    _ => {}
                }
                self.file(if exec { "100755" } else { "100644" }, &rel, &buf);
            }
            // Directories are implied by their files; pax headers carry no content.
        }
        assert!(
            !edited.fair.is_empty() && !edited.core.is_empty() && !edited.doc.is_empty(),
            "the tarball lacks {FAIR}, {CORE} or {DOC}"
        );
        writeln!(self.w).unwrap();
        edited
    }

    fn change(&mut self, branch: &str, mark: u32, message: &str, files: &[(&str, &str)]) {
        self.commit_header(branch, mark, Some(mark - 1), message);
        for (path, text) in files {
            self.file("100644", path, text.as_bytes());
        }
        writeln!(self.w).unwrap();
    }

    /// Marks :2..:9 on `main`, :10..:11 on `calm` (from :1).
    fn history(&mut self, shipped: Edited) {
        let Edited {
            mut fair,
            mut core,
            mut doc,
        } = shipped;
        let fair0 = fair.clone();
        fair = reword_comment(&fair, 1, "main 1");
        self.change("main", 2, "sched/fair: reword a comment", &[(FAIR, &fair)]);
        let broken = format!("{fair}{BROKEN_LINE}");
        self.change(
            "main",
            3,
            "sched/fair: add a syntax error (does not build)",
            &[(FAIR, &broken)],
        );
        fair = reword_comment(&fair, 2, "main 3");
        self.change(
            "main",
            4,
            "sched/fair: remove the syntax error, reword a comment",
            &[(FAIR, &fair)],
        );
        core = slow_wakeups(&core);
        self.change(
            "main",
            5,
            &format!("sched/core: busy-wait {SLOW_WAKEUP_DELAY_US}us in try_to_wake_up"),
            &[(CORE, &core)],
        );
        core = reword_comment(&core, 1, "main 5");
        self.change("main", 6, "sched/core: reword a comment", &[(CORE, &core)]);
        fair = reword_comment(&fair, 3, "main 6");
        self.change("main", 7, "sched/fair: reword a comment", &[(FAIR, &fair)]);
        doc = reword_doc(&doc, "main 7");
        self.change(
            "main",
            8,
            "Documentation/scheduler: reword a sentence",
            &[(DOC, &doc)],
        );
        core = reword_comment(&core, 2, "main 8");
        self.change("main", 9, "sched/core: reword a comment", &[(CORE, &core)]);

        let calm1 = reword_comment(&fair0, 1, "calm 1");
        self.commit_header("calm", 10, Some(1), "sched/fair: reword a comment");
        self.file("100644", FAIR, calm1.as_bytes());
        writeln!(self.w).unwrap();
        let calm2 = reword_comment(&calm1, 2, "calm 2");
        self.change(
            "calm",
            11,
            "sched/fair: reword another comment",
            &[(FAIR, &calm2)],
        );
    }
}

/// Appends ` (reworded: TAG)` to the `nth` (1-based) block-comment line (` * text`): the line
/// count stays, so no `__LINE__` and no object other than this file's changes.
fn reword_comment(text: &str, nth: usize, tag: &str) -> String {
    let mut seen = 0;
    let mut done = false;
    let mut out = String::with_capacity(text.len() + 32);
    for line in text.split_inclusive('\n') {
        let body = line.strip_suffix('\n').unwrap_or(line);
        if !done && body.starts_with(" * ") && body.len() > 3 {
            seen += 1;
            if seen == nth {
                out.push_str(body);
                out.push_str(&format!(" (reworded: {tag})"));
                out.push_str(&line[body.len()..]);
                done = true;
                continue;
            }
        }
        out.push_str(line);
    }
    assert!(done, "fewer than {nth} comment lines");
    out
}

/// Rewords the first prose line of an rst file.
fn reword_doc(text: &str, tag: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.starts_with(|c: char| c.is_ascii_alphabetic()) && l.len() > 20)
        .expect("a prose line");
    text.replacen(line, &format!("{line} (reworded: {tag})"), 1)
}

/// `udelay()` on every entry of `try_to_wake_up()`.
fn slow_wakeups(core: &str) -> String {
    let start = core
        .find(
            "\nint try_to_wake_up(struct task_struct *p, unsigned int state, int wake_flags)\n{\n",
        )
        .expect("try_to_wake_up in core.c");
    let anchor = "\twake_flags |= WF_TTWU;\n";
    let at = start
        + core[start..]
            .find(anchor)
            .expect("WF_TTWU in try_to_wake_up");
    let mut out = String::with_capacity(core.len() + 64);
    let include_at = core
        .find("#include <linux/highmem.h>\n")
        .expect("an include line");
    out.push_str(&core[..include_at]);
    out.push_str("#include <linux/delay.h>\n");
    out.push_str(&core[include_at..at]);
    out.push_str(&format!("\tudelay({SLOW_WAKEUP_DELAY_US});\n"));
    out.push_str(&core[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reword_keeps_lines_and_changes_one_comment() {
        let t = "/*\n * one\n * two\n */\nint x;\n";
        assert_eq!(
            reword_comment(t, 2, "t"),
            "/*\n * one\n * two (reworded: t)\n */\nint x;\n"
        );
    }

    #[test]
    fn slow_wakeups_inserts_the_delay_in_try_to_wake_up() {
        let core = "#include <linux/highmem.h>\n\nint other(void)\n{\n\twake_flags |= WF_TTWU;\n}\n\nint try_to_wake_up(struct task_struct *p, unsigned int state, int wake_flags)\n{\n\tint cpu;\n\n\twake_flags |= WF_TTWU;\n}\n";
        let s = slow_wakeups(core);
        assert!(s.starts_with("#include <linux/delay.h>\n#include <linux/highmem.h>\n"));
        assert!(s.contains("\tint cpu;\n\n\tudelay(100);\n\twake_flags |= WF_TTWU;\n}\n"));
        assert_eq!(s.matches("udelay").count(), 1);
    }
}
