//! Route-level validation rules.

use super::{expect, parse_err, parse_ok, with_route};
use crate::config::*;

fn proxy(loaded: &Loaded) -> &ProxyAction {
    match &loaded.config.routes[0].action {
        RouteAction::Proxy(p) => p,
        other => panic!("not a proxy route: {other:?}"),
    }
}

#[test]
fn from_urls() {
    let route = |from: &str| {
        let text = format!(
            "insecure_server: true\nroutes:\n  - from: {from}\n    to: http://u\n    \
             allow_public_unauthenticated_access: true\n"
        );
        parse(&text, std::path::Path::new("."), "c.yaml").map(|l| l.config.routes[0].from.clone())
    };
    let f = route("https://App.Example.com:8443").unwrap();
    assert_eq!(
        (f.https, f.host, f.port),
        (
            true,
            HostPattern::Exact("app.example.com".into()),
            Some(8443)
        )
    );
    let f = route("http://*.Example.com").unwrap();
    assert_eq!(
        (f.https, f.host, f.port),
        (false, HostPattern::Wildcard(".example.com".into()), None)
    );
    let f = route("https://[::1]:443").unwrap();
    assert_eq!(
        (f.host, f.port),
        (HostPattern::Exact("::1".into()), Some(443))
    );
    for bad in [
        "ftp://a.example.com",
        "https://a.example.com/path",
        "a.example.com",
        "https://a.*.com",
        "https://x@a.com",
    ] {
        let errors = route(bad).unwrap_err().problems;
        assert_eq!(errors[0].path, "routes[0].from", "{bad}: {errors:?}");
    }
}

#[test]
fn upstream_urls_and_weights() {
    let loaded = parse_ok(&with_route(
        "    to: [\"https://backend.internal/app/\", \"http://[::1]:9000,7\"]\n",
    ));
    let to = &proxy(&loaded).to;
    assert_eq!(
        (to[0].scheme, to[0].port, to[0].path.as_str()),
        (UpstreamScheme::Https, 443, "/app/")
    );
    assert_eq!(
        (to[1].host.as_str(), to[1].port, to[1].weight),
        ("::1", 9000, 7)
    );
    let errors = parse_err(&with_route(
        "    to:\n      - http://a:1,0\n      - http://b:1,heavy\n      - http://c:1?x=1\n",
    ));
    expect(&errors, "routes[0].to[0]", "weight \"0\"");
    expect(&errors, "routes[0].to[1]", "weight \"heavy\"");
    expect(&errors, "routes[0].to[2]", "query");
    expect(
        &parse_err(&with_route("    to: []\n")),
        "routes[0].to",
        "at least one",
    );
}

#[test]
fn header_rules() {
    let text = with_route(
        "    to: http://u\n    set_request_headers:\n      X-User: \"a\\r\\nX-Admin: 1\"\n      \
         X_Forwarded: x\n      Host: evil\n      Connection: close\n      Transfer-Encoding: chunked\n      \
         X-Gatehouse-Jwt-Assertion: forged\n      Bad Header: v\n      X-Nul: \"a\\0b\"\n    \
         set_response_headers:\n      Content-Length: \"5\"\n      X-Frame-Options: DENY\n    \
         remove_request_headers: [X-Ok, Under_Score]\n",
    );
    let errors = parse_err(&text);
    expect(
        &errors,
        "routes[0].set_request_headers.X-User",
        "CR, LF or NUL",
    );
    expect(
        &errors,
        "routes[0].set_request_headers.X_Forwarded",
        "contains \"_\"",
    );
    expect(
        &errors,
        "routes[0].set_request_headers.Host",
        "host_rewrite",
    );
    expect(
        &errors,
        "routes[0].set_request_headers.Connection",
        "hop-by-hop",
    );
    expect(
        &errors,
        "routes[0].set_request_headers.Transfer-Encoding",
        "hop-by-hop",
    );
    expect(
        &errors,
        "routes[0].set_request_headers.X-Gatehouse-Jwt-Assertion",
        "reserved",
    );
    expect(
        &errors,
        "routes[0].set_request_headers.Bad Header",
        "invalid header name",
    );
    expect(
        &errors,
        "routes[0].set_request_headers.X-Nul",
        "CR, LF or NUL",
    );
    expect(
        &errors,
        "routes[0].set_response_headers.Content-Length",
        "cannot be set",
    );
    expect(
        &errors,
        "routes[0].remove_request_headers[1]",
        "contains \"_\"",
    );
    assert_eq!(errors.len(), 10, "{errors:#?}");
}

