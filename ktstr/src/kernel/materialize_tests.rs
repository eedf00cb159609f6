//! A damaged source tree and what killed extractions left are healed by the next materialize.

use super::*;
use crate::scratch::{OWNER, ScratchDir, TRASH};

/// A small real kernel-like tarball (`linux-t/` with a Makefile) written by the test.
fn tarball(dir: &Path) -> PathBuf {
    let path = dir.join("linux-t.tar.gz");
    let f = std::fs::File::create(&path).unwrap();
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, body) in [
        ("linux-t/Makefile", "VERSION = 6\nPATCHLEVEL = 12\n"),
        ("linux-t/Kconfig", "config T\n"),
        ("linux-t/kernel/sched/core.c", "int core;\n"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, body.as_bytes()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
    path
}

fn source(tarball: &Path) -> Source {
    Source {
        kind: "tarball".into(),
        location: tarball.display().to_string(),
        reference: None,
        identity: "tarball-sha256:test".into(),
        version: None,
        reproducible: true,
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn a_tree_without_its_makefile_is_moved_aside_and_extracted_again() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(&tarball(tmp.path()));
    let trees = tmp.path().join("trees");
    let lock = tmp.path().join("tree.lock");
    let mut progress = Progress::new(false, "test");
    let dest = materialize_in(&trees, &lock, &src, &mut progress).unwrap();
    assert_eq!(dest, trees.join("tarball-sha256-test"));
    // An interrupted removal: the Makefile is gone, other files remain.
    std::fs::remove_file(dest.join("Makefile")).unwrap();
    std::fs::write(dest.join("kernel/sched/core.c"), "half").unwrap();
    // A killed extraction of the same tree, and a removal interrupted after moving aside.
    let dead = ScratchDir::new_in(&trees, EXTRACT_PREFIX).unwrap();
    std::fs::write(dead.path().join("Makefile"), "partial").unwrap();
    let dead = dead.abandon();
    std::fs::create_dir_all(trees.join(format!("{TRASH}x/old"))).unwrap();

    let again = materialize_in(&trees, &lock, &src, &mut progress).unwrap();
    assert_eq!(again, dest);
    assert!(tree_complete(&dest));
    assert_eq!(
        std::fs::read_to_string(dest.join("kernel/sched/core.c")).unwrap(),
        "int core;\n"
    );
    assert!(!dest.join(OWNER).exists());
    assert!(!dead.exists());
    // Nothing else is left: no copy per attempt, no trash.
    assert_eq!(names(&trees), ["tarball-sha256-test"]);
    // A complete tree is used as it is.
    std::fs::write(dest.join("marker"), "kept").unwrap();
    materialize_in(&trees, &lock, &src, &mut progress).unwrap();
    assert!(dest.join("marker").is_file());
}

#[test]
fn a_failed_extraction_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.tar");
    std::fs::write(&bad, b"not a tarball at all").unwrap();
    let trees = tmp.path().join("trees");
    let lock = tmp.path().join("tree.lock");
    let mut progress = Progress::new(false, "test");
    for _ in 0..2 {
        assert!(materialize_in(&trees, &lock, &source(&bad), &mut progress).is_err());
        assert!(names(&trees).is_empty(), "{:?}", names(&trees));
    }
}
