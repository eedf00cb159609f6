//! `ktstr kernel build|list|gc`: build (or reuse from the cache) kernels, list and prune the cache.

use crate::kernel::{self, KernelError, ResolveOptions, cache};
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Build (or reuse from the cache) a kernel and print where it is.
    Build(BuildArgs),
    /// List cached kernels, most recently used first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove all but the N most recently used kernels, and unneeded build and source trees.
    Gc {
        #[arg(long, default_value_t = 5)]
        keep: usize,
        /// Also remove the kept O= build trees of the kernels that stay (they only speed up
        /// rebuilds of corrupted entries and in-tree tool builds).
        #[arg(long)]
        drop_build_trees: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Kernel: a version (6.12, 6.12.117), path:DIR, tar:FILE, git:REPO#REF or image:FILE.
    pub spec: String,
    /// Config fragments (kernel-configs/) and inline CONFIG_X=V items, comma-separated, in order
    /// (later wins).
    #[arg(long = "config", value_name = "FRAGMENTS|CONFIG_X=V")]
    pub configs: Vec<String>,
    /// Start from this .config instead of tinyconfig.
    #[arg(long, value_name = "FILE")]
    pub base_config: Option<PathBuf>,
    /// make -j (default: the cores this process may use).
    #[arg(short, long, default_value_t = 0)]
    pub jobs: usize,
    /// Configure and print the cache key, but do not build.
    #[arg(long)]
    pub plan: bool,
    /// Do not download sources.
    #[arg(long)]
    pub offline: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Maps kernel errors to the CLI's exit codes (bad input -> 2).
pub fn to_cli(err: KernelError) -> anyhow::Error {
    if err.is_bad_input() {
        crate::cli::bad_input(err.to_string())
    } else {
        anyhow::Error::new(err)
    }
}

/// Resolves `--kernel`/`--config` for `run`/`shell`: builds if needed, with a progress line.
pub fn resolve_args(spec: &str, configs: &[String]) -> anyhow::Result<kernel::ResolvedKernel> {
    let opts = ResolveOptions {
        progress: true,
        ..Default::default()
    };
    kernel::resolve(spec, configs, &opts).map_err(|e| {
        if e.is_bad_input() {
            crate::cli::bad_input(format!("--kernel {spec}: {e}"))
        } else {
            anyhow::Error::new(e).context(format!("--kernel {spec}"))
        }
    })
}

pub fn run(cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Build(a) => build(a),
        Command::List { json } => list(json),
        Command::Gc {
            keep,
            drop_build_trees,
        } => {
            let r = cache::gc(keep, drop_build_trees);
            println!(
                "removed {} kernels, {} build trees, {} source trees; freed {:.1} MiB",
                r.removed_entries.len(),
                r.removed_build_trees,
                r.removed_source_trees,
                r.freed_bytes as f64 / (1 << 20) as f64
            );
            Ok(crate::exit::OK)
        }
    }
}

fn build(a: BuildArgs) -> anyhow::Result<i32> {
    super::ranges::build_jobs("--jobs", a.jobs)?;
    let opts = ResolveOptions {
        base_config: a.base_config.clone(),
        jobs: a.jobs,
        plan_only: a.plan,
        offline: a.offline,
        progress: true,
        worktree: None,
    };
    if a.plan {
        let p = kernel::plan(&a.spec, &a.configs, &opts).map_err(to_cli)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&p)?);
        } else {
            println!("key:     {}", p.key);
            println!("cached:  {}", p.cached);
            println!("version: {}", p.version);
            println!("config:  {}", p.config.display());
        }
        return Ok(crate::exit::OK);
    }
    let k = kernel::resolve(&a.spec, &a.configs, &opts).map_err(to_cli)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&k)?);
    } else {
        println!("image:     {}", k.image.display());
        if let Some(v) = &k.vmlinux {
            println!("vmlinux:   {}", v.display());
        }
        if let Some(key) = &k.key {
            println!("key:       {key}");
        }
        println!("version:   {}", k.version);
        println!("sched_ext: {}", k.sched_ext);
        let how = match (&k.key, k.cache_hit) {
            (None, _) => "prebuilt image (not cached)",
            (Some(_), true) => "hit",
            (Some(_), false) => "built",
        };
        println!("cache:     {how}");
    }
    Ok(crate::exit::OK)
}

fn list(json: bool) -> anyhow::Result<i32> {
    let entries = cache::list();
    if json {
        let v: Vec<_> = entries
            .iter()
            .map(|(e, m)| serde_json::json!({ "key": e.key, "dir": e.dir, "metadata": m }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(crate::exit::OK);
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_header([
        "key",
        "version",
        "spec",
        "config",
        "sched_ext",
        "cold build",
        "image",
    ]);
    for (e, m) in &entries {
        let Some(m) = m else {
            t.add_row([
                e.key[..12].to_string(),
                "?".into(),
                "(unreadable metadata)".into(),
            ]);
            continue;
        };
        let parts: Vec<&str> = m
            .inputs
            .parts
            .iter()
            .map(|p| {
                if p.name == "inline" {
                    p.text.as_str()
                } else {
                    p.name.as_str()
                }
            })
            .collect();
        let build = match (m.cold_total_s, m.timings.get("total_s")) {
            (Some(cold), _) => format!("{cold:.0}s"),
            (None, Some(t)) if !m.incremental => format!("{t:.0}s"),
            (None, Some(t)) => format!("{t:.0}s (incremental)"),
            _ => String::new(),
        };
        let mut spec = m.inputs.spec.clone();
        if !m.reproducible {
            spec.push_str(" (dirty, unreproducible)");
        }
        t.add_row([
            e.key[..12].to_string(),
            m.version.clone(),
            spec,
            parts.join(","),
            m.sched_ext.to_string(),
            build,
            format!(
                "{} KiB",
                m.files
                    .get(cache::IMAGE)
                    .map(|f| f.size / 1024)
                    .unwrap_or(0)
            ),
        ]);
    }
    println!("{t}");
    Ok(crate::exit::OK)
}
