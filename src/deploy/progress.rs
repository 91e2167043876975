//! Live progress of an apply: one line per service, with a spinner while it waits, on stderr.
//! Spinners only on a terminal; without one (CI, pipes) each service prints one final line;
//! `-q` prints nothing but errors.

use std::borrow::Cow;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// How much to show.
#[derive(Debug, Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let live = !quiet && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        Progress {
            multi: live.then(MultiProgress::new),
            quiet,
        }
    }

    /// A line for `<stack>/<service>`.
    pub fn line(&self, stack: &str, service: &str, action: &str) -> Line {
        let label = format!("{stack}/{service}");
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_prefix(label.clone());
            bar.set_message(action.to_string());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Line {
            bar,
            label,
            action: action.to_string(),
            quiet: self.quiet,
        }
    }
}

/// One service's line.
#[derive(Debug)]
pub struct Line {
    bar: Option<ProgressBar>,
    label: String,
    action: String,
    quiet: bool,
}

impl Line {
    /// What it is doing now (spinner text).
    pub fn step(&self, what: impl Into<Cow<'static, str>>) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}: {}", self.action, what.into()));
        }
    }

    /// Finished well.
    pub fn done(&self, what: &str) {
        let text = format!("✓ {} {}: {what}", self.label, self.action);
        match &self.bar {
            Some(bar) => bar.finish_with_message(format!("{}: {what}", self.action)),
            None if !self.quiet => eprintln!("{text}"),
            None => {}
        }
    }

    /// Failed: shown even under `-q`.
    pub fn fail(&self, why: &str) {
        let text = format!("✗ {} {}: {why}", self.label, self.action);
        match &self.bar {
            Some(bar) => bar.abandon_with_message(format!("{} FAILED: {why}", self.action)),
            None => eprintln!("{text}"),
        }
    }
}
