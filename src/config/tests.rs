//! Unit tests of config loading and validation. Route-level rules are in `tests/routes.rs`.

use std::{path::Path, time::Duration};

use super::*;

mod policies;
mod routes;

const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // 32 bytes

pub(super) fn parse_ok(text: &str) -> Loaded {
    parse(text, Path::new("/nonexistent"), "config.yaml").unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn parse_err(text: &str) -> Vec<Problem> {
    match parse(text, Path::new("/nonexistent"), "config.yaml") {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.problems,
    }
}

/// Asserts a problem at exactly `path` whose message contains `needle`; returns its line.
pub(super) fn expect(problems: &[Problem], path: &str, needle: &str) -> Option<usize> {
    let found = problems
        .iter()
        .find(|p| p.path == path && p.message.contains(needle));
    match found {
        Some(p) => p.line,
        None => panic!("no problem at {path:?} containing {needle:?} in:\n{problems:#?}"),
    }
}

/// A minimal valid config with one public route whose body is extended by `extra` (route keys,
/// indented by four spaces).
pub(super) fn with_route(extra: &str) -> String {
    format!(
        "insecure_server: true\nroutes:\n  - from: https://app.example.com\n    \
         allow_public_unauthenticated_access: true\n{extra}"
    )
}

#[test]
fn durations_parse_go_style() {
    let cases = [
        ("30s", Duration::from_secs(30)),
        ("5m", Duration::from_secs(300)),
        ("14h", Duration::from_secs(14 * 3600)),
        ("500ms", Duration::from_millis(500)),
        ("1h30m", Duration::from_secs(5400)),
        ("1.5s", Duration::from_millis(1500)),
        ("0", Duration::ZERO),
        ("250us", Duration::from_micros(250)),
    ];
    for (text, want) in cases {
        assert_eq!(parse_duration(text), Ok(want), "{text}");
    }
    for bad in ["", "30", "5x", "-1s", "s", "1..5s", "h1"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
    }
}

#[test]
fn realistic_pomerium_config_loads() {
    let dir = tempfile::tempdir().unwrap();
    let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n";
    let ec_key = "-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----\n";
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    std::fs::write(dir.path().join("signing.pem"), ec_key).unwrap();
    std::fs::write(dir.path().join("client_secret"), "s3cret\n").unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/admins.yaml"),
        "allow: {and: [{groups: {has: admins}}]}\n",
    )
    .unwrap();
    let text = format!(
        r#"# Pomerium-style config
address: :8443
http_redirect_addr: :8080
metrics_address: 127.0.0.1:9090
certificates:
  - cert: cert.pem
    key: key.pem
authenticate_service_url: https://authenticate.example.com
idp_provider: oidc
idp_provider_url: https://idp.example.com/realms/corp
idp_client_id: gatehouse
idp_client_secret_file: client_secret
idp_scopes: [openid, email, profile, groups]
cookie_secret: {SECRET}
cookie_expire: 8h
cookie_same_site: strict
signing_key_file: signing.pem
session_store: redis://:pw@127.0.0.1:6379/0
jwt_claims_headers: [email, given_name]
trusted_proxies: [10.0.0.0/8, 192.0.2.7]
policies_dir: policies
timeout_idle: 2m
routes:
  - from: https://grafana.example.com
    to: http://grafana.internal:3000
    allowed_domains: [example.com]
    pass_identity_headers: true
    allow_websockets: true
  - from: https://api.example.com
    prefix: /v1/
    to:
      - http://10.0.0.1:8080,3
      - h2c://10.0.0.2
    load_balancing_policy: LEAST_REQUEST
    timeout: 60s
    set_request_headers:
      X-Team: platform
      X-Version: 2
    remove_request_headers: [X-Debug]
    set_response_headers: {{Strict-Transport-Security: max-age=31536000}}
    health_checks:
      - timeout: 2s
        interval: 10s
        healthy_threshold: 1
        unhealthy_threshold: 2
        http_health_check:
          path: /healthz
          expected_statuses: [{{start: 200, end: 204}}]
    policy:
      allow:
        or:
          - groups: {{has: admins}}
  - from: https://admin.example.com
    regex: /admin/[0-9]+
    to: https://admin.internal/base
    tls_server_name: admin.internal
    policy: admins
  - from: http://old.example.com
    redirect: {{https_redirect: true, response_code: 308}}
    allow_public_unauthenticated_access: true
  - from: https://*.example.com
    path: /robots.txt
    response: {{status: 200, body: "User-agent: *"}}
    allow_public_unauthenticated_access: true
"#
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    let loaded = load(&path).unwrap_or_else(|e| panic!("{e}"));
    let c = &loaded.config;
    assert_eq!(c.address.to_string(), "0.0.0.0:8443");
    assert_eq!(c.certificates.len(), 1);
    assert_eq!(c.certificates[0].origin, "certificates[0]");
    assert_eq!(c.trusted_proxies.len(), 2);
    assert_eq!(c.timeout_idle, Duration::from_secs(120));
    let id = &c.identity;
    assert_eq!(id.cookie_secret.map(|s| s[31]), Some(31));
    assert_eq!(id.idp_client_secret.as_deref(), Some("s3cret"));
    assert_eq!(id.cookie_same_site, SameSite::Strict);
    assert_eq!(id.cookie_name, "_gatehouse");
    assert!(matches!(id.session_store, SessionStoreUrl::Redis(_)));
    let headers: Vec<&str> = id
        .jwt_claims_headers
        .iter()
        .map(|(h, _)| h.as_str())
        .collect();
    assert_eq!(
        headers,
        ["x-gatehouse-claim-email", "x-gatehouse-claim-given-name"]
    );
    assert_eq!(c.routes.len(), 5);
    let RouteAction::Proxy(api) = &c.routes[1].action else {
        panic!("proxy")
    };
    assert_eq!(api.to[0].weight, 3);
    assert_eq!(
        (api.to[1].scheme, api.to[1].port),
        (UpstreamScheme::H2c, 80)
    );
    assert_eq!(api.load_balancing_policy, LoadBalancingPolicy::LeastRequest);
    assert_eq!(api.set_request_headers[1].1, "2");
    assert!(matches!(c.routes[1].path, PathMatch::Prefix(ref p) if p == "/v1"));
    assert!(matches!(
        c.routes[1].access.policy,
        Some(PolicySource::Inline(_))
    ));
    assert!(matches!(c.routes[2].access.policy, Some(PolicySource::Named(ref n)) if n == "admins"));
    assert_eq!(
        c.routes[4].from.host,
        HostPattern::Wildcard(".example.com".into())
    );
    // No warnings: TLS listener, every route has an access rule.
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let text = std::fs::read_to_string(&path).unwrap();
    let or_line = text
        .lines()
        .position(|l| l.contains("groups: {has: admins}"))
        .unwrap()
        + 1;
    assert_eq!(
        loaded.lines.line_of("routes[1].policy.allow.or[0]"),
        Some(or_line)
    );
}

#[test]
fn problems_in_different_routes_are_all_reported_with_lines() {
    let text = "\
insecure_server: true
routes:
  - from: https://a.example.com
    to: http://127.0.0.1:8080
    allow_public_unauthenticated_access: true
  - from: https://b.example.com
    to:
      - http://127.0.0.1:8081
      - ftp://files.example.com
    allow_public_unauthenticated_access: true
  - from: https://c.example.com
    to: http://127.0.0.1:8082
    timeout: soon
    allowed_users: [alice@example.com, \"\"]
";
    let errors = parse_err(text);
    assert_eq!(
        expect(
            &errors,
            "routes[1].to[1]",
            "unsupported scheme \"ftp\" (use http, https or h2c)"
        ),
        Some(9)
    );
    assert_eq!(
        expect(&errors, "routes[2].timeout", "invalid duration"),
        Some(13)
    );
    assert_eq!(
        expect(&errors, "routes[2].allowed_users[1]", "empty entry"),
        Some(14)
    );
    assert_eq!(errors.len(), 3, "{errors:#?}");
    let shown = ConfigErrors {
        file: "config.yaml".into(),
        problems: errors,
    }
    .to_string();
    assert!(shown.contains(
        "config.yaml:9: routes[1].to[1]: unsupported scheme \"ftp\" (use http, https or h2c)"
    ));
    assert_eq!(shown.lines().count(), 3);
}

#[test]
fn every_unknown_key_is_reported() {
    let text = "\
insecure_server: true
adress: :80
cookie_sercet: x
routes:
  - from: https://a.example.com
    to: http://127.0.0.1:8080
    allow_public_unauthenticated_acces: true
    health_checks:
      - tcp_health_check: {}
        grpc_health_check: {}
  - from: https://b.example.com
    redirect: {https_redirect: true, code: 302}
    allow_public_unauthenticated_access: true
";
    let errors = parse_err(text);
    assert_eq!(
        expect(
            &errors,
            "adress",
            "unknown key \"adress\" (did you mean \"address\"?)"
        ),
        Some(2)
    );
    assert_eq!(
        expect(&errors, "cookie_sercet", "did you mean \"cookie_secret\""),
        Some(3)
    );
    assert_eq!(
        expect(
            &errors,
            "routes[0].allow_public_unauthenticated_acces",
            "unknown key"
        ),
        Some(7)
    );
    assert_eq!(
        expect(
            &errors,
            "routes[0].health_checks[0].grpc_health_check",
            "unknown key"
        ),
        Some(10)
    );
    assert_eq!(
        expect(&errors, "routes[1].redirect.code", "unknown key"),
        Some(12)
    );
}

#[test]
fn wrong_types_are_reported_per_key() {
    let errors = parse_err("insecure_server: yes please\nthreads: many\nroutes: {}\n");
    expect(&errors, "insecure_server", "expected a boolean");
    expect(&errors, "threads", "expected a non-negative integer");
    expect(&errors, "routes", "expected a list");
    let errors = parse_err("- just\n- a list\n");
    expect(&errors, "", "must be a mapping");
}

#[test]
fn yaml_syntax_error_has_a_line() {
    let errors = parse_err("insecure_server: true\nroutes:\n  - from: [unclosed\n");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].message.starts_with("invalid YAML"));
    assert!(errors[0].line.is_some());
    let errors = parse_err("insecure_server: true\ninsecure_server: false\n");
    assert!(errors[0].message.contains("duplicate"), "{errors:?}");
}

