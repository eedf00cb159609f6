//! ktstr's test bed: what tests and benchmarks need around the product, kept out of the `ktstr`
//! library a user runs. `debian` fetches Debian's prebuilt cloud kernel (the fixture kernel);
//! `nested` boots it as an L1 guest under QEMU TCG with real KVM inside, where the own VMM is
//! tested end to end and benchmarked; `bench` holds the benchmarks behind the `ktstr-bench`
//! binary (which `ktstr bench ...` runs); `slurm` starts a real single-node Slurm cluster.

pub mod bench;
pub mod debian;
pub mod nested;
pub mod slurm;
