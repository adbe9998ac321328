//! Route policies decide anonymous requests end to end (sessions arrive with the identity
//! work): criteria that need no user, deny details, login-needed answers, and a policy
//! changed by hot reload taking effect on the very next request.

mod support;

use support::{assert_error_page, raw::raw_request, upstream::Upstream, Gatehouse};

fn config(up: &str, policy: &str) -> String {
    format!(
        "routes:
  - from: http://app.test
    prefix: /api
    to: {up}
    show_error_details: true
    policy: {policy}
  - from: http://app.test
    prefix: /me
    to: {up}
    allow_any_authenticated_user: true
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_and_source_policies_decide_without_a_user() {
    let up = Upstream::start("api").await;
    let policy = "{allow: {and: [{accept: true}, {http_method: {in: [GET, HEAD]}}, {source_ip: 127.0.0.0/8}]}}";
    let gh = Gatehouse::plain(&config(&up.url(), policy)).await;

    let r = gh.get("app.test", "/api/items").await;
    assert_eq!(r.status, 200, "{}", r.dump());
    assert_eq!(up.hits(), 1);

    let post = b"POST /api/items HTTP/1.1\r\nHost: app.test\r\nAccept: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let r = raw_request(gh.addr, post).await;
    assert_error_page(&r, 403, "Forbidden");
    // show_error_details: the deny names its reason.
    assert!(
        String::from_utf8_lossy(&r.body).contains("http-method-unauthorized"),
        "{}",
        r.dump()
    );
    assert_eq!(up.hits(), 1, "a denied request reached the upstream");
}

/// A policy that decides on the method cannot be walked around by naming another one to an
/// upstream that honours overrides; routes whose policy ignores the method are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_overrides_are_refused_where_the_policy_reads_the_method() {
    let up = Upstream::start("api").await;
    let policy = "{allow: {and: [{http_method: {in: [GET, HEAD, POST]}}]}}";
    let cfg = format!(
        "{}  - from: http://app.test
    prefix: /any
    to: {}
    allow_public_unauthenticated_access: true
",
        config(&up.url(), policy),
        up.url()
    );
    let gh = Gatehouse::plain(&cfg).await;
    let send = |head: String| {
        let addr = gh.addr;
        async move { raw_request(addr, head.as_bytes()).await }
    };
    for (method, target, extra) in [
        ("GET", "/api/items/1", "X-HTTP-Method-Override: DELETE\r\n"),
        ("GET", "/api/items/1", "x-http-method: DELETE\r\n"),
        ("GET", "/api/items/1", "X-Method-Override: PUT\r\n"),
        ("POST", "/api/items/1?_method=DELETE", ""),
        ("POST", "/api/items/1?a=1&%5Fmethod=DELETE", ""),
    ] {
        let r = send(format!(
            "{method} {target} HTTP/1.1\r\nHost: app.test\r\nAccept: application/json\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
        ))
        .await;
        assert_error_page(&r, 400, "Bad Request");
        assert!(
            String::from_utf8_lossy(&r.body).contains("method-override"),
            "{method} {target} {extra}: {}",
            r.dump()
        );
    }
    assert_eq!(up.hits(), 0, "an override reached the upstream");
    // Without an override, and on a route whose policy does not read the method.
    let r = send(
        "GET /api/items/1?_method=DELETE HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
            .into(),
    )
    .await;
    assert_eq!(r.status, 200, "a GET's query is the app's: {}", r.dump());
    let r = send("GET /any/x HTTP/1.1\r\nHost: app.test\r\nX-HTTP-Method-Override: DELETE\r\nConnection: close\r\n\r\n".into()).await;
    assert_eq!(r.status, 200, "{}", r.dump());
    assert_eq!(up.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_that_need_a_user_answer_401_and_forward_nothing() {
    let up = Upstream::start("me").await;
    let gh = Gatehouse::plain(&config(&up.url(), "{allow: {and: [{accept: true}]}}")).await;
    let r = gh.get("app.test", "/me").await;
    assert_error_page(&r, 401, "Unauthorized");
    assert_eq!(up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_policy_applies_to_the_next_request() {
    let up = Upstream::start("api").await;
    let gh = Gatehouse::plain(&config(&up.url(), "{allow: {and: [{accept: true}]}}")).await;
    assert_eq!(gh.get("app.test", "/api/x").await.status, 200);

    gh.reload_with(&config(&up.url(), "{allow: {and: [{reject: true}]}}"));
    let denied = support::poll_until(std::time::Duration::from_secs(5), || async {
        (gh.get("app.test", "/api/x").await.status == 403).then_some(())
    })
    .await;
    assert!(denied.is_some(), "the reloaded policy never applied");
    // From the first denied request on, every request is denied: no stale allow.
    for _ in 0..20 {
        assert_eq!(gh.get("app.test", "/api/x").await.status, 403);
    }
}
