//! Redirects (principle 5): every target is hostile. Return addresses stay on this origin,
//! programmatic logins call back to loopback only, login URLs come from configuration, and
//! an unauthenticated POST is never replayed.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::cases;
use crate::runner::Report;
use crate::stack::{assert_nothing, assert_one, session_set, Options, Stack, COOKIE};
use crate::support::RawConn;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects() {
    let s = Stack::start(Options::default()).await;
    let mut report = Report::default();
    report
        .each(
            &s,
            cases![
                return_addresses_stay_on_this_origin,
                programmatic_logins_call_back_to_loopback_only,
                an_unauthenticated_post_is_never_replayed,
                login_urls_come_from_configuration,
                sign_out_and_redirect_routes_ignore_the_client,
                sign_in_hops_cannot_be_forged,
            ],
        )
        .await;
    report.finish("redirects");
}

/// Completes a login started for `target` and returns where gatehouse sends the browser.
async fn landing(s: &Stack, target: &str) -> String {
    let start = s.start_login("GET", target, "").await;
    let url = s.callback_url(&start.authorize, "alice").await;
    let r = s.get_with_state(&url, Some(&start.state_cookie)).await;
    assert_eq!(r.status, 302, "{target}: {}", r.dump());
    assert!(session_set(&r).is_some(), "{target}: {}", r.dump());
    r.header("location").unwrap_or_default().to_owned()
}

async fn return_addresses_stay_on_this_origin(s: Arc<Stack>) {
    for (target, expected) in [
        ("//evil.example/x", "/evil.example/x"),
        ("///evil.example/x", "/evil.example/x"),
        ("/.//evil.example", "/evil.example"),
        ("/%2e%2e//evil.example", "/evil.example"),
        ("/x/..//evil.example", "/evil.example"),
        (
            "//evil.example/x?next=//evil.example",
            "/evil.example/x?next=//evil.example",
        ),
        (
            "/admin/x?r=https://evil.example",
            "/admin/x?r=https://evil.example",
        ),
    ] {
        let location = landing(&s, target).await;
        assert_eq!(location, expected, "{target}");
        assert!(
            location.starts_with('/')
                && !location.starts_with("//")
                && !location.starts_with("/\\"),
            "{target} → {location}"
        );
    }
    // What a browser would read as another host never even starts a login.
    for target in [
        "/\\evil.example",
        "/%5Cevil.example",
        "/%5cevil.example",
        "/%09/evil.example",
        "/%0a/evil.example",
        "/%0d/evil.example",
        "/%2F%2Fevil.example",
        "/%2f/evil.example",
        "/%00/evil.example",
    ] {
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
            s.host
        );
        let r = s.send(req.as_bytes()).await;
        assert_eq!(r.status, 400, "{target}:\n{}", r.dump());
        assert!(r.header("location").is_none(), "{target}:\n{}", r.dump());
    }
}

async fn programmatic_logins_call_back_to_loopback_only(s: Arc<Stack>) {
    let ask = |uri: &str| {
        let enc: String = url::form_urlencoded::byte_serialize(uri.as_bytes()).collect();
        s.anon(
            "GET",
            &format!("/.gatehouse/api/v1/login?redirect_uri={enc}"),
            "",
        )
    };
    for bad in [
        "https://evil.example/cb",
        "http://evil.example/cb",
        "http://127.0.0.1.evil.example/cb",
        "http://localhost.evil.example/cb",
        "http://127.0.0.1@evil.example/cb",
        "http://localhost:80@evil.example/cb",
        "http://evil.example\\@127.0.0.1/cb",
        "http://evil.example#@127.0.0.1/cb",
        "http://evil.example?@127.0.0.1/cb",
        "http://[::1]@evil.example/cb",
        "http://127.0.0.1\t.evil.example/cb",
        "http:evil.example/cb",
        "http:/evil.example/cb",
        "//evil.example/cb",
        "/cb",
        "javascript:alert(1)//127.0.0.1",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "ftp://127.0.0.1/cb",
        "https://127.0.0.1.nip.io/cb",
        "http://user:pass@127.0.0.1/cb",
        "",
    ] {
        let r = s.send(&ask(bad)).await;
        assert_eq!(r.status, 400, "{bad:?} accepted:\n{}", r.dump());
        assert!(r.header("location").is_none());
    }
    for good in [
        "http://127.0.0.1:9/cb",
        "http://localhost:9/cb",
        "http://[::1]:9/cb",
        "http://127.0.0.2:9/cb?x=1",
    ] {
        let r = s.send(&ask(good)).await;
        assert_eq!(r.status, 200, "{good:?}:\n{}", r.dump());
        let link = String::from_utf8_lossy(&r.body);
        assert!(
            link.starts_with(&s.origin),
            "{good:?}: the sign-in link leaves the origin: {link}"
        );
    }
}

