//! The direct HTTP/1.1 upstream path's response head parser and body decoder, differentially:
//! the same bytes, as an upstream's answer to a GET, through our parser + decoder and through
//! hyper's HTTP/1 client must frame the same message (status, body bytes, trailers) whenever
//! both accept it; neither may panic. Either may reject what the other accepts (strictness
//! differs), but two different messages from the same bytes is a framing bug (the stuff of
//! response splitting). A 101 is left out: we never ask for an upgrade, hyper hands it over.
#![no_main]

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::{HeaderMap, Method};
use itsup::fuzz_api::{H1BodyDecoder, H1BodyStep, h1_response_head};
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncWriteExt;

type Message = (u16, Vec<u8>, Option<HeaderMap>);

fn ours(data: &[u8]) -> Option<Message> {
    let mut buf = BytesMut::from(data);
    let head = h1_response_head(&mut buf, &Method::GET).ok()??;
    let mut decoder = H1BodyDecoder::new(head.framing);
    let mut body = Vec::new();
    let mut trailers = None;
    let mut closed = false;
    loop {
        match decoder.step(&mut buf).ok()? {
            H1BodyStep::Frame(frame) => match frame.into_data() {
                Ok(data) => body.extend_from_slice(&data),
                Err(frame) => trailers = frame.into_trailers().ok(),
            },
            H1BodyStep::End => break,
            // All bytes are in: what is still missing never comes, the upstream closed.
            H1BodyStep::NeedMore if !closed => {
                decoder.eof().ok()?;
                closed = true;
            }
            H1BodyStep::NeedMore => return None,
        }
    }
    Some((head.status.as_u16(), body, trailers))
}

fn hypers(data: &[u8]) -> Option<Message> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .ok()?;
    let data = Bytes::copy_from_slice(data);
    rt.block_on(async move {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let writer = tokio::spawn(async move {
            let _ = server.write_all(&data).await;
            let _ = server.shutdown().await;
            // Keep the read side open until the client is done with it.
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            drop(server);
        });
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(client))
                .await
                .ok()?;
        tokio::spawn(conn);
        let req = hyper::Request::get("/")
            .header("host", "upstream")
            .body(http_body_util::Empty::<Bytes>::new())
            .ok()?;
        let res = send.send_request(req).await.ok()?;
        let status = res.status().as_u16();
        let collected = res.into_body().collect().await.ok()?;
        let trailers = collected.trailers().cloned();
        writer.abort();
        Some((status, collected.to_bytes().to_vec(), trailers))
    })
}

fuzz_target!(|data: &[u8]| {
    let a = ours(data);
    let b = hypers(data);
    if let (Some(a), Some(b)) = (&a, &b) {
        if a.0 == 101 || b.0 == 101 {
            return;
        }
        assert_eq!(a.0, b.0, "status differs");
        assert_eq!(a.1, b.1, "body differs");
        let t = |m: &Option<HeaderMap>| m.as_ref().filter(|m| !m.is_empty()).cloned();
        assert_eq!(t(&a.2), t(&b.2), "trailers differ");
    }
});
