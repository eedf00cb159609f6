use super::*;
use yaml_rust2::{Yaml, YamlLoader};

fn job() -> Job {
    Job {
        shards: 3,
        matrix_args: vec![
            "--kernels".into(),
            "6.12".into(),
            "--scheds".into(),
            "eevdf,kernel:scx_simple".into(),
            "--param".into(),
            // Quotes, a dollar and a colon-space must reach ktstr as written.
            "steady.note=it's $HOME: ok".into(),
        ],
        cpus: 2,
    }
}

fn docs(text: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("not valid YAML: {e}\n{text}"))
}

/// The `run`/`command` texts of a YAML tree, concatenated.
fn all_strings(y: &Yaml, out: &mut String) {
    match y {
        Yaml::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Yaml::Array(a) => a.iter().for_each(|v| all_strings(v, out)),
        Yaml::Hash(h) => h.values().for_each(|v| all_strings(v, out)),
        _ => {}
    }
}

#[test]
fn engines_parse_and_an_unknown_one_lists_them() {
    assert_eq!("slurm".parse::<Engine>().unwrap(), Engine::Slurm);
    assert_eq!("kubernetes".parse::<Engine>().unwrap(), Engine::K8s);
    let e = "nomad".parse::<Engine>().unwrap_err().to_string();
    assert!(e.contains("--emit nomad"), "{e}");
    for name in ["slurm", "k8s", "github", "buildkite"] {
        assert!(e.contains(name), "{e}");
    }
}

#[test]
fn kubernetes_is_an_indexed_job_with_kvm_and_per_index_retries_and_a_merge() {
    let text = render(Engine::K8s, &job());
    let docs = docs(&text);
    let shards = docs
        .iter()
        .find(|d| d["metadata"]["name"].as_str() == Some("ktstr-shards"))
        .expect("the shards Job");
    let spec = &shards["spec"];
    assert_eq!(shards["kind"].as_str(), Some("Job"));
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    assert_eq!(spec["completions"].as_i64(), Some(3));
    assert!(
        spec["backoffLimitPerIndex"]
            .as_i64()
            .is_some_and(|b| b >= 1)
    );
    let pod = &spec["template"]["spec"];
    let kvm = pod["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|v| v["hostPath"]["path"].as_str() == Some("/dev/kvm"))
        .expect("a /dev/kvm hostPath volume");
    assert_eq!(kvm["hostPath"]["type"].as_str(), Some("CharDevice"));
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["privileged"].as_bool(), Some(true));
    let count = c["env"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some("KTSTR_SHARD_COUNT"))
        .expect("the shard count beside JOB_COMPLETION_INDEX");
    assert_eq!(count["value"].as_str(), Some("3"));
    let cmd = c["command"][2].as_str().unwrap();
    assert!(
        cmd.contains("JOB_COMPLETION_INDEX") && cmd.contains("--resume"),
        "{cmd}"
    );
    let quoted = shlex::try_quote("steady.note=it's $HOME: ok").unwrap();
    assert!(cmd.contains(quoted.as_ref()), "{cmd}");
    let merge = docs
        .iter()
        .find(|d| d["metadata"]["name"].as_str() == Some("ktstr-merge"))
        .expect("the merge Job");
    let m = merge["spec"]["template"]["spec"]["containers"][0]["command"][2]
        .as_str()
        .unwrap();
    for k in 1..=3 {
        assert!(m.contains(&format!("/results/shard-{k}-of-3")), "{m}");
    }
}

#[test]
fn github_has_a_shard_matrix_artifacts_per_shard_merged_with_merge_multiple_and_kvm() {
    let text = render(Engine::Github, &job());
    let wf = &docs(&text)[0];
    let jobs = &wf["jobs"];
    let shard = &jobs["shard"];
    let list: Vec<i64> = shard["strategy"]["matrix"]["shard"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_i64)
        .collect();
    assert_eq!(list, vec![1, 2, 3]);
    assert_eq!(shard["strategy"]["fail-fast"].as_bool(), Some(false));
    let steps = shard["steps"].as_vec().unwrap();
    let upload = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact"))
        })
        .expect("an upload per shard");
    assert_eq!(
        upload["with"]["name"].as_str(),
        Some("ktstr-shard-${{ matrix.shard }}")
    );
    let mut shard_text = String::new();
    all_strings(shard, &mut shard_text);
    assert!(
        shard_text.contains(r#"KERNEL=="kvm""#) && shard_text.contains("udevadm trigger"),
        "{shard_text}"
    );
    assert!(
        shard_text.contains("--shard ${{ matrix.shard }}/3"),
        "{shard_text}"
    );
    let merge = &jobs["merge"];
    assert_eq!(merge["if"].as_str(), Some("always()"));
    let download = merge["steps"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|s| s["with"]["merge-multiple"].as_bool() == Some(true))
        .expect("a download with merge-multiple");
    assert_eq!(download["with"]["pattern"].as_str(), Some("ktstr-shard-*"));
}

