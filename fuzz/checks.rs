//! What each fuzz target checks on one input. Shared by the libFuzzer targets
//! (`fuzz/fuzz_targets/*.rs`) and by `tests/fuzz_corpus.rs`, which replays the committed corpora
//! on stable, so a corpus file keeps guarding the invariant that once found (or could find) a
//! bug. Every function panics on a violated invariant and returns quietly otherwise; inputs
//! that are rejected (invalid UTF-8, YAML, paths, tickets) are fine, a panic never is.
//!
//! Included with `#[path]`, so it only uses std, `gatehouse` and crates gatehouse itself depends
//! on (`serde_yaml`, `http`, `pingora-core`, `pingora-http`, `ipnet`, `url`, `futures-util`); the
//! fuzz crate lists the same ones.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::FutureExt as _;
use gatehouse::{
    config,
    path::canonicalize,
    policy::{
        evaluate, ClaimValue, ClientCertificate, Decision, FactSet, Policy, RequestFacts, Subject,
    },
    proxy::fuzzing,
    session::{Purpose, Sealer, Ticket},
};
use http::{header, HeaderValue};
use pingora_core::protocols::http::v1::server::HttpSession;
use pingora_http::RequestHeader;

/// Inputs longer than this are skipped: the parsers bound sizes elsewhere (request targets,
/// config files are operator-sized), and huge inputs only slow the fuzzer down.
pub(crate) const MAX_INPUT: usize = 64 * 1024;

// === policy_parse ===

/// A PPL document → `Policy::parse`; a policy that compiles is evaluated for a fixed subject
/// and requests. Checks: problems are located under `policy`; a signed-in subject never gets
/// `NeedsLogin`; facts the policy does not read (`Policy::facts_read`, what the decision cache
/// keys on) never change the decision; a decision holds until `next_time_boundary`.
pub(crate) fn policy_parse(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(text) else {
        return;
    };
    let policy = match Policy::parse(&doc, "policy") {
        Ok(policy) => policy,
        Err(problems) => {
            assert!(!problems.is_empty(), "a failed parse reports no problem");
            for p in &problems {
                assert!(
                    p.path.starts_with("policy"),
                    "problem located outside the policy: {p}"
                );
            }
            return;
        }
    };
    check_policy(&policy);
}

fn check_policy(policy: &Policy) {
    let fx = fixtures();
    let reads = policy.facts_read();
    let base = RequestFacts::new(
        "GET",
        "/reports/q3",
        Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
    );
    let now = fx.now;
    let decide = |subject: Option<&Subject>, facts: &RequestFacts<'_>, at: SystemTime| {
        let d = evaluate(policy, subject, facts, at);
        assert_eq!(
            d,
            evaluate(policy, subject, facts, at),
            "evaluation is not pure"
        );
        d
    };

    let signed_in = decide(Some(&fx.alice), &base, now);
    let anonymous = decide(None, &base, now);
    for (who, subject) in [("alice", &fx.alice), ("nobody", &fx.nobody)] {
        let d = decide(Some(subject), &base, now);
        assert_ne!(
            d,
            Decision::NeedsLogin,
            "signed-in subject {who} was sent to log in"
        );
    }

    // The decision cache keys on `facts_read` only: every other fact must be irrelevant.
    let unread = |fact: FactSet| !reads.contains(fact);
    if unread(FactSet::SUBJECT) {
        assert_eq!(
            anonymous, signed_in,
            "SUBJECT not read, yet anonymous differs"
        );
        assert_eq!(
            decide(Some(&fx.nobody), &base, now),
            signed_in,
            "SUBJECT not read, yet another subject differs"
        );
    }
    let variants: [(FactSet, RequestFacts<'_>); 6] = [
        (
            FactSet::METHOD,
            RequestFacts {
                method: "delete",
                ..base
            },
        ),
        (
            FactSet::PATH,
            RequestFacts {
                path: "/admin/x",
                ..base
            },
        ),
        (
            FactSet::SOURCE_IP,
            RequestFacts {
                source_ip: None,
                ..base
            },
        ),
        (
            FactSet::SOURCE_IP,
            RequestFacts {
                source_ip: Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
                ..base
            },
        ),
        (
            FactSet::CLIENT_CERT,
            RequestFacts {
                client_certificate: Some(fx.cert.facts()),
                ..base
            },
        ),
        (
            FactSet::HEADERS,
            RequestFacts {
                origin: Some("https://other.example"),
                access_control_request_method: Some("PUT"),
                ..base
            },
        ),
    ];
    for (fact, facts) in &variants {
        if unread(*fact) {
            for subject in [Some(&fx.alice), None] {
                assert_eq!(
                    decide(subject, facts, now),
                    decide(subject, &base, now),
                    "{fact:?} not read, yet changing it changes the decision"
                );
            }
        }
    }
    // A CORS preflight with a certificate that did not verify: exercises the other branches.
    let preflight = RequestFacts {
        method: "OPTIONS",
        origin: Some("https://app.example"),
        access_control_request_method: Some("POST"),
        client_certificate: Some(fx.bad_cert.facts()),
        ..base
    };
    let _ = decide(Some(&fx.alice), &preflight, now);

    // Time: no boundary without time criteria; otherwise the decision holds until it.
    match policy.next_time_boundary(now) {
        None if unread(FactSet::TIME) => {
            assert_eq!(
                decide(Some(&fx.alice), &base, fx.later),
                signed_in,
                "TIME not read"
            );
        }
        None => {
            // Only date bounds already passed: nothing changes any more.
            assert_eq!(
                decide(Some(&fx.alice), &base, fx.later),
                signed_in,
                "no time boundary, yet the decision changed later"
            );
        }
        Some(_) if unread(FactSet::TIME) => panic!("a time boundary without time criteria"),
        Some(boundary) => {
            assert!(boundary > now, "next_time_boundary is not after now");
            let just_before = boundary
                .checked_sub(Duration::from_nanos(1))
                .unwrap_or(boundary);
            assert_eq!(
                decide(Some(&fx.alice), &base, just_before),
                signed_in,
                "decision changed before next_time_boundary"
            );
            let _ = policy.next_time_boundary(boundary);
        }
    }
}

