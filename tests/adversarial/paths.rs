//! Paths and routing (principle 1): one canonical path, decided on and forwarded; anything
//! ambiguous refused; the query, the fragment and the authority never change the route.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::runner::Report;
use crate::stack::{
    assert_consistent, assert_nothing, assert_one, describe, lossy, Kind, Options, Stack,
};
use crate::{cases, kind_cases};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_and_routing() {
    let s = Stack::start(Options::default()).await;
    let mut report = Report::default();
    report
        .kinds(
            &s,
            kind_cases![
                dot_segments_are_resolved_before_deciding,
                ambiguous_encodings_are_refused,
                percent_decoding_happens_exactly_once,
                prefixes_match_whole_segments_exactly,
                the_query_never_routes,
                fragments_never_change_the_route,
                absolute_form_uses_one_authority,
                host_header_tricks_are_refused,
                long_targets_are_refused_fast,
                non_origin_targets_are_refused,
            ],
        )
        .await;
    report
        .each(
            &s,
            cases![
                allow_regex_never_sees_the_query,
                source_ip_rules_use_the_tcp_peer,
                connect_is_refused_in_every_form,
            ],
        )
        .await;
    report.finish("paths");
}

/// `tmpl` with `{P}` replaced by the kind's prefix.
fn t(k: Kind, tmpl: &str) -> String {
    tmpl.replace("{P}", k.prefix())
}

/// The status a request of `k` gets where it is not allowed: 401 without a session, 403
/// with one.
fn denied(k: Kind) -> u16 {
    if k.signed_in() {
        403
    } else {
        401
    }
}

/// Sends each target as kind `k`; expects `status` for each and nothing forwarded.
async fn expect_refused<T: AsRef<str>>(s: &Stack, k: Kind, targets: &[T], status: u16) {
    let mark = s.mark();
    for target in targets {
        let target = target.as_ref();
        let r = s.send(&s.h1(k, "GET", target, "")).await;
        assert_eq!(r.status, status, "GET {target:?}:\n{}", r.dump());
    }
    assert_nothing(&s.settled_since(&mark).await, "refused targets");
}

/// Sends `target` as kind `k`; expects it allowed and the kind's upstream to receive exactly
/// `forwarded`.
async fn expect_forwarded(s: &Stack, k: Kind, target: &str, forwarded: &str) {
    let mark = s.mark();
    let r = s.send(&s.h1(k, "GET", target, "")).await;
    assert_eq!(r.status, k.ok(), "GET {target:?}:\n{}", r.dump());
    let seen = assert_one(&s.since(&mark), k.upstream(), &format!("GET {target:?}"));
    assert_eq!(seen.path(), forwarded, "GET {target:?} was forwarded as");
}

async fn dot_segments_are_resolved_before_deciding(s: Arc<Stack>, k: Kind) {
    // Into the vault (nobody's group): refused, whatever the spelling of the dots.
    let targets: Vec<String> = [
        "{P}/../vault/x",
        "{P}/./../vault/x",
        "{P}/x/../../vault/x",
        "{P}//../vault/x",
        "{P}/%2e%2e/vault/x",
        "{P}/%2E%2E/vault/x",
        "{P}/.%2e/vault/x",
        "{P}/%2e./vault/x",
        "{P}/x/%2e%2e/%2e%2e/vault/x",
        "{P}/../../../../vault/x",
        "/%2e%2e{P}/../vault/x",
    ]
    .iter()
    .map(|tmpl| t(k, tmpl))
    .collect();
    expect_refused(&s, k, &targets, denied(k)).await;
    // Out of elsewhere into the route: forwarded in canonical form.
    for (tmpl, canonical) in [
        ("/vault/../{P}/x", "{P}/x"),
        ("{P}/a/b/../c", "{P}/a/c"),
        ("{P}/a/./b/.", "{P}/a/b/"),
        ("{P}//a///b", "{P}/a/b"),
        ("{P}/a/%2e/b", "{P}/a/b"),
        ("/nope/%2E%2E{P}/x", "{P}/x"),
        ("{P}/...", "{P}/..."),
        ("{P}/..../x", "{P}/..../x"),
    ] {
        expect_forwarded(&s, k, &t(k, tmpl), &t(k, canonical)).await;
    }
}

