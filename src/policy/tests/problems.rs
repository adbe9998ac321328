//! Every mistake is a problem with its location, and all of them are reported.

use super::*;
use crate::config::{Access, PolicySource};

fn paths(ps: &[PolicyProblem]) -> Vec<&str> {
    ps.iter().map(|p| p.path.as_str()).collect()
}

#[test]
fn all_problems_are_collected_with_locations() {
    let ps = problems(
        "allow:\n  and:\n    - emial: a@b.c\n    - groups: ''\n    - source_ip: 10.0.0.0/33\n    - time_of_day: {after: '09:00', timezone: Mars/Olympus}\n  xor: []\ndeny:\n  or: {email: x}\n",
    );
    assert_eq!(
        paths(&ps),
        [
            "policy.allow.and[0].emial",
            "policy.allow.and[1].groups",
            "policy.allow.and[2].source_ip",
            "policy.allow.and[3].time_of_day.timezone",
            "policy.allow.xor",
            "policy.deny.or",
        ],
        "{ps:#?}"
    );
    assert!(ps[0].message.contains("unknown criterion `emial`"));
    assert!(ps[1].message.contains("empty string"));
    assert!(ps[4].message.contains("unknown operator `xor`"));
    assert!(ps[5].message.contains("expected a list of criteria"));
    assert_eq!(
        ps[0].to_string(),
        format!("policy.allow.and[0].emial: {}", ps[0].message)
    );
}

#[test]
fn wrong_shapes_and_types() {
    for (yaml, path, needle) in [
        (
            "allow: {or: [{accept: false}]}",
            "policy.allow.or[0].accept",
            "takes `true`",
        ),
        (
            "allow: {or: [{email: 3}]}",
            "policy.allow.or[0].email",
            "expected a string",
        ),
        (
            "allow: {or: [{email: {}}]}",
            "policy.allow.or[0].email",
            "empty string matcher",
        ),
        (
            "allow: {or: [{email: {equals: x}}]}",
            "policy.allow.or[0].email.equals",
            "unknown string matcher",
        ),
        (
            "allow: {or: [{email: {in: x}}]}",
            "policy.allow.or[0].email.in",
            "list of strings",
        ),
        (
            "allow: {or: [{email: {in: []}}]}",
            "policy.allow.or[0].email.in",
            "empty list",
        ),
        (
            "allow: {or: [{groups: [a, b]}]}",
            "policy.allow.or[0].groups",
            "got a list",
        ),
        (
            "allow: {or: [{groups: {contains: a}}]}",
            "policy.allow.or[0].groups.contains",
            "unknown list matcher",
        ),
        (
            "allow: {or: [{claim: x}]}",
            "policy.allow.or[0].claim",
            "claim name",
        ),
        (
            "allow: {or: [{email/x: a}]}",
            "policy.allow.or[0].email/x",
            "sub-path",
        ),
        (
            "allow: {or: [{email: a, groups: b}]}",
            "policy.allow.or[0]",
            "exactly one key",
        ),
        (
            "allow: {or: [email]}",
            "policy.allow.or[0]",
            "criterion object",
        ),
        ("permit: {or: []}", "policy.permit", "unknown action"),
        ("allow: [accept]", "policy.allow", "object of operators"),
        ("42", "policy", "expected a policy"),
        (
            "allow: {or: [{source_ip: nope}]}",
            "policy.allow.or[0].source_ip",
            "not an IP",
        ),
        (
            "allow: {or: [{client_certificate: {fingerprint: abc}}]}",
            "policy.allow.or[0].client_certificate.fingerprint",
            "SHA-256",
        ),
        (
            "allow: {or: [{client_certificate: {spki_hash: abc}}]}",
            "policy.allow.or[0].client_certificate.spki_hash",
            "base64",
        ),
        (
            "allow: {or: [{client_certificate: {}}]}",
            "policy.allow.or[0].client_certificate",
            "empty certificate",
        ),
        (
            "allow: {or: [{date: {after: tomorrow}}]}",
            "policy.allow.or[0].date.after",
            "neither a date",
        ),
        (
            "allow: {or: [{date: {after: 2026-02-01, before: 2026-01-01}}]}",
            "policy.allow.or[0].date",
            "never holds",
        ),
        (
            "allow: {or: [{day_of_week: someday}]}",
            "policy.allow.or[0].day_of_week",
            "not a day",
        ),
        (
            "allow: {or: [{time_of_day: {after: '09:00'}}]}",
            "policy.allow.or[0].time_of_day",
            "needs a `timezone`",
        ),
        (
            "allow: {or: [{time_of_day: {after: '25:00', timezone: UTC}}]}",
            "policy.allow.or[0].time_of_day.after",
            "HH:MM",
        ),
    ] {
        let ps = problems(yaml);
        assert_eq!(ps.len(), 1, "{yaml}: {ps:#?}");
        assert_eq!(ps[0].path, path, "{yaml}");
        assert!(ps[0].message.contains(needle), "{yaml}: {}", ps[0].message);
    }
}

#[test]
fn deep_nesting_is_bounded() {
    let mut yaml = String::from("{accept: true}");
    for _ in 0..40 {
        yaml = format!("{{and: [{yaml}]}}");
    }
    let ps = problems(&format!("allow: {{or: [{yaml}]}}"));
    assert!(
        ps.iter().any(|p| p.message.contains("nested deeper")),
        "{ps:#?}"
    );
}

