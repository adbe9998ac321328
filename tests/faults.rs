//! Faults under a steady stream of requests (SECURITY.md "Faults", principle 6): Redis
//! refused, frozen, slow, stalled or answering garbage; garbled session records; the IdP
//! down at start and failing during refreshes; upstreams refusing, resetting, hanging and
//! breaking off mid-body. Each time: nothing is allowed because something failed, sessions
//! survive (no mass logout), failures are gatehouse's own page with the right status, and
//! service comes back by itself. Each fault prints a measured line:
//! `FAULT name: requests=…, failed=…, status_counts={…}, recovery_ms=…, max_latency_ms=…`
//! (over the requests of valid sessions; `failed` = not 200).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "../src/session/store/redis_server.rs"]
#[allow(dead_code, unreachable_pub)]
mod redis_server;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use redis_server::RedisServer;
use support::{
    free_addr, free_port,
    idp::{hidden_input, Browser, ClientSpec, Idp},
    load::{Lane, Load, Outcome, Report},
    tcp_proxy::{ProxyMode, TcpProxy},
    upstream::Fault,
    Gatehouse, Upstream,
};

const CLIENT_ID: &str = "gatehouse-faults";
const CLIENT_SECRET: &str = "faults-secret";
const COOKIE_SECRET: &str = "ZmF1bHRzLWNvb2tpZS1zZWNyZXQtMzItYnl0ZXMtb2s=";

/// The store's operation timeout (gatehouse's default): a request that needs the store is
/// answered within it, plus this much slack for a loaded test machine.
const STORE_TIMEOUT: Duration = Duration::from_secs(1);
const SLACK: Duration = Duration::from_millis(1500);
/// Recovery must take less than this after the fault ends.
const RECOVERY_BOUND: Duration = Duration::from_secs(5);
/// Steady traffic before a fault starts, and after it ends.
const BEFORE: Duration = Duration::from_millis(1500);
const AFTER: Duration = Duration::from_secs(6);

/// `/public` for anyone (its own upstream), everything else for signed-in users with a 1 s
/// upstream timeout.
fn config(issuer: &str, store: &str, origin: &str, app: &Upstream, public: &Upstream) -> String {
    format!(
        "insecure_server: true
idp_provider_url: {issuer}
idp_client_id: {CLIENT_ID}
idp_client_secret: {CLIENT_SECRET}
cookie_secret: {COOKIE_SECRET}
session_store: {store}
routes:
  - from: {origin}
    prefix: /public
    to: {public}
    allow_public_unauthenticated_access: true
  - from: {origin}
    prefix: /
    to: {app}
    allow_any_authenticated_user: true
    timeout: 1s
",
        app = app.url(),
        public = public.url(),
    )
}

fn idp_for(origins: &[String], extra: &[&str]) -> Idp {
    Idp::start(
        &ClientSpec {
            client_id: CLIENT_ID,
            client_secret: CLIENT_SECRET,
            origins,
        },
        extra,
    )
}

/// Signs `user` in at `origin` (through the IdP's forms); the `Cookie` header value.
async fn login(origin: &str, user: &str) -> String {
    let b = Browser::new();
    let page = b.login(&format!("{origin}/app"), user, user).await;
    assert_eq!(page.status, 200, "login of {user} at {origin}: {page:#?}");
    format!(
        "_gatehouse={}",
        b.cookie(origin, "_gatehouse").expect("session cookie")
    )
}

/// `n` sessions signed in at `origin` (four logins at a time).
async fn logins(origin: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let batch = (n - out.len()).min(4);
        let users = ["alice", "bob", "carol", "alice"];
        let done =
            futures_util::future::join_all(users[..batch].iter().map(|u| login(origin, u))).await;
        out.extend(done);
    }
    out
}

