//! `ktstr report DIR` re-renders a run's reports from its results.jsonl; `ktstr report A B`
//! compares two runs (every column of B against the same column of A).

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
    /// A second run to compare with the first.
    pub other: Option<PathBuf>,
    /// Baseline column (single run only): a kernel, or KERNEL/CONFIGS.
    #[arg(long)]
    pub baseline: Option<String>,
    /// Where to write the comparison's files (compare mode; default: print only).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Minimum relative median change for a regression (0.05 = 5 %).
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
    if let Some(b) = &args.other {
        check_dir(b)?;
    }
    match &args.other {
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
