//! How the terminal report is shown (`--color`, `--detail`), shared by `ktstr report` and
//! `ktstr matrix`.

use ktstr_matrix::render::TerminalOptions;
use std::io::IsTerminal;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal and NO_COLOR is not set.
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ViewArgs {
    /// Colour the terminal report (NO_COLOR, when set and not empty, turns `auto` off).
    #[arg(long, value_enum, default_value_t)]
    pub color: ColorChoice,
    /// Every metric's table after the summary (report.md and report.html always have them).
    #[arg(long)]
    pub detail: bool,
}

/// `auto`: a terminal, and no NO_COLOR (https://no-color.org: any non-empty value).
fn colour(choice: ColorChoice, tty: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => tty && no_color.is_none_or(|v| v.is_empty()),
    }
}

impl ViewArgs {
    pub fn options(&self) -> TerminalOptions {
        let tty = std::io::stdout().is_terminal();
        TerminalOptions {
            color: colour(self.color, tty, std::env::var_os("NO_COLOR").as_deref()),
            detail: self.detail,
            tty,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn auto_colours_a_terminal_unless_no_color_is_set() {
        assert!(colour(ColorChoice::Auto, true, None));
        assert!(!colour(ColorChoice::Auto, false, None));
        assert!(!colour(ColorChoice::Auto, true, Some(OsStr::new("1"))));
        assert!(colour(ColorChoice::Auto, true, Some(OsStr::new(""))));
        assert!(colour(ColorChoice::Always, false, Some(OsStr::new("1"))));
        assert!(!colour(ColorChoice::Never, true, None));
    }
}