#[test]
fn route_shortcuts_and_policy_are_ored_and_checked() {
    let access = Access {
        allowed_domains: vec!["corp.example".into()],
        allowed_groups: vec!["ops".into()],
        policy: Some(PolicySource::Inline(
            serde_yaml::from_str("deny: {or: [{http_method: DELETE}]}").unwrap(),
        )),
        ..Access::default()
    };
    let p = compile_route(&access, None, "routes[0]").unwrap();
    let u = user();
    assert_eq!(
        outcome(&p, Some(&u), &get("/"), SystemTime::UNIX_EPOCH),
        "allow"
    );
    let del = RequestFacts::new("DELETE", "/", None);
    assert_eq!(outcome(&p, Some(&u), &del, SystemTime::UNIX_EPOCH), "deny");
    let outsider = Subject {
        email: Some("bob@other.example".into()),
        groups: vec!["ops".into()],
        ..user()
    };
    assert_eq!(
        outcome(&p, Some(&outsider), &get("/"), SystemTime::UNIX_EPOCH),
        "allow"
    );
    let stranger = Subject {
        groups: vec![],
        ..outsider
    };
    assert_eq!(
        outcome(&p, Some(&stranger), &get("/"), SystemTime::UNIX_EPOCH),
        "deny"
    );
    assert_eq!(
        outcome(&p, None, &get("/"), SystemTime::UNIX_EPOCH),
        "login"
    );
}

#[test]
fn allowed_users_match_the_user_id_or_a_verified_email() {
    let access = Access {
        allowed_users: vec![
            "alice@Corp.Example".into(),
            "https://idp.example.com|bob".into(),
        ],
        ..Access::default()
    };
    let p = compile_route(&access, None, "routes[0]").unwrap();
    assert_eq!(
        outcome(&p, Some(&user()), &get("/"), SystemTime::UNIX_EPOCH),
        "allow"
    );
    let unverified = Subject {
        email_verified: false,
        ..user()
    };
    assert_eq!(
        outcome(&p, Some(&unverified), &get("/"), SystemTime::UNIX_EPOCH),
        "deny"
    );
    let bob = Subject {
        user_id: "https://idp.example.com|bob".into(),
        email: None,
        ..user()
    };
    assert_eq!(
        outcome(&p, Some(&bob), &get("/"), SystemTime::UNIX_EPOCH),
        "allow"
    );
}

#[test]
fn public_route_allows_everyone_and_reads_nothing() {
    let access = Access {
        allow_public_unauthenticated_access: true,
        ..Access::default()
    };
    let p = compile_route(&access, None, "routes[0]").unwrap();
    assert_eq!(
        outcome(&p, None, &get("/"), SystemTime::UNIX_EPOCH),
        "allow"
    );
    assert!(p.facts_read().is_empty());
    // No access settings at all: nobody gets in.
    let p = compile_route(&Access::default(), None, "routes[0]").unwrap();
    assert_eq!(
        outcome(&p, Some(&user()), &get("/"), SystemTime::UNIX_EPOCH),
        "deny"
    );
}

#[test]
fn route_problems_are_all_reported() {
    let access = Access {
        allow_public_unauthenticated_access: true,
        allowed_users: vec![String::new()],
        allowed_groups: vec!["ok".into(), " ".into()],
        policy: Some(PolicySource::Inline(
            serde_yaml::from_str("allow: {and: [{nope: 1}]}").unwrap(),
        )),
        ..Access::default()
    };
    let ps = compile_route(&access, None, "routes[3]").unwrap_err();
    assert_eq!(
        paths(&ps),
        [
            "routes[3].allow_public_unauthenticated_access",
            "routes[3].allowed_users[0]",
            "routes[3].allowed_groups[1]",
            "routes[3].policy.allow.and[0].nope",
        ]
    );
}

#[test]
fn named_policies_load_from_the_policies_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ops.yaml"),
        "allow:\n  or:\n    - groups: ops\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        "allow:\n  or:\n    - grups: ops\n",
    )
    .unwrap();
    let named = |n: &str| Access {
        policy: Some(PolicySource::Named(n.into())),
        ..Access::default()
    };
    let mut lib = PolicyLibrary::new(Some(dir.path()));
    let p = lib.compile_route(&named("ops"), "routes[0]").unwrap();
    let ops = Subject {
        groups: vec!["ops".into()],
        ..user()
    };
    assert_eq!(
        outcome(&p, Some(&ops), &get("/"), SystemTime::UNIX_EPOCH),
        "allow"
    );

    let ps = lib
        .compile_route(&named("broken"), "routes[1]")
        .unwrap_err();
    assert_eq!(paths(&ps), ["routes[1].policy<broken>.allow.or[0].grups"]);
    let ps = lib
        .compile_route(&named("missing"), "routes[2]")
        .unwrap_err();
    assert_eq!(paths(&ps), ["routes[2].policy"]);
    assert!(
        ps[0].message.contains("no policy named `missing`"),
        "{}",
        ps[0].message
    );
    let ps = lib
        .compile_route(&named("../etc/passwd"), "routes[3]")
        .unwrap_err();
    assert!(
        ps[0].message.contains("is not a policy name"),
        "{}",
        ps[0].message
    );
    let ps = compile_route(&named("ops"), None, "routes[4]").unwrap_err();
    assert!(
        ps[0].message.contains("no policies_dir"),
        "{}",
        ps[0].message
    );
}