struct Fixtures {
    alice: Subject,
    nobody: Subject,
    cert: ClientCertificate,
    bad_cert: ClientCertificate,
    /// Monday 2026-03-30 08:30 UTC: just after Europe's switch to summer time.
    now: SystemTime,
    /// About three years after `now`.
    later: SystemTime,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let mut claims = BTreeMap::new();
        claims.insert(
            "department".to_owned(),
            vec![ClaimValue::String("engineering".to_owned())],
        );
        claims.insert("level".to_owned(), vec![ClaimValue::Number(3.0)]);
        claims.insert("mfa".to_owned(), vec![ClaimValue::Bool(true)]);
        claims.insert(
            "org/roles".to_owned(),
            vec![
                ClaimValue::String("admin".to_owned()),
                ClaimValue::String("reader".to_owned()),
            ],
        );
        let alice = Subject {
            user_id: Subject::user_id_of("https://idp.example.com", "alice"),
            email: Some("alice@corp.example".to_owned()),
            email_verified: true,
            name: Some("Alice".to_owned()),
            groups: vec!["admins".to_owned(), "engineering".to_owned()],
            claims,
        };
        let nobody = Subject {
            user_id: String::new(),
            email: Some("a@b@corp.example".to_owned()),
            email_verified: false,
            ..Subject::default()
        };
        let cert = ClientCertificate {
            valid: true,
            fingerprint: "ab".repeat(32),
            spki_hash: "q83vq83vq83vq83vq83vq83vq83vq83vq83vq83vq80=".to_owned(),
            san_dns: vec!["device.corp.example".to_owned()],
            san_email: vec!["alice@corp.example".to_owned()],
            san_uri: vec!["spiffe://corp.example/device/1".to_owned()],
        };
        let bad_cert = ClientCertificate {
            valid: false,
            ..cert.clone()
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_774_859_400);
        Fixtures {
            alice,
            nobody,
            cert,
            bad_cert,
            now,
            later: now + Duration::from_secs(1_000 * 86_400),
        }
    })
}

// === config_parse ===

/// Config text → `config::parse` (relative file names resolve against `base_dir`). Checks: an
/// error lists at least one problem; parsing is deterministic.
pub(crate) fn config_parse(data: &[u8], base_dir: &Path) {
    let Some(text) = text(data) else { return };
    match config::parse(text, base_dir, "fuzz.yaml") {
        Ok(loaded) => {
            assert!(
                config::parse(text, base_dir, "fuzz.yaml").is_ok(),
                "a config that parsed once fails the second time"
            );
            drop(loaded);
        }
        Err(errors) => {
            assert!(
                !errors.problems.is_empty(),
                "a rejected config lists no problem"
            );
        }
    }
}

// === path_canonicalize ===

