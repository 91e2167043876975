//! Plain HTTP sent to HTTPS: `https://<host>[:port]<path>?<query>` (the port left out when it
//! is 443), 301 for GET and HEAD and 308 for the rest (308 keeps the method and body). ACME
//! HTTP-01 validations (`/.well-known/acme-challenge/`) are never redirected: a CA must find
//! them on the plain listener.

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode, Uri};

use crate::proxy::request::body::ProxyBody;

/// Path prefix of ACME HTTP-01 validations.
pub const ACME_CHALLENGE: &str = "/.well-known/acme-challenge/";

/// Whether a request on a redirecting listener is answered with the redirect.
pub fn applies(uri: &Uri) -> bool {
    !uri.path().starts_with(ACME_CHALLENGE)
}

/// The redirect answer; a request without a usable host gets 400.
pub fn response(method: &Method, host: Option<&str>, uri: &Uri, port: u16) -> Response<ProxyBody> {
    let Some(location) = host.and_then(|h| location(h, uri, port)) else {
        let mut resp = Response::new(ProxyBody::full(Bytes::from_static(
            b"a redirect to HTTPS needs a Host\n",
        )));
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return resp;
    };
    // The target in the body too, for people reading the answer with curl.
    let body = format!("{}\n", location.to_str().unwrap_or_default());
    let mut resp = Response::new(ProxyBody::full(Bytes::from(body)));
    *resp.status_mut() = if matches!(*method, Method::GET | Method::HEAD) {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    resp.headers_mut().insert(header::LOCATION, location);
    resp
}

/// `https://<host>[:port]<path>[?query]` from the request's host (its port dropped).
fn location(host: &str, uri: &Uri, port: u16) -> Option<HeaderValue> {
    let name = match host.strip_prefix('[') {
        // An IPv6 literal keeps its brackets.
        Some(rest) => &host[..rest.find(']')? + 2],
        None => host.split(':').next()?,
    };
    if name.is_empty() {
        return None;
    }
    let mut text = String::with_capacity(name.len() + uri.path().len() + 16);
    text.push_str("https://");
    text.push_str(name);
    if port != 443 {
        text.push(':');
        text.push_str(&port.to_string());
    }
    text.push_str(uri.path());
    if let Some(q) = uri.query() {
        text.push('?');
        text.push_str(q);
    }
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(host: &str, uri: &str, port: u16) -> Option<String> {
        let uri: Uri = uri.parse().expect("uri");
        location(host, &uri, port).map(|v| v.to_str().expect("ascii").to_string())
    }

    #[test]
    fn targets_keep_path_query_and_a_non_default_port() {
        assert_eq!(
            loc("a.test:8080", "/x/y?q=1", 443).as_deref(),
            Some("https://a.test/x/y?q=1")
        );
        assert_eq!(
            loc("a.test", "/", 8443).as_deref(),
            Some("https://a.test:8443/")
        );
        assert_eq!(
            loc("[::1]:80", "/p", 443).as_deref(),
            Some("https://[::1]/p")
        );
        assert_eq!(loc("", "/", 443), None);
        assert!(!applies(
            &"/.well-known/acme-challenge/tok".parse().expect("uri")
        ));
        assert!(applies(&"/.well-known/other".parse().expect("uri")));
    }

    #[test]
    fn get_and_head_get_301_the_rest_308() {
        let uri: Uri = "/a".parse().expect("uri");
        for (m, code) in [
            (Method::GET, 301),
            (Method::HEAD, 301),
            (Method::POST, 308),
            (Method::DELETE, 308),
        ] {
            assert_eq!(
                response(&m, Some("h.test"), &uri, 443).status().as_u16(),
                code
            );
        }
        assert_eq!(
            response(&Method::GET, None, &uri, 443).status().as_u16(),
            400
        );
    }
}
