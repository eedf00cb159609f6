//! `ktstr-bench`: the benchmarks whose figures go in docs/benchmarks.md. `ktstr bench X ...` runs
//! this binary with `X ...`; exit codes are ktstr's (`ktstr::exit`).

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "ktstr-bench",
    version,
    about = "Benchmarks whose figures go in docs/benchmarks.md"
)]
struct Cli {
    #[command(subcommand)]
    command: ktstr_testbed::bench::Command,
}

fn main() {
    ktstr::cancel::install_handler();
    let code = match Cli::try_parse() {
        Ok(cli) => match ktstr_testbed::bench::run(cli.command) {
            Ok(code) => code,
            Err(err) => {
                eprintln!("error: {err:#}");
                if ktstr::cli::is_bad_input(&err) {
                    ktstr::exit::USAGE
                } else {
                    ktstr::exit::FAILURE
                }
            }
        },
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() {
                ktstr::exit::USAGE
            } else {
                ktstr::exit::OK
            }
        }
    };
    std::process::exit(code);
}
