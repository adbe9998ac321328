//! The per-request context carried through Pingora's phases.

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    metrics::DecisionKind, policy::Reasons, session::Loaded, snapshot::Snapshot,
    upstreams::Selected,
};

/// State of one request, created by `new_ctx` and filled in by the phases.
pub struct RequestCtx {
    /// The snapshot this request is decided and forwarded with (taken once, at the start).
    pub snapshot: Option<Arc<Snapshot>>,
    request_id: RequestId,
    /// The request id as a header value, made once and shared by the upstream request and
    /// the response.
    request_id_header: Option<http::HeaderValue>,
    /// The matched route's index.
    pub route: Option<usize>,
    /// The canonical path + query when it differs from what the client sent, or when a
    /// rewrite applies; None: forward the request target unchanged.
    pub canonical_target: Option<String>,
    /// The canonical path when it differs from the path as sent (for the access log).
    pub canonical_path: Option<String>,
    /// Length of the route's matched prefix in the canonical path (for `prefix_rewrite`).
    pub matched_prefix_len: usize,
    /// The backend chosen for the current attempt.
    pub selected: Option<Selected>,
    /// Backends already tried (bitmask of target indexes).
    pub tried: u64,
    /// The public listener speaks TLS.
    pub tls: bool,
    /// The client's IP: the TCP peer, or from X-Forwarded-For when the peer is trusted.
    pub client_ip: Option<IpAddr>,
    /// The TCP peer is in `trusted_proxies`.
    pub peer_trusted: bool,
    /// The request asks for a protocol upgrade the route allows.
    pub upgrade: bool,
    /// Identity headers (assertion, claims) for the upstream request; only with a permit.
    pub identity_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The Authorization header carries gatehouse's own bearer token: not forwarded.
    pub strip_authorization: bool,
    /// Status of a response gatehouse answered itself (0 if none).
    pub status: u16,
    pub started: Instant,
    /// The signed-in session or machine identity of the request, for the access log.
    pub user: Option<Arc<Loaded>>,
    /// The authorization decision and its reasons (None: decided before any policy).
    pub decision: Option<(DecisionKind, Reasons)>,
    /// When the first backend was chosen.
    pub upstream_started: Option<Instant>,
    /// From choosing a backend to its response headers.
    pub upstream_elapsed: Option<Duration>,
    /// The address of the backend that answered (kept after `selected` is released).
    pub upstream_addr: Option<std::net::SocketAddr>,
    /// Why proxying failed, for the access log (an upstream error kind, `client` or
    /// `internal`).
    pub error: Option<&'static str>,
}

/// A request id: generated (fixed-size, no allocation) or kept from a trusted peer.
enum RequestId {
    Generated([u8; 32]),
    Kept(String),
}

// === impl RequestCtx ===

impl RequestCtx {
    /// A fresh context with a generated request id.
    pub fn new(tls: bool) -> RequestCtx {
        RequestCtx {
            snapshot: None,
            request_id: RequestId::generate(),
            request_id_header: None,
            route: None,
            canonical_target: None,
            canonical_path: None,
            matched_prefix_len: 0,
            selected: None,
            tried: 0,
            tls,
            client_ip: None,
            peer_trusted: false,
            upgrade: false,
            identity_headers: Vec::new(),
            strip_authorization: false,
            status: 0,
            started: Instant::now(),
            user: None,
            decision: None,
            upstream_started: None,
            upstream_elapsed: None,
            upstream_addr: None,
            error: None,
        }
    }

    /// The request id (32 lower-case hex digits when generated).
    pub fn request_id(&self) -> &str {
        match &self.request_id {
            // Hex digits are ASCII, so this cannot fail; an empty id is the fallback.
            RequestId::Generated(bytes) => std::str::from_utf8(bytes).unwrap_or(""),
            RequestId::Kept(id) => id,
        }
    }

    /// The request id as a header value (built on first use).
    pub fn request_id_header(&mut self) -> http::HeaderValue {
        if let Some(value) = &self.request_id_header {
            return value.clone();
        }
        // Generated and kept ids are visible ASCII, so this cannot fail.
        let value = http::HeaderValue::from_str(self.request_id())
            .unwrap_or_else(|_| http::HeaderValue::from_static("-"));
        self.request_id_header = Some(value.clone());
        value
    }

    /// Keeps a request id sent by a trusted peer, if it is a short printable token.
    pub fn keep_request_id(&mut self, id: &[u8]) {
        let ok = !id.is_empty()
            && id.len() <= 128
            && id
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if ok {
            if let Ok(id) = std::str::from_utf8(id) {
                self.request_id = RequestId::Kept(id.to_owned());
                self.request_id_header = None;
            }
        }
    }
}

impl RequestId {
    fn generate() -> RequestId {
        RequestId::Generated(generate_request_id())
    }
}

/// A fresh request id: 32 lower-case hex digits of 128 random bits (no allocation).
pub fn generate_request_id() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n: u128 = rand::random();
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = HEX[((n >> (4 * (31 - i))) & 0xf) as usize];
    }
    out
}
