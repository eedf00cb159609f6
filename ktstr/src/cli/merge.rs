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
    /// earlier merge's output works too), or a directory holding them (e.g. the artifacts of
    /// every shard downloaded into one place): its subdirectories with results are taken.
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
    let dirs = run_dirs(&args.dirs, &args.out)?;
    let mut inputs = Vec::new();
    for dir in &dirs {
        let results = dir.join(store::RESULTS_FILE);
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
    merge::check_out(&args.out, &dirs).map_err(merge_err)?;
    let origin = super::matrix_shard::origin(None, super::matrix::host_cores());
    let merged = merge::merge(&inputs, Some(origin)).map_err(merge_err)?;
    print_summary(&merged);
    merge::write(&args.out, &merged).map_err(merge_err)?;
    copy_logs(&inputs, &merged, &args.out.join("logs"));
    super::report::render_dir(&args.out, args.baseline.as_deref(), args.min_effect)
}

/// The run directories named: each one with results, or else its subdirectories with results
/// (in name order; `out` itself left out, so the merge can live next to the shards).
fn run_dirs(given: &[PathBuf], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let has_results = |d: &Path| d.join(store::RESULTS_FILE).is_file();
    let mut dirs = Vec::new();
    for dir in given {
        if has_results(dir) {
            dirs.push(dir.clone());
            continue;
        }
        let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        subdirs.retain(|d| has_results(d) && !same_dir(d, out));
        subdirs.sort();
        if subdirs.is_empty() {
            return Err(bad_input(format!(
                "{} has no {} (nor subdirectories with one): pass the --out directory of each \
                 `ktstr matrix --shard` run, or the directory holding them",
                dir.display(),
                store::RESULTS_FILE
            )));
        }
        dirs.extend(subdirs);
    }
    Ok(dirs)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parent_directory_stands_for_its_run_subdirectories() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for d in ["shard-2", "shard-1", "merged", "notes"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
            if d != "notes" {
                std::fs::write(root.join(d).join(store::RESULTS_FILE), "").unwrap();
            }
        }
        let got = run_dirs(&[root.to_path_buf()], &root.join("merged")).unwrap();
        assert_eq!(got, vec![root.join("shard-1"), root.join("shard-2")]);
        let direct = run_dirs(&[root.join("shard-2")], &root.join("merged")).unwrap();
        assert_eq!(direct, vec![root.join("shard-2")]);
        let e = run_dirs(&[root.join("notes")], &root.join("merged")).unwrap_err();
        assert!(super::super::is_bad_input(&e));
        assert!(e.to_string().contains("notes"), "{e}");
    }
}
