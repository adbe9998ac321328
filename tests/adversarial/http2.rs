//! HTTP/2 as raw frames (h2c with prior knowledge, and TLS with ALPN h2): header blocks the
//! h2 crate and every conforming client refuse to send (upper-case names, connection-specific
//! fields, duplicate or misplaced pseudo-headers, paths without `/`), framing that disagrees
//! with content-length, trailers, CONNECT, and floods (rapid reset, streams, CONTINUATION,
//! HPACK bombs, PING/SETTINGS) — each asserting the outcome and what the upstreams received.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::stack::{
    assert_nothing, assert_one, describe, Kind, Options, Report, Seen, Stack, COOKIE,
};
use crate::support::{
    h2::{self, error, flag, kind, request_block, setting, H2Conn, Outcome},
    hpack,
    tls::{tls_connect_alpn, TestCa},
    Gatehouse, Upstream,
};
use crate::{cases, kind_cases};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_frames() {
    // A short idle timeout, so that connections without a request in flight are seen closed.
    let s = Stack::start(Options {
        timeout_idle: Some(IDLE_SECS),
        ..Options::default()
    })
    .await;
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
    report
        .each(
            &s,
            cases![
                limits_are_explicit_in_settings,
                rapid_reset_is_bounded,
                concurrent_streams_are_bounded,
                continuation_floods_are_cut,
                hpack_bombs_are_refused,
                ping_and_settings_floods_do_not_stall_others,
                flow_control_abuse_ends_the_connection,
                silent_h2c_connections_are_closed,
                unfinished_header_blocks_are_cut,
                trickled_header_blocks_are_cut,
            ],
        )
        .await;
    report.finish("http2");
}

/// The http2 stack's `timeout_idle`.
const IDLE_SECS: u64 = 3;

