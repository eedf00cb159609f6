//! Kernel config text: `.config`/fragment lines and inline `--config` items. No input panics,
//! an accepted line survives a trip through the `.config` spelling (the line ktstr writes into
//! the kernel's .config), and that spelling is exactly one line.
#![no_main]

use ktstr::kernel::configure::{normalize, parse_values};
use ktstr::kernel::spec::{effective_items, parse_config_line, parse_configs};
use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A fragments directory with two real-looking fragments, made once per process.
fn fragments() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("base"), "CONFIG_SERIAL_8250=y\n").expect("write base");
        std::fs::write(dir.path().join("sched_ext"), "CONFIG_SCHED_CLASS_EXT=y\n")
            .expect("write fragment");
        let path = dir.path().to_path_buf();
        (dir, path)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = normalize(text);
    let values = parse_values(text);
    for line in text.lines() {
        let Ok(Some(item)) = parse_config_line(line, "fuzz") else {
            continue;
        };
        assert!(values.contains_key(&item.name));
        let written = item.config_line();
        assert_eq!(written.lines().count(), 1, "{written:?} is not one line");
        let again = parse_config_line(&written, "fuzz")
            .expect("a written line parses")
            .expect("a written line is an item");
        assert_eq!(again, item, "{written:?}");
    }
    if let Ok(parts) = parse_configs(&[text.to_string()], fragments()) {
        for item in effective_items(&parts) {
            assert_eq!(item.config_line().lines().count(), 1, "{item:?}");
        }
    }
});
