//! An upstream response body as it comes back: from hyper's client or from the direct
//! HTTP/1.1 path in [`super::h1`].

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::proxy::upstream::h1::ResponseBody;

/// Errors of a response body as hyper's server takes them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An upstream response body: from hyper's client or from the direct HTTP/1.1 path.
pub enum Upstream {
    Hyper(Incoming),
    Direct(ResponseBody),
}

impl Body for Upstream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Self::Direct(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Hyper(b) => b.is_end_stream(),
            Self::Direct(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Hyper(b) => b.size_hint(),
            Self::Direct(b) => b.size_hint(),
        }
    }
}