/// The cookie of a session that was signed out at `origin`.
async fn signed_out_cookie(origin: &str) -> String {
    let b = Browser::new();
    assert_eq!(
        b.login(&format!("{origin}/app"), "bob", "bob").await.status,
        200
    );
    let cookie = format!("_gatehouse={}", b.cookie(origin, "_gatehouse").unwrap());
    let page = b.open(&format!("{origin}/.gatehouse/")).await;
    let csrf = hidden_input(&page.body, "csrf").expect("csrf");
    let r = b
        .post_form(&format!("{origin}/.gatehouse/sign_out"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status(), 302, "sign-out");
    cookie
}

/// GET `url` with `cookie` as an API client; the status.
async fn status_of(url: &str, cookie: &str) -> u16 {
    support::http_client_builder()
        .build()
        .unwrap()
        .get(url)
        .header("cookie", cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

// ---------------------------------------------------------------------------------------
// Redis

/// Two instances on one persistent Redis: `a` (direct) is where people sign in; `b`, the
/// instance under test, reaches Redis through a fault-injecting proxy.
struct RedisStack {
    _idp: Idp,
    redis: RedisServer,
    proxy: TcpProxy,
    _app: Upstream,
    _public: Upstream,
    a: Gatehouse,
    b: Gatehouse,
    origin_a: String,
    origin_b: String,
}

/// What happens to Redis.
#[derive(Debug, Clone, Copy)]
enum RedisFault {
    /// The server is killed (connections refused), then started again on its port with its
    /// data (append-only file).
    Refused,
    /// The server is frozen (SIGSTOP): connections stay open, nothing answers.
    Paused,
    /// The proxy in front of it misbehaves.
    Proxy(ProxyMode),
}

impl RedisStack {
    async fn start() -> RedisStack {
        let redis = RedisServer::start_persistent().await;
        let proxy = TcpProxy::start(SocketAddr::from(([127, 0, 0, 1], redis.port()))).await;
        let (addr_a, addr_b) = (free_addr(), free_addr());
        let (origin_a, origin_b) = (format!("http://{addr_a}"), format!("http://{addr_b}"));
        let idp = idp_for(&[origin_a.clone(), origin_b.clone()], &[]);
        let app = Upstream::start("app").await;
        let public = Upstream::start("public").await;
        let a = Gatehouse::start_at(
            addr_a,
            &config(&idp.issuer, &redis.url(), &origin_a, &app, &public),
        )
        .await;
        let b = Gatehouse::start_at(
            addr_b,
            &config(&idp.issuer, &proxy.redis_url(), &origin_b, &app, &public),
        )
        .await;
        RedisStack {
            _idp: idp,
            redis,
            proxy,
            _app: app,
            _public: public,
            a,
            b,
            origin_a,
            origin_b,
        }
    }

    fn break_it(&mut self, fault: RedisFault) {
        match fault {
            RedisFault::Refused => self.redis.stop(),
            RedisFault::Paused => self.redis.pause(),
            RedisFault::Proxy(mode) => self.proxy.set_mode(mode),
        }
    }

    async fn mend(&mut self, fault: RedisFault) {
        match fault {
            RedisFault::Refused => self.redis.restart().await,
            RedisFault::Paused => self.redis.resume(),
            RedisFault::Proxy(_) => self.proxy.set_mode(ProxyMode::Pass),
        }
    }

    /// Redis keys of session records.
    async fn session_keys(&self) -> Vec<Vec<u8>> {
        match self.redis.command(&[b"KEYS", b"gatehouse:s:*"]).await {
            redis::Value::Array(keys) => keys
                .into_iter()
                .map(|k| match k {
                    redis::Value::BulkString(b) => b,
                    other => panic!("key {other:?}"),
                })
                .collect(),
            other => panic!("KEYS: {other:?}"),
        }
    }

    /// Signs `user` in at A; the cookie and the Redis key of its record.
    async fn login_with_key(&self, user: &str) -> (String, Vec<u8>) {
        let before = self.session_keys().await;
        let cookie = login(&self.origin_a, user).await;
        let mut new: Vec<Vec<u8>> = self
            .session_keys()
            .await
            .into_iter()
            .filter(|k| !before.contains(k))
            .collect();
        assert_eq!(new.len(), 1, "one new session record");
        (cookie, new.pop().unwrap())
    }

    /// Tells every instance that the session stored under `key` changed (as an instance
    /// that wrote it would).
    async fn announce_change(&self, key: &[u8]) {
        let hex_id = &key[b"gatehouse:s:".len()..];
        let id = hex::decode(hex_id).unwrap();
        self.redis
            .command(&[b"PUBLISH", b"gatehouse:invalidate", &id])
            .await;
    }
}

/// Lanes of valid sessions (all must stay signed in).
const SESSIONS: [&str; 4] = ["warm-json", "warm-html", "cold-json", "cold-html"];

/// Runs `fault` for `length` under steady traffic on B: sessions B has served before
/// ("warm", cached), sessions B has never seen ("cold", so each needs the store), the public
/// route, no cookie, and a signed-out session.
async fn redis_fault(s: &mut RedisStack, name: &str, fault: RedisFault, length: Duration) {
    let app = format!("{}/app", s.origin_b);
    let public = format!("{}/public/x", s.origin_b);
    let warm = logins(&s.origin_a, 2).await;
    for c in &warm {
        assert_eq!(status_of(&app, c).await, 200, "{}", s.b.log());
    }
    let cold = logins(&s.origin_a, 8).await;
    let signed_out = signed_out_cookie(&s.origin_a).await;

    let steady = Load::start(
        vec![
            Lane::json("warm-json", &app, Some(&warm[0])),
            Lane::html("warm-html", &app, Some(&warm[1])),
            Lane::json("public", &public, None),
            Lane::json("anonymous", &app, None),
            Lane::json("signed-out", &app, Some(&signed_out)),
        ],
        &[],
    );
    tokio::time::sleep(BEFORE).await;
    s.break_it(fault);
    // Sessions B has not seen yet start with the fault (before it they would be cached).
    let cold_load = Load::start(
        vec![
            Lane::json("cold-json", &app, None).cycling(&cold[..4]),
            Lane::html("cold-html", &app, None).cycling(&cold[4..]),
        ],
        &[],
    );
    let fault_started = steady.now();
    tokio::time::sleep(length).await;
    s.mend(fault).await;
    let (restored, cold_restored) = (steady.now(), cold_load.now());
    tokio::time::sleep(AFTER).await;
    let cold_report = cold_load.stop().await;
    let steady_report = steady.stop().await;

    let log = || format!("{}\n{}", steady_report.summary(&SESSIONS[..2]), s.b.log());
    // Cached sessions: served throughout.
    steady_report.assert_lane("warm-json", &[200], false);
    steady_report.assert_lane("warm-html", &[200], false);
    // Sessions that need the store: 503 (gatehouse's page, cookie kept) or 200, never sent
    // to sign in.
    cold_report.assert_lane("cold-json", &[200, 503], false);
    cold_report.assert_lane("cold-html", &[200, 503], false);
    // The rest is unaffected, and nothing is ever allowed because of the fault.
    steady_report.assert_lane("public", &[200], false);
    steady_report.assert_lane("anonymous", &[401], false);
    steady_report.assert_lane("signed-out", &[401, 503], true);

    let cold_lanes = ["cold-json", "cold-html"];
    let recovery = cold_report.recovery(&cold_lanes, &[200], cold_restored);
    assert!(
        recovery < RECOVERY_BOUND,
        "{name}: recovery took {recovery:?}\n{}",
        log()
    );
    cold_report.assert_ok_after(&cold_lanes, &[200], cold_restored + recovery);
    let warm_max = steady_report.max_latency(&["warm-json", "warm-html"]);
    // Every answer, even a 503, within the store timeout.
    for max in [
        steady_report.max_latency(&["warm-json", "warm-html"]),
        cold_report.max_latency(&cold_lanes),
    ] {
        assert!(
            max < STORE_TIMEOUT + SLACK,
            "{name}: a request took {max:?}\n{}",
            log()
        );
    }
    // No mass logout: every session still works.
    for c in warm.iter().chain(&cold) {
        assert_eq!(status_of(&app, c).await, 200, "{name}: a session was lost");
    }
    let merged = Report::merge(steady_report, cold_report);
    merged.print_fault(name, &SESSIONS, &[200], recovery);
    println!(
        "      {name}: fault {:.1?}..{:.1?}; cached sessions max_latency_ms={}; {}",
        fault_started,
        restored,
        warm_max.as_millis(),
        merged.summary(&["public", "anonymous", "signed-out"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_refused_then_restarted() {
    let mut s = RedisStack::start().await;
    // Long enough for the invalidation subscription to be lost and cached sessions to go
    // past their short TTL (5 s): they are then re-read, fail, and still served.
    redis_fault(
        &mut s,
        "redis-refused",
        RedisFault::Refused,
        Duration::from_secs(7),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused() {
    let mut s = RedisStack::start().await;
    redis_fault(
        &mut s,
        "redis-paused",
        RedisFault::Paused,
        Duration::from_secs(7),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_slow_stalled_and_garbled() {
    let mut s = RedisStack::start().await;
    // 300 ms round trips: slower, still within the store timeout.
    redis_fault(
        &mut s,
        "redis-slow-300ms",
        RedisFault::Proxy(ProxyMode::Delay(Duration::from_millis(150))),
        Duration::from_secs(3),
    )
    .await;
    // 1.5 s round trips: past the store timeout.
    redis_fault(
        &mut s,
        "redis-slow-1500ms",
        RedisFault::Proxy(ProxyMode::Delay(Duration::from_millis(750))),
        Duration::from_secs(3),
    )
    .await;
    // Everything in flight stops mid-traffic.
    redis_fault(
        &mut s,
        "redis-stalled",
        RedisFault::Proxy(ProxyMode::Stall),
        Duration::from_secs(3),
    )
    .await;
    // Answers that are not RESP.
    redis_fault(
        &mut s,
        "redis-garbage-answers",
        RedisFault::Proxy(ProxyMode::Garbage),
        Duration::from_secs(3),
    )
    .await;
}

/// A record that is not a session (junk bytes, or a value of another Redis type) is no
/// session: that user signs in again (401 / 302), nobody else notices, and it is never an
/// error that lets anyone through or locks the user out with 503s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_session_records_are_signed_out_and_others_unaffected() {
    let s = RedisStack::start().await;
    let app = format!("{}/app", s.origin_b);
    let (junk, junk_key) = s.login_with_key("alice").await;
    let (wrong_type, wrong_type_key) = s.login_with_key("alice").await;
    let (control, _) = s.login_with_key("bob").await;
    for c in [&junk, &wrong_type, &control] {
        assert_eq!(status_of(&app, c).await, 200);
    }
    let load = Load::start(
        vec![
            Lane::json("junk-json", &app, Some(&junk)),
            Lane::html("junk-html", &app, Some(&junk)),
            Lane::json("wrong-type-json", &app, Some(&wrong_type)),
            Lane::html("wrong-type-html", &app, Some(&wrong_type)),
            Lane::json("control", &app, Some(&control)),
        ],
        &[],
    );
    tokio::time::sleep(BEFORE).await;
    s.redis
        .command(&[
            b"SET",
            &junk_key,
            b"\x00\xffnot a sealed record",
            b"KEEPTTL",
        ])
        .await;
    s.announce_change(&junk_key).await;
    s.redis.command(&[b"DEL", &wrong_type_key]).await;
    s.redis
        .command(&[b"HSET", &wrong_type_key, b"field", b"value"])
        .await;
    s.announce_change(&wrong_type_key).await;
    let garbled = load.now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = load.stop().await;

    report.assert_lane("control", &[200], false);
    for lane in ["junk", "wrong-type"] {
        let (json, html) = (format!("{lane}-json"), format!("{lane}-html"));
        report.assert_lane(&json, &[200, 401], false);
        report.assert_lane(&html, &[200, 302], true);
        // Signed out within the invalidation delay, and from then on never allowed.
        let settle = garbled + Duration::from_millis(500);
        report.assert_ok_after(&[&json], &[401], settle);
        report.assert_ok_after(&[&html], &[302], settle);
    }
    let lanes = [
        "junk-json",
        "junk-html",
        "wrong-type-json",
        "wrong-type-html",
        "control",
    ];
    report.print_fault(
        "redis-garbled-record",
        &lanes,
        &[200, 302, 401],
        Duration::ZERO,
    );
    println!("      {}", report.summary(&lanes));
    // The user signs in again and is served.
    let again = login(&s.origin_b, "alice").await;
    assert_eq!(status_of(&app, &again).await, 200);
    drop(s.a);
}

// ---------------------------------------------------------------------------------------
// Identity provider

/// The value of `gatehouse_session_refreshes_total{result=…}`.
async fn refreshes(gh: &Gatehouse, result: &str) -> u64 {
    let m = gh.admin_get("/metrics").await;
    let needle = format!("gatehouse_session_refreshes_total{{result=\"{result}\"}}");
    String::from_utf8_lossy(&m.body)
        .lines()
        .find(|l| l.starts_with(&needle))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_down_at_start_and_failing_during_refreshes() {
    let addr = free_addr();
    let origin = format!("http://{addr}");
    let idp_port = free_port();
    let issuer = format!("http://127.0.0.2:{idp_port}");
    let app_up = Upstream::start("app").await;
    let public_up = Upstream::start("public").await;
    let gh = Gatehouse::start_at(
        addr,
        &config(&issuer, "memory", &origin, &app_up, &public_up),
    )
    .await;
    let app = format!("{origin}/app");
    let public = format!("{origin}/public/x");

    // Down at start: gatehouse serves the public route; sign-in gets the retry page.
    let load = Load::start(
        vec![
            Lane::json("public", &public, None),
            Lane::json("anonymous", &app, None),
            Lane::html("sign-in", &app, None),
        ],
        &[],
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Tokens shorter than the refresh margin: every session is refreshed every 5 s.
    let port = idp_port.to_string();
    let idp = idp_for(
        std::slice::from_ref(&origin),
        &[
            "--port",
            &port,
            "--access-ttl",
            "20",
            "--id-token-ttl",
            "20",
        ],
    );
    let restored = load.now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let report = load.stop().await;
    report.assert_lane("public", &[200], false);
    report.assert_lane("anonymous", &[401], false);
    report.assert_lane("sign-in", &[302, 503], true);
    let recovery = report.recovery(&["sign-in"], &[302], restored);
    assert!(
        recovery < RECOVERY_BOUND,
        "sign-in recovered after {recovery:?}"
    );
    report.assert_ok_after(&["sign-in"], &[302], restored + recovery);
    assert!(
        report.status_counts(&["sign-in"]).contains_key("503"),
        "the IdP was down, sign-in must have said so"
    );
    report.print_fault("idp-down-at-start", &["sign-in"], &[302], recovery);

    // During refreshes: the token endpoint fails, hangs, the IdP freezes, the IdP dies.
    let alice = login(&origin, "alice").await;
    let bob = login(&origin, "bob").await;
    type Step = (&'static str, serde_json::Value);
    let phases: [(&str, Option<Step>); 5] = [
        (
            "idp-refresh-500",
            Some((
                "500",
                serde_json::json!({"mode": "500", "grant_type": "refresh_token"}),
            )),
        ),
        (
            "idp-refresh-html",
            Some((
                "html",
                serde_json::json!({"mode": "html", "grant_type": "refresh_token"}),
            )),
        ),
        (
            "idp-refresh-hang",
            Some((
                "hang",
                serde_json::json!({"mode": "hang", "grant_type": "refresh_token"}),
            )),
        ),
        ("idp-paused", None),
        ("idp-killed", None),
    ];
    let mut idp = Some(idp);
    for (name, control) in phases {
        let load = Load::start(
            vec![
                Lane::json("alice", &app, Some(&alice)),
                Lane::html("bob", &app, Some(&bob)),
                Lane::json("public", &public, None),
                Lane::json("anonymous", &app, None),
            ],
            &[],
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let failures_before = refreshes(&gh, "failure").await;
        let the_idp = idp.as_ref().unwrap();
        match (&control, name) {
            (Some((_, body)), _) => {
                the_idp.control("/__test/token-failure", body.clone()).await;
            }
            (None, "idp-paused") => the_idp.signal("STOP"),
            _ => drop(idp.take()),
        }
        // Longer than the refresh interval: every session tries at least once.
        tokio::time::sleep(Duration::from_millis(5500)).await;
        let failures_during = refreshes(&gh, "failure").await - failures_before;
        let successes_before = refreshes(&gh, "success").await;
        match (&control, name) {
            (Some(_), _) => {
                idp.as_ref()
                    .unwrap()
                    .control("/__test/token-failure", serde_json::json!({"mode": "off"}))
                    .await;
            }
            (None, "idp-paused") => idp.as_ref().unwrap().signal("CONT"),
            _ => {}
        }
        let restored = Instant::now();
        // Refreshing works again (the killed IdP stays dead: nothing to recover to).
        let refresh_recovery = if idp.is_some() {
            let back = support::poll_until(Duration::from_secs(12), || async {
                (refreshes(&gh, "success").await > successes_before).then_some(())
            })
            .await;
            assert!(
                back.is_some(),
                "{name}: refreshes never succeeded again\n{}",
                gh.log()
            );
            restored.elapsed()
        } else {
            Duration::ZERO
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let report = load.stop().await;
        for lane in ["alice", "bob", "public"] {
            report.assert_lane(lane, &[200], false);
        }
        report.assert_lane("anonymous", &[401], false);
        let max = report.max_latency(&["alice", "bob"]);
        assert!(max < SLACK, "{name}: a request waited {max:?} for the IdP");
        // hang and a frozen IdP: the refresh is still waiting when the phase ends, so its
        // failure may not be counted yet.
        if matches!(name, "idp-refresh-500" | "idp-refresh-html" | "idp-killed") {
            assert!(
                failures_during > 0,
                "{name}: no refresh was attempted during the fault"
            );
        }
        report.print_fault(name, &["alice", "bob"], &[200], refresh_recovery);
        let refresh_recovery = if idp.is_some() {
            format!("{} ms", refresh_recovery.as_millis())
        } else {
            "n/a (the IdP stays down)".to_owned()
        };
        println!("      {name}: refresh failures during the fault={failures_during}, refreshes work again after {refresh_recovery}");
    }
    // Sessions survived it all.
    assert_eq!(status_of(&app, &alice).await, 200);
    assert_eq!(status_of(&app, &bob).await, 200);
}

// ---------------------------------------------------------------------------------------
// Upstreams

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_get_our_pages_and_recover() {
    let addr = free_addr();
    let origin = format!("http://{addr}");
    let idp = idp_for(std::slice::from_ref(&origin), &[]);
    let app_up = Upstream::start("app").await;
    let public_up = Upstream::start("public").await;
    let gh = Gatehouse::start_at(
        addr,
        &config(&idp.issuer, "memory", &origin, &app_up, &public_up),
    )
    .await;
    let app = format!("{origin}/app");
    let public = format!("{origin}/public/x");
    let alice = login(&origin, "alice").await;

    let phases = [
        ("upstream-refused", Fault::Refuse, 502),
        ("upstream-reset", Fault::Reset, 502),
        ("upstream-hang", Fault::Hang, 504),
        ("upstream-closed-mid-body", Fault::CloseMidBody, 0),
        ("upstream-closed-mid-chunked", Fault::CloseMidChunked, 0),
    ];
    for (name, fault, status) in phases {
        let load = Load::start(
            vec![
                Lane::json("app-json", &app, Some(&alice)),
                Lane::html("app-html", &app, Some(&alice)),
                Lane::json("public", &public, None),
                Lane::json("anonymous", &app, None),
            ],
            &[],
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        app_up.set_fault(Some(fault)).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        app_up.set_fault(None).await;
        let restored = load.now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let report = load.stop().await;

        report.assert_lane("public", &[200], false);
        report.assert_lane("anonymous", &[401], false);
        let lanes = ["app-json", "app-html"];
        if status == 0 {
            // The head went out: the client must see the body cut short (a broken
            // connection), never a response that looks complete.
            for s in report.of(&lanes) {
                match &s.outcome {
                    Outcome::Response {
                        status: 200,
                        body_len,
                        ..
                    } => assert!(
                        *body_len != 1000 && *body_len != 65536,
                        "{name}: a cut-off body was delivered as complete ({body_len} bytes)"
                    ),
                    Outcome::Response { status, .. } => {
                        panic!("{name}: unexpected {status}")
                    }
                    Outcome::Error(e) => assert!(
                        e.starts_with("200 then body"),
                        "{name}: the failure was not a cut-off body: {e}"
                    ),
                }
            }
            assert!(
                report
                    .of(&lanes)
                    .any(|s| matches!(s.outcome, Outcome::Error(_))),
                "{name}: no request met the fault"
            );
        } else {
            for lane in lanes {
                report.assert_lane(lane, &[200, status], false);
            }
            assert!(
                report.failed(&lanes, &[200]) > 0,
                "{name}: no request met the fault"
            );
        }
        if fault == Fault::Hang {
            // The route timeout (1 s) bounds the wait.
            let max = report.max_latency(&lanes);
            assert!(max < Duration::from_millis(1000) + SLACK, "{name}: {max:?}");
        }
        let recovery = report.recovery(&lanes, &[200], restored);
        assert!(
            recovery < Duration::from_secs(1),
            "{name}: recovery {recovery:?}\n{}",
            gh.log()
        );
        report.assert_ok_after(&lanes, &[200], restored + recovery);
        report.print_fault(name, &lanes, &[200], recovery);
    }
    drop(idp);
}
