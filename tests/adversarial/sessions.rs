//! Cookies and sessions (principles 2, 6, 9): a damaged, foreign, signed-out or planted
//! ticket is no session, always with the same answer; a session id or a dump of the store
//! is no credential; a login starts clean.

use std::sync::Arc;

use crate::redis_server::RedisServer;
use crate::runner::Report;
use crate::stack::{assert_nothing, assert_one, describe, login, Kind, Options, Stack, COOKIE};
use crate::support::{idp::hidden_input, RawResponse};
use crate::{cases, kind_cases};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_and_sessions() {
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
                damaged_cookies_are_no_session_with_one_answer,
                a_cookie_and_a_bearer_of_ours_together_are_refused,
                an_upstream_bearer_beside_our_cookie_passes_through,
                a_login_state_cookie_is_no_session,
            ],
        )
        .await;
    report
        .each(
            &s,
            cases![
                starting_a_login_clears_a_planted_cookie,
                signed_out_cookies_are_dead_at_once,
                the_store_contents_are_no_credential,
                upstreams_cannot_set_or_clear_our_cookies,
            ],
        )
        .await;
    report.finish("sessions");
}

/// Ways to damage a valid ticket.
fn damaged(good: &str, other: &str) -> Vec<(String, String)> {
    let flip = |at: usize| {
        let mut b = good.as_bytes().to_vec();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let n = good.len();
    let std_alphabet: String = good
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    vec![
        ("bit flipped at 0".into(), flip(0)),
        ("bit flipped at 1/4".into(), flip(n / 4)),
        ("bit flipped at 1/2".into(), flip(n / 2)),
        ("bit flipped at the end".into(), flip(n - 1)),
        ("truncated by 1".into(), good[..n - 1].to_owned()),
        ("truncated by half".into(), good[..n / 2].to_owned()),
        ("empty".into(), String::new()),
        ("not base64".into(), "not base64 at all!".into()),
        ("padded".into(), format!("{good}==")),
        ("appended".into(), format!("{good}AAAA")),
        ("standard alphabet".into(), std_alphabet),
        (
            "spliced with another".into(),
            format!("{}{}", &good[..n / 2], &other[n / 2..]),
        ),
        (
            "percent-encoded".into(),
            good.replace('-', "%2D").replace('_', "%5F"),
        ),
        ("4 KiB".into(), "A".repeat(4096)),
        (
            "whitespace inside".into(),
            format!("{} {}", &good[..n / 2], &good[n / 2..]),
        ),
    ]
    .into_iter()
    // Respellings of characters a ticket may not contain are no damage.
    .filter(|(_, v)| v != good)
    .collect()
}

/// A response with the request id and date taken out, for comparing shapes.
fn shape(r: &RawResponse) -> String {
    let mut headers: Vec<String> = r
        .headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("x-request-id") && !n.eq_ignore_ascii_case("date"))
        .map(|(n, v)| {
            if n.eq_ignore_ascii_case("location") {
                // The state and nonce differ on every login start.
                format!("{n}: {}", v.split('?').next().unwrap_or_default())
            } else if n.eq_ignore_ascii_case("set-cookie") {
                format!("{n}: {}", v.split('=').next().unwrap_or_default())
            } else {
                format!("{n}: {v}")
            }
        })
        .collect();
    headers.sort();
    let body = match serde_json::from_slice::<serde_json::Value>(&r.body) {
        Ok(mut v) => {
            if let Some(o) = v.as_object_mut() {
                o.remove("request_id");
            }
            v.to_string()
        }
        Err(_) => String::from_utf8_lossy(&r.body).into_owned(),
    };
    format!("{}\n{}\n{body}", r.status, headers.join("\n"))
}

/// The Ws kind's handshake lines without its cookie.
fn handshake(s: &Stack, k: Kind) -> String {
    s.allowed(k)
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with("Cookie:"))
        .map(|l| format!("{l}\r\n"))
        .collect()
}

/// `GET {P}/x` with the given cookie value and Accept.
fn with_cookie(s: &Stack, k: Kind, value: &str, accept: &str) -> Vec<u8> {
    format!(
        "GET {}/x HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\n{}Cookie: {COOKIE}={value}\r\nConnection: close\r\n\r\n",
        k.prefix(),
        s.host,
        handshake(s, k),
    )
    .into_bytes()
}

