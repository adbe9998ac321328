//! The identity step of the request path: who is calling (session cookie or bearer token),
//! the login redirect, and the reserved endpoints (`/.gatehouse/*`, `/oauth2/callback`,
//! `/.well-known/gatehouse*`). Sessions, the relying party and keys are in `session`,
//! `authn`, `auth` and `identity`; this module only turns them into HTTP.

use std::{
    fmt::Write as _,
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue};
use pingora_http::RequestHeader;
use pingora_proxy::Session;

use super::{ctx::RequestCtx, respond};
use crate::{
    auth::{Auth, AuthKeys, MachineLookup},
    authn::oidc::{AuthnError, LoginState},
    config::{Config, SameSite},
    session::{
        self, seal::constant_time_eq, Loaded, Lookup, Purpose, SessionKind, SessionRecord, Ticket,
    },
};

/// The login-state cookie lives this long (the time a person has to sign in at the IdP).
const LOGIN_STATE_TTL: Duration = Duration::from_secs(600);
/// Handoff codes and sign-in hops expire after this.
const HANDOFF_TTL: Duration = Duration::from_secs(60);
/// Suffix of the login-state cookie's name.
const LOGIN_COOKIE_SUFFIX: &str = "_login";
/// Sealing context of the one-time handoff code in `/.gatehouse/callback?code=…`.
const HANDOFF_CODE_CONTEXT: &[u8] = b"handoff-code";
/// The query parameter a programmatic login's callback receives its token in.
pub(super) const PROGRAMMATIC_TOKEN_PARAM: &str = "gatehouse_token";

/// What the identity step reads: the identity runtime and this snapshot's keys and config.
#[derive(Clone, Copy)]
pub(super) struct Env<'a> {
    pub auth: &'a Arc<Auth>,
    pub keys: &'a AuthKeys,
    pub config: &'a Config,
}

/// Who is calling.
pub(super) enum Identity {
    Anonymous,
    Session(Arc<Loaded>),
    /// A session cookie we could not check: the store is down and it is not cached.
    Unavailable,
    /// Both a session cookie and a bearer token of ours: refused (400).
    Conflict,
}

/// Who is calling, and whether the request's bearer token is a credential of ours (a ticket,
/// or a workload JWT gatehouse accepted): then it is never forwarded upstream. Any other
/// bearer token is the upstream's own and passes through.
pub(super) struct Caller {
    pub identity: Identity,
    pub bearer_is_ours: bool,
}

/// gatehouse's own paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    UserPage,
    UserJson,
    SignOut,
    SignedOut,
    SignIn,
    Handoff,
    ApiLogin,
    WellKnown,
    Jwks,
    OAuthCallback,
}

/// What the endpoints need to know about the request.
pub(super) struct Origin {
    /// `scheme://host[:port]` of this request, from the matched configuration.
    pub origin: String,
    /// The raw query string, if any.
    pub query: Option<String>,
}

// === identify ===

/// Reads the session cookie or bearer token. No credential → anonymous without any I/O; a
/// cached session → no I/O either.
///
/// A bearer token of ours (a ticket, or a workload JWT from `identity_providers`) identifies
/// the caller; together with our session cookie it is ambiguous and refused. A bearer token
/// that is not ours belongs to the upstream (an API behind gatehouse with tokens of its own,
/// called from a signed-in browser): the cookie identifies the caller and the token passes.
pub(super) async fn identify(
    auth: &Arc<Auth>,
    keys: &AuthKeys,
    config: &Config,
    req: &RequestHeader,
    now: SystemTime,
) -> Caller {
    let ours = |identity| Caller {
        identity,
        bearer_is_ours: true,
    };
    let cookie_name = config.identity.cookie_name.as_str();
    let mut cookie_present = false;
    let mut ticket = None;
    for value in cookie_values(req, cookie_name) {
        cookie_present = true;
        if ticket.is_none() {
            ticket = Ticket::open(&keys.sealer, value);
        }
    }
    if let Some(bearer) = bearer_token(req) {
        if let Some(bearer_ticket) = Ticket::open(&keys.sealer, bearer) {
            if cookie_present {
                return ours(Identity::Conflict);
            }
            return ours(load(auth, bearer_ticket, now).await);
        }
        let issuers = &config.identity.identity_providers;
        if !issuers.is_empty() {
            let own_kids = keys.assertions.keys().kids().map(str::to_owned).collect();
            match auth.machine(bearer, issuers, own_kids, now).await {
                MachineLookup::Found(_) if cookie_present => return ours(Identity::Conflict),
                MachineLookup::Found(loaded) => return ours(Identity::Session(loaded)),
                // Whether it is ours cannot be told now: not forwarded, and no identity.
                MachineLookup::Unavailable => return ours(Identity::Unavailable),
                MachineLookup::Invalid => {}
            }
        }
    }
    let identity = match ticket {
        Some(ticket) => load(auth, ticket, now).await,
        None => Identity::Anonymous,
    };
    Caller {
        identity,
        bearer_is_ours: false,
    }
}

