//! The direct HTTP/1.1 upstream path, taken by requests without a body (GET, HEAD, most
//! DELETE and OPTIONS: the bulk of proxied traffic) to HTTP/1.1 clusters.
//!
//! hyper's client runs each connection as a task of its own and hands requests and
//! responses over channels; for a bodiless request that hand-off costs about a third of the
//! proxy's own CPU time per request. Here the client's task writes the request head and
//! reads the response itself: heads, chunk sizes and trailers are parsed by `httparse` (the
//! parser inside hyper), framing follows RFC 9112 §6.3 ([`head`]), and the body is read by
//! whoever polls it ([`body`]), which is hyper's server writing it to the client.
//!
//! Requests with a body, protocol upgrades and h2c clusters keep using hyper's client,
//! which streams a body while watching for an early response.

pub mod body;
pub mod conn;
pub mod head;

use std::io;

use hyper::{Request, Response};
use tokio::io::AsyncWriteExt;

use crate::proxy::upstream::body::UpBody;
pub use body::ResponseBody;
pub use conn::H1Conn;

#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error("upstream i/o: {0}")]
    Io(#[from] io::Error),
    #[error("upstream closed the connection before answering")]
    Closed,
    #[error("upstream closed the connection in the middle of the response")]
    Truncated,
    #[error("upstream response head too large")]
    HeadTooLarge,
    #[error("invalid upstream response: {0}")]
    Invalid(String),
}

/// Why an exchange produced no response.
#[derive(Debug)]
pub enum Failure {
    /// A pooled connection ended before any byte of a response: the upstream closed it as
    /// idle while the request was on its way. Re-sending is safe for idempotent requests.
    Stale,
    Error(H1Error),
}

/// Writes `req`'s head on `conn` and reads the response head. The body stays on the
/// connection, read as the returned response's body is polled.
pub async fn exchange(
    mut conn: H1Conn,
    req: &Request<UpBody>,
) -> Result<Response<ResponseBody>, Failure> {
    let mut out = std::mem::take(&mut conn.out);
    out.clear();
    head::encode_request(req.method(), req.uri(), req.headers(), &mut out);
    let written = conn.io.write_all(&out).await;
    conn.out = out;
    if let Err(e) = written {
        return Err(if conn.reused {
            Failure::Stale
        } else {
            Failure::Error(e.into())
        });
    }
    let mut received = false;
    loop {
        match head::parse_response(&mut conn.buf, req.method()) {
            Ok(Some(h)) => {
                let mut resp = Response::new(ResponseBody::new(conn, h.framing, h.keep_alive));
                *resp.status_mut() = h.status;
                *resp.headers_mut() = h.headers;
                return Ok(resp);
            }
            Ok(None) => {}
            Err(e) => return Err(Failure::Error(e)),
        }
        let stale = conn.reused && !received;
        match conn.fill().await {
            Ok(0) if stale => return Err(Failure::Stale),
            Ok(0) => return Err(Failure::Error(H1Error::Closed)),
            Ok(_) => received = true,
            Err(e) if stale && e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(Failure::Stale);
            }
            Err(e) => return Err(Failure::Error(e.into())),
        }
    }
}
