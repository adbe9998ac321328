use std::borrow::Cow;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::{canonicalize, PathError as E};

/// `(target, expected canonical path or error)`.
const CASES: &[(&str, Result<&str, E>)] = &[
    // SECURITY.md, "Routing and paths".
    ("/public/../admin/x", Ok("/admin/x")),
    ("/public/..%2Fadmin/x", Err(E::EncodedSlash)),
    ("/public/%5C..%5Cadmin", Err(E::EncodedBackslash)),
    ("/admin%00.png", Err(E::Nul)),
    ("/public/%252e%252e/admin", Ok("/public/%252e%252e/admin")),
    ("/admin#/../public", Err(E::Fragment)),
    ("/api/private?path=/status", Ok("/api/private")),
    ("http://other.internal/admin", Err(E::NotOriginForm)),
    // SECURITY.md redirect examples, as request targets.
    ("//evil.com", Ok("/evil.com")),
    ("/\\evil.com", Err(E::Backslash)),
    ("/%09/evil.com", Err(E::ControlCharacter)),
    ("/%0a/evil.com", Err(E::ControlCharacter)),
    // Origin form.
    ("", Err(E::NotOriginForm)),
    ("*", Err(E::NotOriginForm)),
    ("admin", Err(E::NotOriginForm)),
    ("?a=b", Err(E::NotOriginForm)),
    ("example.com:443", Err(E::NotOriginForm)),
    // Already canonical.
    ("/", Ok("/")),
    ("/a", Ok("/a")),
    ("/a/b/", Ok("/a/b/")),
    ("/a.b/c..d/...", Ok("/a.b/c..d/...")),
    ("/%C3%A9t%C3%A9", Ok("/%C3%A9t%C3%A9")),
    ("/a%20b", Ok("/a%20b")),
    ("/a%3Fb%23c%25", Ok("/a%3Fb%23c%25")),
    ("/~user/-_.!$&'()*+,=:@", Ok("/~user/-_.!$&'()*+,=:@")),
    // Decode unreserved exactly once.
    ("/%41%62%2d%5f%7e%2E", Ok("/Ab-_~.")),
    ("/a/%2e%2e/b", Ok("/b")),
    ("/a/%2E/b", Ok("/a/b")),
    ("/a/.%2e/b", Ok("/b")),
    ("/a/%2e./b", Ok("/b")),
    ("/a/%2e%2e%2e/b", Ok("/a/.../b")),
    ("/%2525", Ok("/%2525")),
    ("/%25%32%65", Ok("/%252e")),
    // Other encodings stay encoded, upper-case hex.
    ("/%c3%a9", Ok("/%C3%A9")),
    ("/a%3fb", Ok("/a%3Fb")),
    ("/a%3bb", Ok("/a%3Bb")),
    ("/%ef%bf%bd", Ok("/%EF%BF%BD")),
    ("/%f0%9f%98%80", Ok("/%F0%9F%98%80")),
    // Raw characters RFC 3986 does not allow in a path get encoded.
    ("/a{b}|c", Ok("/a%7Bb%7D%7Cc")),
    ("/\"<>[]^`", Ok("/%22%3C%3E%5B%5D%5E%60")),
    // Slashes and dot-segments.
    ("//", Ok("/")),
    ("///a///b//", Ok("/a/b/")),
    ("/.", Ok("/")),
    ("/..", Ok("/")),
    ("/./", Ok("/")),
    ("/../", Ok("/")),
    ("/../../../etc/passwd", Ok("/etc/passwd")),
    ("/a/b/.", Ok("/a/b/")),
    ("/a/b/..", Ok("/a/")),
    ("/a/b/../", Ok("/a/")),
    ("/a/b/../..", Ok("/")),
    ("/a/./b/./c", Ok("/a/b/c")),
    ("/a//../b", Ok("/b")),
    ("/a/b/../../../../c", Ok("/c")),
    ("/a/../b/../c/", Ok("/c/")),
    ("/public/./../admin", Ok("/admin")),
    // Errors: bytes.
    ("/a b", Err(E::Space)),
    ("/a\tb", Err(E::ControlCharacter)),
    ("/a\0b", Err(E::Nul)),
    ("/a\x7fb", Err(E::ControlCharacter)),
    ("/a\\b", Err(E::Backslash)),
    ("/caf\u{e9}", Err(E::NonAscii)),
    ("/a#", Err(E::Fragment)),
    ("/a%7f", Err(E::ControlCharacter)),
    ("/a%0d%0aX-Injected:1", Err(E::ControlCharacter)),
    ("/a%2f", Err(E::EncodedSlash)),
    ("/a%5c", Err(E::EncodedBackslash)),
    // Errors: percent-encoding.
    ("/%", Err(E::InvalidPercentEncoding)),
    ("/%4", Err(E::InvalidPercentEncoding)),
    ("/%zz", Err(E::InvalidPercentEncoding)),
    ("/%4g", Err(E::InvalidPercentEncoding)),
    ("/%%41", Err(E::InvalidPercentEncoding)),
    ("/%4?x", Err(E::InvalidPercentEncoding)),
    // Errors: UTF-8.
    ("/%c3", Err(E::InvalidUtf8)),
    ("/%c3/%a9", Err(E::InvalidUtf8)),
    ("/%c3a", Err(E::InvalidUtf8)),
    ("/%a9", Err(E::InvalidUtf8)),
    ("/%c0%af", Err(E::InvalidUtf8)),
    ("/%e0%80%af", Err(E::InvalidUtf8)),
    ("/%ed%a0%80", Err(E::InvalidUtf8)),
    ("/%f4%90%80%80", Err(E::InvalidUtf8)),
    ("/%ff", Err(E::InvalidUtf8)),
    ("/%c3%c3", Err(E::InvalidUtf8)),
    // Path parameters.
    ("/a;b/c", Ok("/a;b/c")),
    ("/public;x/../admin", Ok("/admin")),
    ("/public/..;/admin", Err(E::DotSegmentWithParameters)),
    ("/public/.;x/admin", Err(E::DotSegmentWithParameters)),
    ("/public/%2e%2e;/admin", Err(E::DotSegmentWithParameters)),
    ("/public/...;/admin", Ok("/public/...;/admin")),
    ("/public/;../admin", Ok("/public/;../admin")),
    // The query is validated, never part of the path.
    ("/a?", Ok("/a")),
    ("/a/../b?x=/../y&z=%2F%00", Ok("/b")),
    ("/a?b c", Err(E::Space)),
    ("/a?b#c", Err(E::Fragment)),
    ("/a?b\\c", Err(E::Backslash)),
    ("/a?b\0", Err(E::Nul)),
    ("/a?b\x01", Err(E::ControlCharacter)),
    ("/a?\u{e9}", Err(E::NonAscii)),
];

