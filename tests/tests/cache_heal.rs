//! Self-healing caches through the real binary, on a private cache and a small tarball made here
//! (no kernel is built: the tarball's Makefile fails `make tinyconfig` at once, after the source
//! tree has been materialized): a source tree an interrupted removal left without its Makefile is
//! moved aside and extracted again, and what killed runs left is removed at the start.

use ktstr_e2e::ktstr_bin;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fake_kernel_tarball(dir: &Path) -> PathBuf {
    let path = dir.join("linux-t.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
    for (name, body) in [
        // Every target fails: configure stops right after the tree is in place.
        (
            "linux-t/Makefile",
            "%:\n\t@echo not a real kernel; exit 1\n",
        ),
        ("linux-t/Kconfig", "config T\n\tbool\n"),
        ("linux-t/kernel/core.c", "int core;\n"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, body.as_bytes()).unwrap();
    }
    b.into_inner().unwrap();
    path
}

fn build(cache: &Path, tarball: &Path) -> Output {
    let out = Command::new(ktstr_bin())
        .args(["kernel", "build", "--offline"])
        .arg(format!("tar:{}", tarball.display()))
        .env("KTSTR_CACHE_DIR", cache)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A scratch dir as a killed ktstr leaves it: its owner file present, nobody holding its lock.
fn abandoned_scratch(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(ktstr::scratch::OWNER), "").unwrap();
    std::fs::write(dir.join("big"), vec![0u8; 1 << 16]).unwrap();
}

#[test]
fn a_damaged_source_tree_and_leftovers_are_healed_by_the_next_build() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let tarball = fake_kernel_tarball(tmp.path());
    let first = build(&cache, &tarball);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.contains("tinyconfig"),
        "configure was reached: {stderr}"
    );
    // The log a failed configure names outlives its scratch dir.
    let log = stderr
        .split("full log: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .expect("the error names a log");
    assert!(
        std::fs::read_to_string(log)
            .unwrap()
            .contains("not a real kernel"),
        "{log}"
    );
    let trees = cache.join("sources/trees");
    let tree_names = names(&trees);
    assert_eq!(tree_names.len(), 1, "{tree_names:?}");
    let tree = trees.join(&tree_names[0]);
    assert!(tree.join("Makefile").is_file());
    // An interrupted removal of the tree, and what killed runs leave.
    std::fs::remove_file(tree.join("Makefile")).unwrap();
    abandoned_scratch(&trees.join(".extract-killed"));
    abandoned_scratch(&cache.join("kernels/builds/.cfg-killed"));
    abandoned_scratch(&cache.join("kernels/.tmp-killed"));
    abandoned_scratch(&cache.join("kernels/.trash-interrupted/old"));

    let second = build(&cache, &tarball);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("is incomplete") && stderr.contains("moving it aside"),
        "one notice line: {stderr}"
    );
    assert!(
        stderr.contains("tinyconfig"),
        "configure was reached again: {stderr}"
    );
    assert!(
        tree.join("Makefile").is_file(),
        "the tree was extracted again"
    );
    assert_eq!(
        names(&trees),
        tree_names,
        "no copy or trash left beside the tree"
    );
    // Only the logs of the two failed configures, no scratch dir.
    let builds = names(&cache.join("kernels/builds"));
    assert!(
        builds
            .iter()
            .all(|n| !n.starts_with('.') || n.ends_with(".log")),
        "{builds:?}"
    );
    let kernels = names(&cache.join("kernels"));
    assert!(
        kernels
            .iter()
            .all(|n| !n.starts_with(".tmp-") && !n.starts_with(".trash-")),
        "{kernels:?}"
    );
}

#[test]
fn an_interrupted_gc_leaves_nothing_under_a_real_name() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let tarball = fake_kernel_tarball(tmp.path());
    build(&cache, &tarball);
    let trees = cache.join("sources/trees");
    assert_eq!(names(&trees).len(), 1);
    // A gc killed half-way through removing something it had moved aside, and a killed run.
    abandoned_scratch(&trees.join(".trash-killed/old"));
    abandoned_scratch(&cache.join("kernels/builds/.cfg-killed"));
    let out = Command::new(ktstr_bin())
        .args(["kernel", "gc", "--keep", "0"])
        .env("KTSTR_CACHE_DIR", &cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No entry keeps the tree: it went, and so did the leftovers, with nothing moved aside left.
    assert_eq!(names(&trees), Vec::<String>::new());
    let builds = names(&cache.join("kernels/builds"));
    assert!(builds.iter().all(|n| n.ends_with(".log")), "{builds:?}");
}
