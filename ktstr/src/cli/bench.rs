//! `ktstr bench ...`: each benchmark lives in its own module and prints the figures
//! that go in docs/benchmarks.md.

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Boot time per backend / machine type (spawn -> agent, spawn -> result).
    Boot,
}

pub fn run(_cmd: Command) -> anyhow::Result<i32> {
    anyhow::bail!("`ktstr bench` is not implemented yet")
}
