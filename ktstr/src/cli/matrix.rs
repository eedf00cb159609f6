//! `ktstr matrix`: spec (matrix.toml and/or flags, else the embedded default) -> validate every
//! name -> plan -> a [`Session`] in the output directory (build each kernel / scheduler /
//! initramfs once, run the cells in parallel VMs under a CPU budget, results.jsonl) -> report.

use super::bad_input;
use super::matrix_progress::Progress;
use super::matrix_shard;
use crate::matrix_runner::{KtstrRunner, KtstrValidator};
use crate::vm::select::{BackendChoice, select};
use ktstr_matrix::engine::{self, CellRunner, RunOptions};
use ktstr_matrix::plan;
use ktstr_matrix::session::Session;
use ktstr_matrix::shard::Shard;
use ktstr_matrix::spec::{self, SpecFile};
use std::path::PathBuf;

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
    /// Print the job definition that runs this matrix as --shards shards on an engine (slurm,
    /// k8s, github, buildkite) and a merge after them; runs nothing.
    #[arg(long, value_name = "ENGINE", requires = "shards")]
    pub emit: Option<String>,
    /// With --emit: how many shards the job runs.
    #[arg(long, value_name = "N", requires = "emit")]
    pub shards: Option<u32>,
    /// Kernel specs, comma-separated (6.12 = the newest 6.12.y to be had, 6.12.117, a range
    /// 6.12.107..6.12.118 of the releases available, path:DIR, git:REPO#REF, image:FILE).
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
    /// Extra file for every cell's guest, HOST[:GUEST] (repeatable), e.g. the program of the
    /// `command` scenario.
    #[arg(short = 'i', long = "include")]
    pub include: Vec<String>,
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
    #[command(flatten)]
    pub view: super::view::ViewArgs,
    /// Run only shard K of N (1-based, e.g. 2/5). Without it, a job engine's variables say
    /// (SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX + KTSTR_SHARD_COUNT, BUILDKITE_PARALLEL_JOB);
    /// given both, they must agree. Default --out: ktstr-out/shard-K-of-N.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Build or fetch every kernel, scheduler and initramfs the plan (or the shard) needs into
    /// the caches, then stop: no cell runs, the output directory is not touched.
    #[arg(long, conflicts_with_all = ["dry_run", "resume"])]
    pub build_only: bool,
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

/// Spec from the file (or the embedded default) overlaid with the flags, and the output
/// directory (`ktstr-out`, or `ktstr-out/shard-K-of-N` for a shard, when neither names one).
pub fn load_spec(args: &Args, shard: Option<Shard>) -> anyhow::Result<(spec::MatrixSpec, PathBuf)> {
    let base = match &args.file {
        Some(path) => {
            // A FIFO would block the read until someone writes to it.
            if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
                return Err(bad_input(format!(
                    "--file {}: not a regular file; give a matrix.toml",
                    path.display()
                )));
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| bad_input(format!("--file {}: {e}", path.display())))?;
            spec::parse_file(&text, &path.display().to_string())
                .map_err(|e| bad_input(e.to_string()))?
        }
        None => spec::default_file(),
    };
    let merged = base.overlay(args.spec_file()?);
    let out = merged.out.clone().unwrap_or_else(|| match shard {
        Some(s) => PathBuf::from(format!("ktstr-out/shard-{}-of-{}", s.index, s.count)),
        None => PathBuf::from("ktstr-out"),
    });
    let mut spec = merged.resolve().map_err(|e| bad_input(e.to_string()))?;
    spec.kernels = expand_ranges(&spec.kernels)?;
    Ok((spec, out))
}

