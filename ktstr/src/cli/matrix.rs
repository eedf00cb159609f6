//! `ktstr matrix`.

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`ktstr matrix` is not implemented yet")
}