#[test]
fn value_and_file_together_is_an_error() {
    let text =
        format!("insecure_server: true\ncookie_secret: {SECRET}\ncookie_secret_file: s.txt\n");
    expect(
        &parse_err(&text),
        "cookie_secret_file",
        "set cookie_secret or cookie_secret_file, not both",
    );
}

#[test]
fn unreadable_file_is_named() {
    let errors = parse_err("insecure_server: true\nidp_client_secret_file: missing-secret.txt\n");
    expect(
        &errors,
        "idp_client_secret_file",
        "cannot read file \"/nonexistent/missing-secret.txt\"",
    );
    let errors = parse_err("certificate_file: c.pem\ncertificate_key_file: k.pem\n");
    expect(&errors, "certificate_file", "c.pem");
    expect(&errors, "certificate_key_file", "k.pem");
}

#[test]
fn cookie_secret_must_be_32_bytes() {
    let errors = parse_err("insecure_server: true\ncookie_secret: AAECAwQFBgcICQoLDA0ODw==\n");
    let line = expect(
        &errors,
        "cookie_secret",
        "exactly 32 bytes, but decodes to 16",
    );
    assert_eq!(line, Some(2));
    assert!(
        !errors[0].message.contains("AAECA"),
        "the secret must not be echoed"
    );
    expect(
        &parse_err("insecure_server: true\ncookie_secret: '!!'\n"),
        "cookie_secret",
        "not base64",
    );
}

