//! The benchmarks behind `ktstr-bench` (and so `ktstr bench ...`): each lives in its own module
//! and prints the figures that go in docs/benchmarks.md.

pub mod boot;
pub mod cache;
pub mod matrix;
pub mod vmm;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Boot time per backend / machine type (spawn -> agent, spawn -> result).
    Boot(boot::Args),
    /// Own kvm backend vs QEMU with KVM, inside a nested (TCG + emulated SVM) L1 guest.
    Vmm(vmm::Args),
    /// Cache-hit kernel resolution time against the cold build it replaces.
    Cache(cache::Args),
    /// Matrix parallel efficiency: wall time vs (sum of cell time x vCPUs) / host cores.
    Matrix(matrix::Args),
}

pub fn run(cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Boot(a) => boot::run(a),
        Command::Vmm(a) => vmm::run(a),
        Command::Cache(a) => cache::run(a),
        Command::Matrix(a) => matrix::run(a),
    }
}
