use super::*;
use crate::kernel::cache::{Inputs, Metadata, content_key};
use crate::kernel::configure::normalize;
use crate::kernel::source::Source;
use crate::kernel::spec::ConfigPart;
use std::collections::BTreeMap;
use std::path::Path;

fn dirs(root: &Path) -> CacheDirs {
    CacheDirs {
        kernels: root.join("kernels"),
        scheds: root.join("scheds"),
    }
}

/// A kernel entry as the build installs it, keyed by the content key of what it records.
fn kernel_entry(d: &CacheDirs, spec: &str, fragment: &str, image: &[u8]) -> String {
    let config = format!(
        "# header\nCONFIG_A=y\nCONFIG_{}=y\n",
        fragment.to_uppercase()
    );
    let toolchain = BTreeMap::from([("gcc".to_string(), "12".to_string())]);
    let source = Source {
        kind: "tarball".into(),
        location: "/usr/src/linux.tar.xz".into(),
        reference: None,
        identity: format!("tarball-sha256:{}", "ab".repeat(32)),
        version: Some("6.12.1".into()),
        reproducible: true,
    };
    let key = content_key(&source.identity, &normalize(&config), &toolchain);
    let stage = tempfile::tempdir_in(d.kernels.parent().unwrap()).unwrap();
    std::fs::write(stage.path().join("bzImage"), image).unwrap();
    std::fs::write(stage.path().join("vmlinux"), b"vmlinux").unwrap();
    std::fs::write(stage.path().join("config"), &config).unwrap();
    let inputs = Inputs {
        spec: spec.into(),
        source,
        base_config: None,
        parts: vec![ConfigPart {
            name: fragment.into(),
            text: String::new(),
            items: vec![],
        }],
        toolchain,
        recipe_version: crate::kernel::RECIPE_VERSION,
    };
    let meta = Metadata::new(
        &key,
        &inputs,
        "6.12.1",
        true,
        false,
        Default::default(),
        stage.path(),
    )
    .unwrap();
    std::fs::write(
        stage.path().join("metadata.json"),
        serde_json::to_vec(&meta).unwrap(),
    )
    .unwrap();
    std::fs::create_dir_all(&d.kernels).unwrap();
    std::fs::rename(stage.keep(), d.kernels.join(&key)).unwrap();
    std::fs::create_dir_all(d.kernels.join("index")).unwrap();
    std::fs::write(
        d.kernels
            .join("index")
            .join(format!("{}.json", recipe_of(spec))),
        serde_json::json!({ "key": key }).to_string(),
    )
    .unwrap();
    key
}

/// The recipe index name the helper gives an entry of `spec`.
fn recipe_of(spec: &str) -> String {
    crate::digest::sha256_hex(spec.as_bytes())
}

fn sched_entry(d: &CacheDirs, key: &str, name: &str, body: &[u8]) {
    let bin = d.scheds.join("built");
    std::fs::create_dir_all(&d.scheds).unwrap();
    std::fs::write(&bin, body).unwrap();
    crate::sched::cache::Cache::new(d.scheds.clone())
        .insert(key, name, &bin, "test")
        .unwrap();
}

/// Rewrites the archive with `edit` applied to the bytes of the member named `member`.
fn tamper(archive: &Path, member: &str, edit: impl Fn(&mut Vec<u8>)) {
    let dec = zstd::stream::Decoder::new(std::fs::File::open(archive).unwrap()).unwrap();
    let mut ar = tar::Archive::new(dec);
    let mut members = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if name.ends_with(member) {
            edit(&mut data);
        }
        members.push((name, data));
    }
    let enc = zstd::stream::Encoder::new(std::fs::File::create(archive).unwrap(), 1).unwrap();
    let mut b = tar::Builder::new(enc);
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
}

