use super::*;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

/// One entry of a test tree: path, git mode, content (a symlink's target for links).
type Spec<'a> = (&'a str, u32, &'a str);

/// Writes a tree (nested directories included) of `files` into `repo`.
fn make_tree(repo: &git2::Repository, files: &[Spec]) -> git2::Oid {
    let mut b = repo.treebuilder(None).unwrap();
    let mut dirs: Vec<&str> = Vec::new();
    for (path, mode, content) in files {
        match path.split_once('/') {
            Some((dir, _)) => {
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
            None => {
                let blob = repo.blob(content.as_bytes()).unwrap();
                b.insert(path, blob, *mode as i32).unwrap();
            }
        }
    }
    for dir in dirs {
        let inner: Vec<Spec> = files
            .iter()
            .filter_map(|(p, m, c)| {
                let rest = p.strip_prefix(dir)?.strip_prefix('/')?;
                Some((rest, *m, *c))
            })
            .collect();
        let sub = make_tree(repo, &inner);
        b.insert(dir, sub, 0o040000).unwrap();
    }
    b.write().unwrap()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    repo: git2::Repository,
    wt: Worktree,
    outside: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init_bare(tmp.path().join("repo.git")).unwrap();
    let wt = Worktree::open(&tmp.path().join("wt")).unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    Fixture {
        _tmp: tmp,
        repo,
        wt,
        outside,
    }
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(p).unwrap()
}

fn set_old_mtime(p: &Path) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1000))
        .unwrap();
}

#[test]
fn first_sync_exports_everything_then_only_changes_are_written() {
    let f = fixture();
    let a = make_tree(
        &f.repo,
        &[
            ("Makefile", 0o100644, "all:\n"),
            ("kernel/sched/fair.c", 0o100644, "int fair;\n"),
            ("kernel/sched/core.c", 0o100644, "int core;\n"),
        ],
    );
    let r = f.wt.sync(&f.repo, a).unwrap();
    assert!(r.full_export);
    assert_eq!(r.written, 3);
    assert_eq!(f.wt.synced_tree(), Some(a));
    let src = f.wt.src();
    set_old_mtime(&src.join("kernel/sched/core.c"));
    set_old_mtime(&src.join("Makefile"));

    let b = make_tree(
        &f.repo,
        &[
            ("Makefile", 0o100644, "all:\n"),
            (
                "kernel/sched/fair.c",
                0o100644,
                "int fair; /* reworded */\n",
            ),
            ("kernel/sched/core.c", 0o100644, "int core;\n"),
        ],
    );
    let r = f.wt.sync(&f.repo, b).unwrap();
    assert_eq!(
        r,
        SyncReport {
            full_export: false,
            written: 1,
            mode_changed: 0,
            removed: 0
        }
    );
    assert_eq!(
        read(src.join("kernel/sched/fair.c")),
        "int fair; /* reworded */\n"
    );
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    for unchanged in ["kernel/sched/core.c", "Makefile"] {
        let m = std::fs::metadata(src.join(unchanged)).unwrap();
        assert_eq!(m.modified().unwrap(), old, "{unchanged} was rewritten");
    }
    // Syncing to the tree it already holds writes nothing.
    assert_eq!(f.wt.sync(&f.repo, b).unwrap(), SyncReport::default());
}

#[test]
fn deletions_remove_files_and_emptied_directories() {
    let f = fixture();
    let a = make_tree(
        &f.repo,
        &[
            ("keep.c", 0o100644, "k\n"),
            ("gone.c", 0o100644, "g\n"),
            ("olddir/deep/x.c", 0o100644, "x\n"),
        ],
    );
    f.wt.sync(&f.repo, a).unwrap();
    let b = make_tree(&f.repo, &[("keep.c", 0o100644, "k\n")]);
    let r = f.wt.sync(&f.repo, b).unwrap();
    assert_eq!(r.removed, 2);
    let src = f.wt.src();
    assert!(src.join("keep.c").is_file());
    assert!(!src.join("gone.c").exists());
    assert!(!src.join("olddir").exists(), "an emptied directory stays");
}

