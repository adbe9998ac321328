//! The Pingora glue. Each phase takes the snapshot's data and calls one domain function;
//! no routing, policy or header rules live here.

mod auth;
mod ctx;
#[doc(hidden)]
pub mod fuzzing;
mod headers;
mod request;
mod respond;

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Instant, SystemTime},
};

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::{protocols::l4::socket::SocketAddr, upstreams::peer::HttpPeer};
use pingora_error::{Error, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

pub use ctx::{generate_request_id, RequestCtx};
use respond::CLIENT_CERTIFICATE_REQUIRED;

use auth::{Endpoint, Identity, Origin};

use crate::{
    access_log,
    authz::SessionRef,
    config::{MtlsEnforcement, PathMatch, ProxyAction, RedirectAction, Route, RouteAction},
    listeners::TlsInfo,
    metrics::{DecisionKind, UpstreamErrorKind},
    path,
    policy::{ClientCertificate, Decision, FactSet, Reasons, RequestFacts},
    snapshot::{Shared, Snapshot},
};

/// The public proxy service.
pub struct Gatehouse {
    shared: Arc<Shared>,
    tls: bool,
}

/// What `request_filter` decided.
enum Next {
    /// Forward; `true` when a policy permit allows identity headers.
    Forward(bool),
    /// A reserved endpoint of gatehouse.
    Endpoint(Endpoint, Origin),
    /// Sign-in needed: the origin and the absolute URL to return to afterwards.
    Login(Origin, String),
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
    fn decide(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snap: &Snapshot,
        identity: &Identity,
    ) -> Next {
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
        if let std::borrow::Cow::Owned(p) = &canonical.path {
            ctx.canonical_path = Some(p.clone());
        }
        if self.tls {
            if let Some(sni) = tls_info(session).and_then(|t| t.server_name.as_deref()) {
                if !sni.eq_ignore_ascii_case(authority.host) {
                    return Next::Answer(421, None);
                }
            }
        }
        let found = snap
            .routes
            .find(authority.host, authority.port, &canonical.path);
        if let Some(endpoint) = auth::endpoint_of(&canonical.path) {
            let auth_host = snap
                .config
                .identity
                .authenticate_service_url
                .as_ref()
                .and_then(|u| u.host_str());
            let on_auth_host = auth_host.is_some_and(|h| h.eq_ignore_ascii_case(authority.host));
            let reserved_here = match endpoint {
                // The IdP's callback belongs to the authenticate host (every host when none
                // is configured); elsewhere the path is the app's own.
                Endpoint::OAuthCallback => auth_host.is_none() || on_auth_host,
                _ => true,
            };
            if reserved_here && (found.is_some() || on_auth_host) {
                ctx.route = found;
                return Next::Endpoint(
                    endpoint,
                    Origin {
                        origin: origin_of(self.tls, &authority),
                        query: canonical.query.map(str::to_owned),
                    },
                );
            }
        }
        let Some(index) = found else {
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
        let policy = &route.access.compiled;
        // The policy decides on the request's method; an upstream that honours a method
        // override would run another one (GET allowed, `X-HTTP-Method-Override: DELETE` run).
        if policy.facts_read().contains(FactSet::METHOD) && has_method_override(session) {
            return Next::Answer(400, Some("method-override"));
        }
        let loaded = match identity {
            Identity::Session(loaded) => Some(loaded),
            Identity::Anonymous => None,
            Identity::Conflict => return Next::Answer(400, Some("cookie-and-bearer")),
            // The store is down and the session is not cached: only a policy that does not
            // care who is asking may decide now (never a redirect loop, never "anonymous").
            Identity::Unavailable if policy.facts_read().contains(FactSet::SUBJECT) => {
                return Next::Answer(503, Some("session-store-unavailable"));
            }
            Identity::Unavailable => None,
        };
        ctx.user = loaded.cloned();
        let session_ref = loaded.map(|l| SessionRef {
            key: l.key,
            expires_at: l.expires,
            subject: &l.record.subject,
        });
        let facts = request_facts(session, ctx, &canonical.path);
        let decision = self.shared.auth.decisions.decide(
            snap.generation,
            index,
            policy,
            session_ref.as_ref(),
            &facts,
            SystemTime::now(),
        );
        let kind = match decision {
            Decision::Allow(_) => DecisionKind::Allow,
            Decision::Deny(_) => DecisionKind::Deny,
            Decision::NeedsLogin => DecisionKind::Login,
        };
        ctx.decision = Some((kind, decision.reasons()));
        let permit = match decision {
            Decision::Allow(_) => loaded.is_some(),
            Decision::Deny(reasons) => return Next::Denied(reasons),
            Decision::NeedsLogin => {
                let origin = origin_of(self.tls, &authority);
                let return_to = match canonical.query {
                    Some(q) => format!("{}{}?{q}", origin, canonical.path),
                    None => format!("{}{}", origin, canonical.path),
                };
                return Next::Login(
                    Origin {
                        origin,
                        query: None,
                    },
                    return_to,
                );
            }
        };
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
                Next::Forward(permit)
            }
        }
    }
}