/// A request target → `path::canonicalize`. Checks on an accepted target: the query is the
/// bytes after the first `?`; the path starts with `/`, has no empty, `.` or `..` segment, no
/// raw byte a path may not carry, only upper-case percent-encodings of bytes that are not
/// unreserved, `/`, `\` or controls; `Cow::Borrowed` exactly when unchanged; canonicalizing
/// again changes nothing (idempotence); the output is at most three times the input.
pub(crate) fn path_canonicalize(data: &[u8]) {
    let Some(target) = text(data) else { return };
    let Ok(canon) = canonicalize(target) else {
        return;
    };
    let (raw_path, raw_query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let path: &str = &canon.path;
    assert_eq!(canon.query, raw_query, "query is not the bytes after `?`");
    assert!(
        path.starts_with('/'),
        "path does not start with `/`: {path:?}"
    );
    assert_eq!(
        matches!(canon.path, Cow::Borrowed(_)),
        path == raw_path,
        "Cow::Borrowed must mean unchanged: {raw_path:?} → {path:?}"
    );
    assert_eq!(
        canon.has_path_parameters,
        raw_path.contains(';'),
        "has_path_parameters disagrees with a raw `;`"
    );
    assert!(
        path.len() <= 3 * raw_path.len() + 1,
        "output grew more than 3x: {raw_path:?} → {path:?}"
    );
    let inner = path.strip_suffix('/').unwrap_or(path);
    if !inner.is_empty() {
        for segment in inner[1..].split('/') {
            assert!(
                !matches!(segment, "" | "." | ".."),
                "segment {segment:?} left in {path:?} (from {raw_path:?})"
            );
        }
    }
    let bytes = path.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let b = bytes[at];
        if b == b'%' {
            let hex = bytes.get(at + 1..at + 3).unwrap_or_default();
            let value = std::str::from_utf8(hex)
                .ok()
                .filter(|h| {
                    h.bytes()
                        .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
                })
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(value) = value else {
                panic!("bad percent-encoding at {at} in {path:?} (from {raw_path:?})");
            };
            assert!(
                !(value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~')),
                "encoded unreserved byte in {path:?}"
            );
            assert!(
                !matches!(value, b'/' | b'\\' | 0..=0x1F | 0x7F),
                "encoded slash, backslash or control byte in {path:?}"
            );
            at += 3;
            continue;
        }
        assert!(
            b.is_ascii_graphic()
                && !matches!(
                    b,
                    b'\\'
                        | b'#'
                        | b'?'
                        | b'"'
                        | b'<'
                        | b'>'
                        | b'['
                        | b']'
                        | b'^'
                        | b'`'
                        | b'{'
                        | b'|'
                        | b'}'
                ),
            "raw byte {b:#04x} in {path:?} (from {raw_path:?})"
        );
        at += 1;
    }

    let expected = reference_canonical_path(raw_path);
    assert_eq!(
        path, expected,
        "differs from the reference for {raw_path:?}"
    );

    // Idempotence: the canonical path is its own canonical form, borrowed, same parameters.
    let again = match canonicalize(path) {
        Ok(again) => again,
        Err(e) => panic!("canonical path {path:?} (from {raw_path:?}) is rejected: {e}"),
    };
    assert!(
        matches!(again.path, Cow::Borrowed(p) if p == path),
        "not idempotent: {raw_path:?} → {path:?} → {:?}",
        again.path
    );
    // The flag describes the received path (`/a;x/../b` has one, its canonical `/b` not):
    // a `;` removed with its segment still makes the caller reject the request.
    assert_eq!(again.has_path_parameters, path.contains(';'));
    assert!(
        !again.has_path_parameters || canon.has_path_parameters,
        "a `;` in the canonical path that the received path lacked"
    );
    assert_eq!(again.query, None);
}

/// A slow, obviously correct canonical form of an *accepted* path (RFC 3986 section 5.2.4 on
/// segments whose unreserved percent-encodings were decoded once), to compare the fast
/// single-pass implementation with. Assumes every `%` starts a valid escape.
fn reference_canonical_path(raw_path: &str) -> String {
    let segments: Vec<&str> = raw_path[1..].split('/').collect();
    let mut out: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let normal = reference_segment(segment);
        match normal.as_str() {
            "" | "." => trailing_slash |= last,
            ".." => {
                out.pop();
                trailing_slash |= last;
            }
            _ => out.push(normal),
        }
    }
    let mut path = String::new();
    for segment in &out {
        path.push('/');
        path.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        path.push('/');
    }
    path
}

fn reference_segment(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = String::new();
    let mut at = 0;
    while at < bytes.len() {
        let (value, encoded) = match bytes[at] {
            b'%' => {
                let hex = std::str::from_utf8(&bytes[at + 1..at + 3]).unwrap_or("00");
                at += 3;
                (u8::from_str_radix(hex, 16).unwrap_or(0), true)
            }
            b => {
                at += 1;
                (b, false)
            }
        };
        let unreserved =
            value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~');
        let forbidden_raw = matches!(
            value,
            b'?' | b'"' | b'<' | b'>' | b'[' | b']' | b'^' | b'`' | b'{' | b'|' | b'}'
        );
        if unreserved || (!encoded && !forbidden_raw) {
            out.push(char::from(value));
        } else {
            out.push_str(&format!("%{value:02X}"));
        }
    }
    out
}

// === ticket_open ===

/// Every purpose with the additional data gatehouse uses for it.
const PURPOSES: [(Purpose, &[u8]); 6] = [
    (Purpose::Ticket, b""),
    (Purpose::LoginState, b""),
    (Purpose::SignIn, b"hop"),
    (Purpose::SignIn, b"handoff"),
    (Purpose::SignOut, &[0x5a; 16]),
    (Purpose::Record, &[0x5a; 16]),
];

