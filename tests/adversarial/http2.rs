//! HTTP/2 requests as raw frames over h2c with prior knowledge: header blocks the h2 crate and
//! every conforming client refuse to send (upper-case names, connection-specific fields,
//! duplicate or misplaced pseudo-headers, paths without `/`), `:authority` against `host`,
//! cookie crumbs, framing that disagrees with content-length, trailers and CONNECT — against
//! each route kind, asserting the outcome and what the upstreams received. Connection-level
//! abuse and HTTP/2 over TLS are in `http2_limits`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::kind_cases;
use crate::runner::Report;
use crate::stack::{
    assert_nothing, assert_one, assert_trailers_dropped, describe, Kind, Options, Seen, Stack,
    COOKIE,
};
use crate::support::{
    h2::{self, flag, kind, request_block, H2Conn, Outcome},
    hpack,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests() {
    let s = Stack::start(Options::default()).await;
    let mut report = Report::default();
    report
        .kinds(
            &s,
            kind_cases![
                paths_are_canonical_over_h2,
                malformed_header_blocks_are_refused,
                forwarding_and_identity_headers_are_replaced,
                authority_and_host_must_agree,
                cookie_crumbs_are_joined_and_ours_stripped,
                content_length_must_match_the_data,
                trailers_never_become_headers,
                connect_and_extended_connect_are_refused,
                oversized_header_lists_are_refused,
                unauthenticated_uploads_are_refused_from_the_headers,
            ],
        )
        .await;
    report.finish("http2");
}

pub(crate) async fn conn(s: &Stack) -> H2Conn {
    H2Conn::h2c(s.gh.addr)
        .await
        .unwrap_or_else(|e| panic!("h2c handshake: {e}"))
}

/// Request fields of kind `k` besides the pseudo-headers: JSON accept and the session.
fn kind_fields(s: &Stack, k: Kind) -> Vec<(String, String)> {
    let mut f = vec![("accept".to_owned(), "application/json".to_owned())];
    if k.signed_in() {
        f.push(("cookie".to_owned(), format!("{COOKIE}={}", s.alice)));
    }
    f
}

/// A GET header block for kind `k` with `extra` fields.
fn get_block(s: &Stack, k: Kind, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let owned = kind_fields(s, k);
    let mut fields: Vec<(&str, &str)> = owned
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    fields.extend_from_slice(extra);
    request_block("GET", &s.host, path, &fields)
}

/// The status a request of `k` gets where it is not allowed.
fn denied(k: Kind) -> u16 {
    if k.signed_in() {
        403
    } else {
        401
    }
}

/// Sends one GET on a fresh connection; returns the outcome and what the upstreams saw.
async fn one_get(s: &Stack, block: &[u8]) -> (Outcome, Vec<Seen>) {
    let mark = s.mark();
    let mut c = conn(s).await;
    let out = c.request(1, block).await;
    (out, s.since(&mark))
}

async fn paths_are_canonical_over_h2(s: Arc<Stack>, k: Kind) {
    let p = k.prefix();
    let mut c = conn(&s).await;
    let mut id = 1;
    let mut next = || {
        id += 2;
        id - 2
    };
    for (path, forwarded) in [
        (format!("{p}/x"), format!("{p}/x")),
        (format!("{p}/a/../b"), format!("{p}/b")),
        (format!("{p}//a/%2e/b"), format!("{p}/a/b")),
        (format!("/vault/../{p}/c"), format!("{p}/c")),
    ] {
        let mark = s.mark();
        let out = c.request(next(), &get_block(&s, k, &path, &[])).await;
        assert_eq!(out.status(), Some(200), "{path}: {}", out.brief());
        let one = assert_one(&s.since(&mark), k.upstream(), &path);
        assert_eq!(one.path(), forwarded, "{path}");
    }
    let mark = s.mark();
    for (path, status) in [
        (format!("{p}/../vault/x"), denied(k)),
        (format!("{p}/%2e%2e/vault/x"), denied(k)),
        (format!("{p}/..%2Fvault/x"), 400),
        (format!("{p}/x%00"), 400),
        (format!("{p}/%5c..%5cvault"), 400),
        (format!("{p};a/../vault"), 400),
    ] {
        let out = c.request(next(), &get_block(&s, k, &path, &[])).await;
        assert_eq!(out.status(), Some(status), "{path}: {}", out.brief());
    }
    // Bytes a request target cannot carry (HPACK carries any): refused in some HTTP/2 way.
    for path in [
        format!("{p}/a b"),
        format!("{p}/\u{7f}"),
        format!("{p}/\u{e9}"),
        format!("{p}/x\t"),
    ] {
        let mut fresh = conn(&s).await;
        let out = fresh.request(1, &get_block(&s, k, &path, &[])).await;
        assert!(out.is_refusal(), "{path:?}: {}", out.brief());
    }
    assert_nothing(&s.settled_since(&mark).await, "h2 paths");
    // A fragment is not part of a target: refused, or dropped before routing and forwarding
    // alike (the upstream gets the path the decision was made on, never vault's).
    let mut fresh = conn(&s).await;
    let path = format!("{p}/x#/../../vault/x");
    let out = fresh.request(1, &get_block(&s, k, &path, &[])).await;
    let seen = s.settled_since(&mark).await;
    if out.is_refusal() {
        assert_nothing(&seen, "h2 fragment");
    } else {
        assert_eq!(out.status(), Some(200), "{path}: {}", out.brief());
        let one = assert_one(&seen, k.upstream(), &path);
        assert_eq!(one.path(), format!("{p}/x"), "{path}");
    }
}

async fn malformed_header_blocks_are_refused(s: Arc<Stack>, k: Kind) {
    let p = k.prefix();
    let path = format!("{p}/x");
    let host = s.host.clone();
    let kf = kind_fields(&s, k);
    let base = |extra: &[(&[u8], &[u8])]| {
        let mut b = hpack::block(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", &host),
            (":path", &path),
        ]);
        for (n, v) in &kf {
            b.extend(hpack::literal(n.as_bytes(), v.as_bytes()));
        }
        for (n, v) in extra {
            b.extend(hpack::literal(n, v));
        }
        b
    };
    let mut blocks: Vec<(String, Vec<u8>)> = vec![
        (
            "upper-case name".into(),
            base(&[(b"X-Gatehouse-Jwt-Assertion", b"forged")]),
        ),
        (
            "upper-case letter inside".into(),
            base(&[(b"x-User-email", b"forged")]),
        ),
        ("connection".into(), base(&[(b"connection", b"keep-alive")])),
        (
            "transfer-encoding".into(),
            base(&[(b"transfer-encoding", b"chunked")]),
        ),
        ("upgrade".into(), base(&[(b"upgrade", b"websocket")])),
        ("keep-alive".into(), base(&[(b"keep-alive", b"timeout=5")])),
        (
            "proxy-connection".into(),
            base(&[(b"proxy-connection", b"keep-alive")]),
        ),
        ("te other than trailers".into(), base(&[(b"te", b"gzip")])),
        (
            "CR LF in a value".into(),
            base(&[(b"x-test", b"a\r\nx-gatehouse-jwt-assertion: forged")]),
        ),
        (
            "LF in a value".into(),
            base(&[(b"x-test", b"a\nx-user-email: forged")]),
        ),
        ("NUL in a value".into(), base(&[(b"x-test", b"a\0forged")])),
        ("space in a name".into(), base(&[(b"x test", b"forged")])),
        ("colon in a name".into(), base(&[(b"x-test:x", b"forged")])),
        (
            "underscore in a name".into(),
            base(&[(b"x_forwarded_for", b"10.0.0.1")]),
        ),
        (
            "non-ASCII name".into(),
            base(&[("x-t\u{e9}st".as_bytes(), b"forged")]),
        ),
        ("empty name".into(), base(&[(b"", b"forged")])),
        ("pseudo-header after a field".into(), {
            let mut b = base(&[]);
            b.extend(hpack::literal(b":path", b"/vault/x"));
            b
        }),
        ("unknown pseudo-header".into(), base(&[(b":foo", b"bar")])),
        ("status in a request".into(), base(&[(b":status", b"200")])),
    ];
    let dup = |first: &str, second: &str| {
        let mut b = hpack::block(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", &host),
            (":path", first),
            (":path", second),
        ]);
        for (n, v) in &kf {
            b.extend(hpack::literal(n.as_bytes(), v.as_bytes()));
        }
        b
    };
    blocks.push(("duplicate :path".into(), dup(&path, "/vault/x")));
    blocks.push((
        "duplicate :path, vault first".into(),
        dup("/vault/x", &path),
    ));
    blocks.push(("duplicate :method".into(), {
        let mut b = hpack::block(&[
            (":method", "GET"),
            (":method", "DELETE"),
            (":scheme", "http"),
            (":authority", &host),
            (":path", &path),
        ]);
        for (n, v) in &kf {
            b.extend(hpack::literal(n.as_bytes(), v.as_bytes()));
        }
        b
    }));
    blocks.push(("duplicate :authority".into(), {
        let mut b = hpack::block(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", &host),
            (":authority", "evil.example"),
            (":path", &path),
        ]);
        for (n, v) in &kf {
            b.extend(hpack::literal(n.as_bytes(), v.as_bytes()));
        }
        b
    }));
    for (what, fields) in [
        (
            "no :method",
            vec![
                (":scheme", "http"),
                (":authority", host.as_str()),
                (":path", path.as_str()),
            ],
        ),
        (
            "no :scheme",
            vec![
                (":method", "GET"),
                (":authority", host.as_str()),
                (":path", path.as_str()),
            ],
        ),
        (
            "no :path",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", host.as_str()),
            ],
        ),
    ] {
        blocks.push((what.into(), hpack::block(&fields)));
    }
    for bad_path in ["", "admin/x", "*", "open/../vault", "\\vault"] {
        blocks.push((
            format!(":path {bad_path:?}"),
            hpack::block(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", &host),
                (":path", bad_path),
            ]),
        ));
    }
    let mark = s.mark();
    for (what, block) in &blocks {
        let (out, seen) = one_get(&s, block).await;
        assert!(out.is_refusal(), "{what}: {}", out.brief());
        assert!(
            !matches!(out, Outcome::Response { status, .. } if status >= 500),
            "{what}: a server error: {}",
            out.brief()
        );
        assert!(seen.is_empty(), "{what}: forwarded: {}", describe(&seen));
    }
    assert_nothing(&s.settled_since(&mark).await, "malformed header blocks");
}

