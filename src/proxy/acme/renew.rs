//! The renewal loop of one name set. It wakes when the certificate is due (a third of its
//! lifetime left, or the CA's ARI window) or every few seconds to look at the store (another
//! proxy sharing it may have renewed). A due order runs under the set's store lock, after
//! reading the store once more, so proxies sharing a store place one order between them. A
//! failure keeps the certificate in use and retries with a backoff no earlier than the CA's
//! `Retry-After`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::CertificateIdentifier;

use crate::proxy::acme::cert;
use crate::proxy::acme::order::{self, OrderError};
use crate::proxy::acme::schedule;
use crate::proxy::acme::state::Inner;
use crate::proxy::acme::stats::SetStats;

/// Longest sleep between two looks at the store.
const STORE_POLL: Duration = Duration::from_secs(5);
/// ARI answers are fetched again after the CA's hint, kept within these bounds.
const ARI_RECHECK_MIN: Duration = Duration::from_secs(60);
const ARI_RECHECK_MAX: Duration = Duration::from_secs(6 * 3600);

/// What the loop knows of the CA's renewal info for the held certificate.
#[derive(Debug, Clone, Copy)]
enum Ari {
    /// Not asked yet for this certificate (or time to ask again).
    Unknown,
    /// The CA has no renewalInfo resource: a third of the lifetime rules.
    Unsupported,
    /// Renew at `renew_at`; ask again at `recheck_at`.
    Window {
        renew_at: SystemTime,
        recheck_at: SystemTime,
    },
    /// The last question failed; the fallback rules until `recheck_at`.
    Failed { recheck_at: SystemTime },
}

struct Loop {
    inner: Arc<Inner>,
    i: usize,
    /// Random point of an ARI window for this set (RFC 9773 §4.2).
    fraction: f64,
    failures: u32,
    retry_at: Option<SystemTime>,
    ari: Ari,
    /// A CA that refused `replaces` for this certificate gets orders without it.
    skip_replaces: bool,
    seen_mtime: Option<SystemTime>,
}

/// Runs set `i` forever.
pub(super) async fn run(inner: Arc<Inner>, i: usize) {
    let seen_mtime = inner.store.certificate_mtime(&inner.sets[i].names);
    let mut lp = Loop {
        inner,
        i,
        fraction: rand::random::<f64>(),
        failures: 0,
        retry_at: None,
        ari: Ari::Unknown,
        skip_replaces: false,
        seen_mtime,
    };
    loop {
        lp.look_at_store();
        lp.refresh_ari().await;
        let due = lp.due();
        lp.stats().set_next_attempt(due);
        let now = SystemTime::now();
        if due > now {
            let wait = due.duration_since(now).unwrap_or_default();
            tokio::time::sleep(wait.min(STORE_POLL)).await;
            continue;
        }
        lp.attempt().await;
    }
}

impl Loop {
    fn names(&self) -> &[String] {
        &self.inner.sets[self.i].names
    }

    fn stats(&self) -> &SetStats {
        &self.inner.sets[self.i].stats
    }

    /// Picks up a certificate another proxy wrote to the store.
    fn look_at_store(&mut self) {
        let mtime = self.inner.store.certificate_mtime(self.names());
        if mtime == self.seen_mtime {
            return;
        }
        self.seen_mtime = mtime;
        if self.inner.load(self.i) {
            self.inner.publish();
            self.renewed();
        }
    }

    /// A new certificate is held: failures and the ARI plan belong to the old one.
    fn renewed(&mut self) {
        self.failures = 0;
        self.retry_at = None;
        self.ari = Ari::Unknown;
        self.skip_replaces = false;
        self.stats().succeeded();
    }

    /// When the next order is due.
    fn due(&self) -> SystemTime {
        let now = SystemTime::now();
        let renew_at = match self.inner.held(self.i) {
            None => now,
            Some(held) => match self.ari {
                Ari::Window { renew_at, .. } => renew_at,
                _ => schedule::third_left(held.not_before, held.issued.not_after),
            },
        };
        match self.retry_at {
            Some(r) => renew_at.max(r),
            None => renew_at,
        }
    }

    /// Asks the CA for the held certificate's renewal window when it is time to.
    async fn refresh_ari(&mut self) {
        let now = SystemTime::now();
        let ask = match self.ari {
            Ari::Unknown => true,
            Ari::Unsupported => false,
            Ari::Window { recheck_at, .. } | Ari::Failed { recheck_at } => now >= recheck_at,
        };
        let Some(id) = self.inner.held(self.i).and_then(|h| h.ari_id) else {
            return;
        };
        if !ask {
            return;
        }
        let answer = match self.inner.account.get().await {
            Ok(account) => account.renewal_info(&id).await.map_err(|e| match e {
                instant_acme::Error::Unsupported(_) => None,
                e => Some(e.to_string()),
            }),
            Err(e) => Err(Some(e.to_string())),
        };
        self.ari = match answer {
            Ok((info, hint)) => {
                let window = info.suggested_window;
                let renew_at =
                    schedule::in_window(window.start.into(), window.end.into(), now, self.fraction);
                tracing::debug!(names = %self.stats().names, ?renew_at, "ARI renewal window");
                Ari::Window {
                    renew_at,
                    recheck_at: now + hint.clamp(ARI_RECHECK_MIN, ARI_RECHECK_MAX),
                }
            }
            Err(None) => Ari::Unsupported,
            Err(Some(e)) => {
                tracing::debug!(names = %self.stats().names, error = %e, "ARI renewal info unavailable");
                Ari::Failed {
                    recheck_at: now + schedule::backoff(self.failures + 1).max(ARI_RECHECK_MIN),
                }
            }
        };
    }

