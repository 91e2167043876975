//! The `acme:` section of `proxy.yml`: automatic certificates from an ACME CA (RFC 8555), its
//! types, defaults and the checks the schema cannot express. Plain data, like the rest of the
//! config; `proxy::acme` runs it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Let's Encrypt's production directory (the default CA).
pub(crate) const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (`staging: true`).
pub(crate) const LETS_ENCRYPT_STAGING: &str =
    "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Automatic certificates from an ACME CA. Changes take effect after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// Contact address given to the CA with the account (expiry and policy mail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Use Let's Encrypt's staging directory instead of production.
    #[serde(default)]
    pub staging: bool,
    /// ACME directory URL (`https://…`); wins over `staging`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_server: Option<String>,
    /// Absolute path of a PEM file of extra root certificates trusted for the ACME server
    /// (besides the system roots), e.g. a private or test CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// Absolute path of a writable folder for the account and the certificates (key files
    /// mode 0600). Several proxies may share it: one order per name set at a time, the others
    /// pick the certificate up from the folder.
    pub store: String,
    /// How the CA validates the names: `http-01` is answered on the plain-HTTP listeners,
    /// `tls-alpn-01` on the HTTPS listeners.
    #[serde(default)]
    pub challenge: ChallengeKind,
    /// The certificates to obtain and renew; one order per name set.
    #[serde(default)]
    pub certificates: Vec<CertificateRequest>,
}

/// An ACME challenge type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum ChallengeKind {
    /// `GET /.well-known/acme-challenge/<token>` on port 80.
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// A certificate for ALPN `acme-tls/1` on port 443 (RFC 8737).
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

/// One certificate: the names it covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateRequest {
    /// DNS names, the first one being the subject; no wildcards (they need DNS-01).
    pub names: Vec<String>,
}

impl AcmeConfig {
    /// The directory URL in effect: `ca_server`, else Let's Encrypt (staging or production).
    pub(crate) fn directory_url(&self) -> &str {
        match (&self.ca_server, self.staging) {
            (Some(url), _) => url,
            (None, true) => LETS_ENCRYPT_STAGING,
            (None, false) => LETS_ENCRYPT,
        }
    }

    /// Semantic rules, as `acme.<key>: message` (the style of `ProxyConfig::check`).
    pub(crate) fn check(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Some(email) = &self.email
            && !valid_email(email)
        {
            errors.push(format!("acme.email: `{email}` is not an e-mail address"));
        }
        if let Some(url) = &self.ca_server {
            let https = url
                .parse::<hyper::Uri>()
                .is_ok_and(|u| u.scheme_str() == Some("https") && u.host().is_some());
            if !https {
                errors.push(format!("acme.ca_server: `{url}` is not an https:// URL"));
            }
        }
        if let Some(bundle) = &self.ca_bundle
            && !bundle.starts_with('/')
        {
            errors.push(format!(
                "acme.ca_bundle: `{bundle}` is not an absolute path"
            ));
        }
        if !self.store.starts_with('/') {
            errors.push(format!(
                "acme.store: `{}` is not an absolute path",
                self.store
            ));
        }
        let mut sets = std::collections::HashSet::new();
        for (i, cert) in self.certificates.iter().enumerate() {
            if cert.names.is_empty() {
                errors.push(format!(
                    "acme.certificates[{i}].names: at least one name is required"
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for (j, name) in cert.names.iter().enumerate() {
                if let Err(e) = check_name(name) {
                    errors.push(format!("acme.certificates[{i}].names[{j}]: {e}"));
                }
                if !seen.insert(name.to_ascii_lowercase()) {
                    errors.push(format!(
                        "acme.certificates[{i}].names[{j}]: `{name}` is listed twice"
                    ));
                }
            }
            let mut key: Vec<String> = seen.into_iter().collect();
            key.sort();
            if !cert.names.is_empty() && !sets.insert(key) {
                errors.push(format!(
                    "acme.certificates[{i}]: the same names as an earlier certificate"
                ));
            }
        }
        errors
    }
}

fn valid_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !email.contains(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    }
}

/// A DNS name a CA can validate with HTTP-01 or TLS-ALPN-01 (RFC 1035 labels, no wildcard,
/// not an IP address).
fn check_name(name: &str) -> Result<(), String> {
    if name.starts_with("*.") {
        return Err(format!(
            "`{name}`: wildcard names need DNS-01, which is not supported"
        ));
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("`{name}`: IP addresses are not supported"));
    }
    let labels_ok = name.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if name.is_empty() || name.len() > 253 || !labels_ok {
        return Err(format!("`{name}` is not a DNS name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> AcmeConfig {
        let doc = crate::yaml::parse(yaml).expect("yaml");
        AcmeConfig::deserialize(&doc.value).expect("acme config")
    }

    #[test]
    fn the_documented_example_parses_and_passes() {
        let c = config(
            "email: ops@example.com\nstaging: false\nca_server: https://ca.test:14000/dir\n\
             ca_bundle: /etc/itsup/acme-ca.pem\nstore: /var/lib/itsup/acme\nchallenge: http-01\n\
             certificates:\n  - names: [example.com, www.example.com]\n",
        );
        assert_eq!(c.check(), Vec::<String>::new());
        assert_eq!(c.directory_url(), "https://ca.test:14000/dir");
        assert_eq!(c.challenge, ChallengeKind::Http01);
        let c = config("store: /s\nstaging: true\nchallenge: tls-alpn-01\n");
        assert_eq!(c.directory_url(), LETS_ENCRYPT_STAGING);
        assert_eq!(c.challenge, ChallengeKind::TlsAlpn01);
        assert_eq!(config("store: /s\n").directory_url(), LETS_ENCRYPT);
    }

    #[test]
    fn every_bad_value_is_named() {
        let c = config(
            "email: nobody\nca_server: http://ca.test/dir\nca_bundle: ca.pem\nstore: acme\n\
             certificates:\n  - names: []\n  - names: ['*.example.com', 10.0.0.1, -bad.example, a.example, A.example]\n  - names: [x.example]\n  - names: [X.example]\n",
        );
        let errors = c.check().join("\n");
        for needle in [
            "acme.email: `nobody`",
            "acme.ca_server: `http://ca.test/dir` is not an https:// URL",
            "acme.ca_bundle: `ca.pem` is not an absolute path",
            "acme.store: `acme` is not an absolute path",
            "acme.certificates[0].names: at least one name",
            "acme.certificates[1].names[0]: `*.example.com`: wildcard",
            "acme.certificates[1].names[1]: `10.0.0.1`: IP addresses",
            "acme.certificates[1].names[2]: `-bad.example` is not a DNS name",
            "acme.certificates[1].names[4]: `A.example` is listed twice",
            "acme.certificates[3]: the same names as an earlier certificate",
        ] {
            assert!(errors.contains(needle), "missing {needle} in\n{errors}");
        }
    }
}
