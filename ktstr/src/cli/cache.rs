//! `ktstr cache export|import`: chosen cache entries as one verified archive (`cache_archive`).

use crate::cache_archive::{self, ArchiveError, CacheDirs, Selection};
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write chosen kernel and scheduler cache entries to one .tar.zst (all of them if none is
    /// chosen).
    Export {
        /// The archive to write (FILE.tar.zst).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// A cache key (or an 8+ digit prefix), a kernel spec as built (6.12), or
        /// SPEC/FRAGMENT+FRAGMENT (6.12/sched_ext+steal-time). Repeatable.
        #[arg(long = "kernel", value_name = "KEY|SPEC[/FRAGMENTS]")]
        kernels: Vec<String>,
        /// A scheduler: index key (cargo-scx_rusty@1.1.4), binary name (scx_rusty) or
        /// kernel:NAME (of the chosen kernels). Repeatable.
        #[arg(long = "sched", value_name = "KEY|NAME|kernel:NAME")]
        scheds: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Verify an archive from `ktstr cache export` and install the entries this cache lacks.
    Import {
        /// The archive (FILE.tar.zst).
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn to_cli(e: ArchiveError) -> anyhow::Error {
    if e.is_bad_input() {
        crate::cli::bad_input(e.to_string())
    } else {
        anyhow::Error::new(e)
    }
}

pub fn run(cmd: Command) -> anyhow::Result<i32> {
    let dirs = CacheDirs::default_dirs();
    match cmd {
        Command::Export {
            out,
            kernels,
            scheds,
            json,
        } => {
            let sel = Selection { kernels, scheds };
            let r = cache_archive::export(&dirs, &sel, &out).map_err(to_cli)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "wrote {}: {} kernel(s), {} scheduler(s), {:.1} MiB",
                    r.archive.display(),
                    r.kernels.len(),
                    r.scheds.len(),
                    r.bytes as f64 / (1 << 20) as f64
                );
            }
        }
        Command::Import { file, json } => {
            let r = cache_archive::import(&dirs, &file).map_err(to_cli)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "imported {} kernel(s), {} scheduler(s); {} already present",
                    r.kernels.len(),
                    r.scheds.len(),
                    r.already_present.len()
                );
            }
        }
    }
    Ok(crate::exit::OK)
}