/// The session a ticket names: from the cache, else from the store.
async fn load(auth: &Arc<Auth>, ticket: Ticket, now: SystemTime) -> Identity {
    let lookup = match auth.sessions.load_cached(&ticket, now) {
        Some(hit) => {
            auth.metrics.session_cache_hits.inc();
            hit
        }
        None => {
            auth.metrics.session_cache_misses.inc();
            let sessions = Arc::clone(&auth.sessions);
            auth.run(async move { sessions.load(&ticket, now).await })
                .await
                .unwrap_or(Lookup::Unavailable)
        }
    };
    match lookup {
        Lookup::Found(loaded) => {
            auth.refresh_if_due(&loaded, now);
            Identity::Session(loaded)
        }
        Lookup::Missing => Identity::Anonymous,
        Lookup::Unavailable => Identity::Unavailable,
    }
}

/// Every value of cookie `name` in the request's Cookie headers. Read byte-wise: another
/// cookie with non-ASCII bytes (browsers send UTF-8 raw) must not hide ours.
fn cookie_values<'a>(req: &'a RequestHeader, name: &'a str) -> impl Iterator<Item = &'a str> {
    req.headers
        .get_all(header::COOKIE)
        .into_iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(move |pair| cookie_value(pair, name))
        .filter_map(|v| std::str::from_utf8(v).ok())
        .map(|v| v.trim_matches('"'))
}

/// The value of a `name=value` cookie pair if it is cookie `name` (spaces around ignored).
fn cookie_value<'a>(pair: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let eq = pair.iter().position(|&b| b == b'=')?;
    (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
}

/// Whether `cookie` names one of gatehouse's cookies: the session cookie `name` or its
/// login-state cookie.
pub(super) fn is_our_cookie(cookie: &[u8], name: &str) -> bool {
    cookie
        .strip_prefix(name.as_bytes())
        .is_some_and(|rest| rest.is_empty() || rest == LOGIN_COOKIE_SUFFIX.as_bytes())
}