#[test]
fn empty_allow_list_entries_are_errors() {
    let text = "insecure_server: true\nroutes:\n  - from: https://a.example.com\n    to: http://u\n    \
                allowed_users: [\"\"]\n    allowed_domains: [example.com, \" \"]\n    allowed_groups: [\"\"]\n";
    let errors = parse_err(text);
    expect(
        &errors,
        "routes[0].allowed_users[0]",
        "empty entry in allowed_users",
    );
    expect(
        &errors,
        "routes[0].allowed_domains[1]",
        "empty entry in allowed_domains",
    );
    expect(&errors, "routes[0].allowed_groups[0]", "empty entry");
}

#[test]
fn path_matchers() {
    let errors = parse_err(&with_route("    to: http://u\n    regex: \"/a/(b\"\n"));
    expect(&errors, "routes[0].regex", "invalid regex: unclosed group");
    let errors = parse_err(&with_route(
        "    to: http://u\n    prefix: /a\n    path: /b\n",
    ));
    expect(&errors, "routes[0]", "at most one of prefix, path or regex");
    let errors = parse_err(&with_route("    to: http://u\n    prefix: api\n"));
    expect(&errors, "routes[0].prefix", "must start with /");
    let errors = parse_err(&with_route("    to: http://u\n    path: /a/../b\n"));
    expect(&errors, "routes[0].path", "not canonical");
    let loaded = parse_ok(&with_route("    to: http://u\n    regex: /a/[0-9]+\n"));
    let PathMatch::Regex(re) = &loaded.config.routes[0].path else {
        panic!("regex")
    };
    assert!(re.is_match("/a/12") && !re.is_match("/a/12/x") && !re.is_match("/x/a/1"));
    let loaded = parse_ok(&with_route("    to: http://u\n    prefix: /\n"));
    assert!(matches!(&loaded.config.routes[0].path, PathMatch::Prefix(p) if p == "/"));
}

#[test]
fn rewrites_and_tls() {
    let errors = parse_err(&with_route(
        "    to: http://u\n    regex_rewrite_pattern: \"^/old/(.*)\"\n    preserve_host_header: true\n    \
         host_rewrite: x.internal\n    prefix_rewrite: nope\n    tls_client_cert_file: c.pem\n    \
         tls_custom_ca_file: ca.pem\n    tls_custom_ca: abc\n",
    ));
    expect(
        &errors,
        "routes[0].regex_rewrite_pattern",
        "needs regex_rewrite_substitution",
    );
    expect(&errors, "routes[0].host_rewrite", "not both");
    expect(&errors, "routes[0].prefix_rewrite", "must start with /");
    expect(
        &errors,
        "routes[0].tls_client_cert_file",
        "needs routes[0].tls_client_key_file",
    );
    expect(
        &errors,
        "routes[0].tls_custom_ca_file",
        "set tls_custom_ca or tls_custom_ca_file, not both",
    );
    let loaded = parse_ok(&with_route(
        "    to: http://u\n    regex_rewrite_pattern: \"^/old/(.*)\"\n    regex_rewrite_substitution: /new/$1\n    \
         timeout: 0\n    idle_timeout: 1h\n",
    ));
    let p = proxy(&loaded);
    assert!(p.regex_rewrite.is_some());
    assert_eq!(p.timeout, std::time::Duration::ZERO);
    assert_eq!(p.idle_timeout, std::time::Duration::from_secs(3600));
}

#[test]
fn exactly_one_action() {
    let errors = parse_err(&with_route(""));
    expect(
        &errors,
        "routes[0]",
        "needs one of to, redirect or response",
    );
    let errors = parse_err(&with_route(
        "    to: http://u\n    response: {status: 204}\n",
    ));
    expect(&errors, "routes[0]", "only one of to, redirect or response");
    let loaded = parse_ok(&with_route(
        "    response: {status: 204}\n    timeout: 5s\n",
    ));
    assert_eq!(loaded.warnings[0].path, "routes[0].timeout");
    assert!(loaded.warnings[0].message.contains("ignored"));
}

#[test]
fn redirect_and_response_codes() {
    let errors = parse_err(&with_route(
        "    redirect: {host_redirect: b.example.com, response_code: 200}\n",
    ));
    expect(
        &errors,
        "routes[0].redirect.response_code",
        "301, 302, 303, 307 or 308",
    );
    let errors = parse_err(&with_route("    redirect: {strip_query: false}\n"));
    expect(&errors, "routes[0].redirect", "loop");
    let errors = parse_err(&with_route(
        "    redirect: {https_redirect: true, scheme_redirect: http}\n",
    ));
    expect(&errors, "routes[0].redirect.scheme_redirect", "not both");
    for status in ["199", "600"] {
        let errors = parse_err(&with_route(&format!(
            "    response: {{status: {status}}}\n"
        )));
        expect(&errors, "routes[0].response.status", "200–599");
    }
    expect(
        &parse_err(&with_route("    response: {body: hi}\n")),
        "routes[0].response.status",
        "missing",
    );
    let loaded = parse_ok(&with_route("    redirect: {https_redirect: true}\n"));
    let RouteAction::Redirect(r) = &loaded.config.routes[0].action else {
        panic!("redirect")
    };
    assert_eq!((r.https_redirect, r.response_code), (true, 301));
}