/// The secret the ticket corpus was sealed with (`fuzz/README.md` says how to make more).
pub(crate) const SECRET: [u8; 32] = [7u8; 32];

fn sealer() -> &'static Sealer {
    static SEALER: OnceLock<Sealer> = OnceLock::new();
    SEALER.get_or_init(|| Sealer::new(&SECRET))
}

/// A cookie or bearer value → `Ticket::open` and `Sealer::open` for every purpose. Never
/// panics; what opens re-seals and opens to the same value, and opens for no other purpose
/// nor under another secret. Because a fuzzer cannot forge AES-GCM, the input is also sealed
/// as a ticket's plaintext, so the decoding behind the seal sees every byte string.
pub(crate) fn ticket_open(data: &[u8]) {
    let sealer = sealer();
    if let Some(value) = text(data) {
        open_value(sealer, value);
    }
    if data.len() <= 256 {
        let sealed = sealer.seal(Purpose::Ticket, b"", data);
        let opened = Ticket::open(sealer, &sealed);
        let well_formed = data.len() == 57 && data[0] == 1;
        assert_eq!(
            opened.is_some(),
            well_formed,
            "Ticket::open accepted a malformed plaintext, or refused a well-formed one"
        );
        if let Some(ticket) = opened {
            assert_eq!(
                Ticket::open(sealer, &ticket.seal(sealer)).as_ref(),
                Some(&ticket)
            );
        }
        open_value(sealer, &sealed);
    }
}

fn open_value(sealer: &Sealer, value: &str) {
    if let Some(ticket) = Ticket::open(sealer, value) {
        let resealed = ticket.seal(sealer);
        assert_ne!(resealed, value, "sealing reused a nonce");
        assert_eq!(
            Ticket::open(sealer, &resealed).as_ref(),
            Some(&ticket),
            "ticket round trip"
        );
        assert!(
            Ticket::open(&Sealer::new(&[8u8; 32]), value).is_none(),
            "a ticket opened under another secret"
        );
    }
    for (i, (purpose, context)) in PURPOSES.iter().enumerate() {
        let Some(plain) = sealer.open(*purpose, context, value) else {
            continue;
        };
        let resealed = sealer.seal(*purpose, context, &plain);
        assert_eq!(
            sealer.open(*purpose, context, &resealed).as_deref(),
            Some(&plain[..]),
            "{purpose:?} round trip"
        );
        for (j, (other, other_context)) in PURPOSES.iter().enumerate() {
            assert!(
                i == j || sealer.open(*other, other_context, value).is_none(),
                "a {purpose:?} value opened as {other:?}"
            );
        }
    }
}

// === request_headers ===

/// The session cookie name of these checks (gatehouse's default).
const COOKIE_NAME: &str = "_gatehouse";

/// `trusted_proxies` of these checks.
fn trusted_proxies() -> &'static [ipnet::IpNet] {
    static NETS: OnceLock<Vec<ipnet::IpNet>> = OnceLock::new();
    NETS.get_or_init(|| {
        ["10.0.0.0/8", "192.168.0.0/16", "fd00::/8"]
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect()
    })
}

/// TCP peers: two trusted proxies and two clients that are not.
const PEERS: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
];

/// A raw HTTP/1 request head → the request hygiene of `proxy/request.rs` and the header rules
/// of `proxy/headers.rs` and `proxy/auth.rs`. The input is read twice: by Pingora's own HTTP/1
/// parser (exactly what gatehouse receives) and line by line into a `RequestHeader` built with
/// the `http` crate's checked constructors (what an HTTP/2 request looks like, so `inspect`'s
/// own checks also meet requests Pingora's parser would refuse: two Content-Lengths, a Host
/// that differs from the absolute-form authority). Checks on every request `inspect` accepts:
/// no header value with NUL/CR/LF, no `_` in names, bounds, one Host, unambiguous framing, no
/// control byte in the target; the routed host is the one the Host header and the
/// absolute-form authority name, as the `http` crate (hyper upstreams) reads them, and
/// `origin_of` turns it into a URL with that host. On every request: the client IP is the TCP
/// peer unless the peer is trusted, else the rightmost untrusted X-Forwarded-For hop (a
/// reference walk); stripping removes every identity header always and every forwarding
/// header (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`, `X-Original-*`, …) from untrusted peers
/// and nothing else; cookie stripping never leaves our session or login cookie in a Cookie
/// header, in any byte encoding, and keeps every other cookie.
pub(crate) fn request_headers(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    if let Some(req) = pingora_parse(data) {
        check_request(&req);
    }
    if let Some(req) = build_request(data) {
        check_request(&req);
    }
}

/// The request head as Pingora's HTTP/1 server session parses it (`None`: refused).
fn pingora_parse(data: &[u8]) -> Option<RequestHeader> {
    let mut session = HttpSession::new(Box::new(std::io::Cursor::new(data.to_vec())));
    session.set_read_timeout(None);
    // An in-memory stream never waits: the future completes on its first poll.
    match session.read_request().now_or_never()? {
        Ok(Some(_)) => Some(session.req_header().clone()),
        _ => None,
    }
}

