//! The admin listener (`metrics_address`): `/metrics`, `/healthz`, `/readyz`. Never routed
//! from the public listener.

use std::sync::{atomic::Ordering, Arc};

use async_trait::async_trait;
use http::{header, Response, StatusCode};
use pingora_core::{apps::http_app::ServeHttp, protocols::http::ServerSession};

use crate::{session::seal::constant_time_eq, snapshot::Shared};

/// The admin HTTP application.
pub struct Admin {
    shared: Arc<Shared>,
}

// === impl Admin ===

impl Admin {
    /// An admin app reading `shared`.
    pub fn new(shared: Arc<Shared>) -> Admin {
        Admin { shared }
    }

    /// Whether the request carries the `metrics_basic_auth` credentials (always, when none
    /// are configured).
    fn authorized(&self, session: &ServerSession) -> bool {
        let snap = self.shared.load();
        let Some(expected) = &snap.config.metrics_basic_auth else {
            return true;
        };
        let given = session
            .req_header()
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
            })
            .and_then(|b64| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(b64).ok()
            });
        let Some(given) = given else {
            return false;
        };
        let (user, password) = match given.iter().position(|&b| b == b':') {
            Some(i) => (&given[..i], &given[i + 1..]),
            None => (&given[..], &[][..]),
        };
        // Both compared in full, without an early exit.
        constant_time_eq(user, expected.user.as_bytes())
            & constant_time_eq(password, expected.password.as_bytes())
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path();
        let (status, content_type, body) = match path {
            "/metrics" if !self.authorized(session) => {
                let body = b"authentication required\n";
                let mut resp = Response::new(body.to_vec());
                *resp.status_mut() = StatusCode::UNAUTHORIZED;
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Basic realm=\"gatehouse metrics\""),
                );
                resp.headers_mut().insert(
                    header::CONTENT_LENGTH,
                    header::HeaderValue::from(body.len()),
                );
                return resp;
            }
            "/metrics" => {
                self.shared.auth.sync_metrics();
                self.shared
                    .metrics
                    .downstream_connections
                    .set(i64::try_from(self.shared.in_flight()).unwrap_or(i64::MAX));
                (
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.shared.metrics.render(),
                )
            }
            "/healthz" => (StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" if self.shared.listening.load(Ordering::Acquire) => {
                (StatusCode::OK, "text/plain", b"ready\n".to_vec())
            }
            "/readyz" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                b"starting\n".to_vec(),
            ),
            _ => (StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        if let Ok(v) = header::HeaderValue::from_str(content_type) {
            resp.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        if let Ok(v) = header::HeaderValue::from_str(&resp.body().len().to_string()) {
            resp.headers_mut().insert(header::CONTENT_LENGTH, v);
        }
        resp
    }
}

/// Answers every request on `http_redirect_addr` with a 301 to the same URL over https.
pub struct HttpsRedirect;

#[async_trait]
impl ServeHttp for HttpsRedirect {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let host = req
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(strip_port)
            .filter(|h| {
                !h.is_empty()
                    && h.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':')
                    })
            });
        let mut resp = Response::new(Vec::new());
        match host {
            Some(host) => {
                let target = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let target = if target.starts_with('/') { target } else { "/" };
                *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
                if let Ok(v) = header::HeaderValue::from_str(&format!("https://{host}{target}")) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
            }
            None => *resp.status_mut() = StatusCode::BAD_REQUEST,
        }
        resp.headers_mut().insert(
            header::CONTENT_LENGTH,
            header::HeaderValue::from_static("0"),
        );
        resp
    }
}

/// `host[:port]` → `host` (IPv6 literals keep their brackets).
fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        authority
            .find(']')
            .map_or(authority, |end| &authority[..=end])
    } else {
        authority.split(':').next().unwrap_or(authority)
    }
}
