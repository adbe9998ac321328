//! Header rules: what is stripped from client requests, what is added for upstreams, and the
//! response headers gatehouse sets.

use std::net::IpAddr;

use http::{header, HeaderName, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};

use crate::{config::ProxyAction, upstreams::Target};

// Header names and values used on every request, parsed once. Lookups and removals by
// `&HeaderName` skip re-parsing a string each time; inserts take lower-case `&'static str`
// names (Pingora re-parses any name it is given, and a static str costs no copy).
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HOP_BY_HOP: [&HeaderName; 4] = [
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRAILER,
];

/// Client-sent headers that assert identity: never forwarded, on any route.
fn asserts_identity(name: &str) -> bool {
    name.starts_with("x-gatehouse-")
        || name.starts_with("x-pomerium-")
        || name.starts_with("x-auth-request-")
        || matches!(
            name,
            "x-forwarded-user"
                | "x-forwarded-email"
                | "x-forwarded-groups"
                | "x-forwarded-preferred-username"
                | "x-forwarded-access-token"
                | "remote-user"
                | "x-remote-user"
                | "x-webauth-user"
        )
}

/// Client-sent headers that describe the connection or the original request: believed
/// only from trusted proxies. `X-Forwarded-*` and `X-Original-*` are families (`-Ssl`,
/// `-Scheme`, `-Client-Cert`, … are read by frameworks too). (`X-Request-Id` is not listed:
/// the upstream request always gets gatehouse's own value.)
fn describes_forwarding(name: &str) -> bool {
    name.starts_with("x-forwarded-")
        || name.starts_with("x-original-")
        || matches!(
            name,
            "x-real-ip"
                | "forwarded"
                | "x-rewrite-url"
                | "x-client-ip"
                | "true-client-ip"
                | "x-cluster-client-ip"
        )
}

/// Removes identity headers always, and forwarding headers unless the peer is trusted.
/// Allocates only when something must go.
pub(super) fn strip_client_headers(req: &mut RequestHeader, peer_trusted: bool) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in req.headers.keys() {
        let n = name.as_str();
        if asserts_identity(n) || (!peer_trusted && describes_forwarding(n)) {
            doomed.push(name.clone());
        }
    }
    for name in &doomed {
        req.remove_header(name);
    }
}

/// The client IP: the TCP peer, or — when the peer is a trusted proxy — the rightmost
/// address in X-Forwarded-For that is not itself trusted.
pub(super) fn client_ip(
    req: &RequestHeader,
    peer: Option<IpAddr>,
    trusted: &[ipnet::IpNet],
) -> (Option<IpAddr>, bool) {
    let Some(peer) = peer else {
        return (None, false);
    };
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return (Some(peer), false);
    }
    let mut ip = peer;
    for value in req.headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(value) = value.to_str() else { break };
        for hop in value.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(hop) => {
                    ip = hop;
                    if !is_trusted(&hop) {
                        return (Some(ip), true);
                    }
                }
                Err(_) => return (Some(ip), true),
            }
        }
    }
    (Some(ip), true)
}

