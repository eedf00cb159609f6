//! ktstr's side of the matrix engine: name validation before anything is built, and a
//! [`CellRunner`] that builds every distinct kernel, scheduler and initramfs once and boots each
//! cell in its own VM through [`crate::cell::run_cell`].

mod prepare;
mod selftests;
mod validate;

pub use prepare::{PrepareError, Prepared};
pub use validate::KtstrValidator;

use crate::cell::{self, Cell, SchedulerBinary, Workload};
use crate::kernel::{self, ResolveOptions, ResolvedKernel};
use crate::sched::{self, Source};
use crate::topology::{Topology, TopologyError};
use crate::vm::Backend;
use ktstr_matrix::engine::{Artifact, CellRunner, Event};
use ktstr_matrix::plan::{CellInputs, Column, Plan, PlannedCell};
use ktstr_matrix::provenance::{HostInfo, KernelBuild, PreparedKernel};
use ktstr_matrix::result::{CellResult, HostTimings};
use prepare::SchedReady;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Plan estimates of a cold build, of the order a small host takes (docs/benchmarks.md, "Kernel
/// cache"); they only size the plan's time estimate.
const KERNEL_BUILD_ESTIMATE: Duration = Duration::from_secs(630);
const KERNEL_TOOLS_ESTIMATE: Duration = Duration::from_secs(15);
const CRATE_BUILD_ESTIMATE: Duration = Duration::from_secs(400);

/// The cell's console log file name; the report links it, so the matrix crate owns the rule.
pub fn log_name(key: &ktstr_matrix::plan::CellKey) -> String {
    ktstr_matrix::evidence::log_name(key)
}

pub(crate) fn json_params(p: &BTreeMap<String, String>) -> BTreeMap<String, serde_json::Value> {
    p.iter()
        .map(|(k, v)| {
            let v =
                serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.clone()));
            (k.clone(), v)
        })
        .collect()
}

pub(super) fn is_image(spec: &str) -> bool {
    matches!(
        kernel::KernelSpec::parse(spec),
        Ok(kernel::KernelSpec::Image(_))
    )
}

/// Config parts passed to the kernel module; a prebuilt image takes none (its column label still
/// shows the set, which then only names the column).
pub(super) fn kernel_configs(col: &Column) -> Vec<String> {
    if is_image(&col.kernel) {
        Vec::new()
    } else {
        col.configs.clone()
    }
}

/// A distro image (`/boot/vmlinuz-REL`) keeps its config as `/boot/config-REL`; reading it tells
/// whether the kernel has sched_ext, so its scheduler cells are skipped with that reason instead of
/// failing to build a scheduler for an unknown kernel.
pub(super) fn with_distro_config(mut k: ResolvedKernel) -> ResolvedKernel {
    if k.config.is_none()
        && let Some(name) = k.image.file_name().and_then(|n| n.to_str())
        && let Some(rel) = name.strip_prefix("vmlinuz-")
    {
        let cfg = k.image.with_file_name(format!("config-{rel}"));
        if let Ok(text) = std::fs::read_to_string(&cfg) {
            k.sched_ext = text.lines().any(|l| l == "CONFIG_SCHED_CLASS_EXT=y");
            k.config = Some(cfg);
        }
    }
    k
}

pub struct KtstrRunner {
    pub backend: Box<dyn Backend>,
    /// Console logs go to `logs_dir/<cell id>.log`.
    pub logs_dir: PathBuf,
    pub cpu_budget: Option<u32>,
    pub memory_mib: u32,
    /// Host cores available for kernel builds.
    pub build_cores: usize,
    /// What every kernel resolution starts from (a bisection sets its persistent build tree).
    pub kernel_opts: ResolveOptions,
    /// `-i` files every cell's initramfs carries: (host path, guest path or empty).
    pub files: Vec<(PathBuf, String)>,
}

/// The pipeline's cell for a planned cell, once its kernel image and scheduler are known.
pub fn cell_of(
    kernel: PathBuf,
    cell: &PlannedCell,
    scheduler: Option<SchedulerBinary>,
    memory_mib: u32,
    cpu_budget: Option<u32>,
) -> Result<Cell, TopologyError> {
    let topology: Topology = cell.key.topology.parse()?;
    Ok(Cell {
        kernel,
        workload: Workload::Scenario {
            scheduler,
            scenario: cell.key.scenario.name.clone(),
            params: json_params(&cell.key.scenario.params),
            duration: Duration::from_millis(cell.key.duration_ms),
        },
        topology,
        memory_mib,
        files: Vec::new(),
        cpu_budget,
        cmdline_extra: Vec::new(),
    })
}

