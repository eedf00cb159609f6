//! `ktstr run`: one cell (kernel x scheduler x scenario x topology), a short table, a JSON result.
//!
//! Everything that can be checked without booting is checked first (kernel image, topology,
//! scenario and parameters, scheduler and included files, QEMU, cache directory); any problem is
//! one line naming the input and the fix, exit code 2, and no VM is started.

use super::bad_input;
use super::vm_args::{VmArgs, announce};
use crate::cell::{self, Cell, SchedulerBinary, Workload};
use crate::sched::{self, ResolvedSched};
use anyhow::Context;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use ktstr_matrix::result::{CellResult, Outcome};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub vm: VmArgs,
    /// Scheduler spec (docs/schedulers.md): eevdf (the default), kernel:scx_simple, scx_rusty[@1.1.4],
    /// cargo:CRATE@VER or a path; arguments after ':', e.g. 'scx_rusty:-u 5000 -v'.
    #[arg(long)]
    pub sched: Option<String>,
    /// Extra argument for the scheduler, appended to the spec's (repeatable).
    #[arg(long = "sched-arg", allow_hyphen_values = true)]
    pub sched_args: Vec<String>,
    /// Scenario from the catalogue.
    #[arg(long, default_value = "smoke")]
    pub scenario: String,
    /// Scenario parameter NAME=VALUE (repeatable; VALUE is JSON, else a string).
    #[arg(long = "param")]
    pub params: Vec<String>,
    /// How long the scenario runs, e.g. 5s, 1500ms, 2m.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Write the JSON CellResult here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Where the kernel console goes (default: console.log in a new run directory under the
    /// cache, `runs/<unix time>-<pid>/`, next to result.json; the newest 100 runs are kept).
    #[arg(long)]
    pub console_log: Option<PathBuf>,
    /// Host watchdog for the whole VM (default: duration + boot allowance + attach timeout).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    // Everything cheap is checked before the kernel is resolved (which may build for minutes);
    // the backend line is printed only once every input has been accepted.
    let checked = args.vm.check_kernel()?;
    let topology = args.vm.topology()?;
    let params = parse_params(&args.params)?;
    ktstr_guest::scenario::validate(&args.scenario, &params)
        .map_err(|e| bad_input(format!("--scenario/--param: {e}")))?;
    super::vm_args::check_json_out(args.json.as_deref())?;
    let files = args.vm.files()?;
    super::vm_args::check_guest_files(&args.scenario, &params, &files)?;
    let brought: Vec<String> = files
        .iter()
        .map(|(host, guest)| crate::initramfs::guest_path_for(host, guest))
        .collect();
    cell::programs::resolve(&args.scenario, &brought)
        .map_err(|e| bad_input(format!("--scenario: {e}")))?;
    if args.sched.is_none() && !args.sched_args.is_empty() {
        return Err(bad_input(
            "--sched-arg given without --sched: name the scheduler",
        ));
    }
    if let Some(spec) = &args.sched {
        let parsed = sched::validate_spec(spec).map_err(sched_err)?;
        if args.scenario == SELFTESTS && parsed.source != sched::Source::Eevdf {
            return Err(bad_input(format!(
                "--sched {spec}: scenario {SELFTESTS} attaches its own BPF schedulers, one per \
                 test; run it without --sched (or with --sched eevdf)"
            )));
        }
    }
    let selected = args.vm.preflight(args.console_log.as_deref())?;
    let resolved_kernel = args.vm.resolve_kernel(checked)?;
    let resolved = match &args.sched {
        None => ResolvedSched::Eevdf,
        Some(spec) => sched::resolve(spec, &resolved_kernel).map_err(sched_err)?,
    };
    let (params, files) = if args.scenario == SELFTESTS {
        match with_selftests(&resolved_kernel, params, files)? {
            Ok(ready) => ready,
            Err(reason) => return skipped(&args, reason),
        }
    } else {
        (params, files)
    };
    announce(&selected);
    let scheduler = match resolved {
        ResolvedSched::Eevdf => None,
        ResolvedSched::Skipped { reason } => return skipped(&args, reason),
        ResolvedSched::Binary { name, path, args } => Some(SchedulerBinary { name, path, args }),
    };
    let cell = cell_of(
        &args,
        resolved_kernel.image,
        scheduler,
        topology,
        params,
        files,
    );
    // Without --console-log, the console and the result go to a per-run directory that is kept.
    let (run_dir, console_log) = console_target(args.console_log.as_deref())?;
    let req = cell
        .request(console_log.clone(), args.timeout)
        .map_err(|e| bad_input(format!("--memory-mib: {e}")))?;
    let result = cell::run_cell(&req, selected.backend.as_ref());
    println!("{}", table(&result, &args, &console_log));
    if result.outcome != Outcome::Pass && !result.console_tail.is_empty() {
        eprintln!(
            "--- console tail ---\n{}",
            crate::vm::console::tail_excerpt(&result.console_tail, 25)
        );
    }
    if let Some(d) = &run_dir {
        write_json(&d.join("result.json"), &result)?;
    }
    if let Some(out) = &args.json {
        write_json(out, &result)?;
    }
    Ok(if result.outcome == Outcome::Pass {
        crate::exit::OK
    } else if crate::cancel::requested() {
        crate::exit::INTERRUPTED
    } else {
        crate::exit::FAILURE
    })
}