/// The identity assertion and claim headers for a permitted request, when the route (or the
/// global setting) passes identity headers.
fn identity_headers(
    snap: &Snapshot,
    route: usize,
    loaded: &crate::session::Loaded,
    req: &RequestHeader,
    now: SystemTime,
) -> Vec<(http::HeaderName, http::HeaderValue)> {
    let identity = &snap.config.identity;
    let pass = snap.config.routes[route]
        .access
        .pass_identity_headers
        .unwrap_or(identity.pass_identity_headers);
    if !pass {
        return Vec::new();
    }
    let audience = lowercase(request::host(req).unwrap_or_default());
    let issuer = identity
        .authenticate_service_url
        .as_ref()
        .and_then(|u| u.host_str())
        .unwrap_or(&audience);
    let request = crate::identity::AssertionRequest {
        session_id: loaded.key.id,
        session_version: loaded.key.version,
        sid: loaded.sid(),
        issuer,
        audience: &audience,
        subject: &loaded.record.subject,
    };
    let claims = loaded.claim_headers(snap.generation, || {
        crate::identity::claim_header_values(&loaded.record.subject, &identity.jwt_claims_headers)
    });
    let mut out = Vec::with_capacity(claims.len() + 1);
    out.extend(claims.iter().cloned());
    match snap.keys.assertions.get_or_sign(&request, now) {
        Ok(token) => out.push((
            http::HeaderName::from_static("x-gatehouse-jwt-assertion"),
            token,
        )),
        Err(e) => tracing::error!(error = %e, "identity assertion could not be signed"),
    }
    out
}

