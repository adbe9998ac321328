//! Header spoofing and trust (principle 2): the client's word about itself is replaced, every
//! header gatehouse injects is stripped from the client in every spelling, hop-by-hop and
//! malformed fields never pass, and configuration cannot inject headers either.

use std::sync::Arc;

use base64::Engine;

use crate::runner::Report;
use crate::stack::{
    assert_nothing, assert_one, describe, lossy, Kind, Options, Seen, Stack, COOKIE,
};
use crate::support::check_config;
use crate::{cases, kind_cases};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_spoofing_and_trust() {
    let s = Stack::start(Options::default()).await;
    let mut report = Report::default();
    report
        .kinds(
            &s,
            kind_cases![
                forwarding_headers_from_an_untrusted_peer_are_replaced,
                identity_headers_from_the_client_never_arrive,
                connection_nominations_cannot_remove_what_gatehouse_adds,
                malformed_header_lines_are_refused,
                underscores_in_header_names_are_refused,
                non_ascii_never_turns_a_refusal_into_an_allow,
                hop_by_hop_headers_never_arrive,
                original_uri_headers_never_route,
                our_cookies_never_reach_the_upstream,
                our_bearer_tokens_never_reach_the_upstream,
            ],
        )
        .await;
    report
        .each(
            &s,
            cases![
                a_route_without_identity_headers_gets_none,
                our_own_assertion_is_no_credential,
                configuration_cannot_inject_headers,
            ],
        )
        .await;
    report.finish("headers");
}

/// Sends `extra` header lines as an allowed request of `k` to `{P}/x`; expects it allowed
/// and returns what the kind's upstream received.
async fn forwarded_with(s: &Stack, k: Kind, extra: &str) -> Seen {
    let mark = s.mark();
    let target = format!("{}/x", k.prefix());
    let r = s.send(&s.h1(k, "GET", &target, extra)).await;
    assert_eq!(r.status, k.ok(), "{extra:?}:\n{}", r.dump());
    assert_one(&s.since(&mark), k.upstream(), extra)
}

/// The upstream received the identity of alice, once, from gatehouse (signed-in kinds), or
/// no identity at all (public).
#[track_caller]
fn assert_identity(seen: &Seen, k: Kind) {
    let assertion = seen.header("x-gatehouse-jwt-assertion");
    if !k.signed_in() {
        for h in ["x-gatehouse-jwt-assertion", "x-user-email", "x-user-groups"] {
            assert!(
                seen.header(h).is_empty(),
                "{h} on a public route: {}",
                seen.raw_head()
            );
        }
        return;
    }
    assert_eq!(assertion.len(), 1, "assertions: {}", seen.raw_head());
    let claims = jwt_claims(&assertion[0]);
    assert_eq!(claims["email"], "alice@example.com", "{claims}");
    assert_eq!(
        seen.header("x-user-email"),
        ["alice@example.com"],
        "{}",
        seen.raw_head()
    );
    assert_eq!(
        seen.header("x-user-groups"),
        ["admins,devs"],
        "{}",
        seen.raw_head()
    );
}

/// The claims of a JWT (not verified; the jwt module verifies).
pub fn jwt_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_else(|e| panic!("JWT payload {payload:?}: {e}"));
    serde_json::from_slice(&bytes).unwrap()
}