/// The request line and header lines (LF or CRLF, up to an empty line) as a `RequestHeader`
/// built like an HTTP/2 request; `None` when the `http` crate refuses a part.
fn build_request(data: &[u8]) -> Option<RequestHeader> {
    let mut lines = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let mut first = lines.next()?.splitn(3, |&b| b == b' ');
    let method = http::Method::from_bytes(first.next()?).ok()?;
    let target = first.next()?;
    let version = match first.next() {
        Some(b"HTTP/1.0") => http::Version::HTTP_10,
        _ => http::Version::HTTP_11,
    };
    let mut req = RequestHeader::build(method, target, None).ok()?;
    req.set_version(version);
    for line in lines.take_while(|l| !l.is_empty()) {
        let colon = line.iter().position(|&b| b == b':')?;
        let name = http::HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
        req.append_header(name, value).ok()?;
    }
    Some(req)
}

fn check_request(req: &RequestHeader) {
    if let Ok((host, port, target)) = fuzzing::inspect(req, 80) {
        check_accepted(req, host, port, target);
    }
    check_client_ip(req);
    check_stripping(req);
    for value in req.headers.get_all(header::COOKIE) {
        check_cookie_stripping(value);
    }
}

fn check_accepted(req: &RequestHeader, host: &str, port: u16, target: &str) {
    let headers = &req.headers;
    let mut bytes = 0;
    for (name, value) in headers {
        assert!(
            !value
                .as_bytes()
                .iter()
                .any(|b| matches!(b, 0 | b'\r' | b'\n')),
            "accepted a {name} value with NUL, CR or LF: {value:?}"
        );
        assert!(
            !name.as_str().contains('_'),
            "accepted a header name with `_`: {name}"
        );
        bytes += name.as_str().len() + value.len() + 4;
    }
    assert!(headers.len() <= fuzzing::MAX_HEADERS, "too many headers");
    assert!(bytes <= fuzzing::MAX_HEADER_BYTES, "too many header bytes");
    assert!(target.len() <= fuzzing::MAX_URI_BYTES, "target too long");
    assert!(
        !target.bytes().any(|b| b.is_ascii_control() || b == b' '),
        "accepted a target with a control byte or space: {target:?}"
    );
    assert!(
        headers.get_all(header::HOST).iter().count() <= 1,
        "two Host headers"
    );
    let lengths: Vec<&HeaderValue> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    assert!(lengths.len() <= 1, "two Content-Length headers");
    if let Some(len) = lengths.first() {
        assert!(
            !len.is_empty() && len.as_bytes().iter().all(u8::is_ascii_digit),
            "accepted Content-Length {len:?}"
        );
        assert!(
            !headers.contains_key(header::TRANSFER_ENCODING),
            "Content-Length with Transfer-Encoding"
        );
    }
    assert!(
        !(headers.contains_key(header::TRANSFER_ENCODING) && req.version == http::Version::HTTP_10),
        "Transfer-Encoding on HTTP/1.0"
    );

    // One authority: what the upstream reads from Host (and X-Forwarded-Host) and from an
    // absolute-form target is what was routed on.
    assert!(
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'_')),
        "routed host {host:?}"
    );
    let named = headers
        .get(header::HOST)
        .map(|h| {
            h.to_str()
                .unwrap_or_else(|_| panic!("accepted a Host that is not visible ASCII: {h:?}"))
        })
        .into_iter()
        .chain(req.uri.authority().map(|a| a.as_str()));
    for authority in named {
        let parsed: http::uri::Authority = authority.parse().unwrap_or_else(|e| {
            panic!("routed on {host:?}:{port}, but the http crate refuses authority {authority:?}: {e}")
        });
        let theirs = parsed.host();
        let theirs = theirs
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(theirs);
        let theirs = theirs.strip_suffix('.').unwrap_or(theirs);
        assert!(
            theirs.eq_ignore_ascii_case(host) && parsed.port_u16().unwrap_or(80) == port,
            "routed on {host:?}:{port}, the http crate reads {authority:?} as {theirs:?}:{:?}",
            parsed.port_u16()
        );
    }
    // The login return URL is built from this authority.
    for tls in [false, true] {
        let origin = fuzzing::origin_of(tls, host, port);
        let url = url::Url::parse(&origin)
            .unwrap_or_else(|e| panic!("origin {origin:?} of {host:?}:{port} is no URL: {e}"));
        let url_host = url.host_str().unwrap_or_default();
        let url_host = url_host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(url_host);
        assert!(
            url.path() == "/" && url.query().is_none() && url.username().is_empty(),
            "origin {origin:?} is more than an origin"
        );
        // The url crate normalizes IP literals; a name must come back as it was (lower-cased).
        if host.parse::<IpAddr>().is_err() {
            assert_eq!(
                url_host,
                host.to_ascii_lowercase(),
                "origin {origin:?} names another host than {host:?}"
            );
        }
    }
}

