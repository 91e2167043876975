//! Start-up and shutdown of `itsup proxy`: bind the listeners (plain and TLS) and the admin
//! API, start the supervisor, the ACME manager and the config watcher, then drain on SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::TcpListener;

use super::base::batch;
use super::config::{self, ProxyConfig, schema};
use super::l4::listener::Listener as L4Listener;
use super::request::context::Edge;
use super::runtime::{reload, shared_states, state, supervisor};
use super::serve::{admin, listener, tls_listener};
use super::tls::store::{Source, Store};
use super::tls::{cert_dir, certs, self_signed};
use super::{acme, l4, tls};

/// Command-line arguments of `itsup proxy`.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Config file (YAML; its JSON Schema comes from `--print-schema`). Its directory is
    /// watched and the file reloaded on change; SIGHUP reloads too.
    #[arg(
        long,
        short = 'c',
        env = "ITSUP_PROXY_CONFIG",
        required_unless_present = "print_schema"
    )]
    pub config: Option<PathBuf>,
    /// Admin API address (overrides `admin.address` in the file).
    #[arg(long, env = "ITSUP_PROXY_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Worker threads; 1 runs everything on a single-threaded runtime. Default: one per CPU.
    #[arg(long, env = "ITSUP_PROXY_THREADS")]
    pub threads: Option<usize>,
    /// Validate the config file and exit (0 valid, 1 invalid).
    #[arg(long)]
    pub check: bool,
    /// Print the JSON Schema of the config file and exit.
    #[arg(long)]
    pub print_schema: bool,
}

/// Runs the proxy until SIGTERM/SIGINT, then drains. Returns the exit code.
pub fn run(args: ProxyArgs) -> anyhow::Result<i32> {
    if args.print_schema {
        println!("{}", serde_json::to_string_pretty(&schema())?);
        return Ok(0);
    }
    let path = args.config.clone().context("--config is required")?;
    let cfg = config::load(&path)?;
    if args.check {
        println!("{}: ok", path.display());
        return Ok(0);
    }
    crate::logging::init(
        crate::logging::Style::Json,
        &crate::logging::from_env().unwrap_or_else(|| "info".into()),
    );

    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(cfg, path, args.admin_listen, threads <= 1))
}