#[test]
fn table() {
    for (target, expected) in CASES {
        let got = canonicalize(target).map(|t| t.path.into_owned());
        let expected = expected.map(str::to_owned);
        assert_eq!(got, expected, "target {target:?}");
    }
}

#[test]
fn canonical_input_is_borrowed() {
    for (target, expected) in CASES {
        if let Ok(expected) = expected {
            let path = target.split('?').next().unwrap_or_default();
            if path == *expected {
                let got = canonicalize(target).unwrap();
                assert!(matches!(got.path, Cow::Borrowed(_)), "target {target:?}");
            }
        }
    }
}

/// Callers forward the received request line when the path is borrowed, so borrowed must
/// mean "identical to the received path", also when the canonical path is a prefix of it.
#[test]
fn borrowed_means_unchanged() {
    let shortened = [
        ("/a/b/.", "/a/b/"),
        ("/a/b/c/..", "/a/b/"),
        ("/a/b//", "/a/b/"),
        ("/a/b/./?q", "/a/b/"),
        ("/..", "/"),
        ("/a/b/%2e", "/a/b/"),
    ];
    for (target, expected) in shortened {
        let got = canonicalize(target).unwrap();
        assert_eq!(got.path, expected);
        assert!(matches!(got.path, Cow::Owned(_)), "{target:?}");
    }
}

