//! `ktstr matrix`: spec (matrix.toml and/or flags, else the embedded default) -> validate every
//! name -> plan -> build each kernel / scheduler / initramfs once -> run the cells in parallel VMs
//! under a CPU budget -> results.jsonl -> report.

use super::bad_input;
use crate::matrix_runner::{KtstrRunner, KtstrValidator};
use crate::vm::select::{BackendChoice, select};
use anyhow::Context;
use ktstr_matrix::engine::{self, CellRunner, Event, RunOptions, StoreSubscriber, Subscriber};
use ktstr_matrix::plan;
use ktstr_matrix::result::Outcome;
use ktstr_matrix::spec::{self, SpecFile};
use ktstr_matrix::store::{self, Record, RunRecord, STORE_FORMAT_VERSION, Writer};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
With no arguments, runs the repo's default matrix (matrix/default-matrix.toml: a 6.12 sched_ext \
kernel, eevdf and kernel:scx_simple, the steady scenario on 2 CPUs, 3 repeats). Flags override \
--file field by field.

--configs: a comma separates config sets (one kernel build and report column each); `+` joins \
fragments within a set: `--configs sched_ext,sched_ext+steal-time` is two columns per kernel.")]
pub struct Args {
    /// A matrix.toml; flags override its fields.
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Kernel specs, comma-separated (6.12, 6.12.117, path:DIR, git:REPO#REF, image:FILE).
    #[arg(long)]
    pub kernels: Option<String>,
    /// Config sets, comma-separated; `+` joins fragments within a set.
    #[arg(long)]
    pub configs: Option<String>,
    /// Schedulers, comma-separated (eevdf, kernel:scx_simple, scx_rusty, ...).
    #[arg(long)]
    pub scheds: Option<String>,
    /// Scenarios, comma-separated (see `ktstr run --list`).
    #[arg(long)]
    pub scenarios: Option<String>,
    /// Scenario parameter, SCENARIO.KEY=VALUE (repeatable).
    #[arg(long = "param")]
    pub params: Vec<String>,
    /// Topologies NnNlNcNt, comma-separated.
    #[arg(long)]
    pub topologies: Option<String>,
    #[arg(long)]
    pub repeats: Option<u32>,
    /// Scenario duration per cell: 5s, 500ms, 2m.
    #[arg(long)]
    pub duration: Option<String>,
    /// Cells in flight at most (default: host cores); the CPU budget applies as well.
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Output directory (results.jsonl, reports, console logs). Default: ktstr-out.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Let the sum of vCPUs in flight exceed the host's cores.
    #[arg(long)]
    pub overcommit: bool,
    /// Baseline column: a kernel from --kernels, or KERNEL/CONFIGS (default: the first kernel).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Continue an interrupted run in --out: finished cells are not run again.
    #[arg(long)]
    pub resume: bool,
    #[arg(long, value_enum, default_value_t)]
    pub backend: BackendChoice,
    /// Print the plan and stop (validates names; builds nothing).
    #[arg(long)]
    pub dry_run: bool,
    /// Minimum relative median change for a regression (0.05 = 5 %).
    #[arg(long, default_value_t = 0.05)]
    pub min_effect: f64,
}

impl Args {
    fn spec_file(&self) -> anyhow::Result<SpecFile> {
        let mut params: std::collections::BTreeMap<String, toml::Table> = Default::default();
        for p in &self.params {
            let (scen, key, value) = spec::parse_param_flag(p).map_err(bad_input)?;
            params.entry(scen).or_default().insert(key, value);
        }
        Ok(SpecFile {
            kernels: self.kernels.as_deref().map(spec::split_list),
            configs: self.configs.as_deref().map(spec::parse_configs_flag),
            scheds: self.scheds.as_deref().map(spec::split_list),
            scenarios: self.scenarios.as_deref().map(|s| {
                spec::split_list(s)
                    .into_iter()
                    .map(|name| {
                        spec::ScenarioToml(spec::ScenarioSel {
                            name,
                            params: Default::default(),
                        })
                    })
                    .collect()
            }),
            topologies: self.topologies.as_deref().map(spec::split_list),
            repeats: self.repeats,
            duration: self.duration.clone(),
            jobs: self.jobs,
            overcommit: self.overcommit.then_some(true),
            baseline: self.baseline.clone(),
            memory_mib: None,
            params: (!params.is_empty()).then_some(params),
            out: self.out.clone(),
        })
    }
}

pub fn host_cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// Spec from the file (or the embedded default) overlaid with the flags.
pub fn load_spec(args: &Args) -> anyhow::Result<(spec::MatrixSpec, PathBuf)> {
    let base = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| bad_input(format!("--file {}: {e}", path.display())))?;
            spec::parse_file(&text, &path.display().to_string())
                .map_err(|e| bad_input(e.to_string()))?
        }
        None => spec::default_file(),
    };
    let merged = base.overlay(args.spec_file()?);
    let out = merged
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("ktstr-out"));
    let spec = merged.resolve().map_err(|e| bad_input(e.to_string()))?;
    Ok((spec, out))
}