/// Release ranges (`6.12.107..6.12.118`) become the releases available here, each said aloud.
pub fn expand_ranges(kernels: &[String]) -> anyhow::Result<Vec<String>> {
    let (expanded, notes) = crate::kernel::releases::expand_list(kernels, false)
        .map_err(|e| bad_input(e.to_string()))?;
    for n in notes {
        eprintln!("kernels: {n}");
    }
    Ok(expanded)
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    if args.emit.is_some() {
        return super::matrix_emit::run(&args);
    }
    let shard = matrix_shard::resolve(args.shard.as_deref())?;
    let (spec, out) = load_spec(&args, shard)?;
    // Checked before anything is built, though only the report uses it.
    super::report::thresholds(args.min_effect)?;
    let vcpus = plan::validate(&spec, &KtstrValidator).map_err(|errs| {
        bad_input(format!(
            "the matrix names things that do not exist:\n  {}",
            errs.join("\n  ")
        ))
    })?;
    let host_memory = crate::host_memory::HostMemory::read();
    check_host_memory(&args, spec.memory_mib, host_memory)?;
    let files = super::vm_args::includes(&args.include)?;
    for s in &spec.scenarios {
        let params = crate::matrix_runner::json_params(&s.params);
        super::vm_args::check_guest_files(&s.name, &params, &files)?;
    }
    let cores = host_cores();
    // A dry run and a build only do not write results: the output directory is neither claimed
    // nor checked.
    let session = if args.dry_run || args.build_only {
        None
    } else {
        let s = Session::open(&out, args.resume).map_err(super::session_err)?;
        Some(s.with_origin(matrix_shard::origin(shard, cores)))
    };
    if let Some(n) = session.as_ref().and_then(Session::notice) {
        eprintln!("notice: {n}");
    }
    let whole = plan::expand(&spec, &vcpus);
    if let Some(s) = shard {
        matrix_shard::print_loads(&whole, s);
    }
    let plan = match shard {
        Some(s) => ktstr_matrix::shard::select(&whole, s),
        None => whole,
    };
    let budget = (!spec.overcommit).then_some(cores);
    // Building boots nothing, so a build host needs neither QEMU nor /dev/kvm.
    let backend = if args.build_only {
        Box::new(matrix_shard::NoVm)
    } else {
        let selected = select(args.backend).map_err(|e| bad_input(e.to_string()))?;
        eprintln!("{}", selected.why);
        selected.backend
    };
    let runner = KtstrRunner {
        backend,
        logs_dir: out.join("logs"),
        cpu_budget: None,
        memory_mib: spec.memory_mib,
        build_cores: cores as usize,
        files: files.clone(),
        kernel_opts: Default::default(),
    };
    print_plan(&runner, &plan, shard, cores, budget);
    if let Some(m) = host_memory {
        eprintln!(
            "  memory budget: {} MiB of guest memory in flight ({} MiB per cell; MemAvailable {} MiB minus {} MiB headroom)",
            m.guest_budget_mib(),
            spec.memory_mib,
            m.available_mib,
            m.headroom_mib()
        );
    }
    if args.build_only {
        return matrix_shard::build_only(&runner, &plan);
    }
    let Some(session) = session else {
        return Ok(crate::exit::OK);
    };
    let progress = Progress::new();
    let opts = RunOptions {
        jobs: spec.jobs.unwrap_or(cores as usize),
        cpu_budget: budget,
        memory_budget_mib: host_memory.map(|m| m.guest_budget_mib()),
        done_ids: Default::default(),
        ktstr_version: env!("CARGO_PKG_VERSION").into(),
    };
    let cancelled = crate::cancel::requested;
    let ran = session
        .run(&runner, &plan, opts, &[&progress], &cancelled)
        .map_err(super::session_err)?;
    if ran.summary.is_none() {
        return Ok(crate::exit::INTERRUPTED);
    }
    let code =
        super::report::render_dir(&out, spec.baseline.as_deref(), args.min_effect, &args.view)?;
    if ran.cancelled {
        eprintln!(
            "interrupted: {} stored; `ktstr matrix --resume{} --out {}` continues",
            session.results_path().display(),
            shard.map_or(String::new(), |s| format!(" --shard {s}")),
            out.display()
        );
        return Ok(crate::exit::INTERRUPTED);
    }
    Ok(code)
}

/// `memory_mib` against what this host can give one guest, before anything is built.
fn check_host_memory(
    args: &Args,
    mib: u32,
    host: Option<crate::host_memory::HostMemory>,
) -> anyhow::Result<()> {
    let Some(host) = host else { return Ok(()) };
    host.check_cell(mib).map_err(|e| {
        let origin = args.file.as_ref().map_or_else(
            || "the default matrix".to_string(),
            |f| format!("--file {}", f.display()),
        );
        bad_input(format!("memory_mib = {mib} ({origin}): {e}"))
    })
}

fn print_plan<R: CellRunner>(
    runner: &R,
    plan: &plan::Plan,
    shard: Option<Shard>,
    cores: u32,
    budget: Option<u32>,
) {
    let artifacts = runner.survey(plan);
    let s = &plan.spec;
    let which = shard.map_or(String::new(), |k| {
        format!(" (shard {k}: {} of the cells below)", plan.cells.len())
    });
    let whole = s.kernels.len()
        * s.configs.len()
        * s.scheds.len()
        * s.scenarios.len()
        * s.topologies.len()
        * s.repeats as usize;
    eprintln!(
        "plan{which}: {whole} cells = {} kernel(s) x {} config set(s) x {} scheduler(s) x {} scenario(s) x {} topolog(y/ies) x {} repeat(s), {} ms each",
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