#[test]
fn export_then_import_moves_chosen_entries_and_they_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let src = dirs(&tmp.path().join("a"));
    std::fs::create_dir_all(&src.kernels).unwrap();
    let k1 = kernel_entry(&src, "6.12", "sched_ext", b"image one");
    let k2 = kernel_entry(&src, "6.6", "other", b"image two");
    sched_entry(&src, "cargo-scx_x@1.0.0", "scx_x", b"\x7fELF x");
    sched_entry(&src, "cargo-scx_y@1.0.0", "scx_y", b"\x7fELF y");
    let archive = tmp.path().join("c.tar.zst");
    let sel = Selection {
        kernels: vec!["6.12/sched_ext".into()],
        scheds: vec!["scx_x".into()],
    };
    let r = export(&src, &sel, &archive).unwrap();
    assert_eq!(r.kernels, vec![k1.clone()]);
    assert_eq!(r.scheds, vec!["cargo-scx_x@1.0.0".to_string()]);

    let dst = dirs(&tmp.path().join("b"));
    let r = import(&dst, &archive).unwrap();
    assert_eq!(r.kernels, vec![k1.clone()]);
    assert_eq!(r.scheds, vec!["cargo-scx_x@1.0.0".to_string()]);
    assert!(import::verify_kernel_dir(&dst.kernels.join(&k1), &k1).is_ok());
    assert!(!dst.kernels.join(&k2).exists());
    // The recipe index came along; the scheduler index points at this cache's store.
    let idx = std::fs::read_to_string(
        dst.kernels
            .join(format!("index/{}.json", recipe_of("6.12"))),
    );
    assert!(idx.unwrap().contains(&k1));
    let s = crate::sched::cache::Cache::new(dst.scheds.clone())
        .lookup("cargo-scx_x@1.0.0")
        .unwrap();
    assert!(s.path.starts_with(&dst.scheds));
    assert_eq!(std::fs::read(&s.path).unwrap(), b"\x7fELF x");
    // Importing again changes nothing.
    let again = import(&dst, &archive).unwrap();
    assert!(again.kernels.is_empty() && again.scheds.is_empty());
    assert_eq!(again.already_present.len(), 2);
    // No staging dir is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&dst.kernels)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".import-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn a_selector_that_matches_nothing_names_itself_and_what_is_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let src = dirs(tmp.path());
    std::fs::create_dir_all(&src.kernels).unwrap();
    kernel_entry(&src, "6.12", "sched_ext", b"i");
    let sel = Selection {
        kernels: vec!["6.13".into()],
        scheds: vec![],
    };
    let e = export(&src, &sel, &tmp.path().join("x.tar.zst")).unwrap_err();
    assert!(e.is_bad_input());
    let msg = e.to_string();
    assert!(
        msg.contains("--kernel 6.13") && msg.contains("6.12/sched_ext"),
        "{msg}"
    );
    assert!(!tmp.path().join("x.tar.zst").exists());
}

#[test]
fn a_tampered_kernel_is_refused_by_name_and_nothing_is_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = dirs(&tmp.path().join("a"));
    std::fs::create_dir_all(&src.kernels).unwrap();
    let k = kernel_entry(&src, "6.12", "sched_ext", b"good image");
    sched_entry(&src, "cargo-scx_x@1.0.0", "scx_x", b"\x7fELF x");
    let archive = tmp.path().join("c.tar.zst");
    export(&src, &Selection::default(), &archive).unwrap();
    tamper(&archive, "/bzImage", |d| d[0] ^= 1);
    let dst = dirs(&tmp.path().join("b"));
    let e = import(&dst, &archive).unwrap_err();
    assert!(e.is_bad_input());
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("kernel {k}")) && msg.contains("bzImage sha256"),
        "{msg}"
    );
    // Verification precedes installation: the intact scheduler was not installed either.
    assert!(!dst.kernels.join(&k).exists());
    assert!(!dst.scheds.join("index").exists());
}

#[test]
fn a_kernel_whose_config_was_swapped_with_its_metadata_is_refused() {
    // Consistent file hashes are not enough: the key must be the hash of config and inputs.
    let tmp = tempfile::tempdir().unwrap();
    let src = dirs(&tmp.path().join("a"));
    std::fs::create_dir_all(&src.kernels).unwrap();
    let k = kernel_entry(&src, "6.12", "sched_ext", b"img");
    let archive = tmp.path().join("c.tar.zst");
    export(&src, &Selection::default(), &archive).unwrap();
    let evil = "CONFIG_EVIL=y\n";
    tamper(&archive, "/config", |d| *d = evil.as_bytes().to_vec());
    tamper(&archive, "/metadata.json", |d| {
        let mut m: serde_json::Value = serde_json::from_slice(d).unwrap();
        m["files"]["config"]["size"] = evil.len().into();
        m["files"]["config"]["sha256"] = crate::digest::sha256_hex(evil.as_bytes()).into();
        *d = serde_json::to_vec(&m).unwrap();
    });
    let msg = import(&dirs(&tmp.path().join("b")), &archive)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&format!("kernel {k}")) && msg.contains("not to its key"),
        "{msg}"
    );
}

