//! The agent-check wire format: parsing one request line and rendering one reply line.
//!
//! Request: `<host> <port> <ssl|no-ssl> <authority>[ key=value…]`, keys `service=` and
//! `timeout=<ms>`. Reply: `up`/`down`, an optional admin word (`drain`/`ready`) and an optional
//! reason after ` #`, as HAProxy's agent-check parser reads it (docs/agent.md).

use std::fmt;
use std::time::Duration;

/// Longest request line accepted, terminator excluded.
pub const MAX_LINE: usize = 1024;

/// Bounds of a per-request `timeout=`: below 10 ms no RPC can complete, above a minute no
/// HAProxy check timeout is that long.
pub const MIN_TIMEOUT_MS: u64 = 10;
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// Where a check goes: the cache key of a gRPC channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Host to connect to (name or IP literal, IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// `:authority` of the RPC and, for TLS, the name the certificate must match.
    pub authority: String,
}

impl Target {
    /// `host:port` as the drain file spells it (IPv6 in brackets).
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One parsed request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRequest {
    pub target: Target,
    /// gRPC service name to ask about; empty means the whole server.
    pub service: String,
    /// Per-request deadline overriding the configured one.
    pub timeout: Option<Duration>,
}

/// Why a request line was refused; rendered after `down #bad request: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("empty request")]
    Empty,
    #[error("line too long")]
    TooLong,
    #[error("not UTF-8")]
    NotUtf8,
    #[error("expected <host> <port> <ssl|no-ssl> <authority>")]
    MissingFields,
    #[error("invalid host")]
    Host,
    #[error("invalid port {0}")]
    Port(String),
    #[error("expected ssl or no-ssl, got {0}")]
    Tls(String),
    #[error("invalid authority")]
    Authority,
    #[error("expected key=value, got {0}")]
    NotKeyValue(String),
    #[error("unknown key {0}")]
    UnknownKey(String),
    #[error("invalid service name")]
    Service,
    #[error("timeout must be {MIN_TIMEOUT_MS}..={MAX_TIMEOUT_MS} ms, got {0}")]
    Timeout(String),
    #[error("duplicate key {0}")]
    DuplicateKey(String),
}

/// Echoes at most a few characters of client input into a reply, so a hostile line can't make
/// the reply long or smuggle control characters into HAProxy's logs.
fn echo(token: &str) -> String {
    let mut out: String = token
        .chars()
        .take(24)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    if token.chars().count() > 24 {
        out.push('…');
    }
    out
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
}

fn valid_authority(authority: &str) -> bool {
    !authority.is_empty()
        && authority.len() <= 260
        && authority.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        })
}

/// Parses one request line (terminator already removed).
pub fn parse_request(raw: &[u8]) -> Result<CheckRequest, RequestError> {
    if raw.len() > MAX_LINE {
        return Err(RequestError::TooLong);
    }
    let line = std::str::from_utf8(raw).map_err(|_| RequestError::NotUtf8)?;
    // HAProxy ends lines with \n; telnet-style clients add \r.
    let line = line.trim_end_matches(['\r', '\n']);
    let mut words = line.split_ascii_whitespace();
    let Some(host) = words.next() else {
        return Err(RequestError::Empty);
    };
    let (Some(port), Some(tls), Some(authority)) = (words.next(), words.next(), words.next())
    else {
        return Err(RequestError::MissingFields);
    };

    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if !valid_host(host) {
        return Err(RequestError::Host);
    }
    let port = match port.parse::<u16>() {
        Ok(p) if p != 0 => p,
        _ => return Err(RequestError::Port(echo(port))),
    };
    let tls = match tls.to_ascii_lowercase().as_str() {
        "ssl" => true,
        "no-ssl" => false,
        _ => return Err(RequestError::Tls(echo(tls))),
    };
    if !valid_authority(authority) {
        return Err(RequestError::Authority);
    }

    let mut service: Option<String> = None;
    let mut timeout: Option<Duration> = None;
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(RequestError::NotKeyValue(echo(word)));
        };
        match key {
            "service" => {
                if service.is_some() {
                    return Err(RequestError::DuplicateKey(echo(key)));
                }
                if !value.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(RequestError::Service);
                }
                service = Some(value.to_owned());
            }
            "timeout" => {
                if timeout.is_some() {
                    return Err(RequestError::DuplicateKey(echo(key)));
                }
                match value.parse::<u64>() {
                    Ok(ms) if (MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&ms) => {
                        timeout = Some(Duration::from_millis(ms));
                    }
                    _ => return Err(RequestError::Timeout(echo(value))),
                }
            }
            other => return Err(RequestError::UnknownKey(echo(other))),
        }
    }

    Ok(CheckRequest {
        target: Target {
            host: host.to_owned(),
            port,
            tls,
            authority: authority.to_owned(),
        },
        service: service.unwrap_or_default(),
        timeout,
    })
}

/// Operational state word of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Up,
    Down,
}

