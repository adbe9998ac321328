//! Tests of the policy language: shared helpers here, the tables in `tests/`.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::SystemTime,
};

use super::*;

mod certificates;
mod criteria;
mod examples;
mod laws;
mod login;
mod problems;
mod time;

/// Compiles an inline YAML policy or panics with its problems.
fn policy(yaml: &str) -> Policy {
    let v: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    Policy::parse(&v, "policy").unwrap_or_else(|ps| panic!("{yaml}: {ps:#?}"))
}

/// The problems of an inline YAML policy (panics if it compiles).
fn problems(yaml: &str) -> Vec<PolicyProblem> {
    let v: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    match Policy::parse(&v, "policy") {
        Ok(_) => panic!("{yaml} compiled"),
        Err(ps) => ps,
    }
}

fn user() -> Subject {
    Subject {
        user_id: "https://idp.example.com|alice".into(),
        email: Some("alice@Corp.Example".into()),
        email_verified: true,
        name: Some("Alice".into()),
        groups: vec!["admins".into(), "eng".into()],
        claims: Subject::claims_from_json(
            serde_json::json!({
                "department": "eng",
                "level": 3,
                "on_call": true,
                "roles": ["viewer", "editor"],
                "org": {"team": "infra"},
                "https://corp.example/roles": ["sre"],
            })
            .as_object()
            .unwrap(),
        ),
    }
}

fn get(path: &str) -> RequestFacts<'_> {
    RequestFacts::new("GET", path, Some(ip("10.1.2.3")))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn at(rfc3339: &str) -> SystemTime {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .into()
}

/// `allow`, `deny` or `login` for the policy and inputs.
fn outcome(p: &Policy, s: Option<&Subject>, f: &RequestFacts<'_>, now: SystemTime) -> &'static str {
    evaluate(p, s, f, now).as_str()
}

/// Asserts the outcome of a one-criterion allow policy `allow: {or: [<criterion>]}`.
#[track_caller]
fn check(criterion: &str, s: Option<&Subject>, f: &RequestFacts<'_>, expect: &str) {
    let p = policy(&format!("allow: {{or: [{criterion}]}}"));
    let got = outcome(&p, s, f, SystemTime::UNIX_EPOCH);
    assert_eq!(got, expect, "{criterion} with {s:?} {f:?}");
}

/// The repository root (works whether `file!()` is relative or absolute).
fn repo_root() -> PathBuf {
    Path::new(file!())
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}
