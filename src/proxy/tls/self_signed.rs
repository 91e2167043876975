//! The certificate of last resort: self-signed, ECDSA P-256, made at start. It answers
//! handshakes for names that have no certificate yet (ACME still ordering) when the listener
//! serves a default.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

/// Makes a fresh self-signed certificate for `itsup-default.invalid`.
pub fn make() -> Result<Arc<CertifiedKey>, rustls::Error> {
    let fail = |e: rcgen::Error| rustls::Error::General(format!("self-signed certificate: {e}"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let mut params =
        rcgen::CertificateParams::new(vec!["itsup-default.invalid".to_string()]).map_err(fail)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "itsup proxy default certificate");
    let cert = params.self_signed(&key).map_err(fail)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
    Ok(Arc::new(CertifiedKey::from_der(
        chain,
        der,
        &super::provider(),
    )?))
}
