//! `ktstr report DIR` re-renders a run's reports from its results.jsonl; `ktstr report A B`
//! compares two runs (every column of B against the same column of A); `ktstr report R1 R2 R3
//! ...` shows each cell's metrics across the runs with change points ([`super::report_history`]).

use super::bad_input;
use super::view::ViewArgs;
use anyhow::Context;
use ktstr_matrix::report::{self, Report, Thresholds};
use ktstr_matrix::{render, session, store};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A `ktstr matrix` output directory (with results.jsonl).
    pub dir: PathBuf,
    /// A second run to compare with the first; with three or more runs in all, their history
    /// (each cell's metrics across the runs, in the order given, with change points).
    pub others: Vec<PathBuf>,
    /// Baseline column (single run only): a kernel, or KERNEL/CONFIGS.
    #[arg(long)]
    pub baseline: Option<String>,
    /// Where to write the comparison's or the history's files (default: print only).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Order of the runs in a history: as given on the command line, or by each run's start.
    #[arg(long, value_enum)]
    pub sort: Option<super::report_history::RunOrder>,
    /// Significance level of the history's change-point test.
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Minimum relative median change for a regression or a history's change point (0.05 = 5 %).
    #[arg(long, default_value_t = 0.05)]
    pub min_effect: f64,
    #[command(flatten)]
    pub view: ViewArgs,
}

fn check_dir(d: &Path) -> anyhow::Result<()> {
    if !d.join(store::RESULTS_FILE).is_file() {
        return Err(bad_input(format!(
            "{} has no {}: pass the --out directory of a `ktstr matrix` run",
            d.display(),
            store::RESULTS_FILE
        )));
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    check_dir(&args.dir)?;
    for d in &args.others {
        check_dir(d)?;
    }
    if args.others.len() >= 2 {
        return super::report_history::run(&args);
    }
    super::report_history::refuse_history_options(&args)?;
    match args.others.first() {
        None => render_dir(
            &args.dir,
            args.baseline.as_deref(),
            args.min_effect,
            &args.view,
        ),
        Some(b) => {
            if args.baseline.is_some() {
                return Err(bad_input(
                    "--baseline applies to one run; comparing A B always uses A's columns as the baseline",
                ));
            }
            let load = |d: &Path| {
                store::read(&d.join(store::RESULTS_FILE)).map_err(|e| bad_input(e.to_string()))
            };
            let (la, lb) = (load(&args.dir)?, load(b)?);
            let t = thresholds(args.min_effect)?;
            let r = report::compare(
                &args.dir.display().to_string(),
                &la,
                &b.display().to_string(),
                &lb,
                &t,
            );
            print!("{}", render::terminal_with(&r, args.view.options()));
            if let Some(out) = &args.out {
                session::write_reports(out, &r)
                    .with_context(|| format!("writing the reports into {}", out.display()))?;
            }
            Ok(exit_code(&r))
        }
    }
}

pub fn exit_code(r: &Report) -> i32 {
    if r.summary.failed() {
        crate::exit::FAILURE
    } else {
        crate::exit::OK
    }
}

/// Reads DIR/results.jsonl, writes the report files into DIR, prints the terminal table; returns
/// the exit code (0 all pass, 1 a failure or regression).
pub fn render_dir(
    dir: &Path,
    baseline: Option<&str>,
    min_effect: f64,
    view: &ViewArgs,
) -> anyhow::Result<i32> {
    let t = thresholds(min_effect)?;
    let r = session::render(dir, baseline, &t).map_err(super::session_err)?;
    print!("{}", render::terminal_with(&r, view.options()));
    eprintln!(
        "reports: {}",
        session::REPORT_FILES
            .iter()
            .map(|f| dir.join(f).display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(exit_code(&r))
}

/// `--min-effect`: NaN or a negative effect would silently disable regression detection.
pub(crate) fn thresholds(min_effect: f64) -> anyhow::Result<Thresholds> {
    super::ranges::min_effect(min_effect)?;
    Ok(Thresholds::with_min_effect(min_effect))
}
