//! Layer 2, ACME (RFC 8555): certificates obtained and renewed automatically from the CA of
//! `acme:` in `proxy.yml`, kept in a store folder that survives restarts and may be shared by
//! several proxies. Uses only `base` (its config); the TLS listeners read [`Manager::certificates`]
//! and [`Challenges::tls_alpn01`], the plain-HTTP request path answers [`Challenges::http01`].
//!
//! [`Manager::new`] loads the account-independent state (store, HTTP client, the certificates
//! already stored) so a restart serves them at once, without a network round trip;
//! [`Manager::start`] spawns one renewal loop per name set (`renew`), which share the `state`.

mod account;
mod cert;
mod challenges;
mod client;
mod order;
mod renew;
mod schedule;
mod state;
mod stats;
mod store;

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

pub(crate) use cert::Issued;
pub(crate) use challenges::{ACME_TLS_ALPN, Challenges, HTTP01_PREFIX};
pub(crate) use stats::SetStats;

use crate::proxy::acme::account::AccountSlot;
use crate::proxy::acme::client::{CaClient, ClientError};
use crate::proxy::acme::state::{Inner, NameSet};
use crate::proxy::acme::store::{Store, StoreError};
use crate::proxy::base::config_acme::AcmeConfig;

/// Why the manager could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AcmeError {
    #[error("acme.store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The certificate manager (cheap to clone).
#[derive(Clone)]
pub(crate) struct Manager {
    inner: Arc<Inner>,
}

impl Manager {
    /// Opens the store and loads the certificates it holds (no network).
    pub(crate) fn new(cfg: &AcmeConfig) -> Result<Self, AcmeError> {
        let store = Store::open(Path::new(&cfg.store))?;
        let client = CaClient::new(cfg.ca_bundle.as_deref().map(Path::new))?;
        let sets = cfg
            .certificates
            .iter()
            .map(|c| {
                let names: Vec<String> = c.names.iter().map(|n| n.to_ascii_lowercase()).collect();
                NameSet {
                    stats: Arc::new(SetStats::new(&names)),
                    names,
                    held: Mutex::new(None),
                }
            })
            .collect();
        let (published, _) = watch::channel(Arc::new(Vec::new()));
        let inner = Arc::new(Inner {
            account: AccountSlot::new(
                store.clone(),
                client.clone(),
                cfg.directory_url().to_string(),
                cfg.email.clone(),
            ),
            challenges: Arc::new(Challenges::new(store.clone())),
            store,
            challenge: cfg.challenge,
            client,
            sets,
            published,
        });
        for i in 0..inner.sets.len() {
            inner.load(i);
        }
        inner.publish();
        Ok(Manager { inner })
    }

    /// Every certificate currently valid, updated on issue and renewal.
    #[allow(dead_code)] // read by the TLS listeners (issue 13, the tls-edge half)
    pub(crate) fn certificates(&self) -> watch::Receiver<Arc<Vec<Issued>>> {
        self.inner.published.subscribe()
    }

    /// The challenge answers the listeners serve.
    pub(crate) fn challenges(&self) -> Arc<Challenges> {
        self.inner.challenges.clone()
    }

    /// Per name set metrics, in config order.
    pub(crate) fn stats(&self) -> Vec<Arc<SetStats>> {
        self.inner.sets.iter().map(|s| s.stats.clone()).collect()
    }

    /// Spawns the renewal loop of every name set (inside a tokio runtime).
    pub(crate) fn start(&self) {
        for i in 0..self.inner.sets.len() {
            tokio::spawn(renew::run(self.inner.clone(), i));
        }
    }
}
