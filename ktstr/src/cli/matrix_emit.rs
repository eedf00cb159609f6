//! `ktstr matrix --emit ENGINE --shards N`: prints the job definition (`job_templates`) for the
//! spec given by the other flags, after checking the spec as a run would.

use super::bad_input;
use super::matrix::{Args, load_spec};
use crate::job_templates::{self, Engine, Job};
use crate::matrix_runner::KtstrValidator;
use ktstr_matrix::plan;

pub fn run(args: &Args) -> anyhow::Result<i32> {
    let engine: Engine = args
        .emit
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e: job_templates::UnknownEngine| bad_input(e.to_string()))?;
    let shards = match args.shards {
        Some(n) if (1..=ktstr_matrix::shard::MAX_SHARDS).contains(&n) => n,
        _ => {
            return Err(bad_input(format!(
                "--shards: give the number of shards, 1 to {}",
                ktstr_matrix::shard::MAX_SHARDS
            )));
        }
    };
    for (flag, given) in [
        ("--out", args.out.is_some()),
        ("--resume", args.resume),
        ("--dry-run", args.dry_run),
        ("--shard", args.shard.is_some()),
        ("--build-only", args.build_only),
    ] {
        if given {
            return Err(bad_input(format!(
                "{flag} with --emit: the job sets each shard's output directory, shard and \
                 resumption itself (and builds in its own step); drop {flag}"
            )));
        }
    }
    let (spec, _) = load_spec(args, None)?;
    let vcpus = plan::validate(&spec, &KtstrValidator).map_err(|errs| {
        bad_input(format!(
            "the matrix names things that do not exist:\n  {}",
            errs.join("\n  ")
        ))
    })?;
    let job = Job {
        shards,
        matrix_args: passthrough(args),
        cpus: vcpus.values().copied().max().unwrap_or(1),
    };
    print!("{}", job_templates::render(engine, &job));
    Ok(crate::exit::OK)
}

/// The flags that make the spec, as given (a shard must plan exactly the same cells).
fn passthrough(a: &Args) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    let mut push = |flag: &str, value: Option<String>| {
        if let Some(value) = value {
            v.push(flag.to_string());
            v.push(value);
        }
    };
    push("--file", a.file.as_ref().map(|p| p.display().to_string()));
    push("--kernels", a.kernels.clone());
    push("--configs", a.configs.clone());
    push("--scheds", a.scheds.clone());
    push("--scenarios", a.scenarios.clone());
    for p in &a.params {
        push("--param", Some(p.clone()));
    }
    push("--topologies", a.topologies.clone());
    push("--repeats", a.repeats.map(|r| r.to_string()));
    push("--duration", a.duration.clone());
    push("--jobs", a.jobs.map(|j| j.to_string()));
    push("--baseline", a.baseline.clone());
    if a.backend != Default::default() {
        let name = clap::ValueEnum::to_possible_value(&a.backend).map(|p| p.get_name().to_string());
        push("--backend", name);
    }
    if a.min_effect != 0.05 {
        push("--min-effect", Some(a.min_effect.to_string()));
    }
    if a.overcommit {
        v.push("--overcommit".into());
    }
    v
}