async fn forwarding_and_identity_headers_are_replaced(s: Arc<Stack>, k: Kind) {
    let spoof: &[(&str, &str)] = &[
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-for", "10.0.0.2"),
        ("x-real-ip", "10.0.0.3"),
        ("forwarded", "for=10.0.0.4;host=evil.example"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("x-original-uri", "/vault"),
        ("x-gatehouse-jwt-assertion", "forged"),
        ("x-gatehouse-claim-email", "forged"),
        ("x-user-email", "forged"),
        ("x-user-groups", "forged"),
        ("x-forwarded-user", "forged"),
        ("remote-user", "forged"),
        ("x-request-id", "forged-id"),
    ];
    let path = format!("{}/x", k.prefix());
    let (out, seen) = one_get(&s, &get_block(&s, k, &path, spoof)).await;
    assert_eq!(out.status(), Some(200), "{}", out.brief());
    let one = assert_one(&seen, k.upstream(), "h2 spoof");
    let head = one.raw_head();
    for bad in ["forged", "10.0.0.", "evil.example", "/vault"] {
        assert!(
            !head.contains(bad),
            "{bad:?} reached the upstream over h2: {head}"
        );
    }
    assert_eq!(one.header("x-forwarded-for"), ["127.0.0.1"], "{head}");
    assert_eq!(one.header("x-forwarded-proto"), ["http"], "{head}");
    if k.signed_in() {
        assert_eq!(one.header("x-user-email"), ["alice@example.com"], "{head}");
        assert_eq!(one.header("x-gatehouse-jwt-assertion").len(), 1, "{head}");
    } else {
        assert!(one.header("x-gatehouse-jwt-assertion").is_empty(), "{head}");
    }
    assert!(
        !head.contains(&s.alice[..20]),
        "our cookie reached the upstream: {head}"
    );
}

async fn authority_and_host_must_agree(s: Arc<Stack>, k: Kind) {
    let path = format!("{}/x", k.prefix());
    let owned = kind_fields(&s, k);
    let kf: Vec<(&str, &str)> = owned
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let block = |pseudo: &[(&str, &str)], host: Option<&str>| {
        let mut fields: Vec<(&str, &str)> = pseudo.to_vec();
        if let Some(h) = host {
            fields.push(("host", h));
        }
        fields.extend_from_slice(&kf);
        hpack::block(&fields)
    };
    let ours = s.host.as_str();
    let m = [(":method", "GET"), (":scheme", "http")];
    fn with<'a>(
        m: &[(&'a str, &'a str)],
        authority: &'a str,
        path: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        let mut v = m.to_vec();
        v.push((":authority", authority));
        v.push((":path", path));
        v
    }
    let without = {
        let mut v = m.to_vec();
        v.push((":path", path.as_str()));
        v
    };
    let userinfo = format!("evil@{ours}");
    let mark = s.mark();
    for (what, b) in [
        (
            "host differs from :authority",
            block(&with(&m, ours, &path), Some("evil.example")),
        ),
        (
            ":authority differs from host",
            block(&with(&m, "evil.example", &path), Some(ours)),
        ),
        ("neither", block(&without, None)),
        (
            "userinfo in :authority",
            block(&with(&m, &userinfo, &path), None),
        ),
        ("two host fields", {
            let mut b = block(&with(&m, ours, &path), Some(ours));
            b.extend(hpack::literal(b"host", b"evil.example"));
            b
        }),
    ] {
        let (out, _) = one_get(&s, &b).await;
        assert!(out.is_refusal(), "{what}: {}", out.brief());
    }
    assert_nothing(&s.settled_since(&mark).await, "authority disagreements");
    // Host alone, and both equal, are fine.
    for (what, b) in [
        ("host without :authority", block(&without, Some(ours))),
        (
            "equal host and :authority",
            block(&with(&m, ours, &path), Some(ours)),
        ),
    ] {
        let (out, seen) = one_get(&s, &b).await;
        assert_eq!(out.status(), Some(200), "{what}: {}", out.brief());
        assert_one(&seen, k.upstream(), what);
    }
}

