//! Command line (clap derive). Each subcommand lives in its own file.

pub fn main() -> i32 {
    crate::exit::USAGE
}
