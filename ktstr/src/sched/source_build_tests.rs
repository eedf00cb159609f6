//! Real cargo builds of a tiny dependency-free crate: from a directory and from two commits of a
//! git repository, each built once (a second resolution is a cache hit) and the second commit
//! synced by writing only the file it changed.

use super::*;
use std::path::Path;

fn write_crate(dir: &Path, message: &str) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"scx_tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("src/main.rs"),
        format!("fn main() {{ println!(\"{message}\"); }}\n"),
    )
    .unwrap();
}

fn commit_all(r: &git2::Repository, msg: &str, parent: Option<git2::Oid>) -> git2::Oid {
    let sig = git2::Signature::new("T", "t@example.com", &git2::Time::new(0, 0)).unwrap();
    let mut idx = r.index().unwrap();
    idx.add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    idx.write().unwrap();
    let tree = r.find_tree(idx.write_tree().unwrap()).unwrap();
    let parents: Vec<git2::Commit> = parent.iter().map(|p| r.find_commit(*p).unwrap()).collect();
    let refs: Vec<&git2::Commit> = parents.iter().collect();
    r.commit(Some("HEAD"), &sig, &sig, msg, &tree, &refs)
        .unwrap()
}

fn output_of(bin: &Path) -> String {
    String::from_utf8(std::process::Command::new(bin).output().unwrap().stdout).unwrap()
}

/// Skips (with a note) where the scheduler build prerequisites are missing.
fn toolchain_present() -> bool {
    match toolchain::check(BuildKind::Crate) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipped: {e}");
            false
        }
    }
}

#[test]
fn a_directory_builds_once_and_again_when_a_file_changes() {
    if !toolchain_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path().join("scheds"));
    let dir = tmp.path().join("tree");
    write_crate(&dir, "one");
    let spec = format!("scx_tiny@path:{}", dir.display());
    let source = super::super::spec::parse(&spec).unwrap().source;
    let first = ensure(&cache, &spec, &source).unwrap();
    assert_eq!(output_of(&first.path), "one\n");
    assert!(first.build_s.is_some());
    // A cache hit: the entry, and no new build log line.
    let log = std::fs::read_dir(cache.root().join("logs"))
        .unwrap()
        .count();
    assert_eq!(ensure(&cache, &spec, &source).unwrap(), first);
    assert_eq!(lookup(&cache, &spec), Some(first.clone()));
    assert_eq!(
        std::fs::read_dir(cache.root().join("logs"))
            .unwrap()
            .count(),
        log
    );
    write_crate(&dir, "two");
    let second = ensure(&cache, &spec, &source).unwrap();
    assert_ne!(second.sha256, first.sha256);
    assert_eq!(output_of(&second.path), "two\n");
}

#[test]
fn git_refs_build_in_one_synced_tree_and_target() {
    if !toolchain_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path().join("scheds"));
    let work = tmp.path().join("repo");
    let r = git2::Repository::init(&work).unwrap();
    write_crate(&work, "old");
    let c1 = commit_all(&r, "one", None);
    write_crate(&work, "new");
    let c2 = commit_all(&r, "two", Some(c1));
    let repo = work.display().to_string();
    let mut built = Vec::new();
    for c in [c1, c2] {
        let spec = format!("scx_tiny@git:{repo}#{c}");
        let source = super::super::spec::parse(&spec).unwrap().source;
        super::super::from_source::validate(&spec, &source).unwrap();
        built.push(ensure(&cache, &spec, &source).unwrap());
    }
    assert_eq!(output_of(&built[0].path), "old\n");
    assert_eq!(output_of(&built[1].path), "new\n");
    // One build place for the repository, holding the last ref built.
    let places: Vec<_> = std::fs::read_dir(cache.root().join("src-builds"))
        .unwrap()
        .collect();
    assert_eq!(places.len(), 1);
    let place = places[0].as_ref().unwrap().path();
    let synced = std::fs::read_to_string(place.join("synced-tree")).unwrap();
    let tree2 = r.find_commit(c2).unwrap().tree().unwrap().id();
    assert_eq!(synced.trim(), tree2.to_string());
    assert!(place.join("out/release/scx_tiny").is_file());
    // No package of that name: bad input, before any build.
    let spec = format!("scx_other@git:{repo}#{c2}");
    let e = super::super::validate_spec(&spec).unwrap_err();
    assert!(
        e.is_bad_input() && e.to_string().contains("scx_other"),
        "{e}"
    );
}
