use super::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;

fn facts(version: &str, sched_ext: bool, config_known: bool) -> KernelFacts {
    KernelFacts {
        version: version.into(),
        sched_ext,
        config_known,
        key: Some("k1".into()),
        vmlinux: None,
        source_tree: Box::new(|| Err("no tree in this test".into())),
    }
}

#[test]
fn unknown_names_suggest_close_ones_and_are_bad_input() {
    let e = validate_spec("scx_rustyy").unwrap_err();
    assert!(e.is_bad_input());
    let msg = e.to_string();
    assert!(msg.contains("did you mean scx_rusty"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    let e = validate_spec("kernel:scx_simpel").unwrap_err();
    assert!(
        e.to_string().contains("did you mean kernel:scx_simple"),
        "{e}"
    );
    // A name that is not a known crate is unknown even with a version (use cargo:NAME@V).
    assert!(matches!(
        validate_spec("scx_nope@1.0.0"),
        Err(SchedError::Unknown { .. })
    ));
    assert!(validate_spec("cargo:scx_nope@1.0.0").is_ok());
    assert!(validate_spec("scx_rusty@1.1.4:--slice-us=5000").is_ok());
    assert!(validate_spec("kernel:scx_qmap:-e 5").is_ok());
}

#[test]
fn a_binary_on_path_is_a_valid_name() {
    // `true` is on every PATH; an unknown name that resolves on PATH is the user's own binary.
    assert!(validate_spec("true").is_ok());
}

#[test]
fn paths_must_be_elf_executables() {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("sched.sh");
    fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let e = validate_spec(script.to_str().unwrap()).unwrap_err();
    assert!(
        matches!(e, SchedError::NotExecutable { .. }) && e.to_string().contains("not an ELF"),
        "{e}"
    );

    let noexec = tmp.path().join("noexec");
    fs::copy("/bin/true", &noexec).unwrap();
    fs::set_permissions(&noexec, fs::Permissions::from_mode(0o644)).unwrap();
    let e = validate_spec(noexec.to_str().unwrap()).unwrap_err();
    assert!(e.to_string().contains("chmod +x"), "{e}");

    let missing = tmp.path().join("missing");
    assert!(
        validate_spec(missing.to_str().unwrap())
            .unwrap_err()
            .is_bad_input()
    );

    assert!(validate_spec("/bin/true").is_ok());
    assert!(validate_spec("/bin/true:--whatever").is_ok());
}

#[test]
fn a_shared_library_is_not_an_executable() {
    let lib = [
        "/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.exists())
    .expect("zlib1g is a build prerequisite");
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("libz.so");
    fs::copy(lib, &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    let e = check_elf_executable(&copy).unwrap_err();
    assert!(e.to_string().contains("shared library"), "{e}");
}

#[test]
fn skips_kernels_without_sched_ext_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = cache::Cache::new(tmp.path().to_path_buf());
    let r = resolve_in(&cache, "scx_rusty", &facts("6.1.158", false, false)).unwrap();
    let ResolvedSched::Skipped { reason } = r else {
        panic!("{r:?}")
    };
    assert!(reason.contains("predates sched_ext"), "{reason}");
    let r = resolve_in(&cache, "kernel:scx_simple", &facts("6.12.117", false, true)).unwrap();
    let ResolvedSched::Skipped { reason } = r else {
        panic!("{r:?}")
    };
    assert!(
        reason.contains("CONFIG_SCHED_CLASS_EXT") && reason.contains("kernel:scx_simple"),
        "{reason}"
    );
    // eevdf runs everywhere.
    assert_eq!(
        resolve_in(&cache, "eevdf", &facts("6.1.158", false, true)).unwrap(),
        ResolvedSched::Eevdf
    );
    // Bad input is reported even where the cell would be skipped.
    assert!(resolve_in(&cache, "scx_rustyy", &facts("6.1.158", false, true)).is_err());
    // Nothing was built for any of it.
    assert!(!tmp.path().join("index").exists());
}

#[test]
fn a_path_resolves_to_itself_with_args() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = cache::Cache::new(tmp.path().to_path_buf());
    let r = resolve_in(&cache, "/bin/true:-a 'b c'", &facts("6.12.117", true, true)).unwrap();
    assert_eq!(
        r,
        ResolvedSched::Binary {
            name: "true".into(),
            path: fs::canonicalize("/bin/true").unwrap(),
            args: vec!["-a".into(), "b c".into()],
        }
    );
}

/// A stand-in kernel tree whose tools/sched_ext/Makefile "builds" the four schedulers by copying
/// /bin/true and counts its runs: checks the make invocation (O=, VMLINUX_BTF=, CLANG=), the
/// per-kernel cache, and that a second resolve builds nothing.
#[test]
fn kernel_tools_build_once_per_kernel_key() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("linux");
    let dir = tree.join("tools/sched_ext");
    fs::create_dir_all(&dir).unwrap();
    let count = tmp.path().join("runs");
    let makefile = format!(
        "all:\n\nscx_simple scx_qmap scx_central scx_flatcg:\n\
         \ttest -f $(VMLINUX_BTF) && $(CLANG) --version >/dev/null\n\
         \tmkdir -p $(O)/build/bin && cp /bin/true $(O)/build/bin/$@\n\
         \techo $@ >> {}\n",
        count.display()
    );
    fs::write(dir.join("Makefile"), makefile).unwrap();
    let vmlinux = tmp.path().join("vmlinux");
    fs::write(&vmlinux, b"btf").unwrap();
    let cache = cache::Cache::new(tmp.path().join("scheds"));
    let tree2 = tree.clone();
    let mut k = facts("6.12.117", true, true);
    k.vmlinux = Some(vmlinux);
    k.source_tree = Box::new(move || Ok(tree2.clone()));

    let ResolvedSched::Binary { name, path, args } =
        resolve_in(&cache, "kernel:scx_qmap:-e 5", &k).unwrap()
    else {
        panic!()
    };
    assert_eq!(name, "kernel:scx_qmap");
    assert_eq!(args, ["-e", "5"]);
    assert!(path.starts_with(tmp.path().join("scheds/store")) && path.ends_with("scx_qmap"));
    assert_eq!(fs::read_to_string(&count).unwrap().lines().count(), 4);
    // All four came from one make; another tool of the same kernel is a cache hit.
    let r = resolve_in(&cache, "kernel:scx_simple", &k).unwrap();
    assert!(matches!(r, ResolvedSched::Binary { .. }));
    assert_eq!(
        fs::read_to_string(&count).unwrap().lines().count(),
        4,
        "rebuilt on a hit"
    );
    // The build directory is removed; only the store keeps the binaries.
    assert!(!tmp.path().join("scheds/kernel/k1").exists());
    // Another kernel key builds again.
    k.key = Some("k2".into());
    resolve_in(&cache, "kernel:scx_simple", &k).unwrap();
    assert_eq!(fs::read_to_string(&count).unwrap().lines().count(), 8);
}

#[test]
fn kernel_tools_need_a_vmlinux_and_a_tree_with_tools_sched_ext() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = cache::Cache::new(tmp.path().to_path_buf());
    let k = facts("6.12.117", true, true);
    let e = resolve_in(&cache, "kernel:scx_simple", &k).unwrap_err();
    assert!(e.to_string().contains("no vmlinux"), "{e}");
    let mut k = facts("6.12.117", true, true);
    let vmlinux = tmp.path().join("vmlinux");
    fs::write(&vmlinux, b"x").unwrap();
    k.vmlinux = Some(vmlinux);
    let empty = tmp.path().to_path_buf();
    k.source_tree = Box::new(move || Ok(empty.clone()));
    let e = resolve_in(&cache, "kernel:scx_simple", &k).unwrap_err();
    assert!(e.to_string().contains("no tools/sched_ext"), "{e}");
}