async fn cookie_crumbs_are_joined_and_ours_stripped(s: Arc<Stack>, k: Kind) {
    let path = format!("{}/x", k.prefix());
    let ours = format!("{COOKIE}={}", s.alice);
    let block = request_block(
        "GET",
        &s.host,
        &path,
        &[
            ("accept", "application/json"),
            ("cookie", "a=1"),
            ("cookie", &ours),
            ("cookie", "b=2"),
            ("cookie", &format!("{COOKIE}_login=x")),
        ],
    );
    let (out, seen) = one_get(&s, &block).await;
    assert_eq!(out.status(), Some(200), "{}", out.brief());
    let one = assert_one(&seen, k.upstream(), "crumbs");
    let cookies = one.header("cookie").join("; ");
    assert!(
        cookies.contains("a=1") && cookies.contains("b=2"),
        "{}",
        one.raw_head()
    );
    assert!(!one.raw_head().contains(COOKIE), "{}", one.raw_head());
    assert!(
        !one.raw_head().contains(&s.alice[..20]),
        "{}",
        one.raw_head()
    );
    // Crumbs are the session, on every kind of route.
    assert_eq!(
        one.header("x-user-email"),
        ["alice@example.com"],
        "{}",
        one.raw_head()
    );
}

async fn content_length_must_match_the_data(s: Arc<Stack>, k: Kind) {
    let path = format!("{}/cl", k.prefix());
    let smuggle = format!("GET /open/smuggled HTTP/1.1\r\nHost: {}\r\n\r\n", s.host);
    let owned = kind_fields(&s, k);
    let kf: Vec<(&str, &str)> = owned
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mark = s.mark();
    for (cl, data) in [
        (Some("5"), format!("hello{smuggle}")),
        (Some("0"), smuggle.clone()),
        (Some("100"), "short".to_owned()),
        (Some("5, 5"), "hello".to_owned()),
        (Some("-1"), "hello".to_owned()),
        (Some("+5"), "hello".to_owned()),
    ] {
        let mut fields = kf.clone();
        if let Some(cl) = cl {
            fields.push(("content-length", cl));
        }
        let block = request_block("POST", &s.host, &path, &fields);
        let mut c = conn(&s).await;
        let mut bytes = h2::headers(1, &block, false);
        bytes.extend(h2::data(1, data.as_bytes(), true));
        c.send(&bytes).await.unwrap();
        let out = c.response(1).await;
        assert!(
            !matches!(out, Outcome::TimedOut),
            "content-length {cl:?} with {} bytes: no outcome",
            data.len()
        );
        if let Outcome::Response { status, .. } = &out {
            assert!(*status < 500 || *status == 502, "{cl:?}: {}", out.brief());
        }
    }
    // Two content-length fields.
    let mut fields = kf.clone();
    fields.push(("content-length", "5"));
    fields.push(("content-length", "6"));
    let block = request_block("POST", &s.host, &path, &fields);
    let mut c = conn(&s).await;
    let mut bytes = h2::headers(1, &block, false);
    bytes.extend(h2::data(1, b"hello", true));
    c.send(&bytes).await.unwrap();
    let out = c.response(1).await;
    assert!(out.is_refusal(), "two content-lengths: {}", out.brief());
    let seen = s.settled_since(&mark).await;
    for one in &seen {
        assert!(
            !one.path().contains("smuggled"),
            "smuggled over h2: {}",
            describe(&seen)
        );
        assert_eq!(one.upstream, k.upstream(), "{}", describe(&seen));
        let n = one.req["body_len"].as_u64().unwrap_or(0);
        let cl = one.header("content-length");
        assert!(
            cl.is_empty() || cl == [n.to_string()],
            "the upstream got a body that disagrees with its content-length: {}",
            one.raw_head()
        );
        assert!(
            !one.req["body"]
                .as_str()
                .unwrap_or_default()
                .contains("/open/smuggled")
                || n as usize > 5,
            "{}",
            one.raw_head()
        );
    }
}

