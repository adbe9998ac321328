//! The stack every adversarial case runs against.
//!
//! One real IdP, one gatehouse and one echo upstream per route, with real sessions for
//! `alice` (group `admins`) and `bob` (not): started once per file (kind of attack) and
//! shared by all its cases, which run one after another so that "what the upstreams saw
//! since the case began" is exact.

use std::{sync::Arc, time::Duration};

use serde_json::Value;

use crate::redis_server::RedisServer;
use crate::support::{
    free_addr,
    idp::{Browser, ClientSpec, Idp},
    raw::exchange,
    upstream::header_values,
    Gatehouse, RawResponse, Upstream,
};

pub const CLIENT_ID: &str = "gatehouse-adversarial";
pub const CLIENT_SECRET: &str = "adversarial-secret";
const COOKIE_SECRET: &str = "YWR2ZXJzYXJpYWwtY29va2llLXNlY3JldC0zMmJ5dGU=";
/// The session cookie's name (the default).
pub const COOKIE: &str = "_gatehouse";
/// A host name routed to the `named` upstream (group `admins`), for tests on host spelling.
pub const NAMED_HOST: &str = "app.localtest";

/// The route kinds every per-kind case runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/open/*`: public, no credentials.
    Public,
    /// `/admin/*`: group `admins`, alice's session cookie.
    Group,
    /// `/ws/*`: group `admins` with `allow_websockets`, alice's cookie, a WebSocket handshake.
    Ws,
}

/// Upstream names, in the order of `Stack::ups`.
pub const UPSTREAMS: [&str; 8] = [
    "open", "admin", "ws", "vault", "nohdr", "api", "root", "named",
];

/// What to start.
#[derive(Default, Clone, Copy)]
pub struct Options {
    /// Sessions in a real Redis (to count store commands) instead of memory.
    pub redis: bool,
    /// `timeout_idle` in seconds (gatehouse's default, 300 s, if `None`).
    pub timeout_idle: Option<u64>,
}

pub struct Stack {
    pub idp: Idp,
    pub gh: Gatehouse,
    /// `127.0.0.1:PORT`, the Host of the main routes.
    pub host: String,
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    ups: Vec<Upstream>,
    /// alice's session cookie value (groups admins, devs).
    pub alice: String,
    /// bob's session cookie value (group devs).
    pub bob: String,
    pub redis: Option<RedisServer>,
}

/// The count of recorded requests per upstream at one moment.
pub struct Mark(Vec<usize>);

/// One request an upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub upstream: &'static str,
    pub req: Value,
}

// === impl Kind ===

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Public, Kind::Group, Kind::Ws];

    /// The route's path prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Public => "/open",
            Kind::Group => "/admin",
            Kind::Ws => "/ws",
        }
    }

    /// The upstream behind the route.
    pub fn upstream(self) -> &'static str {
        match self {
            Kind::Public => "open",
            Kind::Group => "admin",
            Kind::Ws => "ws",
        }
    }

    /// The status of an allowed HTTP/1.1 request (the WebSocket route switches protocols).
    pub fn ok(self) -> u16 {
        match self {
            Kind::Ws => 101,
            _ => 200,
        }
    }

    /// Whether an allowed request carries a session.
    pub fn signed_in(self) -> bool {
        self != Kind::Public
    }
}

// === impl Seen ===

impl Seen {
    /// The request target as received.
    pub fn path(&self) -> &str {
        self.req["path"].as_str().unwrap_or_default()
    }

    /// Every value of header `name`.
    pub fn header(&self, name: &str) -> Vec<String> {
        header_values(&self.req, name)
    }

    /// The raw head (request line and header lines) as received.
    pub fn raw_head(&self) -> &str {
        self.req["raw_head"].as_str().unwrap_or_default()
    }
}

// === impl Stack ===

