//! Message heads on the upstream hop: the request head written for a bodiless request, and
//! the response head parsed by `httparse` (the parser inside hyper) together with the body
//! framing RFC 9112 §6.3 derives from it.

use bytes::BytesMut;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, StatusCode, Uri, Version};

use super::H1Error;
use crate::proxy::base::headers::connection_has;

/// Most header fields a response head may carry (hyper's default limit).
pub const MAX_HEADERS: usize = 100;
/// Largest response head accepted; a bigger one is answered 502.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: HEAD, 204, 304.
    Empty,
    Length(u64),
    Chunked,
    /// Read until the upstream closes; the connection cannot be reused.
    UntilClose,
}

/// A parsed final response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The connection may carry another request once this body is complete.
    pub keep_alive: bool,
}

/// Appends the request head: origin-form target, the headers as they are (the caller
/// already removed hop-by-hop fields and set `Host`), no body.
pub fn encode_request(method: &Method, uri: &Uri, headers: &HeaderMap, out: &mut Vec<u8>) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Parses the response head at the start of `buf` and removes it from `buf`, skipping
/// interim (1xx) responses. `None`: the head is incomplete, read more. Header values are
/// slices of the read buffer, not copies. `method` is the request's: a HEAD response has
/// no body whatever it announces.
pub fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, H1Error> {
    loop {
        let Some((facts, fields, len)) = scan(buf)? else {
            return Ok(None);
        };
        if facts.status.is_informational() {
            let _ = buf.split_to(len);
            continue;
        }
        let raw = buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(fields.len());
        for (name, start, end) in fields {
            // Slicing shares the buffer's memory instead of copying the value.
            let value = HeaderValue::from_maybe_shared(raw.slice(start..end))
                .map_err(|_| H1Error::Invalid(format!("value of {name}")))?;
            headers.append(name, value);
        }
        return Ok(Some(facts.into_head(headers, method)));
    }
}

/// What the header fields say about framing and reuse.
struct Facts {
    status: StatusCode,
    version: Version,
    content_length: Option<u64>,
    has_te: bool,
    chunked_last: bool,
}

type Fields = Vec<(HeaderName, usize, usize)>;

/// One `httparse` pass: the facts, each field's name and value span, the head length.
fn scan(buf: &[u8]) -> Result<Option<(Facts, Fields, usize)>, H1Error> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut slots);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(H1Error::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(H1Error::HeadTooLarge),
        Err(e) => return Err(H1Error::Invalid(e.to_string())),
    };
    let code = res.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| H1Error::Invalid(format!("status code {code}")))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(H1Error::Invalid("101 without an upgrade request".into()));
    }
    let mut facts = Facts {
        status,
        version: match res.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        },
        content_length: None,
        has_te: false,
        chunked_last: false,
    };
    let base = buf.as_ptr() as usize;
    let mut fields = Vec::with_capacity(res.headers.len());
    for h in res.headers.iter() {
        let name = header_name(h.name)?;
        if name == header::CONTENT_LENGTH {
            for part in h.value.split(|&b| b == b',') {
                let n = parse_length(part.trim_ascii())
                    .ok_or_else(|| H1Error::Invalid("Content-Length".into()))?;
                // Differing lengths are how responses get split (RFC 9112 §6.3 point 5).
                if facts.content_length.is_some_and(|c| c != n) {
                    return Err(H1Error::Invalid("conflicting Content-Length".into()));
                }
                facts.content_length = Some(n);
            }
        } else if name == header::TRANSFER_ENCODING {
            facts.has_te = true;
            facts.chunked_last = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        }
        // Values point into `buf`: keep their span, the bytes are sliced out afterwards.
        let start = h.value.as_ptr() as usize - base;
        fields.push((name, start, start + h.value.len()));
    }
    Ok(Some((facts, fields, len)))
}

impl Facts {
    fn into_head(self, mut headers: HeaderMap, method: &Method) -> ResponseHead {
        let close = connection_has(&headers, "close");
        let mut keep_alive = match self.version {
            Version::HTTP_10 => !close && connection_has(&headers, "keep-alive"),
            _ => !close,
        };
        let bodiless = *method == Method::HEAD
            || self.status == StatusCode::NO_CONTENT
            || self.status == StatusCode::NOT_MODIFIED;
        let framing = if bodiless {
            Framing::Empty
        } else if self.has_te {
            // Transfer-Encoding wins over Content-Length, but a message carrying both may be
            // an attempt to desynchronise this connection: it is not reused (§6.3 point 3).
            if self.content_length.is_some() {
                headers.remove(header::CONTENT_LENGTH);
                keep_alive = false;
            }
            if self.chunked_last {
                Framing::Chunked
            } else {
                keep_alive = false;
                Framing::UntilClose
            }
        } else if let Some(n) = self.content_length {
            Framing::Length(n)
        } else {
            keep_alive = false;
            Framing::UntilClose
        };
        ResponseHead {
            status: self.status,
            headers,
            framing,
            keep_alive,
        }
    }
}

