//! `redirect_scheme` and `redirect_regex`: answer with a redirect instead of forwarding.
//! `302`/`307` (or `301`/`308` when permanent); the 30x that keeps the method is used for
//! anything but GET and HEAD.

use hyper::header::{self, HeaderValue};
use hyper::{Method, StatusCode, Uri};

use super::Answer;
use crate::proxy::base::config_middleware::{RedirectRegex, RedirectScheme};

/// What a redirect needs to know about the request.
pub(crate) struct Target<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) host: Option<&'a str>,
    /// The request came over TLS.
    pub(crate) tls: bool,
}

impl Target<'_> {
    /// `scheme://host/path?query` as the client asked for it.
    pub(crate) fn url(&self) -> String {
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        format!(
            "{}://{}{}",
            if self.tls { "https" } else { "http" },
            self.host.unwrap_or(""),
            path
        )
    }
}

fn status(permanent: bool, method: &Method) -> StatusCode {
    let safe = matches!(*method, Method::GET | Method::HEAD);
    match (permanent, safe) {
        (true, true) => StatusCode::MOVED_PERMANENTLY,
        (true, false) => StatusCode::PERMANENT_REDIRECT,
        (false, true) => StatusCode::FOUND,
        (false, false) => StatusCode::TEMPORARY_REDIRECT,
    }
}

fn answer(permanent: bool, method: &Method, location: &str) -> Option<Answer> {
    let value = HeaderValue::from_str(location).ok()?;
    let mut a = Answer::new(status(permanent, method), "");
    a.headers.insert(header::LOCATION, value);
    Some(a)
}

/// The host name without its port (IPv6 literals keep their brackets).
fn host_name(host: &str) -> &str {
    match host.strip_prefix('[') {
        Some(rest) => rest.find(']').map_or(host, |i| &host[..i + 2]),
        None => host.split(':').next().unwrap_or(host),
    }
}

pub(crate) fn scheme(c: &RedirectScheme, t: &Target<'_>) -> Option<Answer> {
    let current = if t.tls { "https" } else { "http" };
    let default_port = if c.scheme == "https" { 443 } else { 80 };
    let host = host_name(t.host?);
    let port = c.port.filter(|p| *p != default_port);
    if c.scheme == current && port.is_none() {
        return None;
    }
    let path = t.uri.path_and_query().map_or("/", |p| p.as_str());
    let location = match port {
        Some(p) => format!("{}://{host}:{p}{path}", c.scheme),
        None => format!("{}://{host}{path}", c.scheme),
    };
    answer(c.permanent, t.method, &location)
}

pub(crate) struct Regex {
    re: regex::Regex,
    replacement: String,
    permanent: bool,
}

impl Regex {
    pub(crate) fn new(c: &RedirectRegex) -> Option<Self> {
        Some(Self {
            re: regex::Regex::new(&c.regex).ok()?,
            replacement: c.replacement.clone(),
            permanent: c.permanent,
        })
    }

    pub(crate) fn apply(&self, t: &Target<'_>) -> Option<Answer> {
        let url = t.url();
        if !self.re.is_match(&url) {
            return None;
        }
        let location = self.re.replace(&url, self.replacement.as_str());
        if location == url {
            return None;
        }
        answer(self.permanent, t.method, &location)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(uri: &'a Uri, tls: bool) -> Target<'a> {
        Target {
            method: &Method::GET,
            uri,
            host: Some("a.test:8080"),
            tls,
        }
    }

    #[test]
    fn scheme_and_regex_redirects() {
        let uri: Uri = "/x?y=1".parse().expect("uri");
        let c = RedirectScheme {
            scheme: "https".into(),
            port: None,
            permanent: true,
        };
        let a = scheme(&c, &target(&uri, false)).expect("redirect");
        assert_eq!(a.status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(a.headers[header::LOCATION], "https://a.test/x?y=1");
        assert!(scheme(&c, &target(&uri, true)).is_none());
        let r = Regex::new(&RedirectRegex {
            regex: "^http://a\\.test:8080/x(.*)".into(),
            replacement: "https://b.test/new$1".into(),
            permanent: false,
        })
        .expect("regex");
        let a = r.apply(&target(&uri, false)).expect("redirect");
        assert_eq!(a.status, StatusCode::FOUND);
        assert_eq!(a.headers[header::LOCATION], "https://b.test/new?y=1");
        assert!(r.apply(&target(&uri, true)).is_none());
    }
}
