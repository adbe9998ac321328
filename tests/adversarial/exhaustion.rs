//! Resource exhaustion (principle 8): bounded header bytes and count, a total header
//! deadline, unauthenticated uploads refused from their headers without reading the body,
//! no store writes for unauthenticated traffic, bounded metrics and memory under random
//! hosts, paths and methods.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::runner::Report;
use crate::stack::{assert_nothing, describe, Kind, Options, Stack, COOKIE};
use crate::support::RawConn;
use crate::{cases, kind_cases};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_exhaustion() {
    let s = Stack::start(Options {
        redis: true,
        ..Options::default()
    })
    .await;
    let mut report = Report::default();
    report
        .kinds(
            &s,
            kind_cases![
                oversized_headers_are_refused_fast,
                unauthenticated_uploads_are_refused_from_the_headers,
            ],
        )
        .await;
    report
        .each(
            &s,
            cases![
                slow_headers_are_cut_at_a_total_deadline,
                silent_connections_are_closed,
                unauthenticated_traffic_never_writes_to_the_store,
                metrics_and_memory_stay_bounded_under_random_requests,
                a_request_flood_on_one_connection_is_served_in_order,
                thousands_of_cookies_are_handled_fast,
            ],
        )
        .await;
    report.finish("exhaustion");
}

async fn oversized_headers_are_refused_fast(s: Arc<Stack>, k: Kind) {
    let target = format!("{}/x", k.prefix());
    let cases: Vec<(String, &[u16])> = vec![
        (format!("X-Big: {}\r\n", "a".repeat(200 * 1024)), &[431]),
        (format!("X-Big: {}\r\n", "a".repeat(70 * 1024)), &[431]),
        (
            (0..40)
                .map(|i| format!("X-Part-{i}: {}\r\n", "b".repeat(2000)))
                .collect(),
            &[431],
        ),
        (
            (0..5000).map(|i| format!("h{i}: 1\r\n")).collect(),
            &[400, 431],
        ),
        ((0..120).map(|i| format!("h{i}: 1\r\n")).collect(), &[431]),
        (format!("Cookie: {}\r\n", "c=1; ".repeat(20_000)), &[431]),
    ];
    let mark = s.mark();
    for (extra, statuses) in cases {
        let t0 = Instant::now();
        let r = s.try_send(&s.h1(k, "GET", &target, &extra)).await;
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{} header bytes took {:?}",
            extra.len(),
            t0.elapsed()
        );
        match r {
            Ok(r) => assert!(
                statuses.contains(&r.status),
                "{} header bytes: {}",
                extra.len(),
                r.dump()
            ),
            Err(e) => panic!("{} header bytes: no answer: {e}", extra.len()),
        }
    }
    assert_nothing(&s.settled_since(&mark).await, "oversized headers");
}