/// A field name from `httparse` as hyper's type (lower-cased; standard names allocate nothing).
pub fn header_name(raw: &str) -> Result<HeaderName, H1Error> {
    HeaderName::from_bytes(raw.as_bytes())
        .map_err(|_| H1Error::Invalid(format!("header name {raw:?}")))
}

/// A Content-Length value: digits only (no sign, no spaces), no overflow.
fn parse_length(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parse result and what is left in the buffer.
    fn parse(raw: &str, method: Method) -> (Result<Option<ResponseHead>, H1Error>, String) {
        let mut buf = BytesMut::from(raw.as_bytes());
        let out = parse_response(&mut buf, &method);
        (out, String::from_utf8_lossy(&buf).into_owned())
    }

    fn head(raw: &str, method: Method) -> ResponseHead {
        match parse(raw, method) {
            (Ok(Some(h)), rest) => {
                let body = raw.rfind("\r\n\r\n").map(|i| &raw[i + 4..]).unwrap_or("");
                assert_eq!(rest, body);
                h
            }
            (other, _) => panic!("expected a final head, got {other:?}"),
        }
    }

    fn fails(raw: &str) -> H1Error {
        match parse(raw, Method::GET).0 {
            Err(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn content_length_framing_and_keep_alive() {
        let h = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
            Method::GET,
        );
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.headers["x-a"], "b");
    }

    #[test]
    fn repeated_equal_lengths_are_one_length_and_differing_ones_fail() {
        let h = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.framing, Framing::Length(3));
        assert!(matches!(
            fails("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            H1Error::Invalid(_)
        ));
        assert!(matches!(
            fails("HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\n"),
            H1Error::Invalid(_)
        ));
    }

    #[test]
    fn transfer_encoding_wins_and_forbids_reuse_when_both_are_present() {
        let h = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.framing, Framing::Chunked);
        assert!(!h.keep_alive);
        assert!(!h.headers.contains_key(header::CONTENT_LENGTH));
        let h = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.keep_alive);
        let h = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(!h.keep_alive);
    }

    #[test]
    fn no_length_means_until_close() {
        let h = head("HTTP/1.1 200 OK\r\n\r\n", Method::GET);
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(!h.keep_alive);
    }

    #[test]
    fn bodiless_answers_ignore_their_length() {
        for (raw, m) in [
            ("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", Method::HEAD),
            ("HTTP/1.1 204 No Content\r\n\r\n", Method::GET),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                Method::GET,
            ),
        ] {
            let h = head(raw, m);
            assert_eq!(h.framing, Framing::Empty, "{raw}");
            assert!(h.keep_alive);
        }
    }

    #[test]
    fn http10_keeps_alive_only_when_asked() {
        let h = head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Method::GET);
        assert!(!h.keep_alive);
        let h = head(
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        );
        assert!(h.keep_alive);
        let h = head(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        );
        assert!(!h.keep_alive);
    }

    #[test]
    fn interim_heads_are_skipped_and_partial_heads_wait() {
        let h = head(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        );
        assert_eq!(h.status, StatusCode::OK);
        assert!(!h.headers.contains_key("link"));
        let (out, rest) = parse("HTTP/1.1 200 OK\r\nX-A", Method::GET);
        assert!(matches!(out, Ok(None)));
        assert_eq!(rest, "HTTP/1.1 200 OK\r\nX-A");
    }

    #[test]
    fn invalid_and_oversized_heads_fail() {
        assert!(matches!(
            fails("HTTP/1.1 101 Switching\r\n\r\n"),
            H1Error::Invalid(_)
        ));
        assert!(matches!(fails("NOT HTTP\r\n\r\n"), H1Error::Invalid(_)));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(matches!(
            fails(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")),
            H1Error::HeadTooLarge
        ));
        let long = format!("HTTP/1.1 200 OK\r\nX-A: {}", "a".repeat(MAX_HEAD_BYTES));
        assert!(matches!(fails(&long), H1Error::HeadTooLarge));
    }

    #[test]
    fn request_head_is_origin_form_with_headers_in_order() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("app.test"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        let mut out = Vec::new();
        let uri: Uri = "/a/b?c=d".parse().unwrap_or_default();
        encode_request(&Method::GET, &uri, &headers, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "GET /a/b?c=d HTTP/1.1\r\nhost: app.test\r\nx-forwarded-for: 10.0.0.1\r\n\r\n"
        );
    }
}