/// The client IP against a reference walk of X-Forwarded-For (every header, right to left).
fn check_client_ip(req: &RequestHeader) {
    let trusted = trusted_proxies();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    assert_eq!(fuzzing::client_ip(req, None, trusted), (None, false));
    for peer in PEERS {
        let (ip, peer_trusted) = fuzzing::client_ip(req, Some(peer), trusted);
        assert_eq!(peer_trusted, is_trusted(&peer), "trust of peer {peer}");
        if !peer_trusted {
            assert_eq!(
                ip,
                Some(peer),
                "an untrusted peer's X-Forwarded-For was believed"
            );
            continue;
        }
        let mut hops: Vec<Option<IpAddr>> = Vec::new();
        for value in req.headers.get_all("x-forwarded-for") {
            match value.to_str() {
                Ok(v) => hops.extend(v.split(',').map(|h| h.trim().parse().ok())),
                // An unreadable header ends the chain where it stands.
                Err(_) => hops.push(None),
            }
        }
        let mut expected = peer;
        for hop in hops.iter().rev() {
            let Some(hop) = hop else { break };
            expected = *hop;
            if !is_trusted(hop) {
                break;
            }
        }
        assert_eq!(ip, Some(expected), "client IP behind trusted peer {peer}");
    }
}

/// Identity headers a client may never send (SECURITY.md principle 2).
fn asserts_identity(name: &str) -> bool {
    ["x-gatehouse-", "x-pomerium-", "x-auth-request-"]
        .iter()
        .any(|p| name.starts_with(p))
        || matches!(
            name,
            "x-forwarded-user"
                | "x-forwarded-email"
                | "x-forwarded-groups"
                | "x-forwarded-preferred-username"
                | "x-forwarded-access-token"
                | "remote-user"
                | "x-remote-user"
                | "x-webauth-user"
        )
}

/// Headers describing the connection or the original request, believed only from trusted
/// proxies: `X-Forwarded-*` and `X-Original-*` as families, and the others by name.
fn describes_forwarding(name: &str) -> bool {
    name.starts_with("x-forwarded-")
        || name.starts_with("x-original-")
        || matches!(
            name,
            "forwarded"
                | "x-real-ip"
                | "x-rewrite-url"
                | "x-client-ip"
                | "true-client-ip"
                | "x-cluster-client-ip"
        )
}

fn check_stripping(req: &RequestHeader) {
    for trusted in [false, true] {
        let mut stripped = req.clone();
        fuzzing::strip_client_headers(&mut stripped, trusted);
        for name in req.headers.keys() {
            let n = name.as_str();
            let doomed = asserts_identity(n) || (!trusted && describes_forwarding(n));
            let before: Vec<&HeaderValue> = req.headers.get_all(name).iter().collect();
            let after: Vec<&HeaderValue> = stripped.headers.get_all(name).iter().collect();
            if doomed {
                assert!(
                    after.is_empty(),
                    "{n} reaches the upstream (peer trusted: {trusted})"
                );
            } else {
                assert_eq!(before, after, "{n} was changed (peer trusted: {trusted})");
            }
        }
        assert!(stripped.headers.len() <= req.headers.len());
    }
}

/// The `; `-separated pairs of a Cookie value, trimmed of spaces and tabs, as bytes.
fn cookie_pairs(value: &[u8]) -> Vec<&[u8]> {
    value
        .split(|&b| b == b';')
        .map(|p| p.trim_ascii())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Whether a pair sets our session or login cookie, however its name is padded.
fn our_cookie(pair: &[u8]) -> bool {
    let login = format!("{COOKIE_NAME}_login");
    pair.iter().position(|&b| b == b'=').is_some_and(|eq| {
        let name = pair[..eq].trim_ascii();
        name == COOKIE_NAME.as_bytes() || name == login.as_bytes()
    })
}

fn check_cookie_stripping(value: &HeaderValue) {
    let pairs = cookie_pairs(value.as_bytes());
    let ours = pairs.iter().any(|p| our_cookie(p));
    let others: Vec<&[u8]> = pairs.iter().copied().filter(|p| !our_cookie(p)).collect();
    match fuzzing::strip_our_cookies(value, COOKIE_NAME) {
        None => assert!(!ours, "our cookie stays in {value:?}"),
        Some(None) => assert!(
            ours && others.is_empty(),
            "all cookies of {value:?} removed"
        ),
        Some(Some(kept)) => {
            assert!(ours, "{value:?} rewritten without a cookie of ours");
            assert!(
                !kept.is_empty(),
                "{value:?} stripped to an empty Cookie header"
            );
            assert_eq!(
                cookie_pairs(kept.as_bytes()),
                others,
                "{value:?} stripped to {kept:?}"
            );
        }
    }
}

// === redirect_target ===

/// Hosts on `programmatic_redirect_domain_whitelist` in these checks.
fn whitelist() -> &'static [String] {
    static LIST: OnceLock<Vec<String>> = OnceLock::new();
    LIST.get_or_init(|| vec!["cli.example.com".to_owned()])
}

