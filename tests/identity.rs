//! Identity end to end against the real OpenID Provider (npm `oidc-provider`): scripted
//! browser login through its login and consent forms, group-based access, the identity
//! assertion upstreams receive, the user endpoints, API clients, and sign-out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;

use support::{
    free_addr,
    idp::{hidden_input, Browser, ClientSpec, Idp},
    Gatehouse, Upstream,
};

const CLIENT_ID: &str = "gatehouse-test";
const CLIENT_SECRET: &str = "gatehouse-test-secret";
/// base64 of 32 bytes (test only).
const COOKIE_SECRET: &str = "dGVzdC1jb29raWUtc2VjcmV0LTMyLWJ5dGVzLWxvbmc=";

/// The IdP, gatehouse and one echo upstream behind three routes: `/public` (anyone),
/// `/admin` (group admins) and everything else (any signed-in user).
struct Stack {
    idp: Idp,
    gh: Gatehouse,
    upstream: Upstream,
    origin: String,
}

async fn stack(idp_args: &[&str], extra_config: &str) -> Stack {
    let addr: SocketAddr = free_addr();
    let origin = format!("http://{addr}");
    let idp = Idp::start(
        &ClientSpec {
            client_id: CLIENT_ID,
            client_secret: CLIENT_SECRET,
            origins: std::slice::from_ref(&origin),
        },
        idp_args,
    );
    let upstream = Upstream::start("app").await;
    let config = format!(
        "insecure_server: true
idp_provider: oidc
idp_provider_url: {issuer}
idp_client_id: {CLIENT_ID}
idp_client_secret: {CLIENT_SECRET}
cookie_secret: {COOKIE_SECRET}
pass_identity_headers: true
jwt_claims_headers: [email, groups]
{extra_config}
routes:
  - from: {origin}
    prefix: /public
    to: {up}
    allow_public_unauthenticated_access: true
  - from: {origin}
    prefix: /admin
    to: {up}
    allowed_groups: [admins]
  - from: {origin}
    prefix: /
    to: {up}
    allow_any_authenticated_user: true
",
        issuer = idp.issuer,
        up = upstream.url(),
    );
    let gh = Gatehouse::start_at(addr, &config).await;
    Stack {
        idp,
        gh,
        upstream,
        origin,
    }
}

