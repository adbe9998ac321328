//! `gatehouse check -c FILE`: every problem with `FILE:LINE: key.path: message`, exit 1;
//! a good file exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::check_config as check;

/// The output line reporting `line` of `path`, which must name `key_path`.
fn line_for<'a>(out: &'a str, path: &std::path::Path, line: u32, key_path: &str) -> &'a str {
    let prefix = format!("{}:{line}: {key_path}", path.display());
    out.lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{out}"))
}

#[test]
fn errors_in_two_routes_are_all_reported_with_locations() {
    let yaml = "\
insecure_server: true
address: 127.0.0.1:8080
routes:
  - from: http://a.test
    to: http://127.0.0.1:9
    allow_public_unauthenticated_access: true
    bogus_key: 1
  - from: http://b.test
    regex: \"([unclosed\"
    to: http://127.0.0.1:9
    allow_public_unauthenticated_access: true
";
    let (code, out, path, _d) = check(yaml);
    assert_eq!(code, 1, "exit code; output:\n{out}");
    let unknown = line_for(&out, &path, 7, "routes[0]");
    assert!(
        unknown.contains("bogus_key"),
        "the unknown key is named: {unknown}"
    );
    line_for(&out, &path, 9, "routes[1].regex");
}

#[test]
fn semantic_errors_across_the_file_are_all_reported() {
    let yaml = "\
insecure_server: true
address: 127.0.0.1:8080
routes:
  - from: http://a.test
    to: ftp://127.0.0.1:9
    allow_public_unauthenticated_access: true
  - from: http://b.test
    to: http://127.0.0.1:9
    timeout: forever
    allow_public_unauthenticated_access: true
  - from: http://c.test
    to: http://127.0.0.1:9
    set_request_headers: {X-User: \"a\\r\\nX-Admin: 1\"}
    allow_public_unauthenticated_access: true
";
    let (code, out, path, _d) = check(yaml);
    assert_eq!(code, 1, "exit code; output:\n{out}");
    line_for(&out, &path, 5, "routes[0].to");
    line_for(&out, &path, 9, "routes[1].timeout");
    line_for(&out, &path, 13, "routes[2].set_request_headers");
}

#[test]
fn a_good_file_exits_0() {
    let yaml = "\
insecure_server: true
address: 127.0.0.1:8080
metrics_address: 127.0.0.1:9090
routes:
  - from: http://a.test
    prefix: /api
    to: [http://127.0.0.1:9, \"http://127.0.0.1:10,2\"]
    load_balancing_policy: LEAST_REQUEST
    timeout: 30s
    health_checks: [{timeout: 1s, interval: 5s, healthy_threshold: 1, unhealthy_threshold: 2, http_health_check: {path: /health}}]
    allow_public_unauthenticated_access: true
  - from: http://*.b.test
    regex: \"^/v[0-9]+/.*$\"
    to: https://backend.internal:9
    allow_websockets: true
    allow_public_unauthenticated_access: true
";
    let (code, out, _, _d) = check(yaml);
    assert_eq!(code, 0, "output:\n{out}");
}

#[test]
fn missing_file_exits_1() {
    let out = Command::new(support::binary())
        .args(["check", "-c", "/nonexistent/gatehouse.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn https_upstream_by_ip_needs_a_server_name() {
    // Certificates are verified by DNS name; an IP literal without tls_server_name would
    // otherwise fail every handshake (or tempt users into tls_skip_verify silently).
    let yaml = "insecure_server: true
address: 127.0.0.1:1
routes:
  - from: http://a.test
    to: https://127.0.0.1:8443
    allow_public_unauthenticated_access: true
";
    let (code, out, _, _d) = check(yaml);
    assert_eq!(code, 1, "output:\n{out}");
    assert!(
        out.contains("routes[0].to") && out.contains("tls_server_name"),
        "{out}"
    );
}
