//! VM CPU topology `NnNlNcNt`: NUMA nodes, LLCs per node, cores per LLC, threads per core.
//! `1n2l4c1t` is 8 CPUs in 2 LLCs. Each LLC is presented to the guest as its own package (socket),
//! so the guest's /sys/devices/system/cpu shows one package per LLC.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Upper bound on vCPUs; beyond it QEMU/KVM and the MP table get unwieldy for a test VM.
pub const MAX_CPUS: u32 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Topology {
    pub nodes: u32,
    pub llcs_per_node: u32,
    pub cores_per_llc: u32,
    pub threads_per_core: u32,
}

#[derive(Debug, Error, PartialEq)]
pub enum TopologyError {
    #[error(
        "topology {0:?} is malformed: expected NnNlNcNt, e.g. 1n2l4c1t (NUMA nodes, LLCs per node, cores per LLC, threads per core)"
    )]
    Malformed(String),
    #[error("topology {0:?}: every count must be at least 1")]
    Zero(String),
    #[error("topology {spec:?} has {cpus} CPUs; the limit is {MAX_CPUS}")]
    TooManyCpus { spec: String, cpus: u32 },
}

impl Topology {
    pub fn cpus(&self) -> u32 {
        self.nodes * self.llcs_per_node * self.cores_per_llc * self.threads_per_core
    }
    /// Total LLCs (= packages presented to the guest).
    pub fn llcs(&self) -> u32 {
        self.nodes * self.llcs_per_node
    }
    pub fn cpus_per_llc(&self) -> u32 {
        self.cores_per_llc * self.threads_per_core
    }
    pub fn cpus_per_node(&self) -> u32 {
        self.llcs_per_node * self.cpus_per_llc()
    }
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            nodes: 1,
            llcs_per_node: 1,
            cores_per_llc: 2,
            threads_per_core: 1,
        }
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}n{}l{}c{}t",
            self.nodes, self.llcs_per_node, self.cores_per_llc, self.threads_per_core
        )
    }
}

impl FromStr for Topology {
    type Err = TopologyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || TopologyError::Malformed(s.to_string());
        let mut nums = [0u32; 4];
        let mut rest = s;
        for (i, suffix) in ['n', 'l', 'c', 't'].into_iter().enumerate() {
            let end = rest.find(suffix).ok_or_else(malformed)?;
            let digits = &rest[..end];
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed());
            }
            nums[i] = digits.parse().map_err(|_| malformed())?;
            rest = &rest[end + 1..];
        }
        if !rest.is_empty() {
            return Err(malformed());
        }
        if nums.contains(&0) {
            return Err(TopologyError::Zero(s.to_string()));
        }
        let t = Topology {
            nodes: nums[0],
            llcs_per_node: nums[1],
            cores_per_llc: nums[2],
            threads_per_core: nums[3],
        };
        let cpus = nums.iter().try_fold(1u32, |acc, n| acc.checked_mul(*n));
        match cpus {
            Some(c) if c <= MAX_CPUS => Ok(t),
            _ => Err(TopologyError::TooManyCpus {
                spec: s.to_string(),
                cpus: cpus.unwrap_or(u32::MAX),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_counts() {
        let t: Topology = "1n2l4c1t".parse().unwrap();
        assert_eq!(t.cpus(), 8);
        assert_eq!(t.llcs(), 2);
        assert_eq!(t.to_string(), "1n2l4c1t");
        let t: Topology = "2n2l2c2t".parse().unwrap();
        assert_eq!((t.cpus(), t.cpus_per_node(), t.cpus_per_llc()), (16, 8, 4));
    }

    #[test]
    fn rejects_bad_strings() {
        for bad in [
            "",
            "2",
            "1n2l4c",
            "1n2l4c1t1",
            "xn1l1c1t",
            "1l1n1c1t",
            "1n-1l1c1t",
        ] {
            assert!(
                matches!(bad.parse::<Topology>(), Err(TopologyError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "0n1l1c1t".parse::<Topology>(),
            Err(TopologyError::Zero(_))
        ));
        assert!(matches!(
            "4n4l8c4t".parse::<Topology>(),
            Err(TopologyError::TooManyCpus { .. })
        ));
    }
}
