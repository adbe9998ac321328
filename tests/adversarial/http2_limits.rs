//! HTTP/2 connection-level abuse as raw frames: explicit limits in SETTINGS, rapid reset,
//! stream, CONTINUATION, PING and SETTINGS floods, HPACK bombs, flow-control abuse, silent and
//! unfinished connections; and HTTP/2 over TLS (ALPN h2).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::cases;
use crate::http2::{conn, split_block};
use crate::runner::Report;
use crate::stack::{assert_nothing, Options, Seen, Stack};
use crate::support::{
    h2::{self, error, flag, kind, request_block, setting, H2Conn, Outcome},
    hpack,
    tls::{tls_connect_alpn, TestCa},
    Gatehouse, Upstream,
};

/// The stack's `timeout_idle`: short, so that connections with nothing in flight are seen
/// closed.
const IDLE_SECS: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connection_limits() {
    let s = Stack::start(Options {
        timeout_idle: Some(IDLE_SECS),
        ..Options::default()
    })
    .await;
    let mut report = Report::default();
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
    report.finish("http2 limits");
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

// A silent HTTP/2 connection with nothing in flight is closed at the idle timeout; one
// holding an unfinished header block at the header deadline (`request_header_timeout`, 1 s
// here), as an HTTP/1 request header would be.

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
    // Well before the idle timeout (3 s).
    let closed = c.closed_within(Duration::from_millis(2500)).await;
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
        "request_header_timeout: 1s".to_owned(),
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
    // An unfinished header block over TLS is cut at the header deadline (1 s).
    let mut c = tls_conn().await;
    let _ = c
        .send(&h2::frame(
            kind::HEADERS,
            flag::END_STREAM,
            1,
            &block("/open/never", &[]),
        ))
        .await;
    let t0 = Instant::now();
    if !(c.closed_within(Duration::from_millis(2500)).await || c.goaway.is_some()) {
        failures.push(format!(
            "an unfinished header block over TLS is held open after {:?}",
            t0.elapsed()
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    drop(gh);
}