impl Stack {
    /// Starts the IdP, the upstreams and gatehouse, and signs alice and bob in.
    pub async fn start(options: Options) -> Arc<Stack> {
        let addr = free_addr();
        let origin = format!("http://{addr}");
        let idp = Idp::start(
            &ClientSpec {
                client_id: CLIENT_ID,
                client_secret: CLIENT_SECRET,
                origins: std::slice::from_ref(&origin),
            },
            &[],
        );
        let mut ups = Vec::new();
        for name in UPSTREAMS {
            ups.push(Upstream::start(name).await);
        }
        let url = |name: &str| ups[UPSTREAMS.iter().position(|n| *n == name).unwrap()].url();
        let redis = if options.redis {
            Some(RedisServer::start().await)
        } else {
            None
        };
        let store = redis
            .as_ref()
            .map(|r| format!("session_store: {}\n", r.url()))
            .unwrap_or_default();
        let port = addr.port();
        let idle = options
            .timeout_idle
            .map(|t| format!("timeout_idle: {t}s\n"))
            .unwrap_or_default();
        let config = format!(
            "insecure_server: true
{idle}request_header_timeout: 1s
idp_provider: oidc
idp_provider_url: {issuer}
idp_client_id: {CLIENT_ID}
idp_client_secret: {CLIENT_SECRET}
cookie_secret: {COOKIE_SECRET}
pass_identity_headers: true
jwt_claims_headers:
  X-User-Email: email
  X-User-Groups: groups
{store}routes:
  - from: {origin}
    prefix: /open
    to: {open}
    allow_public_unauthenticated_access: true
  - from: {origin}
    prefix: /admin
    to: {admin}
    allowed_groups: [admins]
  - from: {origin}
    prefix: /ws
    to: {ws}
    allowed_groups: [admins]
    allow_websockets: true
  - from: {origin}
    prefix: /vault
    to: {vault}
    allowed_groups: [vault-keepers]
  - from: {origin}
    prefix: /nohdr
    to: {nohdr}
    allowed_groups: [admins]
    pass_identity_headers: false
  - from: {origin}
    prefix: /ip
    to: {vault}
    policy:
      allow:
        and:
          - source_ip: 10.0.0.0/8
  - from: {origin}
    regex: \"^/api/.*/status\"
    to: {api}
    allow_public_unauthenticated_access: true
  - from: {origin}
    path: /teapot
    response: {{status: 418, body: \"short and stout\"}}
    allow_public_unauthenticated_access: true
  - from: {origin}
    prefix: /moved
    redirect: {{path_redirect: /open/landing}}
    allow_public_unauthenticated_access: true
  - from: http://{NAMED_HOST}:{port}
    to: {named}
    allowed_groups: [admins]
  - from: {origin}
    to: {root}
    allow_any_authenticated_user: true
",
            issuer = idp.issuer,
            open = url("open"),
            admin = url("admin"),
            ws = url("ws"),
            vault = url("vault"),
            nohdr = url("nohdr"),
            api = url("api"),
            named = url("named"),
            root = url("root"),
        );
        let gh = Gatehouse::start_at(addr, &config).await;
        let (alice, bob) = tokio::join!(login(&origin, "alice"), login(&origin, "bob"));
        Arc::new(Stack {
            idp,
            gh,
            host: addr.to_string(),
            origin,
            ups,
            alice,
            bob,
            redis,
        })
    }

    /// The upstream called `name`.
    pub fn upstream(&self, name: &str) -> &Upstream {
        &self.ups[UPSTREAMS
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("no upstream {name}"))]
    }

    /// Where the upstreams are now.
    pub fn mark(&self) -> Mark {
        Mark(self.ups.iter().map(Upstream::recorded).collect())
    }

    /// Every request any upstream recorded after `mark`.
    pub fn since(&self, mark: &Mark) -> Vec<Seen> {
        self.ups
            .iter()
            .zip(UPSTREAMS)
            .zip(&mark.0)
            .flat_map(|((up, name), &m)| {
                up.requests_since(m).into_iter().map(move |req| Seen {
                    upstream: name,
                    req,
                })
            })
            .collect()
    }

    /// [`Stack::since`], after letting anything still in flight arrive: a negative answer
    /// ("nothing reached an upstream") can only be given after a pause.
    pub async fn settled_since(&self, mark: &Mark) -> Vec<Seen> {
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.since(mark)
    }

    /// Header lines that make a request of `kind` allowed: the session cookie and, for the
    /// WebSocket route, the handshake.
    pub fn allowed(&self, kind: Kind) -> String {
        match kind {
            Kind::Public => String::new(),
            Kind::Group => format!("Cookie: {COOKIE}={}\r\n", self.alice),
            Kind::Ws => format!(
                "Cookie: {COOKIE}={}\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
                self.alice
            ),
        }
    }

    /// A raw HTTP/1.1 request of `kind` (allowed credentials, Host, JSON Accept), with extra
    /// header lines, closing the connection after the response (the WebSocket route keeps
    /// `Connection: Upgrade`).
    pub fn h1(&self, kind: Kind, method: &str, target: &str, extra: &str) -> Vec<u8> {
        let connection = if kind == Kind::Ws { "Upgrade" } else { "close" };
        format!(
            "{method} {target} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n{creds}{extra}Connection: {connection}\r\n\r\n",
            host = self.host,
            creds = self.allowed(kind),
        )
        .into_bytes()
    }

    /// A raw anonymous HTTP/1.1 request (JSON Accept, `Connection: close`).
    pub fn anon(&self, method: &str, target: &str, extra: &str) -> Vec<u8> {
        format!(
            "{method} {target} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n{extra}Connection: close\r\n\r\n",
            host = self.host,
        )
        .into_bytes()
    }

    /// Sends `bytes` on a fresh connection and reads one response.
    pub async fn send(&self, bytes: &[u8]) -> RawResponse {
        let tcp = tokio::net::TcpStream::connect(self.gh.addr).await.unwrap();
        exchange(tcp, bytes.to_vec())
            .await
            .unwrap_or_else(|e| panic!("exchange {:?}: {e}", lossy(bytes)))
    }

    /// Sends `bytes` and reads one response, or the I/O error (a close is an answer too).
    pub async fn try_send(&self, bytes: &[u8]) -> std::io::Result<RawResponse> {
        let tcp = tokio::net::TcpStream::connect(self.gh.addr).await?;
        exchange(tcp, bytes.to_vec()).await
    }
}

/// A login started by hand: gatehouse's 302 to the IdP and its login-state cookie.
pub struct LoginStart {
    /// The login-state cookie's value.
    pub state_cookie: String,
    /// The IdP authorization URL (`Location`).
    pub authorize: String,
}

impl Stack {
    /// Sends a browser request for `target` (with `extra` header lines) that needs a login;
    /// returns the redirect to the IdP and the login-state cookie.
    pub async fn start_login(&self, method: &str, target: &str, extra: &str) -> LoginStart {
        let req = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nAccept: text/html\r\n{extra}Connection: close\r\n\r\n",
            self.host
        );
        let response = self.send(req.as_bytes()).await;
        assert_eq!(response.status, 302, "{target}: {}", response.dump());
        let authorize = response.header("location").unwrap_or_default().to_owned();
        assert!(
            authorize.starts_with(&self.idp.issuer),
            "{}",
            response.dump()
        );
        let state_cookie = response
            .headers_named("set-cookie")
            .iter()
            .find_map(|c| c.strip_prefix(&format!("{COOKIE}_login=")))
            .and_then(|c| c.split(';').next())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| panic!("no login-state cookie:\n{}", response.dump()))
            .to_owned();
        LoginStart {
            state_cookie,
            authorize,
        }
    }

    /// Signs `user` in at the IdP from `authorize` in a fresh browser that does not hold the
    /// login-state cookie, so gatehouse refuses the callback and its code stays unspent;
    /// returns the callback URL (with code and state) for the test to replay.
    pub async fn callback_url(&self, authorize: &str, user: &str) -> String {
        let browser = Browser::new();
        let page = browser.login(authorize, user, user).await;
        let callback = format!("{}/oauth2/callback?", self.origin);
        assert!(
            page.url.starts_with(&callback) && page.status == 400,
            "expected gatehouse to refuse a callback without login state: {page:#?}"
        );
        page.url
    }

    /// GETs `url` (on this origin) with the login-state cookie `state` (if any).
    pub async fn get_with_state(&self, url: &str, state: Option<&str>) -> RawResponse {
        let path = url.strip_prefix(&self.origin).unwrap_or(url);
        let cookie = state
            .map(|v| format!("Cookie: {COOKIE}_login={v}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/html\r\n{cookie}Connection: close\r\n\r\n",
            self.host
        );
        self.send(req.as_bytes()).await
    }

    /// How many times the IdP's token endpoint has been called.
    pub async fn token_requests(&self) -> u64 {
        self.idp.get_json("/__test/stats").await["token_requests"]
            .as_u64()
            .unwrap_or_default()
    }
}

