//! Bisection steps on a real kernel history (the `kernel_history` fixture): one persistent
//! worktree, incremental builds, every built kernel in the content-hash cache.

use ktstr::kernel::{self, KernelError, ResolveOptions, cache};
use ktstr_e2e::kernel_history::{self, BROKEN, GOOD, SLOW};
use std::time::Instant;

const CONFIG: &str = "sched_ext,steal-time";

fn git(repo: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(args)
        .output()
        .expect("running git");
    assert!(out.status.success(), "git {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn fixture_has_the_documented_history() {
    let h = kernel_history::kernel_history();
    assert_eq!(h.main.len(), 9);
    assert_eq!(h.calm.len(), 3);
    assert_eq!(h.calm[0], h.main[GOOD]);
    let changed = |a: &str, b: &str| git(&h.repo, &["diff", "--name-only", a, b]);
    assert_eq!(changed(&h.main[0], &h.main[1]), "kernel/sched/fair.c\n");
    assert_eq!(
        changed(&h.main[6], &h.main[7]),
        "Documentation/scheduler/sched-design-CFS.rst\n"
    );
    let broken = git(
        &h.repo,
        &["show", &format!("{}:kernel/sched/fair.c", h.broken())],
    );
    assert!(broken.contains("deliberate syntax error"));
    let slow = git(
        &h.repo,
        &["show", &format!("{}:kernel/sched/core.c", h.slow())],
    );
    assert!(slow.contains("\tudelay(100);\n\twake_flags |= WF_TTWU;"));
    let subject = git(&h.repo, &["log", "-1", "--format=%s", &h.main[SLOW]]);
    assert_eq!(
        subject.trim(),
        "sched/core: busy-wait 100us in try_to_wake_up"
    );
    let tip = git(
        &h.repo,
        &["show", &format!("{}:kernel/sched/core.c", h.bad())],
    );
    assert!(
        tip.contains("udelay(100)"),
        "the slowdown is still there at the tip"
    );
    let calm = git(&h.repo, &["diff", "--name-only", &h.calm[0], &h.calm[2]]);
    assert_eq!(calm, "kernel/sched/fair.c\n");
}

fn resolve_in(
    worktree: &std::path::Path,
    sha: &str,
) -> (Result<kernel::ResolvedKernel, KernelError>, f64) {
    let h = kernel_history::kernel_history();
    let opts = ResolveOptions {
        progress: true,
        worktree: Some(worktree.to_path_buf()),
        ..Default::default()
    };
    let t = Instant::now();
    let r = kernel::resolve(&h.spec(sha), &[CONFIG.to_string()], &opts);
    (r, t.elapsed().as_secs_f64())
}

fn metadata(k: &kernel::ResolvedKernel) -> cache::Metadata {
    cache::Entry::open(k.key.as_deref().expect("a built kernel has a key"))
        .expect("the entry is in the cache")
        .metadata()
        .expect("metadata.json")
}

/// One worktree through c0 (cold), c1 (one-file change), c2 (does not compile) and c3 (builds
/// again). A rerun finds everything cached; to measure again, remove the worktree and entries.
#[test]
fn bisection_steps_build_incrementally_into_the_cache() {
    let h = kernel_history::kernel_history();
    let worktree = ktstr::paths::cache_root().join("test-fixtures/bisect-tree-worktree");

    let (c0, cold_s) = resolve_in(&worktree, &h.main[GOOD]);
    let c0 = c0.expect("building c0 (the source as shipped)");
    let (c1, step_s) = resolve_in(&worktree, &h.main[GOOD + 1]);
    let c1 = c1.expect("building c1 (a comment changed in kernel/sched/fair.c)");
    eprintln!(
        "c0: {cold_s:.1}s (cache hit: {}), c1: {step_s:.1}s (cache hit: {})",
        c0.cache_hit, c1.cache_hit
    );
    assert_ne!(c0.key, c1.key);
    if !c1.cache_hit {
        let m0 = metadata(&c0);
        let m1 = metadata(&c1);
        assert!(m1.incremental, "c1 was built from scratch");
        let build = |m: &cache::Metadata| m.timings.get("build_s").copied().unwrap_or(f64::NAN);
        eprintln!(
            "make: c0 {:.1}s (incremental: {}), c1 {:.1}s (incremental)",
            build(&m0),
            m0.incremental,
            build(&m1)
        );
        if !m0.incremental && !c0.cache_hit {
            assert!(
                build(&m1) * 4.0 < build(&m0),
                "a one-file step took {:.1}s against {:.1}s cold",
                build(&m1),
                build(&m0)
            );
        }
    }

    // The step's kernel is in the cache under the key a clean build gets: resolving it without
    // a worktree builds nothing.
    let again = kernel::resolve(
        &h.spec(&h.main[GOOD + 1]),
        &[CONFIG.to_string()],
        &ResolveOptions::default(),
    )
    .expect("resolving c1 again");
    assert!(again.cache_hit, "c1 was rebuilt");
    assert_eq!(again.key, c1.key);
    let plan = kernel::plan(
        &h.spec(&h.main[GOOD + 1]),
        &[CONFIG.to_string()],
        &ResolveOptions::default(),
    )
    .expect("planning c1");
    assert_eq!(Some(plan.key), c1.key);

    let (c2, c2_s) = resolve_in(&worktree, &h.main[BROKEN]);
    match c2 {
        Err(KernelError::Command { what, tail, .. }) => {
            eprintln!("c2 failed as expected after {c2_s:.1}s: {what}");
            assert!(tail.contains("fair.c"), "the error names fair.c:\n{tail}");
        }
        other => panic!("c2 has a syntax error, yet: {other:?}"),
    }
    let (c3, c3_s) = resolve_in(&worktree, &h.main[BROKEN + 1]);
    let c3 = c3.expect("c3 builds again in the same worktree");
    eprintln!("c3: {c3_s:.1}s (cache hit: {})", c3.cache_hit);
    if !c3.cache_hit {
        assert!(metadata(&c3).incremental);
    }
}

/// Every commit of the fixture builds in one worktree except the broken one (the slow one
/// included), and each lands in the cache: a bisection over the fixture then builds nothing.
#[test]
fn every_fixture_commit_but_the_broken_one_builds() {
    let h = kernel_history::kernel_history();
    let worktree = ktstr::paths::cache_root().join("test-fixtures/bisect-tree-worktree");
    for (name, sha) in h
        .main
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("main[{i}]"), s))
        .chain(
            h.calm
                .iter()
                .enumerate()
                .skip(1)
                .map(|(i, s)| (format!("calm[{i}]"), s)),
        )
    {
        let (k, secs) = resolve_in(&worktree, sha);
        match k {
            Ok(k) => {
                assert_ne!(sha, h.broken(), "the broken commit built");
                eprintln!("{name}: {secs:.1}s (cache hit: {})", k.cache_hit);
            }
            Err(e) => {
                assert_eq!(sha, h.broken(), "{name} failed: {e}");
                eprintln!("{name}: fails as it should after {secs:.1}s");
            }
        }
    }
}
