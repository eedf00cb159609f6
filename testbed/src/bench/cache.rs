//! `ktstr bench cache`: how long a cache-hit kernel resolution takes (what every `run`/`shell`/
//! matrix cell pays) against the cold build it replaces (from the entry's metadata.json).

use ktstr::kernel::{self, ResolveOptions, cache};
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kernel spec to resolve (built first if it is not cached yet).
    #[arg(long, default_value = "6.12")]
    pub kernel: String,
    /// Config fragments / items.
    #[arg(long = "config", default_value = "sched_ext,steal-time")]
    pub configs: Vec<String>,
    /// Timed cache-hit resolutions.
    #[arg(long, default_value_t = 21)]
    pub runs: usize,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    if a.runs == 0 {
        return Err(ktstr::cli::bad_input("--runs must be at least 1"));
    }
    let opts = ResolveOptions {
        progress: true,
        ..Default::default()
    };
    // Warm-up: builds on a cold cache, and brings the entry into the page cache like any reuse.
    let first =
        kernel::resolve(&a.kernel, &a.configs, &opts).map_err(ktstr::cli::kernel::to_cli)?;
    let key = first
        .key
        .clone()
        .ok_or_else(|| anyhow::anyhow!("{} is not a built kernel", a.kernel))?;
    let mut times = Vec::with_capacity(a.runs);
    for _ in 0..a.runs {
        let t = Instant::now();
        let k =
            kernel::resolve(&a.kernel, &a.configs, &opts).map_err(ktstr::cli::kernel::to_cli)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            k.cache_hit && k.key.as_deref() == Some(key.as_str()),
            "resolution was not a cache hit"
        );
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let meta = cache::Entry::open(&key)
        .ok_or_else(|| anyhow::anyhow!("entry {key} vanished"))?
        .metadata()?;
    // Entries from before `cold_total_s` existed: their own total is the cold time unless incremental.
    let cold = meta
        .cold_total_s
        .or_else(|| {
            (!meta.incremental)
                .then(|| meta.timings.get("total_s").copied())
                .flatten()
        })
        .unwrap_or(f64::NAN);
    let build = meta.timings.get("build_s").copied().unwrap_or(f64::NAN);
    let files: u64 = meta.files.values().map(|f| f.size).sum();
    println!(
        "kernel {} --config {} (key {})",
        a.kernel,
        a.configs.join(","),
        &key[..12]
    );
    println!(
        "cache-hit resolve: median {median:.1} ms, min {:.1} ms, max {:.1} ms over {} runs (target <= 100 ms; verifies {:.1} MiB by sha256)",
        times[0],
        times[times.len() - 1],
        times.len(),
        files as f64 / (1 << 20) as f64
    );
    let cold_s = if cold.is_nan() {
        "unknown".to_string()
    } else {
        format!("{cold:.0} s")
    };
    println!(
        "cold build (metadata.json): {cold_s}; last build: make {build:.0} s{}",
        if meta.incremental {
            " (incremental rebuild)"
        } else {
            " (cold)"
        }
    );
    // Where a hit's time goes (medians over the same number of runs).
    let spec = kernel::KernelSpec::parse(&a.kernel).map_err(ktstr::cli::kernel::to_cli)?;
    let entry = cache::Entry::open(&key).ok_or_else(|| anyhow::anyhow!("entry {key} vanished"))?;
    let part = |f: &mut dyn FnMut()| {
        let mut t: Vec<f64> = (0..a.runs)
            .map(|_| {
                let s = Instant::now();
                f();
                s.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let identify = part(&mut || {
        let _ = kernel::source::identify(&spec, &a.kernel, true);
    });
    let toolchain = part(&mut || {
        let _ = kernel::build::toolchain_identity();
    });
    let verify = part(&mut || {
        let _ = entry.verify();
    });
    println!(
        "  of which: source identify {identify:.2} ms, toolchain versions {toolchain:.2} ms, sha256 verify {verify:.1} ms"
    );
    if !cold.is_nan() {
        println!("ratio cold/hit: {:.0}x", cold * 1000.0 / median);
    }
    Ok(ktstr::exit::OK)
}