/// The token of `Authorization: Bearer …`.
fn bearer_token(req: &RequestHeader) -> Option<&str> {
    let value = req.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The Cookie header without our cookies (None: nothing of ours was in it; Some(None):
/// nothing else was). Byte-wise, like `cookie_values`: whatever we would read is removed.
pub(super) fn strip_our_cookies(value: &HeaderValue, name: &str) -> Option<Option<HeaderValue>> {
    let ours = |pair: &[u8]| {
        pair.iter()
            .position(|&b| b == b'=')
            .is_some_and(|eq| is_our_cookie(pair[..eq].trim_ascii(), name))
    };
    let pairs = value.as_bytes().split(|&b| b == b';');
    if !pairs.clone().any(ours) {
        return None;
    }
    let mut kept = Vec::with_capacity(value.len());
    for pair in pairs.map(<[u8]>::trim_ascii) {
        if pair.is_empty() || ours(pair) {
            continue;
        }
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair);
    }
    if kept.is_empty() {
        return Some(None);
    }
    Some(HeaderValue::from_bytes(&kept).ok())
}

// === reserved paths ===

/// The endpoint a canonical path names, if any.
pub(super) fn endpoint_of(path: &str) -> Option<Endpoint> {
    Some(match path {
        "/.gatehouse" | "/.gatehouse/" => Endpoint::UserPage,
        "/.gatehouse/user" => Endpoint::UserJson,
        "/.gatehouse/sign_out" => Endpoint::SignOut,
        "/.gatehouse/signed_out" => Endpoint::SignedOut,
        "/.gatehouse/sign_in" => Endpoint::SignIn,
        "/.gatehouse/callback" => Endpoint::Handoff,
        "/.gatehouse/api/v1/login" => Endpoint::ApiLogin,
        "/.well-known/gatehouse" | "/.well-known/gatehouse/" => Endpoint::WellKnown,
        "/.well-known/gatehouse/jwks.json" => Endpoint::Jwks,
        "/oauth2/callback" => Endpoint::OAuthCallback,
        _ => return None,
    })
}

/// Where the IdP sends people back: `authenticate_service_url`, or this route's own origin.
fn callback_base(config: &Config, origin: &Origin) -> String {
    match &config.identity.authenticate_service_url {
        Some(url) => url.origin().ascii_serialization(),
        None => origin.origin.clone(),
    }
}

/// Serves a reserved endpoint.
pub(super) async fn serve(
    session: &mut Session,
    ctx: &mut RequestCtx,
    env: Env<'_>,
    endpoint: Endpoint,
    origin: &Origin,
    identity: &Identity,
) -> pingora_error::Result<()> {
    let Env { keys, config, .. } = env;
    let now = SystemTime::now();
    match endpoint {
        Endpoint::Jwks => {
            let inm = session
                .req_header()
                .headers
                .get(header::IF_NONE_MATCH)
                .map(|v| v.as_bytes().to_vec());
            let reply = keys.assertions.keys().jwks().reply(inm.as_deref());
            let mut headers = vec![
                (header::ETAG, reply.etag),
                (header::CACHE_CONTROL, reply.cache_control),
            ];
            if let Some(ct) = reply.content_type {
                headers.push((header::CONTENT_TYPE, ct));
            }
            respond::reply(session, ctx, reply.status.as_u16(), headers, reply.body).await
        }
        Endpoint::WellKnown => {
            let base = callback_base(config, origin);
            let body = serde_json::json!({
                "issuer": base,
                "jwks_uri": format!("{}/.well-known/gatehouse/jwks.json", origin.origin),
                "authentication_callback_endpoint": format!("{base}/oauth2/callback"),
            });
            json(session, ctx, 200, &body, vec![]).await
        }
        Endpoint::SignedOut => {
            let body = page(
                "Signed out",
                "<p>You are signed out.</p><p><a href=\"/\">Sign in again</a></p>",
            );
            html(session, ctx, 200, body, vec![]).await
        }
        Endpoint::UserJson => match identity {
            Identity::Session(loaded) => {
                let r = &loaded.record;
                let body = serde_json::json!({
                    "user": r.subject.user_id,
                    "email": r.subject.email,
                    "email_verified": r.subject.email_verified,
                    "name": r.subject.name,
                    "groups": r.subject.groups,
                    "session_expires_at": rfc3339(r.expires_at),
                });
                json(session, ctx, 200, &body, vec![]).await
            }
            Identity::Unavailable => respond::error_page(session, ctx, 503, None).await,
            Identity::Conflict => {
                respond::error_page(session, ctx, 400, Some("cookie-and-bearer")).await
            }
            Identity::Anonymous => unauthenticated(session, ctx, config).await,
        },
        Endpoint::UserPage => match identity {
            Identity::Session(loaded) => {
                let csrf = sign_out_token(keys, loaded);
                html(session, ctx, 200, user_page(loaded, &csrf), vec![]).await
            }
            Identity::Unavailable => respond::error_page(session, ctx, 503, None).await,
            Identity::Conflict => {
                respond::error_page(session, ctx, 400, Some("cookie-and-bearer")).await
            }
            Identity::Anonymous => {
                let return_to = format!("{}/.gatehouse/", origin.origin);
                needs_login(session, ctx, env, origin, return_to).await
            }
        },
        Endpoint::SignOut => sign_out(session, ctx, env, origin, identity).await,
        Endpoint::SignIn => {
            let Some(sealed) = query_param(origin.query.as_deref(), "r") else {
                return respond::error_page(session, ctx, 400, Some("sign-in-link-invalid")).await;
            };
            let Some(hop) = keys
                .sealer
                .open(Purpose::SignIn, b"hop", &sealed)
                .and_then(|raw| serde_json::from_slice::<SignInHop>(&raw).ok())
                .filter(|h| h.expires_at >= session::unix(now))
            else {
                return respond::error_page(session, ctx, 400, Some("sign-in-link-invalid")).await;
            };
            start_at_idp(session, ctx, env, origin, hop.return_to, hop.programmatic).await
        }
        Endpoint::ApiLogin => {
            let Some(redirect_uri) = query_param(origin.query.as_deref(), "redirect_uri") else {
                return respond::error_page(session, ctx, 400, Some("redirect-uri-missing")).await;
            };
            if !programmatic_target_allowed(
                &redirect_uri,
                &config.identity.programmatic_redirect_domain_whitelist,
            ) {
                return respond::error_page(session, ctx, 400, Some("redirect-uri-not-allowed"))
                    .await;
            }
            let url = sign_in_link(keys, config, origin, redirect_uri, true, now);
            respond::reply(
                session,
                ctx,
                200,
                vec![(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                )],
                Bytes::from(url),
            )
            .await
        }
        Endpoint::OAuthCallback => callback(session, ctx, env, origin).await,
        Endpoint::Handoff => handoff(session, ctx, env, origin).await,
    }
}

// === login ===

/// Starts a login for a request that needs one: browsers are sent to the IdP (through the
/// authenticate host when that is another host), other clients get 401.
pub(super) async fn needs_login(
    session: &mut Session,
    ctx: &mut RequestCtx,
    env: Env<'_>,
    origin: &Origin,
    return_to: String,
) -> pingora_error::Result<()> {
    let Env { config, .. } = env;
    if !respond::prefers_html(session) {
        return unauthenticated(session, ctx, config).await;
    }
    login(session, ctx, env, origin, return_to, false).await
}

/// 401 with JSON and `WWW-Authenticate`.
async fn unauthenticated(
    session: &mut Session,
    ctx: &mut RequestCtx,
    _config: &Config,
) -> pingora_error::Result<()> {
    let body = serde_json::json!({
        "status": 401,
        "error": "Unauthorized",
        "request_id": ctx.request_id(),
        "detail": "sign in: open this address in a browser, or use a bearer token from /.gatehouse/api/v1/login",
    });
    json(
        session,
        ctx,
        401,
        &body,
        vec![(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"gatehouse\""),
        )],
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn login(
    session: &mut Session,
    ctx: &mut RequestCtx,
    env: Env<'_>,
    origin: &Origin,
    return_to: String,
    programmatic: bool,
) -> pingora_error::Result<()> {
    let Env { keys, config, .. } = env;
    let base = callback_base(config, origin);
    if base != origin.origin {
        // The authenticate host sets the login state and talks to the IdP.
        let link = sign_in_link(
            keys,
            config,
            origin,
            return_to,
            programmatic,
            SystemTime::now(),
        );
        let clear = clear_cookie(config, &config.identity.cookie_name, ctx.tls);
        return redirect(session, ctx, &link, vec![clear]).await;
    }
    start_at_idp(session, ctx, env, origin, return_to, programmatic).await
}

/// A sealed link to `/.gatehouse/sign_in` on the authenticate host.
fn sign_in_link(
    keys: &AuthKeys,
    config: &Config,
    origin: &Origin,
    return_to: String,
    programmatic: bool,
    now: SystemTime,
) -> String {
    let hop = SignInHop {
        return_to,
        programmatic,
        expires_at: session::unix(now + LOGIN_STATE_TTL),
    };
    let raw = serde_json::to_vec(&hop).unwrap_or_default();
    let sealed = keys.sealer.seal(Purpose::SignIn, b"hop", &raw);
    format!(
        "{}/.gatehouse/sign_in?r={sealed}",
        callback_base(config, origin)
    )
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SignInHop {
    return_to: String,
    programmatic: bool,
    expires_at: u64,
}

/// Sets the login-state cookie (clearing any session cookie) and sends the browser to the IdP.
#[allow(clippy::too_many_arguments)]
async fn start_at_idp(
    session: &mut Session,
    ctx: &mut RequestCtx,
    env: Env<'_>,
    origin: &Origin,
    return_to: String,
    programmatic: bool,
) -> pingora_error::Result<()> {
    let Env { auth, keys, config } = env;
    let Some(idp) = auth.idp.clone() else {
        return respond::error_page(
            session,
            ctx,
            503,
            Some("no identity provider is configured"),
        )
        .await;
    };
    let redirect_uri = format!("{}/oauth2/callback", callback_base(config, origin));
    let now = SystemTime::now();
    let started = auth
        .run(async move { idp.start(&redirect_uri, return_to, programmatic, now).await })
        .await;
    let (url, state) = match started {
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cannot start a login");
            return sign_in_unavailable(session, ctx).await;
        }
        None => return sign_in_unavailable(session, ctx).await,
    };
    let sealed = keys.sealer.seal(
        Purpose::LoginState,
        b"",
        &serde_json::to_vec(&state).unwrap_or_default(),
    );
    let name = &config.identity.cookie_name;
    let login_cookie = set_cookie(
        config,
        &format!("{name}{LOGIN_COOKIE_SUFFIX}"),
        &sealed,
        Some(LOGIN_STATE_TTL),
        ctx.tls,
    );
    let clear = clear_cookie(config, name, ctx.tls);
    redirect(session, ctx, &url, vec![clear, login_cookie]).await
}

async fn sign_in_unavailable(
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora_error::Result<()> {
    respond::error_page(
        session,
        ctx,
        503,
        Some("The identity provider cannot be reached right now. Try again in a moment."),
    )
    .await
}

/// `/oauth2/callback`: checks the login state, redeems the code, creates the session.
async fn callback(
    session: &mut Session,
    ctx: &mut RequestCtx,
    env: Env<'_>,
    origin: &Origin,
) -> pingora_error::Result<()> {
    let Env { auth, keys, config } = env;
    let query = origin.query.as_deref();
    if let Some(error) = query_param(query, "error") {
        // Shown escaped; never a redirect.
        let detail = format!("The identity provider refused the sign-in: {error}");
        return respond::error_page(session, ctx, 400, Some(&detail)).await;
    }
    let name = format!("{}{LOGIN_COOKIE_SUFFIX}", config.identity.cookie_name);
    let now = SystemTime::now();
    let login = cookie_values(session.req_header(), &name)
        .find_map(|v| keys.sealer.open(Purpose::LoginState, b"", v))
        .and_then(|raw| serde_json::from_slice::<LoginState>(&raw).ok())
        .filter(|l| l.issued_at + LOGIN_STATE_TTL.as_secs() >= session::unix(now));
    let clear_login = clear_cookie(config, &name, ctx.tls);
    let Some(login) = login else {
        return error_with(session, ctx, 400, "login-state-missing", vec![clear_login]).await;
    };
    let state_ok = query_param(query, "state")
        .is_some_and(|s| !s.is_empty() && constant_time_eq(s.as_bytes(), login.state.as_bytes()));
    if !state_ok {
        return error_with(session, ctx, 400, "login-state-mismatch", vec![clear_login]).await;
    }
    let Some(code) = query_param(query, "code").filter(|c| !c.is_empty()) else {
        return error_with(session, ctx, 400, "code-missing", vec![clear_login]).await;
    };
    if !auth.redeem_state(&login.state) {
        return error_with(session, ctx, 400, "login-state-used", vec![clear_login]).await;
    }
    let Some(idp) = auth.idp.clone() else {
        return respond::error_page(session, ctx, 503, None).await;
    };
    let iss = query_param(query, "iss");
    let login2 = login.clone();
    let finished = auth
        .run(async move { idp.finish(&login2, &code, iss.as_deref()).await })
        .await;
    let signed_in = match finished {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "sign-in failed");
            let result = match e {
                AuthnError::Unavailable(_) => "unavailable",
                _ => "rejected",
            };
            auth.metrics.logins_total.with_label_values(&[result]).inc();
            let status = match e {
                AuthnError::Unavailable(_) => 503,
                AuthnError::InvalidGrant => 400,
                AuthnError::Rejected(_) => 502,
            };
            return error_with(session, ctx, status, "sign-in-failed", vec![clear_login]).await;
        }
        None => return error_with(session, ctx, 503, "sign-in-failed", vec![clear_login]).await,
    };
    let created = session::unix(now);
    let record = SessionRecord {
        version: 1,
        kind: if login.programmatic {
            SessionKind::Programmatic
        } else {
            SessionKind::Browser
        },
        subject: signed_in.subject,
        issuer: signed_in.issuer,
        created_at: created,
        expires_at: created + config.identity.cookie_expire.as_secs(),
        refreshed_at: created,
        tokens: signed_in.tokens,
    };
    let sessions = Arc::clone(&auth.sessions);
    let ticket = match auth
        .run(async move { sessions.create(&record, now).await })
        .await
    {
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "session could not be stored");
            return error_with(
                session,
                ctx,
                503,
                "session-store-unavailable",
                vec![clear_login],
            )
            .await;
        }
        None => {
            return error_with(
                session,
                ctx,
                503,
                "session-store-unavailable",
                vec![clear_login],
            )
            .await
        }
    };
    auth.metrics
        .logins_total
        .with_label_values(&["success"])
        .inc();
    let token = ticket.seal(&keys.sealer);
    if login.programmatic {
        let sep = if login.return_to.contains('?') {
            '&'
        } else {
            '?'
        };
        let location = format!("{}{sep}{PROGRAMMATIC_TOKEN_PARAM}={token}", login.return_to);
        return redirect(session, ctx, &location, vec![clear_login]).await;
    }
    let (return_origin, return_path) = split_origin(&login.return_to);
    if return_origin == origin.origin {
        let cookie = set_cookie(
            config,
            &config.identity.cookie_name,
            &token,
            Some(config.identity.cookie_expire),
            ctx.tls,
        );
        return redirect(
            session,
            ctx,
            &safe_path(return_path),
            vec![clear_login, cookie],
        )
        .await;
    }
    // Another host: hand the session over through a one-time code redeemed server-side.
    let mut code = [0u8; 32];
    rand::fill(&mut code);
    let payload = serde_json::to_vec(&Handoff {
        ticket: token,
        return_to: login.return_to.clone(),
    })
    .unwrap_or_default();
    let sealed = keys.sealer.seal(Purpose::SignIn, b"handoff", &payload);
    let store = Arc::clone(auth.sessions.store());
    let stored = auth
        .run(async move { store.put_code(&code, sealed.as_bytes(), HANDOFF_TTL).await })
        .await;
    if !matches!(stored, Some(Ok(true))) {
        return error_with(
            session,
            ctx,
            503,
            "session-store-unavailable",
            vec![clear_login],
        )
        .await;
    }
    // The code travels sealed: a forged one is refused without a store lookup.
    let location = format!(
        "{return_origin}/.gatehouse/callback?code={}",
        keys.sealer
            .seal(Purpose::SignIn, HANDOFF_CODE_CONTEXT, &code)
    );
    redirect(session, ctx, &location, vec![clear_login]).await
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Handoff {
    ticket: String,
    return_to: String,
}

