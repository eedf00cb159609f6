//! `ktstr report R1 R2 R3 ...`: the history of three or more runs ([`ktstr_matrix::history`]).

use super::bad_input;
use super::report::{Args, thresholds};
use anyhow::Context;
use ktstr_matrix::history::{self, RunInput};
use ktstr_matrix::{history_render, store};

/// How the runs of a history are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunOrder {
    /// As given on the command line (the default).
    Given,
    /// By each run record's start time (ties keep the command-line order).
    Time,
}

/// `--sort` and `--alpha` only mean something for a history: refuse them for one or two runs
/// rather than ignore them.
pub fn refuse_history_options(args: &Args) -> anyhow::Result<()> {
    let given = |set: bool, flag: &str| {
        if set {
            Err(bad_input(format!(
                "{flag} applies to a history: give 3 or more run directories (given {})",
                1 + args.others.len()
            )))
        } else {
            Ok(())
        }
    };
    given(args.sort.is_some(), "--sort")?;
    given(args.alpha.is_some(), "--alpha")
}

/// Validates every option and reads every store before any work; renders; exit 1 when a series
/// got worse at a change point.
pub fn run(args: &Args) -> anyhow::Result<i32> {
    if args.baseline.is_some() {
        return Err(bad_input(
            "--baseline applies to one run; a history compares each cell with itself across runs",
        ));
    }
    let min_effect = thresholds(args.min_effect)?.min_effect;
    let alpha = args.alpha.unwrap_or(0.05);
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(bad_input(format!(
            "--alpha {alpha}: give a significance level between 0 and 1, e.g. 0.05"
        )));
    }
    let dirs: Vec<_> = std::iter::once(&args.dir).chain(&args.others).collect();
    let mut loaded = Vec::with_capacity(dirs.len());
    for d in &dirs {
        let l = store::read(&d.join(store::RESULTS_FILE)).map_err(|e| bad_input(e.to_string()))?;
        loaded.push((d.display().to_string(), l));
    }
    if args.sort == Some(RunOrder::Time) {
        // A stable sort: runs started in the same second keep the order given.
        loaded.sort_by_key(|(_, l)| l.run.started_at);
    }
    let inputs: Vec<RunInput> = loaded
        .iter()
        .map(|(dir, l)| RunInput {
            dir: dir.clone(),
            loaded: l,
        })
        .collect();
    let h = history::history(&inputs, alpha, min_effect);
    print!("{}", history_render::terminal(&h, args.view.options()));
    if let Some(out) = &args.out {
        history_render::write(out, &h)
            .with_context(|| format!("writing the history into {}", out.display()))?;
        eprintln!(
            "history: {}",
            history::HISTORY_FILES
                .iter()
                .map(|f| out.join(f).display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(if h.worse() {
        crate::exit::FAILURE
    } else {
        crate::exit::OK
    })
}
