//! What a new connection on a TCP listener goes through before its bytes are forwarded:
//! the PROXY header (required from trusted senders, refused from anyone else, within a short
//! deadline), the ClientHello's server name (unless the port's only route takes everything
//! at once), the route choice, its allowlist and the connection cap, then TLS termination
//! or passthrough. On a shared HTTPS port, names without a TCP route come back as
//! [`Outcome::Https`] with the bytes read so far replayed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::client_hello::{self, Hello, MAX_HELLO_BYTES};
use super::forward::{self, Ends};
use super::listener::{Listener, Route};
use super::proxy_protocol::{self, Parsed};
use super::rewind::Rewound;
use crate::proxy::runtime::metrics::L4Metrics;

/// Where the connection went.
pub enum Outcome {
    /// Served (forwarded, or refused and counted).
    Done,
    /// Not a TCP route: serve it as HTTPS for `client`.
    Https {
        stream: Rewound<TcpStream>,
        client: SocketAddr,
    },
}

/// What the first bytes said about TLS.
enum Intro {
    Name(Option<String>),
    NotTls,
    /// The client sent nothing within `hello_ms` (a server-first protocol).
    Silent,
    /// Garbage in a TLS record, a truncated or oversized hello, or the client left.
    Bad(&'static str),
}

/// Runs one connection; `slot` is its `max_connections` permit when the accept loop took it.
pub async fn serve(
    l: &Listener,
    mut stream: TcpStream,
    peer: SocketAddr,
    slot: Option<OwnedSemaphorePermit>,
    m: &L4Metrics,
) -> Outcome {
    let local = stream.local_addr().unwrap_or(peer);
    let mut buf = BytesMut::with_capacity(2048);
    let mut client = peer;
    // An untrusted peer on a port that accepts PROXY headers must not pass one off.
    let mut sniff = false;
    if let Some((trusted, limit)) = &l.trusted {
        if trusted.contains(peer.ip()) {
            match tokio::time::timeout(*limit, read_proxy(&mut stream, &mut buf)).await {
                Ok(Ok(source)) => {
                    m.proxy_accepted.fetch_add(1, Ordering::Relaxed);
                    client = source.unwrap_or(peer);
                }
                Ok(Err(why)) => return refused(m, peer, why),
                Err(_) => return refused(m, peer, "PROXY header not received in time"),
            }
        } else {
            sniff = true;
        }
    }
    let route = if l.forwards_at_once() && buf.is_empty() {
        l.catch_all.clone()
    } else {
        let read = tokio::time::timeout(l.hello, read_hello(&mut stream, &mut buf)).await;
        let intro = match read {
            Ok(intro) => intro,
            Err(_) if buf.is_empty() => Intro::Silent,
            Err(_) => Intro::Bad("ClientHello not complete in time"),
        };
        match choose(l, intro, sniff && proxy_protocol::looks_like_header(&buf)) {
            Choice::Route(r) => Some(r),
            Choice::Https => {
                return Outcome::Https {
                    stream: Rewound::new(buf.freeze(), stream),
                    client,
                };
            }
            Choice::Refuse(counter, why) => {
                counter(m).fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, reason = why, "tcp connection refused");
                return Outcome::Done;
            }
        }
    };
    let Some(route) = route else {
        m.no_route.fetch_add(1, Ordering::Relaxed);
        return Outcome::Done;
    };
    if !route.allow.allows(client.ip()) {
        route.metrics.denied.fetch_add(1, Ordering::Relaxed);
        return Outcome::Done;
    }
    let _slot = match slot {
        Some(s) => s,
        None => match l.slots.clone().try_acquire_owned() {
            Ok(s) => s,
            Err(_) => {
                m.refused_max_connections.fetch_add(1, Ordering::Relaxed);
                return Outcome::Done;
            }
        },
    };
    let ends = Ends { client, local };
    let sniff = sniff && buf.is_empty();
    let stream = Rewound::new(buf.freeze(), stream);
    pass(l, &route, stream, ends, sniff.then_some(&m.proxy_refused)).await;
    Outcome::Done
}