#[test]
fn symlinks_are_created_and_never_followed() {
    let f = fixture();
    let victim = f.outside.join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    let victim_str = victim.display().to_string();
    let outside_str = f.outside.display().to_string();
    let a = make_tree(
        &f.repo,
        &[
            ("real.h", 0o100644, "r\n"),
            ("link.h", 0o120000, "real.h"),
            ("esc", 0o120000, &victim_str),
            ("escdir", 0o120000, &outside_str),
        ],
    );
    f.wt.sync(&f.repo, a).unwrap();
    let src = f.wt.src();
    assert_eq!(
        std::fs::read_link(src.join("link.h")).unwrap(),
        Path::new("real.h")
    );
    assert_eq!(read(src.join("link.h")), "r\n");
    // The links become a file and a directory: written in place, not through the links.
    let b = make_tree(
        &f.repo,
        &[
            ("real.h", 0o100644, "r\n"),
            ("link.h", 0o120000, "real.h"),
            ("esc", 0o100644, "now a file\n"),
            ("escdir/f.c", 0o100644, "f\n"),
        ],
    );
    f.wt.sync(&f.repo, b).unwrap();
    assert_eq!(read(victim.clone()), "untouched");
    assert!(!f.outside.join("f.c").exists());
    let esc = std::fs::symlink_metadata(src.join("esc")).unwrap();
    assert!(esc.is_file());
    assert_eq!(read(src.join("esc")), "now a file\n");
    assert!(
        std::fs::symlink_metadata(src.join("escdir"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(read(src.join("escdir/f.c")), "f\n");
}

#[test]
fn exec_bit_is_honoured_and_a_mode_change_rewrites_nothing() {
    let f = fixture();
    let a = make_tree(
        &f.repo,
        &[
            ("scripts/gen.sh", 0o100755, "#!/bin/sh\n"),
            ("x.sh", 0o100644, "#!/bin/sh\n"),
        ],
    );
    f.wt.sync(&f.repo, a).unwrap();
    let src = f.wt.src();
    let mode = |p: &str| std::fs::metadata(src.join(p)).unwrap().mode() & 0o777;
    assert_eq!(mode("scripts/gen.sh"), 0o755);
    assert_eq!(mode("x.sh"), 0o644);
    set_old_mtime(&src.join("x.sh"));
    let b = make_tree(
        &f.repo,
        &[
            ("scripts/gen.sh", 0o100644, "#!/bin/sh\n"),
            ("x.sh", 0o100755, "#!/bin/sh\n"),
        ],
    );
    let r = f.wt.sync(&f.repo, b).unwrap();
    assert_eq!((r.written, r.mode_changed), (0, 2));
    assert_eq!(mode("scripts/gen.sh"), 0o644);
    assert_eq!(mode("x.sh"), 0o755);
    let m = std::fs::metadata(src.join("x.sh")).unwrap();
    assert_eq!(
        m.modified().unwrap(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1000)
    );
}

#[test]
fn parent_and_absolute_paths_are_refused() {
    let root = Path::new("/w/src");
    for bad in [
        "..",
        "../etc/passwd",
        "a/../../b",
        "/etc/passwd",
        "./a",
        "a/.git/config",
        "",
    ] {
        let err = checked_path(root, Path::new(bad)).unwrap_err();
        assert!(
            matches!(err, KernelError::Worktree(WorktreeError::UnsafePath { .. })),
            "{bad}: {err}"
        );
    }
    assert_eq!(
        checked_path(root, Path::new("kernel/sched/fair.c")).unwrap(),
        root.join("kernel/sched/fair.c")
    );
}

/// A tree object with an entry named `..` (git itself refuses to make one; a crafted repository
/// can hold one).
fn crafted_tree(repo: &git2::Repository, name: &str, content: &str) -> git2::Oid {
    let blob = repo.blob(content.as_bytes()).unwrap();
    let mut raw = format!("100644 {name}\0").into_bytes();
    raw.extend_from_slice(blob.as_bytes());
    repo.odb()
        .unwrap()
        .write(git2::ObjectType::Tree, &raw)
        .unwrap()
}

#[test]
fn a_crafted_parent_entry_is_refused_in_both_sync_kinds() {
    let f = fixture();
    let evil = crafted_tree(&f.repo, "..", "escaped\n");
    // Full export (first use).
    let err = f.wt.sync(&f.repo, evil).unwrap_err();
    assert!(
        matches!(err, KernelError::Worktree(WorktreeError::UnsafePath { .. })),
        "full export: {err}"
    );
    assert_eq!(
        f.wt.synced_tree(),
        None,
        "a failed sync must not be recorded"
    );
    // Diff sync from a good tree.
    let good = make_tree(&f.repo, &[("ok.c", 0o100644, "ok\n")]);
    f.wt.sync(&f.repo, good).unwrap();
    let err = f.wt.sync(&f.repo, evil).unwrap_err();
    assert!(
        matches!(err, KernelError::Worktree(WorktreeError::UnsafePath { .. })),
        "diff sync: {err}"
    );
    assert_eq!(f.wt.synced_tree(), None);
    // Whatever libgit2 makes of the entry, nothing landed next to src.
    let parent = f.wt.src().parent().unwrap().to_path_buf();
    let names: Vec<_> = std::fs::read_dir(&parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| n == "src" || n == LOCK), "{names:?}");
    // The next good sync starts from scratch.
    assert!(f.wt.sync(&f.repo, good).unwrap().full_export);
}

#[test]
fn an_interrupted_sync_is_redone_from_scratch() {
    let f = fixture();
    let a = make_tree(
        &f.repo,
        &[("a.c", 0o100644, "a\n"), ("b.c", 0o100644, "b\n")],
    );
    f.wt.sync(&f.repo, a).unwrap();
    // An interrupted sync towards another tree: the record is gone, src is half-changed.
    std::fs::remove_file(f.wt.root.join(SYNCED)).unwrap();
    std::fs::remove_file(f.wt.src().join("b.c")).unwrap();
    std::fs::write(f.wt.src().join("half.c"), "half").unwrap();
    let b = make_tree(
        &f.repo,
        &[("a.c", 0o100644, "a\n"), ("c.c", 0o100644, "c\n")],
    );
    let r = f.wt.sync(&f.repo, b).unwrap();
    assert!(r.full_export);
    let mut names: Vec<_> = std::fs::read_dir(f.wt.src())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a.c", "c.c"]);
    // An unreadable record is no record.
    std::fs::write(f.wt.root.join(SYNCED), "garbage").unwrap();
    assert!(f.wt.sync(&f.repo, a).unwrap().full_export);
}

#[test]
fn an_identical_config_is_not_touched() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config");
    std::fs::write(&cfg, "CONFIG_A=y\n").unwrap();
    assert!(f.wt.install_config(&cfg).unwrap());
    set_old_mtime(&f.wt.out().join(".config"));
    assert!(!f.wt.install_config(&cfg).unwrap());
    let m = std::fs::metadata(f.wt.out().join(".config")).unwrap();
    assert_eq!(
        m.modified().unwrap(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1000)
    );
    std::fs::write(&cfg, "CONFIG_A=n\n").unwrap();
    assert!(f.wt.install_config(&cfg).unwrap());
    assert_eq!(read(f.wt.out().join(".config")), "CONFIG_A=n\n");
}

#[test]
fn a_second_user_waits_for_the_lock() {
    let f = fixture();
    let lock = f.wt.root.join(LOCK);
    assert!(FileLock::try_exclusive(&lock).is_none());
}

/// A tree object written raw, entries in the given order: (git mode, name, object id). Lets a
/// test hold what TreeBuilder refuses (`/` in a name, duplicate names) and a crafted repository
/// can still carry.
fn raw_tree(repo: &git2::Repository, entries: &[(&str, &str, git2::Oid)]) -> git2::Oid {
    let mut raw = Vec::new();
    for (mode, name, id) in entries {
        raw.extend_from_slice(format!("{mode} {name}\0").as_bytes());
        raw.extend_from_slice(id.as_bytes());
    }
    repo.odb()
        .unwrap()
        .write(git2::ObjectType::Tree, &raw)
        .unwrap()
}

/// Every file below `dir`, as paths relative to it (symlinks listed, not followed).
fn all_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
            out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

/// Syncs `evil` both ways (first export, and a diff from a good tree) and checks nothing was
/// written outside `src` and the sync was refused.
fn refused_both_ways(f: &Fixture, evil: git2::Oid) {
    let good = make_tree(&f.repo, &[("ok.c", 0o100644, "ok\n")]);
    for from in [None, Some(good)] {
        if let Some(g) = from {
            f.wt.sync(&f.repo, g).unwrap();
        }
        let res = f.wt.sync(&f.repo, evil);
        assert!(
            all_files(&f.outside).is_empty(),
            "written outside (from {from:?}): {:?}",
            all_files(&f.outside)
        );
        let err = res.expect_err("a hostile tree must be refused");
        assert!(
            matches!(err, KernelError::Worktree(WorktreeError::UnsafePath { .. })),
            "from {from:?}: {err}"
        );
        assert_eq!(f.wt.synced_tree(), None);
    }
}

#[test]
fn a_slash_in_an_entry_name_cannot_write_through_a_symlink() {
    let f = fixture();
    let outside = f.outside.display().to_string();
    let link = f.repo.blob(outside.as_bytes()).unwrap();
    let payload = f.repo.blob(b"escaped\n").unwrap();
    // `a -> /outside`, then an entry named `a/f`: written as `src/a/f` it lands in /outside/f.
    let evil = raw_tree(
        &f.repo,
        &[("120000", "a", link), ("100644", "a/f", payload)],
    );
    refused_both_ways(&f, evil);
}

#[test]
fn a_symlink_and_a_directory_of_one_name_cannot_write_through_the_link() {
    let f = fixture();
    let outside = f.outside.display().to_string();
    let link = f.repo.blob(outside.as_bytes()).unwrap();
    let payload = f.repo.blob(b"escaped\n").unwrap();
    let sub = raw_tree(&f.repo, &[("100644", "f", payload)]);
    // `a -> /outside` and a directory `a` holding `f`.
    let evil = raw_tree(&f.repo, &[("120000", "a", link), ("40000", "a", sub)]);
    let good = make_tree(&f.repo, &[("ok.c", 0o100644, "ok\n")]);
    for from in [None, Some(good)] {
        if let Some(g) = from {
            f.wt.sync(&f.repo, g).unwrap();
        }
        // Refused or written inside: either way nothing lands outside.
        let _ = f.wt.sync(&f.repo, evil);
        assert!(all_files(&f.outside).is_empty(), "from {from:?}");
    }
}

#[test]
fn dot_and_dotgit_entry_names_are_refused() {
    let f = fixture();
    let payload = f.repo.blob(b"x\n").unwrap();
    for name in [".", ".git", "..", ""] {
        let evil = raw_tree(&f.repo, &[("100644", name, payload)]);
        let err = f.wt.sync(&f.repo, evil);
        assert!(err.is_err(), "{name:?} accepted");
        assert!(all_files(&f.outside).is_empty());
    }
}

#[test]
fn submodule_entries_are_skipped() {
    let f = fixture();
    let payload = f.repo.blob(b"x\n").unwrap();
    // A gitlink names a commit of another repository: there is nothing to write.
    let commit = git2::Oid::from_str("1234567890123456789012345678901234567890").unwrap();
    let t = raw_tree(
        &f.repo,
        &[("100644", "a.c", payload), ("160000", "sub", commit)],
    );
    let r = f.wt.sync(&f.repo, t).unwrap();
    assert_eq!(r.written, 1);
    assert_eq!(all_files(&f.wt.src()), ["a.c"]);
}