#[test]
fn buildkite_runs_the_shards_with_parallelism_and_merges_after_failures() {
    let text = render(Engine::Buildkite, &job());
    let steps = docs(&text)[0]["steps"].as_vec().unwrap().clone();
    let shards = steps
        .iter()
        .find(|s| s["key"].as_str() == Some("shards"))
        .unwrap();
    assert_eq!(shards["parallelism"].as_i64(), Some(3));
    // `$$` so that Buildkite's upload-time interpolation leaves the shell its `$`.
    let cmd = shards["command"].as_str().unwrap();
    assert!(cmd.contains("$$((BUILDKITE_PARALLEL_JOB + 1))"), "{cmd}");
    assert!(cmd.contains("$$HOME"), "{cmd}");
    let merge = steps.last().unwrap();
    assert_eq!(
        merge["depends_on"][0]["allow_failure"].as_bool(),
        Some(true)
    );
}

#[test]
fn slurm_submits_an_array_and_an_afterany_merge_and_keeps_arguments_intact() {
    let text = render(Engine::Slurm, &job());
    assert!(text.contains("sbatch --parsable --array=1-3 "), "{text}");
    assert!(text.contains("--dependency=afterany:"), "{text}");
    assert!(!text.contains("afterok"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("submit.sh");
    std::fs::write(&script, &text).unwrap();
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(syntax.status.success(), "{:?}", syntax);
    // The orchestration under test is the script's own: a stand-in `sbatch` records its
    // arguments and prints a job id, so the written batch scripts can be read back.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = dir.path().join("sbatch.log");
    std::fs::write(
        bin.join("sbatch"),
        format!("#!/bin/sh\necho \"$@\" >> {}\necho 42\n", log.display()),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["+x"])
        .arg(bin.join("sbatch"))
        .status()
        .unwrap();
    // A stand-in `ktstr` prints the arguments it got, one per line.
    let fake_ktstr = bin.join("ktstr");
    std::fs::write(&fake_ktstr, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&fake_ktstr)
        .status()
        .unwrap();
    let out = dir.path().join("out");
    let ran = std::process::Command::new("bash")
        .arg(&script)
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("KTSTR", &fake_ktstr)
        .env("KTSTR_OUT", &out)
        .output()
        .unwrap();
    assert!(ran.status.success(), "{ran:?}");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(calls.contains("--array=1-3"), "{calls}");
    assert!(calls.contains("--dependency=afterany:42"), "{calls}");
    // The shard script as a resubmitted shard runs it (no array variables): ktstr gets the
    // arguments exactly, the shard, --resume and the shard's own directory.
    let shard = std::process::Command::new("bash")
        .arg(out.join("ktstr-shard.sbatch"))
        .env("KTSTR_SHARD_INDEX", "2")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .output()
        .unwrap();
    assert!(shard.status.success(), "{shard:?}");
    let got: Vec<String> = String::from_utf8(shard.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let mut want = vec!["matrix".to_string()];
    want.extend(job().matrix_args);
    want.extend(["--shard", "2/3", "--resume", "--out"].map(String::from));
    want.push(format!("{}/shard-2-of-3", out.display()));
    assert_eq!(got, want);
    // The merge takes the shards that stored results and names the one that did not.
    for k in [1, 3] {
        let d = out.join(format!("shard-{k}-of-3"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("results.jsonl"), "").unwrap();
    }
    let merge = std::process::Command::new("bash")
        .arg(out.join("ktstr-merge.sbatch"))
        .output()
        .unwrap();
    assert!(merge.status.success(), "{merge:?}");
    let got: Vec<String> = String::from_utf8(merge.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let dir = |k: u32| format!("{}/shard-{k}-of-3", out.display());
    let want = ["merge", "--out"].map(String::from).to_vec();
    let want = [
        want,
        vec![format!("{}/merged", out.display()), dir(1), dir(3)],
    ]
    .concat();
    assert_eq!(got, want);
    let stderr = String::from_utf8_lossy(&merge.stderr);
    assert!(
        stderr.contains(&format!("{} has no results.jsonl", dir(2))),
        "{stderr}"
    );
}
