//! `ktstr bench ...`: each benchmark lives in its own module and prints the figures
//! that go in docs/benchmarks.md.

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Boot time per backend / machine type (spawn -> agent, spawn -> result).
    Boot(super::bench_boot::Args),
    /// Own kvm backend vs QEMU with KVM, inside a nested (TCG + emulated SVM) L1 guest.
    Vmm(super::bench_vmm::Args),
    /// Cache-hit kernel resolution time against the cold build it replaces.
    Cache(super::bench_cache::Args),
    /// Matrix parallel efficiency: wall time vs (sum of cell time x vCPUs) / host cores.
    Matrix(super::bench_matrix::Args),
}

pub fn run(cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Boot(a) => super::bench_boot::run(a),
        Command::Vmm(a) => super::bench_vmm::run(a),
        Command::Cache(a) => super::bench_cache::run(a),
        Command::Matrix(a) => super::bench_matrix::run(a),
        #[allow(unreachable_patterns)]
        _ => anyhow::bail!("`ktstr bench` is not implemented yet"),
    }
}
