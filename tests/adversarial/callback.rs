//! The OIDC callback (principle 4): state bound to this browser and single-use, checked
//! before the token endpoint is ever called; IdP errors shown escaped; a failing token
//! endpoint leaves no session; nothing secret in any answer.

use std::sync::Arc;

use crate::cases;
use crate::runner::Report;
use crate::stack::{session_set, Options, Stack, COOKIE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_callback() {
    let s = Stack::start(Options::default()).await;
    let mut report = Report::default();
    report
        .each(
            &s,
            cases![
                hostile_callbacks_never_reach_the_token_endpoint,
                a_callback_works_once_for_its_own_browser,
                idp_errors_are_shown_escaped_without_a_redirect,
                a_failing_token_endpoint_leaves_no_session,
                a_callback_naming_another_issuer_is_refused,
            ],
        )
        .await;
    report.finish("callback");
}

/// The `state` parameter of a URL.
fn state_of(url: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no state in {url}"))
}

/// Asserts a refused callback: 400, no session cookie, no redirect, and none of `secrets`
/// echoed back.
#[track_caller]
fn assert_refused(r: &crate::support::RawResponse, what: &str, secrets: &[&str]) {
    assert_eq!(r.status, 400, "{what}:\n{}", r.dump());
    assert!(
        session_set(r).is_none(),
        "{what} set a session:\n{}",
        r.dump()
    );
    assert!(
        r.header("location").is_none(),
        "{what} redirected:\n{}",
        r.dump()
    );
    let text = String::from_utf8_lossy(&r.body);
    for secret in secrets.iter().filter(|s| s.len() > 4) {
        assert!(
            !text.contains(secret),
            "{what}: the page shows {secret:?}:\n{text}"
        );
    }
}

async fn hostile_callbacks_never_reach_the_token_endpoint(s: Arc<Stack>) {
    let a = s.start_login("GET", "/admin/x", "").await;
    let b = s.start_login("GET", "/admin/y", "").await;
    let (state_a, state_b) = (state_of(&a.authorize), state_of(&b.authorize));
    let before = s.token_requests().await;
    let code = "stolen-or-guessed-code-1234567890";
    let cb = "/oauth2/callback";
    let cases: Vec<(String, Option<String>, &str)> = vec![
        (cb.to_owned(), None, "no query"),
        (
            format!("{cb}?code={code}"),
            Some(a.state_cookie.clone()),
            "no state",
        ),
        (
            format!("{cb}?state=&code={code}"),
            Some(a.state_cookie.clone()),
            "empty state",
        ),
        (
            format!("{cb}?state={state_a}&code={code}"),
            None,
            "no login-state cookie",
        ),
        (
            format!("{cb}?state=wrong&code={code}"),
            Some(a.state_cookie.clone()),
            "wrong state",
        ),
        (
            format!("{cb}?state={state_b}&code={code}"),
            Some(a.state_cookie.clone()),
            "another browser's state",
        ),
        (
            format!("{cb}?state={state_a}&code={code}"),
            Some(b.state_cookie.clone()),
            "another browser's cookie",
        ),
        (
            format!("{cb}?state={state_a}"),
            Some(a.state_cookie.clone()),
            "no code",
        ),
        (
            format!("{cb}?state={state_a}&code="),
            Some(a.state_cookie.clone()),
            "empty code",
        ),
        (
            format!("{cb}?state={state_a}&code={code}"),
            Some("junk".into()),
            "junk login state",
        ),
        (
            format!("{cb}?state={state_a}&code={code}"),
            Some(s.alice.clone()),
            "a session ticket as login state",
        ),
        (
            format!("{cb}?state={state_a}%00&code={code}"),
            Some(a.state_cookie.clone()),
            "state with a NUL",
        ),
        (
            format!("{cb}?state={}&code={code}", &state_a[..state_a.len() - 1]),
            Some(a.state_cookie.clone()),
            "truncated state",
        ),
        (
            format!("/oauth2//callback?state=wrong&code={code}"),
            Some(a.state_cookie.clone()),
            "merged slashes",
        ),
        (
            format!("/%6Fauth2/callback?state=wrong&code={code}"),
            Some(a.state_cookie.clone()),
            "encoded path",
        ),
        (
            format!("/open/../oauth2/callback?state=wrong&code={code}"),
            Some(a.state_cookie.clone()),
            "dot-segments",
        ),
    ];
    for (path, cookie, what) in &cases {
        let r = s.get_with_state(path, cookie.as_deref()).await;
        assert_refused(&r, what, &[code, &state_a, &state_b, &a.state_cookie]);
    }
    // The session cookie name used for the login state (and the other way round).
    let req = format!(
        "GET {cb}?state={state_a}&code={code} HTTP/1.1\r\nHost: {}\r\nCookie: {COOKIE}={}\r\nConnection: close\r\n\r\n",
        s.host, a.state_cookie
    );
    assert_refused(
        &s.send(req.as_bytes()).await,
        "login state as session cookie",
        &[code],
    );
    assert_eq!(
        s.token_requests().await,
        before,
        "a hostile callback reached the IdP's token endpoint"
    );
}

async fn a_callback_works_once_for_its_own_browser(s: Arc<Stack>) {
    let a = s.start_login("GET", "/admin/once?q=1", "").await;
    let other = s.start_login("GET", "/admin/other", "").await;
    let url = s.callback_url(&a.authorize, "alice").await;
    let before = s.token_requests().await;
    // Another browser's login state with this code and state: refused, code unspent.
    let r = s.get_with_state(&url, Some(&other.state_cookie)).await;
    assert_refused(&r, "another browser", &[]);
    assert_eq!(s.token_requests().await, before);
    // Its own browser: signed in, sent back where it was going.
    let r = s.get_with_state(&url, Some(&a.state_cookie)).await;
    assert_eq!(r.status, 302, "{}", r.dump());
    assert_eq!(
        r.header("location"),
        Some("/admin/once?q=1"),
        "{}",
        r.dump()
    );
    let session = session_set(&r).expect("a session cookie");
    assert_eq!(s.token_requests().await, before + 1);
    // The same again (a replay from a log, a Referer, a proxy): refused before the IdP.
    for cookie in [Some(a.state_cookie.as_str()), None] {
        let r = s.get_with_state(&url, cookie).await;
        assert_refused(&r, "replayed callback", &[]);
    }
    assert_eq!(
        s.token_requests().await,
        before + 1,
        "a replay reached the token endpoint"
    );
    // The session is new and works.
    assert_ne!(session, s.alice);
    let req = s.anon(
        "GET",
        "/admin/x",
        &format!("Cookie: {COOKIE}={session}\r\n"),
    );
    assert_eq!(s.send(&req).await.status, 200);
}

async fn idp_errors_are_shown_escaped_without_a_redirect(s: Arc<Stack>) {
    let a = s.start_login("GET", "/admin/x", "").await;
    let before = s.token_requests().await;
    for query in [
        "error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "error=%3Cscript%3Ealert(1)%3C%2Fscript%3E&state=x",
        "error=%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E&code=abc",
        "error=access_denied&error_uri=javascript:alert(1)",
    ] {
        for accept in ["text/html", "application/json"] {
            let req = format!(
                "GET /oauth2/callback?{query} HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\nCookie: {COOKIE}_login={}\r\nConnection: close\r\n\r\n",
                s.host, a.state_cookie
            );
            let r = s.send(req.as_bytes()).await;
            assert_eq!(r.status, 400, "{query}:\n{}", r.dump());
            assert!(r.header("location").is_none(), "{}", r.dump());
            let body = String::from_utf8_lossy(&r.body);
            assert_eq!(
                r.header("x-content-type-options"),
                Some("nosniff"),
                "{}",
                r.dump()
            );
            if accept == "text/html" {
                assert!(r
                    .header("content-type")
                    .is_some_and(|c| c.starts_with("text/html")));
                for raw in ["<script", "<img", "onerror=alert(1)>"] {
                    assert!(
                        !body.contains(raw),
                        "{query} ({accept}) is not escaped:\n{body}"
                    );
                }
            } else {
                // JSON carries the text as a string; it is never served as markup.
                assert_eq!(
                    r.header("content-type"),
                    Some("application/json"),
                    "{}",
                    r.dump()
                );
                serde_json::from_slice::<serde_json::Value>(&r.body)
                    .unwrap_or_else(|e| panic!("{e}: {body}"));
            }
        }
    }
    assert_eq!(s.token_requests().await, before);
}

async fn a_failing_token_endpoint_leaves_no_session(s: Arc<Stack>) {
    for mode in ["500", "html", "invalid_grant"] {
        let a = s.start_login("GET", "/admin/x", "").await;
        let url = s.callback_url(&a.authorize, "alice").await;
        s.idp
            .control(
                "/__test/token-failure",
                serde_json::json!({"mode": mode, "grant_type": "authorization_code"}),
            )
            .await;
        let r = s.get_with_state(&url, Some(&a.state_cookie)).await;
        s.idp
            .control("/__test/token-failure", serde_json::json!({"mode": "off"}))
            .await;
        assert!(
            matches!(r.status, 400 | 502 | 503),
            "token endpoint {mode}:\n{}",
            r.dump()
        );
        assert!(
            session_set(&r).is_none(),
            "{mode}: a half session:\n{}",
            r.dump()
        );
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("injected failure"),
            "{mode}: the IdP's answer is shown: {body}"
        );
        // The code is not retried and the login state is spent.
        let again = s.get_with_state(&url, Some(&a.state_cookie)).await;
        assert_eq!(again.status, 400, "{mode} retry:\n{}", again.dump());
    }
}

async fn a_callback_naming_another_issuer_is_refused(s: Arc<Stack>) {
    // RFC 9207: a response that says it comes from another issuer (a mix-up attack) makes
    // no session, whatever its code and state.
    for evil in ["http://evil.example", "", "HTTP://127.0.0.2"] {
        let a = s.start_login("GET", "/admin/iss", "").await;
        let url = s.callback_url(&a.authorize, "alice").await;
        let mut parsed = url::Url::parse(&url).unwrap();
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(k, _)| k != "iss")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        parsed
            .query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .append_pair("iss", evil);
        let r = s
            .get_with_state(parsed.as_str(), Some(&a.state_cookie))
            .await;
        assert!(matches!(r.status, 400 | 502), "iss={evil:?}:\n{}", r.dump());
        assert!(
            session_set(&r).is_none(),
            "iss={evil:?} made a session:\n{}",
            r.dump()
        );
    }
}