    /// One order under the set's store lock, unless the store turns out to hold a fresh
    /// certificate once the lock is ours (another proxy just renewed).
    async fn attempt(&mut self) {
        let lock = match self.inner.store.lock_set(self.names()).await {
            Ok(l) => l,
            Err(e) => {
                self.failed(&format!("store lock: {e}"), None, false);
                return;
            }
        };
        self.look_at_store();
        if self.due() > SystemTime::now() {
            return;
        }
        let replaces = self.replaces();
        let names = self.names().to_vec();
        self.stats().ordered();
        tracing::info!(names = %self.stats().names, renewal = replaces.is_some() || self.inner.held(self.i).is_some(), "placing an ACME order");
        let mut result = self.order(&names, replaces.clone()).await;
        if let Err(Failure::Order(e)) = &result
            && e.unknown_account()
        {
            // Not the CA failing: it forgot the account (the loop already dropped it), so
            // register again and retry at once.
            self.stats().ordered();
            result = self.order(&names, replaces).await;
        }
        match result.and_then(|c| self.keep(&c)) {
            Ok(serial) => {
                tracing::info!(names = %self.stats().names, serial = %serial, "certificate issued");
                self.renewed();
            }
            Err(Failure::Order(e)) => {
                let retry_after = self.inner.client.take_retry_after();
                if e.problem()
                    .and_then(|p| p.r#type.as_deref())
                    .is_some_and(|t| t.ends_with(":alreadyReplaced"))
                {
                    self.skip_replaces = true;
                }
                self.failed(&e.to_string(), retry_after, e.rate_limited());
            }
            Err(Failure::Other(e)) => {
                let retry_after = self.inner.client.take_retry_after();
                self.failed(&e, retry_after, false);
            }
        }
        drop(lock);
    }

    /// Runs one order with the account (registered first if need be).
    async fn order(
        &self,
        names: &[String],
        replaces: Option<CertificateIdentifier<'static>>,
    ) -> Result<order::Certificate, Failure> {
        let account = self
            .inner
            .account
            .get()
            .await
            .map_err(|e| Failure::Other(e.to_string()))?;
        let result = order::run(
            &account,
            names,
            self.inner.challenge,
            &self.inner.challenges,
            replaces,
        )
        .await;
        if let Err(e) = &result
            && e.unknown_account()
            && let Err(fe) = self.inner.account.forget(account.id()).await
        {
            tracing::warn!(error = %fe, "cannot forget the unknown ACME account");
        }
        result.map_err(Failure::Order)
    }

    /// The identifier of the certificate being replaced, when the CA speaks ARI.
    fn replaces(&self) -> Option<CertificateIdentifier<'static>> {
        let ari = matches!(self.ari, Ari::Window { .. });
        if !ari || self.skip_replaces {
            return None;
        }
        self.inner.held(self.i).and_then(|h| h.ari_id)
    }

    /// Checks the CA's chain against its key, stores both, serves them.
    fn keep(&mut self, c: &order::Certificate) -> Result<String, Failure> {
        let held = cert::parse(&c.chain_pem, &c.key_pem)
            .map_err(|e| Failure::Other(format!("the CA's certificate: {e}")))?;
        self.inner
            .store
            .write_certificate(self.names(), &c.chain_pem, &c.key_pem)
            .map_err(|e| Failure::Other(format!("store: {e}")))?;
        self.seen_mtime = self.inner.store.certificate_mtime(self.names());
        let serial = held.serial.clone();
        self.inner.hold(self.i, held);
        Ok(serial)
    }

    fn failed(&mut self, error: &str, retry_after: Option<SystemTime>, rate_limited: bool) {
        self.failures += 1;
        self.stats().failed();
        let now = SystemTime::now();
        let at = schedule::retry_at(now, self.failures, retry_after, rate_limited);
        self.retry_at = Some(at);
        let retry_in = at.duration_since(now).unwrap_or_default().as_secs();
        let held = self.inner.held(self.i);
        tracing::warn!(
            names = %self.stats().names,
            error,
            failures = self.failures,
            retry_in_s = retry_in,
            rate_limited,
            serving = held.as_ref().map(|h| h.serial.as_str()).unwrap_or("none"),
            "ACME order failed; the certificate in use is kept"
        );
    }
}

enum Failure {
    Order(OrderError),
    Other(String),
}
