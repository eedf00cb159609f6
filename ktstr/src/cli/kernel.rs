//! `ktstr kernel build|list|gc`.

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Build (or reuse from the cache) a kernel.
    Build,
}

pub fn run(_cmd: Command) -> anyhow::Result<i32> {
    anyhow::bail!("`ktstr kernel` is not implemented yet")
}
