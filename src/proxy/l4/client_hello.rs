//! Reads the server name (SNI) out of the first bytes of a TLS connection, before any TLS is
//! done, so that a listener can choose between passing the stream through, terminating it,
//! or serving HTTPS. The caller accumulates bytes from the socket and calls [`parse`] after
//! each read until the outcome is no longer [`Hello::Incomplete`]: a ClientHello may arrive
//! in several TCP segments (post-quantum key shares make it ~2 KB) and, rarely, in several
//! TLS records. Everything is bounded by [`MAX_HELLO_BYTES`]; the parser never panics and
//! allocates only when a hello spans several records.

/// Most bytes a caller should buffer while looking for a complete ClientHello: one full
/// record (16 KiB payload) and its header, plus the next record's header.
pub const MAX_HELLO_BYTES: usize = 16 * 1024 + 10;

/// TLS record content type of handshake messages.
const HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// Extension number of `server_name`.
const SERVER_NAME: u16 = 0;
/// Largest record payload a peer may send (RFC 8446 §5.1).
const MAX_RECORD: usize = 16 * 1024;

/// What the bytes so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A complete ClientHello; `sni` is the lowercased host name without a trailing dot.
    Complete { sni: Option<String> },
    /// A plausible prefix of a ClientHello: read more (unless [`MAX_HELLO_BYTES`] are
    /// buffered already, which [`parse`] reports as [`Hello::Malformed`]).
    Incomplete,
    /// The first byte is not a TLS handshake record: another protocol is speaking.
    NotTls,
    /// A TLS record that cannot be a ClientHello, with the reason.
    Malformed(&'static str),
}

/// Looks for a complete ClientHello at the start of `buf`.
pub fn parse(buf: &[u8]) -> Hello {
    match buf.first() {
        None => return Hello::Incomplete,
        Some(&b) if b != HANDSHAKE => return Hello::NotTls,
        Some(_) => {}
    }
    match handshake_message(buf) {
        Ok(Some(body)) => match server_name(&body) {
            Ok(sni) => Hello::Complete { sni },
            Err(why) => Hello::Malformed(why),
        },
        Ok(None) if buf.len() >= MAX_HELLO_BYTES => Hello::Malformed("ClientHello too large"),
        Ok(None) => Hello::Incomplete,
        Err(why) => Hello::Malformed(why),
    }
}

/// The ClientHello body once every record carrying it has arrived (`None`: not yet).
fn handshake_message(buf: &[u8]) -> Result<Option<std::borrow::Cow<'_, [u8]>>, &'static str> {
    let mut rest = buf;
    let mut payload: std::borrow::Cow<'_, [u8]> = std::borrow::Cow::Borrowed(&[]);
    loop {
        let Some(header) = rest.get(..5) else {
            if let Some(&t) = rest.first()
                && t != HANDSHAKE
            {
                return Err("record between ClientHello fragments is not a handshake");
            }
            return Ok(None);
        };
        if header[0] != HANDSHAKE {
            return Err("record between ClientHello fragments is not a handshake");
        }
        if header[1] != 3 {
            return Err("not a TLS record version");
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > MAX_RECORD {
            return Err("record length out of range");
        }
        let Some(fragment) = rest.get(5..5 + len) else {
            // Only the part that arrived can be judged; judge the message header early.
            check_header(&joined(payload, rest.get(5..).unwrap_or(&[])))?;
            return Ok(None);
        };
        payload = joined(payload, fragment);
        rest = &rest[5 + len..];
        let want = check_header(&payload)?;
        if let Some(want) = want
            && payload.len() >= want
        {
            return Ok(Some(match payload {
                std::borrow::Cow::Borrowed(b) => std::borrow::Cow::Borrowed(&b[4..want]),
                std::borrow::Cow::Owned(v) => std::borrow::Cow::Owned(v[4..want].to_vec()),
            }));
        }
    }
}

/// Appends a record's fragment to what earlier records carried (no copy for the first).
fn joined<'a>(so_far: std::borrow::Cow<'a, [u8]>, more: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
    if so_far.is_empty() {
        std::borrow::Cow::Borrowed(more)
    } else {
        let mut v = so_far.into_owned();
        v.extend_from_slice(more);
        std::borrow::Cow::Owned(v)
    }
}

/// Checks the handshake header in `payload`; returns the full message length (header
/// included) once the header is there.
fn check_header(payload: &[u8]) -> Result<Option<usize>, &'static str> {
    match payload.first() {
        Some(&t) if t != CLIENT_HELLO => {
            return Err("first handshake message is not a ClientHello");
        }
        _ => {}
    }
    let Some(h) = payload.get(..4) else {
        return Ok(None);
    };
    let len = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
    if len + 4 > MAX_HELLO_BYTES - 10 {
        return Err("ClientHello too large");
    }
    Ok(Some(len + 4))
}

/// A cursor over a length-prefixed structure; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("ClientHello truncated");
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<usize, &'static str> {
        Ok(usize::from(self.take(1)?[0]))
    }
    fn u16(&mut self) -> Result<usize, &'static str> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    /// A vector with a one- or two-byte length prefix.
    fn vec8(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Result<Reader<'a>, &'static str> {
        let n = self.u16()?;
        self.take(n).map(Reader)
    }
}

