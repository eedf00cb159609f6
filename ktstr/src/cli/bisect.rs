//! `ktstr bisect`: find the kernel commit, kernel release or scheduler commit that made a cell
//! worse (see `crate::bisect`).
//!
//! Every input is checked before anything is built: the refs exist and good is an ancestor of
//! bad, the scenario has the metric and it is not a counter, the config fragments, scheduler,
//! topology and memory are valid. Bad input exits 2 naming the input and the fix.

use super::bad_input;
use super::matrix_progress::Progress;
use crate::bisect::candidates::{self, CandidateError};
use crate::bisect::record::{self, BisectReport};
use crate::bisect::step::{CellTemplate, StepContext};
use crate::bisect::{BisectError, Bisection, Goal};
use crate::matrix_runner::{KtstrRunner, KtstrValidator};
use crate::vm::select::{BackendChoice, select};
use anyhow::Context;
use ktstr_guest::scenario::MetricDirection;
use ktstr_matrix::bisect::{Criterion, Worse};
use ktstr_matrix::plan;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("goal").required(true).args(["metric", "outcome"])),
    after_help = "\
Exit codes: 0 the first bad commit was found (or a range, when skipped commits surround it); \
3 no regression between the endpoints; 4 inconclusive (an endpoint cannot be tested, the good \
endpoint fails too, or the culprit was not confirmed); 2 bad input; 130 interrupted (--resume \
continues). OUT/bisect.jsonl has every step as it happened; bisect.md, bisect.json and \
bisect.html the result."
)]
pub struct Args {
    /// The good kernel: git:REPO#REF (REPO a local path or URL); or, when --sched names a
    /// scheduler repository without a ref (NAME@git:REPO), the good ref of that repository.
    #[arg(long, required_unless_present = "kernels", requires = "bad")]
    pub good: Option<String>,
    /// The bad kernel: git:REPO#REF in the same repository, a descendant of --good (or the bad
    /// ref of the scheduler repository).
    #[arg(long, required_unless_present = "kernels", requires = "good")]
    pub bad: Option<String>,
    /// Only the first-parent chain of --bad (a merge is one candidate).
    #[arg(long)]
    pub first_parent: bool,
    /// Bisect an ordered list of kernels instead of commits, good first, bad last: releases
    /// (6.12.107..6.12.118 is every release of that range available here), or any kernel specs,
    /// comma-separated.
    #[arg(long, conflicts_with_all = ["good", "bad", "first_parent"])]
    pub kernels: Option<String>,
    /// Config fragments and CONFIG_X=V items for every candidate (e.g. sched_ext,steal-time).
    #[arg(long = "config", value_delimiter = ',')]
    pub configs: Vec<String>,
    /// Scheduler spec, as in `ktstr run`. NAME@git:REPO without #REF bisects the scheduler's
    /// commits between --good and --bad on the fixed --kernel.
    #[arg(long, default_value = "eevdf")]
    pub sched: String,
    /// The kernel every step boots when the scheduler's commits are bisected.
    #[arg(long, default_value = "6.12", conflicts_with = "kernels")]
    pub kernel: String,
    /// Scenario from the catalogue.
    #[arg(long)]
    pub scenario: String,
    /// Scenario parameter NAME=VALUE (repeatable; VALUE is JSON, else a string).
    #[arg(long = "param")]
    pub params: Vec<String>,
    /// Extra file for the guest, HOST[:GUEST] (repeatable), e.g. the program of the `command`
    /// scenario.
    #[arg(short = 'i', long = "include")]
    pub include: Vec<String>,
    #[arg(long, default_value = "1n1l2c1t")]
    pub topology: String,
    /// Scenario duration per cell: 3s, 500ms, 2m.
    #[arg(long, default_value = "3s")]
    pub duration: String,
    #[arg(long, default_value_t = 512)]
    pub memory_mib: u32,
    /// Bisect this scenario metric (its direction comes from the scenario catalogue; for the
    /// `command` scenario from `--param direction.NAME=higher|lower`).
    #[arg(long)]
    pub metric: Option<String>,
    /// With --metric: the smallest change worth finding, in percent.
    #[arg(long, default_value_t = 5.0)]
    pub threshold: f64,
    /// Bisect outcomes instead: a commit is bad when a cell fails, crashes, times out or the
    /// kernel ejects the scheduler.
    #[arg(long)]
    pub outcome: bool,
    /// Output directory (bisect.jsonl, the step sessions, the reports).
    #[arg(long, default_value = "ktstr-bisect")]
    pub out: PathBuf,
    /// Continue an interrupted bisection in --out.
    #[arg(long)]
    pub resume: bool,
    #[arg(long, value_enum, default_value_t)]
    pub backend: BackendChoice,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let sched_repo = crate::bisect::sched_axis::repository(&args.sched);
    let mut template = template(&args)?;
    let goal = goal(&args)?;
    let files = super::vm_args::includes(&args.include)?;
    super::vm_args::check_guest_files(
        &args.scenario,
        &super::run::parse_params(&args.params)?,
        &files,
    )?;
    // A scheduler bisection checks its cell with the scheduler at the bad ref.
    let probe = match (&sched_repo, &args.bad) {
        (Some(_), Some(bad)) => {
            template.kernel = Some(args.kernel.clone());
            crate::sched::from_source::at_ref(&args.sched, bad)
                .map_err(|e| bad_input(format!("--sched: {e}")))?
        }
        _ => "6.12".to_string(),
    };
    let vcpus =
        plan::validate(&template.cell_spec(&probe, 1), &KtstrValidator).map_err(|errs| {
            bad_input(format!(
                "the bisection names things that do not exist:\n  {}",
                errs.join("\n  ")
            ))
        })?;
    let cands = match (&args.kernels, &args.good, &args.bad) {
        (Some(list), _, _) => {
            let specs = super::matrix::expand_ranges(&ktstr_matrix::spec::split_list(list))?;
            candidates::kernel_list(list, &specs).map_err(candidate_err)?
        }
        (None, Some(good), Some(bad)) if sched_repo.is_some() => {
            crate::bisect::sched_axis::commits(&args.sched, good, bad, args.first_parent, false)
                .map_err(candidate_err)?
        }
        (None, Some(good), Some(bad)) => {
            candidates::commits(good, bad, args.first_parent, false).map_err(candidate_err)?
        }
        _ => return Err(bad_input("give --good and --bad, or --kernels")),
    };
    let good = cands[0].spec.clone();
    let bad = cands[cands.len() - 1].spec.clone();
    let journal = args.out.join(record::JOURNAL_FILE);
    let selected = select(args.backend).map_err(|e| bad_input(e.to_string()))?;
    eprintln!("{}", selected.why);
    eprintln!(
        "bisect: {} candidates between the endpoints; at most ~{} steps without skips",
        cands.len() - 2,
        crate::bisect::log2_ceil(cands.len() - 1)
    );
    let cores = super::matrix::host_cores();
    let runner = KtstrRunner {
        backend: selected.backend,
        logs_dir: args.out.join("logs"),
        cpu_budget: None,
        memory_mib: template.memory_mib,
        build_cores: cores as usize,
        files: files.clone(),
        // One persistent source and O= tree per repository and config: each step syncs only the
        // files its commit changed and makes incrementally, and the next bisection of the same
        // repository starts from a warm O= tree instead of a cold build.
        kernel_opts: crate::kernel::ResolveOptions {
            worktree: (args.kernels.is_none() && sched_repo.is_none())
                .then(|| worktree_for(&good, &args.configs)),
            ..Default::default()
        },
    };
    let progress = Progress::new();
    let cancelled = crate::cancel::requested;
    let cell_vcpus = vcpus.values().copied().max().unwrap_or(1);
    let bisection = Bisection {
        ctx: StepContext {
            runner: &runner,
            template: &template,
            metric: goal.metric(),
            jobs: (cores / cell_vcpus).max(1) as usize,
            cpu_budget: Some(cores),
            subscribers: &[&progress],
            cancelled: &cancelled,
        },
        candidates: cands,
        goal: goal.clone(),
        out: args.out.clone(),
        good,
        bad,
    };
    let report = match bisection.run(args.resume) {
        Ok(r) => r,
        Err(BisectError::Interrupted) => {
            eprintln!(
                "interrupted: {} keeps every finished step; `ktstr bisect ... --resume --out {}` continues",
                journal.display(),
                args.out.display()
            );
            return Ok(crate::exit::INTERRUPTED);
        }
        // Bisection::run checks this before any step builds or boots.
        Err(e @ BisectError::JournalExists { .. }) => return Err(bad_input(e.to_string())),
        Err(e) => return Err(anyhow::Error::new(e).context("bisect")),
    };
    write_reports(&args.out, &report)?;
    println!("{}", report.conclusion.headline());
    eprintln!(
        "bisect: {} commits built beyond the endpoints (ceil(log2 N) = {}); reports in {}",
        report.builds,
        report.log2_bound,
        args.out.display()
    );
    Ok(report.conclusion.exit_code())
}