async fn conn(s: &Stack) -> H2Conn {
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
    assert_nothing(&s.settled_since(&mark).await, "h2 paths");
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
    assert!(!matches!(out, Outcome::TimedOut), "{}", out.brief());
    for one in s.settled_since(&mark).await {
        let t = one.req["trailers"].to_string();
        assert!(
            !one.raw_head().contains("forged") && !t.contains("forged"),
            "{} {t}",
            one.raw_head()
        );
        assert!(
            !t.contains("evil.example") && !t.contains("10.0.0.1"),
            "{t}"
        );
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
fn split_block(stream: u32, block: &[u8], end_stream: bool) -> Vec<u8> {
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

async fn limits_are_explicit_in_settings(s: Arc<Stack>) {
    let c = conn(&s).await;
    let streams = c
        .server_settings
        .get(&setting::MAX_CONCURRENT_STREAMS)
        .copied();
    assert!(
        streams.is_some_and(|n| (1..=256).contains(&n)),
        "MAX_CONCURRENT_STREAMS: {:?} (settings {:?})",
        streams,
        c.server_settings
    );
    let list = c
        .server_settings
        .get(&setting::MAX_HEADER_LIST_SIZE)
        .copied();
    assert!(
        list.is_some_and(|n| n <= 1 << 20),
        "MAX_HEADER_LIST_SIZE: {list:?} (settings {:?})",
        c.server_settings
    );
}

/// A fresh h2c connection answers a public GET within a second.
async fn still_serving(s: &Stack, what: &str) {
    let t0 = Instant::now();
    let mut c = conn(s).await;
    let out = c
        .request(1, &request_block("GET", &s.host, "/open/alive", &[]))
        .await;
    assert_eq!(
        out.status(),
        Some(200),
        "{what}: afterwards {}",
        out.brief()
    );
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "{what}: afterwards {:?}",
        t0.elapsed()
    );
}

async fn rapid_reset_is_bounded(s: Arc<Stack>) {
    let mark = s.mark();
    let mut c = conn(&s).await;
    let block = request_block("GET", &s.host, "/open/rapid-reset", &[]);
    let mut bytes = Vec::new();
    for i in 0..2000u32 {
        let id = 2 * i + 1;
        bytes.extend(h2::headers(id, &block, true));
        bytes.extend(h2::rst(id, error::CANCEL));
    }
    let _ = c.send(&bytes).await;
    let closed = c.closed_within(Duration::from_secs(5)).await;
    assert!(
        closed || c.goaway.is_some(),
        "2,000 reset streams and the connection goes on (goaway {:?})",
        c.goaway
    );
    let seen = s.settled_since(&mark).await;
    assert!(
        seen.len() < 2000,
        "every reset stream was forwarded: {}",
        seen.len()
    );
    still_serving(&s, "rapid reset").await;
}

async fn concurrent_streams_are_bounded(s: Arc<Stack>) {
    let mut c = conn(&s).await;
    let limit = c
        .server_settings
        .get(&setting::MAX_CONCURRENT_STREAMS)
        .copied()
        .unwrap_or(100) as u32;
    // Streams that stay open: a POST whose body never comes.
    let block = request_block("POST", &s.host, "/open/hold", &[]);
    let mut bytes = Vec::new();
    let n = limit + 40;
    for i in 0..n {
        bytes.extend(h2::headers(2 * i + 1, &block, false));
    }
    c.send(&bytes).await.unwrap();
    let _ = c.closed_within(Duration::from_secs(2)).await;
    let refused = c
        .resets
        .values()
        .filter(|code| **code == error::REFUSED_STREAM || **code == error::PROTOCOL_ERROR)
        .count();
    assert!(
        refused >= 1 || c.goaway.is_some(),
        "{n} concurrent streams over a limit of {limit}: none refused (resets {:?})",
        c.resets
    );
    for i in 0..n {
        let _ = c.send(&h2::rst(2 * i + 1, error::CANCEL)).await;
    }
    still_serving(&s, "stream flood").await;
}

async fn continuation_floods_are_cut(s: Arc<Stack>) {
    let mark = s.mark();
    // An endless header block: HEADERS then CONTINUATION frames that each add a field.
    let mut c = conn(&s).await;
    let start = request_block("GET", &s.host, "/open/flood", &[]);
    let mut bytes = h2::frame(kind::HEADERS, flag::END_STREAM, 1, &start);
    let field = hpack::literal(b"x-flood", &[b'f'; 100]);
    let t0 = Instant::now();
    let mut cut = false;
    'flood: for _ in 0..50 {
        for _ in 0..400 {
            bytes.extend(h2::frame(kind::CONTINUATION, 0, 1, &field));
        }
        if c.send(&bytes).await.is_err() {
            cut = true;
            break 'flood;
        }
        bytes.clear();
    }
    cut = cut || c.closed_within(Duration::from_secs(3)).await;
    assert!(
        cut || c.goaway.is_some(),
        "a 2 MB header block was taken in ({:?})",
        t0.elapsed()
    );
    // Empty CONTINUATION frames: no bytes, only work.
    let mut c = conn(&s).await;
    let mut bytes = h2::frame(kind::HEADERS, flag::END_STREAM, 1, &start);
    for _ in 0..50_000 {
        bytes.extend(h2::frame(kind::CONTINUATION, 0, 1, &[]));
    }
    let flood = async {
        let _ = c.send(&bytes).await;
        c.closed_within(Duration::from_secs(3)).await
    };
    let ((), _) = tokio::join!(still_serving(&s, "empty CONTINUATION flood"), flood);
    let seen: Vec<Seen> = s
        .settled_since(&mark)
        .await
        .into_iter()
        .filter(|x| x.path() != "/open/alive")
        .collect();
    assert_nothing(&seen, "CONTINUATION flood");
}

async fn hpack_bombs_are_refused(s: Arc<Stack>) {
    // One 4 KB entry in the decoder's table, then a thousand one-byte references to it: 4 MB of
    // header list from 5 KB on the wire.
    let mut block = request_block("GET", &s.host, "/open/bomb", &[]);
    block.extend(hpack::literal_indexed(b"x-bomb", &[b'b'; 4000]));
    for _ in 0..1000 {
        block.extend(hpack::indexed(62));
    }
    let mark = s.mark();
    let mut c = conn(&s).await;
    let t0 = Instant::now();
    let _ = c.send(&split_block(1, &block, true)).await;
    let out = c.response(1).await;
    assert!(out.is_refusal(), "HPACK bomb: {}", out.brief());
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_nothing(&s.settled_since(&mark).await, "HPACK bomb");
    still_serving(&s, "HPACK bomb").await;
}

async fn ping_and_settings_floods_do_not_stall_others(s: Arc<Stack>) {
    for (what, frame) in [
        ("PING", h2::frame(kind::PING, 0, 0, &[7u8; 8])),
        (
            "SETTINGS",
            h2::settings(&[(setting::INITIAL_WINDOW_SIZE, 65535)]),
        ),
    ] {
        let mut c = conn(&s).await;
        let bytes: Vec<u8> = std::iter::repeat_n(frame, 20_000).flatten().collect();
        // The flood is written without reading what comes back.
        let flood = async {
            let _ = tokio::time::timeout(Duration::from_secs(3), c.send(&bytes)).await;
        };
        let ((), ()) = tokio::join!(flood, still_serving(&s, what));
    }
}

async fn flow_control_abuse_ends_the_connection(s: Arc<Stack>) {
    for (what, bytes) in [
        ("zero increment on the connection", h2::window_update(0, 0)),
        ("window past 2^31-1", {
            let mut b = h2::window_update(0, 0x7FFF_FFFF);
            b.extend(h2::window_update(0, 0x7FFF_FFFF));
            b
        }),
        ("DATA on an idle stream", h2::data(7, b"hello", true)),
        (
            "HEADERS on stream 0",
            h2::headers(0, &request_block("GET", &s.host, "/open/x", &[]), true),
        ),
        (
            "even stream id",
            h2::headers(2, &request_block("GET", &s.host, "/open/x", &[]), true),
        ),
    ] {
        let mark = s.mark();
        let mut c = conn(&s).await;
        let _ = c.send(&bytes).await;
        let closed = c.closed_within(Duration::from_secs(3)).await;
        assert!(
            closed || c.goaway.is_some(),
            "{what}: the connection goes on"
        );
        assert_nothing(&s.settled_since(&mark).await, what);
    }
    still_serving(&s, "flow-control abuse").await;
}

// An HTTP/2 connection with nothing in flight, a silent one or one holding an unfinished
// header block, is closed at the idle timeout (HTTP/1 has the tighter header deadline; see
// the report on this gap).

async fn silent_h2c_connections_are_closed(s: Arc<Stack>) {
    let mut c = conn(&s).await;
    let t0 = Instant::now();
    let closed = c.closed_within(Duration::from_secs(IDLE_SECS + 3)).await;
    assert!(
        closed || c.goaway.is_some(),
        "a silent h2c connection is open after {:?}",
        t0.elapsed()
    );
}

async fn unfinished_header_blocks_are_cut(s: Arc<Stack>) {
    let mark = s.mark();
    let mut c = conn(&s).await;
    let block = request_block("GET", &s.host, "/open/never", &[]);
    c.send(&h2::frame(kind::HEADERS, flag::END_STREAM, 1, &block))
        .await
        .unwrap();
    let t0 = Instant::now();
    let closed = c.closed_within(Duration::from_secs(IDLE_SECS + 3)).await;
    assert!(
        closed || c.goaway.is_some() || c.resets.contains_key(&1),
        "an unfinished header block is held open after {:?}",
        t0.elapsed()
    );
    assert_nothing(&s.settled_since(&mark).await, "unfinished header block");
}

async fn trickled_header_blocks_are_cut(s: Arc<Stack>) {
    let mark = s.mark();
    let mut c = conn(&s).await;
    let block = request_block("GET", &s.host, "/open/trickle", &[]);
    c.send(&h2::frame(kind::HEADERS, flag::END_STREAM, 1, &block))
        .await
        .unwrap();
    let t0 = Instant::now();
    let field = hpack::literal(b"x-slow", b"1");
    let mut cut = false;
    while t0.elapsed() < Duration::from_secs(6) {
        if c.send(&h2::frame(kind::CONTINUATION, 0, 1, &field))
            .await
            .is_err()
        {
            cut = true;
            break;
        }
        let out = c.response_within(1, Duration::from_millis(200)).await;
        if !matches!(out, Outcome::TimedOut) || c.goaway.is_some() {
            cut = true;
            break;
        }
    }
    assert!(
        cut,
        "a trickled header block is still open after {:?}",
        t0.elapsed()
    );
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "cut only after {:?}",
        t0.elapsed()
    );
    assert_nothing(&s.settled_since(&mark).await, "trickled header block");
}

