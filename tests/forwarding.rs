//! What the upstream receives and what the client gets back: rewrites, Host, header
//! operations, X-Forwarded-*, hop-by-hop removal, streaming bodies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::IpAddr;

use serde_json::Value;
use support::{
    public_route, raw_request, raw_request_from,
    upstream::{header_value, header_values, pattern, sha256_hex},
    Gatehouse, RawResponse, Upstream,
};

/// One route on `app.test` to `up` with `extra` route keys; started on a plain listener.
async fn one_route(up: &Upstream, matcher: &str, extra: &str, globals: &str) -> Gatehouse {
    let cfg = format!(
        "{globals}routes:\n{}",
        public_route("http://app.test", matcher, &up.url(), extra)
    );
    Gatehouse::plain(&cfg).await
}

/// Sends `GET path` with extra raw header lines from `local`; returns the response and
/// the request the upstream recorded (taken from the echo body).
async fn send(gh: &Gatehouse, local: &str, path: &str, headers: &str) -> (RawResponse, Value) {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: app.test:{}\r\n{headers}Connection: close\r\n\r\n",
        gh.addr.port()
    );
    let ip: IpAddr = local.parse().unwrap();
    let r = raw_request_from(ip, gh.addr, req.as_bytes()).await.unwrap();
    assert_eq!(r.status, 200, "GET {path}:\n{}", r.dump());
    let echo = r.json();
    (r, echo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_rewrite_replaces_the_matched_prefix() {
    let up = Upstream::start("app").await;
    let gh = one_route(&up, "prefix: /app", "prefix_rewrite: /v2", "").await;
    let (_, echo) = send(&gh, "127.0.0.1", "/app/users?x=1&y=%2F", "").await;
    assert_eq!(echo["path"], "/v2/users?x=1&y=%2F", "{echo}");
    let (_, echo) = send(&gh, "127.0.0.1", "/app", "").await;
    assert!(echo["path"] == "/v2" || echo["path"] == "/v2/", "{echo}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_rewrite_uses_capture_groups() {
    let up = Upstream::start("app").await;
    let extra = "regex_rewrite_pattern: \"^/service/([^/]+)(/.*)$\"\nregex_rewrite_substitution: \"\\\\2/instance/\\\\1\"";
    let gh = one_route(&up, "prefix: /service", extra, "").await;
    let (_, echo) = send(&gh, "127.0.0.1", "/service/foo/v1/api?q=1", "").await;
    assert_eq!(echo["path"], "/v1/api/instance/foo?q=1", "{echo}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_defaults_to_the_upstream() {
    let up = Upstream::start("app").await;
    let gh = one_route(&up, "", "", "").await;
    let (_, echo) = send(&gh, "127.0.0.1", "/", "").await;
    assert_eq!(
        header_value(&echo, "host"),
        Some(up.addr.to_string()),
        "{echo}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preserve_host_header_keeps_the_client_host() {
    let up = Upstream::start("app").await;
    let gh = one_route(&up, "", "preserve_host_header: true", "").await;
    let (_, echo) = send(&gh, "127.0.0.1", "/", "").await;
    assert_eq!(
        header_value(&echo, "host"),
        Some(format!("app.test:{}", gh.addr.port())),
        "{echo}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_rewrite_sets_the_host() {
    let up = Upstream::start("app").await;
    let gh = one_route(&up, "", "host_rewrite: rewritten.test", "").await;
    let (_, echo) = send(&gh, "127.0.0.1", "/", "").await;
    assert_eq!(
        header_value(&echo, "host"),
        Some("rewritten.test".to_string()),
        "{echo}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_and_remove_request_headers() {
    let up = Upstream::start("app").await;
    let extra = "set_request_headers: {X-Added: yes-added, X-Override: from-config}\nremove_request_headers: [X-Secret]";
    let gh = one_route(&up, "", extra, "").await;
    let (_, echo) = send(
        &gh,
        "127.0.0.1",
        "/",
        "X-Override: from-client\r\nX-Secret: s3cret\r\nX-Kept: kept\r\n",
    )
    .await;
    assert_eq!(header_values(&echo, "x-added"), ["yes-added"], "{echo}");
    assert_eq!(
        header_values(&echo, "x-override"),
        ["from-config"],
        "set replaces the client's value: {echo}"
    );
    assert!(header_values(&echo, "x-secret").is_empty(), "{echo}");
    assert_eq!(header_values(&echo, "x-kept"), ["kept"], "{echo}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_headers_are_set_with_default_security_headers() {
    let up = Upstream::start("app").await;
    let extra = "set_response_headers: {X-Custom: custom-1}";
    let gh = one_route(&up, "", extra, "").await;
    let (r, _) = send(&gh, "127.0.0.1", "/", "").await;
    assert_eq!(r.headers_named("x-custom"), ["custom-1"], "{}", r.dump());
    assert_eq!(
        r.headers_named("x-frame-options"),
        ["SAMEORIGIN"],
        "{}",
        r.dump()
    );
    assert_eq!(
        r.headers_named("x-content-type-options"),
        ["nosniff"],
        "{}",
        r.dump()
    );
    assert!(
        r.header("strict-transport-security").is_none(),
        "no HSTS on plain HTTP:\n{}",
        r.dump()
    );
    assert!(
        r.header("x-request-id").is_some_and(|v| !v.is_empty()),
        "{}",
        r.dump()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_response_headers_override_the_defaults() {
    let up = Upstream::start("app").await;
    let gh = one_route(&up, "", "set_response_headers: {X-Frame-Options: DENY}", "").await;
    let (r, _) = send(&gh, "127.0.0.1", "/", "").await;
    assert_eq!(r.headers_named("x-frame-options"), ["DENY"], "{}", r.dump());
}

const SPOOFED: &str = "X-Forwarded-For: 10.0.0.1, 10.0.0.9\r\nX-Real-IP: 10.0.0.2\r\nForwarded: for=10.0.0.3;proto=https\r\nX-Forwarded-Host: evil.test\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 1\r\nX-Original-URI: /admin\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_from_an_untrusted_peer_are_replaced() {
    let up = Upstream::start("app").await;
    let gh = one_route(&up, "", "", "trusted_proxies: [127.0.0.2/32]\n").await;
    let (_, echo) = send(&gh, "127.0.0.1", "/", SPOOFED).await;
    assert_eq!(
        header_values(&echo, "x-forwarded-for"),
        ["127.0.0.1"],
        "{echo}"
    );
    assert_eq!(
        header_values(&echo, "x-forwarded-proto"),
        ["http"],
        "{echo}"
    );
    assert_eq!(
        header_values(&echo, "x-forwarded-host"),
        [format!("app.test:{}", gh.addr.port())],
        "{echo}"
    );
    for h in [
        "x-real-ip",
        "forwarded",
        "x-forwarded-port",
        "x-original-uri",
    ] {
        assert!(
            header_values(&echo, h)
                .iter()
                .all(|v| !v.contains("10.0.0") && v != "1" && v != "/admin"),
            "{h}: {echo}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_a_trusted_peer_is_extended() {
    let up = Upstream::start("app").await;
    let gh = one_route(&up, "", "", "trusted_proxies: [127.0.0.2/32]\n").await;
    let (_, echo) = send(
        &gh,
        "127.0.0.2",
        "/",
        "X-Forwarded-For: 10.0.0.1, 10.0.0.9\r\n",
    )
    .await;
    assert_eq!(
        header_values(&echo, "x-forwarded-for"),
        ["10.0.0.1, 10.0.0.9, 127.0.0.2"],
        "{echo}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sent_identity_headers_never_reach_the_upstream() {
    let up = Upstream::start("app").await;
    let gh = one_route(&up, "", "", "").await;
    let spoof = "X-Gatehouse-Jwt-Assertion: forged\r\nx-gatehouse-jwt-assertion: forged2\r\nX-GATEHOUSE-CLAIM-GROUPS: admins\r\nX-Gatehouse-Claim-Email: boss@example.test\r\nX-Forwarded-User: boss\r\nRemote-User: boss\r\n";
    let (_, echo) = send(&gh, "127.0.0.1", "/", spoof).await;
    for (name, _) in echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h[0].as_str().unwrap().to_ascii_lowercase(), ()))
    {
        assert!(
            !name.starts_with("x-gatehouse-")
                && name != "x-forwarded-user"
                && name != "remote-user",
            "identity header {name} reached the upstream: {echo}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let up = Upstream::start("app").await;
    let gh = one_route(&up, "", "", "").await;
    let hop = "Connection: keep-alive, X-Drop-Me\r\nX-Drop-Me: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nX-Kept: 1\r\n";
    // `send` adds `Connection: close` after these; both Connection headers count.
    let (r, echo) = send(&gh, "127.0.0.1", "/hop", hop).await;
    for h in [
        "x-drop-me",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "proxy-authorization",
    ] {
        assert!(
            header_values(&echo, h).is_empty(),
            "{h} reached the upstream: {echo}"
        );
    }
    for v in header_values(&echo, "connection") {
        assert!(
            !v.to_ascii_lowercase().contains("x-drop-me"),
            "Connection: {v}"
        );
    }
    assert_eq!(header_values(&echo, "x-kept"), ["1"], "{echo}");
    // The upstream's own `Connection: X-Up-Private` names a header that must not reach us.
    assert!(r.header("x-up-private").is_none(), "{}", r.dump());
    assert!(r.header("keep-alive").is_none(), "{}", r.dump());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_streams_through_intact() {
    let up = Upstream::start("app").await;
    let gh = one_route(&up, "", "", "").await;
    let data = pattern(20 * 1024 * 1024);
    let want = sha256_hex(&data);
    let client = gh.client(&["app.test"]);
    let r = client
        .post(gh.host_url("http", "app.test", "/upload"))
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["body_len"], 20 * 1024 * 1024, "{echo}");
    assert_eq!(echo["body_sha256"], want.as_str(), "{echo}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_download_streams_through_intact() {
    let up = Upstream::start("app").await;
    let gh = one_route(&up, "", "", "").await;
    let n = 20 * 1024 * 1024;
    let client = gh.client(&["app.test"]);
    let r = client
        .get(gh.host_url("http", "app.test", &format!("/bytes/{n}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), n);
    assert_eq!(sha256_hex(&body), sha256_hex(&pattern(n)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_streams_through_intact() {
    let up = Upstream::start("app").await;
    let gh = one_route(&up, "", "", "").await;
    let data = pattern(3 * 1024 * 1024 + 17);
    let mut req = String::from("POST /chunked HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").into_bytes();
    for c in data.chunks(100_000) {
        req.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        req.extend_from_slice(c);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = raw_request(gh.addr, &req).await;
    assert_eq!(r.status, 200, "{}", r.dump());
    let echo = r.json();
    assert_eq!(echo["body_len"], data.len(), "{echo}");
    assert_eq!(echo["body_sha256"], sha256_hex(&data).as_str(), "{echo}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_http2_and_http1_share_the_plain_listener() {
    let up = Upstream::start("app").await;
    let gh = one_route(&up, "", "", "").await;
    let url = format!("http://app.test:{}/h2c?x=1", gh.addr.port());
    // h2c with prior knowledge, then HTTP/1.1 keep-alive on another connection.
    let h2 = support::http_client_builder()
        .http2_prior_knowledge()
        .resolve("app.test", gh.addr)
        .build()
        .unwrap();
    let h1 = support::http_client_builder()
        .http1_only()
        .resolve("app.test", gh.addr)
        .build()
        .unwrap();
    for client in [&h2, &h1, &h1] {
        let r = client.get(&url).send().await.unwrap();
        let version = r.version();
        assert_eq!(r.status(), 200, "{version:?}");
        let seen: Value = r.json().await.unwrap();
        assert_eq!(seen["path"], "/h2c?x=1", "{version:?}");
    }
    assert_eq!(
        h2.get(&url).send().await.unwrap().version(),
        reqwest::Version::HTTP_2
    );
    assert_eq!(
        h1.get(&url).send().await.unwrap().version(),
        reqwest::Version::HTTP_11
    );
    assert_eq!(up.hits(), 5);
}