/// `/.gatehouse/callback?code=…` on an app host: redeems the one-time code, sets the cookie.
async fn handoff(
    session: &mut Session,
    ctx: &mut RequestCtx,
    env: Env<'_>,
    origin: &Origin,
) -> pingora_error::Result<()> {
    let Env { auth, keys, config } = env;
    // Only codes this fleet sealed reach the store: unauthenticated traffic never does.
    let code = query_param(origin.query.as_deref(), "code")
        .and_then(|c| keys.sealer.open(Purpose::SignIn, HANDOFF_CODE_CONTEXT, &c))
        .and_then(|c| <[u8; 32]>::try_from(c).ok());
    let Some(code) = code else {
        return respond::error_page(session, ctx, 400, Some("handoff-code-invalid")).await;
    };
    let store = Arc::clone(auth.sessions.store());
    let taken = auth.run(async move { store.take_code(&code).await }).await;
    let payload = match taken {
        Some(Ok(Some(bytes))) => bytes,
        Some(Ok(None)) => {
            return respond::error_page(session, ctx, 400, Some("handoff-code-invalid")).await
        }
        _ => return respond::error_page(session, ctx, 503, None).await,
    };
    let handoff = std::str::from_utf8(&payload)
        .ok()
        .and_then(|s| keys.sealer.open(Purpose::SignIn, b"handoff", s))
        .and_then(|raw| serde_json::from_slice::<Handoff>(&raw).ok());
    let Some(handoff) = handoff else {
        return respond::error_page(session, ctx, 400, Some("handoff-code-invalid")).await;
    };
    let (return_origin, return_path) = split_origin(&handoff.return_to);
    if return_origin != origin.origin {
        return respond::error_page(session, ctx, 400, Some("handoff-code-invalid")).await;
    }
    let cookie = set_cookie(
        config,
        &config.identity.cookie_name,
        &handoff.ticket,
        Some(config.identity.cookie_expire),
        ctx.tls,
    );
    redirect(session, ctx, &safe_path(return_path), vec![cookie]).await
}

