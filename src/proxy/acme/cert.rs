//! A certificate as the manager holds it: the chain and key PEM from the store or the CA,
//! turned into a rustls `CertifiedKey` (key and chain checked to match) plus what the renewal
//! schedule needs from the leaf: its names, validity and ARI identifier.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::CertificateIdentifier;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

/// A certificate ready to serve (the contract with the TLS listeners).
#[derive(Clone)]
pub(crate) struct Issued {
    /// DNS names of the leaf (its subjectAltName).
    pub(crate) names: Vec<String>,
    pub(crate) key: Arc<CertifiedKey>,
    pub(crate) not_after: SystemTime,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("names", &self.names)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// An [`Issued`] certificate and its renewal facts.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) issued: Issued,
    pub(crate) not_before: SystemTime,
    /// Serial as hex (what logs and pebble show).
    pub(crate) serial: String,
    /// The RFC 9773 identifier (authority key id + serial), when the leaf has an AKI.
    pub(crate) ari_id: Option<CertificateIdentifier<'static>>,
    /// Issuer's distinguished name, for logs.
    pub(crate) issuer: String,
}

impl Held {
    /// Whether the leaf names exactly this set (case-insensitive, any order).
    pub(crate) fn covers_exactly(&self, names: &[String]) -> bool {
        let norm = |v: &[String]| {
            let mut v: Vec<String> = v.iter().map(|n| n.to_ascii_lowercase()).collect();
            v.sort();
            v.dedup();
            v
        };
        norm(&self.issued.names) == norm(names)
    }
}

/// Why a chain and key were refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CertError {
    #[error("no certificate in the chain PEM")]
    Empty,
    #[error("private key: {0}")]
    Key(String),
    #[error("leaf certificate: {0}")]
    Leaf(String),
    #[error("key and certificate do not belong together: {0}")]
    Mismatch(rustls::Error),
}

/// Parses a chain (leaf first) and its private key.
pub(crate) fn parse(chain_pem: &str, key_pem: &str) -> Result<Held, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Leaf(e.to_string()))?;
    let leaf = chain.first().ok_or(CertError::Empty)?.clone();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| CertError::Key(e.to_string()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(CertError::Mismatch)?;

    let (_, x509) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| CertError::Leaf(e.to_string()))?;
    let validity = x509.validity();
    let at = |t: &x509_parser::time::ASN1Time| {
        let secs = u64::try_from(t.timestamp()).unwrap_or(0);
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    };
    let names = match x509.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                GeneralName::DNSName(n) => Some(n.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(CertError::Leaf(e.to_string())),
    };
    Ok(Held {
        issued: Issued {
            names,
            key: Arc::new(certified),
            not_after: at(&validity.not_after),
        },
        not_before: at(&validity.not_before),
        serial: x509.raw_serial_as_string().replace(':', ""),
        ari_id: CertificateIdentifier::try_from(&leaf)
            .ok()
            .map(CertificateIdentifier::into_owned),
        issuer: x509.issuer().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed P-256 certificate for `names` valid `days` from now: (chain PEM, key PEM).
    fn self_signed(names: &[&str], days: i64) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(days);
        let cert = params.self_signed(&key).expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_chain_and_its_key_give_names_and_validity() {
        let (chain, key) = self_signed(&["example.com", "WWW.example.com"], 90);
        let held = parse(&chain, &key).expect("parse");
        assert_eq!(held.issued.names, ["example.com", "www.example.com"]);
        let lifetime = held
            .issued
            .not_after
            .duration_since(held.not_before)
            .expect("valid")
            .as_secs();
        assert!(
            (90 * 86_400..90 * 86_400 + 3_700).contains(&lifetime),
            "{lifetime}"
        );
        assert!(held.covers_exactly(&["www.example.com".into(), "Example.com".into()]));
        assert!(!held.covers_exactly(&["example.com".into()]));
        assert!(!held.serial.is_empty());
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (chain, _) = self_signed(&["a.example"], 1);
        let (_, other_key) = self_signed(&["a.example"], 1);
        assert!(matches!(
            parse(&chain, &other_key),
            Err(CertError::Mismatch(_))
        ));
        assert!(matches!(parse("", &other_key), Err(CertError::Empty)));
        assert!(matches!(parse(&chain, "junk"), Err(CertError::Key(_))));
    }
}
