//! `itsup agent`: an HAProxy agent-check server that answers with gRPC health.
//!
//! HAProxy connects, sends `<host> <port> <ssl|no-ssl> <authority>[ key=value…]\n`, and reads
//! one line back. The agent asks the named backend `grpc.health.v1.Health/Check` over a cached
//! channel and replies `up`/`down #reason`, with `drain`/`ready` when a rollout drains the
//! backend (see `docs/agent.md`).
//!
//! Files: [`config`] (flags > env > TOML > defaults), [`protocol`] (wire format), [`check`]
//! (one RPC under a deadline), [`channels`] (connector and channel cache), [`drain`] (the drain
//! file), [`metrics`] (Prometheus), [`server`] (listener and connections); logging is `crate::logging`.

#[cfg(feature = "full")]
pub mod channels;
#[cfg(feature = "full")]
pub mod check;
#[cfg(feature = "full")]
pub mod config;
#[cfg(feature = "full")]
pub mod drain;
#[cfg(feature = "full")]
pub mod metrics;
pub mod protocol;
#[cfg(feature = "full")]
pub mod server;

#[cfg(feature = "full")]
use std::sync::Arc;

#[cfg(feature = "full")]
pub use config::AgentArgs;
#[cfg(feature = "full")]
use config::LogFormat;

#[cfg(feature = "full")]
/// Exit code for a configuration rejected at start.
const EXIT_CONFIG: i32 = 2;

#[cfg(feature = "full")]
/// Runs the agent until SIGTERM or SIGINT; returns the process exit code.
pub fn run(args: AgentArgs) -> anyhow::Result<i32> {
    let config = match config::resolve(args, &|key| std::env::var(key).ok()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: invalid agent configuration: {e}");
            return Ok(EXIT_CONFIG);
        }
    };
    let (tls, roots) = match channels::tls_config(config.ca_file.as_deref()) {
        Ok(ok) => ok,
        Err(e) => {
            eprintln!("error: invalid agent configuration: {e}");
            return Ok(EXIT_CONFIG);
        }
    };
    let style = match config.log_format {
        LogFormat::Json => crate::logging::Style::Json,
        LogFormat::Pretty => crate::logging::Style::Pretty,
    };
    crate::logging::init(style, &config.log_level);
    tracing::info!(
        listen = %config.listen,
        metrics_listen = %config.metrics_listen,
        config_file = ?config.config_file,
        timeout_ms = config.timeout.as_millis() as u64,
        read_timeout_ms = config.read_timeout.as_millis() as u64,
        idle_timeout_ms = config.idle_timeout.as_millis() as u64,
        channel_idle_secs = config.channel_idle.as_secs(),
        max_connections = config.max_connections,
        drain_file = ?config.drain_file,
        ca_file = ?config.ca_file,
        tls_roots = roots,
        log_format = %config.log_format,
        log_level = %config.log_level,
        sources = %config.sources_summary(),
        "effective configuration"
    );
    if roots == 0 {
        tracing::warn!("no trusted root certificates: every ssl check will fail with a TLS error");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(config, tls))
}

#[cfg(feature = "full")]
async fn serve(config: config::Config, tls: rustls::ClientConfig) -> anyhow::Result<i32> {
    use anyhow::Context as _;
    use tokio::signal::unix::{SignalKind, signal};

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let agent_addr = listener.local_addr()?;
    let metrics = Arc::new(metrics::Metrics::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    let metrics_listener = metrics::bind(config.metrics_listen).await;
    let metrics_addr = metrics_listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .unwrap_or_else(|| "none".to_owned());
    if let Some(listener) = metrics_listener {
        tokio::spawn(metrics::serve(listener, metrics.clone(), stop_rx.clone()));
    }

    // Enough for the slowest check in flight to finish and its reply to be written.
    let grace = config.timeout + config.read_timeout + std::time::Duration::from_secs(1);
    let cache =
        channels::ChannelCache::new(tls, config.timeout, config.channel_idle, metrics.clone());
    let drain = drain::Drain::new(config.drain_file.clone());
    let ctx = Arc::new(server::Context::new(config, cache, drain, metrics));

    let sweeper = {
        let ctx = ctx.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ctx.cache.sweep_interval());
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tick.tick() => { ctx.cache.evict_idle(); }
                }
            }
        })
    };

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = sigterm.recv() => "SIGTERM",
            _ = sigint.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
        let _ = stop_tx.send(true);
    });

    tracing::info!(agent_addr = %agent_addr, metrics_addr = %metrics_addr, "listening");
    server::serve(listener, ctx, stop_rx, grace).await;
    sweeper.abort();
    tracing::info!("stopped");
    Ok(0)
}
