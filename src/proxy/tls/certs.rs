//! Loading certificates: a PEM chain + key pair becomes a rustls `CertifiedKey` with the DNS
//! names of its leaf (subject alternative names), which is what the SNI store is keyed by.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// A certificate ready to serve, with the names it covers (lower case; `*.x` for wildcards).
#[derive(Clone, Debug)]
pub struct Loaded {
    pub names: Vec<String>,
    pub key: Arc<CertifiedKey>,
}

/// Why a certificate pair could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{cert} + {key}: {message}")]
    Pair {
        cert: String,
        key: String,
        message: String,
    },
}

/// Reads a PEM certificate chain.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let file_error = |message: String| CertError::File {
        path: path.display().to_string(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(file_error("no PEM certificate in the file".into()));
    }
    Ok(chain)
}

/// Reads a PEM private key.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| CertError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Loads a chain + key pair, checking that the key belongs to the leaf.
pub fn load_pair(cert: &Path, key: &Path) -> Result<Loaded, CertError> {
    let chain = read_chain(cert)?;
    let der = read_key(key)?;
    let pair_error = |message: String| CertError::Pair {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        message,
    };
    let certified = CertifiedKey::from_der(chain, der, &super::provider())
        .map_err(|e| pair_error(e.to_string()))?;
    let names = dns_names(&certified.cert[0]);
    if names.is_empty() {
        return Err(pair_error(
            "the certificate names no DNS name (subject alternative names)".into(),
        ));
    }
    Ok(Loaded {
        names,
        key: Arc::new(certified),
    })
}

/// The DNS names (SANs) of a leaf certificate, lower case.
pub fn dns_names(leaf: &CertificateDer<'_>) -> Vec<String> {
    match webpki::EndEntityCert::try_from(leaf) {
        Ok(ee) => ee
            .valid_dns_names()
            .map(|n| n.to_ascii_lowercase())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_sans_and_keys_must_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = rcgen::generate_simple_self_signed(vec!["A.test".into(), "*.b.test".into()])
            .expect("cert");
        let other = rcgen::KeyPair::generate().expect("key");
        let cert = dir.path().join("a.crt");
        let key = dir.path().join("a.key");
        let wrong = dir.path().join("wrong.key");
        std::fs::write(&cert, a.cert.pem()).expect("write");
        std::fs::write(&key, a.signing_key.serialize_pem()).expect("write");
        std::fs::write(&wrong, other.serialize_pem()).expect("write");
        let loaded = load_pair(&cert, &key).expect("loads");
        assert_eq!(loaded.names, vec!["a.test", "*.b.test"]);
        let err = load_pair(&cert, &wrong).expect_err("mismatch");
        assert!(err.to_string().contains("wrong.key"), "{err}");
        let err = load_pair(&key, &key).expect_err("not a cert");
        assert!(err.to_string().contains("a.key"), "{err}");
    }
}