/// Terminal progress: a line per finished cell and an overall bar.
struct Progress {
    bar: indicatif::ProgressBar,
    failed: Mutex<usize>,
}

impl Progress {
    fn new() -> Self {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "[{elapsed_precise}] {bar:30} {pos}/{len} cells {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Progress {
            bar,
            failed: Mutex::new(0),
        }
    }
}

impl Progress {
    /// indicatif draws nothing when stderr is not a terminal (CI logs); the per-cell lines must
    /// still appear there.
    fn line(&self, s: String) {
        if self.bar.is_hidden() {
            eprintln!("{s}");
        } else {
            self.bar.println(s);
        }
    }
}

impl Subscriber for Progress {
    fn on_event(&self, ev: &Event) {
        match ev {
            Event::Prepare(s) => self.line(format!("prepare: {s}")),
            Event::Start { total, resumed } => {
                self.bar.set_length(*total as u64);
                self.bar.set_position(*resumed as u64);
                if *resumed > 0 {
                    self.line(format!("resume: {resumed} of {total} cells already done"));
                }
            }
            Event::CellStarted { .. } => {}
            Event::CellFinished {
                record,
                elapsed,
                done,
                total,
            } => {
                let r = &record.result;
                let outcome = format!("{:?}", r.outcome).to_lowercase();
                if !matches!(r.outcome, Outcome::Pass | Outcome::Skipped) {
                    *self.failed.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                }
                let reason = r
                    .reason
                    .as_deref()
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default();
                self.line(format!(
                    "[{done}/{total}] {outcome:<7} {} ({:.1} s){reason}",
                    record.key.label(),
                    elapsed.as_secs_f64()
                ));
                self.bar.set_position(*done as u64);
                let f = *self.failed.lock().unwrap_or_else(|p| p.into_inner());
                self.bar.set_message(if f > 0 {
                    format!("{f} not passed")
                } else {
                    String::new()
                });
            }
            Event::Cancelled => self.line(
                "interrupted: no new cells start; run again with --resume to continue".into(),
            ),
            Event::Finished { wall } => {
                self.bar.finish_and_clear();
                eprintln!("ran in {:.1} s", wall.as_secs_f64());
            }
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let (spec, out) = load_spec(&args)?;
    let vcpus = plan::validate(&spec, &KtstrValidator).map_err(|errs| {
        bad_input(format!(
            "the matrix names things that do not exist:\n  {}",
            errs.join("\n  ")
        ))
    })?;
    let results = out.join(store::RESULTS_FILE);
    if results.exists() && !args.resume && !args.dry_run {
        return Err(bad_input(format!(
            "{} exists: pass --resume to continue that run, or choose another --out",
            results.display()
        )));
    }
    let done_ids: HashSet<String> = if args.resume && results.exists() {
        let loaded = store::read(&results).map_err(|e| bad_input(e.to_string()))?;
        if let Some(n) = &loaded.notice {
            eprintln!("notice: {n}");
        }
        loaded.cells.iter().map(|c| c.id.clone()).collect()
    } else {
        HashSet::new()
    };
    let plan = plan::expand(&spec, &vcpus);
    let cores = host_cores();
    let budget = (!spec.overcommit).then_some(cores);
    let selected = select(args.backend).map_err(|e| bad_input(e.to_string()))?;
    eprintln!("{}", selected.why);
    let runner = KtstrRunner {
        backend: selected.backend,
        logs_dir: out.join("logs"),
        cpu_budget: None,
        memory_mib: spec.memory_mib,
        build_cores: cores as usize,
    };
    print_plan(&runner, &plan, cores, budget);
    if args.dry_run {
        return Ok(crate::exit::OK);
    }
    let emit = |ev: Event| {
        if let Event::Prepare(s) = ev {
            eprintln!("prepare: {s}");
        }
    };
    let prepared = runner.prepare(&plan, &emit).map_err(bad_input)?;
    if crate::cancel::requested() {
        return Ok(crate::exit::INTERRUPTED);
    }
    let writer = Writer::open(&out).map_err(|e| anyhow::anyhow!(e))?;
    writer
        .append(&Record::Run(Box::new(RunRecord {
            format_version: STORE_FORMAT_VERSION,
            ktstr_version: env!("CARGO_PKG_VERSION").into(),
            spec: spec.clone(),
            columns: plan.columns.clone(),
            started_at: store::unix_now(),
        })))
        .context("writing results.jsonl")?;
    let store_sub = StoreSubscriber {
        writer,
        error: Mutex::new(None),
    };
    let progress = Progress::new();
    let opts = RunOptions {
        jobs: spec.jobs.unwrap_or(cores as usize),
        cpu_budget: budget,
        done_ids,
        ktstr_version: env!("CARGO_PKG_VERSION").into(),
    };
    let cancelled = crate::cancel::requested;
    let summary = engine::run(
        &runner,
        &prepared,
        &plan,
        &opts,
        &[&store_sub, &progress],
        &cancelled,
    );
    if let Some(e) = store_sub
        .error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        anyhow::bail!("results were not all stored: {e}");
    }
    let code = super::report::render_dir(&out, spec.baseline.as_deref(), args.min_effect)?;
    if summary.cancelled {
        eprintln!(
            "interrupted: {} stored; `ktstr matrix --resume --out {}` continues",
            results.display(),
            out.display()
        );
        return Ok(crate::exit::INTERRUPTED);
    }
    Ok(code)
}

fn print_plan<R: CellRunner>(runner: &R, plan: &plan::Plan, cores: u32, budget: Option<u32>) {
    let artifacts = runner.survey(plan);
    let s = &plan.spec;
    eprintln!(
        "plan: {} cells = {} kernel(s) x {} config set(s) x {} scheduler(s) x {} scenario(s) x {} topolog(y/ies) x {} repeat(s), {} ms each",
        plan.cells.len(),
        s.kernels.len(),
        s.configs.len(),
        s.scheds.len(),
        s.scenarios.len(),
        s.topologies.len(),
        s.repeats,
        s.duration_ms
    );
    for a in &artifacts {
        eprintln!(
            "  {:<9} {:<40} {}",
            a.kind,
            a.name,
            if a.cached {
                "cached".to_string()
            } else {
                format!("to build (~{} s)", a.estimate.as_secs())
            }
        );
    }
    let est = engine::estimate(runner, plan, &artifacts, budget.unwrap_or(cores));
    eprintln!(
        "  CPU budget: {} vCPUs in flight on {cores} host cores; estimate ~{} min",
        budget.map_or("unlimited (--overcommit)".to_string(), |b| b.to_string()),
        est.as_secs().div_ceil(60)
    );
}
