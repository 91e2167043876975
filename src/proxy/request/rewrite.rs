//! The URI sent upstream: origin-form for HTTP/1.1, absolute for HTTP/2, the route's prefix
//! stripped when it asks.

use hyper::Uri;

use crate::proxy::base::routing;
use crate::proxy::runtime::state::RouteRt;

/// The URI to send upstream, or `None` when the incoming one can be reused untouched:
/// origin-form for HTTP/1.1 (prefix stripped when asked), absolute with `absolute_scheme`
/// for HTTP/2.
pub(crate) fn upstream_uri(
    uri: &Uri,
    route: &RouteRt,
    prefix_len: usize,
    absolute_scheme: Option<&str>,
    host: Option<&str>,
) -> Option<Uri> {
    let needs_strip = route.strip_prefix && prefix_len > 0;
    let absolute = uri.scheme().is_some() || uri.authority().is_some();
    let wants_absolute = absolute_scheme.is_some();
    let same_scheme = uri.scheme_str() == absolute_scheme;
    if !needs_strip && absolute == wants_absolute && (!absolute || same_scheme) {
        return None;
    }
    let path = if needs_strip {
        routing::strip(uri.path(), prefix_len)
    } else {
        uri.path()
    };
    let mut text = String::with_capacity(path.len() + 64);
    if let Some(scheme) = absolute_scheme {
        text.push_str(scheme);
        text.push_str("://");
        text.push_str(host.unwrap_or("localhost"));
    }
    text.push_str(path);
    if let Some(q) = uri.query() {
        text.push('?');
        text.push_str(q);
    }
    text.parse().ok()
}
