//! What was compared: each column's kernel (release, cache key, image hash, the config options
//! that differ between columns), the schedulers' hashes, and the host. Recorded when the run is
//! prepared (the run record and `OUT/kernel-configs/<key>.config`), so a report re-rendered later
//! does not depend on the kernel cache still holding the entries.

use crate::plan::Column;
use crate::store::Loaded;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where a run keeps a copy of each kernel's final .config, named `<cache key>.config`.
pub const CONFIGS_DIR: &str = "kernel-configs";

/// The machine the run ran on, recorded in the run record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub cpu_model: String,
    pub cores: u32,
    pub memory_mib: u64,
    /// The host kernel's release.
    pub kernel: String,
    /// `QEMU emulator version 7.2.x`; `None` when QEMU is not used or not found.
    pub qemu_version: Option<String>,
}

/// One column's kernel as prepared, recorded in the run record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelBuild {
    pub column: Column,
    /// Cache key (or a prebuilt image's sha256): what the cells' `inputs.kernel` hold.
    pub key: String,
    pub release: String,
    pub image_sha256: String,
}

/// A prepared kernel and its final .config, as the runner hands it to the session.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedKernel {
    pub build: KernelBuild,
    pub config: Option<PathBuf>,
}

/// A report column's kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnKernel {
    /// Report column id.
    pub column: String,
    pub spec: String,
    /// From the booted guests (`uname -r`), else from the build.
    pub release: Option<String>,
    pub key: Option<String>,
    pub image_sha256: Option<String>,
    /// False when the run directory holds no copy of its .config.
    pub config_recorded: bool,
}

/// A scheduler binary as the cells of one column ran it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedBuild {
    pub sched: String,
    pub column: String,
    /// sha256 of the binary and its arguments (`eevdf` for the kernel's own scheduler).
    pub hash: String,
}

/// One config option whose value differs between columns; `values` follow `kernels`' order,
/// `None` = not set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigDiff {
    pub option: String,
    pub values: Vec<Option<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub host: Option<HostInfo>,
    /// Distinct backends the cells ran on (`qemu-tcg/microvm`, `kvm`).
    pub backends: Vec<String>,
    pub kernels: Vec<ColumnKernel>,
    pub scheds: Vec<SchedBuild>,
    /// Only filled when at least two columns have a recorded .config.
    pub config_diff: Vec<ConfigDiff>,
}

/// `CONFIG_X=value` lines and `# CONFIG_X is not set` (as not set).
pub fn parse_config(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().split_once('='))
        .filter(|(k, _)| k.starts_with("CONFIG_"))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Options whose values are not all equal across `configs` (`None` entries are skipped).
pub fn config_diff(configs: &[Option<BTreeMap<String, String>>]) -> Vec<ConfigDiff> {
    let known: Vec<&BTreeMap<String, String>> = configs.iter().flatten().collect();
    if known.len() < 2 {
        return Vec::new();
    }
    let options: BTreeSet<&String> = known.iter().flat_map(|c| c.keys()).collect();
    options
        .into_iter()
        .filter_map(|opt| {
            let values: Vec<Option<String>> = configs
                .iter()
                .map(|c| c.as_ref().and_then(|c| c.get(opt).cloned()))
                .collect();
            let compared: Vec<&Option<String>> = configs
                .iter()
                .zip(&values)
                .filter(|(c, _)| c.is_some())
                .map(|(_, v)| v)
                .collect();
            (compared.windows(2).any(|w| w[0] != w[1])).then(|| ConfigDiff {
                option: opt.clone(),
                values,
            })
        })
        .collect()
}

/// One run's part of the provenance: its columns are named `prefix` + the column label.
pub struct RunSource<'a> {
    pub prefix: &'a str,
    /// The run directory (for its recorded .configs), when it exists.
    pub dir: Option<&'a Path>,
    pub loaded: &'a Loaded,
}

/// Gathers the provenance of the given runs (one for a report, two for a comparison).
pub fn collect(runs: &[RunSource]) -> Provenance {
    let mut p = Provenance::default();
    let mut configs = Vec::new();
    for run in runs {
        let l = run.loaded;
        if p.host.is_none() {
            p.host = l.run.host.clone();
        }
        let mut columns = l.run.columns.clone();
        for c in &l.cells {
            let col = c.key.column();
            if !columns.contains(&col) {
                columns.push(col);
            }
            if !c.result.backend.is_empty() && !p.backends.contains(&c.result.backend) {
                p.backends.push(c.result.backend.clone());
            }
        }
        for col in columns {
            let id = format!("{}{}", run.prefix, col.label());
            let cells: Vec<_> = l.cells.iter().filter(|c| c.key.column() == col).collect();
            let built = l.run.kernels.iter().find(|k| k.column == col);
            let key = cells
                .iter()
                .map(|c| c.inputs.kernel.clone())
                .find(|k| !k.is_empty())
                .or_else(|| built.map(|b| b.key.clone()));
            let release = cells
                .iter()
                .filter_map(|c| c.result.report.as_ref())
                .map(|g| g.kernel.release.clone())
                .find(|r| !r.is_empty())
                .or_else(|| built.map(|b| b.release.clone()));
            let config = key.as_ref().and_then(|k| {
                let path = run.dir?.join(CONFIGS_DIR).join(format!("{k}.config"));
                std::fs::read_to_string(path).ok().map(|t| parse_config(&t))
            });
            for c in &cells {
                if c.inputs.sched.is_empty()
                    || p.scheds
                        .iter()
                        .any(|s| s.sched == c.key.sched && s.column == id)
                {
                    continue;
                }
                p.scheds.push(SchedBuild {
                    sched: c.key.sched.clone(),
                    column: id.clone(),
                    hash: c.inputs.sched.clone(),
                });
            }
            p.kernels.push(ColumnKernel {
                column: id,
                spec: col.kernel.clone(),
                release,
                image_sha256: built.map(|b| b.image_sha256.clone()),
                key,
                config_recorded: config.is_some(),
            });
            configs.push(config);
        }
    }
    p.config_diff = config_diff(&configs);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Option<BTreeMap<String, String>> {
        Some(parse_config(text))
    }

    #[test]
    fn only_options_that_differ_are_listed_and_unset_counts_as_a_value() {
        let a = cfg("CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_HZ=250\n");
        let b = cfg("CONFIG_A=y\nCONFIG_C=y\nCONFIG_HZ=1000\n");
        let d = config_diff(&[a, None, b]);
        let names: Vec<&str> = d.iter().map(|x| x.option.as_str()).collect();
        assert_eq!(names, ["CONFIG_B", "CONFIG_C", "CONFIG_HZ"]);
        assert_eq!(d[2].values, [Some("250".into()), None, Some("1000".into())]);
        assert_eq!(d[0].values, [Some("y".into()), None, None]);
    }

    #[test]
    fn one_known_config_has_nothing_to_differ_from() {
        assert!(config_diff(&[cfg("CONFIG_A=y"), None]).is_empty());
    }
}
