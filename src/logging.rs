//! The one logging set-up: tracing to stderr, JSON or human-readable. The long-running commands
//! (`agent`, `proxy`, `watch`) always log; the others log only with `-v` (or `ITSUP_LOG` set).
//! One variable, `ITSUP_LOG` (tracing's EnvFilter syntax, e.g. `debug` or `info,itsup=debug`),
//! sets the filter everywhere unless a command's own option does (`--log-level`, `-v`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The variable every command reads its log filter from.
pub(crate) const ENV: &str = "ITSUP_LOG";

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// One JSON object per line (for log collectors).
    Json,
    /// Human-readable.
    Pretty,
}

/// The filter `ITSUP_LOG` sets, if any.
pub(crate) fn from_env() -> Option<String> {
    std::env::var(ENV).ok().filter(|f| !f.trim().is_empty())
}

/// Installs the global subscriber with `filter` (an invalid filter falls back to `info`, said
/// once on stderr). A second call (tests running a command in-process twice) keeps the first.
pub(crate) fn init(style: Style, filter: &str) {
    let filter = EnvFilter::builder().parse(filter).unwrap_or_else(|e| {
        eprintln!("invalid log filter {filter:?} ({e}); logging at info");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match style {
        Style::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        // Colour only on a terminal, and never with NO_COLOR set.
        Style::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .try_init(),
    };
}
