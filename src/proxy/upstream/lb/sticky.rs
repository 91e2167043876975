//! Sticky sessions: the response carries a cookie whose value is a sealed token (a keyed
//! SHA-256 of cluster and address) so clients can neither read nor forge the server address.
//! New clients, and clients whose pinned server is gone or unhealthy, are placed by smooth
//! weighted round robin and get a fresh cookie.

use hyper::HeaderMap;
use hyper::header::COOKIE;
use sha2::{Digest, Sha256};

use super::smooth_weighted::SmoothWeighted;

pub struct StickyCookie {
    pub cookie: String,
    tokens: Vec<String>,
    pub fallback: SmoothWeighted,
}

impl StickyCookie {
    pub fn new<'a>(
        cluster: &str,
        addresses: impl Iterator<Item = &'a str>,
        weights: &[u32],
        cookie: &str,
        secret: &[u8],
    ) -> Self {
        let tokens = addresses
            .map(|address| {
                let mut h = Sha256::new();
                h.update(secret);
                h.update([0]);
                h.update(cluster.as_bytes());
                h.update([0]);
                h.update(address.as_bytes());
                hex::encode(&h.finalize()[..12])
            })
            .collect();
        Self {
            cookie: cookie.to_string(),
            tokens,
            fallback: SmoothWeighted::new(weights),
        }
    }

    /// The server the request's cookie pins it to, if the cookie is present and valid.
    pub fn pinned(&self, headers: &HeaderMap) -> Option<usize> {
        for value in headers.get_all(COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            for pair in text.split(';') {
                let Some((name, val)) = pair.trim().split_once('=') else {
                    continue;
                };
                if name == self.cookie {
                    return self.tokens.iter().position(|t| t == val);
                }
            }
        }
        None
    }

    pub fn set_cookie(&self, server: usize) -> Option<hyper::header::HeaderValue> {
        let token = self.tokens.get(server)?;
        hyper::header::HeaderValue::try_from(format!(
            "{}={token}; Path=/; HttpOnly; SameSite=Lax",
            self.cookie
        ))
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_round_trips_and_rejects_forgery() {
        let s = StickyCookie::new(
            "c",
            ["10.0.0.1:80", "10.0.0.2:80"].into_iter(),
            &[1, 1],
            "sid",
            b"k",
        );
        let set = s.set_cookie(1).expect("cookie");
        let value = set
            .to_str()
            .expect("ascii")
            .split(';')
            .next()
            .expect("pair")
            .to_string();
        assert!(!value.contains("10.0.0.2"));
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, format!("other=1; {value}").parse().expect("header"));
        assert_eq!(s.pinned(&headers), Some(1));
        headers.insert(COOKIE, "sid=deadbeef".parse().expect("header"));
        assert_eq!(s.pinned(&headers), None);
    }
}
