//! The response body of the direct path: a decoder for the three HTTP/1.1 framings
//! (length, chunked with trailers, until close) over the connection's read buffer, and the
//! hyper `Body` that drives it, reading the upstream socket from the client's task.
//!
//! Chunk-size lines and trailer fields are parsed by `httparse`. Bytes are handed on as
//! slices of the read buffer (no copy). Once the body ended cleanly on a keep-alive
//! connection with nothing extra buffered, the connection can go back to the pool.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hyper::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::HeaderValue;

use super::H1Error;
use super::conn::H1Conn;
use super::head::{Framing, MAX_HEAD_BYTES, MAX_HEADERS, header_name};

/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    UntilClose,
    Done,
}

/// What the buffered bytes yield next.
#[derive(Debug)]
pub enum Step {
    Frame(Frame<Bytes>),
    NeedMore,
    End,
}

/// The framing state machine; pure, so it is tested without sockets.
#[derive(Debug)]
pub struct Decoder {
    state: State,
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        Self { state }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// Consumes what it can from `buf`.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, H1Error> {
        loop {
            match self.state {
                State::Done => return Ok(Step::End),
                State::Length(_) | State::ChunkData(_) | State::UntilClose if buf.is_empty() => {
                    return Ok(Step::NeedMore);
                }
                State::Length(n) | State::ChunkData(n) => {
                    let data = take(buf, n);
                    let left = n - data.len() as u64;
                    self.state = match (self.state, left) {
                        (State::Length(_), 0) => State::Done,
                        (State::Length(_), _) => State::Length(left),
                        (_, 0) => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                    return Ok(Step::Frame(Frame::data(data)));
                }
                State::UntilClose => {
                    return Ok(Step::Frame(Frame::data(buf.split().freeze())));
                }
                State::ChunkSize => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        let _ = buf.split_to(used);
                        self.state = if size == 0 {
                            State::Trailers
                        } else {
                            State::ChunkData(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE => {
                        return Err(H1Error::Invalid("chunk size line too long".into()));
                    }
                    Ok(httparse::Status::Partial) => return Ok(Step::NeedMore),
                    Err(_) => return Err(H1Error::Invalid("chunk size".into())),
                },
                State::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(H1Error::Invalid("chunk not followed by CRLF".into()));
                    }
                    let _ = buf.split_to(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let (used, trailers) = match httparse::parse_headers(buf, &mut slots) {
                        Ok(httparse::Status::Complete((used, fields))) => {
                            (used, trailer_map(fields)?)
                        }
                        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
                            return Err(H1Error::HeadTooLarge);
                        }
                        Ok(httparse::Status::Partial) => return Ok(Step::NeedMore),
                        Err(e) => return Err(H1Error::Invalid(format!("trailers: {e}"))),
                    };
                    let _ = buf.split_to(used);
                    self.state = State::Done;
                    return Ok(match trailers {
                        Some(map) => Step::Frame(Frame::trailers(map)),
                        None => Step::End,
                    });
                }
            }
        }
    }

    /// The upstream closed the connection: the end of an until-close body, an error for
    /// any other framing that is not complete.
    pub fn eof(&mut self) -> Result<(), H1Error> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(H1Error::Truncated),
        }
    }
}

/// Up to `n` buffered bytes, without copying.
fn take(buf: &mut BytesMut, n: u64) -> Bytes {
    let k = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
    buf.split_to(k).freeze()
}

