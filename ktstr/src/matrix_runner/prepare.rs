//! Before any cell runs: every distinct kernel (in parallel, sharing the build cores), every
//! scheduler for each kernel, and every distinct initramfs, once each, with the content hashes a
//! cell's record carries. A bad input stops the run here; a failed build only fails its cells.

use super::{KtstrRunner, initramfs_key, is_image, kernel_configs, with_distro_config};
use crate::digest::{sha256_file, sha256_hex};
use crate::initramfs;
use crate::kernel::{self, KernelError, ResolveOptions, ResolvedKernel};
use crate::sched::{self, ResolvedSched, SchedError};
use ktstr_matrix::engine::Event;
use ktstr_matrix::plan::{Column, Plan};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// Why preparation stopped the run: each is bad input that the user fixes (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("kernel {column}: {source}")]
    Kernel {
        column: String,
        #[source]
        source: KernelError,
    },
    #[error("scheduler {sched} for {column}: {source}")]
    Sched {
        sched: String,
        column: String,
        #[source]
        source: SchedError,
    },
    #[error("starting the kernel build threads: {0}")]
    Threads(#[from] rayon::ThreadPoolBuildError),
}

/// A kernel ready to boot, with the hashes every cell of its column records.
pub(super) struct ReadyKernel {
    pub kernel: ResolvedKernel,
    /// The cache key (source + config + toolchain), or a prebuilt image's sha256.
    pub input_hash: String,
    /// sha256 of the config fragments' text (`image` for a prebuilt image).
    pub config_hash: String,
}

/// A scheduler ready for one kernel.
#[derive(Clone)]
pub(super) enum SchedReady {
    Eevdf,
    Binary {
        name: String,
        path: PathBuf,
        args: Vec<String>,
        /// sha256 of the binary and its arguments.
        sha: String,
    },
    Skipped(String),
    Failed(String),
}

pub struct Prepared {
    pub(super) kernels: HashMap<Column, Result<ReadyKernel, String>>,
    pub(super) scheds: HashMap<(Column, String), SchedReady>,
    /// [`initramfs_key`] -> the built initramfs or why it could not be built.
    pub(super) initramfs: HashMap<String, Result<PathBuf, String>>,
}

impl Prepared {
    /// What could not be built, one entry each (a scheduler that failed because its kernel did
    /// is the kernel's failure only).
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut kernels: Vec<_> = self.kernels.iter().collect();
        kernels.sort_by_key(|(c, _)| c.label());
        for (col, k) in kernels {
            if let Err(e) = k {
                out.push(format!("kernel {}: {e}", col.label()));
            }
        }
        let mut scheds: Vec<_> = self.scheds.iter().collect();
        scheds.sort_by_key(|((c, s), _)| (c.label(), s.clone()));
        for ((col, _), s) in scheds {
            if let SchedReady::Failed(e) = s
                && matches!(self.kernels.get(col), Some(Ok(_)))
            {
                out.push(format!("{e} (for {})", col.label()));
            }
        }
        let mut initramfs: Vec<&String> = self
            .initramfs
            .values()
            .filter_map(|r| r.as_ref().err())
            .collect();
        initramfs.sort();
        initramfs.dedup();
        out.extend(initramfs.into_iter().cloned());
        out
    }
}

pub(super) fn prepare(
    runner: &KtstrRunner,
    plan: &Plan,
    emit: &(dyn Fn(Event) + Sync),
) -> Result<Prepared, PrepareError> {
    let emit_lock = Mutex::new(());
    let say = |s: String| {
        let _g = emit_lock.lock();
        emit(Event::Prepare(s));
    };
    let kernels = kernels(runner, plan, &say)?;
    let scheds = schedulers(plan, &kernels, &say)?;
    let mut prepared = Prepared {
        kernels,
        scheds,
        initramfs: HashMap::new(),
    };
    // Every distinct initramfs once; each cell then boots the image its plan built.
    for cell in &plan.cells {
        let key = initramfs_key(cell);
        if prepared.initramfs.contains_key(&key) {
            continue;
        }
        let s = &prepared.scheds[&(cell.key.column(), cell.key.sched.clone())];
        let Some(Ok(k)) = prepared.kernels.get(&cell.key.column()) else {
            continue;
        };
        if matches!(s, SchedReady::Skipped(_) | SchedReady::Failed(_)) {
            continue;
        }
        let built = runner
            .cell_of(k.kernel.image.clone(), cell, s)
            .map_err(|e| e.to_string())
            .and_then(|c| initramfs::build(&c.initramfs_spec()).map_err(|e| e.to_string()))
            .map_err(|e| format!("initramfs: {e}"));
        prepared.initramfs.insert(key, built);
    }
    say(format!(
        "initramfs: {} image(s) ready",
        prepared.initramfs.values().filter(|r| r.is_ok()).count()
    ));
    Ok(prepared)
}

