//! Smuggling across the messages of one HTTP/1.1 connection: pipelined requests each
//! authorized on their own, bodies of requests gatehouse answers itself never read as
//! requests, upgrades that never open a tunnel, upstream connections that still owe body bytes
//! never reused, and ambiguous upstream framing that never desyncs responses.

use std::{sync::Arc, time::Duration};

use crate::runner::Report;
use crate::smuggling::{assert_in_step, assert_not_smuggled, converse, head, smuggled};
use crate::stack::{assert_consistent, assert_nothing, describe, Kind, Options, Stack, COOKIE};
use crate::support::RawConn;
use crate::{cases, kind_cases};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_across_a_connection() {
    let s = Stack::start(Options::default()).await;
    let mut report = Report::default();
    report
        .kinds(
            &s,
            kind_cases![
                pipelined_requests_are_each_authorized,
                upgrades_never_open_a_tunnel,
            ],
        )
        .await;
    report
        .each(
            &s,
            cases![
                bodies_of_locally_answered_requests_are_never_requests,
                connections_owing_body_bytes_are_never_reused,
                ambiguous_upstream_framing_never_desyncs_responses,
            ],
        )
        .await;
    report.finish("connections");
}

async fn pipelined_requests_are_each_authorized(s: Arc<Stack>, k: Kind) {
    let p = k.prefix();
    let with = |path: &str| format!("{}\r\n", head(&s, k, "GET", path));
    let without = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n\r\n",
            s.host
        )
    };
    // Credentials on the first only; then none; then into the vault with them.
    let bytes = format!(
        "{}{}{}",
        with(&format!("{p}/one")),
        without(&format!("{p}/two")),
        with("/vault/three"),
    );
    let mark = s.mark();
    let mut conn = RawConn::open(s.gh.addr).await;
    conn.send(bytes.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        match conn.response().await {
            Ok(r) => got.push(r.status),
            Err(_) => break,
        }
    }
    let seen = s.settled_since(&mark).await;
    let two = if k.signed_in() { 401 } else { 200 };
    let three = if k.signed_in() { 403 } else { 401 };
    assert_eq!(got.first(), Some(&200), "{got:?}");
    // A proxy may close after any response; each answer it gives is the right one.
    for (i, (got, want)) in got.iter().zip([200, two, three]).enumerate() {
        assert_eq!(*got, want, "pipelined request {} got {got}", i + 1);
    }
    let here: Vec<&str> = seen.iter().map(|x| x.path()).collect();
    let mut want = vec![format!("{p}/one")];
    if got.len() > 1 && !k.signed_in() {
        want.push(format!("{p}/two"));
    }
    assert_eq!(here, want, "{}", describe(&seen));
    // The other way round: the credential on the second only.
    let bytes = format!("{}{}", without(&format!("{p}/a")), with(&format!("{p}/b")));
    let mark = s.mark();
    let mut conn = RawConn::open(s.gh.addr).await;
    conn.send(bytes.as_bytes()).await.unwrap();
    let first = conn.response().await.unwrap();
    let second = conn.response().await;
    let seen = s.settled_since(&mark).await;
    if k.signed_in() {
        assert_eq!(first.status, 401, "{}", first.dump());
        if let Ok(r) = &second {
            assert_eq!(r.status, 200, "{}", r.dump());
        }
        assert!(
            seen.iter().all(|x| x.path() == format!("{p}/b")),
            "{}",
            describe(&seen)
        );
    }
}

async fn upgrades_never_open_a_tunnel(s: Arc<Stack>, k: Kind) {
    let p = k.prefix();
    let cookie = if k.signed_in() {
        format!("Cookie: {COOKIE}={}\r\n", s.alice)
    } else {
        String::new()
    };
    let follow = format!(
        "GET /vault/tunnel HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        s.host
    );
    for upgrade in [
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 1337\r\n",
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
        "Upgrade: websocket, h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        "Upgrade: tls/1.2\r\nConnection: Upgrade\r\n",
        "Upgrade: h2c\r\nConnection: Upgrade\r\n",
    ] {
        let req = format!(
            "GET {p}/up HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n{cookie}{upgrade}\r\n",
            s.host
        );
        let (first, after, seen) = converse(&s, req.as_bytes(), Some(follow.as_bytes())).await;
        let what = format!("{upgrade:?}");
        assert!(first != Some(101) && !after.contains(&101), "{what}: switched protocols");
        for one in &seen {
            assert!(
                !one.path().contains("tunnel"),
                "{what}: the request after the upgrade went through a tunnel to {}",
                one.upstream
            );
            for v in one.header("upgrade") {
                assert!(
                    k == Kind::Ws && v.eq_ignore_ascii_case("websocket"),
                    "{what}: Upgrade: {v} reached {}",
                    one.upstream
                );
            }
        }
        assert_consistent(&seen, &what);
        // The request after it, if answered, was decided by gatehouse.
        assert!(after.is_empty() || after == [401], "{what}: {after:?}");
    }
}