/// `worktrees/<hash of the repository and the config parts>` in the cache.
fn worktree_for(good: &str, configs: &[String]) -> PathBuf {
    let repo = match crate::kernel::KernelSpec::parse(good) {
        Ok(crate::kernel::KernelSpec::Git { repo, .. }) => repo,
        _ => good.to_string(),
    };
    let name = crate::digest::sha256_hex(format!("{repo}\0{}", configs.join(",")).as_bytes());
    crate::paths::worktrees_dir().join(&name[..16])
}

fn template(args: &Args) -> anyhow::Result<CellTemplate> {
    // Matrix specs hold parameter values as JSON text.
    let params: BTreeMap<String, String> = super::run::parse_params(&args.params)?
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    let duration_ms = ktstr_matrix::spec::parse_duration_ms(&args.duration)
        .map_err(|e| bad_input(format!("--duration: {e}")))?;
    if let Some(host) = crate::host_memory::HostMemory::read() {
        host.check_cell(args.memory_mib)
            .map_err(|e| bad_input(format!("--memory-mib {}: {e}", args.memory_mib)))?;
    }
    Ok(CellTemplate {
        configs: args.configs.clone(),
        sched: args.sched.clone(),
        scenario: args.scenario.clone(),
        params,
        topology: args.topology.clone(),
        duration_ms,
        memory_mib: args.memory_mib,
        kernel: None,
    })
}

