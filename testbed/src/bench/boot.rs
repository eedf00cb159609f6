//! `ktstr bench boot`: median host time from VM spawn to the guest agent's first frame and to its
//! result, per QEMU machine type (and accelerator, and kernel format: PVH ELF vs bzImage), over
//! N boots of `shell --exec true`.
//!
//! Runs are interleaved (run 1 of every machine, then run 2, ...) so that a change in host load
//! during the benchmark hits every machine type alike. The initramfs is built once up front, so
//! only booting is timed.

use ktstr::cell::{self, CellRequest};
use ktstr::cli::vm_args::{kernel_image, parse_topology};
use ktstr::vm::Backend;
use ktstr::vm::qemu::{Accel, Machine, QemuBackend};
use ktstr_guest::protocol::{CellSpec, Mode, PROTOCOL_VERSION};
use ktstr_matrix::result::Outcome;
use ktstr_matrix::stats::median;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kernel image (default: Debian's cloud kernel, fetched into the cache).
    #[arg(long)]
    pub kernel: Option<String>,
    /// Boots per machine type.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Machine types to compare.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Machine::ALL.to_vec())]
    pub machines: Vec<Machine>,
    #[arg(long, default_value = "1n1l2c1t")]
    pub topology: String,
    #[arg(long, default_value_t = 512)]
    pub memory_mib: u32,
    /// Only the default kernel format (PVH ELF); otherwise each machine type is also measured
    /// booting the bzImage as given, to show what host-side decompression buys.
    #[arg(long)]
    pub pvh_only: bool,
}

struct Sample {
    agent: Vec<f64>,
    result: Vec<f64>,
    failures: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let kernel = match &args.kernel {
        Some(k) => kernel_image(k)?,
        None => crate::debian::fetch(None)?.vmlinuz,
    };
    let topology = parse_topology(&args.topology)?;
    let mut backends: Vec<QemuBackend> = Vec::new();
    for m in &args.machines {
        let be = QemuBackend::new(*m, Accel::Tcg)?;
        if !args.pvh_only {
            backends.push(QemuBackend {
                pvh: false,
                ..be.clone()
            });
        }
        backends.push(be);
    }
    let logs = tempfile::tempdir()?;
    let mut samples: Vec<Sample> = backends
        .iter()
        .map(|_| Sample {
            agent: vec![],
            result: vec![],
            failures: vec![],
        })
        .collect();
    for run in 0..args.runs {
        for (i, be) in backends.iter().enumerate() {
            if ktstr::cancel::requested() {
                return Ok(ktstr::exit::INTERRUPTED);
            }
            let req = CellRequest {
                topology,
                memory_mib: args.memory_mib,
                timeout: cell::boot_allowance(topology.cpus()),
                ..CellRequest::new(
                    kernel.clone(),
                    CellSpec {
                        protocol_version: PROTOCOL_VERSION,
                        mode: Mode::Shell {
                            exec: Some("true".into()),
                        },
                    },
                    logs.path().join(format!("{i}-{run}.log")),
                )
            };
            let r = cell::run_cell(&req, be);
            let s = &mut samples[i];
            match (r.outcome, r.timings.to_agent_ms, r.timings.to_result_ms) {
                (Outcome::Pass, Some(a), Some(res)) => {
                    s.agent.push(a);
                    s.result.push(res);
                    eprintln!(
                        "run {}/{} {}: agent {:.0} ms, result {:.0} ms",
                        run + 1,
                        args.runs,
                        be.describe(),
                        a,
                        res
                    );
                }
                _ => {
                    // The console tail is the evidence for why a machine type failed to boot.
                    let lines: Vec<&str> = r.console_tail.lines().collect();
                    let tail = lines[lines.len().saturating_sub(8)..].join("\n  ");
                    s.failures.push(format!(
                        "{:?}: {}\n  {tail}",
                        r.outcome,
                        r.reason.clone().unwrap_or_default()
                    ))
                }
            }
        }
    }
    Ok(report(&kernel, &args, &backends, &samples))
}

/// Prints the table (and each failure's evidence); the exit code says whether any boot failed.
fn report(kernel: &Path, args: &Args, backends: &[QemuBackend], samples: &[Sample]) -> i32 {
    println!(
        "kernel {}, topology {}, {} MiB, {} runs each (median; min-max)\n",
        kernel.display(),
        args.topology,
        args.memory_mib,
        args.runs
    );
    println!("| backend | spawn -> agent | spawn -> result | failures |");
    println!("|---|---|---|---|");
    for (be, s) in backends.iter().zip(samples) {
        println!(
            "| {} | {} | {} | {} |",
            be.describe(),
            summary(&s.agent),
            summary(&s.result),
            s.failures.len()
        );
    }
    for (be, s) in backends.iter().zip(samples) {
        for f in &s.failures {
            eprintln!("{}: {f}", be.describe());
        }
    }
    let any_failed = samples.iter().any(|s| !s.failures.is_empty());
    if any_failed {
        ktstr::exit::FAILURE
    } else {
        ktstr::exit::OK
    }
}

fn summary(v: &[f64]) -> String {
    let Some(med) = median(v) else {
        return "-".into();
    };
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let secs = |ms: f64| Duration::from_secs_f64(ms / 1000.0).as_secs_f64();
    format!(
        "{:.2} s ({:.2}-{:.2})",
        secs(med),
        secs(s[0]),
        secs(s[s.len() - 1])
    )
}