async fn damaged_cookies_are_no_session_with_one_answer(s: Arc<Stack>, k: Kind) {
    for accept in ["application/json", "text/html"] {
        let baseline = s
            .send(
                format!(
                    "GET {}/x HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\n{}Connection: close\r\n\r\n",
                    k.prefix(),
                    s.host,
                    handshake(&s, k)
                )
                .as_bytes(),
            )
            .await;
        let mark = s.mark();
        for (what, value) in damaged(&s.alice, &s.bob) {
            let r = s.send(&with_cookie(&s, k, &value, accept)).await;
            if k.signed_in() {
                let want = if accept == "text/html" { 302 } else { 401 };
                assert_eq!(r.status, want, "{what} ({accept}):\n{}", r.dump());
                let (a, b) = (shape(&baseline), shape(&r));
                // A damaged cookie is also cleared; the rest is the anonymous answer.
                let strip = |s: &str| {
                    s.lines()
                        .filter(|l| {
                            !l.starts_with("set-cookie: _gatehouse")
                                && !l.starts_with("Set-Cookie: _gatehouse")
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                assert_eq!(
                    strip(&a),
                    strip(&b),
                    "{what} ({accept}) answers differently from no cookie"
                );
            } else {
                assert_eq!(r.status, k.ok(), "{what}:\n{}", r.dump());
            }
        }
        let seen = s.settled_since(&mark).await;
        if k.signed_in() {
            assert_nothing(&seen, "damaged cookies");
        } else {
            for one in &seen {
                assert!(
                    one.header("x-gatehouse-jwt-assertion").is_empty()
                        && !one.raw_head().contains(COOKIE),
                    "a damaged cookie passed as an identity: {}",
                    one.raw_head()
                );
            }
        }
    }
}

async fn a_cookie_and_a_bearer_of_ours_together_are_refused(s: Arc<Stack>, k: Kind) {
    let mark = s.mark();
    for (cookie, bearer) in [
        (s.alice.clone(), s.alice.clone()),
        (s.alice.clone(), s.bob.clone()),
        (s.bob.clone(), s.alice.clone()),
        ("junk".to_owned(), s.alice.clone()),
    ] {
        let req = format!(
            "GET {}/x HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n{}Cookie: {COOKIE}={cookie}\r\nAuthorization: Bearer {bearer}\r\nConnection: close\r\n\r\n",
            k.prefix(),
            s.host,
            handshake(&s, k),
        );
        let r = s.send(req.as_bytes()).await;
        assert_eq!(
            r.status,
            400,
            "cookie {cookie:.8}… + bearer {bearer:.8}…:\n{}",
            r.dump()
        );
    }
    assert_nothing(&s.settled_since(&mark).await, "cookie and bearer");
}

/// A bearer token that is not ours is the upstream's own credential (an API with tokens of
/// its own, called from a signed-in browser): the cookie identifies the caller, the token
/// reaches the upstream unchanged, our cookie does not.
async fn an_upstream_bearer_beside_our_cookie_passes_through(s: Arc<Stack>, k: Kind) {
    let token = "opaque-app-token.eyJ1c2VyIjoiYm9iIn0";
    let mark = s.mark();
    let req = format!(
        "GET {}/x HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n{}Cookie: {COOKIE}={}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
        k.prefix(),
        s.host,
        handshake(&s, k),
        s.alice,
    );
    let r = s.send(req.as_bytes()).await;
    assert_eq!(
        r.status,
        k.ok(),
        "cookie + an upstream's bearer:\n{}",
        r.dump()
    );
    let seen = assert_one(
        &s.settled_since(&mark).await,
        k.upstream(),
        "upstream bearer",
    );
    assert_eq!(seen.header("authorization"), [format!("Bearer {token}")]);
    assert!(
        seen.header("cookie").iter().all(|c| !c.contains(COOKIE)),
        "our cookie reached the upstream: {:?}",
        seen.header("cookie")
    );
    if k.signed_in() {
        assert_eq!(
            seen.header("x-user-email"),
            ["alice@example.com"],
            "identified by the cookie"
        );
    }
}

/// Starts a login; returns the login-state cookie's value.
async fn login_state(s: &Stack) -> String {
    let r = s
        .send(
            format!(
                "GET /admin/x HTTP/1.1\r\nHost: {}\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
                s.host
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(r.status, 302, "{}", r.dump());
    r.headers_named("set-cookie")
        .iter()
        .find_map(|c| c.strip_prefix(&format!("{COOKIE}_login=")))
        .and_then(|c| c.split(';').next())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| panic!("no login-state cookie:\n{}", r.dump()))
        .to_owned()
}

async fn a_login_state_cookie_is_no_session(s: Arc<Stack>, k: Kind) {
    let state = login_state(&s).await;
    let mark = s.mark();
    let r = s
        .send(&with_cookie(&s, k, &state, "application/json"))
        .await;
    if k.signed_in() {
        assert_eq!(r.status, 401, "{}", r.dump());
        assert_nothing(&s.settled_since(&mark).await, "login state as session");
    } else {
        assert_eq!(r.status, k.ok(), "{}", r.dump());
        let one = assert_one(&s.since(&mark), k.upstream(), "login state");
        assert!(
            one.header("x-gatehouse-jwt-assertion").is_empty(),
            "{}",
            one.raw_head()
        );
    }
}

async fn starting_a_login_clears_a_planted_cookie(s: Arc<Stack>) {
    for planted in ["planted-junk".to_owned(), s.bob.clone()] {
        let r = s
            .send(
                format!(
                    "GET /vault/x HTTP/1.1\r\nHost: {}\r\nAccept: text/html\r\nCookie: {COOKIE}={planted}\r\nConnection: close\r\n\r\n",
                    s.host
                )
                .as_bytes(),
            )
            .await;
        if planted == s.bob {
            // A valid session that is not allowed is a 403, not a new login.
            assert_eq!(r.status, 403, "{}", r.dump());
            continue;
        }
        assert_eq!(r.status, 302, "{}", r.dump());
        let cookies = r.headers_named("set-cookie");
        assert!(
            cookies
                .iter()
                .any(|c| c.starts_with(&format!("{COOKIE}=;")) && c.contains("Max-Age=0")),
            "the planted cookie is not cleared: {cookies:?}"
        );
        let login = cookies
            .iter()
            .find(|c| c.starts_with(&format!("{COOKIE}_login=")))
            .unwrap_or_else(|| panic!("no login-state cookie: {cookies:?}"));
        for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
            assert!(
                login.contains(attr),
                "login-state cookie without {attr}: {login}"
            );
        }
    }
}

async fn signed_out_cookies_are_dead_at_once(s: Arc<Stack>) {
    let cookie = login(&s.origin, "alice").await;
    let get = |path: &str, value: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nCookie: {COOKIE}={value}\r\nConnection: close\r\n\r\n",
            s.host
        )
    };
    let post = |value: &str, body: &str| {
        format!(
            "POST /.gatehouse/sign_out HTTP/1.1\r\nHost: {}\r\nCookie: {COOKIE}={value}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            s.host,
            body.len()
        )
    };
    assert_eq!(
        s.send(get("/admin/x", &cookie).as_bytes()).await.status,
        200
    );
    let page = s.send(get("/.gatehouse/", &cookie).as_bytes()).await;
    let csrf = hidden_input(&String::from_utf8_lossy(&page.body), "csrf").expect("csrf");
    let bob_page = s.send(get("/.gatehouse/", &s.bob).as_bytes()).await;
    let bob_csrf = hidden_input(&String::from_utf8_lossy(&bob_page.body), "csrf").expect("csrf");
    // Not a sign-out: GET, no token, another session's token, a token in the query.
    let r = s
        .send(get("/.gatehouse/sign_out", &cookie).as_bytes())
        .await;
    assert_eq!(r.status, 405, "{}", r.dump());
    let r = s.send(post(&cookie, "").as_bytes()).await;
    assert_eq!(r.status, 403, "{}", r.dump());
    let r = s
        .send(post(&cookie, &format!("csrf={bob_csrf}")).as_bytes())
        .await;
    assert_eq!(r.status, 403, "bob's token signed alice out:\n{}", r.dump());
    assert_eq!(
        s.send(get("/admin/x", &cookie).as_bytes()).await.status,
        200
    );
    // The sign-out.
    let r = s
        .send(post(&cookie, &format!("csrf={csrf}")).as_bytes())
        .await;
    assert_eq!(r.status, 302, "{}", r.dump());
    let mark = s.mark();
    for path in ["/admin/x", "/ws/x", "/.gatehouse/user", "/x"] {
        let r = s.send(get(path, &cookie).as_bytes()).await;
        assert_eq!(r.status, 401, "signed-out cookie on {path}:\n{}", r.dump());
    }
    assert_nothing(&s.settled_since(&mark).await, "signed-out cookie");
    // The other sessions are untouched.
    assert_eq!(
        s.send(get("/admin/x", &s.alice).as_bytes()).await.status,
        200
    );
}

async fn the_store_contents_are_no_credential(s: Arc<Stack>) {
    let redis: &RedisServer = s.redis.as_ref().expect("this stack runs on Redis");
    let keys = match redis.command(&[b"KEYS".as_slice(), b"*".as_slice()]).await {
        redis::Value::Array(v) => v,
        other => panic!("KEYS: {other:?}"),
    };
    assert!(!keys.is_empty(), "the sessions are in Redis");
    let mut candidates = Vec::new();
    for key in keys {
        let redis::Value::BulkString(name) = key else {
            continue;
        };
        let text = String::from_utf8_lossy(&name).into_owned();
        candidates.push(text.clone());
        if let Some(last) = text.rsplit(':').next() {
            candidates.push(last.to_owned());
        }
        if let redis::Value::BulkString(value) = redis.command(&[b"GET".as_slice(), &name]).await {
            candidates.push(String::from_utf8_lossy(&value).into_owned());
            candidates.push(base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                &value,
            ));
        }
    }
    let mark = s.mark();
    assert!(!candidates.is_empty(), "no key or value read from Redis");
    for c in &candidates {
        for header in [
            format!("Cookie: {COOKIE}={c}\r\n"),
            format!("Authorization: Bearer {c}\r\n"),
        ] {
            let r = s.send(&s.anon("GET", "/admin/x", &header)).await;
            assert!(
                r.status == 401 || r.status == 400 || r.status == 431,
                "{header:.80}… opened a session:\n{}",
                r.dump()
            );
        }
    }
    let seen = s.settled_since(&mark).await;
    assert!(
        seen.is_empty(),
        "store contents worked as a credential: {}",
        describe(&seen)
    );
}

