//! Spec -> validated plan of cells. Names are checked through the [`Validator`] that ktstr
//! implements (kernel specs, config fragments, schedulers, scenarios + params, topologies), and
//! every unknown name is reported together before anything is built.

use crate::spec::{MatrixSpec, ScenarioSel, config_set_label};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Host-side name checks; each returns one line naming the input and the fix.
pub trait Validator {
    fn kernel(&self, spec: &str) -> Result<(), String>;
    fn config_fragment(&self, name: &str) -> Result<(), String>;
    fn sched(&self, spec: &str) -> Result<(), String>;
    /// `params` values are JSON text.
    fn scenario(&self, name: &str, params: &BTreeMap<String, String>) -> Result<(), String>;
    /// Checks the topology and the guest memory every cell gets against it; returns the
    /// topology's vCPU count.
    fn topology(&self, spec: &str, memory_mib: u32) -> Result<u32, String>;
}

/// One column of the report: a kernel built with one config set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Column {
    pub kernel: String,
    pub configs: Vec<String>,
}

impl Column {
    pub fn label(&self) -> String {
        format!("{}/{}", self.kernel, config_set_label(&self.configs))
    }
}

/// What a cell is, independent of the inputs' content (see `CellInputs` for that).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CellKey {
    pub kernel: String,
    pub configs: Vec<String>,
    pub sched: String,
    pub scenario: ScenarioSel,
    pub topology: String,
    pub duration_ms: u64,
    pub repeat: u32,
}

impl CellKey {
    pub fn column(&self) -> Column {
        Column {
            kernel: self.kernel.clone(),
            configs: self.configs.clone(),
        }
    }
    /// `scx_simple @ 6.12/sched_ext 1n1l2c1t steady #2`
    pub fn label(&self) -> String {
        format!(
            "{} @ {} {} {} #{}",
            self.sched,
            self.column().label(),
            self.topology,
            self.scenario.label(),
            self.repeat
        )
    }
}

/// Content hashes of everything that went into a cell, filled in by the runner after `prepare`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellInputs {
    /// Kernel cache key (source + config + toolchain), or the image's sha256 for prebuilt images.
    pub kernel: String,
    /// sha256 of the config fragments' text.
    pub config: String,
    /// sha256 of the scheduler binary (+ args); `eevdf` for none.
    pub sched: String,
    pub initramfs: String,
    pub ktstr_version: String,
    /// Set when the cell cannot run (e.g. a sched_ext scheduler on a kernel without sched_ext).
    #[serde(default)]
    pub skip: Option<String>,
}

/// Cell identity: the hash of its key and its inputs' hashes (which include the repeat index).
pub fn cell_id(key: &CellKey, inputs: &CellInputs) -> String {
    let mut h = Sha256::new();
    // serde_json of these structs is deterministic (fields in declaration order, BTreeMaps sorted).
    h.update(serde_json::to_vec(key).expect("CellKey serializes"));
    let mut i = inputs.clone();
    i.skip = None;
    h.update(serde_json::to_vec(&i).expect("CellInputs serializes"));
    hex::encode(&h.finalize()[..16])
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCell {
    pub key: CellKey,
    pub vcpus: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub spec: MatrixSpec,
    pub columns: Vec<Column>,
    pub cells: Vec<PlannedCell>,
}

/// Checks every name in the spec and returns all problems at once (one line each).
pub fn validate(
    spec: &MatrixSpec,
    v: &dyn Validator,
) -> Result<BTreeMap<String, u32>, Vec<String>> {
    let mut errs = Vec::new();
    for k in &spec.kernels {
        if let Err(e) = v.kernel(k) {
            errs.push(e);
        }
    }
    let mut frags: Vec<&String> = spec.configs.iter().flatten().collect();
    frags.sort();
    frags.dedup();
    for f in frags {
        if let Err(e) = v.config_fragment(f) {
            errs.push(e);
        }
    }
    for s in &spec.scheds {
        if let Err(e) = v.sched(s) {
            errs.push(e);
        }
    }
    for s in &spec.scenarios {
        if let Err(e) = v.scenario(&s.name, &s.params) {
            errs.push(e);
        }
    }
    let mut vcpus = BTreeMap::new();
    for t in &spec.topologies {
        match v.topology(t, spec.memory_mib) {
            Ok(n) => {
                vcpus.insert(t.clone(), n);
            }
            Err(e) => errs.push(e),
        }
    }
    if let Some(b) = &spec.baseline
        && resolve_baseline_spec(b, spec).is_none()
    {
        errs.push(format!(
            "baseline {b:?} names no column: use a kernel from --kernels ({}) or KERNEL/CONFIGS, e.g. {}",
            spec.kernels.join(", "),
            Column {
                kernel: spec.kernels[0].clone(),
                configs: spec.configs[0].clone()
            }
            .label()
        ));
    }
    if errs.is_empty() {
        Ok(vcpus)
    } else {
        Err(errs)
    }
}

/// A baseline names a kernel (each config set compares with the same set on that kernel) or one
/// column `KERNEL/CONFIGS`. Returns the matching kernel and, for the latter, the config set.
pub fn resolve_baseline_spec(b: &str, spec: &MatrixSpec) -> Option<(String, Option<Vec<String>>)> {
    if spec.kernels.iter().any(|k| k == b) {
        return Some((b.to_string(), None));
    }
    let (k, c) = b.rsplit_once('/')?;
    let set = crate::spec::parse_config_set(c);
    (spec.kernels.iter().any(|x| x == k) && spec.configs.contains(&set))
        .then(|| (k.to_string(), Some(set)))
}

/// Expands a validated spec into cells, in a stable order (kernel, configs, topology, scenario,
/// scheduler, repeat).
pub fn expand(spec: &MatrixSpec, vcpus: &BTreeMap<String, u32>) -> Plan {
    let mut cells = Vec::new();
    let mut columns = Vec::new();
    for k in &spec.kernels {
        for c in &spec.configs {
            columns.push(Column {
                kernel: k.clone(),
                configs: c.clone(),
            });
            for t in &spec.topologies {
                for sc in &spec.scenarios {
                    for s in &spec.scheds {
                        for r in 0..spec.repeats {
                            cells.push(PlannedCell {
                                key: CellKey {
                                    kernel: k.clone(),
                                    configs: c.clone(),
                                    sched: s.clone(),
                                    scenario: sc.clone(),
                                    topology: t.clone(),
                                    duration_ms: spec.duration_ms,
                                    repeat: r,
                                },
                                vcpus: vcpus.get(t).copied().unwrap_or(1),
                            });
                        }
                    }
                }
            }
        }
    }
    Plan {
        spec: spec.clone(),
        columns,
        cells,
    }
}