// === sign-out ===

/// A token for the user page's sign-out form, bound to the session.
fn sign_out_token(keys: &AuthKeys, loaded: &Loaded) -> String {
    keys.sealer.seal(Purpose::SignOut, &loaded.id, b"sign-out")
}

async fn sign_out(
    session: &mut Session,
    ctx: &mut RequestCtx,
    env: Env<'_>,
    origin: &Origin,
    identity: &Identity,
) -> pingora_error::Result<()> {
    let Env { auth, keys, config } = env;
    let is_post = session.req_header().method == http::Method::POST;
    if !is_post {
        return respond::reply(
            session,
            ctx,
            405,
            vec![(header::ALLOW, HeaderValue::from_static("POST"))],
            Bytes::new(),
        )
        .await;
    }
    let clear = clear_cookie(config, &config.identity.cookie_name, ctx.tls);
    let Identity::Session(loaded) = identity else {
        // Nothing to end; still clear whatever cookie there is.
        return redirect(session, ctx, "/.gatehouse/signed_out", vec![clear]).await;
    };
    // The CSRF token comes in the form body (at most 4 KiB is read).
    let body = read_small_body(session, 4096).await;
    let token = body
        .as_deref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|b| query_param(Some(b), "csrf"));
    let valid = token.is_some_and(|t| keys.sealer.open(Purpose::SignOut, &loaded.id, &t).is_some());
    if !valid {
        return respond::error_page(session, ctx, 403, Some("sign-out-token-invalid")).await;
    }
    let sessions = Arc::clone(&auth.sessions);
    let id = loaded.id;
    match auth.run(async move { sessions.delete(&id).await }).await {
        Some(Ok(())) => auth.metrics.sign_outs_total.inc(),
        _ => return respond::error_page(session, ctx, 503, None).await,
    }
    let signed_out = format!("{}/.gatehouse/signed_out", origin.origin);
    let location = match &auth.idp {
        Some(idp) => idp
            .end_session_url(loaded.record.tokens.id_token.as_deref(), &signed_out)
            .await
            .unwrap_or(signed_out),
        None => signed_out,
    };
    redirect(session, ctx, &location, vec![clear]).await
}