/// The cell `ktstr run` asked for; `--sched-arg`s follow the spec's own arguments.
fn cell_of(
    args: &Args,
    kernel: PathBuf,
    mut scheduler: Option<SchedulerBinary>,
    topology: crate::topology::Topology,
    params: BTreeMap<String, serde_json::Value>,
    files: Vec<(PathBuf, String)>,
) -> Cell {
    if let Some(s) = &mut scheduler {
        s.args.extend(args.sched_args.iter().cloned());
    }
    Cell {
        kernel,
        workload: Workload::Scenario {
            scheduler,
            scenario: args.scenario.clone(),
            params,
            duration: args.duration,
        },
        topology,
        memory_mib: args.vm.memory_mib,
        files,
        cpu_budget: args.vm.cpu_budget,
        cmdline_extra: Vec::new(),
    }
}

const SELFTESTS: &str = ktstr_guest::scenario::selftests::NAME;

/// The sched_ext selftests of the resolved kernel (built on a miss) in the cell's files, and the
/// `tests` parameter checked against the runner's own list (an unknown name exits 2 before the
/// boot). `Ok(Err(reason))`: this kernel cannot run them (no sched_ext), a skipped cell.
#[allow(clippy::type_complexity)]
fn with_selftests(
    kernel: &crate::kernel::ResolvedKernel,
    params: BTreeMap<String, serde_json::Value>,
    mut files: Vec<(PathBuf, String)>,
) -> anyhow::Result<Result<(BTreeMap<String, serde_json::Value>, Vec<(PathBuf, String)>), String>> {
    if let Some(reason) = sched::sched_missing_reason(kernel) {
        return Ok(Err(format!("{SELFTESTS}: {reason}")));
    }
    let st = sched::selftests::for_kernel(kernel).map_err(|e| {
        if e.is_bad_input() {
            bad_input(format!("--scenario {SELFTESTS}: {e}"))
        } else {
            anyhow::Error::new(e).context(format!("--scenario {SELFTESTS}"))
        }
    })?;
    let params = st
        .guest_params(&params)
        .map_err(|e| bad_input(format!("--param: {e}")))?;
    files.push(st.initramfs_file());
    Ok(Ok((params, files)))
}

/// Scheduler errors: bad specs and missing host packages exit 2, build failures exit 1.
fn sched_err(e: sched::SchedError) -> anyhow::Error {
    if e.is_bad_input() {
        bad_input(format!("--sched: {e}"))
    } else {
        anyhow::Error::new(e).context("--sched")
    }
}

/// A scheduler this kernel cannot run (no sched_ext): a skipped cell, not a failure.
fn skipped(args: &Args, reason: String) -> anyhow::Result<i32> {
    let result = CellResult::skipped(reason);
    println!("{}", table(&result, args, Path::new("-")));
    if let Some(out) = &args.json {
        write_json(out, &result)?;
    }
    Ok(crate::exit::OK)
}

pub(super) fn parse_params(
    items: &[String],
) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    items
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                bad_input(format!(
                    "--param {kv}: expected NAME=VALUE, e.g. --param workers=4"
                ))
            })?;
            let value =
                serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.into()));
            Ok((k.to_string(), value))
        })
        .collect()
}

/// The duration syntax of every command (`ktstr_matrix::spec::parse_duration`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    ktstr_matrix::spec::parse_duration(s)
}

/// How many per-run directories `runs/` keeps; older ones are removed when a new one is made.
const RUNS_KEPT: usize = 100;