async fn serve(
    cfg: ProxyConfig,
    path: PathBuf,
    admin_override: Option<SocketAddr>,
    single_thread: bool,
) -> anyhow::Result<i32> {
    if single_thread {
        batch::start();
    }
    let shared = state::Shared::new(cfg.clone(), &path)?;
    if let Some(acme_cfg) = &cfg.acme {
        let manager =
            acme::Manager::new(acme_cfg).with_context(|| format!("{}: acme", path.display()))?;
        let _ = shared.acme.set(manager);
    }
    let settings = listener::ConnSettings::from_config(&cfg);
    let supervisor = supervisor::Supervisor::new(
        settings.limits(),
        shared.snapshot.load().shortest_response_ms,
    );
    tokio::spawn(supervisor.clone().run(shared.clone()));
    if cfg.redis.is_some() {
        // Drain/maint states stored by any proxy sharing this Redis apply before traffic.
        if !shared_states::apply_once(&shared).await {
            tracing::warn!("redis unreachable at start: admin states apply once it answers");
        }
        tokio::spawn(shared_states::follow(shared.clone()));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut fallback = None;
    // TLS-ALPN-01 validations are answered on every TLS listener when ACME is configured.
    let challenges: Option<tls::resolver::AlpnChallenges> = shared.acme.get().map(|m| {
        let c = m.challenges();
        Arc::new(move |name: &str| c.tls_alpn01(name)) as tls::resolver::AlpnChallenges
    });
    let mut stores = Vec::new();
    for l in &cfg.listeners {
        let sock = TcpListener::bind(&l.address)
            .await
            .with_context(|| format!("binding {}", l.address))?;
        let Some(tls) = &l.tls else {
            eprintln!("itsup proxy: listening on {}", sock.local_addr()?);
            let edge = Edge {
                tls: false,
                redirect_https: l.redirect_https.as_ref().map(|r| r.port),
            };
            tokio::spawn(listener::serve(
                sock,
                shared.clone(),
                settings.clone(),
                supervisor.clone(),
                stop_rx.clone(),
                edge,
            ));
            continue;
        };
        let fallback = match &fallback {
            Some(f) => Arc::clone(f),
            None => fallback.insert(self_signed::make()?).clone(),
        };
        let (mut edge, store, terminator) = tls_edge(tls, fallback, challenges.clone())
            .with_context(|| format!("listener {}", l.address))?;
        stores.push(store);
        // TCP routes of the same address share the port, chosen by SNI before TLS.
        if let Some(t) = cfg.tcp.iter().find(|t| t.address == l.address) {
            let l4 = L4Listener::build(t, true, Some(terminator), &shared.metrics.l4)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("tcp listener {}", t.address))?;
            edge.l4 = Some(Arc::new(l4));
        }
        eprintln!("itsup proxy: listening on {} (TLS)", sock.local_addr()?);
        tokio::spawn(tls_listener::serve(
            sock,
            edge,
            shared.clone(),
            settings.clone(),
            supervisor.clone(),
            stop_rx.clone(),
        ));
    }
    let https: Vec<&str> = cfg
        .listeners
        .iter()
        .filter(|l| l.tls.is_some())
        .map(|l| l.address.as_str())
        .collect();
    for t in cfg
        .tcp
        .iter()
        .filter(|t| !https.contains(&t.address.as_str()))
    {
        let terminator = match &t.tls {
            Some(tls) => {
                let fallback = match &fallback {
                    Some(f) => Arc::clone(f),
                    None => fallback.insert(self_signed::make()?).clone(),
                };
                let (_, store, terminator) = tls_edge(tls, fallback, None)
                    .with_context(|| format!("tcp listener {}", t.address))?;
                stores.push(store);
                Some(terminator)
            }
            None => None,
        };
        let listener = L4Listener::build(t, false, terminator, &shared.metrics.l4)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("tcp listener {}", t.address))?;
        let sock = TcpListener::bind(&t.address)
            .await
            .with_context(|| format!("binding {}", t.address))?;
        eprintln!("itsup proxy: listening on {} (TCP)", sock.local_addr()?);
        tokio::spawn(l4::tcp::serve(
            sock,
            Arc::new(listener),
            shared.clone(),
            stop_rx.clone(),
        ));
    }
    for u in &cfg.udp {
        let sock = tokio::net::UdpSocket::bind(&u.address)
            .await
            .with_context(|| format!("binding {}/udp", u.address))?;
        eprintln!("itsup proxy: listening on {} (UDP)", sock.local_addr()?);
        tokio::spawn(l4::udp::serve(
            sock,
            u.clone(),
            shared.clone(),
            stop_rx.clone(),
        ));
    }
    let admin_addr = admin_override
        .map(|a| a.to_string())
        .or_else(|| cfg.admin.as_ref().map(|a| a.address.clone()));
    if let Some(addr) = admin_addr {
        let sock = TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding admin {addr}"))?;
        eprintln!("itsup proxy: admin on {}", sock.local_addr()?);
        tokio::spawn(admin::serve(admin::Listener::Tcp(sock), shared.clone()));
    }
    if let Some(path) = cfg.admin.as_ref().and_then(|a| a.socket.as_ref()) {
        let sock = admin::bind_unix(std::path::Path::new(path))
            .with_context(|| format!("binding admin socket {path}"))?;
        eprintln!("itsup proxy: admin on unix:{path}");
        tokio::spawn(admin::serve(admin::Listener::Unix(sock), shared.clone()));
    }
    // Orders start once the listeners that answer HTTP-01 are up.
    if let Some(manager) = shared.acme.get() {
        // Every certificate the manager holds (loaded from the store at start, then each issue
        // or renewal) goes into every TLS listener's SNI map.
        tls::store::follow(stores, Source::Acme, manager.certificates(), |issued| {
            issued
                .iter()
                .map(|i| certs::Loaded {
                    names: i.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
                    key: i.key.clone(),
                })
                .collect()
        });
        manager.start();
    }
    reload::watch(shared.clone())?;

    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let drain = Duration::from_millis(shared.snapshot.load().config.timeouts.shutdown_drain_ms);
    tracing::info!(
        drain_ms = drain.as_millis() as u64,
        "shutting down, draining connections"
    );
    let _ = stop_tx.send(true);
    supervisor.shutdown();
    let deadline = Instant::now() + drain;
    while shared.metrics.active_connections.load(Ordering::Relaxed) > 0 && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = shared.metrics.active_connections.load(Ordering::Relaxed);
    if left > 0 {
        tracing::warn!(
            connections = left,
            "drain time over, closing remaining connections"
        );
    }
    Ok(0)
}

/// An HTTPS listener's certificate store (configured files now, the folder watched from now
/// on), its rustls config, and an acceptor on the same store without ALPN for TCP routes
/// that terminate TLS.
fn tls_edge(
    tls: &config::ListenerTls,
    fallback: Arc<rustls::sign::CertifiedKey>,
    challenges: Option<tls::resolver::AlpnChallenges>,
) -> anyhow::Result<(tls_listener::TlsEdge, Arc<Store>, tokio_rustls::TlsAcceptor)> {
    let store = Arc::new(Store::new(fallback, tls.unknown_sni));
    let files = tls
        .certificates
        .iter()
        .map(|p| certs::load_pair(Path::new(&p.cert), Path::new(&p.key)))
        .collect::<Result<Vec<_>, _>>()?;
    store.set(Source::Files, files);
    if let Some(dir) = &tls.cert_dir {
        cert_dir::watch(PathBuf::from(dir), store.clone())
            .with_context(|| format!("watching certificate folder {dir}"))?;
    }
    let server = tls::server::config(store.clone(), challenges)?;
    let mut bare = (*server).clone();
    bare.alpn_protocols.clear();
    let terminator = tokio_rustls::TlsAcceptor::from(Arc::new(bare));
    let edge = tls_listener::TlsEdge {
        acceptor: tokio_rustls::TlsAcceptor::from(server),
        handshake_timeout: Duration::from_millis(tls.handshake_timeout_ms),
        handshakes: Arc::new(tokio::sync::Semaphore::new(tls.max_handshakes)),
        l4: None,
    };
    Ok((edge, store, terminator))
}
