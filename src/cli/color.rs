//! Colour choice shared by every subcommand that prints diffs or diagnostics.

use clap::ValueEnum;

/// `--color auto|always|never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to emit ANSI colours on stdout, honouring `NO_COLOR` and whether it is a terminal.
    pub fn enabled(self) -> bool {
        use std::io::IsTerminal;
        self.allows(std::io::stdout().is_terminal())
    }

    /// Same as [`ColorChoice::enabled`], for stderr.
    pub fn enabled_stderr(self) -> bool {
        use std::io::IsTerminal;
        self.allows(std::io::stderr().is_terminal())
    }

    fn allows(self, terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => std::env::var_os("NO_COLOR").is_none() && terminal,
        }
    }
}
