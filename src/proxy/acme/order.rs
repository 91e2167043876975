//! One ACME order for one name set (RFC 8555 §7.4): place it (replacing the held certificate
//! when the CA speaks ARI), answer each pending authorization's challenge, wait for the order
//! to be ready, finalize with a CSR for a fresh ECDSA P-256 key, download the chain.

use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewOrder,
    OrderStatus, RetryPolicy,
};

use crate::proxy::acme::challenges::{Challenges, Posted};
use crate::proxy::base::config_acme::ChallengeKind;

/// How long the CA gets to validate and to issue.
const VALIDATION: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(120));

/// Why an order did not give a certificate.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OrderError {
    #[error(transparent)]
    Acme(#[from] instant_acme::Error),
    #[error("authorization for {name} is {status:?}")]
    Authorization {
        name: String,
        status: AuthorizationStatus,
    },
    #[error("the CA offers no {kind:?} challenge for {name}")]
    NoChallenge { name: String, kind: ChallengeKind },
    #[error("the order became {status:?}: {detail}")]
    NotReady {
        status: OrderStatus,
        problem: Option<instant_acme::Problem>,
        /// The order's problem, else what the CA said of each failed challenge.
        detail: String,
    },
    #[error("posting the challenge answer: {0}")]
    Post(String),
    #[error("certificate key or CSR: {0}")]
    Csr(#[from] rcgen::Error),
}

impl OrderError {
    /// The CA's problem document, if the CA refused something.
    pub(crate) fn problem(&self) -> Option<&instant_acme::Problem> {
        match self {
            OrderError::Acme(instant_acme::Error::Api(p)) => Some(p),
            OrderError::NotReady { problem, .. } => problem.as_ref(),
            _ => None,
        }
    }

    /// `urn:ietf:params:acme:error:rateLimited` (or a bare 429).
    pub(crate) fn rate_limited(&self) -> bool {
        self.problem().is_some_and(|p| {
            p.r#type.as_deref() == Some("urn:ietf:params:acme:error:rateLimited")
                || p.status == Some(429)
        })
    }

    /// The CA does not know the stored account (it was deleted, or a test CA restarted).
    pub(crate) fn unknown_account(&self) -> bool {
        self.problem().is_some_and(|p| {
            p.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist")
        })
    }
}

/// A new chain (PEM, leaf first) and its key (PKCS#8 PEM).
pub(crate) struct Certificate {
    pub(crate) chain_pem: String,
    pub(crate) key_pem: String,
}

/// Runs one order to its end.
pub(crate) async fn run(
    account: &Account,
    names: &[String],
    kind: ChallengeKind,
    challenges: &Challenges,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<Certificate, OrderError> {
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut new = NewOrder::new(&identifiers);
    if let Some(id) = replaces {
        new = new.replaces(id);
    }
    let mut order = account.new_order(&new).await?;
    let mut posted = Posted::new(challenges);
    authorize(&mut order, kind, &mut posted).await?;
    let status = order.poll_ready(&VALIDATION).await?;
    if status != OrderStatus::Ready {
        let problem = order.state().error.clone();
        let detail = match &problem {
            Some(p) => p.to_string(),
            None => challenge_errors(&mut order).await,
        };
        return Err(OrderError::NotReady {
            status,
            problem,
            detail,
        });
    }
    drop(posted);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    order.finalize_csr(csr.der()).await?;
    let chain_pem = order.poll_certificate(&VALIDATION).await?;
    Ok(Certificate {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}

/// What the CA reported for each failed challenge (why validation failed).
async fn challenge_errors(order: &mut instant_acme::Order) -> String {
    let mut found = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        let name = authz.identifier().to_string();
        for c in &authz.challenges {
            if let Some(p) = &c.error {
                found.push(format!("{name}: {p}"));
            }
        }
    }
    if found.is_empty() {
        "no reason given".to_string()
    } else {
        found.join("; ")
    }
}

/// Posts the answer of every pending authorization and tells the CA to validate it.
async fn authorize(
    order: &mut instant_acme::Order,
    kind: ChallengeKind,
    posted: &mut Posted<'_>,
) -> Result<(), OrderError> {
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        let name = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Pending => {}
            // Reused from an earlier order.
            AuthorizationStatus::Valid => continue,
            status => return Err(OrderError::Authorization { name, status }),
        }
        let wanted = match kind {
            ChallengeKind::Http01 => ChallengeType::Http01,
            ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let Some(mut challenge) = authz.challenge(wanted) else {
            return Err(OrderError::NoChallenge { name, kind });
        };
        let key_auth = challenge.key_authorization();
        match kind {
            ChallengeKind::Http01 => posted
                .http01(&challenge.token, key_auth.as_str())
                .map_err(|e| OrderError::Post(e.to_string()))?,
            ChallengeKind::TlsAlpn01 => posted
                .tls_alpn01(&name, key_auth.digest().as_ref())
                .map_err(|e| OrderError::Post(e.to_string()))?,
        }
        challenge.set_ready().await?;
    }
    Ok(())
}
