//! `ktstr bench ...`: the benchmarks are test bed, not product (the `ktstr-testbed` crate), so
//! this only hands the arguments to its `ktstr-bench` binary. ktstr does not depend on the test
//! bed; the two meet as executables, found next to each other (`target/<profile>/`).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

/// The benchmarks' binary; `ktstr bench X ...` runs `ktstr-bench X ...`.
pub const BENCH_BIN: &str = "ktstr-bench";

#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    /// `boot`, `vmm`, `cache` or `matrix` and their arguments (`ktstr bench --help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

/// Replaces this process with `ktstr-bench ARGS`, so its exit status and its handling of Ctrl-C
/// are the command's own. Returns only if it cannot be started.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let Some(bin) = crate::paths::companion_binary(BENCH_BIN) else {
        return Err(super::bad_input(format!(
            "`ktstr bench` runs {BENCH_BIN}, which is neither next to this ktstr nor on PATH: \
             build it with `cargo build --release -p ktstr-testbed` (it lands next to \
             target/release/ktstr)"
        )));
    };
    // argv[0] names the command as the user typed it, so clap's usage lines read `ktstr bench`.
    let err = std::process::Command::new(&bin)
        .arg0("ktstr bench")
        .args(&args.args)
        .exec();
    Err(anyhow::Error::new(err).context(format!("running {}", bin.display())))
}
