//! `client_certificate` and `invalid_client_certificate`, and the default mTLS rule.

use super::*;

const FP: &str = "3f2a6b1c9d8e7f60514233241506f7e8d9cab0a1b2c3d4e5f60718293a4b5c6d";
const FP_LONG: &str = "3F:2A:6B:1C:9D:8E:7F:60:51:42:33:24:15:06:F7:E8:D9:CA:B0:A1:B2:C3:D4:E5:F6:07:18:29:3A:4B:5C:6D";
const SPKI: &str = "ZpdtKBeNzN1YzrKKWZY/M3pzSmdX4NuTrqWhsQRHp7c=";

fn cert<'a>(valid: bool, dns: &'a [String], email: &'a [String]) -> RequestFacts<'a> {
    RequestFacts {
        client_certificate: Some(ClientCertFacts {
            valid,
            fingerprint: FP,
            spki_hash: SPKI,
            san_dns: dns,
            san_email: email,
            san_uri: &[],
        }),
        ..RequestFacts::new("GET", "/", None)
    }
}

#[test]
fn client_certificate_matchers() {
    let dns = vec!["Device-1.Corp.Example".to_owned()];
    let email = vec!["x@corp.example".to_owned()];
    let ok = cert(true, &dns, &email);
    let untrusted = cert(false, &dns, &email);
    for (c, f, want) in [
        (
            format!("{{client_certificate: {{fingerprint: {FP}}}}}"),
            &ok,
            "allow",
        ),
        (
            format!("{{client_certificate: {{fingerprint: '{FP_LONG}'}}}}"),
            &ok,
            "allow",
        ),
        (
            format!(
                "{{client_certificate: {{fingerprint: [{}, {FP}]}}}}",
                "0".repeat(64)
            ),
            &ok,
            "allow",
        ),
        (
            format!(
                "{{client_certificate: {{fingerprint: {}}}}}",
                "0".repeat(64)
            ),
            &ok,
            "deny",
        ),
        (
            format!("{{client_certificate: {{spki_hash: '{SPKI}'}}}}"),
            &ok,
            "allow",
        ),
        // Key pins hold without a trusted chain: the client proved it holds the key.
        (
            format!("{{client_certificate: {{fingerprint: {FP}}}}}"),
            &untrusted,
            "allow",
        ),
        (
            "{client_certificate: {san_dns: {ends_with: .corp.example}}}".into(),
            &ok,
            "allow",
        ),
        (
            "{client_certificate: {san_email: x@corp.example}}".into(),
            &ok,
            "allow",
        ),
        (
            "{client_certificate: {san_email: y@corp.example}}".into(),
            &ok,
            "deny",
        ),
        // SANs are only evidence from a certificate that verified.
        (
            "{client_certificate: {san_email: x@corp.example}}".into(),
            &untrusted,
            "deny",
        ),
        (
            format!("{{client_certificate: {{fingerprint: {FP}, san_email: nope@x.y}}}}"),
            &ok,
            "deny",
        ),
    ] {
        check(&c, None, f, want);
    }
    let none = get("/");
    check(
        &format!("{{client_certificate: {{fingerprint: {FP}}}}}"),
        None,
        &none,
        "deny",
    );
}

#[test]
fn invalid_client_certificate_three_states() {
    let p = policy(
        "[{allow: {or: [{accept: true}]}}, {deny: {or: [{invalid_client_certificate: true}]}}]",
    );
    let r = |f: &RequestFacts<'_>| evaluate(&p, None, f, SystemTime::UNIX_EPOCH);
    assert_eq!(r(&cert(true, &[], &[])).as_str(), "allow");
    let d = r(&cert(false, &[], &[]));
    assert!(
        matches!(d, Decision::Deny(rs) if rs.contains(Reason::InvalidClientCertificate)),
        "{d:?}"
    );
    let d = r(&get("/"));
    assert!(
        matches!(d, Decision::Deny(rs) if rs.contains(Reason::ClientCertificateRequired)),
        "{d:?}"
    );
}

#[test]
fn default_client_certificate_rule_is_checked_before_login() {
    let mut p = policy("allow: {or: [{authenticated_user: true}]}");
    p.add_default_client_certificate_rule();
    assert!(p.facts_read().contains(FactSet::CLIENT_CERT));
    // No certificate: a 403, never a login redirect.
    let d = evaluate(&p, None, &get("/"), SystemTime::UNIX_EPOCH);
    assert!(
        matches!(d, Decision::Deny(rs) if rs.contains(Reason::ClientCertificateRequired)),
        "{d:?}"
    );
    let u = user();
    assert_eq!(
        outcome(&p, Some(&u), &cert(true, &[], &[]), SystemTime::UNIX_EPOCH),
        "allow"
    );
    assert_eq!(
        outcome(&p, None, &cert(true, &[], &[]), SystemTime::UNIX_EPOCH),
        "login"
    );
}