async fn ambiguous_encodings_are_refused(s: Arc<Stack>, k: Kind) {
    let targets: Vec<String> = [
        "{P}/..%2Fvault/x",
        "{P}/..%2fvault/x",
        "{P}/%2e%2e%2fvault/x",
        "{P}/%5C..%5Cvault",
        "{P}/%5c",
        "{P}/\\..\\vault",
        "{P}%00.png",
        "{P}/x%00",
        "{P}/%0a",
        "{P}/%0d%0aX-Injected:%201",
        "{P}/%09",
        "{P}/%7f",
        "{P}/%zz",
        "{P}/%",
        "{P}/%2",
        "{P}/%c0%ae%c0%ae/vault/x",
        "{P}/%e0%80%ae",
        "{P}/%ff",
        "{P}/%ed%a0%80",
        "{P}/%c3",
        "{P};x=1/../vault/x",
        "{P}/..;/vault/x",
        "{P}/.;/x",
        "{P}/x;jsessionid=1",
        "{P}/%2e%2e;/vault",
    ]
    .iter()
    .map(|tmpl| t(k, tmpl))
    .collect();
    expect_refused(&s, k, &targets, 400).await;
    // Raw bytes no conforming client sends. Pingora percent-encodes control, space and
    // non-ASCII bytes of a request line it cannot parse before gatehouse sees it; what must
    // hold is that the byte never reaches an upstream raw and that the encoded form is what
    // was decided on: an encoded control character or NUL is refused like one sent encoded.
    let head = String::from_utf8(s.h1(k, "GET", "/", "")).unwrap();
    let rest = head.strip_prefix("GET / ").unwrap().to_owned();
    let raws: [(&[u8], Option<&str>); 10] = [
        (b"/\x01", None),
        (b"/\x7f", None),
        (b"/x\x00y", None),
        (b"/x\ty", None),
        (b"/x\ry", None),
        (b"/\xff", None),
        (b"/\xc0\xae\xc0\xae/vault", None),
        (b"/caf\xc3\xa9", Some("/caf%C3%A9")),
        (b"/x y", Some("/x%20y")),
        (b"/x?a=\x00&b=\r", Some("/x?a=%00&b=%0D")),
    ];
    let start = s.mark();
    let mut forwarded = 0;
    for (raw, encoded) in raws {
        let mut req = format!("GET {}", k.prefix()).into_bytes();
        req.extend_from_slice(raw);
        req.push(b' ');
        req.extend_from_slice(rest.as_bytes());
        let mark = s.mark();
        let r = s.try_send(&req).await;
        let seen = s.since(&mark);
        match (r, encoded) {
            (Ok(r), _) if r.status == 400 => assert_nothing(&seen, &lossy(&req)),
            (Ok(r), Some(encoded)) => {
                forwarded += 1;
                assert_eq!(r.status, k.ok(), "{}:\n{}", lossy(&req), r.dump());
                let one = assert_one(&seen, k.upstream(), &lossy(&req));
                assert_eq!(one.path(), format!("{}{encoded}", k.prefix()));
            }
            (Ok(r), None) => panic!("{}: expected 400:\n{}", lossy(&req), r.dump()),
            (Err(e), _) => {
                assert!(
                    e.kind() != std::io::ErrorKind::TimedOut,
                    "{}: {e}",
                    lossy(&req)
                );
                assert_nothing(&seen, &lossy(&req));
            }
        }
    }
    let all = s.settled_since(&start).await;
    assert_eq!(all.len(), forwarded, "late arrivals: {}", describe(&all));
}

async fn percent_decoding_happens_exactly_once(s: Arc<Stack>, k: Kind) {
    for (tmpl, canonical) in [
        ("{P}/%252e%252e/vault", "{P}/%252e%252e/vault"),
        ("{P}/%252F", "{P}/%252F"),
        ("{P}/%61%62", "{P}/ab"),
        ("{P}/%7e%7E", "{P}/~~"),
        ("{P}/a%20b", "{P}/a%20b"),
        ("{P}/%3b", "{P}/%3B"),
        ("{P}/x%3F/..", "{P}/"),
        ("{P}/%ef%bc%8f", "{P}/%EF%BC%8F"),
        ("{P}/\"x\"", "{P}/%22x%22"),
        ("{P}/%25", "{P}/%25"),
        ("{P}/%2525", "{P}/%2525"),
    ] {
        expect_forwarded(&s, k, &t(k, tmpl), &t(k, canonical)).await;
    }
    // The prefix itself spelled with escapes is the prefix.
    let p = k.prefix();
    let encoded = format!("/%{:02X}{}/x", p.as_bytes()[1], &p[2..]);
    expect_forwarded(&s, k, &encoded, &format!("{p}/x")).await;
}