async fn trailers_never_become_headers(s: Arc<Stack>, k: Kind) {
    let path = format!("{}/trailers", k.prefix());
    let owned = kind_fields(&s, k);
    let kf: Vec<(&str, &str)> = owned
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mut fields = kf.clone();
    fields.push(("te", "trailers"));
    let block = request_block("POST", &s.host, &path, &fields);
    let trailers = hpack::block(&[
        ("x-gatehouse-jwt-assertion", "forged"),
        ("x-user-email", "forged"),
        ("x-forwarded-for", "10.0.0.1"),
        ("host", "evil.example"),
    ]);
    let mark = s.mark();
    let mut c = conn(&s).await;
    let mut bytes = h2::headers(1, &block, false);
    bytes.extend(h2::data(1, b"hello", false));
    bytes.extend(h2::headers(1, &trailers, true));
    c.send(&bytes).await.unwrap();
    let out = c.response(1).await;
    let seen = s.settled_since(&mark).await;
    if out.is_refusal() {
        assert_nothing(&seen, "h2 trailers");
    } else {
        // Answered: the request with its body went through, the trailers did not.
        assert_eq!(out.status(), Some(200), "{}", out.brief());
        assert_trailers_dropped(&assert_one(&seen, k.upstream(), "h2 trailers"));
    }
}

