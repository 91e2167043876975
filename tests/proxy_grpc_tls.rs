//! gRPC through `itsup proxy` over TLS, end to end with tonic on both sides: a tonic client
//! (its `Grpc` client on an HTTP/2 connection negotiated by ALPN with the real binary) and a
//! tonic server (its `Grpc` server handlers on an h2c upstream). Unary calls with a deadline
//! (`grpc-timeout` reaches the server), an error status carried in the trailers, and a
//! bidirectional stream where each reply is read before the next message is sent (nothing is
//! buffered on the way); message size limits, enforced by the tonic server and client at
//! either end, with messages near them (far larger than every HTTP/2 window on the way)
//! passing intact and the server's refusal of a larger one carried back (tonic answers
//! `OUT_OF_RANGE`, "decoded message length too large").
//!
//! The messages are raw bytes through a small codec instead of protobuf types: the proxy never
//! looks inside messages, and the test needs no code generation.

mod proxy_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy_support::tls::*;
use proxy_support::*;
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

/// Messages are their bytes.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The largest message either end of the size-limit test accepts.
const SIZE_LIMIT: usize = 1 << 20;

/// The tonic server: `/echo.Echo/Unary` answers `<deadline> <MESSAGE>`, `/echo.Echo/Fail`
/// answers NOT_FOUND, `/echo.Echo/Size` (messages up to [`SIZE_LIMIT`]) answers the length of
/// the message, `/echo.Echo/Fill` answers as many bytes as the message says,
/// `/echo.Echo/Bidi` answers every message as it arrives.
async fn grpc_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let mut grpc = tonic::server::Grpc::new(Raw);
                    let resp = match req.uri().path() {
                        "/echo.Echo/Unary" => grpc.unary(tower::service_fn(unary), req).await,
                        "/echo.Echo/Fail" => grpc.unary(tower::service_fn(fail), req).await,
                        "/echo.Echo/Size" => {
                            let mut grpc = grpc.max_decoding_message_size(SIZE_LIMIT);
                            grpc.unary(tower::service_fn(size), req).await
                        }
                        "/echo.Echo/Fill" => grpc.unary(tower::service_fn(fill), req).await,
                        _ => grpc.streaming(tower::service_fn(bidi), req).await,
                    };
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http2_only()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

async fn unary(req: tonic::Request<Bytes>) -> Result<tonic::Response<Bytes>, Status> {
    let deadline = req
        .metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_string();
    let text = String::from_utf8_lossy(req.get_ref()).to_uppercase();
    Ok(tonic::Response::new(Bytes::from(format!(
        "{deadline} {text}"
    ))))
}

async fn size(req: tonic::Request<Bytes>) -> Result<tonic::Response<Bytes>, Status> {
    Ok(tonic::Response::new(Bytes::from(
        req.get_ref().len().to_string(),
    )))
}

async fn fill(req: tonic::Request<Bytes>) -> Result<tonic::Response<Bytes>, Status> {
    let n: usize = String::from_utf8_lossy(req.get_ref())
        .parse()
        .map_err(|_| Status::invalid_argument("a length"))?;
    Ok(tonic::Response::new(Bytes::from(vec![b'z'; n])))
}

async fn fail(_req: tonic::Request<Bytes>) -> Result<tonic::Response<Bytes>, Status> {
    Err(Status::not_found("no such thing"))
}

async fn bidi(
    req: tonic::Request<tonic::Streaming<Bytes>>,
) -> Result<tonic::Response<ReceiverStream<Result<Bytes, Status>>>, Status> {
    let mut inbound = req.into_inner();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok(Some(msg)) = inbound.message().await {
            n += 1;
            let reply = format!("{n}:{}", String::from_utf8_lossy(&msg));
            if tx.send(Ok(Bytes::from(reply))).await.is_err() {
                return;
            }
        }
    });
    Ok(tonic::Response::new(ReceiverStream::new(rx)))
}

/// A tonic client on one HTTP/2-over-TLS connection to the proxy.
async fn grpc_client(
    proxy: SocketAddr,
) -> tonic::client::Grpc<
    impl tonic::client::GrpcService<
        tonic::body::Body,
        ResponseBody = hyper::body::Incoming,
        Error = hyper::Error,
    > + Clone,
> {
    let stream = dial(proxy, "grpc.test", client(None, &["h2"]))
        .await
        .expect("tls");
    assert_eq!(alpn(&stream).as_deref(), Some("h2"));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let svc = tower::service_fn(move |req: hyper::Request<tonic::body::Body>| {
        let mut sender = sender.clone();
        async move { sender.send_request(req).await }
    });
    tonic::client::Grpc::with_origin(svc, "https://grpc.test".parse().expect("origin"))
}