#[test]
fn health_checks() {
    let errors = parse_err(&with_route(
        "    to: http://u\n    health_checks:\n      - interval: 0\n        healthy_threshold: 0\n        \
         http_health_check: {path: health, expected_statuses: [{start: 300, end: 200}]}\n",
    ));
    expect(
        &errors,
        "routes[0].health_checks[0].interval",
        "longer than 0",
    );
    expect(
        &errors,
        "routes[0].health_checks[0].healthy_threshold",
        "at least 1",
    );
    expect(
        &errors,
        "routes[0].health_checks[0].http_health_check.path",
        "must start with /",
    );
    expect(
        &errors,
        "routes[0].health_checks[0].http_health_check.expected_statuses[0]",
        "invalid status range",
    );
    let errors = parse_err(&with_route(
        "    to: http://u\n    health_checks: [{timeout: 1s}]\n",
    ));
    expect(
        &errors,
        "routes[0].health_checks[0]",
        "needs http_health_check",
    );
    let loaded = parse_ok(&with_route(
        "    to: http://u\n    health_checks: [{tcp_health_check: {}}]\n",
    ));
    let hc = proxy(&loaded).health_check.clone().unwrap();
    assert!(matches!(hc.kind, HealthCheckKind::Tcp));
    assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (1, 3));
    let loaded = parse_ok(&with_route(
        "    to: http://u\n    health_checks: [{http_health_check: {path: /h}}]\n",
    ));
    let hc = proxy(&loaded).health_check.clone().unwrap();
    assert!(
        matches!(hc.kind, HealthCheckKind::Http { ref expected_statuses, .. } if expected_statuses == &[(200, 300)])
    );
}

#[test]
fn access_rules_and_policies() {
    let base =
        "insecure_server: true\nroutes:\n  - from: https://a.example.com\n    to: http://u\n";
    let loaded = parse_ok(base);
    assert_eq!(loaded.warnings[0].path, "routes[0]");
    assert!(loaded.warnings[0]
        .message
        .contains("every request is denied"));
    let errors = parse_err(&format!("{base}    policy: admins\n"));
    expect(&errors, "routes[0].policy", "policies_dir is not set");
    let errors = parse_err(&format!("{base}    policy: ../etc/passwd\n"));
    expect(&errors, "routes[0].policy", "not a policy file name");
    let errors = parse_err(&format!("{base}    policy: 42\n"));
    expect(&errors, "routes[0].policy", "inline policy");
    let errors = parse_err(&format!(
        "{base}    allow_public_unauthenticated_access: true\n    allowed_groups: [admins]\n"
    ));
    expect(
        &errors,
        "routes[0].allow_public_unauthenticated_access",
        "public route",
    );
    let loaded = parse_ok(&format!(
        "{base}    policy: [{{allow: {{and: [{{email: {{is: a@b.c}}}}]}}}}]\n    name: app\n"
    ));
    let route = &loaded.config.routes[0];
    assert!(matches!(route.access.policy, Some(PolicySource::Inline(_))));
    assert_eq!(route.name, "app");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn broken_routes_do_not_hide_others() {
    let text = "insecure_server: true\nroutes:\n  - just a string\n  - from: https://b.example.com\n    \
                to: http://u\n    load_balancing_policy: FASTEST\n    allow_websockets: sometimes\n";
    let errors = parse_err(text);
    assert_eq!(expect(&errors, "routes[0]", "must be a mapping"), Some(3));
    assert_eq!(
        expect(&errors, "routes[1].load_balancing_policy", "ROUND_ROBIN"),
        Some(6)
    );
    assert_eq!(
        expect(&errors, "routes[1].allow_websockets", "boolean"),
        Some(7)
    );
}

#[test]
fn default_route_name_and_metadata() {
    let loaded = parse_ok(&with_route(
        "    to: http://u\n    prefix: /api\n    id: r1\n    description: d\n    logo_url: https://l/x.png\n",
    ));
    let r = &loaded.config.routes[0];
    assert_eq!(r.name, "https://app.example.com/api");
    assert_eq!(
        (r.id.as_deref(), r.description.as_deref()),
        (Some("r1"), Some("d"))
    );
}