/// Debian's prebuilt image: no .config in the kernel cache, but `boot/config-R` beside
/// `boot/vmlinuz-R` says there is no sched_ext, so sched_ext cells are skipped, not attempted.
#[test]
fn a_distro_image_config_beside_it_decides_sched_ext() {
    let tmp = tempfile::tempdir().unwrap();
    let boot = tmp.path().join("boot");
    fs::create_dir_all(&boot).unwrap();
    let image = boot.join("vmlinuz-6.12.117+deb13-cloud-amd64");
    fs::write(&image, b"not booted here").unwrap();
    let k = crate::kernel::ResolvedKernel {
        image: image.clone(),
        vmlinux: None,
        config: None,
        key: None,
        version: "6.12.117".into(),
        sched_ext: false,
        cache_hit: false,
    };
    // Without the config file nothing is known: not skipped.
    assert!(sched_ext_missing(&KernelFacts::of(&k)).is_none());
    fs::write(
        boot.join("config-6.12.117+deb13-cloud-amd64"),
        "CONFIG_BPF=y\n# CONFIG_SCHED_CLASS_EXT is not set\n",
    )
    .unwrap();
    let why = sched_ext_missing(&KernelFacts::of(&k)).expect("known: no sched_ext");
    assert!(why.contains("CONFIG_SCHED_CLASS_EXT"), "{why}");
    fs::write(
        boot.join("config-6.12.117+deb13-cloud-amd64"),
        "CONFIG_SCHED_CLASS_EXT=y\n",
    )
    .unwrap();
    assert!(sched_ext_missing(&KernelFacts::of(&k)).is_none());
}
