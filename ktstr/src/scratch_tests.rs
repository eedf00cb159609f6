use super::*;
use std::time::SystemTime;

fn age(path: &Path, by: Duration) {
    let t = SystemTime::now() - by;
    std::fs::File::open(path).unwrap().set_modified(t).unwrap();
}

#[test]
fn a_scratch_dir_in_use_survives_a_sweep_and_an_abandoned_one_goes() {
    let root = tempfile::tempdir().unwrap();
    let live = ScratchDir::new_in(root.path(), ".cfg-").unwrap();
    std::fs::write(live.path().join("big"), vec![0u8; 4096]).unwrap();
    let dead = ScratchDir::new_in(root.path(), ".cfg-").unwrap();
    std::fs::write(dead.path().join("big"), vec![0u8; 4096]).unwrap();
    let dead = dead.abandon();
    assert!(dead.is_dir());
    let swept = sweep(root.path(), &[".cfg-"]);
    assert_eq!(swept.removed, 1);
    assert!(swept.bytes >= 4096);
    assert!(!dead.exists());
    assert!(live.path().join("big").is_file());
    // Other names are not the sweep's.
    std::fs::create_dir(root.path().join("entry")).unwrap();
    std::fs::create_dir(root.path().join(".extract-x")).unwrap();
    age(&root.path().join(".extract-x"), UNOWNED_GRACE * 2);
    sweep(root.path(), &[".cfg-"]);
    assert!(root.path().join("entry").is_dir());
    assert!(root.path().join(".extract-x").is_dir());
}

#[test]
fn an_owner_in_another_process_keeps_its_dir_until_it_is_killed() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(".extract-abc");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(OWNER), "").unwrap();
    // A shell that takes the owner lock with flock(1) on its own descriptor and becomes
    // sleep(1): one process holding the lock the way a ktstr does, until it is SIGKILLed.
    let mut holder = std::process::Command::new("sh")
        .arg("-c")
        .arg("exec 9>>\"$0\" && flock 9 && exec sleep 600")
        .arg(dir.join(OWNER))
        .spawn()
        .expect("sh and flock(1) (util-linux) run");
    // Wait until the lock is held (polling the lock, not sleeping a guessed time).
    while FileLock::try_exclusive(&dir.join(OWNER)).is_some() {
        assert!(
            holder.try_wait().unwrap().is_none(),
            "the lock holder exited"
        );
        std::thread::yield_now();
    }
    assert_eq!(sweep(root.path(), &[".extract-"]).removed, 0);
    assert!(dir.is_dir());
    holder.kill().unwrap();
    holder.wait().unwrap();
    let swept = sweep(root.path(), &[".extract-"]);
    assert_eq!(swept.removed, 1);
    assert!(!dir.exists());
}

#[test]
fn an_unowned_scratch_dir_goes_only_once_it_is_old() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(".cfg-old");
    std::fs::create_dir(&dir).unwrap();
    assert_eq!(sweep(root.path(), &[".cfg-"]).removed, 0);
    age(&dir, UNOWNED_GRACE * 2);
    assert_eq!(sweep(root.path(), &[".cfg-"]).removed, 1);
}

#[test]
fn a_failed_install_leaves_nothing_and_a_good_one_drops_the_owner_file() {
    let root = tempfile::tempdir().unwrap();
    let s = ScratchDir::new_in(root.path(), ".extract-").unwrap();
    std::fs::write(s.path().join("Makefile"), "all:\n").unwrap();
    let path = s.path().to_path_buf();
    // A non-empty directory in the way: rename(2) fails.
    let dest = root.path().join("tree");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("x"), "").unwrap();
    assert!(s.install_as(&dest).is_err());
    assert!(!path.exists(), "a failed install left {}", path.display());
    let s = ScratchDir::new_in(root.path(), ".extract-").unwrap();
    std::fs::write(s.path().join("Makefile"), "all:\n").unwrap();
    let dest = root.path().join("tree2");
    s.install_as(&dest).unwrap();
    assert!(dest.join("Makefile").is_file());
    assert!(!dest.join(OWNER).exists());
}

#[test]
fn moved_aside_is_gone_and_interrupted_trash_is_swept() {
    let root = tempfile::tempdir().unwrap();
    let damaged = root.path().join("tree");
    std::fs::create_dir_all(damaged.join("sub")).unwrap();
    std::fs::write(damaged.join("sub/f"), "x").unwrap();
    move_aside(&damaged).unwrap();
    assert!(!damaged.exists());
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    // A removal that was itself interrupted.
    std::fs::create_dir_all(root.path().join(".trash-abc/old")).unwrap();
    assert_eq!(sweep(root.path(), &[]).removed, 1);
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}
