//! The answers to the CA's challenges while an order is being validated: HTTP-01 key
//! authorizations by token (also written to the store, so a proxy sharing it answers a
//! validation request for another proxy's order) and TLS-ALPN-01 certificates by name
//! (RFC 8737: self-signed, the name as its only SAN, the SHA-256 of the key authorization in a
//! critical `acmeIdentifier` extension).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use crate::proxy::acme::store::{Store, StoreError};

/// The ALPN protocol of TLS-ALPN-01 handshakes.
#[allow(dead_code)] // for the TLS listeners (issue 13, the tls-edge half)
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Path prefix of HTTP-01 requests.
pub(crate) const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// Challenge answers, read by the listeners, written by the orders.
#[derive(Debug)]
pub(crate) struct Challenges {
    http: RwLock<HashMap<String, String>>,
    alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    store: Store,
}

impl Challenges {
    pub(crate) fn new(store: Store) -> Self {
        Self {
            http: RwLock::default(),
            alpn: RwLock::default(),
            store,
        }
    }

    /// The key authorization to answer on `GET /.well-known/acme-challenge/<token>`: one of
    /// this proxy's orders, else one another proxy sharing the store placed.
    pub(crate) fn http01(&self, token: &str) -> Option<String> {
        let mine = self.http.read().ok().and_then(|m| m.get(token).cloned());
        mine.or_else(|| self.store.read_http01(token))
    }

    /// The certificate to present to a ClientHello for `server_name` offering ALPN
    /// [`ACME_TLS_ALPN`].
    #[allow(dead_code)] // called by the TLS listeners' resolver (issue 13, the tls-edge half)
    pub(crate) fn tls_alpn01(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        self.alpn
            .read()
            .ok()?
            .get(&server_name.to_ascii_lowercase())
            .cloned()
    }

    pub(super) fn add_http01(&self, token: &str, key_auth: &str) -> Result<(), StoreError> {
        if let Ok(mut m) = self.http.write() {
            m.insert(token.to_string(), key_auth.to_string());
        }
        self.store.write_http01(token, key_auth)
    }

    pub(super) fn remove_http01(&self, token: &str) {
        if let Ok(mut m) = self.http.write() {
            m.remove(token);
        }
        self.store.remove_http01(token);
    }

    pub(super) fn add_tls_alpn01(&self, name: &str, digest: &[u8]) -> Result<(), AlpnError> {
        let key = alpn_certificate(name, digest)?;
        if let Ok(mut m) = self.alpn.write() {
            m.insert(name.to_ascii_lowercase(), Arc::new(key));
        }
        Ok(())
    }

    pub(super) fn remove_tls_alpn01(&self, name: &str) {
        if let Ok(mut m) = self.alpn.write() {
            m.remove(&name.to_ascii_lowercase());
        }
    }
}

/// Why no TLS-ALPN-01 certificate could be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AlpnError {
    #[error("validation certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("validation key: {0}")]
    Key(#[from] rustls::Error),
}

/// The RFC 8737 validation certificate for `name`.
fn alpn_certificate(name: &str, digest: &[u8]) -> Result<CertifiedKey, AlpnError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    // Not `CertifiedKey::from_der`: its key check parses the certificate with webpki, which
    // refuses the critical acmeIdentifier extension; this key and certificate were made together.
    let signing = provider.key_provider.load_private_key(der)?;
    Ok(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing,
    ))
}

/// Removes every answer an order posted when it ends, however it ends.
pub(super) struct Posted<'a> {
    challenges: &'a Challenges,
    tokens: Vec<String>,
    names: Vec<String>,
}

impl<'a> Posted<'a> {
    pub(super) fn new(challenges: &'a Challenges) -> Self {
        Self {
            challenges,
            tokens: Vec::new(),
            names: Vec::new(),
        }
    }

    pub(super) fn http01(&mut self, token: &str, key_auth: &str) -> Result<(), StoreError> {
        self.tokens.push(token.to_string());
        self.challenges.add_http01(token, key_auth)
    }

    pub(super) fn tls_alpn01(&mut self, name: &str, digest: &[u8]) -> Result<(), AlpnError> {
        self.names.push(name.to_string());
        self.challenges.add_tls_alpn01(name, digest)
    }
}

impl Drop for Posted<'_> {
    fn drop(&mut self) {
        for t in &self.tokens {
            self.challenges.remove_http01(t);
        }
        for n in &self.names {
            self.challenges.remove_tls_alpn01(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_live_while_the_order_runs_and_are_shared_through_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let mine = Challenges::new(store.clone());
        let neighbour = Challenges::new(store);
        {
            let mut posted = Posted::new(&mine);
            posted.http01("tok_1", "tok_1.thumb").expect("post");
            posted
                .tls_alpn01("Example.com", &[7u8; 32])
                .expect("alpn cert");
            assert_eq!(mine.http01("tok_1").as_deref(), Some("tok_1.thumb"));
            assert_eq!(
                neighbour.http01("tok_1").as_deref(),
                Some("tok_1.thumb"),
                "another proxy on the same store answers too"
            );
            let key = mine.tls_alpn01("example.com").expect("alpn");
            let (_, cert) =
                x509_parser::parse_x509_certificate(key.cert[0].as_ref()).expect("x509");
            let ext = cert
                .extensions()
                .iter()
                .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
                .expect("acmeIdentifier");
            assert!(ext.critical);
            assert!(ext.value.ends_with(&[7u8; 32]));
        }
        assert_eq!(mine.http01("tok_1"), None, "removed with the order");
        assert_eq!(neighbour.http01("tok_1"), None);
        assert!(mine.tls_alpn01("example.com").is_none());
    }
}
