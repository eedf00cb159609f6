//! `results.jsonl` as `ktstr report` and `--resume` read it: no input panics, and a file that
//! reads once reads the same after the writer reopens it (which cuts a torn last line) and
//! appends nothing.
#![no_main]

use ktstr_matrix::store::{RESULTS_FILE, Writer, read};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// One scratch directory per process; each input overwrites the file in it.
fn scratch() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch().path();
    let path = dir.join(RESULTS_FILE);
    std::fs::write(&path, data).expect("write the input");
    let Ok(first) = read(&path) else {
        return;
    };
    drop(Writer::open(dir).expect("open for appending"));
    let again = read(&path).expect("a readable file stays readable after the writer opens it");
    assert_eq!(again.run, first.run);
    assert_eq!(again.cells, first.cells);
});