async fn an_unauthenticated_post_is_never_replayed(s: Arc<Stack>) {
    let mark = s.mark();
    // A body the proxy never has to read: the answer comes from the headers.
    let mut conn = RawConn::open(s.gh.addr).await;
    let head = format!(
        "POST /admin/delete?id=7 HTTP/1.1\r\nHost: {}\r\nAccept: text/html\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10737418240\r\n\r\nconfirm=yes",
        s.host
    );
    let t0 = Instant::now();
    conn.send(head.as_bytes()).await.unwrap();
    let r = conn.response().await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(r.status, 302, "{}", r.dump());
    let (_, closed) = conn.drain(Duration::from_secs(3)).await;
    assert!(closed, "the connection owing 10 GiB stays open");
    // Now the whole login: the browser comes back to a GET of that address.
    let start = s
        .start_login(
            "POST",
            "/admin/delete?id=7",
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n",
        )
        .await;
    let url = s.callback_url(&start.authorize, "alice").await;
    let r = s.get_with_state(&url, Some(&start.state_cookie)).await;
    assert_eq!(
        r.header("location"),
        Some("/admin/delete?id=7"),
        "{}",
        r.dump()
    );
    let session = session_set(&r).unwrap();
    assert_nothing(&s.settled_since(&mark).await, "the POST before login");
    let mark = s.mark();
    let r = s
        .send(&s.anon(
            "GET",
            "/admin/delete?id=7",
            &format!("Cookie: {COOKIE}={session}\r\n"),
        ))
        .await;
    assert_eq!(r.status, 200);
    let one = assert_one(&s.since(&mark), "admin", "after login");
    assert_eq!(one.req["method"], "GET");
    assert_eq!(one.req["body_len"], 0);
}

async fn login_urls_come_from_configuration(s: Arc<Stack>) {
    let callback = format!("{}/oauth2/callback", s.origin);
    for extra in [
        "X-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n",
        "Forwarded: host=evil.example;proto=https\r\n",
        "X-Original-Host: evil.example\r\nX-Host: evil.example\r\n",
        "Referer: https://evil.example/\r\nOrigin: https://evil.example\r\n",
    ] {
        let start = s.start_login("GET", "/admin/x", extra).await;
        let url = url::Url::parse(&start.authorize).unwrap();
        let redirect_uri = url
            .query_pairs()
            .find(|(k, _)| k == "redirect_uri")
            .map(|(_, v)| v.into_owned());
        assert_eq!(
            redirect_uri.as_deref(),
            Some(callback.as_str()),
            "{extra:?}: {url}"
        );
        assert!(!start.authorize.contains("evil"), "{extra:?}: {url}");
    }
    // A host spelled differently is the same configured origin.
    let req = format!(
        "GET /admin/x HTTP/1.1\r\nHost: {}\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
        s.host.replace("127.0.0.1", "127.0.0.1.")
    );
    let r = s.send(req.as_bytes()).await;
    let location = r.header("location").unwrap_or_default();
    let url = url::Url::parse(location).unwrap();
    let redirect_uri = url
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned());
    assert_eq!(
        redirect_uri.as_deref(),
        Some(callback.as_str()),
        "{}",
        r.dump()
    );
}

async fn sign_out_and_redirect_routes_ignore_the_client(s: Arc<Stack>) {
    let spoof = "X-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\nForwarded: host=evil.example\r\n";
    for path in [
        "/.gatehouse/sign_out",
        "/.gatehouse/sign_out?redirect_uri=https://evil.example/",
        "/.gatehouse/sign_out?post_logout_redirect_uri=https://evil.example/",
    ] {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{spoof}Content-Length: 0\r\nConnection: close\r\n\r\n",
            s.host
        );
        let r = s.send(req.as_bytes()).await;
        assert_eq!(r.status, 302, "{path}:\n{}", r.dump());
        let location = r.header("location").unwrap_or_default();
        assert!(
            location.starts_with('/') && !location.starts_with("//")
                || location.starts_with(&s.origin),
            "{path} → {location}"
        );
        assert!(!location.contains("evil"), "{path} → {location}");
    }
    let r = s.send(&s.anon("GET", "/moved/x?q=1", spoof)).await;
    assert!(r.status == 301 || r.status == 302, "{}", r.dump());
    let location = r.header("location").unwrap_or_default();
    assert!(!location.contains("evil"), "{location}");
    assert!(
        location.starts_with(&format!("{}/open/landing", s.origin))
            || location.starts_with("/open/landing"),
        "{location}"
    );
}

async fn sign_in_hops_cannot_be_forged(s: Arc<Stack>) {
    let state = s.start_login("GET", "/admin/x", "").await.state_cookie;
    for r in [
        "".to_owned(),
        "junk".to_owned(),
        state,
        s.alice.clone(),
        "https%3A%2F%2Fevil.example".to_owned(),
    ] {
        let resp = s
            .send(&s.anon("GET", &format!("/.gatehouse/sign_in?r={r}"), ""))
            .await;
        assert_eq!(resp.status, 400, "r={r:.20}…:\n{}", resp.dump());
        assert!(resp.header("location").is_none(), "{}", resp.dump());
    }
}
