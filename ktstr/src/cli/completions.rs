//! `ktstr completions SHELL` and `ktstr man`: shell completions and manual pages generated from
//! the clap definitions (clap_complete, clap_mangen), so they never drift from the flags.

use super::Cli;
use anyhow::Context;
use clap::CommandFactory;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Install, e.g.: ktstr completions bash > ~/.local/share/bash-completion/completions/ktstr; \
ktstr completions zsh > ~/.zfunc/_ktstr; ktstr completions fish > ~/.config/fish/completions/ktstr.fish")]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write ktstr.1 and one page per subcommand (ktstr-matrix.1, ...) into this directory
    /// instead of printing ktstr.1.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<i32> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "ktstr", &mut std::io::stdout());
    Ok(crate::exit::OK)
}

pub fn man(args: ManArgs) -> anyhow::Result<i32> {
    let cmd = Cli::command();
    match args.out {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("writing the manual pages into {}", dir.display()))?;
            eprintln!("manual pages in {}", dir.display());
        }
        None => clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout())
            .context("writing the manual page")?,
    }
    Ok(crate::exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_name_every_subcommand_and_flag() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ktstr", &mut buf);
            let text = String::from_utf8(buf).unwrap();
            // fish spells a long flag `-l detail`.
            for word in ["matrix", "report", "completions", "detail", "color"] {
                assert!(text.contains(word), "{shell:?} completion lacks {word}");
            }
        }
    }

    #[test]
    fn the_man_pages_cover_the_visible_subcommands() {
        let dir = tempfile::tempdir().unwrap();
        clap_mangen::generate_to(Cli::command(), dir.path()).unwrap();
        for page in [
            "ktstr.1",
            "ktstr-matrix.1",
            "ktstr-report.1",
            "ktstr-completions.1",
        ] {
            let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
            assert!(text.starts_with(".ie"), "{page} is roff");
        }
        let report = std::fs::read_to_string(dir.path().join("ktstr-report.1")).unwrap();
        assert!(report.contains("detail"), "{report}");
        assert!(!dir.path().join("ktstr-nested-l1-hold.1").exists());
    }
}