/// The session cookie a response sets, if it sets a non-empty one.
pub fn session_set(r: &RawResponse) -> Option<String> {
    r.headers_named("set-cookie")
        .iter()
        .find_map(|c| c.strip_prefix(&format!("{COOKIE}=")))
        .and_then(|c| c.split(';').next())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Signs `user` in through the IdP; returns the session cookie's value.
pub async fn login(origin: &str, user: &str) -> String {
    let browser = Browser::new();
    let page = browser.login(&format!("{origin}/"), user, user).await;
    assert_eq!(page.status, 200, "{user} login: {page:#?}");
    browser
        .cookie(origin, COOKIE)
        .unwrap_or_else(|| panic!("{user}: no session cookie after login"))
}

/// The bytes as text, for messages.
pub fn lossy(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    if bytes.len() > 300 {
        format!("{s}… ({} bytes)", bytes.len())
    } else {
        s
    }
}

// === assertions on what the upstreams saw ===

/// Nothing reached any upstream.
#[track_caller]
pub fn assert_nothing(seen: &[Seen], what: &str) {
    assert!(
        seen.is_empty(),
        "{what}: expected no upstream request, got {}",
        describe(seen)
    );
}

/// Forged trailer fields (`forged` values, `Host: evil.example`, `X-Forwarded-For:
/// 10.0.0.1`) reached the upstream neither as headers nor as trailers, and the 5-byte body did.
#[track_caller]
pub fn assert_trailers_dropped(one: &Seen) {
    let trailers = one.req["trailers"].to_string();
    assert!(
        !one.raw_head().contains("forged") && !trailers.contains("forged"),
        "trailer fields reached the upstream: {} {trailers}",
        one.raw_head()
    );
    assert!(
        !trailers.contains("evil.example") && !trailers.contains("10.0.0.1"),
        "{trailers}"
    );
    assert_eq!(one.req["body_len"], 5, "{}", one.raw_head());
}

/// Exactly one request reached an upstream, and it was `upstream`; returns it.
#[track_caller]
pub fn assert_one(seen: &[Seen], upstream: &str, what: &str) -> Seen {
    assert!(
        seen.len() == 1 && seen[0].upstream == upstream,
        "{what}: expected exactly one request at {upstream}, got {}",
        describe(seen)
    );
    seen[0].clone()
}

/// The invariant of principle 1: every request an upstream received was routed on the path
/// it received (nothing under another route's prefix, nothing at all at `vault`).
#[track_caller]
pub fn assert_consistent(seen: &[Seen], what: &str) {
    for s in seen {
        let path = s.path().split('?').next().unwrap_or_default();
        let under = |p: &str| path == p || path.starts_with(&format!("{p}/"));
        let ok = match s.upstream {
            "vault" => false,
            "open" => under("/open"),
            "admin" => under("/admin"),
            "ws" => under("/ws"),
            "nohdr" => under("/nohdr"),
            "api" => path.starts_with("/api/") && path.contains("/status"),
            "named" => true,
            _ => !["/open", "/admin", "/ws", "/vault", "/nohdr", "/ip"]
                .iter()
                .any(|p| under(p)),
        };
        assert!(
            ok,
            "{what}: {} received {:?}, which is not its route's",
            s.upstream,
            s.path()
        );
    }
}

/// A one-line-per-request summary.
pub fn describe(seen: &[Seen]) -> String {
    if seen.is_empty() {
        return "nothing".into();
    }
    seen.iter()
        .map(|s| format!("\n  {} ← {:?}", s.upstream, s.req["request_line"]))
        .collect()
}