/// The host as routed, whatever the client's spelling of its case (borrowed when already lower
/// case). An assertion's audience must not vary with the spelling: each would be one more
/// token to sign and cache, and a strict verifier would refuse it.
fn lowercase(host: &str) -> std::borrow::Cow<'_, str> {
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// `scheme://host[:port]` of a request that matched the configuration (default ports left out).
fn origin_of(tls: bool, authority: &request::Authority<'_>) -> String {
    let scheme = if tls { "https" } else { "http" };
    let default = if tls { 443 } else { 80 };
    let host = authority.host.to_ascii_lowercase();
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    if authority.port == default {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}:{}", authority.port)
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

/// Headers by which frameworks let a request name another method than its own.
const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Whether the request names another method: an override header, or `_method` in the query
/// of a POST (Symfony reads it there; a `_method` in a form body cannot be seen here).
fn has_method_override(session: &Session) -> bool {
    let req = session.req_header();
    METHOD_OVERRIDE_HEADERS
        .iter()
        .any(|name| req.headers.contains_key(*name))
        || (req.method == http::Method::POST
            && req.uri.query().is_some_and(|q| {
                q.split('&').any(|pair| {
                    let name = pair.split('=').next().unwrap_or_default();
                    name.eq_ignore_ascii_case("_method") || name.eq_ignore_ascii_case("%5Fmethod")
                })
            }))
}

/// The metrics label of a failed upstream attempt.
fn upstream_error_kind(e: &Error) -> UpstreamErrorKind {
    use pingora_error::ErrorType as T;
    match e.etype() {
        T::ConnectRefused => UpstreamErrorKind::ConnectRefused,
        T::ConnectTimedout => UpstreamErrorKind::ConnectTimeout,
        T::ConnectNoRoute | T::ConnectError | T::BindError | T::SocketError => {
            UpstreamErrorKind::ConnectError
        }
        T::TLSWantX509Lookup
        | T::TLSHandshakeFailure
        | T::TLSHandshakeTimedout
        | T::InvalidCert
        | T::HandshakeError => UpstreamErrorKind::Tls,
        T::ReadTimedout | T::WriteTimedout => UpstreamErrorKind::Timeout,
        T::ConnectionClosed | T::ReadError | T::WriteError => UpstreamErrorKind::Closed,
        T::InvalidHTTPHeader | T::H1Error | T::H2Error | T::H2Downgrade | T::InvalidH2 => {
            UpstreamErrorKind::Protocol
        }
        _ => UpstreamErrorKind::Other,
    }
}

/// Writes the request's access line (only called when the access log is enabled).
fn write_access_line(
    session: &Session,
    ctx: &RequestCtx,
    status: u16,
    elapsed: std::time::Duration,
) {
    let Some(snap) = ctx.snapshot.as_ref() else {
        return;
    };
    let req = session.req_header();
    // The canonical path (as routed), never the query (it carries codes, states and tokens).
    let path = ctx.canonical_path.as_deref().unwrap_or_else(|| {
        let raw = std::str::from_utf8(req.raw_path()).unwrap_or("");
        raw.split('?').next().unwrap_or("")
    });
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()));
    let subject = ctx.user.as_deref().map(|l| &l.record.subject);
    let (decision, reasons) = match ctx.decision {
        Some((kind, reasons)) => (Some(kind.as_str()), reasons),
        None => (None, Reasons::EMPTY),
    };
    let entry = access_log::Entry {
        request_id: ctx.request_id(),
        route: ctx.route.map(|r| snap.config.routes[r].name.as_str()),
        method: req.method.as_str(),
        host,
        path,
        status,
        duration: elapsed,
        upstream_duration: ctx.upstream_elapsed,
        bytes_sent: session.body_bytes_sent(),
        bytes_received: session.body_bytes_read(),
        upstream: ctx.upstream_addr,
        ip: ctx.client_ip,
        user: subject.map(|s| s.user_id.as_str()),
        email: subject.and_then(|s| s.email.as_deref()),
        decision,
        reasons,
        error: ctx.error,
        user_agent: req
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|h| h.to_str().ok()),
    };
    access_log::emit(&snap.config.access_log_fields, &entry);
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
        let auth = &self.shared.auth;
        let now = SystemTime::now();
        let auth::Caller {
            identity,
            bearer_is_ours,
        } = auth::identify(auth, &snap.keys, &snap.config, session.req_header(), now).await;
        let next = self.decide(session, ctx, &snap, &identity);
        let show_details = ctx
            .route
            .is_some_and(|r| snap.config.routes[r].show_error_details);
        ctx.snapshot = Some(Arc::clone(&snap));
        let env = auth::Env {
            auth,
            keys: &snap.keys,
            config: &snap.config,
        };
        match next {
            Next::Endpoint(endpoint, origin) => {
                auth::serve(session, ctx, env, endpoint, &origin, &identity).await?;
                Ok(true)
            }
            Next::Login(origin, return_to) => {
                auth::needs_login(session, ctx, env, &origin, return_to).await?;
                Ok(true)
            }
            Next::Forward(permit) => {
                let req = session.req_header();
                ctx.strip_authorization = bearer_is_ours;
                let identity_headers = match (&identity, ctx.route) {
                    (Identity::Session(loaded), Some(route)) if permit => {
                        identity_headers(&snap, route, loaded, req, now)
                    }
                    _ => Vec::new(),
                };
                ctx.identity_headers = identity_headers;
                let req = session.req_header_mut();
                headers::strip_client_headers(req, trusted);
                for (name, _) in &snap.config.identity.jwt_claims_headers {
                    req.remove_header(name);
                }
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
        ctx.upstream_started.get_or_insert_with(Instant::now);
        ctx.upstream_addr = Some(selected.target().addr);
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
        if let Some(snap) = ctx.snapshot.as_ref() {
            snap.route_metrics(ctx.route)
                .upstream_error(upstream_error_kind(&e));
        }
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

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        if e.esource() == &pingora_error::ErrorSource::Upstream {
            if let Some(snap) = ctx.snapshot.as_ref() {
                snap.route_metrics(ctx.route)
                    .upstream_error(upstream_error_kind(&e));
            }
        }
        // Pingora's rule: retry idempotent requests whose pooled connection turned out dead.
        let mut e = e.more_context(format!("Peer: {peer}"));
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
            // A stale pooled connection says nothing about the backend: the retry may pick
            // it again (on a fresh connection) instead of being pushed to the others.
            if client_reused {
                if let Some(selected) = ctx.selected.as_ref() {
                    ctx.tried &= !selected.bit();
                }
            }
        }
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
        )?;
        // gatehouse's own cookie and bearer token never reach the upstream.
        let cookie_name = snap.config.identity.cookie_name.as_str();
        let cookies: Vec<http::HeaderValue> = up
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .cloned()
            .collect();
        if cookies
            .iter()
            .any(|c| auth::strip_our_cookies(c, cookie_name).is_some())
        {
            up.remove_header(&http::header::COOKIE);
            for c in &cookies {
                match auth::strip_our_cookies(c, cookie_name) {
                    None => up.append_header(http::header::COOKIE, c.clone())?,
                    Some(Some(kept)) => up.append_header(http::header::COOKIE, kept)?,
                    Some(None) => false,
                };
            }
        }
        if ctx.strip_authorization {
            up.remove_header(&http::header::AUTHORIZATION);
        }
        for (name, value) in ctx.identity_headers.drain(..) {
            up.insert_header(name, value)?;
        }
        Ok(())
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
        if let Some(started) = ctx.upstream_started {
            let elapsed = started.elapsed();
            ctx.upstream_elapsed = Some(elapsed);
            snap.route_metrics(ctx.route)
                .observe_upstream(elapsed.as_secs_f64());
        }
        if let RouteAction::Proxy(action) = &snap.config.routes[route].action {
            headers::apply_response_headers(resp, action, self.tls, &request_id)?;
            headers::strip_our_set_cookies(resp, &snap.config.identity.cookie_name);
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
        ctx.error = Some(if e.etype() == &respond::NO_HEALTHY_UPSTREAM {
            // Raised before any connection attempt: `fail_to_connect` did not count it.
            if let Some(snap) = ctx.snapshot.as_ref() {
                snap.route_metrics(ctx.route)
                    .upstream_error(UpstreamErrorKind::NoHealthyBackend);
            }
            UpstreamErrorKind::NoHealthyBackend.as_str()
        } else {
            match e.esource() {
                pingora_error::ErrorSource::Upstream => upstream_error_kind(e).as_str(),
                pingora_error::ErrorSource::Downstream => "client",
                _ => "internal",
            }
        });
        if status > 0 && session.response_written().is_none() {
            // The client may be gone; nothing more to do if this write fails.
            let _ = respond::error_page(session, ctx, status, None).await;
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    /// Pingora logs every failed request at ERROR. Upstream and client failures are in the
    /// access line (`error`) and `gatehouse_upstream_errors_total` already; a line each would
    /// flood the log during an upstream outage (one per request, ~600 bytes). Internal errors
    /// are still logged.
    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, _e: &Error) -> bool {
        ctx.error.is_some_and(|kind| kind != "internal")
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(ctx.status);
        let snap = ctx.snapshot.get_or_insert_with(|| self.shared.load());
        let elapsed = ctx.started.elapsed();
        let metrics = snap.route_metrics(ctx.route);
        metrics.observe(status, elapsed.as_secs_f64());
        if let Some((kind, reasons)) = ctx.decision {
            metrics.decision(kind, reasons);
        }
        ctx.selected = None;
        if access_log::enabled() {
            write_access_line(session, ctx, status, elapsed);
        }
    }
}
