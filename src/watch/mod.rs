//! `itsup watch`: routes labelled containers through HAProxy, one hostname per compose project,
//! so several worktrees of one app run side by side without publishing host ports.
//!
//! The loop: Docker events ([`discovery`]) are merged into batches ([`debounce`]); each batch
//! rescans the containers, maps their labels to the same Plan `itsup render` uses ([`labels`],
//! [`routes`]), renders it with the shared HAProxy renderer and, when the config changed, has
//! [`haproxy`] check and load it. [`status`] serves the result; [`hosts`] writes it to a hosts
//! file for resolvers that don't map `*.localhost`.

pub mod container;
pub mod debounce;
pub mod discovery;
pub mod haproxy;
pub mod hosts;
pub mod labels;
pub mod routes;
pub mod status;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use haproxy::{ApplyError, HaproxyOptions, HaproxyProcess};
use routes::Routing;

/// Command-line arguments of `itsup watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// Docker network shared by HAProxy and the routed containers.
    #[arg(long, env = "ITSUP_WATCH_NETWORK", default_value = "proxy")]
    pub network: String,
    /// Suffix of inferred host names (`<service>.<project><suffix>`), e.g. `.local`.
    #[arg(long, default_value = ".localhost")]
    pub suffix: String,
    /// Port of plain HTTP routes (by Host header).
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    /// Port of TLS passthrough routes (by SNI).
    #[arg(long, default_value_t = 443)]
    pub https_port: u16,
    /// Config directory, HAProxy's working directory (bind-mount this directory, not the file).
    #[arg(long, env = "ITSUP_WATCH_DIR", default_value = ".itsup-watch")]
    pub dir: PathBuf,
    /// HAProxy binary started and supervised by the watcher.
    #[arg(long, default_value = "haproxy")]
    pub haproxy: PathBuf,
    /// Drive an HAProxy started elsewhere through its master socket instead of starting one.
    #[arg(long)]
    pub master_socket: Option<PathBuf>,
    /// Address of the JSON status port (`off` to disable).
    #[arg(long, default_value = "127.0.0.1:7480")]
    pub status: String,
    /// Quiet period that closes a batch of events, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub debounce_ms: u64,
    /// Longest a batch of events waits before it is applied, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub max_wait_ms: u64,
}

impl WatchArgs {
    /// The mapping options these arguments stand for.
    pub fn route_options(&self) -> routes::Options {
        routes::Options {
            suffix: normalize_suffix(&self.suffix),
            http_port: self.http_port,
            https_port: self.https_port,
            network: self.network.clone(),
        }
    }
}

/// `local` and `.local` both mean the `.local` suffix.
pub fn normalize_suffix(suffix: &str) -> String {
    if suffix.is_empty() || suffix.starts_with('.') {
        suffix.to_string()
    } else {
        format!(".{suffix}")
    }
}

/// Runs the watcher until SIGINT or SIGTERM.
pub fn run(args: WatchArgs) -> anyhow::Result<i32> {
    crate::logging::init(
        crate::logging::Style::Pretty,
        &crate::logging::from_env().unwrap_or_else(|| "info".into()),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(watch(args))
}

async fn watch(args: WatchArgs) -> anyhow::Result<i32> {
    let opts = args.route_options();
    let docker = discovery::connect().await?;
    let shared: status::Shared = Arc::new(Mutex::new(status::Status::default()));
    if args.status != "off" {
        let addr: SocketAddr = args
            .status
            .parse()
            .with_context(|| format!("--status `{}`: expected ip:port or off", args.status))?;
        let bound = status::serve(addr, shared.clone()).await?;
        println!("status: http://{bound}/status");
    }
    let mut haproxy = HaproxyProcess::new(HaproxyOptions {
        bin: args.haproxy.clone(),
        dir: args.dir.clone(),
        external_master: args.master_socket.clone(),
    })?;

    let (tx, rx) = mpsc::unbounded_channel();
    let events = Arc::new(AtomicU64::new(0));
    tokio::spawn(discovery::follow(
        docker.clone(),
        tx.clone(),
        events.clone(),
    ));
    let mut batches = debounce::Debouncer::new(
        rx,
        Duration::from_millis(args.debounce_ms),
        Duration::from_millis(args.max_wait_ms),
    );
    // Templates are embedded: the watcher renders exactly what `itsup render` would.
    let templates = crate::render::Templates::embedded().context("loading the HAProxy template")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut live_config: Option<String> = None;
    let mut shown: Option<Routing> = None;
    let mut crashes = 0u32;

    loop {
        tokio::select! {
            batch = batches.next_batch() => {
                let Some(merged) = batch else { break };
                let containers = match discovery::scan(&docker, &args.network).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("scan failed, retrying in 1 s: {e:#}");
                        retry_later(&tx, Duration::from_secs(1));
                        continue;
                    }
                };
                let (plan, outcome) = routes::build(&containers, &opts);
                let mut error = None;
                match crate::render::haproxy::render_config(&plan, &templates) {
                    Err(e) => error = Some(format!("rendering the HAProxy config failed: {e}")),
                    Ok(config) if live_config.as_ref() != Some(&config) => {
                        match haproxy.apply(&config).await {
                            Ok(()) => {
                                live_config = Some(config);
                                tracing::info!(
                                    reloads = haproxy.reloads,
                                    merged_events = merged,
                                    "HAProxy config applied"
                                );
                            }
                            Err(ApplyError::Rejected(text)) => {
                                if let Ok(mut s) = shared.lock() {
                                    s.rejected += 1;
                                }
                                error = Some(format!("{}", ApplyError::Rejected(text)));
                            }
                            Err(ApplyError::Other(e)) => {
                                error = Some(format!("applying the HAProxy config failed: {e:#}"));
                                retry_later(&tx, Duration::from_secs(1));
                            }
                        }
                    }
                    Ok(_) => {}
                }
                if let Some(e) = &error {
                    tracing::error!("{e}");
                }
                if shown.as_ref() != Some(&outcome) {
                    let mut out = std::io::stdout().lock();
                    let _ = write!(out, "{outcome}");
                    let _ = out.flush();
                }
                if let Ok(mut s) = shared.lock() {
                    s.generation += 1;
                    s.events = events.load(Ordering::Relaxed);
                    s.reloads = haproxy.reloads;
                    s.last_error = error.clone();
                    // Problems describe the labels as they are now; routes only what is live.
                    s.problems = outcome.problems.clone();
                    if error.is_none() {
                        s.routes = outcome.routes.clone();
                    }
                }
                shown = Some(outcome);
            }
            exit = haproxy.exited() => {
                crashes += 1;
                let wait = Duration::from_millis(250 * u64::from(crashes.min(20)));
                tracing::error!("haproxy exited ({exit}); starting it again in {wait:?}");
                // Forgetting the live config makes the next batch check it and start HAProxy.
                live_config = None;
                retry_later(&tx, wait);
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    haproxy.stop(Duration::from_secs(5)).await;
    Ok(0)
}

/// Nudges the loop again after `delay`, for failures that a later attempt may not repeat.
fn retry_later(tx: &mpsc::UnboundedSender<()>, delay: Duration) {
    let tx = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _ = tx.send(());
    });
}