/// (tls, host, port) of the routes the login-return checks run on.
const ORIGINS: [(bool, &str, u16); 3] = [
    (false, "app.example.com", 80),
    (true, "app.example.com", 8443),
    (false, "::1", 8080),
];

/// Any string as a redirect target, four ways (SECURITY.md principle 5):
/// - as a return path (`safe_path`): what is kept stays on the origin for the `url` crate
///   (WHATWG, as browsers resolve `Location`), is a valid header value, has no control byte
///   or backslash, and still names a path after one round of percent-decoding (`/%09/evil`,
///   `/%2F/evil` fall back to `/` as `//evil` does);
/// - as a programmatic `redirect_uri`: accepted only when the `url` crate sees http(s), no
///   user info and a loopback or allow-listed host, and a plain RFC 3986 reading of the
///   authority (curl, Go, Python) sees the same host without user info; the `Location` built
///   from it goes to that host and is a valid header value;
/// - as a request target through the login flow (`canonicalize`, the return URL `decide`
///   builds, the callback's `split_origin` + `safe_path`): the browser lands on the route's
///   origin, with a valid `Location`;
/// - as the request target of `redirect` routes: the `Location` names the configured host.
pub(crate) fn redirect_target(data: &[u8]) {
    let Some(text) = text(data) else { return };
    check_return_path(text);
    check_programmatic(text);
    if let Ok(canonical) = canonicalize(text) {
        check_login_return(&canonical);
        check_redirect_routes(&canonical);
    }
}

fn check_return_path(path: &str) {
    let safe = fuzzing::safe_path(path);
    assert!(
        safe == path || safe == "/",
        "safe_path rewrote {path:?} to {safe:?}"
    );
    assert_same_origin_location(&safe, &format!("return path {path:?}"));
    let (path_part, _) = safe.split_once(['?', '#']).unwrap_or((&safe, ""));
    let decoded = percent_decode(path_part);
    assert!(
        !(decoded.starts_with(b"//")
            || decoded.starts_with(b"/\\")
            || decoded.iter().any(|b| b.is_ascii_control() || *b == b'\\')),
        "return path {safe:?} names another host once percent-decoded"
    );
}

/// `location` is a valid `Location` value that keeps the browser on `https://app.example.com`.
fn assert_same_origin_location(location: &str, what: &str) {
    assert!(
        HeaderValue::from_str(location).is_ok(),
        "{what}: {location:?} is no valid header value (a 302 without Location)"
    );
    assert!(
        location.starts_with('/')
            && !location.starts_with("//")
            && !location.starts_with("/\\")
            && !location.bytes().any(|b| b.is_ascii_control() || b == b'\\'),
        "{what}: unsafe Location {location:?}"
    );
    let base = url::Url::parse("https://app.example.com/base/").unwrap_or_else(|e| panic!("{e}"));
    let joined = base
        .join(location)
        .unwrap_or_else(|e| panic!("{what}: {location:?} does not resolve: {e}"));
    assert_eq!(
        joined.origin(),
        base.origin(),
        "{what}: {location:?} leaves the origin"
    );
    assert!(joined.username().is_empty() && joined.password().is_none());
}

/// Decodes every valid `%XX` once.
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = bytes
            .get(at + 1..at + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[at], hex) {
            (b'%', Some(value)) => {
                out.push(value);
                at += 3;
            }
            (b, _) => {
                out.push(b);
                at += 1;
            }
        }
    }
    out
}

