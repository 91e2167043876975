//! Why an HTTP/2 client connection ended with the server's GOAWAY: h2 enforces the limits
//! (reset streams pending, CONTINUATION frames per header block, decoded header list size,
//! streams refused) and ends the connection with an error; this counts that error by its
//! HTTP/2 error code in `/metrics` (`itsup_proxy_h2_goaway_total{reason}`). h2 hands back the
//! code only (the GOAWAY's debug data naming the limit is not kept), so the abuse cases share
//! `ENHANCE_YOUR_CALM`.

use std::error::Error as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::proxy::runtime::metrics::H2GoawayMetrics;

/// Counts the connection's end when h2 itself closed it (a GOAWAY the library sent);
/// connections that ended cleanly, by the client or on I/O errors are not counted.
pub(crate) fn count(metrics: &H2GoawayMetrics, err: &hyper::Error) {
    let mut source = err.source();
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            if let Some(counter) = counter(metrics, h2) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        source = e.source();
    }
}

/// The counter for an h2 error, when it is a GOAWAY h2 sent.
fn counter<'a>(m: &'a H2GoawayMetrics, err: &h2::Error) -> Option<&'a AtomicU64> {
    if !err.is_go_away() || !err.is_library() {
        return None;
    }
    Some(match err.reason()? {
        h2::Reason::ENHANCE_YOUR_CALM => &m.enhance_your_calm,
        h2::Reason::PROTOCOL_ERROR => &m.protocol_error,
        h2::Reason::COMPRESSION_ERROR => &m.compression_error,
        h2::Reason::FLOW_CONTROL_ERROR => &m.flow_control_error,
        h2::Reason::FRAME_SIZE_ERROR => &m.frame_size_error,
        _ => &m.other,
    })
}
