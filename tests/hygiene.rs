//! Request hygiene (SECURITY.md principles 1, 2, 8), sent as raw bytes: one canonical path
//! used for routing and forwarding, ambiguous encodings rejected, framing and size limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::{
    assert_error_page, public_route, raw_request, try_raw_request, Gatehouse, RawResponse, Upstream,
};

/// `/public/*` → public, `/admin/*` → admin, anything else → root.
struct Setup {
    public: Upstream,
    admin: Upstream,
    root: Upstream,
    gh: Gatehouse,
}

async fn setup() -> Setup {
    let public = Upstream::start("public").await;
    let admin = Upstream::start("admin").await;
    let root = Upstream::start("root").await;
    let cfg = format!(
        "routes:\n{}{}{}",
        public_route("http://app.test", "prefix: /public", &public.url(), ""),
        public_route("http://app.test", "prefix: /admin", &admin.url(), ""),
        public_route("http://app.test", "", &root.url(), ""),
    );
    let gh = Gatehouse::plain(&cfg).await;
    Setup {
        public,
        admin,
        root,
        gh,
    }
}

impl Setup {
    fn hits(&self) -> usize {
        self.public.hits() + self.admin.hits() + self.root.hits()
    }

    /// Sends `GET {target}` verbatim.
    async fn get_raw(&self, target: &str) -> RawResponse {
        let req = format!("GET {target} HTTP/1.1\r\nHost: app.test\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
        raw_request(self.gh.addr, req.as_bytes()).await
    }

    /// Sends `bytes` verbatim and asserts a gatehouse error page with `status`; nothing
    /// may reach any upstream.
    async fn assert_rejected(&self, bytes: &[u8], status: u16, reason: &str) {
        let r = raw_request(self.gh.addr, bytes).await;
        assert_error_page(&r, status, reason);
        assert_eq!(self.hits(), 0, "a rejected request reached an upstream");
    }

    /// For malformations Pingora's HTTP/1 parser refuses before any gatehouse code runs
    /// and gatehouse's raw head check lets through: the status and "never forwarded" hold,
    /// but the page is Pingora's bare one (no request id) — a known gap, see the README.
    async fn assert_refused_by_parser(&self, bytes: &[u8], statuses: &[u16]) {
        let r = raw_request(self.gh.addr, bytes).await;
        assert!(
            statuses.contains(&r.status),
            "expected one of {statuses:?}:\n{}",
            r.dump()
        );
        assert_eq!(self.hits(), 0, "a rejected request reached an upstream");
    }

    async fn assert_path_rejected(&self, target: &str) {
        let req = format!("GET {target} HTTP/1.1\r\nHost: app.test\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
        self.assert_rejected(req.as_bytes(), 400, "Bad Request")
            .await;
    }
}

fn with_headers(extra: &str) -> Vec<u8> {
    format!("GET /public/x HTTP/1.1\r\nHost: app.test\r\nAccept: application/json\r\n{extra}Connection: close\r\n\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_are_resolved_before_routing_and_forwarded_so() {
    let s = setup().await;
    let r = s.get_raw("/public/../admin/x").await;
    assert_eq!(r.status, 200, "{}", r.dump());
    assert_eq!(r.json()["name"], "admin", "routed on the canonical path");
    assert_eq!(r.json()["path"], "/admin/x", "forwarded canonical path");
    assert_eq!(s.public.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_never_climb_above_root() {
    let s = setup().await;
    let target = format!("/public/{}admin/x", "../".repeat(20));
    let r = s.get_raw(&target).await;
    assert_eq!(r.status, 200, "{}", r.dump());
    assert_eq!(
        (r.json()["name"].as_str(), r.json()["path"].as_str()),
        (Some("admin"), Some("/admin/x"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_unreserved_characters_are_decoded_once_and_slashes_merged() {
    let s = setup().await;
    let r = s.get_raw("//%61dmin//x").await;
    assert_eq!(r.status, 200, "{}", r.dump());
    assert_eq!(
        (r.json()["name"].as_str(), r.json()["path"].as_str()),
        (Some("admin"), Some("/admin/x"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_slash_is_rejected() {
    setup()
        .await
        .assert_path_rejected("/public/..%2Fadmin/x")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_backslash_is_rejected() {
    setup()
        .await
        .assert_path_rejected("/public/%5C..%5Cadmin")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_backslash_is_rejected() {
    setup()
        .await
        .assert_path_rejected("/public/\\..\\admin")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_nul_is_rejected() {
    setup().await.assert_path_rejected("/admin%00.png").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_fragment_is_400() {
    // Pingora's parser would drop the fragment; the raw head check refuses it first.
    setup()
        .await
        .assert_path_rejected("/admin#/../public")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_percent_encoding_is_rejected() {
    setup().await.assert_path_rejected("/public/%zz").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_are_rejected_by_default() {
    setup()
        .await
        .assert_path_rejected("/admin;x=1/../public/y")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_encoding_is_forwarded_byte_identical() {
    let s = setup().await;
    let r = s.get_raw("/public/%252e%252e/admin").await;
    assert_eq!(r.status, 200, "{}", r.dump());
    assert_eq!(r.json()["name"], "public");
    assert_eq!(r.json()["path"], "/public/%252e%252e/admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_is_not_part_of_the_path() {
    let s = setup().await;
    let r = s.get_raw("/public/x?next=/admin/../y&a=%2F").await;
    assert_eq!(r.status, 200, "{}", r.dump());
    assert_eq!(r.json()["name"], "public");
    assert_eq!(
        r.json()["path"],
        "/public/x?next=/admin/../y&a=%2F",
        "query forwarded as sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_over_8_kib_is_414() {
    let s = setup().await;
    let target = format!("/public/{}", "a".repeat(9 * 1024));
    let req = format!("GET {target} HTTP/1.1\r\nHost: app.test\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    s.assert_rejected(req.as_bytes(), 414, "URI Too Long").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_of_100_kib_is_refused_fast() {
    // Refused by the raw head check once the request line passes 8 KiB, before the rest
    // is read.
    let s = setup().await;
    let target = format!("/public/{}", "a".repeat(100 * 1024));
    let req = format!("GET {target} HTTP/1.1\r\nHost: app.test\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    let t0 = Instant::now();
    s.assert_rejected(req.as_bytes(), 414, "URI Too Long").await;
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_dot_segments_are_refused_fast() {
    let s = setup().await;
    let target = format!("/public/{}admin/x", "../".repeat(5000));
    let t0 = Instant::now();
    let r = s.get_raw(&target).await;
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t0.elapsed()
    );
    // 15 KB of URI: over the 8 KiB limit.
    assert!(r.status == 414 || r.status == 400, "{}", r.dump());
    assert_eq!(s.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_headers_are_400() {
    let s = setup().await;
    let req = b"GET /public/x HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\nAccept: application/json\r\nConnection: close\r\n\r\n";
    s.assert_rejected(req, 400, "Bad Request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_with_another_authority_is_400() {
    let s = setup().await;
    let req = b"GET http://other.test/admin/x HTTP/1.1\r\nHost: app.test\r\nAccept: application/json\r\nConnection: close\r\n\r\n";
    s.assert_refused_by_parser(req, &[400]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscore_in_header_name_is_400() {
    let s = setup().await;
    s.assert_rejected(
        &with_headers("X_Forwarded_For: 10.0.0.1\r\n"),
        400,
        "Bad Request",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_header_value_is_400() {
    let s = setup().await;
    s.assert_rejected(&with_headers("X-Test: a\0b\r\n"), 400, "Bad Request")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_cr_in_header_value_is_400() {
    let s = setup().await;
    s.assert_rejected(
        &with_headers("X-Test: a\rX-Admin: 1\r\n"),
        400,
        "Bad Request",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_64_kib_are_431() {
    let s = setup().await;
    let big = format!("X-Big: {}\r\n", "a".repeat(200 * 1024));
    s.assert_rejected(&with_headers(&big), 431, "Request Header Fields Too Large")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_headers_are_refused() {
    let s = setup().await;
    let many: String = (0..5000).map(|i| format!("h{i}: 1\r\n")).collect();
    s.assert_rejected(&with_headers(&many), 431, "Request Header Fields Too Large")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_count_limit_is_100() {
    let s = setup().await;
    // with_headers sends Host, Accept and Connection: 97 more make 100.
    let ok: String = (0..97).map(|i| format!("h{i}: 1\r\n")).collect();
    let r = raw_request(s.gh.addr, &with_headers(&ok)).await;
    assert_eq!(r.status, 200, "100 headers are allowed:\n{}", r.dump());
    let over: String = (0..98).map(|i| format!("h{i}: 1\r\n")).collect();
    let r = raw_request(s.gh.addr, &with_headers(&over)).await;
    assert_error_page(&r, 431, "Request Header Fields Too Large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_rejected() {
    let s = setup().await;
    let req =
        b"CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\nAccept: application/json\r\n\r\n";
    match try_raw_request(s.gh.addr, req).await {
        Ok(r) => assert!(
            (400..500).contains(&r.status),
            "CONNECT answered:\n{}",
            r.dump()
        ),
        Err(e) => assert!(
            e.kind() != std::io::ErrorKind::TimedOut,
            "CONNECT left hanging: {e}"
        ),
    }
    assert_eq!(s.hits(), 0, "CONNECT reached an upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_400() {
    // Refused from the raw head, before the parser picks a framing: neither the request
    // nor the one smuggled in its body reaches an upstream.
    let s = setup().await;
    let req = b"POST /public/x HTTP/1.1\r\nHost: app.test\r\nAccept: application/json\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin/x HTTP/1.1\r\nHost: app.test\r\n\r\n";
    s.assert_rejected(req, 400, "Bad Request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_400() {
    let s = setup().await;
    for fields in [
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 5, 5\r\n",
        "Content-Length: -1\r\n",
        " Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding : chunked\r\n",
    ] {
        let req = format!("POST /public/x HTTP/1.1\r\nHost: app.test\r\nAccept: application/json\r\n{fields}\r\n0\r\n\r\n");
        s.assert_rejected(req.as_bytes(), 400, "Bad Request").await;
    }
    let http10 = b"POST /public/x HTTP/1.0\r\nHost: app.test\r\nAccept: application/json\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    s.assert_rejected(http10, 400, "Bad Request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_content_length_is_400() {
    let s = setup().await;
    let req = b"POST /public/x HTTP/1.1\r\nHost: app.test\r\nAccept: application/json\r\nContent-Length: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab";
    s.assert_refused_by_parser(req, &[400]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_each_routed_on_their_own() {
    use tokio::io::AsyncWriteExt;
    let s = setup().await;
    let mut tcp = tokio::net::TcpStream::connect(s.gh.addr).await.unwrap();
    let two = b"GET /public/one HTTP/1.1\r\nHost: app.test\r\n\r\nGET /admin/two HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
    tcp.write_all(two).await.unwrap();
    let (mut rd, _wr) = tcp.split();
    let mut buf = Vec::new();
    let first = support::raw::read_response_buffered(&mut rd, &mut buf)
        .await
        .unwrap();
    assert_eq!(
        (first.status, first.json()["path"].as_str()),
        (200, Some("/public/one")),
        "{}",
        first.dump()
    );
    assert_eq!(first.json()["name"], "public");
    // Closing after the first response is allowed (the client retries); answering the
    // second one is too, but only as its own request.
    match support::raw::read_response_buffered(&mut rd, &mut buf).await {
        Ok(second) => {
            let echo = second.json();
            assert_eq!(
                (echo["name"].as_str(), echo["path"].as_str()),
                (Some("admin"), Some("/admin/two")),
                "{}",
                second.dump()
            );
        }
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}"),
    }
    assert_eq!(
        s.public.hits(),
        1,
        "the second request must not reach the first's upstream"
    );
    assert_eq!(s.public.last()["body_len"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_at_a_total_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start("app").await;
    let cfg = format!(
        "request_header_timeout: 1s\nroutes:\n{}",
        public_route("http://app.test", "", &up.url(), "")
    );
    let gh = Gatehouse::plain(&cfg).await;
    let tcp = tokio::net::TcpStream::connect(gh.addr).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let t0 = Instant::now();
    // Slowloris: a header line every 200 ms, each read well within any per-read timeout.
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n").await;
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut sink)).await;
    let took = t0.elapsed();
    writer.abort();
    assert!(
        closed.is_ok(),
        "connection still open after 5 s of slow headers"
    );
    assert!(
        took < Duration::from_millis(3000),
        "closed only after {took:?} (deadline 1 s)"
    );
    let head = String::from_utf8_lossy(&sink);
    assert!(
        head.is_empty() || head.starts_with("HTTP/1.1 408") || head.starts_with("HTTP/1.1 400"),
        "{head}"
    );
    assert_eq!(up.hits(), 0);
}
