//! Sharing built kernels and schedulers between processes and machines: `ktstr cache export` of
//! the shared 6.12 sched_ext kernel and its scx_simple, imported by two processes at once into
//! one fresh cache directory (as two shards on a shared filesystem would), then used by two
//! concurrent resolves and one real run on that directory, which build nothing.

use ktstr_e2e::{ktstr_bin, sched_ext_kernel_args};
use std::path::Path;
use std::process::{Command, Output};

fn ktstr_in(cache: Option<&Path>, args: &[&str]) -> Command {
    let mut c = Command::new(ktstr_bin());
    c.args(args);
    if let Some(dir) = cache {
        c.env("KTSTR_CACHE_DIR", dir);
    }
    c
}

fn ok(what: &str, o: &Output) -> serde_json::Value {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{what}: {:?}\n{stderr}", o.status);
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{what}: {e}\n{}", String::from_utf8_lossy(&o.stdout)))
}

/// `kernel build` of the shared recipe (`--kernel 6.12 --config sched_ext,steal-time`).
fn build_args() -> Vec<&'static str> {
    let mut a = vec!["kernel", "build", "--json"];
    a.extend(
        sched_ext_kernel_args()
            .into_iter()
            .filter(|x| *x != "--kernel"),
    );
    a
}

#[test]
fn two_processes_import_into_one_cache_and_share_it() {
    // The shared kernel (built once for every e2e test, a hit here) and its key.
    let built = ok(
        "kernel build",
        &ktstr_in(None, &build_args()).output().unwrap(),
    );
    let key = built["key"].as_str().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("cache.tar.zst");
    let exported = ok(
        "cache export",
        &ktstr_in(
            None,
            &[
                "cache",
                "export",
                "--json",
                "--kernel",
                &key,
                "--sched",
                "kernel:scx_simple",
                "--out",
                archive.to_str().unwrap(),
            ],
        )
        .output()
        .unwrap(),
    );
    assert_eq!(exported["kernels"][0].as_str(), Some(key.as_str()));
    assert_eq!(exported["scheds"].as_array().map(Vec::len), Some(1));

    // Two importers at once into one fresh cache: the key's lock lets one install it; the other
    // waits and finds it intact.
    let shared = tmp.path().join("shared-cache");
    let a = ktstr_in(Some(&shared), &["cache", "import", "--json"])
        .arg(&archive)
        .spawn_output();
    let b = ktstr_in(Some(&shared), &["cache", "import", "--json"])
        .arg(&archive)
        .spawn_output();
    let (a, b) = (ok("import a", &a.join()), ok("import b", &b.join()));
    let installed: Vec<&str> = [&a, &b]
        .iter()
        .flat_map(|r| r["kernels"].as_array().unwrap())
        .filter_map(|v| v.as_str())
        .collect();
    let present: Vec<&str> = [&a, &b]
        .iter()
        .flat_map(|r| r["already_present"].as_array().unwrap())
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(installed, vec![key.as_str()], "{a}\n{b}");
    assert!(present.contains(&key.as_str()), "{a}\n{b}");

    // Two resolves at once on the shared cache: both hit the imported entry (one learns the
    // source's version under the source tree's lock while the other waits for it).
    let r1 = ktstr_in(Some(&shared), &build_args()).spawn_output();
    let r2 = ktstr_in(Some(&shared), &build_args()).spawn_output();
    for r in [ok("resolve 1", &r1.join()), ok("resolve 2", &r2.join())] {
        assert_eq!(r["key"].as_str(), Some(key.as_str()));
        assert_eq!(r["cache_hit"].as_bool(), Some(true), "{r}");
    }

    // A real cell on the shared cache boots the imported kernel and scheduler, building neither.
    let mut run = vec![
        "run",
        "--sched",
        "kernel:scx_simple",
        "--scenario",
        "steady",
    ];
    run.extend(["--duration", "2s"]);
    run.extend(sched_ext_kernel_args());
    let out = ktstr_e2e::once_more_on_tcg_int3(|| ktstr_in(Some(&shared), &run).output().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stderr}", out.status);
    assert!(
        !shared.join("scheds/logs").exists(),
        "a scheduler was built instead of imported:\n{stderr}"
    );
    let entries: Vec<_> = std::fs::read_dir(shared.join("kernels"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().len() == 64)
        .collect();
    assert_eq!(entries.len(), 1, "one kernel entry, the imported one");
}

/// A spawned child whose output is collected later, so two can run at once.
trait SpawnOutput {
    fn spawn_output(&mut self) -> Running;
}

struct Running(std::process::Child);

impl Running {
    fn join(self) -> Output {
        self.0.wait_with_output().unwrap()
    }
}

impl SpawnOutput for Command {
    fn spawn_output(&mut self) -> Running {
        Running(
            self.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }
}