async fn prefixes_match_whole_segments_exactly(s: Arc<Stack>, k: Kind) {
    // Not the route: the catch-all (any signed-in user) gets them, as sent.
    let upper = k.prefix().to_ascii_uppercase();
    let start = s.mark();
    let targets = [
        t(k, "{P}x/y"),
        t(k, "{P}.bak"),
        format!("{upper}/y"),
        format!(
            "/%{:02X}{}/y",
            k.prefix().as_bytes()[1].to_ascii_uppercase(),
            &k.prefix()[2..]
        ),
    ];
    for target in &targets {
        let target = target.as_str();
        let mark = s.mark();
        let r = s.send(&s.h1(k, "GET", target, "")).await;
        let seen = s.since(&mark);
        assert_consistent(&seen, target);
        if k.signed_in() {
            assert_eq!(r.status, 200, "GET {target}:\n{}", r.dump());
            let one = assert_one(&seen, "root", target);
            assert!(
                one.header("upgrade").is_empty(),
                "an upgrade reached a route without websockets: {}",
                one.raw_head()
            );
        } else {
            assert_eq!(r.status, 401, "GET {target}:\n{}", r.dump());
            assert_nothing(&seen, target);
        }
    }
    let all = s.settled_since(&start).await;
    let want = if k.signed_in() { targets.len() } else { 0 };
    assert_eq!(all.len(), want, "late arrivals: {}", describe(&all));
}

async fn the_query_never_routes(s: Arc<Stack>, k: Kind) {
    for tmpl in [
        "{P}/x?/../../vault/y",
        "{P}/x?next=/vault/y&a=%2F%5C",
        "{P}/x?%2e%2e/vault",
        "{P}/x??",
        "{P}/x?",
    ] {
        let target = t(k, tmpl);
        expect_forwarded(&s, k, &target, &target).await;
    }
    let targets = [t(k, "/vault/x?{P}/"), t(k, "/vault?{P}")];
    expect_refused(&s, k, &targets, denied(k)).await;
}

async fn fragments_never_change_the_route(s: Arc<Stack>, k: Kind) {
    // Into the vault behind a fragment: refused (400 or denied), never forwarded.
    let target = t(k, "/vault/x#{P}/");
    let mark = s.mark();
    let r = s.send(&s.h1(k, "GET", &target, "")).await;
    assert!(
        r.status == 400 || r.status == denied(k),
        "GET {target}:\n{}",
        r.dump()
    );
    assert_nothing(&s.since(&mark), &target);
    // A fragment that would climb out: decided and forwarded on the same path, or refused.
    let mark_all = s.mark();
    for tmpl in [
        "{P}/x#/../../vault/y",
        "{P}/x#%2e%2e/vault",
        "{P}/x?q=1#/../vault",
    ] {
        let target = t(k, tmpl);
        let mark = s.mark();
        let r = s.send(&s.h1(k, "GET", &target, "")).await;
        let seen = s.since(&mark);
        assert_consistent(&seen, &target);
        if r.status == 400 {
            assert_nothing(&seen, &target);
        } else {
            assert_eq!(r.status, k.ok(), "GET {target}:\n{}", r.dump());
            let one = assert_one(&seen, k.upstream(), &target);
            assert!(
                !one.path().contains('#'),
                "fragment forwarded: {}",
                one.path()
            );
            assert!(!one.path().contains("vault"), "forwarded {}", one.path());
        }
    }
    let all = s.settled_since(&mark_all).await;
    assert!(all.len() <= 3, "late arrivals: {}", describe(&all));
    assert_consistent(&all, "fragments");
}

