//! ktstr: boot kernels x sched_ext schedulers x scenarios in VMs and report regressions.
//!
//! The modules follow the data flow: a `kernel` spec is resolved, configured, built and cached;
//! `sched` resolves scheduler binaries; `initramfs` packs the guest agent, busybox and those
//! binaries; a `vm` backend (`qemu`, or the own `kvm` VMM) boots one cell; `cell` turns what the VM
//! produced into a `CellResult`. The `cli` wires it to subcommands; the matrix engine lives in the
//! `ktstr-matrix` crate and calls back into `cell` through its runner trait. The test bed (the
//! nested harness, the Debian kernel fixture, the benchmarks) is the `ktstr-testbed` crate; only
//! what its L1 runs of this binary (`nested_l1`) is here.

pub mod bisect;
pub mod cache_archive;
pub mod cancel;
pub mod cell;
pub mod cli;
pub mod digest;
pub mod exit;
pub mod host_info;
pub mod host_memory;
pub mod initramfs;
pub mod job_templates;
pub mod kernel;
pub mod lock;
pub mod matrix_runner;
pub mod nested_l1;
pub mod paths;
pub mod progress;
pub mod sched;
pub mod scratch;
pub mod topology;
pub mod vm;
