//! An append that fails part-way (the disk fills up, a file size limit is reached) leaves
//! results.jsonl as it was: the next append starts on a line of its own and the file still reads.
//!
//! A file of its own with one test: the file size limit (RLIMIT_FSIZE) it sets is per process.

mod common;

use ktstr_matrix::store::{self, Record, RunRecord, Writer};

fn record(label: &str) -> Record {
    let mut spec = common::spec(&["6.12"], &["eevdf"], &["1n1l1c1t"], 1);
    // A long field makes the record longer than the room the limit leaves.
    spec.kernels = vec![label.repeat(64)];
    Record::Run(Box::new(RunRecord {
        format_version: store::STORE_FORMAT_VERSION,
        ktstr_version: "test".into(),
        spec,
        columns: vec![],
        started_at: 0,
        origin: None,
        host: None,
        kernels: Vec::new(),
    }))
}

fn set_file_size_limit(bytes: libc::rlim_t) {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass; this process raises the limit back below.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &lim) }, 0);
}

#[test]
fn a_failed_append_leaves_the_file_at_its_last_complete_line() {
    // SAFETY: ignoring SIGXFSZ makes a write past the limit fail with EFBIG instead of killing
    // the process; no other thread of this test binary writes files meanwhile.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let dir = tempfile::tempdir().unwrap();
    let writer = Writer::open(dir.path()).unwrap();
    writer.append(&record("a")).unwrap();
    let good_len = std::fs::metadata(writer.path()).unwrap().len();

    // Room for part of the next record only: the write is cut short, then fails.
    set_file_size_limit(good_len + 100);
    let e = writer.append(&record("b"));
    set_file_size_limit(libc::RLIM_INFINITY);
    assert!(e.is_err(), "the append past the limit failed");
    assert_eq!(
        std::fs::metadata(writer.path()).unwrap().len(),
        good_len,
        "the torn part was cut off"
    );

    writer.append(&record("c")).unwrap();
    let text = std::fs::read_to_string(writer.path()).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    let loaded = store::read(writer.path()).expect("the file still reads");
    assert!(loaded.notice.is_none());
    assert!(loaded.run.spec.kernels[0].starts_with('c'));
}