#[test]
fn a_tampered_scheduler_binary_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let src = dirs(&tmp.path().join("a"));
    sched_entry(&src, "cargo-scx_x@1.0.0", "scx_x", b"\x7fELF x");
    let archive = tmp.path().join("c.tar.zst");
    export(&src, &Selection::default(), &archive).unwrap();
    tamper(&archive, "/scx_x", |d| d.extend_from_slice(b"backdoor"));
    let msg = import(&dirs(&tmp.path().join("b")), &archive)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("scheduler cargo-scx_x@1.0.0") && msg.contains("sha256"),
        "{msg}"
    );
}

#[test]
fn an_interrupted_archive_leaves_no_half_entry() {
    // A truncated archive stands for a copy or an import cut short: the import fails before
    // anything reaches the cache, and the staging dir is gone.
    let tmp = tempfile::tempdir().unwrap();
    let src = dirs(&tmp.path().join("a"));
    std::fs::create_dir_all(&src.kernels).unwrap();
    let k = kernel_entry(&src, "6.12", "sched_ext", &vec![7u8; 1 << 20]);
    let archive = tmp.path().join("c.tar.zst");
    export(&src, &Selection::default(), &archive).unwrap();
    let bytes = std::fs::read(&archive).unwrap();
    std::fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();
    let dst = dirs(&tmp.path().join("b"));
    let e = import(&dst, &archive).unwrap_err();
    assert!(e.is_bad_input(), "{e}");
    assert!(!dst.kernels.join(&k).exists());
    let names: Vec<_> = std::fs::read_dir(&dst.kernels)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn not_an_archive_is_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("notes.txt");
    std::fs::write(&f, "hello").unwrap();
    let e = import(&dirs(tmp.path()), &f).unwrap_err();
    assert!(e.is_bad_input() && e.to_string().contains("not a ktstr cache archive"));
}

#[test]
fn an_entry_that_is_a_symlink_in_the_archive_is_refused() {
    // kernels/<key> as a link to an intact entry elsewhere on the importing machine: verifying it
    // would pass, and installing it would move that directory into the cache.
    let tmp = tempfile::tempdir().unwrap();
    let elsewhere = dirs(&tmp.path().join("elsewhere"));
    std::fs::create_dir_all(&elsewhere.kernels).unwrap();
    let k = kernel_entry(&elsewhere, "6.12", "sched_ext", b"img");
    let archive = tmp.path().join("evil.tar.zst");
    let enc = zstd::stream::Encoder::new(std::fs::File::create(&archive).unwrap(), 1).unwrap();
    let mut b = tar::Builder::new(enc);
    let manifest = serde_json::json!({
        "format": FORMAT, "ktstr_version": "x", "kernels": [k], "scheds": []
    })
    .to_string();
    let mut h = tar::Header::new_gnu();
    h.set_size(manifest.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "ktstr-cache/manifest.json", manifest.as_bytes())
        .unwrap();
    let mut l = tar::Header::new_gnu();
    l.set_entry_type(tar::EntryType::Symlink);
    l.set_size(0);
    l.set_mode(0o777);
    b.append_link(
        &mut l,
        format!("ktstr-cache/kernels/{k}"),
        elsewhere.kernels.join(&k),
    )
    .unwrap();
    b.into_inner().unwrap().finish().unwrap();
    let dst = dirs(&tmp.path().join("b"));
    let e = import(&dst, &archive).unwrap_err().to_string();
    assert!(
        e.contains(&format!("kernel {k}")) && e.contains("symlink"),
        "{e}"
    );
    assert!(elsewhere.kernels.join(&k).join("bzImage").is_file());
    assert!(!dst.kernels.join(&k).exists());
}