type Counter = fn(&L4Metrics) -> &std::sync::atomic::AtomicU64;

enum Choice {
    Route(Arc<Route>),
    Https,
    Refuse(Counter, &'static str),
}

/// The route for what the client's first bytes said.
fn choose(l: &Listener, intro: Intro, proxy_header: bool) -> Choice {
    let fallback = |why| match &l.catch_all {
        Some(r) => Choice::Route(r.clone()),
        None => Choice::Refuse(|m| &m.bad_hello, why),
    };
    match intro {
        _ if proxy_header => {
            Choice::Refuse(|m| &m.proxy_refused, "PROXY header from an untrusted peer")
        }
        Intro::Name(Some(name)) => match l.sni.find(&name) {
            Some(r) => Choice::Route(r.clone()),
            None if l.https => Choice::Https,
            None => match &l.catch_all {
                Some(r) => Choice::Route(r.clone()),
                None => Choice::Refuse(|m| &m.no_route, "no route for this server name"),
            },
        },
        Intro::Name(None) if l.https => Choice::Https,
        Intro::Name(None) => fallback("ClientHello without a server name"),
        Intro::NotTls => fallback("not TLS"),
        Intro::Silent => fallback("the client sent nothing"),
        Intro::Bad(why) => Choice::Refuse(|m| &m.bad_hello, why),
    }
}

/// Terminates TLS when the route asks for it, then forwards.
async fn pass(
    l: &Listener,
    route: &Route,
    stream: Rewound<TcpStream>,
    ends: Ends,
    sniff: Option<&std::sync::atomic::AtomicU64>,
) {
    if !route.terminate {
        return forward::run(stream, ends, route, l.connect, l.idle, sniff).await;
    }
    let Some(acceptor) = &l.terminator else {
        return;
    };
    match tokio::time::timeout(l.hello, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => forward::run(tls, ends, route, l.connect, l.idle, None).await,
        Ok(Err(e)) => tracing::debug!(route = %route.name, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(route = %route.name, "TLS handshake timed out"),
    }
}

fn refused(m: &L4Metrics, peer: SocketAddr, why: &'static str) -> Outcome {
    m.proxy_refused.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(%peer, reason = why, "PROXY header refused");
    Outcome::Done
}

/// Reads a PROXY header; the bytes after it stay in `buf`. `Ok(None)`: a LOCAL/UNKNOWN header.
async fn read_proxy(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<Option<SocketAddr>, &'static str> {
    loop {
        match proxy_protocol::parse(buf) {
            Parsed::Complete { len, source, .. } => {
                let _ = buf.split_to(len);
                return Ok(source);
            }
            Parsed::Invalid(why) => return Err(why),
            Parsed::Incomplete => {}
        }
        buf.reserve(512);
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return Err("connection closed before the PROXY header"),
            Ok(_) => {}
        }
    }
}

/// Reads until the ClientHello is complete or clearly is not one.
async fn read_hello(stream: &mut TcpStream, buf: &mut BytesMut) -> Intro {
    loop {
        match client_hello::parse(buf) {
            Hello::Complete { sni } => return Intro::Name(sni),
            Hello::NotTls => return Intro::NotTls,
            Hello::Malformed(why) => return Intro::Bad(why),
            Hello::Incomplete => {}
        }
        let room = MAX_HELLO_BYTES.saturating_sub(buf.len()).min(4096);
        if room == 0 {
            return Intro::Bad("ClientHello too large");
        }
        buf.reserve(room);
        let mut limited = (&mut *stream).take(room as u64);
        match limited.read_buf(buf).await {
            Ok(0) if buf.is_empty() => return Intro::Bad("closed before sending anything"),
            Ok(0) => return Intro::Bad("ClientHello truncated: the client closed"),
            Err(_) => return Intro::Bad("read error before the ClientHello"),
            Ok(_) => {}
        }
    }
}
