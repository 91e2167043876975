//! `headers`: security headers added to answers (HSTS, frame options, nosniff, CSP,
//! referrer policy, custom ones), custom request headers, and CORS: preflight `OPTIONS`
//! requests answered here, `Access-Control-Allow-Origin` on the rest for allowed origins.

use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, StatusCode};

use super::Answer;
use crate::proxy::base::config_middleware::SecurityHeaders;

pub(crate) struct Headers {
    /// Set on answers (`None`: removed).
    response: Vec<(HeaderName, Option<HeaderValue>)>,
    /// Set on forwarded requests (`None`: removed).
    pub(crate) request: Vec<(HeaderName, Option<HeaderValue>)>,
    cors: Option<Cors>,
}

struct Cors {
    any_origin: bool,
    origins: Vec<HeaderValue>,
    methods: Option<HeaderValue>,
    headers: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
}

fn joined(list: &[String]) -> Option<HeaderValue> {
    (!list.is_empty())
        .then(|| HeaderValue::from_str(&list.join(", ")).ok())
        .flatten()
}

fn pairs(
    map: &std::collections::BTreeMap<String, String>,
) -> Vec<(HeaderName, Option<HeaderValue>)> {
    map.iter()
        .filter_map(|(k, v)| {
            let name = HeaderName::from_bytes(k.as_bytes()).ok()?;
            let value = if v.is_empty() {
                None
            } else {
                Some(HeaderValue::from_str(v).ok()?)
            };
            Some((name, value))
        })
        .collect()
}

impl Headers {
    pub(crate) fn new(c: &SecurityHeaders) -> Self {
        let mut response = Vec::new();
        let mut push = |name: HeaderName, value: Option<&str>| {
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
                response.push((name, Some(v)));
            }
        };
        if c.sts_seconds > 0 {
            let mut v = format!("max-age={}", c.sts_seconds);
            if c.sts_include_subdomains {
                v.push_str("; includeSubDomains");
            }
            if c.sts_preload {
                v.push_str("; preload");
            }
            push(header::STRICT_TRANSPORT_SECURITY, Some(&v));
        }
        push(header::X_FRAME_OPTIONS, c.frame_options.as_deref());
        push(
            header::X_CONTENT_TYPE_OPTIONS,
            c.content_type_nosniff.then_some("nosniff"),
        );
        push(
            header::CONTENT_SECURITY_POLICY,
            c.content_security_policy.as_deref(),
        );
        push(header::REFERRER_POLICY, c.referrer_policy.as_deref());
        response.extend(pairs(&c.custom_response_headers));
        let cors = c.cors.as_ref().map(|c| Cors {
            any_origin: c.allow_origins.iter().any(|o| o == "*"),
            origins: c
                .allow_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect(),
            methods: joined(&c.allow_methods),
            headers: joined(&c.allow_headers),
            expose: joined(&c.expose_headers),
            credentials: c.allow_credentials,
            max_age: c.max_age_s.map(HeaderValue::from),
        });
        Self {
            response,
            request: pairs(&c.custom_request_headers),
            cors,
        }
    }

    pub(crate) fn has_cors(&self) -> bool {
        self.cors.is_some()
    }

    /// A CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here.
    pub(crate) fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<Answer> {
        let cors = self.cors.as_ref()?;
        if method != Method::OPTIONS || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return None;
        }
        let mut answer = Answer::new(StatusCode::NO_CONTENT, "");
        let h = &mut answer.headers;
        if let Some(origin) = cors.allowed(headers.get(header::ORIGIN)) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            if let Some(v) = &cors.methods {
                h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v.clone());
            }
            if let Some(v) = &cors.headers {
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
            }
            if cors.credentials {
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
            if let Some(v) = &cors.max_age {
                h.insert(header::ACCESS_CONTROL_MAX_AGE, v.clone());
            }
        }
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        Some(answer)
    }

    /// Adds the configured headers to an answer; `origin` is the request's `Origin`.
    pub(crate) fn apply(&self, out: &mut HeaderMap, origin: Option<&HeaderValue>) {
        for (name, value) in &self.response {
            match value {
                Some(v) => {
                    out.insert(name.clone(), v.clone());
                }
                None => {
                    out.remove(name);
                }
            }
        }
        if let Some(cors) = &self.cors {
            if let Some(origin) = cors.allowed(origin) {
                out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                if cors.credentials {
                    out.insert(
                        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                        HeaderValue::from_static("true"),
                    );
                }
                if let Some(v) = &cors.expose {
                    out.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
                }
            }
            out.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}

impl Cors {
    /// The `Access-Control-Allow-Origin` value for this request's origin, if it is allowed.
    fn allowed(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        if self.any_origin && !self.credentials {
            return Some(HeaderValue::from_static("*"));
        }
        // With credentials a wildcard must echo the origin (browsers refuse `*` then).
        (self.any_origin || self.origins.iter().any(|o| o == origin)).then(|| origin.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::base::config_middleware::Cors as CorsConfig;

    #[test]
    fn security_headers_and_cors() {
        let h = Headers::new(&SecurityHeaders {
            sts_seconds: 60,
            sts_include_subdomains: true,
            frame_options: Some("DENY".into()),
            content_type_nosniff: true,
            custom_response_headers: [("server".to_string(), String::new())].into(),
            cors: Some(CorsConfig {
                allow_origins: vec!["https://a.test".into()],
                allow_methods: vec!["GET".into(), "PUT".into()],
                max_age_s: Some(600),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut out = HeaderMap::new();
        out.insert(header::SERVER, HeaderValue::from_static("x"));
        let origin = HeaderValue::from_static("https://a.test");
        h.apply(&mut out, Some(&origin));
        assert_eq!(
            out[header::STRICT_TRANSPORT_SECURITY],
            "max-age=60; includeSubDomains"
        );
        assert_eq!(out[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(out[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://a.test");
        assert!(!out.contains_key(header::SERVER));
        let mut req = HeaderMap::new();
        req.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.test"),
        );
        req.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PUT"),
        );
        let pre = h.preflight(&Method::OPTIONS, &req).expect("preflight");
        assert_eq!(pre.status, StatusCode::NO_CONTENT);
        assert!(
            !pre.headers
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        );
        req.insert(header::ORIGIN, origin);
        let pre = h.preflight(&Method::OPTIONS, &req).expect("preflight");
        assert_eq!(
            pre.headers[header::ACCESS_CONTROL_ALLOW_METHODS],
            "GET, PUT"
        );
        assert_eq!(pre.headers[header::ACCESS_CONTROL_MAX_AGE], "600");
        assert!(h.preflight(&Method::GET, &req).is_none());
    }
}