/// Every column's kernel, in parallel, sharing the build cores between concurrent builds.
fn kernels(
    runner: &KtstrRunner,
    plan: &Plan,
    say: &(dyn Fn(String) + Sync),
) -> Result<HashMap<Column, Result<ReadyKernel, String>>, PrepareError> {
    let n = plan.columns.len().clamp(1, runner.build_cores.max(1));
    let per_build = (runner.build_cores / n).max(1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build()?;
    let resolved: Vec<(Column, Result<ResolvedKernel, KernelError>)> = pool.install(|| {
        use rayon::prelude::*;
        plan.columns
            .par_iter()
            .map(|col| {
                // The kernel module's own progress display only when builds do not run side by
                // side (separate bars would garble each other).
                let opts = ResolveOptions {
                    jobs: per_build,
                    progress: n == 1,
                    ..runner.kernel_opts.clone()
                };
                say(format!(
                    "kernel {}: resolving (a cold build takes minutes)",
                    col.label()
                ));
                let r = kernel::resolve(&col.kernel, &kernel_configs(col), &opts)
                    .map(with_distro_config);
                match &r {
                    Ok(k) => say(format!(
                        "kernel {}: {} ({})",
                        col.label(),
                        k.version,
                        if k.cache_hit { "cached" } else { "built" }
                    )),
                    Err(e) => say(format!("kernel {}: FAILED: {e}", col.label())),
                }
                (col.clone(), r)
            })
            .collect()
    });
    let mut out = HashMap::new();
    for (col, r) in resolved {
        let ready = match r {
            // Bad input (unknown version, missing build packages) stops the run with its fix.
            Err(e) if e.is_bad_input() => {
                return Err(PrepareError::Kernel {
                    column: col.label(),
                    source: e,
                });
            }
            Err(e) => Err(e.to_string()),
            Ok(k) => ready_kernel(&col, k),
        };
        out.insert(col, ready);
    }
    Ok(out)
}

/// Hashes a column's kernel and config once, for every cell's record.
fn ready_kernel(col: &Column, kernel: ResolvedKernel) -> Result<ReadyKernel, String> {
    let input_hash = match &kernel.key {
        Some(key) => key.clone(),
        None => {
            sha256_file(&kernel.image).map_err(|e| format!("{}: {e}", kernel.image.display()))?
        }
    };
    let config_hash = if is_image(&col.kernel) {
        "image".to_string()
    } else {
        let dir = kernel::spec::fragments_dir();
        let text: String = col
            .configs
            .iter()
            .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|_| f.clone()))
            .collect::<Vec<_>>()
            .join("\n--\n");
        sha256_hex(text.as_bytes())
    };
    Ok(ReadyKernel {
        kernel,
        input_hash,
        config_hash,
    })
}

/// Every scheduler of the spec for every kernel that is ready.
fn schedulers(
    plan: &Plan,
    kernels: &HashMap<Column, Result<ReadyKernel, String>>,
    say: &(dyn Fn(String) + Sync),
) -> Result<HashMap<(Column, String), SchedReady>, PrepareError> {
    let mut scheds = HashMap::new();
    for col in &plan.columns {
        for s in &plan.spec.scheds {
            let ready = match &kernels[col] {
                Err(e) => SchedReady::Failed(format!("kernel {}: {e}", col.label())),
                Ok(k) => match sched::resolve(s, &k.kernel) {
                    Ok(ResolvedSched::Eevdf) => SchedReady::Eevdf,
                    Ok(ResolvedSched::Skipped { reason }) => SchedReady::Skipped(reason),
                    Ok(ResolvedSched::Binary { name, path, args }) => match std::fs::read(&path) {
                        Ok(bytes) => {
                            say(format!("scheduler {name} for {}: ready", col.label()));
                            let sha = sha256_hex(
                                &[bytes.as_slice(), args.join("\0").as_bytes()].concat(),
                            );
                            SchedReady::Binary {
                                name,
                                path,
                                args,
                                sha,
                            }
                        }
                        Err(e) => SchedReady::Failed(format!("{}: {e}", path.display())),
                    },
                    Err(e) if e.is_bad_input() => {
                        return Err(PrepareError::Sched {
                            sched: s.clone(),
                            column: col.label(),
                            source: e,
                        });
                    }
                    Err(e) => {
                        say(format!("scheduler {s} for {}: FAILED: {e}", col.label()));
                        SchedReady::Failed(format!("scheduler {s}: {e}"))
                    }
                },
            };
            scheds.insert((col.clone(), s.clone()), ready);
        }
    }
    Ok(scheds)
}
