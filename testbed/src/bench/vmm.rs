//! `ktstr bench vmm`: boot time of the own kvm backend vs QEMU with KVM, measured inside an L1
//! guest (TCG with emulated SVM) so it runs on machines without a usable /dev/kvm.
//!
//! Two halves: the host side builds the L1 environment through [`crate::nested`], packing the
//! `ktstr` binary found next to this one and this binary beside it, and runs `ktstr bench vmm
//! --guest-side` inside L1. That comes back to this binary, which boots the L2 kernel +
//! initramfs `--runs` times per backend and prints one `KTSTR-VMM {json}` line per boot on its
//! stdout (= the L1 console); the host side collects those lines and prints medians and the ratio.

use crate::nested::{self, RunRecord};
use anyhow::Context;
use ktstr::cli::bad_input;
use ktstr::topology::Topology;
use ktstr::vm::{Backend, ConsoleMode, VmConfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Boots per backend.
    #[arg(long, default_value_t = 5)]
    pub runs: u32,
    /// L2 kernel (bzImage or vmlinux); default: the L1 (Debian cloud) kernel.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Backends to compare inside L1.
    #[arg(long, value_delimiter = ',', default_value = "kvm,qemu-kvm")]
    pub backends: Vec<String>,
    /// Inside L1 only: boot `--kernel` with `--initramfs` and print KTSTR-VMM lines.
    #[arg(long, hide = true)]
    pub guest_side: bool,
    #[arg(long, hide = true)]
    pub initramfs: Option<PathBuf>,
    #[arg(long, default_value = "1n1l2c1t")]
    pub topology: Topology,
    #[arg(long, default_value_t = 256)]
    pub memory_mib: u32,
    #[arg(long, default_value_t = 60)]
    pub timeout_s: u64,
    #[arg(long)]
    pub cpu_budget: Option<u32>,
    #[arg(long)]
    pub no_perf_mode: bool,
    /// Extra kernel command line items for the inner boots, the same for every backend
    /// (e.g. initcall_debug).
    #[arg(long, allow_hyphen_values = true)]
    pub cmdline: Vec<String>,
    /// Print each inner boot's whole console (into the L1 console log) after its record.
    #[arg(long)]
    pub print_console: bool,
    /// What the L2 guest agent runs before reporting (default `true`: boot cost only).
    #[arg(long, default_value = "true")]
    pub l2_exec: String,
    /// Profiling: a shell script appended to the L1 script after the benchmark, so variants
    /// share one (slow) L1 boot. `$KTSTR` and `$L2_KERNEL` are set.
    #[arg(long)]
    pub l1_script: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    if args.guest_side {
        return guest_side(&args);
    }
    if args.runs == 0 {
        return Err(bad_input("--runs 0: use at least 1"));
    }
    for b in &args.backends {
        if !BACKENDS.contains(&b.as_str()) {
            return Err(bad_input(format!(
                "--backends: unknown backend {b:?}; use some of {}",
                BACKENDS.join(",")
            )));
        }
    }
    let l1_extra = match &args.l1_script {
        Some(p) => std::fs::read_to_string(p).map_err(|e| {
            bad_input(format!(
                "--l1-script {}: {e}; give a readable file",
                p.display()
            ))
        })?,
        None => String::new(),
    };
    let log = std::env::temp_dir().join(format!("ktstr-bench-vmm-{}.log", std::process::id()));
    eprintln!(
        "L1 console: {} (L1's own kernel lines: {})",
        log.display(),
        crate::nested::kernel_log(&log).display()
    );
    let exe = std::env::current_exe().context("locating the ktstr-bench binary")?;
    // L1 needs ktstr itself too: its script runs `ktstr nested-l1-hold` and `ktstr bench vmm`.
    let ktstr_bin = ktstr::paths::companion_binary("ktstr").ok_or_else(|| {
        bad_input(
            "the vmm benchmark packs the ktstr binary into L1, and there is none next to \
             ktstr-bench nor on PATH: build both with `cargo build --release -p ktstr -p ktstr-testbed`",
        )
    })?;
    // L1 runs this very binary's VMM code: a stale build measures old code, so say how old it is.
    if let Some(age) = std::fs::metadata(&exe)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
    {
        eprintln!(
            "measuring {} as built {} min ago (rebuild it first to measure a change)",
            exe.display(),
            age.as_secs() / 60
        );
    }
    let (_, text) = nested::bench::bench(&nested::bench::BenchRequest {
        ktstr_bin,
        bench_bin: exe,
        l2_kernel: args.kernel.clone(),
        runs: args.runs,
        backends: args.backends.clone(),
        topology: args.topology,
        console_log: log,
        cmdline: args.cmdline.clone(),
        l2_exec: args.l2_exec.clone(),
        print_console: args.print_console,
        l1_extra,
    })?;
    println!("{text}");
    Ok(if ktstr::cancel::requested() {
        ktstr::exit::INTERRUPTED
    } else {
        ktstr::exit::OK
    })
}