async fn read_small_body(session: &mut Session, limit: usize) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = session.read_request_body().await {
        if body.len() + chunk.len() > limit {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

// === helpers ===

/// Whether a programmatic login may send its token to `target`: loopback, or a host on
/// `programmatic_redirect_domain_whitelist`. Only printable ASCII without `\` and without
/// user info: there browsers (WHATWG) and RFC 3986 clients read the same host
/// (`http://127.0.0.1\@evil.example/` is loopback to one and evil.example to the other).
pub(super) fn programmatic_target_allowed(target: &str, whitelist: &[String]) -> bool {
    if !target.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
        return false;
    }
    let Ok(url) = url::Url::parse(target) else {
        return false;
    };
    // `scheme://` spelled out: WHATWG also finds a host (and user info) in `http:/x` and
    // `http:x`; RFC 3986 only after `scheme://`.
    let Some((scheme, after_scheme)) = target.split_once("://") else {
        return false;
    };
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    // `https:///host` is `https://host` to WHATWG and has no host for RFC 3986.
    if !matches!(url.scheme(), "http" | "https")
        || !scheme.eq_ignore_ascii_case(url.scheme())
        || authority.is_empty()
        || authority.contains('@')
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return false;
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) if ip.is_loopback() => true,
        Some(url::Host::Ipv6(ip)) if ip.is_loopback() => true,
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || whitelist
                    .iter()
                    .any(|allowed| d.eq_ignore_ascii_case(allowed))
        }
        _ => false,
    }
}

