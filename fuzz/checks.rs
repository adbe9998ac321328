//! What each fuzz target checks on one input. Shared by the libFuzzer targets
//! (`fuzz/fuzz_targets/*.rs`) and by `tests/fuzz_corpus.rs`, which replays the committed corpora
//! on stable, so a corpus file keeps guarding the invariant that once found (or could find) a
//! bug. Every function panics on a violated invariant and returns quietly otherwise; inputs
//! that are rejected (invalid UTF-8, YAML, paths, tickets) are fine, a panic never is.
//!
//! Included with `#[path]`, so it only uses `gatehouse`, `serde_yaml` and std.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use gatehouse::{
    config,
    path::canonicalize,
    policy::{
        evaluate, ClaimValue, ClientCertificate, Decision, FactSet, Policy, RequestFacts, Subject,
    },
    session::{Purpose, Sealer, Ticket},
};

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

// === helpers ===

fn text(data: &[u8]) -> Option<&str> {
    if data.len() > MAX_INPUT {
        return None;
    }
    std::str::from_utf8(data).ok()
}