async fn absolute_form_uses_one_authority(s: Arc<Stack>, k: Kind) {
    let host = s.host.clone();
    // Same authority: routed and forwarded like origin form.
    let target = format!("http://{host}{}/x", k.prefix());
    let mark = s.mark();
    let r = s.send(&s.h1(k, "GET", &target, "")).await;
    let seen = s.settled_since(&mark).await;
    if r.status == 400 {
        assert_nothing(&seen, &target);
    } else {
        assert_eq!(r.status, k.ok(), "GET {target}:\n{}", r.dump());
        let one = assert_one(&seen, k.upstream(), &target);
        assert_eq!(one.path(), format!("{}/x", k.prefix()));
    }
    // Another authority than Host, or one with userinfo: never decided by one and sent to the
    // other.
    let targets = [
        format!("http://other.internal{}/x", k.prefix()),
        format!("http://evil@{host}{}/x", k.prefix()),
        format!("http://{host}@evil.example{}/x", k.prefix()),
    ];
    expect_refused(&s, k, &targets, 400).await;
    // Absolute form into the vault: refused (as any absolute form, or as the vault's).
    let mark = s.mark();
    for target in [
        format!("http://{host}/vault/x"),
        format!("http://{host}{}/../vault/x", k.prefix()),
    ] {
        let r = s.send(&s.h1(k, "GET", &target, "")).await;
        assert!(
            r.status == 400 || r.status == denied(k),
            "GET {target}:\n{}",
            r.dump()
        );
    }
    assert_nothing(
        &s.settled_since(&mark).await,
        "absolute form into the vault",
    );
}

async fn host_header_tricks_are_refused(s: Arc<Stack>, k: Kind) {
    let host = s.host.clone();
    let creds = s.allowed(k);
    let path = format!("{}/x", k.prefix());
    let cases: Vec<(String, &[u16])> = vec![
        (format!("Host: {host}\r\nHost: evil.example\r\n"), &[400]),
        (format!("Host: evil.example\r\nHost: {host}\r\n"), &[400]),
        (format!("Host: {host}@evil.example\r\n"), &[400]),
        (format!("Host: evil@{host}\r\n"), &[400]),
        (format!("Host: {host}, evil.example\r\n"), &[400]),
        (format!("Host: {host} evil.example\r\n"), &[400]),
        ("Host: \r\n".to_owned(), &[400]),
        (String::new(), &[400]),
        (format!("Host: {host}/vault\r\n"), &[400]),
        (format!("Host: {host}:80\r\n"), &[400, 404]),
        ("Host: evil.example\r\n".to_owned(), &[404]),
        (
            format!("Host: {}\r\n", host.replace("127.0.0.1", "127.000.000.001")),
            &[400, 404],
        ),
    ];
    let mark = s.mark();
    for (host_lines, statuses) in cases {
        let req = format!(
            "GET {path} HTTP/1.1\r\n{host_lines}Accept: application/json\r\n{creds}Connection: close\r\n\r\n"
        );
        let r = s.send(req.as_bytes()).await;
        assert!(
            statuses.contains(&r.status),
            "{host_lines:?}: expected {statuses:?}:\n{}",
            r.dump()
        );
    }
    assert_nothing(&s.settled_since(&mark).await, "Host tricks");
    // Spellings of the same authority route the same way.
    for spelled in [host.replace("127.0.0.1", "127.0.0.1."), host.clone()] {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {spelled}\r\nAccept: application/json\r\n{creds}Connection: close\r\n\r\n"
        );
        let mark = s.mark();
        let r = s.send(req.as_bytes()).await;
        assert_eq!(r.status, k.ok(), "Host: {spelled}:\n{}", r.dump());
        assert_one(&s.since(&mark), k.upstream(), &spelled);
    }
}

async fn long_targets_are_refused_fast(s: Arc<Stack>, k: Kind) {
    let mark = s.mark();
    for target in [
        format!("{}/{}", k.prefix(), "a".repeat(100 * 1024)),
        format!("{}/{}vault/x", k.prefix(), "../".repeat(5000)),
        format!("{}/{}", k.prefix(), "%61".repeat(3000)),
        format!("{}{}", k.prefix(), "/".repeat(20_000)),
    ] {
        let t0 = Instant::now();
        let r = s.try_send(&s.h1(k, "GET", &target, "")).await;
        let took = t0.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "{} bytes took {took:?}",
            target.len()
        );
        match r {
            Ok(r) => assert!(
                r.status == 414 || r.status == 400 || r.status == 431,
                "{} bytes:\n{}",
                target.len(),
                r.dump()
            ),
            Err(e) => panic!("{} bytes: no answer: {e}", target.len()),
        }
    }
    assert_nothing(&s.settled_since(&mark).await, "long targets");
}