/// `(origin, path-and-query)` of an absolute URL we built.
pub(super) fn split_origin(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => url.split_at(after_scheme + i),
        None => (url, "/"),
    }
}

/// A same-origin path to redirect to; anything that a browser could read as another host
/// (`//evil`, `/\evil`, control characters), also after one more percent-decoding by
/// whatever reads the path next (`/%2F/evil`, `/%09/evil`), becomes `/`. Canonical paths
/// never carry those encodings, so no legitimate return path loses anything.
pub(super) fn safe_path(path: &str) -> String {
    let path_part = path.split(['?', '#']).next().unwrap_or_default();
    let encoded_bad = path_part.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && std::str::from_utf8(&w[1..])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .is_some_and(|b| b < 0x20 || b == 0x7f || b == b'/' || b == b'\\')
    });
    let bad = !path.starts_with('/')
        || path.starts_with("//")
        || path.starts_with("/\\")
        || path.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'\\')
        || encoded_bad;
    if bad {
        "/".to_owned()
    } else {
        path.to_owned()
    }
}

/// A query parameter, percent-decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn set_cookie(
    config: &Config,
    name: &str,
    value: &str,
    max_age: Option<Duration>,
    tls: bool,
) -> (HeaderName, HeaderValue) {
    let identity = &config.identity;
    let mut c = format!("{name}={value}; Path=/; HttpOnly");
    if let Some(age) = max_age {
        let _ = write!(c, "; Max-Age={}", age.as_secs());
    }
    if let Some(domain) = &identity.cookie_domain {
        let _ = write!(c, "; Domain={domain}");
    }
    c.push_str(match identity.cookie_same_site {
        SameSite::Lax => "; SameSite=Lax",
        SameSite::Strict => "; SameSite=Strict",
        SameSite::None => "; SameSite=None",
    });
    // Non-Secure only on a plain-HTTP listener (which `gatehouse check` warns about).
    if tls || identity.cookie_same_site == SameSite::None {
        c.push_str("; Secure");
    }
    (
        header::SET_COOKIE,
        HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("")),
    )
}

fn clear_cookie(config: &Config, name: &str, tls: bool) -> (HeaderName, HeaderValue) {
    set_cookie(config, name, "", Some(Duration::ZERO), tls)
}

async fn redirect(
    session: &mut Session,
    ctx: &mut RequestCtx,
    location: &str,
    mut headers: Vec<(HeaderName, HeaderValue)>,
) -> pingora_error::Result<()> {
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.push((header::LOCATION, v));
    }
    respond::reply(session, ctx, 302, headers, Bytes::new()).await
}

async fn error_with(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    reason: &str,
    headers: Vec<(HeaderName, HeaderValue)>,
) -> pingora_error::Result<()> {
    respond::error_page_with(session, ctx, status, Some(reason), headers).await
}

async fn json(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    body: &serde_json::Value,
    mut headers: Vec<(HeaderName, HeaderValue)>,
) -> pingora_error::Result<()> {
    headers.push((
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    ));
    respond::reply(session, ctx, status, headers, Bytes::from(body.to_string())).await
}

async fn html(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    body: String,
    mut headers: Vec<(HeaderName, HeaderValue)>,
) -> pingora_error::Result<()> {
    headers.push((
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    ));
    respond::reply(session, ctx, status, headers, Bytes::from(body)).await
}

fn rfc3339(secs: u64) -> String {
    chrono::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(i64::MAX), 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;\
         padding:0 1rem;color:#222}}h1{{font-size:1.4rem}}dt{{font-weight:600}}\
         dd{{margin:0 0 .6rem}}button{{font-size:1rem;padding:.4rem 1rem}}</style></head>\
         <body><h1>{t}</h1>{body}<p style=\"color:#777;font-size:.85rem\">gatehouse</p>\
         </body></html>",
        t = respond::escape(title)
    )
}