/// Backend names `--backends` takes: `kvm-no-perf` is the kvm backend with `--no-perf-mode`.
const BACKENDS: [&str; 3] = ["kvm", "kvm-no-perf", "qemu-kvm"];

/// One backend by name, as the nested harness and the benchmark name them.
pub fn backend_by_name(name: &str, perf_mode: bool) -> anyhow::Result<Box<dyn Backend>> {
    match name {
        "kvm" => Ok(Box::new(ktstr::vm::kvm::KvmBackend { perf_mode })),
        "kvm-no-perf" => Ok(Box::new(ktstr::vm::kvm::KvmBackend { perf_mode: false })),
        "qemu-kvm" => ktstr::vm::select::qemu_kvm_backend()
            .map_err(|e| anyhow::anyhow!("qemu with -accel kvm: {e}")),
        other => Err(bad_input(format!(
            "unknown backend {other:?} for the vmm benchmark: use one of {}",
            BACKENDS.join(",")
        ))),
    }
}

fn guest_side(args: &Args) -> anyhow::Result<i32> {
    let kernel = args.kernel.clone().context("--guest-side needs --kernel")?;
    let initramfs = args
        .initramfs
        .clone()
        .context("--guest-side needs --initramfs")?;
    let dir = tempfile::tempdir()?;
    // Both backends boot the bzImage's uncompressed ELF, extracted once and cached; extract it
    // before the first timed boot so no run pays the one-time decompression.
    ktstr::vm::pvh::pvh_kernel(&kernel);
    let backends = args
        .backends
        .iter()
        .map(|name| Ok((name, backend_by_name(name, !args.no_perf_mode)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Round-robin (run 0 of every backend, then run 1 …): a drift in the L1 guest over the
    // benchmark (memory fragmentation, page cache, host load) then hits every backend alike.
    for i in 0..args.runs {
        for (name, backend) in &backends {
            let log = dir.path().join(format!("{name}-{i}.log"));
            let cfg = VmConfig {
                kernel: kernel.clone(),
                initramfs: initramfs.clone(),
                topology: args.topology,
                memory_mib: args.memory_mib,
                cmdline_extra: args.cmdline.clone(),
                console: ConsoleMode::Capture { log },
                timeout: Duration::from_secs(args.timeout_s),
                cpu_budget: args.cpu_budget,
            };
            let rec = match backend.run(&cfg) {
                Ok(run) => RunRecord::from_run(name, i, &run),
                Err(e) => RunRecord::from_error(name, i, &e.to_string()),
            };
            println!("{}", rec.to_line());
            if args.print_console {
                if let ConsoleMode::Capture { log } = &cfg.console {
                    print!("{}", std::fs::read_to_string(log).unwrap_or_default());
                }
            }
        }
    }
    Ok(ktstr::exit::OK)
}
