//! `ktstr report DIR` re-renders a run's reports from its results.jsonl; `ktstr report A B`
//! compares two runs (every column of B against the same column of A).

use super::bad_input;
use ktstr_matrix::report::{self, Report, Thresholds};
use ktstr_matrix::{html, render, store};
use std::io::Write;
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
        None => render_dir(&args.dir, args.baseline.as_deref(), args.min_effect),
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
            let t = Thresholds::with_min_effect(args.min_effect);
            let r = report::compare(
                &args.dir.display().to_string(),
                &la,
                &b.display().to_string(),
                &lb,
                &t,
            );
            print!("{}", render::terminal(&r));
            if let Some(out) = &args.out {
                write_outputs(out, &r)?;
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
pub fn render_dir(dir: &Path, baseline: Option<&str>, min_effect: f64) -> anyhow::Result<i32> {
    let loaded =
        store::read(&dir.join(store::RESULTS_FILE)).map_err(|e| bad_input(e.to_string()))?;
    if let Some(b) = baseline
        && ktstr_matrix::plan::resolve_baseline_spec(b, &loaded.run.spec).is_none()
    {
        return Err(bad_input(format!(
            "--baseline {b:?} names no column of this run: use one of its kernels ({}) or KERNEL/CONFIGS",
            loaded.run.spec.kernels.join(", ")
        )));
    }
    let t = Thresholds::with_min_effect(min_effect);
    let r = report::single(&dir.display().to_string(), &loaded, baseline, &t);
    print!("{}", render::terminal(&r));
    write_outputs(dir, &r)?;
    eprintln!(
        "reports: {0}/report.md {0}/report.json {0}/report.html {0}/junit.xml",
        dir.display()
    );
    Ok(exit_code(&r))
}

/// Writes report.md, report.json, report.html and junit.xml, each atomically.
pub fn write_outputs(dir: &Path, r: &Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(r)? + "\n";
    for (name, text) in [
        ("report.md", render::markdown(r)),
        ("report.json", json),
        ("report.html", html::html(r)),
        ("junit.xml", render::junit(r)),
    ] {
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(text.as_bytes())?;
        tmp.persist(dir.join(name))?;
    }
    Ok(())
}