/// The user page: who is signed in, until when, and a sign-out button. Never a token.
fn user_page(loaded: &Loaded, csrf: &str) -> String {
    let s = &loaded.record.subject;
    let e = |v: &str| respond::escape(v);
    let groups = if s.groups.is_empty() {
        "<em>none</em>".to_owned()
    } else {
        s.groups
            .iter()
            .map(|g| format!("<li>{}</li>", e(g)))
            .collect::<String>()
    };
    let body = format!(
        "<dl><dt>Name</dt><dd>{name}</dd><dt>Email</dt><dd>{email}{verified}</dd>\
         <dt>User</dt><dd><code>{user}</code></dd><dt>Groups</dt><dd><ul>{groups}</ul></dd>\
         <dt>Session expires</dt><dd>{expires}</dd></dl>\
         <form method=\"post\" action=\"/.gatehouse/sign_out\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\">Sign out</button></form>",
        name = e(s.name.as_deref().unwrap_or("")),
        email = e(s.email.as_deref().unwrap_or("")),
        verified = if s.email_verified {
            ""
        } else {
            " (not verified)"
        },
        user = e(&s.user_id),
        expires = e(&rfc3339(loaded.record.expires_at)),
        csrf = e(csrf),
    );
    page("Signed in", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_return_paths_fall_back_to_root() {
        for bad in [
            "//evil.com",
            "/\\evil.com",
            "/\t/evil.com",
            "/\n/evil.com",
            "/%09/evil.com",
            "/%0a/evil.com",
            "/%2F/evil.com",
            "/%5cevil.com",
            "evil",
            "",
        ] {
            assert_eq!(safe_path(bad), "/", "{bad:?}");
        }
        assert_eq!(safe_path("/app/x?y=1"), "/app/x?y=1");
        assert_eq!(safe_path("/app?next=%2F%2Fx"), "/app?next=%2F%2Fx");
    }

    #[test]
    fn split_origin_of_built_urls() {
        assert_eq!(
            split_origin("http://a.example:8080/x?y"),
            ("http://a.example:8080", "/x?y")
        );
        assert_eq!(
            split_origin("https://a.example"),
            ("https://a.example", "/")
        );
    }

    #[test]
    fn programmatic_targets() {
        let config: Vec<String> = Vec::new();
        for ok in [
            "http://127.0.0.1:5000/cb",
            "http://[::1]:1/",
            "http://localhost:9/x",
        ] {
            assert!(programmatic_target_allowed(ok, &config), "{ok}");
        }
        for bad in [
            "https://evil.example/",
            "http://127.0.0.1.evil.example/",
            "javascript:alert(1)",
            "http://user@127.0.0.1/",
            "http://:pw@127.0.0.1/",
            "http://@127.0.0.1/",
            "http://127.0.0.1\\@evil.example/",
            "http://loc\talhost/",
            "http:/user@127.0.0.1/",
            "http:127.0.0.1/",
            "http:localhost/",
            "http:///localhost/",
            "//127.0.0.1/",
        ] {
            assert!(!programmatic_target_allowed(bad, &config), "{bad}");
        }
    }

    #[test]
    fn strips_only_our_cookies() {
        let v = HeaderValue::from_static("a=1; _gatehouse=xyz; _gatehouse_login=q; b=2");
        assert_eq!(
            strip_our_cookies(&v, "_gatehouse"),
            Some(Some(HeaderValue::from_static("a=1; b=2")))
        );
        let only = HeaderValue::from_static("_gatehouse=xyz");
        assert_eq!(strip_our_cookies(&only, "_gatehouse"), Some(None));
        let none = HeaderValue::from_static("a=1");
        assert_eq!(strip_our_cookies(&none, "_gatehouse"), None);
        // A neighbour with raw UTF-8 (as browsers send it) does not hide ours.
        let utf8 = HeaderValue::from_bytes("pref=café; _gatehouse=xyz".as_bytes()).unwrap();
        assert_eq!(
            strip_our_cookies(&utf8, "_gatehouse"),
            Some(Some(
                HeaderValue::from_bytes("pref=café".as_bytes()).unwrap()
            ))
        );
        let padded = HeaderValue::from_static("a=1;  _gatehouse =xyz ;");
        assert_eq!(
            strip_our_cookies(&padded, "_gatehouse"),
            Some(Some(HeaderValue::from_static("a=1")))
        );
        let trailing = HeaderValue::from_static("_gatehouse=xyz;");
        assert_eq!(strip_our_cookies(&trailing, "_gatehouse"), Some(None));
    }
}