#[test]
fn query_is_kept_byte_for_byte() {
    let got = canonicalize("/x/../api/private?path=/status&a=%2f%zz;b").unwrap();
    assert_eq!(got.path, "/api/private");
    assert_eq!(got.query, Some("path=/status&a=%2f%zz;b"));
    assert!(!got.has_path_parameters);
    assert_eq!(canonicalize("/a?").unwrap().query, Some(""));
    assert_eq!(canonicalize("/a").unwrap().query, None);
    assert_eq!(canonicalize("/a?b?c").unwrap().query, Some("b?c"));
}

#[test]
fn path_parameters_are_flagged_not_stripped() {
    let got = canonicalize("/a;jsessionid=1/b?c;d").unwrap();
    assert_eq!(got.path, "/a;jsessionid=1/b");
    assert!(got.has_path_parameters);
    // `;` in the query and an encoded `%3B` are not path parameters.
    assert!(!canonicalize("/a%3Bb?c;d").unwrap().has_path_parameters);
}

#[test]
fn reasons_are_stable() {
    let reasons = [
        (E::NotOriginForm, "not-origin-form"),
        (E::Fragment, "fragment"),
        (E::ControlCharacter, "control-character"),
        (E::Space, "space"),
        (E::Nul, "nul"),
        (E::Backslash, "backslash"),
        (E::NonAscii, "non-ascii"),
        (E::EncodedSlash, "encoded-slash"),
        (E::EncodedBackslash, "encoded-backslash"),
        (E::InvalidPercentEncoding, "invalid-percent-encoding"),
        (E::InvalidUtf8, "invalid-utf8"),
        (E::DotSegmentWithParameters, "dot-segment-parameters"),
    ];
    for (error, reason) in reasons {
        assert_eq!(error.as_str(), reason);
    }
}

fn assert_fast(target: &str, expected: &str) {
    let started = Instant::now();
    let got = canonicalize(target).unwrap();
    assert_eq!(got.path, expected);
    // Generous for debug builds on a busy machine; quadratic behaviour would take seconds.
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn many_dot_segments_are_linear() {
    assert_fast(&format!("/{}admin", "../".repeat(5_000)), "/admin");
    assert_fast(&format!("/{}", "%2e%2e/".repeat(20_000)), "/");
    let deep = format!("/{}{}x", "a/".repeat(20_000), "../".repeat(20_000));
    assert_fast(&deep, "/x");
    let wide = format!("/{}{}x", "abcdefghij/".repeat(10_000), "../".repeat(10_000));
    assert_fast(&wide, "/x");
    assert_fast(&format!("/a{}b", "/".repeat(100_000)), "/a/b");
}

// === properties ===

/// Pieces that exercise every branch, errors included.
fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "/", "//", ".", "..", "a", "B", "%2e", "%2E", "%2e%2e", "%41", "%7e", "%25", "%252e",
        "%c3%a9", "%C3", "%a9", "%3b", ";", ";x", "{", "~", "-", "%", "%4", "%zz", "%2f", "%5C",
        "%00", "%0a", " ", "\\", "#", "?", "?q", "\u{e9}", "\t", "...",
    ])
}

/// Pieces that never produce an error.
fn valid_piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "/", "//", ".", "..", "a", "B", "%2e", "%2E", "%2e%2e", "%41", "%7e", "%25", "%252e",
        "%c3%a9", "%3b", "{", "~", "-", "...", ":", "@",
    ])
}

