//! The manager's shared state: the store, the account, the challenge answers and, per name
//! set, the certificate held (what is served) and its metrics; the renewal loops update it
//! and publish the list of valid certificates to the listeners.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::proxy::acme::account::AccountSlot;
use crate::proxy::acme::cert::{self, Held, Issued};
use crate::proxy::acme::challenges::Challenges;
use crate::proxy::acme::client::CaClient;
use crate::proxy::acme::stats::SetStats;
use crate::proxy::acme::store::Store;
use crate::proxy::base::config_acme::ChallengeKind;

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) challenge: ChallengeKind,
    pub(crate) account: AccountSlot,
    pub(crate) client: CaClient,
    pub(crate) challenges: Arc<Challenges>,
    /// One per configured name set, in config order; names lower-cased.
    pub(crate) sets: Vec<NameSet>,
    pub(crate) published: watch::Sender<Arc<Vec<Issued>>>,
}

pub(crate) struct NameSet {
    pub(crate) names: Vec<String>,
    pub(crate) stats: Arc<SetStats>,
    pub(crate) held: Mutex<Option<Held>>,
}

impl Inner {
    /// Reads set `i` from the store; keeps what is held when the store has nothing better (no
    /// file, unreadable, another name set, or a chain written but its key not yet).
    /// Returns whether the held certificate changed.
    pub(crate) fn load(&self, i: usize) -> bool {
        let set = &self.sets[i];
        let stored = match self.store.read_certificate(&set.names) {
            Ok(Some((chain, key))) => cert::parse(&chain, &key),
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(names = %set.stats.names, error = %e, "cannot read the stored certificate");
                return false;
            }
        };
        let held = match stored {
            Ok(h) if h.covers_exactly(&set.names) => h,
            Ok(h) => {
                tracing::info!(names = %set.stats.names, stored = ?h.issued.names, "the stored certificate is for other names; a new one will be ordered");
                return false;
            }
            Err(e) => {
                tracing::warn!(names = %set.stats.names, error = %e, "the stored certificate is unusable");
                return false;
            }
        };
        let Ok(mut slot) = set.held.lock() else {
            return false;
        };
        if slot.as_ref().is_some_and(|h| h.serial == held.serial) {
            return false;
        }
        tracing::info!(names = %set.stats.names, serial = %held.serial, issuer = %held.issuer, "certificate loaded from the store");
        set.stats.set_not_after(held.issued.not_after);
        *slot = Some(held);
        true
    }

    pub(crate) fn held(&self, i: usize) -> Option<Held> {
        self.sets[i].held.lock().ok().and_then(|h| h.clone())
    }

    pub(crate) fn hold(&self, i: usize, held: Held) {
        let set = &self.sets[i];
        set.stats.set_not_after(held.issued.not_after);
        if let Ok(mut slot) = set.held.lock() {
            *slot = Some(held);
        }
        self.publish();
    }

    /// Sends every held certificate that has not expired.
    pub(crate) fn publish(&self) {
        let now = SystemTime::now();
        let list: Vec<Issued> = self
            .sets
            .iter()
            .filter_map(|s| s.held.lock().ok().and_then(|h| h.clone()))
            .filter(|h| h.issued.not_after > now)
            .map(|h| h.issued)
            .collect();
        self.published.send_replace(Arc::new(list));
    }
}
