//! Printing diagnostics the same way in every command.

use crate::diagnostic::Diagnostic;

use super::Global;

/// Prints diagnostics to stderr (`path:line:col: error: message`), then a one-line summary of
/// which projects were left out.
pub fn diagnostics(
    global: &Global,
    diags: &[Diagnostic],
    broken: &std::collections::BTreeSet<String>,
) {
    let color = global.color.enabled_stderr();
    for d in diags {
        if color {
            eprintln!(
                "\x1b[1m{}:{}:{}:\x1b[0m \x1b[31;1merror:\x1b[0m {}",
                d.file.display(),
                d.line,
                d.column,
                d.message
            );
        } else {
            eprintln!("{d}");
        }
    }
    if !broken.is_empty() {
        let names: Vec<&str> = broken.iter().map(String::as_str).collect();
        eprintln!("{} error(s); left out: {}", diags.len(), names.join(", "));
    } else if !diags.is_empty() {
        eprintln!("{} error(s)", diags.len());
    }
}

/// Writes to stdout; `Ok(false)` when the reader went away (`itsup diff | head`), which is not
/// an error worth a message.
pub fn stdout(text: &str) -> std::io::Result<bool> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}

/// Says which broken projects are still routed with their last valid configuration.
pub fn kept(global: &Global, kept: &std::collections::BTreeSet<String>) {
    if !kept.is_empty() && !global.quiet {
        let names: Vec<&str> = kept.iter().map(String::as_str).collect();
        eprintln!(
            "still routed with their last valid configuration: {}",
            names.join(", ")
        );
    }
}

/// Runs the generator for a one-shot command and reports its diagnostics. The values live until
/// the process ends (leaked on purpose: freeing thousands of them one by one is wasted time).
/// `None` when a platform file is invalid and nothing may be written.
pub fn generate(global: &Global) -> anyhow::Result<Option<&'static crate::pipeline::Generated>> {
    let generated: &'static crate::pipeline::Generated =
        Box::leak(Box::new(crate::pipeline::generate(&global.root)?));
    let outcome = &generated.outcome;
    diagnostics(global, &outcome.diagnostics, &outcome.broken);
    kept(global, &outcome.kept);
    Ok(generated.plan.is_some().then_some(generated))
}