/// A fresh directory for this run's evidence (console log, result), under the cache so that it
/// survives a reboot's /tmp cleanup: `$KTSTR_CACHE_DIR/runs/<unix seconds>-<pid>/`.
pub(crate) fn new_run_dir() -> anyhow::Result<PathBuf> {
    let runs = crate::paths::cache_root().join("runs");
    new_run_dir_in(&runs, RUNS_KEPT)
        .with_context(|| format!("creating a run directory in {}", runs.display()))
}

/// Where the console goes: `--console-log FILE` as given (no run directory), else
/// `console.log` in a new per-run directory (returned too, for the files kept next to it).
pub(crate) fn console_target(
    console_log: Option<&Path>,
) -> anyhow::Result<(Option<PathBuf>, PathBuf)> {
    Ok(match console_log {
        Some(file) => (None, file.to_path_buf()),
        None => {
            let dir = new_run_dir()?;
            let log = dir.join("console.log");
            (Some(dir), log)
        }
    })
}

/// Creates `runs/<secs>-<pid>` and removes the oldest run directories beyond `keep`.
fn new_run_dir_in(runs: &Path, keep: usize) -> std::io::Result<PathBuf> {
    let secs = ktstr_matrix::store::unix_now();
    let dir = runs.join(format!("{secs}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut old: Vec<((u64, u64), PathBuf)> = std::fs::read_dir(runs)?
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name();
            let (t, pid) = name.to_str()?.split_once('-')?;
            Some(((t.parse().ok()?, pid.parse().ok()?), e.path()))
        })
        .collect();
    old.sort();
    let excess = old.len().saturating_sub(keep);
    for (_, p) in old.into_iter().take(excess) {
        if p != dir {
            let _ = std::fs::remove_dir_all(p);
        }
    }
    Ok(dir)
}

pub(crate) fn write_json(out: &Path, result: &CellResult) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(result).expect("CellResult serializes");
    let dir = super::vm_args::parent_dir(out);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| {
        format!(
            "--json {}: cannot write in {}",
            out.display(),
            dir.display()
        )
    })?;
    std::io::Write::write_all(&mut tmp, &json)?;
    tmp.persist(out)
        .with_context(|| format!("--json {}: cannot write", out.display()))?;
    Ok(())
}

fn table(r: &CellResult, args: &Args, console_log: &Path) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    let outcome = format!("{:?}", r.outcome).to_lowercase();
    let mut row = |k: &str, v: String| {
        t.add_row(vec![k.to_string(), v]);
    };
    row("outcome", outcome);
    if let Some(reason) = &r.reason {
        row("reason", reason.clone());
    }
    row(
        "scenario",
        if args.scenario == SELFTESTS {
            // --duration does not apply: each test runs to its end or its timeout_s.
            format!("{SELFTESTS} (each test up to its timeout_s)")
        } else {
            format!("{} for {:.1} s", args.scenario, args.duration.as_secs_f64())
        },
    );
    row(
        "scheduler",
        args.sched.clone().unwrap_or_else(|| "eevdf (none)".into()),
    );
    row("topology", args.vm.topology.clone());
    if let Some(rep) = &r.report {
        row("kernel", rep.kernel.release.clone());
        if let Some(s) = &rep.scheduler {
            row(
                "attached",
                format!("{} ({})", s.attached, s.ops.clone().unwrap_or_default()),
            );
        }
        if let Some(sc) = &rep.scenario {
            // A `command` instance has no work units; its exit status says how it went.
            let (what, field) = if sc.name == ktstr_guest::scenario::COMMAND {
                ("exit", "exit_code")
            } else {
                ("work", "work_units")
            };
            let work: Vec<String> = sc
                .workers
                .iter()
                .map(|w| match w.extra.get(field) {
                    Some(v) => v.to_string(),
                    None => w.work_units.to_string(),
                })
                .collect();
            // A packaged benchmark runs no ktstr workers: no row for them.
            if !sc.workers.is_empty() {
                row(
                    "workers",
                    format!("{}: {what} {}", sc.workers.len(), work.join(" ")),
                );
            }
            let params = parse_params(&args.params).unwrap_or_default();
            for (name, value) in metric_rows(sc, &params) {
                row(&name, value);
            }
            let failed: Vec<&str> = sc
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| c.message.as_str())
                .collect();
            let mut checks = format!(
                "{} ok, {} failed",
                sc.checks.len() - failed.len(),
                failed.len()
            );
            for f in &failed {
                checks.push('\n');
                checks.push_str(f);
            }
            row("checks", checks);
            if !sc.subtests.is_empty() {
                row("tests", subtests_text(&sc.subtests));
            }
        }
    }
    let ms = |v: Option<f64>| {
        v.map(|m| format!("{:.2} s", m / 1000.0))
            .unwrap_or("-".into())
    };
    row(
        "boot",
        format!(
            "agent {} / result {} / wall {:.2} s",
            ms(r.timings.to_agent_ms),
            ms(r.timings.to_result_ms),
            r.timings.wall_ms / 1000.0
        ),
    );
    row("backend", r.backend.clone());
    row("console", console_log.display().to_string());
    t
}

