//! The pure request-hygiene and redirect rules of the proxy, public for the fuzz targets
//! (`fuzz/`) and their stable replay (`tests/fuzz_corpus.rs`) only: thin wrappers, so the
//! rules themselves keep their module-private types and signatures. Not an API.

use std::net::IpAddr;

use http::HeaderValue;
use pingora_http::RequestHeader;

use super::{auth, headers, request};
use crate::{config::RedirectAction, path::CanonicalTarget};

/// Longest request target accepted (bytes).
pub const MAX_URI_BYTES: usize = request::MAX_URI_BYTES;
/// Most request header fields accepted.
pub const MAX_HEADERS: usize = request::MAX_HEADERS;
/// Most request header bytes accepted (names + values + 4 per field).
pub const MAX_HEADER_BYTES: usize = request::MAX_HEADER_BYTES;

/// `request::inspect`: `Ok((host, port, target))` or `Err((status, reason))`.
pub fn inspect(
    req: &RequestHeader,
    default_port: u16,
) -> Result<(&str, u16, &str), (u16, &'static str)> {
    request::inspect(req, default_port)
        .map(|(authority, target)| (authority.host, authority.port, target))
        .map_err(|rejection| (rejection.status(), rejection.reason()))
}

/// `headers::strip_client_headers`.
pub fn strip_client_headers(req: &mut RequestHeader, peer_trusted: bool) {
    headers::strip_client_headers(req, peer_trusted);
}

/// `headers::client_ip`.
pub fn client_ip(
    req: &RequestHeader,
    peer: Option<IpAddr>,
    trusted: &[ipnet::IpNet],
) -> (Option<IpAddr>, bool) {
    headers::client_ip(req, peer, trusted)
}

/// `auth::strip_our_cookies`.
pub fn strip_our_cookies(value: &HeaderValue, name: &str) -> Option<Option<HeaderValue>> {
    auth::strip_our_cookies(value, name)
}

/// `auth::safe_path`.
pub fn safe_path(path: &str) -> String {
    auth::safe_path(path)
}

/// `auth::split_origin`.
pub fn split_origin(url: &str) -> (&str, &str) {
    auth::split_origin(url)
}

/// `auth::programmatic_target_allowed`.
pub fn programmatic_target_allowed(target: &str, whitelist: &[String]) -> bool {
    auth::programmatic_target_allowed(target, whitelist)
}

/// `origin_of` for an authority `host`:`port`.
pub fn origin_of(tls: bool, host: &str, port: u16) -> String {
    super::origin_of(tls, &request::Authority { host, port })
}

/// `redirect_location` for an authority `host`:`port`.
pub fn redirect_location(
    r: &RedirectAction,
    tls: bool,
    host: &str,
    port: u16,
    canonical: &CanonicalTarget<'_>,
    prefix_len: usize,
) -> String {
    super::redirect_location(
        r,
        tls,
        &request::Authority { host, port },
        canonical,
        prefix_len,
    )
}
