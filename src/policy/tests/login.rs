//! Unauthenticated requests: `NeedsLogin` exactly when a criterion needing a user could not
//! be decided for lack of one (Pomerium's `user-unauthenticated`), else a plain decision.

use super::*;

#[track_caller]
fn anon(yaml: &str, f: &RequestFacts<'_>, want: &str) {
    let p = policy(yaml);
    assert_eq!(outcome(&p, None, f, SystemTime::UNIX_EPOCH), want, "{yaml}");
}

#[test]
fn a_user_criterion_without_a_user_needs_login() {
    anon("allow: {or: [{groups: admins}]}", &get("/"), "login");
    anon(
        "allow: {and: [{http_method: GET}, {email: a@b.c}]}",
        &get("/"),
        "login",
    );
    // `not` of a user criterion cannot be decided either.
    anon("allow: {not: [{email: a@b.c}]}", &get("/"), "login");
}

#[test]
fn a_policy_failing_without_needing_a_user_is_a_plain_deny() {
    let post = RequestFacts::new("POST", "/", None);
    anon(
        "allow: {and: [{accept: true}, {http_method: GET}]}",
        &post,
        "deny",
    );
    anon(
        "allow: {and: [{accept: true}, {http_method: GET}]}",
        &get("/"),
        "allow",
    );
    anon(
        "allow: {or: [{source_ip: 192.168.0.0/16}]}",
        &get("/"),
        "deny",
    );
}

#[test]
fn a_criterion_that_held_already_decides_the_or() {
    // `accept` decides the `or`: the undecidable email criterion does not matter.
    anon(
        "allow: {or: [{accept: true}, {email: a@b.c}]}",
        &get("/"),
        "allow",
    );
}

#[test]
fn login_even_when_a_deny_rule_matched() {
    let del = RequestFacts::new("DELETE", "/", None);
    anon(
        "[{allow: {or: [{authenticated_user: true}]}}, {deny: {or: [{http_method: DELETE}]}}]",
        &del,
        "login",
    );
    // A signed-in user gets the deny.
    let p = policy(
        "[{allow: {or: [{authenticated_user: true}]}}, {deny: {or: [{http_method: DELETE}]}}]",
    );
    let u = user();
    assert_eq!(outcome(&p, Some(&u), &del, SystemTime::UNIX_EPOCH), "deny");
}

#[test]
fn a_policy_without_rules_denies_everyone() {
    let p = Policy::deny_all();
    assert_eq!(outcome(&p, None, &get("/"), SystemTime::UNIX_EPOCH), "deny");
    let u = user();
    assert_eq!(
        outcome(&p, Some(&u), &get("/"), SystemTime::UNIX_EPOCH),
        "deny"
    );
    // Empty operators hold nothing.
    let p = policy("allow: {and: [], or: []}");
    assert_eq!(
        outcome(&p, Some(&u), &get("/"), SystemTime::UNIX_EPOCH),
        "deny"
    );
}

#[test]
fn needs_login_reports_user_unauthenticated() {
    let p = policy("allow: {or: [{groups: admins}]}");
    let d = evaluate(&p, None, &get("/"), SystemTime::UNIX_EPOCH);
    assert_eq!(d, Decision::NeedsLogin);
    assert_eq!(d.reasons().to_string(), "user-unauthenticated");
    assert!(d.permit().is_none());
}
