//! Bad input and Ctrl-C without a VM: each case is refused (exit 2) or stopped (exit 130)
//! before anything is built or booted, so these tests take seconds.

use ktstr_e2e::ktstr_bin;
use std::process::{Command, Output};

fn ktstr_in(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(ktstr_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("ktstr runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_cell_larger_than_the_host_memory_is_refused_before_any_build() {
    let dir = tempfile::tempdir().unwrap();
    // Within the 1 TiB guest-size bound, far beyond any CI host's memory.
    std::fs::write(
        dir.path().join("m.toml"),
        "kernels = [\"6.12\"]\nscheds = [\"eevdf\"]\nmemory_mib = 1000000\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = ktstr_in(
        dir.path(),
        &["matrix", "--file", "m.toml", "--out", out.to_str().unwrap()],
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("memory_mib = 1000000") && e.contains("m.toml"),
        "{e}"
    );
    assert!(e.contains("MemAvailable"), "{e}");
    assert!(!e.contains("plan:"), "refused before the plan: {e}");
    assert!(!out.exists(), "no output directory for refused input");
}
