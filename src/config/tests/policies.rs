//! Policies compiled at config load: problems with their locations, the default mTLS rule.

use std::time::SystemTime;

use super::*;
use crate::policy::{evaluate, ClientCertFacts, FactSet, RequestFacts};

/// A config in `dir` with `policies_dir: policies` and the given route lines (indented by
/// two spaces), loaded.
fn load_with(dir: &Path, head: &str, routes: &str) -> Result<Loaded, ConfigErrors> {
    let text = format!("insecure_server: true\npolicies_dir: policies\n{head}routes:\n{routes}");
    let path = dir.join("config.yaml");
    std::fs::write(&path, text).unwrap();
    load(&path)
}

/// One route answering 200 from `host`, with access lines `rules` (keys and values only).
fn route(host: &str, rules: &str) -> String {
    format!("  - from: https://{host}\n    response: {{status: 200, body: ok}}\n    {rules}\n")
}

fn policies_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join("policies").join(name), text).unwrap();
    }
    dir
}

#[test]
fn every_route_gets_its_compiled_policy() {
    let dir = policies_dir(&[(
        "post-only.yaml",
        "allow: {and: [{accept: true}, {http_method: POST}]}\n",
    )]);
    let loaded = load_with(
        dir.path(),
        "",
        &[
            route("a.example.com", "allow_public_unauthenticated_access: true"),
            route("b.example.com", "policy: post-only"),
            route("c.example.com", "allowed_groups: [admins]"),
        ]
        .concat(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let routes = &loaded.config.routes;
    let get = RequestFacts::new("GET", "/", None);
    let post = RequestFacts::new("POST", "/", None);
    let now = SystemTime::now();
    let outcome = |i: usize, f: &RequestFacts<'_>| {
        evaluate(&routes[i].access.compiled, None, f, now).as_str()
    };
    assert_eq!(outcome(0, &get), "allow");
    assert_eq!(outcome(1, &get), "deny");
    assert_eq!(outcome(1, &post), "allow");
    assert_eq!(outcome(2, &get), "login");
    assert!(routes[1]
        .access
        .compiled
        .facts_read()
        .contains(FactSet::METHOD));
}

#[test]
fn inline_policy_problems_have_config_lines() {
    let errors = parse_err(
        "insecure_server: true\nroutes:\n  - from: https://a.example.com\n    response: {status: 200}\n    \
         policy:\n      allow:\n        or:\n          - source_ip: 10.0.0.0/33\n          - frobnicate: true\n",
    );
    assert_eq!(
        expect(&errors, "routes[0].policy.allow.or[0].source_ip", "CIDR"),
        Some(8)
    );
    assert_eq!(
        expect(&errors, "routes[0].policy.allow.or[1].frobnicate", ""),
        Some(9)
    );
}

#[test]
fn policy_problems_are_listed_with_other_problems() {
    let errors = parse_err(
        &[
            "insecure_server: true\nroutes:\n",
            &route(
                "a.example.com",
                "policy: {allow: {or: [{http_method: [GET]}]}}",
            ),
            "  - from: ftp://b\n    allow_public_unauthenticated_access: true\n",
        ]
        .concat(),
    );
    assert!(
        errors
            .iter()
            .any(|p| p.path.starts_with("routes[0].policy")),
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|p| p.path.starts_with("routes[1]")),
        "{errors:#?}"
    );
}

#[test]
fn named_policy_problems_point_into_the_policy_file_once() {
    let dir = policies_dir(&[(
        "broken.yaml",
        "# comment\nallow:\n  or:\n    - nope: true\n",
    )]);
    let errors = load_with(
        dir.path(),
        "",
        &[
            route("a.example.com", "policy: broken"),
            route("b.example.com", "policy: broken"),
            route("c.example.com", "policy: missing"),
        ]
        .concat(),
    )
    .unwrap_err()
    .problems;
    let in_file: Vec<&Problem> = errors
        .iter()
        .filter(|p| p.file.ends_with("broken.yaml"))
        .collect();
    assert_eq!(in_file.len(), 1, "{errors:#?}");
    assert_eq!(in_file[0].path, "allow.or[0].nope");
    assert_eq!(in_file[0].line, Some(4));
    assert!(
        in_file[0].message.contains("routes[0].policy"),
        "{}",
        in_file[0]
    );
    assert_eq!(
        expect(&errors, "routes[2].policy", "no policy named `missing`"),
        Some(12)
    );
}

#[test]
fn default_mtls_rule_unless_enforcement_is_policy() {
    let dir = policies_dir(&[]);
    std::fs::write(
        dir.path().join("ca.pem"),
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let route = route("a.example.com", "allow_public_unauthenticated_access: true");
    let no_cert = RequestFacts::new("GET", "/", None);
    let mut bad_cert = RequestFacts::new("GET", "/", None);
    bad_cert.client_certificate = Some(ClientCertFacts {
        valid: false,
        fingerprint: "",
        spki_hash: "",
        san_dns: &[],
        san_email: &[],
        san_uri: &[],
    });
    for (mode, want) in [
        ("policy_with_default_deny", "deny"),
        ("reject_connection", "deny"),
        ("policy", "allow"),
    ] {
        let head = format!("downstream_mtls: {{ca_file: ca.pem, enforcement: {mode}}}\n");
        let loaded = load_with(dir.path(), &head, &route).unwrap_or_else(|e| panic!("{e}"));
        let p = &loaded.config.routes[0].access.compiled;
        let now = SystemTime::now();
        assert_eq!(evaluate(p, None, &no_cert, now).as_str(), want, "{mode}");
        assert_eq!(evaluate(p, None, &bad_cert, now).as_str(), want, "{mode}");
    }
}