async fn unauthenticated_uploads_are_refused_from_the_headers(s: Arc<Stack>, k: Kind) {
    // The public route has nothing to refuse: its case aims at the vault.
    let target = if k.signed_in() {
        format!("{}/upload", k.prefix())
    } else {
        "/vault/upload".to_owned()
    };
    for (accept, framing, status) in [
        ("application/json", "Content-Length: 10737418240\r\n", 401),
        ("application/json", "Transfer-Encoding: chunked\r\n", 401),
        ("text/html", "Content-Length: 10737418240\r\n", 302),
    ] {
        let mark = s.mark();
        let mut conn = RawConn::open(s.gh.addr).await;
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\n{framing}\r\n",
            s.host
        );
        conn.send(head.as_bytes()).await.unwrap();
        let t0 = Instant::now();
        // Keep sending while waiting: a proxy that reads the body would keep taking it.
        let chunk = if framing.contains("chunked") {
            format!("10000\r\n{}\r\n", "u".repeat(0x10000)).into_bytes()
        } else {
            vec![b'u'; 0x10000]
        };
        let mut sent = 0usize;
        // Some body right away, as an uploader would; a write that blocks means the proxy
        // is not reading, which is what it should do.
        for _ in 0..8 {
            match tokio::time::timeout(Duration::from_millis(100), conn.send(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len(),
                _ => break,
            }
        }
        let r = conn.response_within(Duration::from_secs(3)).await;
        let r = r.unwrap_or_else(|e| panic!("{framing:?} to {target}: no answer: {e}"));
        assert_eq!(r.status, status, "{framing:?} ({accept}):\n{}", r.dump());
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "answered only after {:?}",
            t0.elapsed()
        );
        // The rest of the 10 GiB is not read: the connection ends.
        let t1 = Instant::now();
        let mut closed = false;
        while t1.elapsed() < Duration::from_secs(3) {
            match tokio::time::timeout(Duration::from_millis(200), conn.send(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len(),
                Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let closed = closed || conn.drain(Duration::from_millis(500)).await.1;
        assert!(
            closed,
            "{framing:?}: still taking the body after {} MiB",
            sent >> 20
        );
        assert!(
            sent < 256 << 20,
            "{framing:?}: gatehouse read {} MiB of an upload it refused",
            sent >> 20
        );
        assert_nothing(&s.settled_since(&mark).await, "refused upload");
    }
}

async fn slow_headers_are_cut_at_a_total_deadline(s: Arc<Stack>) {
    let host = s.host.clone();
    let cookie = format!("Cookie: {COOKIE}={}\r\n", s.alice);
    // (what, the bytes, the pause between writes, bytes per write)
    let variants: Vec<(&str, Vec<u8>, u64, usize)> = vec![
        (
            "a byte at a time",
            format!(
                "GET /open/slow HTTP/1.1\r\nHost: {host}\r\n{}",
                "X-A: 1\r\n".repeat(50)
            )
            .into_bytes(),
            100,
            1,
        ),
        (
            "a header line at a time",
            format!(
                "GET /admin/slow HTTP/1.1\r\nHost: {host}\r\n{cookie}{}",
                "X-Slow: 1\r\n".repeat(50)
            )
            .into_bytes(),
            200,
            11,
        ),
        (
            "the request line slowly",
            format!("GET /open/{} HTTP/1.1\r\n", "a".repeat(200)).into_bytes(),
            100,
            4,
        ),
    ];
    let mark = s.mark();
    let runs = variants.into_iter().map(|(what, bytes, pause, step)| {
        let addr = s.gh.addr;
        async move {
            let mut conn = RawConn::open(addr).await;
            let t0 = Instant::now();
            let mut closed_at = None;
            for piece in bytes.chunks(step) {
                if conn.send(piece).await.is_err() {
                    closed_at = Some(t0.elapsed());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(pause)).await;
                if t0.elapsed() > Duration::from_secs(4) {
                    break;
                }
            }
            let closed_at = match closed_at {
                Some(t) => t,
                None => {
                    let (_, closed) = conn.drain(Duration::from_secs(1)).await;
                    assert!(closed, "{what}: still open after {:?}", t0.elapsed());
                    t0.elapsed()
                }
            };
            assert!(
                closed_at < Duration::from_millis(3000),
                "{what}: closed only after {closed_at:?} (deadline 1 s)"
            );
        }
    });
    futures_util::future::join_all(runs).await;
    assert_nothing(&s.settled_since(&mark).await, "slow headers");
}

async fn silent_connections_are_closed(s: Arc<Stack>) {
    // A connection that never sends a byte holds a socket as surely as a slow one.
    let conns: Vec<RawConn> =
        futures_util::future::join_all((0..3).map(|_| RawConn::open(s.gh.addr))).await;
    let t0 = Instant::now();
    for mut c in conns {
        let left = Duration::from_secs(6).saturating_sub(t0.elapsed());
        let (_, closed) = c.drain(left).await;
        assert!(
            closed,
            "a silent connection is still open after {:?}",
            t0.elapsed()
        );
    }
}

/// `cmdstat_<name>` → calls, from `INFO commandstats`.
async fn command_calls(s: &Stack) -> BTreeMap<String, u64> {
    let redis = s.redis.as_ref().expect("this stack runs on Redis");
    let info = match redis
        .command(&[b"INFO".as_slice(), b"commandstats".as_slice()])
        .await
    {
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        redis::Value::VerbatimString { text, .. } => text,
        other => panic!("INFO: {other:?}"),
    };
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// Commands that do not change data.
const READ_ONLY: [&str; 24] = [
    "get",
    "mget",
    "exists",
    "ttl",
    "pttl",
    "ping",
    "info",
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "hello",
    "client",
    "client|setinfo",
    "client|setname",
    "select",
    "auth",
    "command",
    "cluster",
    "config",
    "hget",
    "hgetall",
    "strlen",
    "scan",
    "type",
];

async fn unauthenticated_traffic_never_writes_to_the_store(s: Arc<Stack>) {
    let before = command_calls(&s).await;
    let host = s.host.clone();
    let shapes: Vec<String> = vec![
        s.anon("GET", "/admin/x", "").iter().map(|b| *b as char).collect(),
        format!("GET /admin/x HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\nConnection: close\r\n\r\n"),
        format!("GET /admin/x HTTP/1.1\r\nHost: {host}\r\nCookie: {COOKIE}=junk\r\nConnection: close\r\n\r\n"),
        format!("GET /admin/x HTTP/1.1\r\nHost: {host}\r\nCookie: {COOKIE}={}x\r\nConnection: close\r\n\r\n", &s.alice[..s.alice.len() - 1]),
        format!("GET /admin/x HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer junk\r\nConnection: close\r\n\r\n"),
        format!("GET /oauth2/callback?state=a&code=b HTTP/1.1\r\nHost: {host}\r\nCookie: {COOKIE}_login=junk\r\nConnection: close\r\n\r\n"),
        format!("POST /.gatehouse/sign_out HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        format!("GET /.gatehouse/callback?code={} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n", "ab".repeat(32)),
        format!("GET /.gatehouse/user HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        format!("GET /.gatehouse/api/v1/login?redirect_uri=http://127.0.0.1:9/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        format!("GET /open/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        format!("POST /vault/x HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"),
    ];
    for round in 0..25 {
        let sends = shapes.iter().map(|req| s.try_send(req.as_bytes()));
        for r in futures_util::future::join_all(sends).await {
            let r = r.unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert!(r.status < 500, "{}", r.dump());
        }
    }
    let after = command_calls(&s).await;
    let written: Vec<String> = after
        .iter()
        .filter(|(name, calls)| {
            !READ_ONLY.contains(&name.as_str()) && before.get(*name) != Some(calls)
        })
        .map(|(name, calls)| {
            format!(
                "{name}: {} → {calls}",
                before.get(name).copied().unwrap_or(0)
            )
        })
        .collect();
    assert!(
        written.is_empty(),
        "unauthenticated traffic wrote to the store: {written:?}"
    );
}

/// The value of the first sample of metric `name` in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn metrics_and_memory_stay_bounded_under_random_requests(s: Arc<Stack>) {
    let metrics =
        || async { String::from_utf8_lossy(&s.gh.admin_get("/metrics").await.body).into_owned() };
    let warm = metrics().await;
    let rss_before = sample(&warm, "process_resident_memory_bytes");
    let lines_before = warm.lines().filter(|l| !l.starts_with('#')).count();
    let mut tokens = Vec::new();
    for batch in 0..30 {
        let reqs: Vec<Vec<u8>> = (0..100)
            .map(|i| {
                let t = format!("r{batch}x{i}q{}", rand_token());
                tokens.push(t.clone());
                let (method, host, path) = match i % 4 {
                    0 => ("GET".to_owned(), format!("{t}.example"), format!("/{t}")),
                    1 => (format!("M{}", t.to_uppercase()), s.host.clone(), format!("/open/{t}")),
                    2 => ("GET".to_owned(), s.host.clone(), format!("/admin/{t}")),
                    _ => ("GET".to_owned(), format!("{t}.{}", s.host), format!("/{t}?{t}")),
                };
                format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {COOKIE}={t}\r\nConnection: close\r\n\r\n").into_bytes()
            })
            .collect();
        let answers = futures_util::future::join_all(reqs.iter().map(|r| s.try_send(r))).await;
        let answered = answers.iter().filter(|a| a.is_ok()).count();
        assert!(
            answered * 10 >= answers.len() * 9,
            "only {answered} of {} random requests were answered",
            answers.len()
        );
    }
    let text = metrics().await;
    for t in tokens.iter().step_by(37) {
        assert!(
            !text.contains(t.as_str()),
            "a client-chosen value became a metric label: {t}"
        );
    }
    let lines_after = text.lines().filter(|l| !l.starts_with('#')).count();
    assert!(
        lines_after <= lines_before + 40,
        "metric series grew from {lines_before} to {lines_after} under random requests"
    );
    // The process collector reports RSS on Linux, where the tests run.
    let rss_after = sample(&text, "process_resident_memory_bytes");
    assert!(rss_before.is_some() && rss_after.is_some(), "no RSS metric");
    if let (Some(a), Some(b)) = (rss_before, rss_after) {
        assert!(
            b - a < 64.0 * 1024.0 * 1024.0,
            "RSS grew by {} MiB",
            (b - a) / 1048576.0
        );
    }
}

fn rand_token() -> String {
    let mut b = [0u8; 6];
    rand::fill(&mut b);
    hex::encode(b)
}

async fn a_request_flood_on_one_connection_is_served_in_order(s: Arc<Stack>) {
    // 5,000 pipelined refusals in one write: answered in order or cut, never mixed up, and
    // the listener keeps answering everyone else meanwhile.
    let one = format!(
        "GET /admin/flood HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n\r\n",
        s.host
    );
    let mark = s.mark();
    let mut conn = RawConn::open(s.gh.addr).await;
    let flood = one.repeat(5000);
    let writer = {
        let bytes = flood.into_bytes();
        async move {
            let _ = conn.send(&bytes).await;
            conn.drain(Duration::from_secs(10)).await
        }
    };
    let other = async {
        let t0 = Instant::now();
        let r = s.send(&s.anon("GET", "/open/meanwhile", "")).await;
        (r.status, t0.elapsed())
    };
    let ((rest, _), (status, took)) = tokio::join!(writer, other);
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(2), "others waited {took:?}");
    let text = String::from_utf8_lossy(&rest);
    let answered = text.matches("HTTP/1.1 401").count();
    let other_statuses = text.matches("HTTP/1.1 ").count() - answered;
    assert_eq!(other_statuses, 0, "a flood answer other than 401");
    assert!(answered >= 1, "the flood got no answer at all");
    let seen = s.settled_since(&mark).await;
    assert!(
        seen.iter().all(|x| x.path() == "/open/meanwhile"),
        "{}",
        describe(&seen)
    );
}

async fn thousands_of_cookies_are_handled_fast(s: Arc<Stack>) {
    let mut many: String = (0..3000).map(|i| format!("c{i}=v{i}; ")).collect();
    many.push_str(&format!("{COOKIE}={}", s.alice));
    let t0 = Instant::now();
    let r = s
        .send(&s.anon("GET", "/admin/x", &format!("Cookie: {many}\r\n")))
        .await;
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(r.status, 200, "{}", r.dump());
    let echo = r.json();
    let cookies = crate::support::upstream::header_values(&echo, "cookie").join("; ");
    assert!(
        cookies.contains("c2999=v2999") && !cookies.contains(COOKIE),
        "{cookies:.200}"
    );
    // Many copies of the session cookie, all damaged: still one cheap answer.
    let junk: String = (0..2000).map(|i| format!("{COOKIE}=junk{i}; ")).collect();
    let t0 = Instant::now();
    let r = s
        .send(&s.anon("GET", "/admin/x", &format!("Cookie: {junk}\r\n")))
        .await;
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(r.status, 401, "{}", r.dump());
}