#[test]
fn tls_is_required_unless_insecure() {
    let errors = parse_err("address: :443\nroutes: []\n");
    expect(&errors, "certificates", "TLS needs a certificate");
    let errors = parse_err("certificate_file: c.pem\n");
    expect(&errors, "certificate_file", "needs certificate_key_file");
}

#[test]
fn inline_certificates_are_decoded() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let cert = b64("-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n");
    let key = b64("-----BEGIN RSA PRIVATE KEY-----\nAA\n-----END RSA PRIVATE KEY-----\n");
    let loaded = parse_ok(&format!(
        "certificate: {cert}\ncertificate_key: {key}\nroutes: []\n"
    ));
    assert_eq!(loaded.config.certificates[0].origin, "certificate");
    assert_eq!(loaded.config.address.to_string(), "0.0.0.0:443");
    let errors = parse_err(&format!("certificate: {key}\ncertificate_key: {key}\n"));
    expect(&errors, "certificate", "holds no PEM CERTIFICATE block");
}

#[test]
fn defaults_apply() {
    let loaded = parse_ok("insecure_server: true\n");
    let c = &loaded.config;
    assert_eq!(c.address.to_string(), "0.0.0.0:80");
    assert_eq!(c.shutdown_grace_period, Duration::from_secs(30));
    assert_eq!(c.request_header_timeout, Duration::from_secs(10));
    assert_eq!(c.default_upstream_timeout, Duration::from_secs(30));
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.identity.cookie_expire, Duration::from_secs(14 * 3600));
    assert_eq!(c.identity.session_store, SessionStoreUrl::Memory);
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].message.contains("no routes"));
}