fn goal(args: &Args) -> anyhow::Result<Goal> {
    let Some(name) = &args.metric else {
        return Ok(Goal::Outcome);
    };
    if !args.threshold.is_finite() || args.threshold < 0.0 || args.threshold > 1000.0 {
        return Err(bad_input(format!(
            "--threshold {}: give a percentage between 0 and 1000, e.g. 5",
            args.threshold
        )));
    }
    let params = super::run::parse_params(&args.params)?;
    let info = ktstr_guest::scenario::metric_info_with(&args.scenario, &params, name).ok_or_else(
        || {
            let known: Vec<String> = ktstr_guest::scenario::catalogue()
                .into_iter()
                .find(|s| s.name == args.scenario)
                .map(|s| {
                    s.metrics
                        .into_iter()
                        .filter(|m| m.direction != MetricDirection::Counter)
                        .map(|m| m.name)
                        .collect()
                })
                .unwrap_or_default();
            bad_input(format!(
                "--metric {name}: scenario {} has no such metric; use one of: {}",
                args.scenario,
                known.join(", ")
            ))
        },
    )?;
    let worse = match info.direction {
        MetricDirection::HigherIsBetter => Worse::Lower,
        MetricDirection::LowerIsBetter => Worse::Higher,
        MetricDirection::Counter => {
            if args.scenario == ktstr_guest::scenario::COMMAND {
                return Err(bad_input(format!(
                    "--metric {name}: the command's metric has no direction; give --param direction.{name}=higher or lower"
                )));
            }
            return Err(bad_input(format!(
                "--metric {name}: a counter that describes the run, with no better or worse; pick a metric with a direction (docs/scenarios.md)"
            )));
        }
    };
    Ok(Goal::Metric {
        name: name.clone(),
        criterion: Criterion::new(worse, args.threshold / 100.0),
    })
}

fn candidate_err(e: CandidateError) -> anyhow::Error {
    match e {
        CandidateError::History { .. } => anyhow::Error::new(e),
        _ => bad_input(e.to_string()),
    }
}

fn write_reports(out: &Path, r: &BisectReport) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(r)? + "\n";
    for (name, text) in [
        ("bisect.json", json),
        ("bisect.md", record::markdown(r)),
        ("bisect.html", record::html(r)),
    ] {
        let path = out.join(name);
        ktstr_matrix::session::write_atomically(&path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let mut argv = vec![
            "ktstr",
            "--good",
            "git:/src/linux#v6.12",
            "--bad",
            "git:/src/linux#HEAD",
            "--scenario",
            "command",
            "--param",
            "binary=bench",
        ];
        argv.extend(extra);
        <Cli as clap::Parser>::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn a_command_metric_bisects_in_the_users_direction() {
        let g = goal(&args(&[
            "--metric",
            "rps",
            "--param",
            "direction.rps=higher",
        ]))
        .unwrap();
        let Goal::Metric { name, criterion } = g else {
            panic!("a metric goal")
        };
        assert_eq!(name, "rps");
        assert_eq!(criterion, Criterion::new(Worse::Lower, 0.05));
        let g = goal(&args(&[
            "--metric",
            "lat",
            "--param",
            "direction.lat=lower",
        ]))
        .unwrap();
        let Goal::Metric { criterion, .. } = g else {
            panic!("a metric goal")
        };
        assert_eq!(criterion, Criterion::new(Worse::Higher, 0.05));
        let e = goal(&args(&["--metric", "rps"])).unwrap_err().to_string();
        assert!(e.contains("--param direction.rps=higher or lower"), "{e}");
    }
}