fn check_programmatic(target: &str) {
    if !fuzzing::programmatic_target_allowed(target, whitelist()) {
        return;
    }
    let url = url::Url::parse(target)
        .unwrap_or_else(|e| panic!("accepted redirect_uri {target:?} the url crate refuses: {e}"));
    assert!(
        matches!(url.scheme(), "http" | "https"),
        "accepted scheme of {target:?}"
    );
    assert!(
        url.username().is_empty() && url.password().is_none(),
        "accepted user info in {target:?}"
    );
    let host_allowed = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => {
            d == "localhost" || whitelist().iter().any(|w| d.eq_ignore_ascii_case(w))
        }
        None => false,
    };
    assert!(
        host_allowed,
        "accepted host of {target:?}: {:?}",
        url.host()
    );
    // Other clients read it by RFC 3986: no byte where the two readings part ways.
    assert!(
        target.bytes().all(|b| b.is_ascii_graphic() && b != b'\\'),
        "accepted {target:?} with a byte WHATWG and RFC 3986 read differently"
    );
    // RFC 3986 has an authority only after `scheme://`; WHATWG also finds one in `http:/x`
    // or `http:x`.
    let Some((scheme, rest)) = target.split_once("://") else {
        panic!("accepted {target:?}: no authority for RFC 3986");
    };
    assert!(
        scheme.eq_ignore_ascii_case(url.scheme()),
        "{target:?}: RFC 3986 reads scheme {scheme:?}"
    );
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    assert!(
        !authority.contains('@'),
        "accepted user info in {target:?} (RFC 3986 reading)"
    );
    let rfc_host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default().to_owned(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .to_owned(),
    };
    let rfc_host = String::from_utf8_lossy(&percent_decode(&rfc_host)).to_ascii_lowercase();
    let whatwg_host = url.host_str().unwrap_or_default();
    let whatwg_host = whatwg_host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(whatwg_host);
    if matches!(url.host(), Some(url::Host::Domain(_))) {
        assert_eq!(
            rfc_host, whatwg_host,
            "{target:?}: RFC 3986 and WHATWG read different hosts"
        );
    } else {
        // WHATWG also reads `0x7f.1` or `2130706433` as 127.0.0.1; RFC 3986 readers resolve
        // those through the system resolver. Either way, only a loopback address.
        let loopback = rfc_host
            .parse::<IpAddr>()
            .map_or(true, |ip| ip.is_loopback());
        assert!(loopback, "{target:?}: RFC 3986 reads host {rfc_host:?}");
    }
    // The callback's `Location`: the target with the token appended.
    let sep = if target.contains('?') { '&' } else { '?' };
    let location = format!("{target}{sep}gatehouse_token=AAAA");
    assert!(
        HeaderValue::from_str(&location).is_ok(),
        "programmatic Location {location:?} is no valid header value"
    );
    let landed = url::Url::parse(&location).unwrap_or_else(|e| panic!("{location:?}: {e}"));
    assert_eq!(landed.host(), url.host(), "{location:?} changed host");
}

/// The return URL `decide` builds for a login, through the callback (and the handoff).
fn check_login_return(canonical: &gatehouse::path::CanonicalTarget<'_>) {
    for (tls, host, port) in ORIGINS {
        let origin = fuzzing::origin_of(tls, host, port);
        let return_to = match canonical.query {
            Some(q) => format!("{origin}{}?{q}", canonical.path),
            None => format!("{origin}{}", canonical.path),
        };
        let (return_origin, return_path) = fuzzing::split_origin(&return_to);
        assert_eq!(
            return_origin, origin,
            "split_origin of {return_to:?} is not the origin it was built from"
        );
        let location = fuzzing::safe_path(return_path);
        assert_same_origin_location(&location, &format!("login return {return_to:?}"));
        // Only a path that could read as another host may fall back to `/`.
        if location == "/" && return_path != "/" {
            assert!(
                return_path.starts_with("//")
                    || return_path
                        .bytes()
                        .any(|b| b.is_ascii_control() || b == b'\\'),
                "login return {return_to:?} dropped to `/`"
            );
        }
    }
}

/// `redirect` routes (one with prefix `/old`): the `Location` goes to the configured host (or
/// the request's).
fn check_redirect_routes(canonical: &gatehouse::path::CanonicalTarget<'_>) {
    let actions = [
        (
            config::RedirectAction {
                https_redirect: true,
                response_code: 301,
                ..Default::default()
            },
            "",
            "https",
            "app.example.com",
            None,
        ),
        (
            config::RedirectAction {
                host_redirect: Some("new.example.com".to_owned()),
                prefix_rewrite: Some("/v2/".to_owned()),
                response_code: 308,
                ..Default::default()
            },
            "/old",
            "http",
            "new.example.com",
            None,
        ),
        (
            config::RedirectAction {
                scheme_redirect: Some("https".to_owned()),
                port_redirect: Some(8443),
                strip_query: true,
                response_code: 302,
                ..Default::default()
            },
            "",
            "https",
            "app.example.com",
            Some(8443),
        ),
    ];
    for (action, prefix, scheme, host, port) in &actions {
        // The route matched its prefix, or the action does not apply.
        if !canonical.path.starts_with(prefix) {
            continue;
        }
        let location = fuzzing::redirect_location(
            action,
            false,
            "app.example.com",
            80,
            canonical,
            prefix.len(),
        );
        assert!(
            HeaderValue::from_str(&location).is_ok(),
            "redirect Location {location:?} is no valid header value"
        );
        let url = url::Url::parse(&location)
            .unwrap_or_else(|e| panic!("redirect Location {location:?}: {e}"));
        assert_eq!(
            (url.scheme(), url.host_str(), url.port()),
            (*scheme, Some(*host), *port),
            "redirect Location {location:?}"
        );
        assert!(url.username().is_empty() && url.password().is_none());
    }
}

// === helpers ===

fn text(data: &[u8]) -> Option<&str> {
    if data.len() > MAX_INPUT {
        return None;
    }
    std::str::from_utf8(data).ok()
}
