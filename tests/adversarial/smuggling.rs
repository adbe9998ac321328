//! Request smuggling and protocol edge cases over HTTP/1.1: conflicting or malformed
//! framing, bodies that carry a second request (on routes answered by gatehouse itself),
//! pipelining, trailers, upgrades that could open a tunnel, odd request lines, and upstream
//! connections that still owe body bytes. The smuggled requests aim at the public route, so
//! that one processed anywhere shows up at its upstream.

use std::{sync::Arc, time::Duration};

use crate::stack::{
    assert_consistent, assert_nothing, describe, lossy, Kind, Options, Report, Seen, Stack, COOKIE,
};
use crate::support::RawConn;
use crate::{cases, kind_cases};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_and_protocol() {
    let s = Stack::start(Options::default()).await;
    let mut report = Report::default();
    report
        .kinds(
            &s,
            kind_cases![
                conflicting_framing_never_smuggles,
                malformed_framing_is_refused,
                pipelined_requests_are_each_authorized,
                request_trailers_never_become_headers,
                upgrades_never_open_a_tunnel,
                odd_request_lines_are_refused_or_consistent,
                expect_continue_is_only_sent_when_allowed,
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
    report.finish("smuggling");
}

/// The request hidden in a body: public, so that processing it anywhere is visible.
fn smuggled(s: &Stack) -> String {
    format!("GET /open/smuggled HTTP/1.1\r\nHost: {}\r\n\r\n", s.host)
}

/// Status codes of every HTTP/1 response head in `bytes`.
fn statuses(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    for (i, _) in text.match_indices("HTTP/1.") {
        if i == 0 || text[..i].ends_with('\n') {
            if let Some(code) = text.get(i + 9..i + 12).and_then(|c| c.parse().ok()) {
                out.push(code);
            }
        }
    }
    out
}

/// Sends `first` on a fresh connection, then, once it is answered, `follow` (by default a
/// public probe request with `Connection: close`, which ends the exchange quickly and shows
/// whether the connection was still in step). Returns the first status, the statuses after
/// it, and what the upstreams saw (the probe left out).
async fn converse(
    s: &Stack,
    first: &[u8],
    follow: Option<&[u8]>,
) -> (Option<u16>, Vec<u16>, Vec<Seen>) {
    let probe = format!(
        "GET /open/probe HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        s.host
    );
    let follow = follow.unwrap_or(probe.as_bytes());
    let mark = s.mark();
    let mut conn = RawConn::open(s.gh.addr).await;
    let _ = conn.send(first).await;
    let first_status = match conn.response_within(Duration::from_secs(5)).await {
        Ok(r) => Some(r.status),
        Err(e) => {
            assert!(
                e.kind() != std::io::ErrorKind::TimedOut,
                "{}: {e}",
                lossy(first)
            );
            None
        }
    };
    if first_status.is_some() {
        let _ = conn.send(follow).await;
    }
    let (rest, closed) = conn.drain(Duration::from_secs(3)).await;
    assert!(
        closed,
        "{}: the connection neither answered nor closed",
        lossy(first)
    );
    let seen = s
        .since(&mark)
        .into_iter()
        .filter(|x| x.path() != "/open/probe")
        .collect();
    (first_status, statuses(&rest), seen)
}

/// After the first answer, at most the probe's (200): nothing parsed out of a body.
#[track_caller]
fn assert_in_step(after: &[u16], what: &str) {
    assert!(
        after.is_empty() || after == [200],
        "{what}: answers after the first: {after:?}"
    );
}

/// Nothing received anywhere was the smuggled request.
#[track_caller]
fn assert_not_smuggled(seen: &[Seen], what: &str) {
    for one in seen {
        assert!(
            !one.path().contains("smuggled"),
            "{what}: the smuggled request reached {}: {}",
            one.upstream,
            describe(seen)
        );
    }
    assert_consistent(seen, what);
}

/// The kind's request line and headers (credentials, Host) without the final CRLF, and
/// without `Connection` (framing tests keep the connection open).
fn head(s: &Stack, k: Kind, method: &str, path: &str) -> String {
    let creds = s.allowed(k).replace("Upgrade: websocket\r\n", "");
    let creds: String = creds
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with("Sec-WebSocket"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n{creds}",
        s.host
    )
}

async fn conflicting_framing_never_smuggles(s: Arc<Stack>, k: Kind) {
    let smuggle = smuggled(&s);
    let chunked_end = format!("0\r\n\r\n{smuggle}");
    let len = chunked_end.len();
    let path = format!("{}/cl-te", k.prefix());
    for te in [
        "Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked, identity\r\n",
        "Transfer-Encoding: identity, chunked\r\n",
        "Transfer-Encoding: xchunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding:\tchunked\r\n",
        "Transfer-Encoding: CHUNKED\r\n",
        "Transfer-Encoding: \"chunked\"\r\n",
        "Transfer-Encoding: chunked;q=1\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: chunked\r\n ,identity\r\n",
        "Transfer-Encoding : chunked\r\n",
        "Transfer_Encoding: chunked\r\n",
        "Transfer-Encoding: \x0bchunked\r\n",
    ] {
        for cl_first in [true, false] {
            let cl = format!("Content-Length: {len}\r\n");
            let framing = if cl_first {
                format!("{cl}{te}")
            } else {
                format!("{te}{cl}")
            };
            let req = format!("{}{framing}\r\n{chunked_end}", head(&s, k, "POST", &path));
            let (_, after, seen) = converse(&s, req.as_bytes(), None).await;
            assert_not_smuggled(&seen, &lossy(req.as_bytes()));
            assert_in_step(&after, te);
            let here: Vec<_> = seen.iter().filter(|x| x.upstream == k.upstream()).collect();
            assert!(here.len() <= 1, "{te:?}: {}", describe(&seen));
            for one in here {
                let body = one.req["body"].as_str().unwrap_or_default();
                assert!(
                    one.req["body_len"] == 0 || body.contains("GET /open/smuggled"),
                    "{te:?}: forwarded a body that is neither empty nor the whole: {}",
                    one.raw_head()
                );
            }
        }
    }
    // Content-Length against Content-Length, and framing headers nobody should send.
    for framing in [
        format!("Content-Length: 5\r\nContent-Length: {len}\r\n"),
        format!("Content-Length: {len}\r\nContent-Length: 5\r\n"),
        format!("Content-Length: 5, {len}\r\n"),
        format!("Content-Length: {len}\r\nContent-Length: {len}\r\n"),
        format!("Content-Length: {len}, {len}\r\n"),
    ] {
        let req = format!("{}{framing}\r\nhello{smuggle}", head(&s, k, "POST", &path));
        let (first, after, seen) = converse(&s, req.as_bytes(), None).await;
        assert_not_smuggled(&seen, &framing);
        assert_in_step(&after, &framing);
        assert!(first.is_none_or(|c| c == 400), "{framing:?}: {first:?}");
        assert_nothing(&seen, &framing);
    }
}

async fn malformed_framing_is_refused(s: Arc<Stack>, k: Kind) {
    let path = format!("{}/framing", k.prefix());
    let smuggle = smuggled(&s);
    // (framing headers, body, the body length forwarded if accepted at all)
    let cases: Vec<(String, String, Option<u64>)> = vec![
        (
            "Content-Length: +5\r\n".into(),
            format!("hello{smuggle}"),
            None,
        ),
        ("Content-Length: -1\r\n".into(), smuggle.clone(), None),
        (
            "Content-Length: 0x5\r\n".into(),
            format!("hello{smuggle}"),
            None,
        ),
        (
            "Content-Length: 5.0\r\n".into(),
            format!("hello{smuggle}"),
            None,
        ),
        (
            "Content-Length: 1_0\r\n".into(),
            format!("hello{smuggle}"),
            None,
        ),
        (
            "Content-Length: 99999999999999999999999\r\n".into(),
            smuggle.clone(),
            None,
        ),
        ("Content-Length: \r\n".into(), smuggle.clone(), None),
        (
            "Content-Length: 5 5\r\n".into(),
            format!("hello{smuggle}"),
            None,
        ),
        (
            "Transfer-Encoding: chunked\r\n".into(),
            format!("-1\r\nhello\r\n0\r\n\r\n{smuggle}"),
            None,
        ),
        (
            "Transfer-Encoding: chunked\r\n".into(),
            format!("fffffffffffffffffff\r\nhello\r\n0\r\n\r\n{smuggle}"),
            None,
        ),
        (
            "Transfer-Encoding: chunked\r\n".into(),
            format!("0x5\r\nhello\r\n0\r\n\r\n{smuggle}"),
            None,
        ),
        (
            "Transfer-Encoding: chunked\r\n".into(),
            format!("5\r\nhelloXX0\r\n\r\n{smuggle}"),
            None,
        ),
        (
            "Transfer-Encoding: chunked\r\n".into(),
            format!("zz\r\nhello\r\n0\r\n\r\n{smuggle}"),
            None,
        ),
        (
            "Transfer-Encoding: chunked\r\n".into(),
            format!(" 5\r\nhello\r\n0\r\n\r\n{smuggle}"),
            Some(5),
        ),
        (
            "Transfer-Encoding: chunked\r\n".into(),
            format!("5 \r\nhello\r\n0\r\n\r\n{smuggle}"),
            Some(5),
        ),
        (
            "Transfer-Encoding: chunked\r\n".into(),
            format!("5;ext=\"a\"\r\nhello\r\n0\r\n\r\n{smuggle}"),
            Some(5),
        ),
        (
            "Transfer-Encoding: chunked\r\n".into(),
            format!("5\nhello\n0\n\n{smuggle}"),
            Some(5),
        ),
        (
            "Transfer-Encoding: chunked\r\n".into(),
            format!("5\r\nhello\r\n0\r\n{smuggle}"),
            Some(5),
        ),
        (
            "Transfer-Encoding: chunked\r\n".into(),
            format!("5\r\nhello\r\n0;{}\r\n\r\n{smuggle}", "e".repeat(70_000)),
            Some(5),
        ),
    ];
    for (framing, body, accepted_len) in cases {
        let req = format!("{}{framing}\r\n{body}", head(&s, k, "POST", &path));
        let (first, after, seen) = converse(&s, req.as_bytes(), None).await;
        let what = format!("{framing:?} {:?}", &body[..body.len().min(40)]);
        assert_not_smuggled(&seen, &what);
        assert_in_step(&after, &what);
        let here: Vec<_> = seen.iter().filter(|x| x.upstream == k.upstream()).collect();
        match accepted_len {
            None => assert!(
                here.is_empty() || here.iter().all(|x| x.req["body_len"] == 0),
                "{what} was forwarded with a body: {}",
                describe(&seen)
            ),
            Some(n) => {
                assert!(here.len() <= 1, "{what}: {}", describe(&seen));
                for one in here {
                    assert_eq!(one.req["body_len"], n, "{what}: {}", one.raw_head());
                }
            }
        }
        if accepted_len.is_none() {
            assert!(
                first.is_none_or(|c| (400..500).contains(&c) || c == 501),
                "{what}: {first:?}"
            );
        }
    }
    // HTTP/1.0 with chunked.
    let req = format!(
        "POST {path} HTTP/1.0\r\nHost: {}\r\n{}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n{smuggle}",
        s.host,
        head(&s, k, "POST", &path).split_once("\r\nAccept: application/json\r\n").unwrap().1,
    );
    let (first, after, seen) = converse(&s, req.as_bytes(), None).await;
    assert_not_smuggled(&seen, "HTTP/1.0 chunked");
    assert_in_step(&after, "HTTP/1.0 chunked");
    assert!(
        first.is_none_or(|c| c == 400),
        "HTTP/1.0 chunked: {first:?}"
    );
    assert_nothing(&seen, "HTTP/1.0 chunked");
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

async fn request_trailers_never_become_headers(s: Arc<Stack>, k: Kind) {
    let path = format!("{}/trailers", k.prefix());
    let req = format!(
        "{}Transfer-Encoding: chunked\r\nTrailer: X-Gatehouse-Jwt-Assertion\r\nConnection: close\r\n\r\n\
5\r\nhello\r\n0\r\nX-Gatehouse-Jwt-Assertion: forged\r\nX-User-Email: forged\r\nContent-Length: 1000\r\n\
Transfer-Encoding: identity\r\nHost: evil.example\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
        head(&s, k, "POST", &path)
    );
    let (_, after, seen) = converse(&s, req.as_bytes(), None).await;
    assert_not_smuggled(&seen, "trailers");
    assert!(after.is_empty(), "{after:?}");
    for one in &seen {
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

async fn odd_request_lines_are_refused_or_consistent(s: Arc<Stack>, k: Kind) {
    let p = k.prefix();
    let rest = head(&s, k, "GET", "/")
        .split_once("\r\n")
        .unwrap()
        .1
        .to_owned();
    for line in [
        format!("GET {p}/x HTTP/1.2"),
        format!("GET {p}/x HTTP/2.0"),
        format!("GET {p}/x HTTP/0.9"),
        format!("GET {p}/x http/1.1"),
        format!("GET {p}/x HTTP/1"),
        format!("GET {p}/x HTTP/1.10"),
        format!("GET {p}/x"),
        format!("GET  {p}/x HTTP/1.1"),
        format!("GET {p}/x  HTTP/1.1"),
        format!("GET\t{p}/x HTTP/1.1"),
        format!("GET {p}/x HTTP/1.1 extra"),
        format!("G=T {p}/x HTTP/1.1"),
        format!("GET {p}/x /vault/y HTTP/1.1"),
        format!("\r\nGET {p}/x HTTP/1.1"),
    ] {
        let req = format!("{line}\r\n{rest}Connection: close\r\n\r\n");
        let mark = s.mark();
        let r = s.try_send(req.as_bytes()).await;
        let seen = s.settled_since(&mark).await;
        assert_consistent(&seen, &line);
        match r {
            Ok(r) if r.status == 200 => {
                assert_eq!(seen.len(), 1, "{line:?}: {}", describe(&seen));
                let path = seen[0].path();
                assert!(path.starts_with(p), "{line:?} forwarded as {path}");
                assert!(
                    !path.contains("vault") || path.contains("%20"),
                    "{line:?} → {path}"
                );
            }
            Ok(r) => {
                assert!(r.status >= 400, "{line:?}:\n{}", r.dump());
                assert_nothing(&seen, &line);
            }
            Err(e) => {
                assert!(e.kind() != std::io::ErrorKind::TimedOut, "{line:?}: {e}");
                assert_nothing(&seen, &line);
            }
        }
    }
}

async fn expect_continue_is_only_sent_when_allowed(s: Arc<Stack>, k: Kind) {
    let path = format!("{}/expect", k.prefix());
    // Without credentials (the public route needs none: it goes to the vault instead).
    let target = if k.signed_in() {
        path.clone()
    } else {
        "/vault/expect".to_owned()
    };
    let req = format!(
        "POST {target} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nExpect: 100-continue\r\nContent-Length: 1073741824\r\n\r\n",
        s.host
    );
    let mark = s.mark();
    let mut conn = RawConn::open(s.gh.addr).await;
    conn.send(req.as_bytes()).await.unwrap();
    let r = conn
        .response_within(Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| panic!("a refused Expect: 100-continue upload got no answer: {e}"));
    assert_eq!(r.status, 401, "a refused upload was invited: {}", r.dump());
    assert_nothing(&s.settled_since(&mark).await, "Expect without credentials");
    // Allowed: the upload goes through.
    let req = format!(
        "{}Expect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
        head(&s, k, "POST", &path)
    );
    let mut conn = RawConn::open(s.gh.addr).await;
    let mark = s.mark();
    conn.send(req.as_bytes()).await.unwrap();
    // A client waits a little for `100 Continue`, then sends the body anyway (RFC 9110
    // §10.1.1); an answer before the body must be the final one.
    let r = match conn.response_within(Duration::from_secs(1)).await {
        Ok(r) if r.status == 100 => {
            conn.send(b"hello").await.unwrap();
            conn.response().await.unwrap()
        }
        Ok(r) => r,
        Err(_) => {
            conn.send(b"hello").await.unwrap();
            conn.response().await.unwrap()
        }
    };
    assert_eq!(r.status, 200, "{}", r.dump());
    let seen = s.since(&mark);
    assert_eq!(seen.len(), 1, "{}", describe(&seen));
    assert_eq!(seen[0].req["body_len"], 5);
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
