//! Command line (clap derive). One file per subcommand; each exposes `Args` and
//! `run(args) -> anyhow::Result<i32>` returning the process exit code (see `crate::exit`).
//! Errors marked with [`BadInput`] exit with `exit::USAGE`, others with `exit::FAILURE`.

mod bench;
mod bisect;
mod cache;
mod completions;
pub mod kernel;
mod matrix;
mod matrix_emit;
mod matrix_progress;
mod matrix_shard;
mod merge;
mod ranges;
mod report;
mod report_history;
mod run;
mod shell;
mod view;
pub mod vm_args;

use clap::{Parser, Subcommand};
use std::fmt;

#[derive(Debug, Parser)]
#[command(
    name = "ktstr",
    version,
    about = "Boot kernels x sched_ext schedulers x scenarios in VMs and report regressions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot a kernel into a busybox shell, or run one command in the guest and exit with its status.
    Shell(shell::Args),
    /// Run one cell (kernel x scheduler x scenario x topology) and print its result.
    Run(run::Args),
    /// Build, list and garbage-collect cached kernels.
    #[command(subcommand)]
    Kernel(kernel::Command),
    /// Move kernel and scheduler cache entries between machines as one verified archive.
    #[command(subcommand)]
    Cache(cache::Command),
    /// Run a kernels x configs x schedulers x scenarios x topologies matrix and report.
    Matrix(matrix::Args),
    /// Find the kernel commit that made a cell worse (a metric, or its outcome).
    Bisect(bisect::Args),
    /// Re-render a report from results.jsonl, compare two runs, or show the history of 3+ runs.
    Report(report::Args),
    /// Combine the outputs of `ktstr matrix --shard K/N` runs into one run and its reports.
    Merge(merge::Args),
    /// Benchmarks whose figures go in docs/benchmarks.md (runs `ktstr-bench`).
    ///
    /// `ktstr-bench` is built with `cargo build --release -p ktstr-testbed`.
    Bench(bench::Args),
    /// Print a shell completion script (bash, zsh, fish) generated from these definitions.
    Completions(completions::CompletionsArgs),
    /// Print the manual page, or write one per subcommand with --out DIR.
    Man(completions::ManArgs),
    /// Inside the nested harness's L1 only: pin kvm.ko's APIC static key (see `nested_l1`).
    #[command(name = "nested-l1-hold", hide = true)]
    NestedL1Hold,
}

/// Marks an error as bad input (exit code 2): the message names the input and the fix.
#[derive(Debug)]
pub struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for BadInput {}

/// Shorthand: `return Err(bad_input(format!(...)))`.
pub fn bad_input(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(msg.into()))
}

/// A session's bad input exits 2 with its message; its faults exit 1.
pub(crate) fn session_err(e: ktstr_matrix::session::SessionError) -> anyhow::Error {
    if e.is_bad_input() {
        bad_input(e.to_string())
    } else {
        anyhow::Error::new(e)
    }
}

/// True if any error in the chain is a [`BadInput`].
pub fn is_bad_input(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<BadInput>().is_some())
}

pub fn main() -> i32 {
    crate::cancel::install_handler();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                crate::exit::USAGE
            } else {
                crate::exit::OK
            };
        }
    };
    let result = match cli.command {
        Command::Shell(a) => shell::run(a),
        Command::Run(a) => run::run(a),
        Command::Kernel(c) => kernel::run(c),
        Command::Cache(c) => cache::run(c),
        Command::Matrix(a) => matrix::run(a),
        Command::Report(a) => report::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Bisect(a) => bisect::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Completions(a) => completions::completions(a),
        Command::Man(a) => completions::man(a),
        Command::NestedL1Hold => crate::nested_l1::hold_apic_keys()
            .map(|never| match never {})
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(code) => code,
        // Whatever step Ctrl-C stopped (a build, a download, a wait), it ends as an interruption.
        Err(err) if crate::cancel::requested() => {
            eprintln!("interrupted: {err:#}");
            crate::exit::INTERRUPTED
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            if is_bad_input(&err) {
                crate::exit::USAGE
            } else {
                crate::exit::FAILURE
            }
        }
    }
}
