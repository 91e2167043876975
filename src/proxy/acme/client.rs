//! The HTTPS client that talks to the ACME server: hyper over rustls, trusting the system roots
//! plus `acme.ca_bundle`, and remembering the `Retry-After` of the last refused request
//! (instant-acme turns a refusal into a problem document and drops the header, but a 429
//! `rateLimited` or a 503 must be retried no earlier than the CA says).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::header::RETRY_AFTER;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

type Inner = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("acme.ca_bundle: cannot read {path}: {message}")]
    Bundle { path: String, message: String },
    #[error("acme.ca_bundle: {path} holds no certificate")]
    EmptyBundle { path: String },
    #[error("no root certificates: the system has none and acme.ca_bundle is not set")]
    NoRoots,
    #[error("TLS settings: {0}")]
    Tls(#[from] rustls::Error),
}

/// The ACME HTTP client (cheap to clone: one connection pool, one Retry-After slot).
#[derive(Clone)]
pub(crate) struct CaClient {
    inner: Inner,
    retry_after: Arc<Mutex<Option<SystemTime>>>,
}

impl CaClient {
    pub(crate) fn new(bundle: Option<&Path>) -> Result<Self, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        // Unreadable system certificates are skipped: a bundle alone is enough for a private CA.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = bundle {
            let shown = path.display().to_string();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| ClientError::Bundle {
                    path: shown.clone(),
                    message: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(ClientError::EmptyBundle { path: shown });
            }
            for cert in certs {
                roots.add(cert).map_err(|e| ClientError::Bundle {
                    path: shown.clone(),
                    message: e.to_string(),
                })?;
            }
        }
        if roots.is_empty() {
            return Err(ClientError::NoRoots);
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let inner = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self {
            inner,
            retry_after: Arc::default(),
        })
    }

    /// The `Retry-After` of the last refused request, taken (each refusal is read once).
    pub(crate) fn take_retry_after(&self) -> Option<SystemTime> {
        self.retry_after.lock().ok().and_then(|mut s| s.take())
    }
}

impl HttpClient for CaClient {
    fn request(
        &self,
        req: hyper::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let fut = self.inner.request(req);
        let slot = self.retry_after.clone();
        Box::pin(async move {
            let rsp = fut
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            if (rsp.status().is_client_error() || rsp.status().is_server_error())
                && let Some(at) = rsp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()))
                && let Ok(mut s) = slot.lock()
            {
                *s = Some(at);
            }
            Ok(BytesResponse::from(rsp))
        })
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<SystemTime> {
    let value = value.trim();
    match value.parse::<u64>() {
        Ok(secs) => Some(now + Duration::from_secs(secs)),
        Err(_) => httpdate::parse_http_date(value).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(now + Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(10))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn a_missing_or_empty_bundle_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.pem");
        let err = CaClient::new(Some(&missing)).err().expect("error");
        assert!(
            err.to_string().contains("acme.ca_bundle: cannot read"),
            "{err}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a pem\n").expect("write");
        let err = CaClient::new(Some(&empty)).err().expect("error");
        assert!(err.to_string().contains("holds no certificate"), "{err}");
    }
}
