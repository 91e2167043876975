//! The SNI map of one TLS listener: certificates by exact name and by `*.` wildcard, plus the
//! default. It is rebuilt from its sources (configured files, the watched folder, ACME) and
//! swapped atomically, so a handshake reads it with one atomic load and a certificate change
//! touches nothing else (no listener, connection or session ticket key).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;

use super::certs::Loaded;
use crate::proxy::base::config::UnknownSni;

/// Where certificates come from; earlier sources win when two cover the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// `tls.certificates` in the config.
    Files,
    /// `tls.cert_dir`.
    Dir,
    /// Issued by ACME.
    Acme,
}

/// One immutable generation of the map.
#[derive(Default)]
pub struct CertMap {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// The first configured certificate (`tls.certificates`). Certificates of the folder and
    /// of ACME are never a default: a name without its own certificate gets the self-signed
    /// one rather than another site's (which would name that site to anyone asking).
    default: Option<Arc<CertifiedKey>>,
}

impl CertMap {
    fn build<'a>(loaded: impl Iterator<Item = (Source, &'a Loaded)>) -> Self {
        let mut map = Self::default();
        for (source, cert) in loaded {
            if map.default.is_none() && source == Source::Files {
                map.default = Some(cert.key.clone());
            }
            for name in &cert.names {
                let slot = match name.strip_prefix("*.") {
                    Some(suffix) => map.wildcard.entry(suffix.to_string()),
                    None => map.exact.entry(name.clone()),
                };
                slot.or_insert_with(|| cert.key.clone());
            }
        }
        map
    }

    /// The certificate for a server name: exact, else a wildcard covering its first label
    /// (a TLS wildcard stands for exactly one label).
    pub fn find(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        let name = name.trim_end_matches('.');
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        self.exact.get(name).or_else(|| {
            let (_, parent) = name.split_once('.')?;
            self.wildcard.get(parent)
        })
    }

    /// How many names the map serves (for logs).
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The certificates of one listener.
pub struct Store {
    map: ArcSwap<CertMap>,
    sources: Mutex<HashMap<Source, Vec<Loaded>>>,
    fallback: Arc<CertifiedKey>,
    unknown: UnknownSni,
}

impl Store {
    /// An empty store answering unknown names per `unknown` with `fallback` (the self-signed
    /// certificate) when no configured certificate can be the default.
    pub fn new(fallback: Arc<CertifiedKey>, unknown: UnknownSni) -> Self {
        Self {
            map: ArcSwap::from_pointee(CertMap::default()),
            sources: Mutex::default(),
            fallback,
            unknown,
        }
    }

    /// Replaces the certificates of one source and swaps in the rebuilt map.
    pub fn set(&self, source: Source, certs: Vec<Loaded>) {
        let Ok(mut sources) = self.sources.lock() else {
            return;
        };
        sources.insert(source, certs);
        let mut order: Vec<&Source> = sources.keys().collect();
        order.sort();
        let map = CertMap::build(
            order
                .into_iter()
                .flat_map(|s| sources[s].iter().map(move |c| (*s, c))),
        );
        tracing::debug!(names = map.len(), "certificate map swapped");
        self.map.store(Arc::new(map));
    }

    /// The certificate a ClientHello with this SNI gets; `None` makes the handshake fail.
    pub fn resolve(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let map = self.map.load();
        if let Some(found) = server_name.and_then(|n| map.find(n)) {
            return Some(found.clone());
        }
        match self.unknown {
            UnknownSni::Reject => None,
            UnknownSni::Default => Some(map.default.as_ref().unwrap_or(&self.fallback).clone()),
        }
    }
}

/// Keeps the `source` certificates of every store in `stores` equal to what `updates` holds
/// (the ACME manager's certificates), converted by `convert`, until the sender goes away.
pub fn follow<T, F>(
    stores: Vec<Arc<Store>>,
    source: Source,
    mut updates: tokio::sync::watch::Receiver<T>,
    convert: F,
) where
    T: Send + Sync + 'static,
    F: Fn(&T) -> Vec<Loaded> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let certs = convert(&updates.borrow_and_update());
            tracing::info!(certificates = certs.len(), ?source, "certificates updated");
            for store in &stores {
                store.set(source, certs.clone());
            }
            if updates.changed().await.is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str]) -> Loaded {
        let c = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .expect("cert");
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(c.signing_key.serialize_der()),
        );
        let key =
            CertifiedKey::from_der(vec![c.cert.der().clone()], der, &super::super::provider())
                .expect("key");
        Loaded {
            names: names.iter().map(|n| n.to_string()).collect(),
            key: Arc::new(key),
        }
    }

    #[test]
    fn exact_beats_wildcard_beats_default_and_reject_refuses() {
        let fallback = cert(&["fallback.invalid"]).key;
        let exact = cert(&["a.example.com"]);
        let wild = cert(&["*.example.com"]);
        let store = Store::new(fallback.clone(), UnknownSni::Default);
        assert!(Arc::ptr_eq(
            &store.resolve(Some("x.test")).expect("fallback"),
            &fallback
        ));
        store.set(Source::Files, vec![exact.clone(), wild.clone()]);
        let got = |n: &str| store.resolve(Some(n)).expect("some");
        assert!(Arc::ptr_eq(&got("a.example.com"), &exact.key));
        assert!(Arc::ptr_eq(&got("A.Example.com."), &exact.key));
        assert!(Arc::ptr_eq(&got("b.example.com"), &wild.key));
        // One label only; the configured default (first certificate) for the rest.
        assert!(Arc::ptr_eq(&got("c.b.example.com"), &exact.key));
        assert!(Arc::ptr_eq(
            &store.resolve(None).expect("default"),
            &exact.key
        ));

        // Folder and ACME certificates are never the default.
        let lone = Store::new(fallback.clone(), UnknownSni::Default);
        lone.set(Source::Acme, vec![exact.clone()]);
        lone.set(Source::Dir, vec![wild.clone()]);
        assert!(Arc::ptr_eq(
            &lone.resolve(Some("x.test")).expect("fallback"),
            &fallback
        ));
        assert!(Arc::ptr_eq(
            &lone.resolve(Some("a.example.com")).expect("acme"),
            &exact.key
        ));

        let strict = Store::new(fallback, UnknownSni::Reject);
        strict.set(Source::Dir, vec![wild.clone()]);
        assert!(strict.resolve(Some("other.test")).is_none());
        assert!(strict.resolve(None).is_none());
        // A later source replaces only its own certificates; files win over the folder.
        strict.set(Source::Files, vec![cert(&["b.example.com"])]);
        assert!(!Arc::ptr_eq(
            &strict.resolve(Some("b.example.com")).expect("x"),
            &wild.key
        ));
        strict.set(Source::Dir, vec![]);
        assert!(strict.resolve(Some("z.example.com")).is_none());
    }
}