async fn forwarding_headers_from_an_untrusted_peer_are_replaced(s: Arc<Stack>, k: Kind) {
    let spoof = "X-Forwarded-For: 10.0.0.1, 10.0.0.9\r\nx-forwarded-for: 10.0.0.2\r\nX-FORWARDED-FOR: 10.0.0.3\r\n\
X-Real-IP: 10.0.0.4\r\nForwarded: for=10.0.0.5;proto=https;host=evil.example\r\nX-Forwarded-Host: evil.example\r\n\
X-Forwarded-Proto: https\r\nX-Forwarded-Port: 1\r\nX-Forwarded-Prefix: /vault\r\nX-Forwarded-Uri: /vault\r\n\
X-Forwarded-Server: evil.example\r\nX-Original-URI: /vault\r\nX-Original-URL: /vault\r\nX-Original-Host: evil.example\r\n\
X-Original-Method: DELETE\r\nX-Rewrite-URL: /vault\r\nX-Client-IP: 10.0.0.6\r\nTrue-Client-IP: 10.0.0.7\r\n\
X-Cluster-Client-IP: 10.0.0.8\r\nX-Request-Id: spoofed-request-id\r\n";
    let seen = forwarded_with(&s, k, spoof).await;
    assert_eq!(
        seen.header("x-forwarded-for"),
        ["127.0.0.1"],
        "{}",
        seen.raw_head()
    );
    assert_eq!(
        seen.header("x-forwarded-proto"),
        ["http"],
        "{}",
        seen.raw_head()
    );
    assert_eq!(
        seen.header("x-forwarded-host"),
        std::slice::from_ref(&s.host),
        "{}",
        seen.raw_head()
    );
    for h in [
        "x-real-ip",
        "forwarded",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-uri",
        "x-forwarded-server",
        "x-original-uri",
        "x-original-url",
        "x-original-host",
        "x-original-method",
        "x-rewrite-url",
        "x-client-ip",
        "true-client-ip",
        "x-cluster-client-ip",
    ] {
        assert!(
            seen.header(h).is_empty(),
            "{h} reached the upstream: {}",
            seen.raw_head()
        );
    }
    let ids = seen.header("x-request-id");
    assert_eq!(ids.len(), 1, "{}", seen.raw_head());
    assert_ne!(
        ids[0], "spoofed-request-id",
        "the client chose the request id"
    );
    for bad in ["10.0.0.", "evil.example", "/vault", "spoofed"] {
        assert!(
            !seen.raw_head().contains(bad),
            "{bad:?} reached the upstream: {}",
            seen.raw_head()
        );
    }
}

async fn identity_headers_from_the_client_never_arrive(s: Arc<Stack>, k: Kind) {
    let forged = "X-Gatehouse-Jwt-Assertion: forged1\r\nx-gatehouse-jwt-assertion: forged2\r\n\
X-GATEHOUSE-JWT-ASSERTION: forged3\r\nX-Gatehouse-Claim-Email: forged4\r\nX-Gatehouse-Claim-Groups: forged5\r\n\
X-User-Email: forged6\r\nx-user-groups: forged7\r\nX-USER-EMAIL: forged8\r\nX-Forwarded-User: forged9\r\n\
X-Forwarded-Email: forged10\r\nX-Forwarded-Groups: forged11\r\nX-Forwarded-Preferred-Username: forged12\r\n\
X-Forwarded-Access-Token: forged13\r\nRemote-User: forged14\r\nX-Remote-User: forged15\r\nX-Webauth-User: forged16\r\n\
X-Pomerium-Jwt-Assertion: forged17\r\nX-Pomerium-Claim-Email: forged18\r\nX-Auth-Request-User: forged19\r\n\
X-Auth-Request-Email: forged20\r\nX-Auth-Request-Groups: forged21\r\n";
    let seen = forwarded_with(&s, k, forged).await;
    assert!(
        !seen.raw_head().contains("forged"),
        "a forged identity header reached the upstream: {}",
        seen.raw_head()
    );
    assert_identity(&seen, k);
    // Split over obs-fold-free duplicates with odd whitespace around the value.
    let seen = forwarded_with(
        &s,
        k,
        "X-Gatehouse-Jwt-Assertion:forged\r\nX-User-Email:\t forged \t\r\nX-Gatehouse-Jwt-Assertion: \r\n",
    )
    .await;
    assert!(!seen.raw_head().contains("forged"), "{}", seen.raw_head());
    assert_identity(&seen, k);
}

