//! Route selection: host (exact, then wildcard; port-specific `from`), then the most
//! specific path; `redirect` and `response` routes; gatehouse's own 404.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{assert_error_page, public_route, Gatehouse, Upstream};

/// Starts one upstream per name.
async fn upstreams(names: &[&str]) -> Vec<Upstream> {
    let mut v = Vec::new();
    for n in names {
        v.push(Upstream::start(n).await);
    }
    v
}

/// Asserts `GET path` on `host` reaches the upstream named `want`, which received `path`.
async fn assert_routed(gh: &Gatehouse, host: &str, path: &str, want: &str) {
    let r = gh.get(host, path).await;
    assert_eq!(r.status, 200, "GET {host}{path}:\n{}", r.dump());
    let echo = r.json();
    assert_eq!(
        echo["name"], want,
        "GET {host}{path} went to the wrong route: {echo}"
    );
    assert_eq!(echo["path"], path, "GET {host}{path} forwarded path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn most_specific_path_wins_and_ties_go_to_first_declared() {
    let names = [
        "regex-api",
        "prefix-api",
        "prefix-api-v1",
        "exact",
        "dup-prefix",
        "regex-files-num",
        "regex-files-any",
        "catch-all",
    ];
    let ups = upstreams(&names).await;
    let h = "http://app.test";
    let mut cfg = String::from("routes:\n");
    // Declared so that order alone would pick the wrong one: regex first, catch-all last.
    cfg += &public_route(h, "regex: \"^/api/.*$\"", &ups[0].url(), "");
    cfg += &public_route(h, "prefix: /api", &ups[1].url(), "");
    cfg += &public_route(h, "prefix: /api/v1", &ups[2].url(), "");
    cfg += &public_route(h, "path: /api/v1/users", &ups[3].url(), "");
    cfg += &public_route(h, "prefix: /api/v1", &ups[4].url(), "");
    cfg += &public_route(h, "regex: \"^/files/[0-9]+$\"", &ups[5].url(), "");
    cfg += &public_route(h, "regex: \"^/files/.*$\"", &ups[6].url(), "");
    cfg += &public_route(h, "", &ups[7].url(), "");
    let gh = Gatehouse::plain(&cfg).await;

    let table = [
        ("/api/v1/users", "exact"),
        ("/api/v1/users?x=1", "exact"),
        ("/api/v1/users/42", "prefix-api-v1"),
        ("/api/v1", "prefix-api-v1"),
        ("/api/v1/", "prefix-api-v1"),
        ("/api/v1x", "prefix-api"),
        ("/api", "prefix-api"),
        ("/api/other", "prefix-api"),
        ("/apix", "catch-all"),
        ("/files/12", "regex-files-num"),
        ("/files/ab", "regex-files-any"),
        ("/files/12?n=x", "regex-files-num"),
        ("/", "catch-all"),
        ("/other/thing", "catch-all"),
    ];
    for (path, want) in table {
        assert_routed(&gh, "app.test", path, want).await;
    }
    assert_eq!(
        ups[4].hits(),
        0,
        "a duplicate prefix must lose to the first declared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_host_beats_wildcard_and_wildcard_spans_labels() {
    let ups = upstreams(&["wild", "exact"]).await;
    let mut cfg = String::from("routes:\n");
    cfg += &public_route("http://*.example.test", "", &ups[0].url(), "");
    cfg += &public_route("http://exact.example.test", "", &ups[1].url(), "");
    let gh = Gatehouse::plain(&cfg).await;

    assert_routed(&gh, "exact.example.test", "/", "exact").await;
    assert_routed(&gh, "EXACT.Example.TEST", "/", "exact").await;
    assert_routed(
        &gh,
        &format!("exact.example.test:{}", gh.addr.port()),
        "/",
        "exact",
    )
    .await;
    assert_routed(&gh, "a.example.test", "/", "wild").await;
    assert_routed(&gh, "a.b.example.test", "/x", "wild").await;
    // The bare domain is not covered by `*.example.test`, nor a look-alike suffix.
    assert_error_page(&gh.get("example.test", "/").await, 404, "Not Found");
    assert_error_page(&gh.get("aexample.test", "/").await, 404, "Not Found");
    assert_error_page(&gh.get("a.example.test.evil", "/").await, 404, "Not Found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_with_port_matches_only_that_port() {
    let ups = upstreams(&["port-1234", "any-port"]).await;
    let mut cfg = String::from("routes:\n");
    cfg += &public_route("http://app.test:1234", "", &ups[0].url(), "");
    cfg += &public_route("http://app.test", "", &ups[1].url(), "");
    cfg += &public_route("http://only.test:1234", "", &ups[0].url(), "");
    let gh = Gatehouse::plain(&cfg).await;

    assert_routed(&gh, "app.test:1234", "/", "port-1234").await;
    assert_routed(
        &gh,
        &format!("app.test:{}", gh.addr.port()),
        "/",
        "any-port",
    )
    .await;
    assert_routed(&gh, "only.test:1234", "/", "port-1234").await;
    assert_error_page(
        &gh.get(&format!("only.test:{}", gh.addr.port()), "/").await,
        404,
        "Not Found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_gatehouse_404_json_or_html() {
    let up = Upstream::start("only").await;
    let cfg = format!(
        "routes:\n{}",
        public_route("http://app.test", "prefix: /app", &up.url(), "")
    );
    let gh = Gatehouse::plain(&cfg).await;

    assert_error_page(&gh.get("app.test", "/elsewhere").await, 404, "Not Found");
    assert_error_page(&gh.get("unknown.test", "/app").await, 404, "Not Found");

    let html = support::raw_request(
        gh.addr,
        b"GET /elsewhere HTTP/1.1\r\nHost: app.test\r\nAccept: text/html,application/xhtml+xml,*/*;q=0.8\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(html.status, 404, "{}", html.dump());
    assert!(
        html.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{}",
        html.dump()
    );
    let id = html
        .header("x-request-id")
        .expect("X-Request-Id on the HTML page")
        .to_string();
    assert!(
        String::from_utf8_lossy(&html.body).contains(&id),
        "the page quotes the request id:\n{}",
        html.dump()
    );
    assert_eq!(up.hits(), 0, "no request may reach the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_routes_answer_with_location() {
    let cfg = "routes:
  - from: http://app.test
    prefix: /old
    redirect: {prefix_rewrite: /new}
    allow_public_unauthenticated_access: true
  - from: http://app.test
    path: /moved
    redirect: {scheme_redirect: https, host_redirect: other.test, path_redirect: /landing, response_code: 302}
    allow_public_unauthenticated_access: true
";
    let gh = Gatehouse::plain(cfg).await;

    let r = gh.get("app.test", "/old/page?q=1").await;
    assert_eq!(r.status, 301, "default redirect code:\n{}", r.dump());
    let loc = r.header("location").expect("Location");
    let u = url::Url::parse(loc)
        .or_else(|_| url::Url::parse("http://app.test").unwrap().join(loc))
        .unwrap();
    assert_eq!(
        (u.path(), u.query()),
        ("/new/page", Some("q=1")),
        "Location {loc}"
    );

    let r = gh.get("app.test", "/moved?q=2").await;
    assert_eq!(r.status, 302, "{}", r.dump());
    let loc = r.header("location").expect("Location");
    let u = url::Url::parse(loc).unwrap_or_else(|e| panic!("Location {loc:?} not absolute: {e}"));
    assert_eq!(u.scheme(), "https", "Location {loc}");
    assert_eq!(u.host_str(), Some("other.test"), "Location {loc}");
    assert_eq!(
        (u.path(), u.query()),
        ("/landing", Some("q=2")),
        "Location {loc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_route_answers_locally() {
    let cfg = "routes:
  - from: http://app.test
    path: /teapot
    response: {status: 418, body: \"short and stout\"}
    allow_public_unauthenticated_access: true
";
    let gh = Gatehouse::plain(cfg).await;
    let r = gh.get("app.test", "/teapot").await;
    assert_eq!(r.status, 418, "{}", r.dump());
    assert_eq!(r.body, b"short and stout", "{}", r.dump());
    assert!(
        r.header("x-request-id").is_some(),
        "every response has X-Request-Id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_without_public_access_answer_403_for_now() {
    let up = Upstream::start("private").await;
    let cfg = format!("routes:\n  - from: http://app.test\n    to: {}\n", up.url());
    let gh = Gatehouse::plain(&cfg).await;
    assert_error_page(&gh.get("app.test", "/").await, 403, "Forbidden");
    assert_eq!(up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_serves_health_and_metrics_public_listener_does_not() {
    let up = Upstream::start("app").await;
    let cfg = format!(
        "routes:\n{}",
        public_route("http://app.test", "", &up.url(), "")
    );
    let gh = Gatehouse::plain(&cfg).await;
    assert_eq!(gh.get("app.test", "/").await.status, 200);

    assert_eq!(gh.admin_get("/healthz").await.status, 200);
    let m = gh.admin_get("/metrics").await;
    assert_eq!(m.status, 200, "{}", m.dump());
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("gatehouse_"),
        "Prometheus text with gatehouse_ metrics:\n{text}"
    );

    for path in ["/metrics", "/readyz", "/healthz"] {
        let host = gh.addr.to_string();
        assert_error_page(&gh.get(&host, path).await, 404, "Not Found");
    }
}
