//! ACME HTTP-01 (RFC 8555 §8.3) on the client listeners: `GET /.well-known/acme-challenge/<token>`
//! is answered with the key authorization of an order in flight (this proxy's, or one placed by
//! another proxy sharing the certificate store), before routing. A token no order knows falls
//! through to the routes, so a backend that obtains its own certificates (TLS passed through)
//! still gets its validation requests.

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response};

use crate::proxy::acme::HTTP01_PREFIX;
use crate::proxy::request::body::ProxyBody;
use crate::proxy::runtime::state::Shared;

/// The answer to a validation request, if this is one for a known token.
pub fn answer<B>(shared: &Shared, req: &Request<B>) -> Option<Response<ProxyBody>> {
    let manager = shared.acme.get()?;
    let token = req.uri().path().strip_prefix(HTTP01_PREFIX)?;
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    let key_auth = manager.challenges().http01(token)?;
    tracing::info!(token, "answered an ACME HTTP-01 validation request");
    let mut resp = Response::new(ProxyBody::full(Bytes::from(key_auth)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Some(resp)
}
