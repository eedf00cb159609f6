//! Boot step: CPUID. Start from KVM_GET_SUPPORTED_CPUID (what this host's KVM can virtualise)
//! and rewrite the topology leaves so the guest derives the requested `NnNlNcNt` layout from
//! APIC IDs: thread bits, then core bits, then one package per LLC (see `crate::topology`).
//! The KVM paravirt leaf keeps kvmclock, steal time, PV EOI, PV unhalt … as KVM reports them,
//! so the guest can account steal time when `--cpu-budget` oversubscribes host CPUs.

use crate::topology::Topology;
use kvm_bindings::{CpuId, kvm_cpuid_entry2};
use thiserror::Error;

/// Why a vCPU's CPUID table could not be built.
#[derive(Debug, Error)]
pub enum CpuidError {
    #[error("building the CPUID table of {entries} entries: {source}")]
    Table {
        entries: usize,
        #[source]
        source: vmm_sys_util::fam::Error,
    },
}

/// How APIC IDs encode (package, core, thread). Linux reads the shifts from leaf 0xB.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApicLayout {
    pub thread_bits: u32,
    pub core_bits: u32,
    pub topo: Topology,
}

fn order(n: u32) -> u32 {
    // Smallest b with 2^b >= n.
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

impl ApicLayout {
    pub fn new(topo: Topology) -> Self {
        ApicLayout {
            thread_bits: order(topo.threads_per_core),
            core_bits: order(topo.cores_per_llc),
            topo,
        }
    }
    pub fn package_shift(&self) -> u32 {
        self.thread_bits + self.core_bits
    }
    /// vCPU index (0-based, package-major) -> APIC ID.
    pub fn apic_id(&self, cpu: u32) -> u32 {
        let t = self.topo;
        let thread = cpu % t.threads_per_core;
        let core = (cpu / t.threads_per_core) % t.cores_per_llc;
        let pkg = cpu / t.cpus_per_llc();
        (pkg << self.package_shift()) | (core << self.thread_bits) | thread
    }
    /// NUMA node of a vCPU: LLCs are grouped into nodes in order.
    pub fn node(&self, cpu: u32) -> u32 {
        cpu / self.topo.cpus_per_node()
    }
    pub fn max_apic_id(&self) -> u32 {
        self.apic_id(self.topo.cpus() - 1)
    }
}

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_INTEL: u32 = 0x4;
const LEAF_EXT_TOPO: u32 = 0xb;
const LEAF_V2_EXT_TOPO: u32 = 0x1f;
const LEAF_EXT_FEATURES: u32 = 0x8000_0001;
const LEAF_AMD_SIZES: u32 = 0x8000_0008;
const LEAF_AMD_CACHE: u32 = 0x8000_001d;
const LEAF_AMD_TOPO: u32 = 0x8000_001e;
const LEAF_AMD_EXT_TOPO: u32 = 0x8000_0026;
/// Leaf 0x8000_0001 ECX bit 22: TOPOEXT. Cleared so the guest derives LLCs from the package
/// (legacy_set_llc) instead of family-specific guesses from leaf 0x8000_001E.
const ECX_TOPOEXT: u32 = 1 << 22;
const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;
/// Leaf 1 ECX bit 24: TSC-deadline LAPIC timer. KVM emulates it with the in-kernel LAPIC but
/// cannot list it in KVM_GET_SUPPORTED_CPUID (it depends on the irqchip); without it the guest
/// calibrates the LAPIC timer against the PIT, which is slow and, nested, unreliable.
const ECX_TSC_DEADLINE: u32 = 1 << 24;

/// Returns the CPUID table for vCPU `cpu`.
/// `tsc_deadline`: KVM_CAP_TSC_DEADLINE_TIMER is available.
pub fn for_vcpu(
    supported: &CpuId,
    layout: &ApicLayout,
    cpu: u32,
    tsc_deadline: bool,
) -> Result<CpuId, CpuidError> {
    let apic = layout.apic_id(cpu);
    let pkg_shift = layout.package_shift();
    let cpus_per_pkg = layout.topo.cpus_per_llc();
    let mut entries: Vec<kvm_cpuid_entry2> = supported
        .as_slice()
        .iter()
        .copied()
        // Leaves that would override 0xB with the host's topology.
        .filter(|e| {
            !matches!(
                e.function,
                LEAF_V2_EXT_TOPO | LEAF_AMD_EXT_TOPO | LEAF_AMD_TOPO
            )
        })
        .collect();
    // Guarantee leaf 0xB exists with three subleaves (SMT, core, end marker).
    entries.retain(|e| e.function != LEAF_EXT_TOPO);
    let levels = [
        (layout.thread_bits, layout.topo.threads_per_core, 1u32),
        (pkg_shift, cpus_per_pkg, 2u32),
        (0, 0, 0u32),
    ];
    for (sub, (shift, count, kind)) in levels.into_iter().enumerate() {
        entries.push(kvm_cpuid_entry2 {
            function: LEAF_EXT_TOPO,
            index: sub as u32,
            flags: kvm_bindings::KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
            eax: shift,
            ebx: count,
            ecx: (kind << 8) | sub as u32,
            edx: apic,
            ..Default::default()
        });
    }
    for e in entries.iter_mut() {
        match e.function {
            0 => e.eax = e.eax.max(LEAF_EXT_TOPO),
            LEAF_FEATURES => {
                e.ebx = (e.ebx & 0x0000_ffff) | (apic << 24) | ((1 << pkg_shift).min(255) << 16);
                e.ecx |= ECX_HYPERVISOR;
                if tsc_deadline {
                    e.ecx |= ECX_TSC_DEADLINE;
                }
                if cpus_per_pkg > 1 {
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            LEAF_CACHE_INTEL => {
                let level = (e.eax >> 5) & 0x7;
                // L1/L2 are per core, the last level cache is per package (= per LLC).
                let sharing_bits = if level >= 3 {
                    pkg_shift
                } else {
                    layout.thread_bits
                };
                e.eax = (e.eax & 0x3fff)
                    | (((1u32 << sharing_bits) - 1) << 14)
                    | (((1u32 << layout.core_bits) - 1) << 26);
            }
            LEAF_EXT_FEATURES => e.ecx &= !ECX_TOPOEXT,
            LEAF_AMD_SIZES => {
                e.ecx = (e.ecx & !0xf0ff) | (pkg_shift << 12) | (cpus_per_pkg - 1);
            }
            LEAF_AMD_CACHE => {
                let level = (e.eax >> 5) & 0x7;
                let sharing_bits = if level >= 3 {
                    pkg_shift
                } else {
                    layout.thread_bits
                };
                e.eax = (e.eax & !(0xfff << 14)) | (((1u32 << sharing_bits) - 1) << 14);
            }
            _ => {}
        }
    }
    CpuId::from_entries(&entries).map_err(|source| CpuidError::Table {
        entries: entries.len(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apic_ids_pack_threads_cores_packages() {
        let l = ApicLayout::new("1n2l2c1t".parse().unwrap());
        let ids: Vec<u32> = (0..4).map(|c| l.apic_id(c)).collect();
        assert_eq!(ids, vec![0, 1, 2, 3]);
        let l = ApicLayout::new("2n1l3c2t".parse().unwrap());
        // 3 cores need 2 bits, 2 threads 1 bit: package shift 3.
        assert_eq!(l.package_shift(), 3);
        assert_eq!(l.apic_id(5), 0b101);
        assert_eq!(l.apic_id(6), 0b1000);
        assert_eq!(l.node(6), 1);
        assert_eq!(l.max_apic_id(), 0b1101);
    }

    #[test]
    fn topology_leaf_describes_the_layout() {
        let supported = CpuId::from_entries(&[
            kvm_cpuid_entry2 {
                function: 0,
                eax: 0xd,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 1,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: LEAF_AMD_TOPO,
                ..Default::default()
            },
        ])
        .unwrap();
        let l = ApicLayout::new("1n2l2c2t".parse().unwrap());
        let c = for_vcpu(&supported, &l, 5, true).unwrap();
        let get = |f, i| {
            *c.as_slice()
                .iter()
                .find(|e| e.function == f && e.index == i)
                .unwrap()
        };
        let smt = get(LEAF_EXT_TOPO, 0);
        assert_eq!((smt.eax, smt.ebx, smt.edx), (1, 2, l.apic_id(5)));
        let core = get(LEAF_EXT_TOPO, 1);
        assert_eq!((core.eax, core.ebx), (2, 4));
        assert_eq!(get(1, 0).ebx >> 24, l.apic_id(5));
        assert!(c.as_slice().iter().all(|e| e.function != LEAF_AMD_TOPO));
    }
}