async fn connection_nominations_cannot_remove_what_gatehouse_adds(s: Arc<Stack>, k: Kind) {
    let start = s.mark();
    let mut forwarded = 0;
    for nominated in [
        "X-Forwarded-For",
        "x-forwarded-host",
        "X-Forwarded-Proto",
        "Host",
        "X-Request-Id",
        "X-Gatehouse-Jwt-Assertion",
        "X-User-Email, X-User-Groups",
        "Cookie",
        "Authorization",
        "\"X-Forwarded-For\"",
        "X-Forwarded-For;q=1",
        "close, a, b, c, d, e, f, g, h, i, j, k",
        ":authority",
    ] {
        let extra = format!("Connection: {nominated}\r\nX-Forwarded-For: 10.0.0.1\r\n");
        let mark = s.mark();
        let target = format!("{}/x", k.prefix());
        let r = s.send(&s.h1(k, "GET", &target, &extra)).await;
        let seen = s.since(&mark);
        if (400..500).contains(&r.status) {
            assert_nothing(&seen, &extra);
            continue;
        }
        assert_eq!(r.status, k.ok(), "Connection: {nominated}:\n{}", r.dump());
        let one = assert_one(&seen, k.upstream(), &extra);
        forwarded += 1;
        assert_eq!(
            one.header("x-forwarded-for"),
            ["127.0.0.1"],
            "Connection: {nominated}: {}",
            one.raw_head()
        );
        assert_eq!(
            one.header("x-forwarded-host"),
            std::slice::from_ref(&s.host),
            "Connection: {nominated}: {}",
            one.raw_head()
        );
        assert_eq!(
            one.header("x-forwarded-proto"),
            ["http"],
            "Connection: {nominated}: {}",
            one.raw_head()
        );
        assert_eq!(
            one.header("host").len(),
            1,
            "Connection: {nominated}: {}",
            one.raw_head()
        );
        assert_eq!(
            one.header("x-request-id").len(),
            1,
            "Connection: {nominated}: {}",
            one.raw_head()
        );
        assert_identity(&one, k);
    }
    assert!(forwarded > 0, "every nominated Connection was refused");
    let all = s.settled_since(&start).await;
    assert_eq!(all.len(), forwarded, "late arrivals: {}", describe(&all));
}

async fn malformed_header_lines_are_refused(s: Arc<Stack>, k: Kind) {
    let target = format!("{}/x", k.prefix());
    let mark = s.mark();
    for bad in [
        &b"X-Test: a\x00b\r\n"[..],
        b"X-Test: a\rX-Gatehouse-Jwt-Assertion: forged\r\n",
        b"X-Gatehouse-Jwt-Assertion : forged\r\n",
        b"X-Gatehouse-Jwt-Assertion\t: forged\r\n",
        b" X-Gatehouse-Jwt-Assertion: forged\r\n",
        b"X-Test@: forged\r\n",
        b"X Test: forged\r\n",
        b": forged\r\n",
        b"X-No-Colon-forged\r\n",
        b"X-Test\x7f: forged\r\n",
        b"X-T\xc3\xa9st: forged\r\n",
    ] {
        let mut req = format!("GET {target} HTTP/1.1\r\nHost: {}\r\n", s.host).into_bytes();
        req.extend_from_slice(bad);
        let tail = String::from_utf8(s.h1(k, "GET", "/", "")).unwrap();
        let tail = tail.split_once("\r\nAccept:").unwrap().1;
        req.extend_from_slice(b"Accept:");
        req.extend_from_slice(tail.as_bytes());
        match s.try_send(&req).await {
            Ok(r) => assert!(
                (400..500).contains(&r.status),
                "{}:\n{}",
                lossy(bad),
                r.dump()
            ),
            Err(e) => assert!(
                e.kind() != std::io::ErrorKind::TimedOut,
                "{}: {e}",
                lossy(bad)
            ),
        }
    }
    assert_nothing(&s.settled_since(&mark).await, "malformed header lines");
    // Obsolete line folding: refused, or the folded line stays part of the field before it.
    let mark = s.mark();
    let folded = "X-Test: a\r\n X-Gatehouse-Jwt-Assertion: forged\r\n\tX-User-Email: forged\r\n";
    let r = s.send(&s.h1(k, "GET", &target, folded)).await;
    let seen = s.settled_since(&mark).await;
    if r.status != 400 {
        assert_eq!(r.status, k.ok(), "{}", r.dump());
        let one = assert_one(&seen, k.upstream(), "obs-fold");
        assert_identity(&one, k);
    } else {
        assert_nothing(&seen, "obs-fold");
    }
}

async fn underscores_in_header_names_are_refused(s: Arc<Stack>, k: Kind) {
    let target = format!("{}/x", k.prefix());
    let mark = s.mark();
    for name in [
        "X_Forwarded_For",
        "X_Gatehouse_Jwt_Assertion",
        "x-gatehouse_jwt-assertion",
        "Remote_User",
        "X_User_Email",
        "X-User_Email",
        "_",
    ] {
        let r = s
            .send(&s.h1(k, "GET", &target, &format!("{name}: forged\r\n")))
            .await;
        assert_eq!(r.status, 400, "{name}:\n{}", r.dump());
    }
    assert_nothing(&s.settled_since(&mark).await, "underscored names");
}