impl KtstrRunner {
    fn cell_of(
        &self,
        kernel: PathBuf,
        cell: &PlannedCell,
        s: &SchedReady,
        st: &std::collections::HashMap<ktstr_matrix::plan::Column, selftests::SelftestsReady>,
    ) -> Result<Cell, String> {
        let scheduler = match s {
            SchedReady::Binary {
                name, path, args, ..
            } => Some(SchedulerBinary {
                name: name.clone(),
                path: path.clone(),
                args: args.clone(),
            }),
            _ => None,
        };
        let mut c = cell_of(kernel, cell, scheduler, self.memory_mib, self.cpu_budget)
            .map_err(|e| e.to_string())?;
        c.files = self.files.clone();
        selftests::equip(c, cell, st)
    }
}

/// Cells that share this key share one initramfs (the kernel does not enter it).
pub(super) fn initramfs_key(cell: &PlannedCell) -> String {
    let k = &cell.key;
    format!(
        "{}|{}|{}|{:?}|{}",
        k.column().label(),
        k.sched,
        k.scenario.name,
        k.scenario.params,
        k.duration_ms
    )
}

impl CellRunner for KtstrRunner {
    type Prepared = Prepared;
    type Error = PrepareError;

    fn survey(&self, plan: &Plan) -> Vec<Artifact> {
        let mut out = Vec::new();
        let opts = ResolveOptions::default();
        for col in &plan.columns {
            let (cached, key) = if is_image(&col.kernel) {
                (true, None)
            } else {
                // Survey only: a dry run downloads, extracts and configures nothing.
                match kernel::survey(&col.kernel, &kernel_configs(col), &opts) {
                    Ok(Some(key)) => (true, Some(key)),
                    _ => (false, None),
                }
            };
            out.push(Artifact {
                kind: "kernel".into(),
                name: col.label(),
                cached,
                estimate: KERNEL_BUILD_ESTIMATE,
            });
            let cache = sched::cache::Cache::at_default();
            out.extend(selftests::survey(plan, col, key.as_deref(), &cache));
            for s in &plan.spec.scheds {
                let Ok(parsed) = sched::validate_spec(s) else {
                    continue;
                };
                let (cached, est) = match &parsed.source {
                    Source::Eevdf | Source::Path(_) => continue,
                    Source::KernelTool(t) => (
                        key.as_ref().is_some_and(|k| {
                            cache.lookup(&sched::kernel_tools::key(k, t)).is_some()
                        }),
                        KERNEL_TOOLS_ESTIMATE,
                    ),
                    Source::Git { .. } | Source::Tree { .. } => (
                        sched::source_build::lookup(&cache, s).is_some(),
                        CRATE_BUILD_ESTIMATE,
                    ),
                    Source::Crate { name, version, .. } => (
                        sched::toolchain::which(name).is_some() && version.is_none()
                            || cache
                                .lookup(&sched::cargo::key(
                                    name,
                                    version.as_deref().unwrap_or(sched::DEFAULT_CRATE_VERSION),
                                ))
                                .is_some(),
                        CRATE_BUILD_ESTIMATE,
                    ),
                };
                out.push(Artifact {
                    kind: "scheduler".into(),
                    name: format!("{} for {}", parsed.display_name(), col.label()),
                    cached,
                    estimate: est,
                });
            }
        }
        out
    }

    fn prepare(
        &self,
        plan: &Plan,
        emit: &(dyn Fn(Event) + Sync),
    ) -> Result<Prepared, PrepareError> {
        prepare::prepare(self, plan, emit)
    }