/// A reference model written for clarity, not speed: split, decode, then RFC 3986 §5.2.4 on a
/// vector of segments. Only for inputs built from `valid_piece`.
fn reference(path: &str) -> String {
    let raw: Vec<&str> = path[1..].split('/').collect();
    let mut stack: Vec<String> = Vec::new();
    let mut trailing = false;
    for (i, segment) in raw.iter().enumerate() {
        let last = i + 1 == raw.len();
        let decoded = decode_segment(segment);
        match decoded.as_str() {
            "" | "." => trailing |= last,
            ".." => {
                stack.pop();
                trailing |= last;
            }
            _ => stack.push(decoded),
        }
    }
    let mut out = String::new();
    for segment in &stack {
        out.push('/');
        out.push_str(segment);
    }
    if trailing || out.is_empty() {
        out.push('/');
    }
    out
}

fn decode_segment(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let value = u8::from_str_radix(&segment[i + 1..i + 3], 16).unwrap();
            if value.is_ascii_alphanumeric() || b"-._~".contains(&value) {
                out.push(char::from(value));
            } else {
                out.push_str(&format!("%{value:02X}"));
            }
            i += 3;
        } else {
            if b"\"<>[]^`{|}".contains(&bytes[i]) {
                out.push_str(&format!("%{:02X}", bytes[i]));
            } else {
                out.push(char::from(bytes[i]));
            }
            i += 1;
        }
    }
    out
}

fn assert_canonical_shape(path: &str) {
    assert!(path.starts_with('/'), "{path:?}");
    for bad in ["//", "/./", "/../", "%2F", "%2f", "%5C", "%00"] {
        assert!(!path.contains(bad), "{path:?} contains {bad:?}");
    }
    assert!(!path.ends_with("/.."), "{path:?}");
    assert!(!path.ends_with("/."), "{path:?}");
    assert!(!path.contains('?') && !path.contains('#'), "{path:?}");
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_strings(target in any::<String>()) {
        let _ = canonicalize(&target);
        let _ = canonicalize(&format!("/{target}"));
    }

    #[test]
    fn canonical_output_is_a_fixed_point(pieces in prop::collection::vec(piece(), 0..24)) {
        let target = format!("/{}", pieces.concat());
        if let Ok(first) = canonicalize(&target) {
            assert_canonical_shape(&first.path);
            let second = canonicalize(&first.path).unwrap();
            prop_assert_eq!(&second.path, &first.path);
            prop_assert!(matches!(second.path, Cow::Borrowed(_)));
            let received = target.split('?').next().unwrap_or_default();
            prop_assert_eq!(
                matches!(first.path, Cow::Borrowed(_)),
                first.path == received
            );
            // The flag of the first pass is conservative: it stays set when `..` removed the
            // segment with the `;`. The canonical output's own flag is exact.
            prop_assert_eq!(second.has_path_parameters, first.path.contains(';'));
            prop_assert!(!second.has_path_parameters || first.has_path_parameters);
        }
    }

    #[test]
    fn matches_the_reference_model(pieces in prop::collection::vec(valid_piece(), 0..24)) {
        let path = format!("/{}", pieces.concat());
        let got = canonicalize(&path).unwrap();
        let expected = reference(&path);
        prop_assert_eq!(got.path.as_ref(), expected.as_str());
        assert_canonical_shape(&got.path);
    }

    #[test]
    fn query_never_changes_the_path(
        pieces in prop::collection::vec(valid_piece(), 0..12),
        query in "[a-zA-Z0-9/.%;=&?]{0,24}",
    ) {
        let path = format!("/{}", pieces.concat());
        let alone = canonicalize(&path).unwrap();
        let target = format!("{path}?{query}");
        let with_query = canonicalize(&target).unwrap();
        prop_assert_eq!(&alone.path, &with_query.path);
        prop_assert_eq!(with_query.query, Some(query.as_str()));
    }
}
