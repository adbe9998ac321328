//! The relying party's checks against a deliberately broken OP (`idp/hostile.mjs`): each mode
//! lies in one way; none may produce a session. Also hostile callbacks (SECURITY.md "OIDC
//! callback"): missing or foreign state, replays and IdP errors are refused before the token
//! endpoint is called.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{
    free_addr,
    idp::{Browser, Idp},
    Gatehouse, Upstream,
};

const CLIENT_ID: &str = "gatehouse-rp-test";
const CLIENT_SECRET: &str = "rp-test-secret";

struct Stack {
    op: Idp,
    gh: Gatehouse,
    _upstream: Upstream,
    origin: String,
}

async fn stack() -> Stack {
    stack_with("", "").await
}

/// `provider`: extra top-level YAML; `path`: appended to the OP's URL for
/// `idp_provider_url`.
async fn stack_with(provider: &str, path: &str) -> Stack {
    let addr = free_addr();
    let origin = format!("http://{addr}");
    let op = Idp::hostile(CLIENT_ID, CLIENT_SECRET);
    let upstream = Upstream::start("app").await;
    let config = format!(
        "insecure_server: true
{provider}
idp_provider_url: {issuer}{path}
idp_client_id: {CLIENT_ID}
idp_client_secret: {CLIENT_SECRET}
cookie_secret: dGVzdC1jb29raWUtc2VjcmV0LTMyLWJ5dGVzLWxvbmc=
routes:
  - from: {origin}
    to: {up}
    allow_any_authenticated_user: true
",
        issuer = op.issuer,
        up = upstream.url(),
    );
    let gh = Gatehouse::start_at(addr, &config).await;
    Stack {
        op,
        gh,
        _upstream: upstream,
        origin,
    }
}

async fn set_mode(op: &Idp, mode: &str) {
    op.control(
        "/__mode",
        serde_json::json!({ "mode": mode, "jwks_fetches_before_publish": 0 }),
    )
    .await;
}

