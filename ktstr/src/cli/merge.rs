//! `ktstr merge --out DIR SHARD_DIR...`: the outputs of `ktstr matrix --shard` runs combined
//! into one output directory (results.jsonl, merge.json, the console logs of the cells taken)
//! and its reports, rendered as for one machine that ran the whole plan.

use super::bad_input;
use ktstr_matrix::merge::{self, Input, Merged};
use ktstr_matrix::store;
use std::path::{Path, PathBuf};

/// Missing cells named one per line before the rest are only counted.
const LISTED_MISSING: usize = 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the merged run goes (results.jsonl, merge.json, reports, logs/).
    #[arg(long)]
    pub out: PathBuf,
    /// The shards' output directories (each a `ktstr matrix --shard K/N --out` directory; an
    /// earlier merge's output works too).
    #[arg(required = true, value_name = "SHARD_DIR")]
    pub dirs: Vec<PathBuf>,
    /// Baseline column: a kernel, or KERNEL/CONFIGS (default: the spec's).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Minimum relative median change for a regression (0.05 = 5 %).
    #[arg(long, default_value_t = 0.05)]
    pub min_effect: f64,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    super::report::thresholds(args.min_effect)?;
    let mut inputs = Vec::new();
    for dir in &args.dirs {
        let results = dir.join(store::RESULTS_FILE);
        if !results.is_file() {
            return Err(bad_input(format!(
                "{} has no {}: pass the --out directory of each `ktstr matrix --shard` run",
                dir.display(),
                store::RESULTS_FILE
            )));
        }
        let loaded = store::read(&results).map_err(|e| bad_input(e.to_string()))?;
        if let Some(n) = &loaded.notice {
            eprintln!("notice: {n}");
        }
        inputs.push(Input {
            dir: dir.clone(),
            loaded,
        });
    }
    let merge_err = |e: merge::MergeError| {
        if e.is_bad_input() {
            bad_input(e.to_string())
        } else {
            anyhow::Error::new(e)
        }
    };
    merge::check_out(&args.out, &args.dirs).map_err(merge_err)?;
    let origin = super::matrix_shard::origin(None, super::matrix::host_cores());
    let merged = merge::merge(&inputs, Some(origin)).map_err(merge_err)?;
    print_summary(&merged);
    merge::write(&args.out, &merged).map_err(merge_err)?;
    copy_logs(&inputs, &merged, &args.out.join("logs"));
    super::report::render_dir(&args.out, args.baseline.as_deref(), args.min_effect)
}

fn print_summary(m: &Merged) {
    let s = &m.summary;
    for i in &s.inputs {
        eprintln!(
            "merge: {} (shard {}, {} with {} cores): {} cells taken{}",
            i.dir,
            i.shard.map_or("-".to_string(), |s| s.to_string()),
            i.host.as_deref().unwrap_or("unknown host"),
            i.cores.map_or("?".to_string(), |c| c.to_string()),
            i.cells_taken,
            if i.cells_superseded > 0 {
                format!(", {} superseded by newer records", i.cells_superseded)
            } else {
                String::new()
            }
        );
    }
    for n in &s.notices {
        eprintln!("{n}");
    }
    for label in s.missing_cells.iter().take(LISTED_MISSING) {
        eprintln!("  missing: {label}");
    }
    if s.missing_cells.len() > LISTED_MISSING {
        eprintln!(
            "  ... and {} more (all in merge.json)",
            s.missing_cells.len() - LISTED_MISSING
        );
    }
}

/// Each taken cell's console log, from the directory it was taken from (evidence stays with
/// the merged run). A log that cannot be copied is only missing from the merged directory.
fn copy_logs(inputs: &[Input], m: &Merged, logs: &Path) {
    let _ = std::fs::create_dir_all(logs);
    for (cell, from) in m.cells.iter().zip(&m.taken_from) {
        let Some(n) = from else { continue };
        let name = crate::matrix_runner::log_name(&cell.key);
        let src = inputs[*n].dir.join("logs").join(&name);
        if src.is_file() {
            let _ = std::fs::copy(&src, logs.join(&name));
        }
    }
}