/// The header values the echo upstream reports for `name` (lower-case).
fn echoed(body: &str, name: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|pair| pair[1].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_reaches_the_app_with_a_verifiable_identity() {
    let s = stack(&[], "").await;
    let browser = Browser::new();

    // Public route: no login.
    let page = browser.open(&format!("{}/public/x", s.origin)).await;
    assert_eq!(page.status, 200, "{page:#?}");

    // Protected: redirected to the IdP, signed in, back on the page asked for.
    let page = browser
        .login(&format!("{}/app/page?q=1", s.origin), "alice", "alice")
        .await;
    assert_eq!(page.status, 200, "{page:#?}");
    assert_eq!(
        page.url,
        format!("{}/app/page?q=1", s.origin),
        "{:#?}",
        page.trail
    );
    assert!(
        page.trail.iter().any(|u| u.starts_with(&s.idp.issuer)),
        "the login went through the IdP: {:#?}",
        page.trail
    );
    // The upstream never sees gatehouse's cookie, and gets the identity.
    let cookies = echoed(&page.body, "cookie");
    assert!(
        cookies.iter().all(|c| !c.contains("_gatehouse")),
        "our cookie reached the upstream: {cookies:?}"
    );
    assert_eq!(
        echoed(&page.body, "x-gatehouse-claim-email"),
        ["alice@example.com"]
    );
    assert_eq!(
        echoed(&page.body, "x-gatehouse-claim-groups"),
        ["admins,devs"]
    );
    let assertion = echoed(&page.body, "x-gatehouse-jwt-assertion");
    assert_eq!(assertion.len(), 1, "{}", page.body);

    // The assertion verifies with the published JWKS, for this host only.
    let jwks: jsonwebtoken::jwk::JwkSet =
        reqwest::get(format!("{}/.well-known/gatehouse/jwks.json", s.origin))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let header = jsonwebtoken::decode_header(&assertion[0]).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let kid = header.kid.expect("kid");
    let jwk = jwks.find(&kid).expect("kid in JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["127.0.0.1"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(&assertion[0], &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["groups"], serde_json::json!(["admins", "devs"]));
    assert_eq!(claims["sub"], format!("{}|alice", s.idp.issuer));
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );
    let mut other = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    other.set_audience(&["other.internal"]);
    assert!(jsonwebtoken::decode::<serde_json::Value>(&assertion[0], &key, &other).is_err());

    // The group route.
    let page = browser.open(&format!("{}/admin/x", s.origin)).await;
    assert_eq!(page.status, 200);

    // The JSON user endpoint shows who, never a token.
    let page = browser.open(&format!("{}/.gatehouse/user", s.origin)).await;
    assert_eq!(page.status, 200, "{page:#?}");
    let user: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(user["email"], "alice@example.com");
    assert_eq!(user["groups"], serde_json::json!(["admins", "devs"]));
    assert!(!page.body.contains("eyJ"), "a token leaked: {}", page.body);

    // Sign out from the user page: the cookie stops working at once.
    let page = browser.open(&format!("{}/.gatehouse/", s.origin)).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("alice@example.com"));
    assert!(!page.body.contains("eyJ"), "a token leaked: {}", page.body);
    let csrf = hidden_input(&page.body, "csrf").expect("csrf input");
    let old_cookie = browser
        .cookie(&s.origin, "_gatehouse")
        .expect("session cookie");
    // Without the CSRF token: refused, still signed in.
    let r = browser
        .post_form(&format!("{}/.gatehouse/sign_out", s.origin), &[])
        .await;
    assert_eq!(r.status(), 403);
    let r = browser
        .post_form(
            &format!("{}/.gatehouse/sign_out", s.origin),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/session/end", s.idp.issuer)),
        "RP-initiated logout: {location}"
    );
    let replay =
        s.gh.client(&[])
            .get(format!("{}/app", s.origin))
            .header("cookie", format!("_gatehouse={old_cookie}"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
    assert_eq!(replay.status(), 401, "a signed-out cookie still works");
    drop(s.upstream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_decide_and_api_clients_get_401() {
    let s = stack(&[], "").await;
    // API client: 401 JSON with WWW-Authenticate, no redirect.
    let r =
        s.gh.client(&[])
            .get(format!("{}/app", s.origin))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));

    let bob = Browser::new();
    let page = bob.login(&format!("{}/app", s.origin), "bob", "bob").await;
    assert_eq!(page.status, 200, "{page:#?}");
    let page = bob.open(&format!("{}/admin/x", s.origin)).await;
    assert_eq!(page.status, 403, "bob is not in admins");
    assert!(s.upstream.hits() >= 1);
}

/// Polls `url` with the browser until it answers `status` (or 30 s pass).
async fn poll_status(browser: &Browser, url: &str, status: u16) -> bool {
    support::poll_until(std::time::Duration::from_secs(30), || async {
        let r = browser.client.get(url).send().await.ok()?;
        (r.status().as_u16() == status).then_some(())
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_brings_new_groups_keeps_sessions_through_idp_errors_and_ends_on_invalid_grant() {
    // Tokens shorter than the refresh margin: every request finds them due (one refresh per
    // session per few seconds).
    let s = stack(&["--access-ttl", "20", "--id-token-ttl", "20"], "").await;
    let bob = Browser::new();
    let page = bob.login(&format!("{}/app", s.origin), "bob", "bob").await;
    assert_eq!(page.status, 200, "{page:#?}");
    let admin = format!("{}/admin/x", s.origin);
    let app = format!("{}/app", s.origin);
    assert_eq!(bob.client.get(&admin).send().await.unwrap().status(), 403);

    // Added to admins at the IdP: access by the next refresh.
    s.idp
        .control(
            "/__test/users/bob",
            serde_json::json!({"groups": ["admins", "devs"]}),
        )
        .await;
    assert!(
        poll_status(&bob, &admin, 200).await,
        "new group never took effect\n{}",
        s.gh.log()
    );

    // The IdP's token endpoint fails: the session is kept (and so are its groups).
    s.idp
        .control(
            "/__test/token-failure",
            serde_json::json!({"mode": "500", "grant_type": "refresh_token"}),
        )
        .await;
    s.idp
        .control("/__test/users/bob", serde_json::json!({"groups": ["devs"]}))
        .await;
    for _ in 0..20 {
        assert_eq!(bob.client.get(&app).send().await.unwrap().status(), 200);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    // Back up: the removal takes effect.
    s.idp
        .control("/__test/token-failure", serde_json::json!({"mode": "off"}))
        .await;
    assert!(
        poll_status(&bob, &admin, 403).await,
        "removed group kept access\n{}",
        s.gh.log()
    );

    // invalid_grant ends the session: the next request needs a login again.
    s.idp
        .control(
            "/__test/token-failure",
            serde_json::json!({"mode": "invalid_grant", "grant_type": "refresh_token"}),
        )
        .await;
    assert!(
        poll_status(&bob, &app, 302).await,
        "invalid_grant kept the session\n{}",
        s.gh.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programmatic_login_gives_a_bearer_token_for_loopback_clients_only() {
    let s = stack(&[], "").await;
    let cli_callback = Upstream::start("cli").await;
    let api = s.gh.client(&[]);
    let login = format!("{}/.gatehouse/api/v1/login", s.origin);

    // Not loopback: refused.
    for bad in [
        "https://evil.example/cb",
        "http://127.0.0.1.evil.example/cb",
        "javascript:x",
    ] {
        let r = api
            .get(&login)
            .query(&[("redirect_uri", bad)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    let redirect_uri = format!("{}/callback", cli_callback.url());
    let r = api
        .get(&login)
        .query(&[("redirect_uri", &redirect_uri)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sign_in_url = r.text().await.unwrap();
    assert!(sign_in_url.starts_with(&s.origin), "{sign_in_url}");

    // The person signs in in a browser; the CLI's loopback listener receives the token.
    let browser = Browser::new();
    let page = browser.login(&sign_in_url, "alice", "alice").await;
    assert!(page.url.starts_with(&redirect_uri), "{page:#?}");
    let url = url::Url::parse(&page.url).unwrap();
    let token = url
        .query_pairs()
        .find(|(k, _)| k == "gatehouse_token")
        .map(|(_, v)| v.into_owned())
        .expect("token in the callback");

    // The token works as a bearer credential and is not forwarded.
    let r = api
        .get(format!("{}/app", s.origin))
        .bearer_auth(&token)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(
        echoed(&body, "authorization").is_empty(),
        "bearer token forwarded: {body}"
    );
    assert_eq!(
        echoed(&body, "x-gatehouse-claim-email"),
        ["alice@example.com"]
    );

    // Our cookie and our bearer token together: 400 (ambiguous).
    let r = api
        .get(format!("{}/app", s.origin))
        .bearer_auth(&token)
        .header("cookie", "_gatehouse=anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // A forged or truncated token is no credential.
    let r = api
        .get(format!("{}/app", s.origin))
        .bearer_auth(&token[..token.len() - 2])
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// An app cookie with raw UTF-8 (browsers send it unencoded) beside ours: the session is
/// still recognized, and our cookie is still stripped before the upstream, on public routes
/// too. (Found by the request_headers fuzz target: the whole header used to be skipped.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_utf8_cookie_beside_ours_neither_hides_nor_leaks_the_session() {
    let s = stack(&[], "").await;
    let alice = Browser::new();
    let page = alice
        .login(&format!("{}/app", s.origin), "alice", "alice")
        .await;
    assert_eq!(page.status, 200);
    let good = alice.cookie(&s.origin, "_gatehouse").unwrap();
    let cookie = reqwest::header::HeaderValue::from_bytes(
        format!("pref=caf\u{e9}; _gatehouse={good}").as_bytes(),
    )
    .unwrap();
    let api = s.gh.client(&[]);
    for path in ["/app", "/public/x"] {
        let r = api
            .get(format!("{}{path}", s.origin))
            .header("cookie", cookie.clone())
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let body = r.text().await.unwrap();
        assert_eq!(echoed(&body, "cookie"), ["pref=caf\u{e9}"], "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_cookies_are_no_session_and_a_login_replaces_a_planted_one() {
    let s = stack(&[], "").await;
    let alice = Browser::new();
    let page = alice
        .login(&format!("{}/app", s.origin), "alice", "alice")
        .await;
    assert_eq!(page.status, 200);
    let first_sid = sid_of(&page.body);
    let good = alice.cookie(&s.origin, "_gatehouse").unwrap();

    // Every damaged form of a valid cookie is simply no session, with one response shape.
    let mut flipped = good.clone().into_bytes();
    flipped[good.len() / 2] = if flipped[good.len() / 2] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let variants = [
        String::from_utf8(flipped).unwrap(),
        good[..good.len() - 4].to_owned(),
        String::new(),
        "not base64 at all!".to_owned(),
        format!("{good}AAAA"),
    ];
    let api = s.gh.client(&[]);
    let mut shapes = Vec::new();
    for v in &variants {
        let r = api
            .get(format!("{}/app", s.origin))
            .header("cookie", format!("_gatehouse={v}"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{v:?}");
        let mut body: serde_json::Value = r.json().await.unwrap();
        body.as_object_mut().unwrap().remove("request_id");
        shapes.push(body);
    }
    assert!(shapes.windows(2).all(|w| w[0] == w[1]), "{shapes:#?}");

    // A browser arriving with a planted cookie: starting the login clears it, and the session
    // it ends up with is new (another id than any before).
    let url = url::Url::parse(&s.origin).unwrap();
    let fresh = Browser::new();
    fresh
        .jar
        .add_cookie_str(&format!("_gatehouse={}; Path=/", "planted-junk"), &url);
    let r = fresh
        .client
        .get(format!("{}/app", s.origin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let cleared = r.headers().get_all("set-cookie").iter().any(|c| {
        let c = c.to_str().unwrap();
        c.starts_with("_gatehouse=;") && c.contains("Max-Age=0")
    });
    assert!(cleared, "starting a login did not clear the planted cookie");
    let page = fresh
        .login(&format!("{}/app", s.origin), "alice", "alice")
        .await;
    assert_eq!(page.status, 200);
    let second_sid = sid_of(&page.body);
    assert_ne!(first_sid, second_sid, "a login reused a session id");
    let new_cookie = fresh.cookie(&s.origin, "_gatehouse").unwrap();
    assert_ne!(new_cookie, "planted-junk");
    assert_ne!(new_cookie, good);
}

/// The `sid` claim of the assertion the echo upstream received.
fn sid_of(body: &str) -> String {
    let token = echoed(body, "x-gatehouse-jwt-assertion")
        .pop()
        .expect("assertion");
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    claims["sid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_authenticate_host_hands_sessions_over_with_one_time_codes() {
    let addr = free_addr();
    let (auth_origin, app_origin) = (
        format!("http://auth.localtest:{}", addr.port()),
        format!("http://app.localtest:{}", addr.port()),
    );
    let idp = Idp::start(
        &ClientSpec {
            client_id: CLIENT_ID,
            client_secret: CLIENT_SECRET,
            origins: &[auth_origin.clone(), app_origin.clone()],
        },
        &[],
    );
    let upstream = Upstream::start("app").await;
    let config = format!(
        "insecure_server: true
authenticate_service_url: {auth_origin}
idp_provider_url: {issuer}
idp_client_id: {CLIENT_ID}
idp_client_secret: {CLIENT_SECRET}
cookie_secret: {COOKIE_SECRET}
pass_identity_headers: true
routes:
  - from: {app_origin}
    to: {up}
    allow_any_authenticated_user: true
",
        issuer = idp.issuer,
        up = upstream.url(),
    );
    let gh = Gatehouse::start_at(addr, &config).await;
    let browser = Browser::resolving(&[("auth.localtest", addr), ("app.localtest", addr)]);
    let page = browser
        .login(&format!("{app_origin}/app"), "bob", "bob")
        .await;
    assert_eq!(page.status, 200, "{page:#?}\n{}", gh.log());
    assert_eq!(page.url, format!("{app_origin}/app"));
    let handoff = page
        .trail
        .iter()
        .find(|u| u.starts_with(&format!("{app_origin}/.gatehouse/callback?code=")))
        .expect("the app host received a one-time code")
        .clone();
    assert!(
        page.trail
            .iter()
            .any(|u| u.starts_with(&format!("{auth_origin}/oauth2/callback"))),
        "the IdP returned to the authenticate host: {:#?}",
        page.trail
    );
    // The code is spent: a replay (say, from a log or a Referer) gives nothing.
    let other = Browser::resolving(&[("app.localtest", addr)]);
    let r = other.client.get(&handoff).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("set-cookie").is_none());
    // The authenticate host's callback path is gatehouse's; the app host's is the app's.
    let r = other
        .client
        .get(format!("{app_origin}/oauth2/callback?code=x&state=y"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        302,
        "app host: the path belongs to the route (login first)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_survive_idp_key_rotation_and_never_replay_a_post() {
    let s = stack(&[], "").await;
    let first = Browser::new();
    assert_eq!(
        first
            .login(&format!("{}/app", s.origin), "alice", "alice")
            .await
            .status,
        200
    );

    // The IdP rotates its signing key and drops the old one: gatehouse's cached JWKS no longer
    // has the new kid, so the next login refetches it once and works.
    s.idp
        .control(
            "/__test/rotate-keys",
            serde_json::json!({"keep_old": false}),
        )
        .await;
    let second = Browser::new();
    let page = second
        .login(&format!("{}/app", s.origin), "bob", "bob")
        .await;
    assert_eq!(page.status, 200, "{page:#?}\n{}", s.gh.log());

    // An unauthenticated POST (with a body) starts a login; afterwards the browser lands on
    // a GET of that address and the body is never replayed.
    let third = Browser::new();
    let r = third
        .client
        .post(format!("{}/app/delete?id=7", s.origin))
        .body("confirm=yes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let idp_url = r.headers()["location"].to_str().unwrap().to_owned();
    let page = third.login(&idp_url, "alice", "alice").await;
    assert_eq!(page.status, 200, "{page:#?}");
    assert_eq!(page.url, format!("{}/app/delete?id=7", s.origin));
    let seen: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(seen["method"], "GET");

    // A return address that a browser could read as another host stays on this origin.
    let fourth = Browser::new();
    let page = fourth
        .login(&format!("{}//evil.example/x", s.origin), "alice", "alice")
        .await;
    assert!(page.url.starts_with(&s.origin), "{:#?}", page.trail);
    assert!(page
        .trail
        .iter()
        .all(|u| !u.starts_with("http://evil.example")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatehouse_serves_while_the_idp_is_down_and_recovers_by_itself() {
    let addr = free_addr();
    let origin = format!("http://{addr}");
    let idp_port = support::free_port();
    let issuer = format!("http://127.0.0.2:{idp_port}");
    let upstream = Upstream::start("app").await;
    let config = format!(
        "insecure_server: true
idp_provider_url: {issuer}
idp_client_id: {CLIENT_ID}
idp_client_secret: {CLIENT_SECRET}
cookie_secret: {COOKIE_SECRET}
routes:
  - from: {origin}
    prefix: /public
    to: {up}
    allow_public_unauthenticated_access: true
  - from: {origin}
    prefix: /
    to: {up}
    allow_any_authenticated_user: true
",
        up = upstream.url(),
    );
    // The IdP is not running: gatehouse starts anyway.
    let gh = Gatehouse::start_at(addr, &config).await;
    let browser = Browser::new();
    assert_eq!(
        browser.open(&format!("{origin}/public/x")).await.status,
        200
    );
    let page = browser.open(&format!("{origin}/app")).await;
    assert_eq!(page.status, 503, "{page:#?}");
    assert!(
        page.body.contains("identity provider cannot be reached"),
        "{}",
        page.body
    );

    // The IdP comes up: sign-in works without restarting gatehouse.
    let port = idp_port.to_string();
    let idp = Idp::start(
        &ClientSpec {
            client_id: CLIENT_ID,
            client_secret: CLIENT_SECRET,
            origins: std::slice::from_ref(&origin),
        },
        &["--port", &port],
    );
    assert_eq!(idp.issuer, issuer);
    let signed_in = support::poll_until(std::time::Duration::from_secs(15), || async {
        let b = Browser::new();
        let page = b.login(&format!("{origin}/app"), "alice", "alice").await;
        (page.status == 200).then_some(b)
    })
    .await
    .unwrap_or_else(|| panic!("sign-in never recovered:\n{}", gh.log()));

    // The IdP goes away again: the existing session keeps working.
    drop(idp);
    for _ in 0..3 {
        let r = signed_in
            .client
            .get(format!("{origin}/app"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}
