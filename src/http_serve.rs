//! The one accept-and-serve loop of the small HTTP/1.1 endpoints that are not the proxy's data
//! path: the agent's `/metrics`, the watcher's status port and the proxy's admin API. Each
//! connection is served by hyper and bounded in time (a client that never finishes its request
//! cannot hold a task), accept errors (fd exhaustion) back off instead of spinning, and the loop
//! ends when its shutdown future completes.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

/// A listening socket the loop can accept from (TCP or UNIX).
pub(crate) trait Accept: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept_one(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

impl Accept for TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept_one(&self) -> io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Accept for UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept_one(&self) -> io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
}

/// How one endpoint serves its connections.
pub(crate) struct Limits {
    /// The whole connection (all its requests) must end within this.
    pub(crate) connection: Duration,
    /// A request head must arrive within this (slowloris).
    pub(crate) header_read: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connection: Duration::from_secs(30),
            header_read: Duration::from_secs(10),
        }
    }
}

/// Accepts on `listener` and answers every request with `handler` until `shutdown` completes;
/// `name` labels the debug log lines.
pub(crate) async fn serve<L, H, Fut, B>(
    name: &'static str,
    listener: L,
    limits: Limits,
    handler: H,
    shutdown: impl Future<Output = ()> + Send,
) where
    L: Accept,
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept_one() => accepted,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(endpoint = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let answer = handler(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(limits.connection, conn).await {
                Ok(Err(e)) => tracing::debug!(endpoint = name, error = %e, "connection"),
                Err(_) => tracing::debug!(endpoint = name, "connection timed out"),
                Ok(Ok(())) => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::Full;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(addr: std::net::SocketAddr, raw: &str) -> io::Result<String> {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(raw.as_bytes()).await?;
        let mut text = String::new();
        s.read_to_string(&mut text).await?;
        Ok(text)
    }

    #[tokio::test]
    async fn answers_bounds_slow_clients_and_stops_on_shutdown() -> anyhow::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = Limits {
            connection: Duration::from_secs(5),
            header_read: Duration::from_millis(300),
        };
        let server = tokio::spawn(serve(
            "test",
            listener,
            limits,
            |req: Request<Incoming>| async move {
                Response::new(Full::new(Bytes::from(req.uri().path().to_string())))
            },
            async {
                let _ = stopped.await;
            },
        ));

        let answer = get(
            addr,
            "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await?;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("/hello"), "{answer}");

        // A client that sends half a head is cut off by the header deadline, not kept.
        let mut slow = tokio::net::TcpStream::connect(addr).await?;
        slow.write_all(b"GET / HTTP/1.1\r\n").await?;
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), slow.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the slow client was not disconnected");

        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(3), server).await??;
        Ok(())
    }
}