async fn non_ascii_never_turns_a_refusal_into_an_allow(s: Arc<Stack>, k: Kind) {
    // Requests that must not be allowed, with non-ASCII bytes in the places that decide
    // (bob is not in `admins`; the public route has nothing to refuse, so its case aims at
    // `/admin`).
    let target = match k {
        Kind::Public => "/admin/x".to_owned(),
        _ => format!("{}/x", k.prefix()),
    };
    let bob = s.bob.clone();
    let host = s.host.clone();
    let mut cases: Vec<Vec<u8>> = vec![
        format!("GET /vault/x HTTP/1.1\r\nHost: {host}\r\nCookie: {COOKIE}={}\u{00e9}\r\nConnection: close\r\n\r\n", s.alice).into_bytes(),
        format!("GET /vault/x HTTP/1.1\r\nHost: {host}\r\nX-Test: \u{00e9}\r\nConnection: close\r\n\r\n").into_bytes(),
        format!("GET /vault/x HTTP/1.1\r\nHost: {host}\u{00e9}\r\nConnection: close\r\n\r\n").into_bytes(),
    ];
    let mut raw =
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nCookie: {COOKIE}=").into_bytes();
    raw.extend_from_slice(b"\xff\xfe");
    raw.extend_from_slice(format!("{bob}\r\nAuthorization: Bearer ").as_bytes());
    raw.extend_from_slice(b"\xff");
    raw.extend_from_slice(format!("{bob}\r\nConnection: close\r\n\r\n").as_bytes());
    cases.push(raw);
    let mut raw =
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer ").into_bytes();
    raw.extend_from_slice(b"\xe2\x80\x8b");
    raw.extend_from_slice(format!("{}\r\nConnection: close\r\n\r\n", s.alice).as_bytes());
    if k.signed_in() {
        cases.push(raw);
    }
    let mark = s.mark();
    for req in &cases {
        match s.try_send(req).await {
            Ok(r) => assert!(
                (400..500).contains(&r.status),
                "{} was allowed:\n{}",
                lossy(req),
                r.dump()
            ),
            Err(e) => assert!(
                e.kind() != std::io::ErrorKind::TimedOut,
                "{}: {e}",
                lossy(req)
            ),
        }
    }
    let seen = s.settled_since(&mark).await;
    // On the public route the request itself may pass; nothing else may.
    let unexpected: Vec<_> = seen
        .iter()
        .filter(|x| x.upstream != "open")
        .cloned()
        .collect();
    assert_nothing(&unexpected, "non-ASCII in deciding fields");
    // Non-ASCII in a field nobody decides on is forwarded as received.
    let target = format!("{}/x", k.prefix());
    let mut req = s.h1(k, "GET", &target, "");
    let at = req.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    req.splice(at..at, b"X-Note: caf\xc3\xa9\r\n".iter().copied());
    let mark = s.mark();
    let r = s.send(&req).await;
    if r.status != 400 {
        assert_eq!(r.status, k.ok(), "{}", r.dump());
        assert_one(&s.since(&mark), k.upstream(), "non-ASCII value");
    }
}

async fn hop_by_hop_headers_never_arrive(s: Arc<Stack>, k: Kind) {
    let hop = "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n\
TE: trailers\r\nTrailer: X-Gatehouse-Jwt-Assertion\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\
Connection: X-Drop-Me, Keep-Alive\r\nX-Drop-Me: 1\r\n";
    let extra = if k == Kind::Ws {
        hop.to_owned()
    } else {
        format!("{hop}Upgrade: h2c\r\n")
    };
    let seen = forwarded_with(&s, k, &extra).await;
    for h in [
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "http2-settings",
        "x-drop-me",
    ] {
        assert!(
            seen.header(h).is_empty(),
            "{h} reached the upstream: {}",
            seen.raw_head()
        );
    }
    let upgrade = seen.header("upgrade");
    if k == Kind::Ws {
        assert_eq!(upgrade, ["websocket"], "{}", seen.raw_head());
    } else {
        assert!(
            upgrade.is_empty(),
            "Upgrade reached the upstream: {}",
            seen.raw_head()
        );
    }
    for v in seen.header("connection") {
        let v = v.to_ascii_lowercase();
        assert!(
            !v.contains("x-drop-me") && !v.contains("keep-alive"),
            "Connection: {v}"
        );
    }
}

