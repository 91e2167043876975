//! Layer tls: everything about certificates and TLS sessions, below the upstream layer so
//! both sides can use it. The client side's certificates live in an atomically swapped SNI
//! [`store`] fed by PEM files ([`certs`]), a watched folder ([`cert_dir`]) and (later) ACME;
//! the [`resolver`] picks from it per ClientHello; [`server`] builds each listener's rustls
//! config once (shared ticketer, ALPN, safe defaults) with a [`self_signed`] fallback. The
//! upstream side's rustls configs come from [`client`].

pub mod cert_dir;
pub mod certs;
pub mod client;
pub mod resolver;
pub mod self_signed;
pub mod server;
pub mod store;

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

/// The one crypto provider of the proxy (aws-lc-rs, rustls' default), built once.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}
