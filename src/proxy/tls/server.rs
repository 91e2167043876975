//! A TLS listener's rustls config, built once at start: TLS 1.2 and 1.3 with rustls' safe
//! defaults (no compression, no renegotiation, forward-secret AEAD suites only), ALPN `h2` then
//! `http/1.1`, and session resumption whose ticket key and session cache are shared by every
//! listener of the process. Certificates change through the resolver's store, never by
//! rebuilding this config, so resumption survives certificate reloads.

use std::sync::{Arc, OnceLock};

use rustls::ServerConfig;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};

use super::resolver::{ACME_TLS_ALPN, AlpnChallenges, SniResolver};
use super::store::Store;

/// Session cache entries (TLS 1.2 session ids and TLS 1.3 stateful fallbacks).
const SESSION_CACHE: usize = 4096;

struct Resumption {
    ticketer: Arc<dyn ProducesTickets>,
    cache: Arc<dyn StoresServerSessions>,
}

fn resumption() -> Result<&'static Resumption, rustls::Error> {
    static SHARED: OnceLock<Resumption> = OnceLock::new();
    if let Some(r) = SHARED.get() {
        return Ok(r);
    }
    // The ticketer rotates its key itself (every 6 hours, the previous key still accepted).
    let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(SHARED.get_or_init(|| Resumption {
        ticketer,
        cache: ServerSessionMemoryCache::new(SESSION_CACHE),
    }))
}

/// The rustls config of one listener, reading certificates from `store`.
pub fn config(
    store: Arc<Store>,
    challenges: Option<AlpnChallenges>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let acme = challenges.is_some();
    let resolver = Arc::new(SniResolver::new(store, challenges));
    let mut config = ServerConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if acme {
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    let shared = resumption()?;
    config.ticketer = shared.ticketer.clone();
    config.session_storage = shared.cache.clone();
    Ok(Arc::new(config))
}
