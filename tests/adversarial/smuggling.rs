//! Request smuggling over HTTP/1.1, one request at a time: conflicting or malformed framing,
//! trailers, odd request lines, `Expect`. The smuggled requests aim at the public route, so
//! that one processed anywhere shows up at its upstream. What spans several messages on a
//! connection (pipelining, bodies of local answers, upgrades, owed bytes) is in `connections`.

use std::{sync::Arc, time::Duration};

use crate::kind_cases;
use crate::runner::Report;
use crate::stack::{
    assert_consistent, assert_nothing, assert_trailers_dropped, describe, lossy, Kind, Options,
    Seen, Stack,
};
use crate::support::RawConn;

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
                request_trailers_never_become_headers,
                odd_request_lines_are_refused_or_consistent,
                expect_continue_is_only_sent_when_allowed,
            ],
        )
        .await;
    report.finish("smuggling");
}

/// The request hidden in a body: public, so that processing it anywhere is visible.
pub(crate) fn smuggled(s: &Stack) -> String {
    format!("GET /open/smuggled HTTP/1.1\r\nHost: {}\r\n\r\n", s.host)
}

/// Status codes of every HTTP/1 response head in `bytes`.
pub(crate) fn statuses(bytes: &[u8]) -> Vec<u16> {
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
pub(crate) async fn converse(
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
pub(crate) fn assert_in_step(after: &[u16], what: &str) {
    assert!(
        after.is_empty() || after == [200],
        "{what}: answers after the first: {after:?}"
    );
}

/// Nothing received anywhere was the smuggled request.
#[track_caller]
pub(crate) fn assert_not_smuggled(seen: &[Seen], what: &str) {
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
pub(crate) fn head(s: &Stack, k: Kind, method: &str, path: &str) -> String {
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
    seen.iter().for_each(assert_trailers_dropped);
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