/// A suite's tests: the counts, then each test that did not pass with its output's last line.
fn subtests_text(tests: &[ktstr_guest::protocol::SubResult]) -> String {
    use ktstr_guest::protocol::SubStatus;
    let n = |s: SubStatus| tests.iter().filter(|t| t.status == s).count();
    let mut text = format!(
        "{} ok, {} skip, {} fail",
        n(SubStatus::Ok),
        n(SubStatus::Skip),
        n(SubStatus::Fail)
    );
    for t in tests.iter().filter(|t| t.status != SubStatus::Ok) {
        let last = t
            .output
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("=====") && !l.contains(&t.name))
            .unwrap_or("");
        let status = if t.status == SubStatus::Skip {
            "skip"
        } else {
            "FAIL"
        };
        text.push_str(&format!("\n{status} {}: {last}", t.name));
    }
    text
}

/// The scenario's aggregate metrics, by name (the `--json` and threshold names), in compact
/// units (a `command` metric's from its `unit.NAME` parameter). `workers` is left out: the
/// workers row shows it.
fn metric_rows(
    sc: &ktstr_guest::protocol::ScenarioReport,
    params: &BTreeMap<String, serde_json::Value>,
) -> Vec<(String, String)> {
    sc.metrics
        .iter()
        .filter(|(name, _)| name.as_str() != "workers")
        .map(|(name, &v)| {
            let unit =
                ktstr_guest::scenario::metric_info_with(&sc.name, params, name).map(|m| m.unit);
            (name.clone(), fmt_metric(unit.as_deref(), v))
        })
        .collect()
}