/// Administrative word of a reply; HAProxy keeps an admin state until told otherwise, so
/// `Ready` is needed to undo an earlier `Drain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    Drain,
    Ready,
}

/// One reply line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub state: State,
    pub admin: Option<Admin>,
    pub reason: Option<String>,
}

impl Reply {
    pub fn up() -> Self {
        Reply {
            state: State::Up,
            admin: None,
            reason: None,
        }
    }

    pub fn down(reason: impl Into<String>) -> Self {
        Reply {
            state: State::Down,
            admin: None,
            reason: Some(reason.into()),
        }
    }

    pub fn with_admin(mut self, admin: Option<Admin>) -> Self {
        self.admin = admin;
        self
    }
}

impl fmt::Display for Reply {
    /// Renders the line including its `\n` terminator.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.state {
            State::Up => "up",
            State::Down => "down",
        })?;
        match self.admin {
            Some(Admin::Drain) => f.write_str(" drain")?,
            Some(Admin::Ready) => f.write_str(" ready")?,
            None => {}
        }
        if let Some(reason) = &self.reason {
            // A newline inside the reason would end HAProxy's read early and leave the rest
            // to be taken as the next reply.
            let clean: String = reason
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            write!(f, " #{clean}")?;
        }
        f.write_str("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> CheckRequest {
        match parse_request(line.as_bytes()) {
            Ok(r) => r,
            Err(e) => panic!("{line:?} refused: {e}"),
        }
    }

    #[test]
    fn four_field_form() {
        let r = ok("10.0.0.5 50051 no-ssl api.example.com");
        assert_eq!(r.target.host, "10.0.0.5");
        assert_eq!(r.target.port, 50051);
        assert!(!r.target.tls);
        assert_eq!(r.target.authority, "api.example.com");
        assert_eq!(r.service, "");
        assert_eq!(r.timeout, None);
    }

    #[test]
    fn keys_and_crlf() {
        let r = ok("svc 443 SSL svc.local:443 service=pkg.Foo timeout=250\r");
        assert!(r.target.tls);
        assert_eq!(r.service, "pkg.Foo");
        assert_eq!(r.timeout, Some(Duration::from_millis(250)));
    }

    #[test]
    fn ipv6_host_in_brackets() {
        let r = ok("[::1] 5000 no-ssl localhost");
        assert_eq!(r.target.host, "::1");
        assert_eq!(r.target.host_port(), "[::1]:5000");
    }

    #[test]
    fn refusals() {
        let cases: &[(&str, RequestError)] = &[
            ("", RequestError::Empty),
            ("   ", RequestError::Empty),
            ("a 1 no-ssl", RequestError::MissingFields),
            ("a 0 no-ssl x", RequestError::Port("0".into())),
            ("a 70000 no-ssl x", RequestError::Port("70000".into())),
            ("a -1 no-ssl x", RequestError::Port("-1".into())),
            ("a 1 tls x", RequestError::Tls("tls".into())),
            ("a/b 1 ssl x", RequestError::Host),
            ("a 1 ssl x/y", RequestError::Authority),
            ("a 1 ssl x foo", RequestError::NotKeyValue("foo".into())),
            ("a 1 ssl x bar=1", RequestError::UnknownKey("bar".into())),
            ("a 1 ssl x timeout=0", RequestError::Timeout("0".into())),
            (
                "a 1 ssl x timeout=soon",
                RequestError::Timeout("soon".into()),
            ),
            (
                "a 1 ssl x service=a service=b",
                RequestError::DuplicateKey("service".into()),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_request(line.as_bytes()).as_ref(),
                Err(want),
                "{line:?}"
            );
        }
        assert_eq!(parse_request(&[0xff, 0xfe]), Err(RequestError::NotUtf8));
        assert_eq!(
            parse_request(&vec![b'a'; MAX_LINE + 1]),
            Err(RequestError::TooLong)
        );
    }

    #[test]
    fn echo_is_bounded_and_printable() {
        let long = format!("{}\u{7}", "x".repeat(100));
        let err = parse_request(format!("a {long} ssl x").as_bytes());
        let Err(RequestError::Port(echoed)) = err else {
            panic!("expected a port error, got {err:?}");
        };
        assert!(echoed.chars().count() <= 25, "{echoed}");
        assert!(!echoed.contains('\u{7}'));
    }

    #[test]
    fn reply_rendering() {
        assert_eq!(Reply::up().to_string(), "up\n");
        assert_eq!(
            Reply::up().with_admin(Some(Admin::Drain)).to_string(),
            "up drain\n"
        );
        assert_eq!(
            Reply::up().with_admin(Some(Admin::Ready)).to_string(),
            "up ready\n"
        );
        assert_eq!(
            Reply::down("NOT_SERVING")
                .with_admin(Some(Admin::Drain))
                .to_string(),
            "down drain #NOT_SERVING\n"
        );
        assert_eq!(Reply::down("a\nb").to_string(), "down #a b\n");
    }
}
