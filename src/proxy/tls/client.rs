//! Upstream TLS: one rustls client config per cluster, built when a config is compiled. Trust
//! comes from the cluster's CA bundle or the system roots; a client certificate makes it
//! mutual TLS; ALPN follows the cluster's protocol. Turning verification off is explicit
//! (`verify: false`) and logged every time the config is built.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::certs::{CertError, read_chain, read_key};
use crate::proxy::base::config::{UpstreamProtocol, UpstreamTls};

/// What a cluster's connections need to start TLS.
pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    /// `server_name` from the config; else each server's host is used.
    server_name: Option<ServerName<'static>>,
}

/// Why a cluster's TLS settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("clusters.{cluster}.tls: {source}")]
    File { cluster: String, source: CertError },
    #[error("clusters.{cluster}.tls.ca: {path}: no usable CA certificate ({message})")]
    Roots {
        cluster: String,
        path: String,
        message: String,
    },
    #[error("clusters.{cluster}.tls: {message}")]
    Rustls { cluster: String, message: String },
}

impl TlsClient {
    /// Builds the client config of cluster `cluster`.
    pub fn build(
        cluster: &str,
        tls: &UpstreamTls,
        protocol: UpstreamProtocol,
    ) -> Result<Self, ClientError> {
        let rustls_error = |e: rustls::Error| ClientError::Rustls {
            cluster: cluster.to_string(),
            message: e.to_string(),
        };
        let builder = ClientConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_error)?;
        let builder = if tls.verify {
            builder.with_root_certificates(roots(cluster, tls.ca.as_deref())?)
        } else {
            tracing::warn!(
                cluster,
                "upstream TLS certificate verification is OFF (tls.verify: false)"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification))
        };
        let file_error = |source| ClientError::File {
            cluster: cluster.to_string(),
            source,
        };
        let mut config = match (&tls.client_cert, &tls.client_key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(
                    read_chain(Path::new(cert)).map_err(file_error)?,
                    read_key(Path::new(key)).map_err(file_error)?,
                )
                .map_err(rustls_error)?,
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = match protocol {
            UpstreamProtocol::H2 | UpstreamProtocol::H2c => vec![b"h2".to_vec()],
            UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
        };
        let server_name = match &tls.server_name {
            Some(n) => Some(
                ServerName::try_from(n.clone()).map_err(|e| ClientError::Rustls {
                    cluster: cluster.to_string(),
                    message: format!("server_name `{n}`: {e}"),
                })?,
            ),
            None => None,
        };
        Ok(Self {
            config: Arc::new(config),
            server_name,
        })
    }

    /// The name sent as SNI and verified for a server at `address` (`host:port`).
    pub fn server_name(&self, address: &str) -> Option<ServerName<'static>> {
        if let Some(n) = &self.server_name {
            return Some(n.clone());
        }
        let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_string()).ok()
    }
}

fn roots(cluster: &str, ca: Option<&str>) -> Result<RootCertStore, ClientError> {
    let mut store = RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = read_chain(Path::new(path)).map_err(|source| ClientError::File {
                cluster: cluster.to_string(),
                source,
            })?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(ClientError::Roots {
                    cluster: cluster.to_string(),
                    path: path.to_string(),
                    message: "none parses as a CA certificate".into(),
                });
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(cluster, error = %e, "system CA certificates partly unreadable");
            }
            store.add_parsable_certificates(found.certs);
        }
    }
    Ok(store)
}

/// Accepts any server certificate, but still checks the handshake signatures (the peer must
/// hold the key of the certificate it shows). Only behind `verify: false`.
#[derive(Debug)]
struct NoVerification;

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &super::provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &super::provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        super::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
