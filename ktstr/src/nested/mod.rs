//! The nested test harness: an L1 guest (Debian's cloud kernel under QEMU TCG with `-cpu max`,
//! which emulates SVM with nested paging) loads kvm.ko/kvm-amd.ko from the same package and runs
//! this ktstr binary, which boots an L2 kernel with the own `kvm` backend. It is how the VMM is
//! tested end to end (and benchmarked) on machines whose /dev/kvm cannot run real kernels.

pub mod record;

pub use record::RunRecord;
