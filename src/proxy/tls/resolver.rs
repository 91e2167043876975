//! The rustls certificate resolver of a TLS listener: one atomic load of the listener's
//! [`Store`] per ClientHello. A ClientHello offering only ALPN `acme-tls/1` is a TLS-ALPN-01
//! validation and gets the challenge certificate instead (RFC 8737).

use std::fmt;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::store::Store;
pub(crate) use crate::proxy::acme::ACME_TLS_ALPN;

/// Answers TLS-ALPN-01 challenges: the certificate for a name being validated.
pub type AlpnChallenges = Arc<dyn Fn(&str) -> Option<Arc<CertifiedKey>> + Send + Sync>;

pub struct SniResolver {
    store: Arc<Store>,
    challenges: Option<AlpnChallenges>,
}

impl SniResolver {
    pub fn new(store: Arc<Store>, challenges: Option<AlpnChallenges>) -> Self {
        Self { store, challenges }
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SniResolver")
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name();
        if let Some(challenges) = &self.challenges
            && hello
                .alpn()
                .is_some_and(|mut p| p.any(|proto| proto == ACME_TLS_ALPN))
        {
            return name.and_then(|n| challenges(n));
        }
        self.store.resolve(name)
    }
}