// === HTTP/2 over TLS (ALPN h2) ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_frames_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("adversarial h2 CA");
    let a = ca.leaf(&["a.test"]);
    let b = ca.leaf(&["b.test"]);
    let (ac, ak) = a.write(dir.path(), "a");
    let (bc, bk) = b.write(dir.path(), "b");
    let open = Upstream::start("open").await;
    let vault = Upstream::start("vault").await;
    let cfg = [
        "certificates:".to_owned(),
        format!("  - {{cert_file: {}, key_file: {}}}", ac.display(), ak.display()),
        format!("  - {{cert_file: {}, key_file: {}}}", bc.display(), bk.display()),
        "routes:".to_owned(),
        format!("  - {{from: https://a.test, prefix: /open, to: {}, allow_public_unauthenticated_access: true}}", open.url()),
        format!("  - {{from: https://a.test, prefix: /vault, to: {}, allowed_groups: [vault-keepers]}}", vault.url()),
        format!("  - {{from: https://b.test, to: {}, allow_public_unauthenticated_access: true}}", vault.url()),
    ]
    .join("\n");
    let gh = Gatehouse::start(&cfg).await;
    let authority = format!("a.test:{}", gh.addr.port());
    let tls_conn = || async {
        let tls = tls_connect_alpn(&ca.pem, "a.test", gh.addr, &[b"h2"])
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "ALPN h2");
        H2Conn::over(tls).await.unwrap()
    };
    let block = |path: &str, extra: &[(&str, &str)]| {
        let mut fields = vec![
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", authority.as_str()),
            (":path", path),
        ];
        fields.extend_from_slice(extra);
        hpack::block(&fields)
    };
    // Allowed, canonical.
    let mut c = tls_conn().await;
    let out = c.request(1, &block("/open/a/../b", &[])).await;
    assert_eq!(out.status(), Some(200), "{}", out.brief());
    assert_eq!(open.last()["path"], "/open/b");
    assert_eq!(
        crate::support::upstream::header_value(&open.last(), "x-forwarded-proto").as_deref(),
        Some("https")
    );
    let before = open.hits();
    let mut failures = Vec::new();
    // Refused in every form, nothing forwarded.
    let refused: Vec<(&str, Vec<u8>)> = vec![
        ("traversal", block("/open/../vault/x", &[])),
        ("encoded slash", block("/open/..%2Fvault", &[])),
        ("upper-case name", {
            let mut b = block("/open/x", &[]);
            b.extend(hpack::literal(b"X-Gatehouse-Jwt-Assertion", b"forged"));
            b
        }),
        (
            "connection-specific",
            block("/open/x", &[("transfer-encoding", "chunked")]),
        ),
        ("duplicate :path", {
            let mut b = hpack::block(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", &authority),
                (":path", "/open/x"),
                (":path", "/vault/x"),
            ]);
            b.extend(hpack::literal(b"accept", b"*/*"));
            b
        }),
        (
            "host differs",
            block("/open/x", &[("host", "evil.example")]),
        ),
        (
            ":authority of another certificate's host",
            hpack::block(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", &format!("b.test:{}", gh.addr.port())),
                (":path", "/x"),
            ]),
        ),
    ];
    for (what, b) in refused {
        let mut c = tls_conn().await;
        let out = c.request(1, &b).await;
        if !out.is_refusal() {
            failures.push(format!("{what} over TLS h2: {}", out.brief()));
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    if open.hits() != before || vault.hits() != 0 {
        failures.push(format!(
            "refused requests reached an upstream: open {} → {}, vault {}",
            before,
            open.hits(),
            vault.hits()
        ));
    }
    // A CONTINUATION flood over TLS is cut as over h2c.
    let mut c = tls_conn().await;
    let mut bytes = h2::frame(
        kind::HEADERS,
        flag::END_STREAM,
        1,
        &block("/open/flood", &[]),
    );
    let field = hpack::literal(b"x-flood", &[b'f'; 100]);
    for _ in 0..20_000 {
        bytes.extend(h2::frame(kind::CONTINUATION, 0, 1, &field));
    }
    let _ = c.send(&bytes).await;
    if !(c.closed_within(Duration::from_secs(3)).await || c.goaway.is_some()) {
        failures.push("a 2 MB header block over TLS was taken in".into());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    drop(gh);
}
