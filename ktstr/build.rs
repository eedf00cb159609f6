//! Builds the guest agent (`ktstr-guest`) as a static binary and embeds it in `ktstr`, so that
//! `cargo install`/`cargo run` of ktstr alone is enough to boot a VM.
//!
//! Why a nested cargo: `+crt-static` breaks proc-macros unless cargo builds with an explicit
//! `--target` (then RUSTFLAGS stop applying to host artifacts). The nested build uses its own
//! target dir under `target/`, so it never contends with the outer build's lock.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let guest_dir = workspace.join("guest");
    println!("cargo:rerun-if-changed={}", guest_dir.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        guest_dir.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.lock").display()
    );
    println!("cargo:rerun-if-env-changed=KTSTR_GUEST_PREBUILT");

    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let embedded = out_dir.join("ktstr-guest");

    // Escape hatch for packagers (e.g. nix) that build the guest separately.
    if let Some(prebuilt) = env::var_os("KTSTR_GUEST_PREBUILT") {
        std::fs::copy(&prebuilt, &embedded).expect("copy KTSTR_GUEST_PREBUILT");
        return;
    }

    let target_dir = guest_target_dir(&out_dir);
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    // Drop the outer build's settings (wrappers, flags, jobserver) so they don't leak in.
    for (key, _) in env::vars() {
        let inherited_setting = (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || key == "RUSTFLAGS"
            || key == "RUSTDOCFLAGS";
        if inherited_setting {
            cmd.env_remove(&key);
        }
    }
    cmd.current_dir(&workspace)
        .args([
            "build",
            "--release",
            "-p",
            "ktstr-guest",
            "--bin",
            "ktstr-guest",
        ])
        .args(["--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .env(
            format!(
                "CARGO_TARGET_{}_RUSTFLAGS",
                TARGET.to_uppercase().replace('-', "_")
            ),
            // Stripped: the agent rides in every initramfs, and a smaller one is less for the
            // kernel to unpack and load before the agent starts, which under TCG is slow.
            "-C target-feature=+crt-static -C strip=symbols -C debuginfo=0",
        );
    let status = cmd.status().expect("spawn cargo for the guest agent");
    assert!(status.success(), "building the static guest agent failed");
    let built = target_dir.join(TARGET).join("release").join("ktstr-guest");
    std::fs::copy(&built, &embedded).expect("copy the built guest agent");
}

/// `target/ktstr-guest-build`, found from OUT_DIR (`target/<profile>/build/ktstr-*/out`).
fn guest_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(|build| build.parent())
        .and_then(|profile| profile.parent())
        .map(|target| target.join("ktstr-guest-build"))
        .unwrap_or_else(|| out_dir.join("guest-build"))
}