async fn connect_and_extended_connect_are_refused(s: Arc<Stack>, k: Kind) {
    let up = s.upstream("vault").addr.to_string();
    let owned = kind_fields(&s, k);
    let mut connect = hpack::block(&[(":method", "CONNECT"), (":authority", &up)]);
    let path = format!("{}/x", k.prefix());
    let mut extended = hpack::block(&[
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        (":authority", &s.host),
        (":path", &path),
        ("sec-websocket-version", "13"),
    ]);
    for (n, v) in &owned {
        connect.extend(hpack::literal(n.as_bytes(), v.as_bytes()));
        extended.extend(hpack::literal(n.as_bytes(), v.as_bytes()));
    }
    let mark = s.mark();
    for (what, block) in [("CONNECT", connect), ("extended CONNECT", extended)] {
        let mut c = conn(&s).await;
        c.send(&h2::headers(1, &block, false)).await.unwrap();
        let out = c.response_within(1, Duration::from_secs(5)).await;
        assert!(out.is_refusal(), "{what}: {}", out.brief());
    }
    assert_nothing(&s.settled_since(&mark).await, "CONNECT");
}

/// A header block split into a HEADERS frame and CONTINUATION frames of at most 16 KiB.
pub(crate) fn split_block(stream: u32, block: &[u8], end_stream: bool) -> Vec<u8> {
    let mut chunks = block.chunks(16 * 1024).peekable();
    let mut out = Vec::new();
    let mut first = true;
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let mut flags = if last { flag::END_HEADERS } else { 0 };
        if first && end_stream {
            flags |= flag::END_STREAM;
        }
        let k = if first {
            kind::HEADERS
        } else {
            kind::CONTINUATION
        };
        out.extend(h2::frame(k, flags, stream, chunk));
        first = false;
    }
    out
}