/// The `server_name` extension's host name in a ClientHello body.
fn server_name(body: &[u8]) -> Result<Option<String>, &'static str> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    if r.0.is_empty() {
        return Ok(None); // a hello without extensions (SSL 3 style)
    }
    let mut exts = r.vec16()?;
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let mut data = exts.vec16()?;
        if kind as u16 != SERVER_NAME {
            continue;
        }
        let mut names = data.vec16()?;
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let name = names.vec16()?.0;
            if name_type == 0 {
                return host_name(name).map(Some);
            }
        }
        return Ok(None);
    }
    Ok(None)
}

/// A DNS host name as sent in SNI: letters, digits, `-`, `_`, `.`; lowercased, trailing dot
/// dropped.
fn host_name(raw: &[u8]) -> Result<String, &'static str> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    if raw.is_empty()
        || raw.len() > 253
        || !raw
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("server name is not a DNS host name");
    }
    Ok(String::from_utf8_lossy(raw).to_ascii_lowercase())
}

/// A ClientHello for `sni` (test helper, also used by the fuzz seeds and integration tests):
/// one record, padded with a dummy extension to `pad` bytes of extension data.
pub fn sample(sni: Option<&str>, pad: usize) -> Vec<u8> {
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let n = name.as_bytes();
        exts.extend_from_slice(&SERVER_NAME.to_be_bytes());
        exts.extend_from_slice(&((n.len() + 5) as u16).to_be_bytes());
        exts.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
        exts.push(0);
        exts.extend_from_slice(&(n.len() as u16).to_be_bytes());
        exts.extend_from_slice(n);
    }
    if pad > 0 {
        exts.extend_from_slice(&0x0015u16.to_be_bytes()); // padding extension
        exts.extend_from_slice(&(pad as u16).to_be_bytes());
        exts.extend(std::iter::repeat_n(0u8, pad));
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut msg = vec![CLIENT_HELLO];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(&body);
    let mut out = vec![HANDSHAKE, 3, 1];
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(&msg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(sni: &str) -> Hello {
        Hello::Complete {
            sni: Some(sni.into()),
        }
    }

    #[test]
    fn a_hello_in_one_piece_and_byte_by_byte() {
        let hello = sample(Some("Mqtt.Example.com."), 0);
        assert_eq!(parse(&hello), complete("mqtt.example.com"));
        for cut in 0..hello.len() {
            assert_eq!(parse(&hello[..cut]), Hello::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn a_post_quantum_sized_hello_split_over_segments() {
        let hello = sample(Some("db.example.com"), 1800);
        assert!(hello.len() > 1800);
        assert_eq!(parse(&hello[..1000]), Hello::Incomplete);
        assert_eq!(parse(&hello), complete("db.example.com"));
        // Bytes after the hello (early data, a second record) do not matter.
        let mut more = hello.clone();
        more.extend_from_slice(&[23, 3, 3, 0, 1, 0]);
        assert_eq!(parse(&more), complete("db.example.com"));
    }

    #[test]
    fn a_hello_fragmented_over_two_records() {
        let one = sample(Some("a.example"), 300);
        let msg = &one[5..];
        let (first, second) = msg.split_at(100);
        let mut two = Vec::new();
        for part in [first, second] {
            two.extend_from_slice(&[HANDSHAKE, 3, 3]);
            two.extend_from_slice(&(part.len() as u16).to_be_bytes());
            two.extend_from_slice(part);
        }
        assert_eq!(parse(&two[..120]), Hello::Incomplete);
        assert_eq!(parse(&two), complete("a.example"));
    }

    #[test]
    fn no_sni_garbage_and_truncation_have_clear_outcomes() {
        assert_eq!(parse(&sample(None, 0)), Hello::Complete { sni: None });
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        assert_eq!(parse(b"SSH-2.0-x"), Hello::NotTls);
        assert!(matches!(parse(&[22, 9, 9, 0, 4, 1]), Hello::Malformed(_)));
        assert!(matches!(parse(&[22, 3, 1, 0, 0]), Hello::Malformed(_)));
        // A server hello (type 2) is not a client hello.
        assert!(matches!(
            parse(&[22, 3, 3, 0, 4, 2, 0, 0, 0]),
            Hello::Malformed(_)
        ));
        // A handshake length that overruns its own extension vector.
        let mut bad = sample(Some("x.example"), 0);
        let last = bad.len() - 1;
        bad.truncate(last);
        let n = bad.len() - 5;
        bad[3..5].copy_from_slice(&(n as u16).to_be_bytes());
        let hs = n - 4;
        bad[6..9].copy_from_slice(&(hs as u32).to_be_bytes()[1..]);
        assert_eq!(parse(&bad), Hello::Malformed("ClientHello truncated"));
        // A non-DNS server name.
        assert!(matches!(
            parse(&sample(Some("a b"), 0)),
            Hello::Malformed(_)
        ));
        // A handshake claiming more than a hello may be.
        assert!(matches!(
            parse(&[22, 3, 3, 0x40, 0, 1, 0x10, 0, 0]),
            Hello::Malformed(_)
        ));
    }

    #[test]
    fn an_endless_incomplete_hello_is_bounded() {
        // Records of 1 byte each, forever: the buffer cap ends it.
        let mut buf = vec![HANDSHAKE, 3, 1, 0, 1, CLIENT_HELLO];
        while buf.len() < MAX_HELLO_BYTES + 10 {
            buf.extend_from_slice(&[HANDSHAKE, 3, 1, 0, 1, 0]);
        }
        assert!(matches!(parse(&buf), Hello::Malformed(_)));
    }
}