async fn original_uri_headers_never_route(s: Arc<Stack>, k: Kind) {
    let point = format!(
        "X-Original-URI: {p}/x\r\nX-Original-URL: {p}/x\r\nX-Rewrite-URL: {p}/x\r\nX-Forwarded-Uri: {p}/x\r\nX-Forwarded-Prefix: {p}\r\nX-Envoy-Original-Path: {p}/x\r\n",
        p = k.prefix()
    );
    let mark = s.mark();
    let r = s.send(&s.h1(k, "GET", "/vault/x", &point)).await;
    let want = if k.signed_in() { 403 } else { 401 };
    assert_eq!(r.status, want, "{}", r.dump());
    assert_nothing(
        &s.settled_since(&mark).await,
        "X-Original-URI into the vault",
    );
}

async fn our_cookies_never_reach_the_upstream(s: Arc<Stack>, k: Kind) {
    let alice = s.alice.clone();
    let target = format!("{}/x", k.prefix());
    let variants = [
        format!("Cookie: a=1; {COOKIE}={alice}; b=2\r\n"),
        format!("Cookie: {COOKIE}={alice}\r\nCookie: a=1\r\n"),
        format!("Cookie: a=1\r\nCookie: {COOKIE}=\"{alice}\"\r\n"),
        format!("Cookie: a=1;{COOKIE}={alice};{COOKIE}_login=x\r\n"),
        format!("Cookie:   {COOKIE}={alice}  ;a=1\r\n"),
    ];
    for cookie in variants {
        let mark = s.mark();
        // The Ws kind carries its own Cookie line: send these without it.
        let creds = s.allowed(k);
        let creds: String = creds
            .split("\r\n")
            .filter(|l| !l.is_empty() && !l.starts_with("Cookie:"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        let connection = if k == Kind::Ws { "Upgrade" } else { "close" };
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n{creds}{cookie}Connection: {connection}\r\n\r\n",
            s.host
        );
        let r = s.send(req.as_bytes()).await;
        assert_eq!(r.status, k.ok(), "{cookie:?}:\n{}", r.dump());
        let one = assert_one(&s.since(&mark), k.upstream(), &cookie);
        assert!(
            !one.raw_head().contains(&alice[..20]),
            "our cookie reached the upstream ({cookie:?}): {}",
            one.raw_head()
        );
        assert!(
            !one.raw_head().contains("_gatehouse"),
            "{cookie:?}: {}",
            one.raw_head()
        );
        let cookies = one.header("cookie").join("; ");
        assert!(
            cookies.contains("a=1"),
            "other cookies are kept: {}",
            one.raw_head()
        );
    }
}

async fn our_bearer_tokens_never_reach_the_upstream(s: Arc<Stack>, k: Kind) {
    // A session ticket works as a bearer token too; like the cookie, it is gatehouse's
    // credential and never the upstream's (an app behind one route could replay it on all).
    let alice = s.alice.clone();
    let creds: String = s
        .allowed(k)
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with("Cookie:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let connection = if k == Kind::Ws { "Upgrade" } else { "close" };
    for auth in [
        format!("Authorization: Bearer {alice}\r\n"),
        format!("Authorization: bearer   {alice}\r\n"),
        format!("authorization: BEARER {alice}\r\n"),
    ] {
        let req = format!(
            "GET {}/x HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n{creds}{auth}Connection: {connection}\r\n\r\n",
            k.prefix(),
            s.host
        );
        let mark = s.mark();
        let r = s.send(req.as_bytes()).await;
        assert_eq!(r.status, k.ok(), "{auth:.40}…:\n{}", r.dump());
        let one = assert_one(&s.since(&mark), k.upstream(), "bearer");
        assert!(
            !one.raw_head().contains(&alice[..20]),
            "our bearer token reached the upstream: {}",
            one.raw_head()
        );
        assert!(one.header("authorization").is_empty(), "{}", one.raw_head());
    }
    // Anyone else's Authorization is theirs: forwarded untouched (with a session cookie it
    // would be refused as two credentials).
    if k == Kind::Public {
        let seen = forwarded_with(&s, k, "Authorization: Bearer app-token-123\r\n").await;
        assert_eq!(
            seen.header("authorization"),
            ["Bearer app-token-123"],
            "{}",
            seen.raw_head()
        );
    }
}

async fn a_route_without_identity_headers_gets_none(s: Arc<Stack>) {
    let forged =
        "X-Gatehouse-Jwt-Assertion: forged\r\nX-User-Email: forged\r\nRemote-User: forged\r\n";
    let mark = s.mark();
    let r = s.send(&s.h1(Kind::Group, "GET", "/nohdr/x", forged)).await;
    assert_eq!(r.status, 200, "{}", r.dump());
    let one = assert_one(&s.since(&mark), "nohdr", "nohdr");
    assert!(!one.raw_head().contains("forged"), "{}", one.raw_head());
    for h in ["x-gatehouse-jwt-assertion", "x-user-email", "x-user-groups"] {
        assert!(
            one.header(h).is_empty(),
            "{h} with pass_identity_headers false: {}",
            one.raw_head()
        );
    }
    // And anonymous requests there are refused, not forwarded with forged headers.
    let mark = s.mark();
    let r = s.send(&s.anon("GET", "/nohdr/x", forged)).await;
    assert_eq!(r.status, 401, "{}", r.dump());
    assert_nothing(&s.settled_since(&mark).await, "anonymous /nohdr");
}

async fn our_own_assertion_is_no_credential(s: Arc<Stack>) {
    // Take a real assertion for alice, then present it back as every kind of credential.
    let mark = s.mark();
    s.send(&s.h1(Kind::Group, "GET", "/admin/x", "")).await;
    let one = assert_one(&s.since(&mark), "admin", "assertion");
    let assertion = one.header("x-gatehouse-jwt-assertion").pop().unwrap();
    let sid = jwt_claims(&assertion)["sid"].as_str().unwrap().to_owned();
    let mark = s.mark();
    for extra in [
        format!("Authorization: Bearer {assertion}\r\n"),
        format!("Cookie: {COOKIE}={assertion}\r\n"),
        format!("X-Gatehouse-Jwt-Assertion: {assertion}\r\n"),
        format!("Cookie: {COOKIE}={sid}\r\n"),
        format!("Authorization: Bearer {sid}\r\n"),
        format!("Authorization: Pomerium {assertion}\r\n"),
    ] {
        let r = s.send(&s.anon("GET", "/admin/x", &extra)).await;
        assert_eq!(r.status, 401, "{extra:.60}…:\n{}", r.dump());
    }
    let seen = s.settled_since(&mark).await;
    assert!(
        seen.is_empty(),
        "an assertion or a session id opened a route: {}",
        describe(&seen)
    );
}

async fn configuration_cannot_inject_headers(_s: Arc<Stack>) {
    let route = |extra: &str| {
        format!(
            "insecure_server: true\naddress: 127.0.0.1:8080\nroutes:\n  - from: http://a.test\n    to: http://127.0.0.1:9\n    allow_public_unauthenticated_access: true\n    {extra}\n"
        )
    };
    // The same configuration without the bad value is accepted: each refusal below is for
    // the value it names.
    let (code, out, ..) = check_config(&route("set_request_headers: {X-User: \"a\"}"));
    assert_eq!(code, 0, "the control configuration was refused: {out}");
    for (yaml, what) in [
        (route("set_request_headers: {X-User: \"a\\r\\nX-Admin: 1\"}"), "CRLF in a request header value"),
        (route("set_request_headers: {X-User: \"a\\nX-Admin: 1\"}"), "LF in a request header value"),
        (route("set_request_headers: {X-User: \"a\\rb\"}"), "CR in a request header value"),
        (route("set_request_headers: {X-User: \"a\\0b\"}"), "NUL in a request header value"),
        (route("set_request_headers: {X-User: \"a\\x01b\"}"), "control character in a value"),
        (route("set_request_headers: {\"X-User\\r\\nX-Admin\": \"1\"}"), "CRLF in a header name"),
        (route("set_request_headers: {\"X User\": \"1\"}"), "space in a header name"),
        (route("set_request_headers: {\"\": \"1\"}"), "empty header name"),
        (route("set_response_headers: {Set-Cookie: \"a=1\\r\\nX-Admin: 1\"}"), "CRLF in a response header value"),
        (route("remove_request_headers: [\"X-A\\r\\nX-B\"]"), "CRLF in a removed header name"),
        (
            "insecure_server: true\naddress: 127.0.0.1:8080\njwt_claims_headers: {\"X-Email\\r\\nX-Admin\": email}\nroutes: []\n".to_owned(),
            "CRLF in a claim header name",
        ),
    ] {
        let (code, out, ..) = check_config(&yaml);
        assert_eq!(code, 1, "{what} was accepted:\n{yaml}\n{out}");
    }
}