#[test]
fn global_values_are_checked() {
    let text = "\
insecure_server: true
address: localhost
metrics_address: :99999
trusted_proxies: [10.0.0.0/33, not-an-ip]
shutdown_grace_period: 30
log_level: loud
access_log_fields: [method, query, status]
metrics_basic_auth: bm9jb2xvbg==
idp_provider: myidp
idp_scopes: [openid, '']
cookie_same_site: sometimes
session_store: mysql://db
authenticate_service_url: ftp://auth.example.com
downstream_mtls: {enforcement: strict}
policies_dir: no-such-dir
";
    let errors = parse_err(text);
    expect(&errors, "address", "invalid address");
    expect(&errors, "metrics_address", "invalid address");
    expect(&errors, "trusted_proxies[0]", "not an IP address or CIDR");
    expect(&errors, "trusted_proxies[1]", "not an IP address or CIDR");
    expect(
        &errors,
        "shutdown_grace_period",
        "missing unit in duration 30",
    );
    expect(&errors, "log_level", "unknown value \"loud\"");
    expect(&errors, "access_log_fields[1]", "unknown field \"query\"");
    expect(&errors, "metrics_basic_auth", "user:password");
    expect(&errors, "idp_provider", "use one of oidc, google");
    expect(&errors, "idp_scopes[1]", "empty entry in idp_scopes");
    expect(&errors, "cookie_same_site", "unknown value");
    expect(&errors, "session_store", "unsupported scheme \"mysql\"");
    expect(&errors, "authenticate_service_url", "unsupported scheme");
    expect(
        &errors,
        "downstream_mtls.enforcement",
        "policy_with_default_deny",
    );
    expect(&errors, "downstream_mtls", "needs ca_file or ca");
    expect(&errors, "policies_dir", "not a readable directory");
}

#[test]
fn signing_key_needs_a_private_key_block() {
    use base64::Engine as _;
    let cert = base64::engine::general_purpose::STANDARD
        .encode("-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n");
    let errors = parse_err(&format!("insecure_server: true\nsigning_key: {cert}\n"));
    expect(&errors, "signing_key", "holds no PEM PRIVATE KEY block");
}

#[test]
fn jwt_claims_headers_as_map_and_identity_providers() {
    let text = "\
insecure_server: true
jwt_claims_headers:
  X-Email: email
  X_Groups: groups
identity_providers:
  corp:
    issuer: https://idp.example.com
    jwks_url: https://idp.example.com/jwks
    audiences: [api]
  broken:
    jwks_url: not a url
";
    let errors = parse_err(text);
    expect(&errors, "jwt_claims_headers.X_Groups", "contains \"_\"");
    expect(&errors, "identity_providers.broken.issuer", "missing");
    expect(&errors, "identity_providers.broken.jwks_url", "invalid URL");
    expect(
        &errors,
        "identity_providers.broken.audiences",
        "at least one audience",
    );
    assert_eq!(errors.len(), 4, "{errors:#?}");
}

#[test]
fn problem_display_has_file_line_and_path() {
    let p = Problem {
        file: "config.yaml".into(),
        path: "routes[2].to[0]".into(),
        line: Some(14),
        message: "bad".into(),
    };
    assert_eq!(p.to_string(), "config.yaml:14: routes[2].to[0]: bad");
    let p = Problem {
        line: None,
        path: String::new(),
        ..p
    };
    assert_eq!(p.to_string(), "config.yaml: bad");
}

#[test]
fn line_index_falls_back_to_the_nearest_ancestor() {
    let index = LineIndex::build("a: 1\nroutes:\n  - from: x\n    to:\n      - y\n");
    assert_eq!(index.line_of("routes[0].to[0]"), Some(5));
    assert_eq!(index.line_of("routes[0].to[3]"), Some(4));
    assert_eq!(index.line_of("routes[0].nope.deeper"), Some(3));
    assert_eq!(index.line_of("a"), Some(1));
    assert_eq!(index.line_of("zzz"), None);
}
