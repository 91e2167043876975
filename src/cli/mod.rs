//! Command-line interface: global options, the subcommand table and exit codes.
//!
//! Each subcommand lives in its own file and returns the process exit code, so the README's exit-code
//! contract (0 ok, 1 error, 2 changes pending) is decided in one obvious place per command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub mod apply;
mod color;
pub mod completions;
pub mod diff;
pub mod down;
pub mod hosts;
pub mod init;
pub mod migrate;
pub mod render;
mod report;
pub mod schema;
pub mod status;
pub mod svc;
mod swarm;
pub mod validate;

pub use color::ColorChoice;

/// Options every subcommand understands.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Root folder holding `projects/` (and the generated `proxy/` and `upstream/`).
    #[arg(long, global = true, env = "ITSUP_ROOT", default_value = ".")]
    pub root: PathBuf,
    /// Log what happens on stderr: the generator's stages and every Compose/Docker call
    /// (`-vv`: with details). `ITSUP_LOG` sets a filter instead.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// When to colour output.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Parser)]
#[command(name = "itsup", version, about = "Run a small self-hosted platform from a projects/ folder", long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Output format of machine-readable reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check projects/ against the schema and the semantic rules; report every error at once.
    Validate(validate::Args),
    /// Write every generated artifact (only changed files; stale generated files removed).
    Render(render::Args),
    /// Show what `render` would change as a unified diff.
    Diff(diff::Args),
    /// Render, write, then deploy what changed (zero-downtime rollouts).
    Apply(apply::Args),
    /// Stop the project stacks, then the proxy (`--clean`: remove containers and networks, never volumes).
    Down(down::Args),
    /// Run Compose for one project's generated stack, arguments passed through.
    Svc(svc::Args),
    /// Desired vs running, per project and service.
    Status(status::Args),
    /// Print the JSON Schema of an input file.
    Schema(schema::Args),
    /// Scaffold a root folder (itsup.yml, schemas for editors).
    Init(init::InitArgs),
    /// Scaffold a new project.
    Create(init::CreateArgs),
    /// Bring an itsUP projects/ tree to itsup's names (ingress.yml → itsup-project.yml, schemaVersion).
    Migrate(migrate::Args),
    /// HAProxy agent-check server answering with gRPC health.
    Agent(crate::agent::AgentArgs),
    /// Runtime L7/L4 proxy and load balancer.
    Proxy(crate::proxy::ProxyArgs),
    /// Route labelled containers through HAProxy.
    Watch(crate::watch::WatchArgs),
    /// Write the host names `itsup watch` routes into a managed block of /etc/hosts.
    Hosts(hosts::Args),
    /// Print shell completions (bash, zsh, fish).
    Completions(completions::Args),
    /// Print the man page (roff), generated from this command line.
    Man(completions::ManArgs),
}

/// `-v` logs what the generator and deploy do (stage timings, every Compose and Docker call),
/// `-vv` with details; without it only `ITSUP_LOG` turns logging on.
fn log_for_verbosity(verbose: u8) {
    let filter = match verbose {
        0 => crate::logging::from_env(),
        1 => Some("itsup=info".to_string()),
        _ => Some("itsup=debug".to_string()),
    };
    if let Some(filter) = filter {
        crate::logging::init(crate::logging::Style::Pretty, &filter);
    }
}

/// Entry point used by `main.rs`: parse, dispatch, map errors to exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Validate(_) | Command::Render(_) | Command::Diff(_) | Command::Status(_)
    ) {
        batch_allocator();
    }
    let global = cli.global;
    if !matches!(
        cli.command,
        Command::Agent(_) | Command::Proxy(_) | Command::Watch(_)
    ) {
        log_for_verbosity(global.verbose);
    }
    let result = match cli.command {
        Command::Validate(args) => validate::run(&global, args),
        Command::Render(args) => render::run(&global, args),
        Command::Diff(args) => diff::run(&global, args),
        Command::Apply(args) => apply::run(&global, args),
        Command::Down(args) => down::run(&global, args),
        Command::Svc(args) => svc::run(&global, args),
        Command::Status(args) => status::run(&global, args),
        Command::Schema(args) => schema::run(args),
        Command::Init(args) => init::run_init(&global, args),
        Command::Create(args) => init::run_create(&global, args),
        Command::Migrate(args) => migrate::run(&global, args),
        Command::Agent(args) => crate::agent::run(args),
        Command::Proxy(args) => crate::proxy::run(args),
        Command::Watch(args) => crate::watch::run(args),
        Command::Hosts(args) => hosts::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => completions::run_man(args),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// One-shot generator runs allocate many small values on two threads and exit: perf showed a
/// fifth of a 1000-project run in glibc's trimming and consolidation. Keeping freed memory
/// (large trim threshold, generous top pad) avoids that work. Long-running servers (agent,
/// proxy, watch) keep the defaults, so their memory is returned as usual.
fn batch_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes allocator thresholds; it is called before any other thread
    // exists and with documented parameters.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