fn trailer_map(fields: &[httparse::Header<'_>]) -> Result<Option<HeaderMap>, H1Error> {
    if fields.is_empty() {
        return Ok(None);
    }
    let mut map = HeaderMap::with_capacity(fields.len());
    for f in fields {
        let name = header_name(f.name)?;
        let value = HeaderValue::from_bytes(f.value)
            .map_err(|_| H1Error::Invalid(format!("trailer {name}")))?;
        map.append(name, value);
    }
    Ok(Some(map))
}

/// The upstream response body, read from the socket by whoever polls it.
pub struct ResponseBody {
    conn: Option<H1Conn>,
    decoder: Decoder,
    keep_alive: bool,
}

impl ResponseBody {
    pub(super) fn new(conn: H1Conn, framing: Framing, keep_alive: bool) -> Self {
        Self {
            conn: Some(conn),
            decoder: Decoder::new(framing),
            keep_alive,
        }
    }

    /// The connection, once the body is complete and the connection can serve another
    /// request: kept alive and no stray bytes after the body (which would mean the
    /// upstream and this proxy disagree about where the message ended).
    pub fn take_reusable(&mut self) -> Option<H1Conn> {
        if !self.decoder.is_done() || !self.keep_alive {
            return None;
        }
        let mut conn = self.conn.take()?;
        if !conn.buf.is_empty() {
            return None;
        }
        conn.park();
        Some(conn)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.step(&mut conn.buf) {
                Ok(Step::Frame(f)) => return Poll::Ready(Some(Ok(f))),
                Ok(Step::End) => return Poll::Ready(None),
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Ok(Step::NeedMore) => {}
            }
            match conn.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    this.keep_alive = false;
                    if let Err(e) = this.decoder.eof() {
                        this.conn = None;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(H1Error::Io(e))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data, the trailers and what is left in the buffer.
    type Decoded = (Vec<u8>, Option<HeaderMap>, Vec<u8>);

    /// Feeds `input` in pieces of `piece` bytes.
    fn decode(framing: Framing, input: &[u8], piece: usize) -> Result<Decoded, H1Error> {
        let mut d = Decoder::new(framing);
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut trailers = None;
        let mut fed = 0;
        loop {
            match d.step(&mut buf)? {
                Step::Frame(f) => match f.into_data() {
                    Ok(bytes) => data.extend_from_slice(&bytes),
                    Err(f) => trailers = f.into_trailers().ok(),
                },
                Step::End => return Ok((data, trailers, buf.to_vec())),
                Step::NeedMore if fed < input.len() => {
                    let end = (fed + piece).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
                Step::NeedMore => d.eof()?,
            }
        }
    }

    #[test]
    fn length_body_stops_at_its_length_whatever_the_read_sizes() {
        for piece in [1, 3, 64] {
            let (data, _, rest) = decode(Framing::Length(5), b"helloNEXT", piece).expect("ok");
            assert_eq!(data, b"hello");
            assert!(b"NEXT".starts_with(&rest), "piece {piece}: {rest:?}");
        }
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n";
        for piece in [1, 2, 7, 100] {
            let (data, trailers, rest) = decode(Framing::Chunked, wire, piece).expect("ok");
            assert_eq!(data, b"hello world");
            let t = trailers.expect("trailers");
            assert_eq!(t["x-sum"], "42");
            assert!(rest.is_empty());
        }
        let (data, trailers, _) = decode(Framing::Chunked, b"0\r\n\r\n", 1).expect("ok");
        assert!(data.is_empty() && trailers.is_none());
    }

    #[test]
    fn bad_chunks_and_truncation_are_errors() {
        assert!(matches!(
            decode(Framing::Chunked, b"zz\r\nhello\r\n0\r\n\r\n", 100),
            Err(H1Error::Invalid(_))
        ));
        assert!(matches!(
            decode(Framing::Chunked, b"5\r\nhelloXX0\r\n\r\n", 100),
            Err(H1Error::Invalid(_))
        ));
        assert!(matches!(
            decode(Framing::Chunked, b"5\r\nhel", 100),
            Err(H1Error::Truncated)
        ));
        assert!(matches!(
            decode(Framing::Length(10), b"short", 100),
            Err(H1Error::Truncated)
        ));
        let long = vec![b'1'; MAX_CHUNK_LINE + 10];
        assert!(matches!(
            decode(Framing::Chunked, &long, 100),
            Err(H1Error::Invalid(_))
        ));
    }

    #[test]
    fn until_close_body_ends_at_eof() {
        let (data, _, _) = decode(Framing::UntilClose, b"all of it", 4).expect("ok");
        assert_eq!(data, b"all of it");
    }
}
