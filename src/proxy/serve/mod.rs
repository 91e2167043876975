//! Layer 5, serving: the client [`listener`]s (plain, and HTTPS in [`tls_listener`]), the [`admin`] API and the [`status_page`],
//! with the per-server [`view`] both share. Nothing below depends on this layer.

pub mod admin;
mod h2_goaway;
pub mod listener;
pub mod status_page;
pub mod tls_listener;
pub mod view;