/// Times (catalogue unit `us` or `ms`) in the largest unit that keeps them >= 1; other values
/// (and metrics the catalogue does not know) as integers when whole, else with three decimals.
fn fmt_metric(unit: Option<&str>, v: f64) -> String {
    let secs = match unit {
        Some("us") => Some(v / 1e6),
        Some("ms") => Some(v / 1e3),
        _ => None,
    };
    match secs {
        Some(s) if s.abs() >= 1.0 => format!("{s:.2} s"),
        Some(s) if s.abs() >= 1e-3 => format!("{:.2} ms", s * 1e3),
        Some(s) if s.abs() >= 1e-6 || s == 0.0 => format!("{:.1} µs", s * 1e6),
        Some(s) => format!("{:.0} ns", s * 1e9),
        None if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        None => format!("{v:.3}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ktstr run` and a matrix cell with the same inputs must boot the same request: the same
    /// guest spec (scheduler launch, attach timeout, scenario, params, duration), files, memory
    /// and watchdog.
    #[test]
    fn run_and_matrix_make_the_same_cell_for_the_same_inputs() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let cli = <Cli as clap::Parser>::try_parse_from([
            "ktstr",
            "--kernel",
            "6.12",
            "--config",
            "sched_ext",
            "--sched",
            "kernel:scx_simple",
            "--scenario",
            "wake",
            "--param",
            "pairs=3",
            "--param",
            "mechanism=futex",
            "--duration",
            "3s",
            "--topology",
            "1n2l2c1t",
            "--memory-mib",
            "1024",
        ])
        .unwrap();
        let args = cli.args;
        let sched = SchedulerBinary {
            name: "kernel:scx_simple".into(),
            path: "/cache/scx_simple".into(),
            args: vec![],
        };
        let kernel = PathBuf::from("/cache/k/bzImage");
        let log = PathBuf::from("/out/console.log");
        let from_run = cell_of(
            &args,
            kernel.clone(),
            Some(sched.clone()),
            args.vm.topology().unwrap(),
            parse_params(&args.params).unwrap(),
            args.vm.files().unwrap(),
        )
        .request(log.clone(), args.timeout)
        .unwrap();

        let toml = r#"
            kernels = ["6.12"]
            configs = ["sched_ext"]
            scheds = ["kernel:scx_simple"]
            scenarios = ["wake"]
            topologies = ["1n2l2c1t"]
            duration = "3s"
            repeats = 1
            memory_mib = 1024
            [params.wake]
            pairs = 3
            mechanism = "futex"
        "#;
        let spec = ktstr_matrix::spec::parse_file(toml, "test.toml")
            .unwrap()
            .resolve()
            .unwrap();
        let vcpus =
            ktstr_matrix::plan::validate(&spec, &crate::matrix_runner::KtstrValidator).unwrap();
        let plan = ktstr_matrix::plan::expand(&spec, &vcpus);
        assert_eq!(plan.cells.len(), 1);
        let from_matrix = crate::matrix_runner::cell_of(
            kernel,
            &plan.cells[0],
            Some(sched),
            spec.memory_mib,
            None,
        )
        .unwrap()
        .request(log, None)
        .unwrap();
        assert_eq!(from_run, from_matrix);
        assert_eq!(
            from_run.timeout,
            Duration::from_secs(3 + 60 + 2 * 4) + cell::pipeline::ATTACH_TIMEOUT
        );
    }

    #[test]
    fn a_matrix_spec_gets_the_memory_check_of_run() {
        let toml = r#"
            kernels = ["6.12"]
            scheds = ["eevdf"]
            scenarios = ["steady"]
            topologies = ["1n1l2c1t", "4n1l1c1t"]
            memory_mib = 200
        "#;
        let spec = ktstr_matrix::spec::parse_file(toml, "test.toml")
            .unwrap()
            .resolve()
            .unwrap();
        let errs =
            ktstr_matrix::plan::validate(&spec, &crate::matrix_runner::KtstrValidator).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("4n1l1c1t") && errs[0].contains("256 MiB"),
            "{errs:?}"
        );
    }

    #[test]
    fn run_dirs_are_new_and_the_oldest_beyond_keep_go() {
        let root = tempfile::tempdir().unwrap();
        let runs = root.path().join("runs");
        for name in ["100-7", "200-7", "300-1", "not-a-run"] {
            std::fs::create_dir_all(runs.join(name)).unwrap();
        }
        let dir = new_run_dir_in(&runs, 3).unwrap();
        assert!(dir.is_dir());
        let mut left: Vec<String> = std::fs::read_dir(&runs)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mine = dir.file_name().unwrap().to_str().unwrap().to_string();
        let mut want = vec![
            "200-7".to_string(),
            "300-1".into(),
            "not-a-run".into(),
            mine,
        ];
        want.sort();
        assert_eq!(left, want);
    }

    #[test]
    fn metrics_show_sorted_in_compact_units() {
        let sc = ktstr_guest::protocol::ScenarioReport {
            name: "wake".into(),
            duration_ms: 3000,
            workers: Vec::new(),
            metrics: [
                ("wake_p99_us", 1234.5),
                ("wake_p50_us", 48.25),
                ("wake_max_us", 2_500_000.0),
                ("max_gap_ms", 0.5),
                ("fairness_spread", 0.04321),
                ("total_migrations", 17.0),
                ("clock_resolution_us", 0.001),
                ("workers", 4.0),
                // Not in the catalogue: the name's suffix is not taken for a unit.
                ("mystery_us", 1500.0),
                ("scx_enable_seq", 3.0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            checks: Vec::new(),
            subtests: Vec::new(),
        };
        let rows = metric_rows(&sc, &BTreeMap::new());
        let got: Vec<(&str, &str)> = rows.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("clock_resolution_us", "1 ns"),
                ("fairness_spread", "0.043"),
                ("max_gap_ms", "500.0 µs"),
                ("mystery_us", "1500"),
                ("scx_enable_seq", "3"),
                ("total_migrations", "17"),
                ("wake_max_us", "2.50 s"),
                ("wake_p50_us", "48.2 µs"),
                ("wake_p99_us", "1.23 ms"),
            ]
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5parsecs").is_err());
        // Too long for Duration::from_secs_f64 (it panicked), and absurd anyway.
        assert!(parse_duration("100000000000000000000000s").is_err());
        assert!(parse_duration("1e23s").is_err());
        assert!(parse_duration("8d").is_err());
        assert_eq!(
            parse_duration("168h"),
            Ok(Duration::from_secs(7 * 24 * 3600))
        );
        assert!(parse_duration("169h").is_err());
    }

    #[test]
    fn params_parse_as_json_or_string() {
        let p = parse_params(&["workers=4".into(), "mode=spin".into()]).unwrap();
        assert_eq!(p["workers"], serde_json::json!(4));
        assert_eq!(p["mode"], serde_json::json!("spin"));
        assert!(parse_params(&["nope".into()]).is_err());
    }
}