#[test]
fn grpc_unary_and_bidi_streaming_pass_through_tls() {
    mt().block_on(async {
        let (backend, _task) = grpc_server().await;
        let proxy = Proxy::start(&format!(
            "listeners:\n  - {{address: \"127.0.0.1:0\", tls: {{}}}}\nadmin: {{address: \"127.0.0.1:0\"}}\nroutes: [{{host: grpc.test, cluster: grpc}}]\nclusters: {{grpc: {{protocol: h2c, servers: [{{address: \"{backend}\"}}]}}}}\n"
        ));
        let mut client = grpc_client(proxy.tls[0]).await;

        // Unary with a deadline: the server sees `grpc-timeout`.
        let mut req = tonic::Request::new(Bytes::from_static(b"hello"));
        req.set_timeout(Duration::from_secs(5));
        client.ready().await.expect("ready");
        let resp = client
            .unary(req, "/echo.Echo/Unary".parse().expect("path"), Raw)
            .await
            .expect("unary call");
        assert_eq!(resp.get_ref().as_ref(), b"5000000u HELLO");

        // An error status travels in the trailers.
        client.ready().await.expect("ready");
        let status = client
            .unary(
                tonic::Request::new(Bytes::from_static(b"x")),
                "/echo.Echo/Fail".parse().expect("path"),
                Raw,
            )
            .await
            .expect_err("NOT_FOUND");
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "no such thing");

        // Bidi: every reply is read before the next message goes out.
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        client.ready().await.expect("ready");
        let resp = client
            .streaming(
                tonic::Request::new(ReceiverStream::new(rx)),
                "/echo.Echo/Bidi".parse().expect("path"),
                Raw,
            )
            .await
            .expect("bidi call");
        let mut replies = resp.into_inner();
        for (i, word) in ["one", "two", "three"].iter().enumerate() {
            tx.send(Bytes::from(*word)).await.expect("send");
            let reply = tokio::time::timeout(Duration::from_secs(5), replies.message())
                .await
                .expect("a reply before the next message (no buffering)")
                .expect("stream ok")
                .expect("a message");
            assert_eq!(reply.as_ref(), format!("{}:{word}", i + 1).as_bytes());
        }
        drop(tx);
        assert!(replies.message().await.expect("clean end").is_none());
        let trailers = replies.trailers().await.expect("trailers");
        let status = trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .and_then(|v| v.to_str().ok());
        assert_eq!(status, Some("0"), "grpc-status 0 in the trailers");
    });
}

#[test]
fn grpc_message_size_limits_hold_through_tls() {
    mt().block_on(async {
        let (backend, _task) = grpc_server().await;
        let proxy = Proxy::start(&format!(
            "listeners:\n  - {{address: \"127.0.0.1:0\", tls: {{}}}}\nadmin: {{address: \"127.0.0.1:0\"}}\nroutes: [{{host: grpc.test, cluster: grpc}}]\nclusters: {{grpc: {{protocol: h2c, servers: [{{address: \"{backend}\"}}]}}}}\n"
        ));
        let mut client = grpc_client(proxy.tls[0])
            .await
            .max_decoding_message_size(SIZE_LIMIT);
        let call = |name: &str| format!("/echo.Echo/{name}").parse().expect("path");

        // Just under the server's limit: every byte arrives.
        let near = SIZE_LIMIT - 64;
        client.ready().await.expect("ready");
        let resp = client
            .unary(tonic::Request::new(Bytes::from(vec![b'a'; near])), call("Size"), Raw)
            .await
            .expect("a message under the limit");
        assert_eq!(resp.get_ref().as_ref(), near.to_string().as_bytes());

        // Over it: the server refuses, and its status comes back through the proxy (tonic's code
        // for a message over the limit is OUT_OF_RANGE).
        client.ready().await.expect("ready");
        let status = client
            .unary(tonic::Request::new(Bytes::from(vec![b'a'; 2 * SIZE_LIMIT])), call("Size"), Raw)
            .await
            .expect_err("over the server's limit");
        assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
        assert!(status.message().contains("too large"), "{status:?}");

        // Replies: under the client's limit intact, over it refused by the client.
        client.ready().await.expect("ready");
        let resp = client
            .unary(tonic::Request::new(Bytes::from(near.to_string())), call("Fill"), Raw)
            .await
            .expect("a reply under the limit");
        assert_eq!(resp.get_ref().len(), near);
        assert!(resp.get_ref().iter().all(|&b| b == b'z'));
        client.ready().await.expect("ready");
        let status = client
            .unary(tonic::Request::new(Bytes::from((2 * SIZE_LIMIT).to_string())), call("Fill"), Raw)
            .await
            .expect_err("over the client's limit");
        assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
        assert!(status.message().contains("too large"), "{status:?}");

        // The connection still carries calls.
        client.ready().await.expect("ready");
        let resp = client
            .unary(tonic::Request::new(Bytes::from_static(b"still")), call("Unary"), Raw)
            .await
            .expect("a call after the refusals");
        assert_eq!(resp.get_ref().as_ref(), b"none STILL");
    });
}