async fn upstreams_cannot_set_or_clear_our_cookies(s: Arc<Stack>) {
    // An app behind one route answers with gatehouse's cookie: it could fixate a session of
    // its choosing on the browser, or sign the person out of every route.
    for header in [
        format!("Set-Cookie: {COOKIE}={}; Path=/", s.bob),
        format!("Set-Cookie: {COOKIE}=; Max-Age=0; Path=/"),
        format!("Set-Cookie: {COOKIE}_login=x; Path=/"),
        format!("Set-Cookie: {COOKIE}=x; Path=/admin; HttpOnly"),
        format!("set-cookie:  {COOKIE}=x"),
    ] {
        let enc: String = url::form_urlencoded::byte_serialize(header.as_bytes()).collect();
        let r = s
            .send(&s.anon("GET", &format!("/open/x?resp_header={enc}"), ""))
            .await;
        assert_eq!(r.status, 200, "{}", r.dump());
        for c in r.headers_named("set-cookie") {
            assert!(
                !c.trim_start().starts_with(COOKIE),
                "the upstream's {header:?} reached the browser as {c:?}"
            );
        }
    }
    // Its own cookies pass.
    let enc: String =
        url::form_urlencoded::byte_serialize(b"Set-Cookie: app=1; Path=/open").collect();
    let r = s
        .send(&s.anon("GET", &format!("/open/x?resp_header={enc}"), ""))
        .await;
    assert_eq!(
        r.headers_named("set-cookie"),
        ["app=1; Path=/open"],
        "{}",
        r.dump()
    );
}