#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
/// Sets Host, X-Forwarded-*, X-Request-Id and the route's request header operations on the
/// upstream request. `original_host` is the client's Host / :authority.
pub(super) fn prepare_upstream_request(
    up: &mut RequestHeader,
    action: &ProxyAction,
    target: &Target,
    original_host: Option<&HeaderValue>,
    peer: Option<IpAddr>,
    peer_trusted: bool,
    tls: bool,
    request_id: &HeaderValue,
) -> pingora_error::Result<()> {
    if let Some(host) = &action.host_rewrite {
        up.insert_header(header::HOST, host.as_str())?;
    } else if !action.preserve_host_header {
        up.insert_header(header::HOST, target.authority.as_str())?;
    } else if let Some(h) = original_host {
        up.insert_header(header::HOST, h.clone())?;
    }
    if let Some(peer) = peer {
        let xff = match up
            .headers
            .get(&X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
        {
            Some(chain) if peer_trusted => format!("{chain}, {peer}"),
            _ => peer.to_string(),
        };
        up.insert_header("x-forwarded-for", xff)?;
    }
    if !(peer_trusted && up.headers.contains_key(&X_FORWARDED_PROTO)) {
        let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
        up.insert_header("x-forwarded-proto", proto)?;
    }
    if !(peer_trusted && up.headers.contains_key(&X_FORWARDED_HOST)) {
        if let Some(h) = original_host {
            up.insert_header("x-forwarded-host", h.clone())?;
        }
    }
    up.insert_header("x-request-id", request_id.clone())?;
    for name in &action.remove_request_headers {
        up.remove_header(name);
    }
    for (name, value) in &action.set_request_headers {
        up.insert_header(name.clone(), value.clone())?;
    }
    Ok(())
}

/// gatehouse's default response headers (routes may override them).
pub(super) fn add_security_headers(
    resp: &mut ResponseHeader,
    tls: bool,
) -> pingora_error::Result<()> {
    resp.insert_header("x-frame-options", HeaderValue::from_static("SAMEORIGIN"))?;
    resp.insert_header(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    )?;
    if tls {
        resp.insert_header(
            "strict-transport-security",
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        )?;
    }
    Ok(())
}

/// Security headers, then the route's `set_response_headers` (an empty value removes).
pub(super) fn apply_response_headers(
    resp: &mut ResponseHeader,
    action: &ProxyAction,
    tls: bool,
    request_id: &HeaderValue,
) -> pingora_error::Result<()> {
    strip_hop_by_hop(resp);
    add_security_headers(resp, tls)?;
    for (name, value) in &action.set_response_headers {
        if value.is_empty() {
            resp.remove_header(name);
        } else {
            resp.insert_header(name.clone(), value.clone())?;
        }
    }
    resp.insert_header("x-request-id", request_id.clone())?;
    Ok(())
}

/// Removes the upstream's `Set-Cookie` fields for gatehouse's own cookies (`name` and its
/// login-state cookie): an app behind one route must not fixate a session on the browser
/// or sign the person out of every route. Allocates only when there is one to remove.
pub(super) fn strip_our_set_cookies(resp: &mut ResponseHeader, name: &str) {
    let ours = |v: &HeaderValue| {
        let cookie = v
            .as_bytes()
            .split(|b| *b == b'=')
            .next()
            .unwrap_or_default();
        super::auth::is_our_cookie(cookie.trim_ascii(), name)
    };
    if !resp.headers.get_all(header::SET_COOKIE).iter().any(ours) {
        return;
    }
    let kept: Vec<HeaderValue> = resp
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| !ours(v))
        .cloned()
        .collect();
    resp.remove_header(&header::SET_COOKIE);
    for v in kept {
        // Appending a field that was just there cannot fail.
        let _ = resp.append_header(header::SET_COOKIE, v);
    }
}

/// Removes hop-by-hop fields of an upstream response and every field its `Connection`
/// header names (a 101 keeps `Connection`/`Upgrade`, which the upgrade needs).
fn strip_hop_by_hop(resp: &mut ResponseHeader) {
    let switching = resp.status == http::StatusCode::SWITCHING_PROTOCOLS;
    // Removal touches two maps in Pingora; skip it for what is not there (the common case).
    for name in HOP_BY_HOP {
        if resp.headers.contains_key(name) {
            resp.remove_header(name);
        }
    }
    if !resp.headers.contains_key(header::CONNECTION) {
        return;
    }
    let mut doomed: Vec<HeaderName> = Vec::new();
    for value in resp.headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',') {
            let token = token.trim();
            if switching && token.eq_ignore_ascii_case("upgrade") {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.to_ascii_lowercase().as_bytes()) {
                doomed.push(name);
            }
        }
    }
    for name in doomed {
        resp.remove_header(&name);
    }
    if !switching {
        resp.remove_header(&header::CONNECTION);
    }
}