async fn non_origin_targets_are_refused(s: Arc<Stack>, k: Kind) {
    let mark = s.mark();
    for (method, target) in [
        ("OPTIONS", "*".to_owned()),
        ("GET", "*".to_owned()),
        ("GET", s.host.clone()),
        ("GET", format!("x{}/y", k.prefix())),
        ("GET", "?x=1".to_owned()),
        ("GET", format!("{}{}/x", s.host, k.prefix())),
    ] {
        let r = s.try_send(&s.h1(k, method, &target, "")).await;
        if let Ok(r) = &r {
            assert!(
                (400..500).contains(&r.status),
                "{method} {target}:\n{}",
                r.dump()
            );
        }
    }
    assert_nothing(&s.settled_since(&mark).await, "non-origin targets");
}

async fn allow_regex_never_sees_the_query(s: Arc<Stack>) {
    let mark = s.mark();
    let r = s
        .send(&s.anon("GET", "/api/private?path=/status", ""))
        .await;
    assert_eq!(r.status, 401, "{}", r.dump());
    let r2 = s.send(&s.anon("GET", "/api/private?x=/a/status", "")).await;
    assert_eq!(r2.status, 401, "{}", r2.dump());
    let r3 = s.send(&s.anon("GET", "/api/private#/status", "")).await;
    assert!(r3.status == 401 || r3.status == 400, "{}", r3.dump());
    assert_nothing(&s.settled_since(&mark).await, "regex route by query");
    // The path itself matches.
    let mark = s.mark();
    let r = s.send(&s.anon("GET", "/api/v1/status?x=1", "")).await;
    assert_eq!(r.status, 200, "{}", r.dump());
    assert_eq!(
        assert_one(&s.since(&mark), "api", "regex").path(),
        "/api/v1/status?x=1"
    );
    // Dot-segments after the match do not keep it.
    let mark = s.mark();
    let r = s
        .send(&s.anon("GET", "/api/x/status/../../../vault/y", ""))
        .await;
    assert_eq!(r.status, 401, "{}", r.dump());
    assert_nothing(&s.settled_since(&mark).await, "regex route, dots");
}

async fn source_ip_rules_use_the_tcp_peer(s: Arc<Stack>) {
    let mark = s.mark();
    for spoof in [
        "X-Forwarded-For: 10.0.0.1\r\n",
        "X-Forwarded-For: 10.0.0.1, 10.0.0.2\r\nX-Forwarded-For: 10.0.0.3\r\n",
        "X-Real-IP: 10.0.0.1\r\n",
        "Forwarded: for=10.0.0.1\r\n",
        "X-Client-IP: 10.0.0.1\r\nTrue-Client-IP: 10.0.0.1\r\nX-Cluster-Client-IP: 10.0.0.1\r\n",
        "X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 127.0.0.1\r\n",
    ] {
        let r = s.send(&s.anon("GET", "/ip/x", spoof)).await;
        assert!(
            r.status == 401 || r.status == 403,
            "{spoof:?} let a loopback peer pass a 10/8 rule:\n{}",
            r.dump()
        );
        let r = s.send(&s.h1(Kind::Group, "GET", "/ip/x", spoof)).await;
        assert_eq!(r.status, 403, "{spoof:?} (signed in):\n{}", r.dump());
    }
    assert_nothing(&s.settled_since(&mark).await, "spoofed source addresses");
}

async fn connect_is_refused_in_every_form(s: Arc<Stack>) {
    let up = s.upstream("open").addr;
    let mark = s.mark();
    for req in [
        format!("CONNECT {up} HTTP/1.1\r\nHost: {up}\r\n\r\n"),
        format!("CONNECT {} HTTP/1.1\r\nHost: {}\r\n\r\n", s.host, s.host),
        format!("CONNECT /open/x HTTP/1.1\r\nHost: {}\r\n\r\n", s.host),
        format!(
            "CONNECT {} HTTP/1.1\r\nHost: {}\r\nCookie: _gatehouse={}\r\n\r\n",
            s.host, s.host, s.alice
        ),
    ] {
        match s.try_send(req.as_bytes()).await {
            Ok(r) => assert!(
                (400..500).contains(&r.status),
                "{req:?} answered:\n{}",
                r.dump()
            ),
            Err(e) => assert!(
                e.kind() != std::io::ErrorKind::TimedOut,
                "{req:?} left hanging: {e}"
            ),
        }
    }
    let seen = s.settled_since(&mark).await;
    assert!(seen.is_empty(), "CONNECT reached {}", describe(&seen));
}