async fn token_requests(op: &Idp) -> u64 {
    op.get_json("/__stats").await["token_requests"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lying_id_token_is_refused() {
    let s = stack().await;
    // Sanity: the honest modes sign in, so the refusals below are the checks, not the harness.
    for mode in ["ok", "ok_es256"] {
        set_mode(&s.op, mode).await;
        let b = Browser::new();
        let page = b.open(&format!("{}/app", s.origin)).await;
        assert_eq!(page.status, 200, "mode {mode}: {page:#?}\n{}", s.gh.log());
        assert!(b.cookie(&s.origin, "_gatehouse").is_some());
    }
    for mode in [
        "bad_signature",
        "wrong_iss",
        "wrong_aud",
        "wrong_azp",
        "wrong_nonce",
        "alg_none",
        "missing_sub",
        "missing_iat",
        "expired",
        "hs256_with_public_key",
        "kid_kty_mismatch",
        "unknown_kid",
        "wrong_response_iss",
    ] {
        set_mode(&s.op, mode).await;
        let b = Browser::new();
        let page = b.open(&format!("{}/app", s.origin)).await;
        assert!(
            page.status == 502 || page.status == 400,
            "mode {mode} was not refused: {page:#?}"
        );
        assert!(
            b.cookie(&s.origin, "_gatehouse")
                .is_none_or(|c| c.is_empty()),
            "mode {mode} produced a session cookie"
        );
        // No half session: the next request still needs a login.
        let again = b
            .client
            .get(format!("{}/app", s.origin))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 302, "mode {mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_signing_key_is_fetched_once_and_accepted() {
    let s = stack().await;
    set_mode(&s.op, "ok").await;
    // Discovery has cached the JWKS without the second key; the next ID token uses it.
    let b = Browser::new();
    assert_eq!(b.open(&format!("{}/app", s.origin)).await.status, 200);
    set_mode(&s.op, "kid_rotated").await;
    let b = Browser::new();
    let page = b.open(&format!("{}/app", s.origin)).await;
    assert_eq!(page.status, 200, "{page:#?}\n{}", s.gh.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_callbacks_never_reach_the_token_endpoint() {
    let s = stack().await;
    set_mode(&s.op, "ok").await;
    s.op.control("/__stats/reset", serde_json::json!({})).await;
    let callback = format!("{}/oauth2/callback", s.origin);

    // No login-state cookie at all (another browser's state, or none).
    let stranger = Browser::new();
    for query in ["", "?code=x", "?code=x&state=", "?code=x&state=abc"] {
        let r = stranger
            .client
            .get(format!("{callback}{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
    }

    // A browser with a real login in progress, but the wrong or an empty state.
    let b = Browser::new();
    let start = b
        .client
        .get(format!("{}/app", s.origin))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 302);
    for query in ["?code=x", "?code=x&state=", "?code=x&state=forged"] {
        let r = b
            .client
            .get(format!("{callback}{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
    }
    assert_eq!(
        token_requests(&s.op).await,
        0,
        "the token endpoint was called"
    );

    // An IdP error is shown escaped, never followed.
    let r = stranger
        .client
        .get(format!(
            "{callback}?error=access_denied&error_description=%3Cscript%3Ealert(1)%3C/script%3E"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    let body = r.text().await.unwrap();
    assert!(!body.contains("<script>"), "{body}");

    // A completed login's code+state replayed with the same state cookie: refused before the
    // token endpoint (single-use state).
    let b = Browser::new();
    let start = b
        .client
        .get(format!("{}/app", s.origin))
        .send()
        .await
        .unwrap();
    let login_cookie = start
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("_gatehouse_login="))
        .expect("login state cookie");
    let login_cookie = login_cookie.split(';').next().unwrap().to_owned();
    let authorize = start.headers()["location"].to_str().unwrap().to_owned();
    let to_callback = b.client.get(&authorize).send().await.unwrap();
    let callback_url = to_callback.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let first = b.client.get(&callback_url).send().await.unwrap();
    assert_eq!(first.status(), 302, "the real callback works");
    s.op.control("/__stats/reset", serde_json::json!({})).await;
    let replay = support::http_client_builder()
        .build()
        .unwrap()
        .get(&callback_url)
        .header("cookie", &login_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 400, "replayed callback");
    assert_eq!(
        token_requests(&s.op).await,
        0,
        "the replay reached the token endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_token_endpoint_gives_a_clear_error_and_no_session() {
    let s = stack().await;
    for mode in ["token_500", "token_html"] {
        set_mode(&s.op, mode).await;
        let b = Browser::new();
        let page = b.open(&format!("{}/app", s.origin)).await;
        assert!(
            page.status == 503 || page.status == 502,
            "mode {mode}: {page:#?}"
        );
        assert!(b
            .cookie(&s.origin, "_gatehouse")
            .is_none_or(|c| c.is_empty()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_multi_tenant_issuers_are_matched_to_the_tokens_tenant() {
    // Microsoft Entra cannot be reached from here: the hostile OP plays its shape (discovery
    // at /common/v2.0 naming the issuer ".../{tenantid}/v2.0", tokens with `tid`).
    let s = stack_with("idp_provider: azure", "/common/v2.0").await;
    set_mode(&s.op, "azure").await;
    let b = Browser::new();
    let page = b.open(&format!("{}/app", s.origin)).await;
    assert_eq!(page.status, 200, "{page:#?}\n{}", s.gh.log());
    let page = b.open(&format!("{}/.gatehouse/user", s.origin)).await;
    let user: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(
        user["user"],
        format!(
            "{}/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0|mallory",
            s.op.issuer
        )
    );
    // A token whose iss names another tenant than its tid: refused.
    set_mode(&s.op, "azure_wrong_tenant").await;
    let b = Browser::new();
    let page = b.open(&format!("{}/app", s.origin)).await;
    assert_eq!(page.status, 502, "{page:#?}");
    // The plain OIDC preset does not accept a templated issuer at all.
    let plain = stack_with("idp_provider: oidc", "/common/v2.0").await;
    set_mode(&plain.op, "azure").await;
    let page = Browser::new().open(&format!("{}/app", plain.origin)).await;
    assert_eq!(
        page.status, 503,
        "discovery with a foreign issuer must fail: {page:#?}"
    );
}
