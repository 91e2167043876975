//! One health check: `grpc.health.v1.Health/Check` over a cached channel, under a single
//! deadline covering connect, TLS and the RPC, with every failure classified.

use std::error::Error as _;
use std::time::Duration;

use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::channels::{ChannelCache, ConnectError};
use super::protocol::CheckRequest;

/// What the backend said about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Serving,
    NotServing,
    ServiceUnknown,
    /// The server answered UNKNOWN (or a status this agent doesn't know).
    Unknown,
}

impl Health {
    /// Text after `#` in a `down` reply.
    pub fn reason(self) -> &'static str {
        match self {
            Health::Serving => "SERVING",
            Health::NotServing => "NOT_SERVING",
            Health::ServiceUnknown => "SERVICE_UNKNOWN",
            Health::Unknown => "UNKNOWN",
        }
    }
}

/// Why no health status could be obtained.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("timeout")]
    Timeout,
    #[error("connect refused")]
    Refused,
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Tls(String),
    #[error("UNIMPLEMENTED")]
    Unimplemented,
    #[error("rpc {code:?}: {message}")]
    Rpc { code: Code, message: String },
}

impl CheckError {
    /// Short reason for the reply line (details go to the log).
    pub fn reason(&self) -> String {
        match self {
            CheckError::Timeout => "timeout".into(),
            CheckError::Refused => "connect refused".into(),
            CheckError::Connect(_) => "connect error".into(),
            CheckError::Tls(_) => "TLS error".into(),
            CheckError::Unimplemented => "UNIMPLEMENTED".into(),
            CheckError::Rpc { code, .. } => format!("rpc {}", code_name(*code)),
        }
    }

    /// Value of the `type` label of `check_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            CheckError::Timeout => "timeout",
            CheckError::Refused => "connect_refused",
            CheckError::Connect(_) => "connect",
            CheckError::Tls(_) => "tls",
            CheckError::Unimplemented => "unimplemented",
            CheckError::Rpc { .. } => "rpc",
        }
    }
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Finds our connector's error anywhere in the status's source chain.
fn connect_error(status: &tonic::Status) -> Option<&ConnectError> {
    let mut cur = status.source();
    while let Some(err) = cur {
        if let Some(found) = err.downcast_ref::<ConnectError>() {
            return Some(found);
        }
        cur = err.source();
    }
    None
}

fn classify(status: tonic::Status) -> Result<Health, CheckError> {
    if let Some(err) = connect_error(&status) {
        return Err(match err {
            ConnectError::Refused => CheckError::Refused,
            ConnectError::Timeout => CheckError::Timeout,
            ConnectError::Io(_) => CheckError::Connect(err.to_string()),
            ConnectError::Tls(_) | ConnectError::ServerName(_) | ConnectError::NoH2 => {
                CheckError::Tls(err.to_string())
            }
        });
    }
    match status.code() {
        // The health protocol says an unregistered service is answered with NOT_FOUND.
        Code::NotFound => Ok(Health::ServiceUnknown),
        Code::Unimplemented => Err(CheckError::Unimplemented),
        // The backend saw the grpc-timeout we sent expire (tonic servers answer CANCELLED,
        // others DEADLINE_EXCEEDED), a hair before our own timer: same verdict.
        Code::DeadlineExceeded | Code::Cancelled => Err(CheckError::Timeout),
        code => Err(CheckError::Rpc {
            code,
            message: status.message().to_owned(),
        }),
    }
}

/// Asks `req`'s backend for its health, giving up after `deadline` in total.
pub async fn check(
    cache: &ChannelCache,
    req: &CheckRequest,
    deadline: Duration,
) -> Result<Health, CheckError> {
    let channel = cache.get(&req.target).map_err(|e| match e {
        ConnectError::ServerName(_) => CheckError::Tls(e.to_string()),
        other => CheckError::Connect(other.to_string()),
    })?;
    let mut client = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: req.service.clone(),
    });
    // Lets the backend stop working on a check nobody waits for any more.
    request.set_timeout(deadline);
    let rpc = client.check(request);
    match tokio::time::timeout(deadline, rpc).await {
        Err(_elapsed) => Err(CheckError::Timeout),
        Ok(Err(status)) => classify(status),
        Ok(Ok(response)) => Ok(
            match ServingStatus::try_from(response.into_inner().status) {
                Ok(ServingStatus::Serving) => Health::Serving,
                Ok(ServingStatus::NotServing) => Health::NotServing,
                Ok(ServingStatus::ServiceUnknown) => Health::ServiceUnknown,
                Ok(ServingStatus::Unknown) | Err(_) => Health::Unknown,
            },
        ),
    }
}