    fn kernel_builds(&self, p: &Prepared) -> Vec<PreparedKernel> {
        let mut out: Vec<PreparedKernel> = p
            .kernels
            .iter()
            .filter_map(|(col, k)| Some((col, k.as_ref().ok()?)))
            .map(|(col, k)| PreparedKernel {
                build: KernelBuild {
                    column: col.clone(),
                    key: k.input_hash.clone(),
                    release: k.kernel.version.clone(),
                    // A hash the report can show without the cache; empty if unreadable.
                    image_sha256: crate::digest::sha256_file(&k.kernel.image).unwrap_or_default(),
                },
                config: k.kernel.config.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.build.column.cmp(&b.build.column));
        out
    }

    fn host(&self) -> Option<HostInfo> {
        Some(crate::host_info::current(
            self.backend.describe().starts_with("qemu"),
        ))
    }

    fn inputs(&self, p: &Prepared, cell: &PlannedCell) -> CellInputs {
        let col = cell.key.column();
        let (kernel, config) = match p.kernels.get(&col) {
            Some(Ok(k)) => (k.input_hash.clone(), k.config_hash.clone()),
            _ => (String::new(), String::new()),
        };
        let (sched, skip) = match &p.scheds[&(col, cell.key.sched.clone())] {
            SchedReady::Eevdf => ("eevdf".to_string(), None),
            SchedReady::Binary { sha, .. } => (sha.clone(), None),
            SchedReady::Skipped(r) => (String::new(), Some(r.clone())),
            // A failed build is not a skip; `run` reports it as an error with the reason.
            SchedReady::Failed(_) => (String::new(), None),
        };
        let skip = skip.or_else(|| selftests::skip_reason(cell, &p.selftests));
        let initramfs = p
            .initramfs
            .get(&initramfs_key(cell))
            .and_then(|r| r.as_ref().ok())
            // The cache names each image by the sha256 of its inputs: `<hash>.cpio.zst`.
            .and_then(|p| p.file_name()?.to_str()?.split('.').next().map(String::from))
            .unwrap_or_default();
        CellInputs {
            kernel,
            config,
            sched,
            initramfs,
            ktstr_version: env!("CARGO_PKG_VERSION").into(),
            skip,
        }
    }

    fn run(&self, p: &Prepared, cell: &PlannedCell) -> CellResult {
        let col = cell.key.column();
        let error = |reason: String| {
            CellResult::error(reason, HostTimings::default(), self.backend.describe())
        };
        let k = match p.kernels.get(&col) {
            Some(Ok(k)) => &k.kernel,
            Some(Err(e)) => return error(format!("kernel {}: {e}", col.label())),
            None => return error(format!("kernel {} was not prepared", col.label())),
        };
        let s = &p.scheds[&(col, cell.key.sched.clone())];
        if let SchedReady::Failed(e) = s {
            return error(e.clone());
        }
        if let Some(e) = selftests::failure(cell, &p.selftests) {
            return error(e);
        }
        let initramfs = match p.initramfs.get(&initramfs_key(cell)) {
            Some(Ok(path)) => path.clone(),
            Some(Err(e)) => return error(e.clone()),
            None => return error("initramfs was not prepared".into()),
        };
        let log = self.logs_dir.join(log_name(&cell.key));
        let _ = std::fs::create_dir_all(&self.logs_dir);
        let req = match self
            .cell_of(k.image.clone(), cell, s, &p.selftests)
            .and_then(|c| c.request(log, None).map_err(|e| e.to_string()))
        {
            Ok(req) => req,
            Err(e) => return error(e),
        };
        cell::boot_cell(&req, &initramfs, self.backend.as_ref())
    }

    fn cell_estimate(&self, cell: &PlannedCell) -> Duration {
        // Boot to the agent under TCG, the scheduler attach and teardown (docs/benchmarks.md,
        // "Boot").
        Duration::from_millis(cell.key.duration_ms) + Duration::from_secs(6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktstr_matrix::plan::CellKey;
    use ktstr_matrix::spec::ScenarioSel;

    #[test]
    fn cells_differing_only_in_params_get_their_own_log() {
        let key = |params: &[(&str, &str)]| CellKey {
            kernel: "6.12".into(),
            configs: vec!["sched_ext".into()],
            sched: "scx_rusty:-u 5000".into(),
            scenario: ScenarioSel {
                name: "wake".into(),
                params: params
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
            topology: "1n1l2c1t".into(),
            duration_ms: 3000,
            repeat: 1,
        };
        let pipe = log_name(&key(&[]));
        let futex = log_name(&key(&[("mechanism", "\"futex\"")]));
        assert_ne!(pipe, futex);
        let long = |p: &str| log_name(&key(&[("metric.p99", p), ("binary", &"b".repeat(300))]));
        let (long1, long2) = (long("\"p(1)\""), long("\"p(2)\""));
        assert_ne!(long1, long2);
        assert!(long1.len() <= 255, "{}", long1.len());
        for name in [&pipe, &futex, &long1] {
            assert!(name.ends_with(".log"));
            assert!(!name.contains(['/', ' ', '"', ':']), "{name}");
        }
    }
}