async fn bodies_of_locally_answered_requests_are_never_requests(s: Arc<Stack>) {
    let smuggle = smuggled(&s);
    let bob = format!("Cookie: {COOKIE}={}\r\n", s.bob);
    // (what, request line + headers before the framing, expected first status)
    let local: Vec<(&str, String, u16)> = vec![
        (
            "401 (no session)",
            format!(
                "POST /admin/x HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n",
                s.host
            ),
            401,
        ),
        (
            "302 (browser login)",
            format!(
                "POST /admin/x HTTP/1.1\r\nHost: {}\r\nAccept: text/html\r\n",
                s.host
            ),
            302,
        ),
        (
            "403 (not in the group)",
            format!("POST /admin/x HTTP/1.1\r\nHost: {}\r\n{bob}", s.host),
            403,
        ),
        (
            "401 on the WebSocket route",
            format!("POST /ws/x HTTP/1.1\r\nHost: {}\r\n", s.host),
            401,
        ),
        (
            "400 (bad path)",
            format!("POST /open/%2f HTTP/1.1\r\nHost: {}\r\n", s.host),
            400,
        ),
        (
            "404 (no route)",
            "POST /x HTTP/1.1\r\nHost: nowhere.example\r\n".to_owned(),
            404,
        ),
        (
            "user endpoint",
            format!("POST /.gatehouse/user HTTP/1.1\r\nHost: {}\r\n", s.host),
            401,
        ),
        (
            "JWKS",
            format!(
                "POST /.well-known/gatehouse/jwks.json HTTP/1.1\r\nHost: {}\r\n",
                s.host
            ),
            200,
        ),
        (
            "response route",
            format!("POST /teapot HTTP/1.1\r\nHost: {}\r\n", s.host),
            418,
        ),
        (
            "redirect route",
            format!("POST /moved/x HTTP/1.1\r\nHost: {}\r\n", s.host),
            301,
        ),
        (
            "sign-out without a session",
            format!("POST /.gatehouse/sign_out HTTP/1.1\r\nHost: {}\r\n", s.host),
            302,
        ),
        (
            "programmatic login",
            format!(
                "POST /.gatehouse/api/v1/login HTTP/1.1\r\nHost: {}\r\n",
                s.host
            ),
            400,
        ),
        (
            "callback",
            format!(
                "POST /oauth2/callback?state=x&code=y HTTP/1.1\r\nHost: {}\r\n",
                s.host
            ),
            400,
        ),
    ];
    let chunked = format!("{:x}\r\n{smuggle}\r\n0\r\n\r\n", smuggle.len());
    for (what, start, status) in &local {
        for (framing, body) in [
            (
                format!("Content-Length: {}\r\n", smuggle.len()),
                smuggle.clone(),
            ),
            ("Transfer-Encoding: chunked\r\n".to_owned(), chunked.clone()),
            (
                format!(
                    "Content-Length: {}\r\nExpect: 100-continue\r\n",
                    smuggle.len()
                ),
                smuggle.clone(),
            ),
        ] {
            let req = format!("{start}{framing}\r\n{body}");
            let (first, after, seen) = converse(&s, req.as_bytes(), None).await;
            let label = format!("{what} with {framing:?}");
            assert_eq!(first, Some(*status), "{label}");
            assert_not_smuggled(&seen, &label);
            // After it: the connection closed, or the next request was read as one.
            assert_in_step(&after, &label);
            assert_nothing(&seen, &label);
        }
    }
}

async fn connections_owing_body_bytes_are_never_reused(s: Arc<Stack>) {
    let mark = s.mark();
    // Clients that promise 100 bytes, send 40 and give up.
    for _ in 0..3 {
        let mut conn = RawConn::open(s.gh.addr).await;
        let req = format!(
            "POST /open/owe HTTP/1.1\r\nHost: {}\r\nContent-Length: 100\r\n\r\n{}",
            s.host,
            "x".repeat(40)
        );
        conn.send(req.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(conn);
    }
    // Then ordinary requests, which may reuse pooled upstream connections.
    for i in 0..6 {
        let r = s.send(&s.anon("GET", &format!("/open/next-{i}"), "")).await;
        assert_eq!(r.status, 200, "{}", r.dump());
        assert_eq!(r.json()["path"], format!("/open/next-{i}"), "{}", r.dump());
        assert_eq!(r.json()["body_len"], 0, "{}", r.dump());
    }
    let seen = s.settled_since(&mark).await;
    for one in &seen {
        let body = one.req["body"].as_str().unwrap_or_default();
        assert!(
            !body.contains("GET /open/next"),
            "a request became the body of an unfinished one: {}",
            one.raw_head()
        );
        assert!(
            one.path() != "/open/owe" || one.req["body_len"] != 100,
            "{}",
            one.raw_head()
        );
    }
    let next = seen
        .iter()
        .filter(|x| x.path().starts_with("/open/next-"))
        .count();
    assert_eq!(next, 6, "{}", describe(&seen));
}

async fn ambiguous_upstream_framing_never_desyncs_responses(s: Arc<Stack>) {
    // The upstream answers with framing that disagrees with itself; whatever the client gets,
    // later requests (on pooled upstream connections) get their own answers.
    for field in [
        "Content-Length: 5",
        "Content-Length: 99999",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: identity",
        "Content-Length: -1",
    ] {
        let enc: String = url::form_urlencoded::byte_serialize(field.as_bytes()).collect();
        let r = s
            .try_send(&s.anon("GET", &format!("/open/ambiguous?resp_header={enc}"), ""))
            .await;
        if let Ok(r) = &r {
            assert!(r.status == 200 || r.status == 502, "{field}: {}", r.dump());
            let lengths = r.headers_named("content-length");
            assert!(
                lengths.len() <= 1,
                "{field}: several Content-Length to the client: {}",
                r.dump()
            );
            assert!(
                lengths.is_empty() || r.header("transfer-encoding").is_none(),
                "{field}: Content-Length and Transfer-Encoding to the client: {}",
                r.dump()
            );
        }
        for i in 0..4 {
            let path = format!("/open/after-{i}");
            let r = s.send(&s.anon("GET", &path, "")).await;
            assert_eq!(r.status, 200, "{field}, then {path}: {}", r.dump());
            assert_eq!(
                r.json()["path"],
                path,
                "{field}: a response went to the wrong request"
            );
        }
    }
}