async fn oversized_header_lists_are_refused(s: Arc<Stack>, k: Kind) {
    let path = format!("{}/x", k.prefix());
    let big = "a".repeat(200 * 1024);
    let many: Vec<(String, String)> = (0..150)
        .map(|i| (format!("x-h{i}"), "1".to_owned()))
        .collect();
    let many_refs: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let mark = s.mark();
    for (what, block) in [
        ("200 KiB value", get_block(&s, k, &path, &[("x-big", &big)])),
        ("150 fields", get_block(&s, k, &path, &many_refs)),
    ] {
        let mut c = conn(&s).await;
        let t0 = Instant::now();
        c.send(&split_block(1, &block, true)).await.ok();
        let out = c.response(1).await;
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{what}: {:?}",
            t0.elapsed()
        );
        assert!(out.is_refusal(), "{what}: {}", out.brief());
        if let Some(status) = out.status() {
            assert_eq!(status, 431, "{what}: {}", out.brief());
        }
    }
    assert_nothing(&s.settled_since(&mark).await, "oversized h2 headers");
}

async fn unauthenticated_uploads_are_refused_from_the_headers(s: Arc<Stack>, k: Kind) {
    let target = if k.signed_in() {
        format!("{}/upload", k.prefix())
    } else {
        "/vault/upload".to_owned()
    };
    let block = request_block(
        "POST",
        &s.host,
        &target,
        &[
            ("accept", "application/json"),
            ("content-length", "10737418240"),
        ],
    );
    let mark = s.mark();
    let mut c = conn(&s).await;
    let t0 = Instant::now();
    let mut bytes = h2::headers(1, &block, false);
    let chunk = vec![b'u'; 16 * 1024];
    for _ in 0..3 {
        bytes.extend(h2::data(1, &chunk, false));
    }
    c.send(&bytes).await.unwrap();
    let out = c.response(1).await;
    assert_eq!(out.status(), Some(401), "{}", out.brief());
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_nothing(&s.settled_since(&mark).await, "refused h2 upload");
}
