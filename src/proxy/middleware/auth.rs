//! `basic_auth`: `Authorization: Basic` checked against htpasswd lines (bcrypt or `{SHA}`).
//! bcrypt is slow on purpose, so a successful check is remembered (a SHA-256 of the
//! credentials, bounded) and repeated requests of a logged-in client cost one hash.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use base64::Engine as _;
use hyper::HeaderMap;
use hyper::header::{self, HeaderValue};
use sha2::Digest as _;

use crate::proxy::base::config_middleware::BasicAuth;

/// Remembered successes at most; the set is cleared when full.
const REMEMBERED: usize = 4096;

enum Hash {
    Bcrypt(String),
    /// The SHA-1 digest of the password.
    Sha([u8; 20]),
}

pub(crate) struct Auth {
    users: HashMap<String, Hash>,
    pub(crate) challenge: HeaderValue,
    pub(crate) remove_header: bool,
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Auth {
    pub(crate) fn new(c: &BasicAuth) -> Self {
        let mut users = HashMap::new();
        for line in &c.users {
            let Some((user, hash)) = line.split_once(':') else {
                continue;
            };
            let parsed = match hash.strip_prefix("{SHA}") {
                Some(b64) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .ok()
                    .and_then(|d| <[u8; 20]>::try_from(d.as_slice()).ok())
                    .map(Hash::Sha),
                None => Some(Hash::Bcrypt(hash.to_string())),
            };
            if let Some(h) = parsed {
                users.insert(user.to_string(), h);
            }
        }
        let challenge = HeaderValue::from_str(&format!("Basic realm=\"{}\"", c.realm))
            .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"itsup\""));
        Self {
            users,
            challenge,
            remove_header: c.remove_header,
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// Whether the request carries the credentials of a listed user.
    pub(crate) fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return false;
        };
        let Some(encoded) = value.to_str().ok().and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        }) else {
            return false;
        };
        let key: [u8; 32] = sha2::Sha256::digest(encoded.trim().as_bytes()).into();
        if self.verified.lock().is_ok_and(|v| v.contains(&key)) {
            return true;
        }
        let Some(decoded) = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
        else {
            return false;
        };
        let Some((user, password)) = decoded.split_once(':') else {
            return false;
        };
        let ok = match self.users.get(user) {
            Some(Hash::Bcrypt(h)) => bcrypt::verify(password, h).unwrap_or(false),
            Some(Hash::Sha(d)) => {
                let got: [u8; 20] = sha1::Sha1::digest(password.as_bytes()).into();
                // Constant-time enough for a 20-byte digest: compare every byte.
                got.iter().zip(d).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
            }
            None => false,
        };
        if ok && let Ok(mut v) = self.verified.lock() {
            if v.len() >= REMEMBERED {
                v.clear();
            }
            v.insert(key);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {token}")).expect("value"),
        );
        h
    }

    #[test]
    fn bcrypt_and_sha_lines() {
        let bcrypt_hash = bcrypt::hash("s3cret", 4).expect("hash");
        let auth = Auth::new(&BasicAuth {
            users: vec![
                format!("alice:{bcrypt_hash}"),
                // htpasswd -s: {SHA} + base64(sha1("password")).
                "bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=".into(),
            ],
            realm: "r".into(),
            remove_header: false,
        });
        assert!(auth.admits(&basic("alice", "s3cret")));
        assert!(auth.admits(&basic("alice", "s3cret")), "remembered");
        assert!(!auth.admits(&basic("alice", "wrong")));
        assert!(auth.admits(&basic("bob", "password")));
        assert!(!auth.admits(&basic("bob", "Password")));
        assert!(!auth.admits(&basic("carol", "x")));
        assert!(!auth.admits(&HeaderMap::new()));
    }
}
