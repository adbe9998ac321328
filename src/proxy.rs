//! The Pingora glue. Each phase takes the snapshot's data and calls one domain function;
//! no routing, policy or header rules live here.

mod ctx;
mod headers;
mod request;
mod respond;

use std::{net::IpAddr, sync::Arc, time::SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::{protocols::l4::socket::SocketAddr, upstreams::peer::HttpPeer};
use pingora_error::{Error, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

pub use ctx::RequestCtx;
use respond::CLIENT_CERTIFICATE_REQUIRED;

use crate::{
    config::{MtlsEnforcement, PathMatch, ProxyAction, RedirectAction, Route, RouteAction},
    listeners::TlsInfo,
    path,
    policy::{self, ClientCertificate, Decision, Reasons, RequestFacts},
    snapshot::{Shared, Snapshot},
};

/// The public proxy service.
pub struct Gatehouse {
    shared: Arc<Shared>,
    tls: bool,
}

/// What `request_filter` decided.
enum Next {
    Forward,
    Denied(Reasons),
    Answer(u16, Option<&'static str>),
    Redirect(u16, String),
    Static(u16, String),
}

// === impl Gatehouse ===

impl Gatehouse {
    /// A proxy service reading `shared`; `tls`: the listener terminates TLS.
    pub fn new(shared: Arc<Shared>, tls: bool) -> Gatehouse {
        Gatehouse { shared, tls }
    }

    /// Decides what to do with a request before any upstream is involved.
    fn decide(&self, session: &mut Session, ctx: &mut RequestCtx, snap: &Snapshot) -> Next {
        let default_port = if self.tls { 443 } else { 80 };
        let req = session.req_header();
        let (authority, target) = match request::inspect(req, default_port) {
            Ok(v) => v,
            Err(rejection) => return Next::Answer(rejection.status(), Some(rejection.reason())),
        };
        let canonical = match path::canonicalize(target) {
            Ok(c) => c,
            Err(e) => return Next::Answer(400, Some(e.as_str())),
        };
        if self.tls {
            if let Some(sni) = tls_info(session).and_then(|t| t.server_name.as_deref()) {
                if !sni.eq_ignore_ascii_case(authority.host) {
                    return Next::Answer(421, None);
                }
            }
        }
        let Some(index) = snap
            .routes
            .find(authority.host, authority.port, &canonical.path)
        else {
            return Next::Answer(404, None);
        };
        ctx.route = Some(index);
        let route = &snap.config.routes[index];
        if canonical.has_path_parameters && !route.allow_path_parameters {
            return Next::Answer(400, Some("path-parameters"));
        }
        if let Some(mtls) = &snap.config.downstream_mtls {
            if mtls.enforcement == MtlsEnforcement::PolicyWithDefaultDeny
                && !client_certificate(session).is_some_and(|c| c.valid)
            {
                return Next::Answer(CLIENT_CERTIFICATE_REQUIRED, None);
            }
        }
        // No session yet (identity arrives with later work): decide as an anonymous request.
        let facts = request_facts(session, ctx, &canonical.path);
        match policy::evaluate(&route.access.compiled, None, &facts, SystemTime::now()) {
            Decision::Allow(_) => {}
            Decision::Deny(reasons) => return Next::Denied(reasons),
            Decision::NeedsLogin => return Next::Answer(401, None),
        }
        match &route.action {
            RouteAction::Redirect(r) => Next::Redirect(
                r.response_code,
                redirect_location(
                    r,
                    self.tls,
                    &authority,
                    &canonical,
                    matched_prefix_len(route),
                ),
            ),
            RouteAction::Response(r) => Next::Static(r.status, r.body.clone()),
            RouteAction::Proxy(action) => {
                ctx.matched_prefix_len = matched_prefix_len(route);
                let rewritten = match rewrite_path(action, &canonical.path, ctx.matched_prefix_len)
                {
                    Ok(r) => r,
                    Err(reason) => return Next::Answer(400, Some(reason)),
                };
                let changed = rewritten.is_some()
                    || matches!(canonical.path, std::borrow::Cow::Owned(_))
                    || target.as_bytes() != req.raw_path();
                if changed {
                    let p = rewritten.as_deref().unwrap_or(&canonical.path);
                    ctx.canonical_target = Some(match canonical.query {
                        Some(q) => format!("{p}?{q}"),
                        None => p.to_owned(),
                    });
                }
                ctx.upgrade =
                    action.allow_websockets && req.headers.contains_key(http::header::UPGRADE);
                Next::Forward
            }
        }
    }
}

/// The request facts policies read, borrowed from the request and its connection.
fn request_facts<'a>(session: &'a Session, ctx: &RequestCtx, path: &'a str) -> RequestFacts<'a> {
    let req = session.req_header();
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    RequestFacts {
        method: req.method.as_str(),
        path,
        source_ip: ctx.client_ip,
        client_certificate: client_certificate(session).map(ClientCertificate::facts),
        origin: header("origin"),
        access_control_request_method: header("access-control-request-method"),
    }
}

fn tls_info(session: &Session) -> Option<&TlsInfo> {
    session
        .digest()?
        .ssl_digest
        .as_ref()?
        .extension
        .get::<TlsInfo>()
}

fn client_certificate(session: &Session) -> Option<&ClientCertificate> {
    tls_info(session)?.client_certificate.as_ref()
}

fn peer_ip(session: &Session) -> Option<IpAddr> {
    match session.client_addr()? {
        SocketAddr::Inet(addr) => Some(addr.ip()),
        _ => None,
    }
}

/// Length of the route's `prefix` (0 for other matchers and for `/`).
fn matched_prefix_len(route: &Route) -> usize {
    match &route.path {
        PathMatch::Prefix(p) if p != "/" => p.len(),
        _ => 0,
    }
}

/// `prefix_rewrite` (replacing the matched prefix) or `regex_rewrite`; `Ok(None)`: unchanged.
/// A rewritten path is canonicalized again, so a substitution cannot produce what request
/// hygiene refuses; such a result is an error.
fn rewrite_path(
    action: &ProxyAction,
    path: &str,
    prefix_len: usize,
) -> Result<Option<String>, &'static str> {
    let rewritten = if let Some(replacement) = &action.prefix_rewrite {
        replace_prefix(replacement, path, prefix_len)
    } else if let Some((pattern, substitution)) = &action.regex_rewrite {
        pattern.replace(path, substitution.as_str()).into_owned()
    } else {
        return Ok(None);
    };
    match path::canonicalize(&rewritten) {
        Ok(c) if c.query.is_none() && !c.has_path_parameters => Ok(Some(c.path.into_owned())),
        _ => Err("rewrite-produced-invalid-path"),
    }
}

/// `replacement` followed by what comes after the matched prefix, joined by one `/`.
fn replace_prefix(replacement: &str, path: &str, prefix_len: usize) -> String {
    let rest = &path[prefix_len.min(path.len())..];
    let joined = match (replacement.ends_with('/'), rest.starts_with('/')) {
        (true, true) => format!("{replacement}{}", &rest[1..]),
        (false, false) if !rest.is_empty() => format!("{replacement}/{rest}"),
        _ => format!("{replacement}{rest}"),
    };
    if joined.is_empty() {
        "/".to_owned()
    } else {
        joined
    }
}

/// The `Location` of a `redirect` route, as Pomerium builds it.
fn redirect_location(
    r: &RedirectAction,
    tls: bool,
    authority: &request::Authority<'_>,
    canonical: &path::CanonicalTarget<'_>,
    prefix_len: usize,
) -> String {
    let scheme = if r.https_redirect {
        "https"
    } else if let Some(s) = &r.scheme_redirect {
        s.as_str()
    } else if tls {
        "https"
    } else {
        "http"
    };
    let host = r.host_redirect.as_deref().unwrap_or(authority.host);
    let port = match (
        r.port_redirect,
        r.https_redirect || r.scheme_redirect.is_some(),
    ) {
        (Some(p), _) => format!(":{p}"),
        (None, true) => String::new(),
        (None, false) => {
            let default = if tls { 443 } else { 80 };
            if authority.port == default {
                String::new()
            } else {
                format!(":{}", authority.port)
            }
        }
    };
    let path = if let Some(p) = &r.path_redirect {
        p.clone()
    } else if let Some(p) = &r.prefix_rewrite {
        replace_prefix(p, &canonical.path, prefix_len)
    } else {
        canonical.path.to_string()
    };
    let query = match (r.strip_query, canonical.query) {
        (false, Some(q)) => format!("?{q}"),
        _ => String::new(),
    };
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    format!("{scheme}://{host}{port}{path}{query}")
}

#[async_trait]
impl ProxyHttp for Gatehouse {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.tls)
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let snap = self.shared.load();
        let peer = peer_ip(session);
        let (client_ip, trusted) =
            headers::client_ip(session.req_header(), peer, &snap.config.trusted_proxies);
        ctx.client_ip = client_ip;
        ctx.peer_trusted = trusted;
        if trusted {
            if let Some(id) = session.req_header().headers.get("x-request-id") {
                ctx.keep_request_id(id.as_bytes());
            }
        }
        session.set_keepalive(Some(snap.config.timeout_idle.as_secs()));
        let next = self.decide(session, ctx, &snap);
        let show_details = ctx
            .route
            .is_some_and(|r| snap.config.routes[r].show_error_details);
        ctx.snapshot = Some(Arc::clone(&snap));
        match next {
            Next::Forward => {
                headers::strip_client_headers(session.req_header_mut(), trusted);
                if ctx.upgrade {
                    if let Some(RouteAction::Proxy(action)) =
                        ctx.route.map(|r| &snap.config.routes[r].action)
                    {
                        let idle = action.idle_timeout;
                        session.set_read_timeout((!idle.is_zero()).then_some(idle));
                    }
                }
                Ok(false)
            }
            Next::Denied(reasons) => {
                let detail = show_details.then(|| reasons.to_string());
                respond::error_page(session, ctx, 403, detail.as_deref()).await?;
                Ok(true)
            }
            Next::Answer(status, reason) => {
                // Reasons of 400s describe the client's own request; others only on opt-in.
                let detail = if status == 400 || show_details {
                    reason
                } else {
                    None
                };
                respond::error_page(session, ctx, status, detail).await?;
                Ok(true)
            }
            Next::Redirect(status, location) => {
                respond::send(
                    session,
                    ctx,
                    status,
                    "text/plain; charset=utf-8",
                    Bytes::new(),
                    Some(&location),
                )
                .await?;
                Ok(true)
            }
            Next::Static(status, body) => {
                respond::send(
                    session,
                    ctx,
                    status,
                    "text/plain; charset=utf-8",
                    Bytes::from(body),
                    None,
                )
                .await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let (Some(snap), Some(route)) = (ctx.snapshot.as_ref(), ctx.route) else {
            return Error::e_explain(pingora_error::ErrorType::InternalError, "no route");
        };
        let (Some(pool), RouteAction::Proxy(action)) = (
            snap.pools[route].as_ref(),
            &snap.config.routes[route].action,
        ) else {
            return Error::e_explain(pingora_error::ErrorType::InternalError, "not a proxy route");
        };
        // The consistent-hash key, on the stack: no allocation per request.
        let (v4, v6);
        let key: &[u8] = match ctx.client_ip {
            Some(IpAddr::V4(ip)) => {
                v4 = ip.octets();
                &v4
            }
            Some(IpAddr::V6(ip)) => {
                v6 = ip.octets();
                &v6
            }
            None => &[],
        };
        let Some(selected) = pool.select(key, ctx.tried) else {
            return Error::e_explain(respond::NO_HEALTHY_UPSTREAM, "no healthy backend");
        };
        ctx.tried |= selected.bit();
        let peer = selected.peer(action.timeout, action.idle_timeout, ctx.upgrade);
        ctx.selected = Some(selected);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing was sent yet: another backend may take the request, if one is left.
        let more = match (ctx.snapshot.as_ref(), ctx.route) {
            (Some(snap), Some(route)) => snap.pools[route]
                .as_ref()
                .is_some_and(|pool| pool.has_untried(ctx.tried)),
            _ => false,
        };
        e.set_retry(more);
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let request_id = ctx.request_id_header();
        let (Some(snap), Some(route), Some(selected)) =
            (ctx.snapshot.as_ref(), ctx.route, ctx.selected.as_ref())
        else {
            return Ok(());
        };
        let RouteAction::Proxy(action) = &snap.config.routes[route].action else {
            return Ok(());
        };
        let target = selected.target();
        let base = target.url.path.as_str();
        if !base.is_empty() || ctx.canonical_target.is_some() {
            let rest = ctx
                .canonical_target
                .as_deref()
                .unwrap_or_else(|| std::str::from_utf8(up.raw_path()).unwrap_or("/"));
            let full = format!("{}{}", base.trim_end_matches('/'), rest);
            up.set_raw_path(full.as_bytes())?;
        }
        let original_host = session
            .req_header()
            .headers
            .get(http::header::HOST)
            .cloned()
            .or_else(|| {
                session
                    .req_header()
                    .uri
                    .authority()
                    .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
            });
        headers::prepare_upstream_request(
            up,
            action,
            target,
            original_host.as_ref(),
            peer_ip(session),
            ctx.peer_trusted,
            self.tls,
            &request_id,
        )
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let request_id = ctx.request_id_header();
        let (Some(snap), Some(route)) = (ctx.snapshot.as_ref(), ctx.route) else {
            return Ok(());
        };
        if let RouteAction::Proxy(action) = &snap.config.routes[route].action {
            headers::apply_response_headers(resp, action, self.tls, &request_id)?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let status = respond::status_for_error(e);
        if status > 0 && session.response_written().is_none() {
            // The client may be gone; nothing more to do if this write fails.
            let _ = respond::error_page(session, ctx, status, None).await;
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(ctx.status);
        let snap = ctx.snapshot.get_or_insert_with(|| self.shared.load());
        snap.counters(ctx.route).observe(status);
        ctx.selected = None;
    }
}
