//! `session_store` values through the public entry points: which are accepted, and that a
//! rejected one never echoes its password.

use super::super::{open, validate_url, StoreError, StoreOptions};

/// Accepted by `validate_url`.
const VALID: &[&str] = &[
    "memory",
    "redis://localhost",
    "redis://127.0.0.1:6379",
    "redis://127.0.0.1:6379/3",
    "redis://user:pa%40ss@redis.internal:6380/0",
    "redis://:onlypass@[::1]:6379",
    "rediss://redis.internal:6380",
    "rediss://redis.internal?tls_skip_verify=true",
    "REDISS://redis.internal?skip_verify=1",
    "unix:///run/redis/redis.sock?db=2",
    "redis+sentinel://s1:26379,s2:26379,s3/mymaster",
    "redis+sentinel://:sentinelpw@s1/mymaster/4?password=masterpw&username=app",
    "rediss+sentinel://s1:26379/mymaster",
    "redis-sentinels://s1:26379/mymaster",
    "redis+cluster://n1:6379,n2:6379,n3",
    "redis+cluster://user:pw@n1:6379/",
    "rediss+cluster://n1:6379?tls_skip_verify=true",
    "redis-clusters://n1:6379",
    // Pomerium's pool tuning is accepted (and ignored).
    "redis://localhost:6379?dial_timeout=5s&pool_size=10",
    "redis+cluster://n1?max_redirects=3&read_only=true",
];

/// Rejected, with a `Config` error naming the problem.
const INVALID: &[(&str, &str)] = &[
    ("", "expected"),
    ("memory2", "expected"),
    ("localhost:6379", "expected"),
    ("http://localhost", "unsupported scheme"),
    ("redis://", "missing host"),
    ("redis://host:0", "invalid port"),
    ("redis://host:99999", "invalid port"),
    ("redis://host:port", "invalid port"),
    ("redis://host/abc", "database"),
    ("redis://host/-1", "database"),
    ("redis://h1,h2", "several hosts"),
    ("redis://0.0.0.0", "wildcard"),
    ("redis://host#frag", "fragment"),
    ("redis://host?tls_skip_verify=true", "needs a TLS scheme"),
    ("redis://host?tls_ca_file=/x", "needs a TLS scheme"),
    ("rediss://host?tls_skip_verify=maybe", "true or false"),
    (
        "redis://host?unknown_param=1",
        "unknown query parameter \"unknown_param\"",
    ),
    ("redis://host?pool_size=1&pool_size=2", "given twice"),
    ("redis://[::1", "unclosed"),
    ("redis://[nothex]:6379", "IPv6"),
    ("redis://us%er:pw@host", "percent-encoding"),
    ("redis+sentinel://s1:26379", "master name"),
    ("redis+sentinel://s1:26379/", "master name"),
    ("redis+sentinel://s1/my$master", "master name"),
    ("redis+sentinel://s1/mymaster/x", "database"),
    ("redis+sentinel://s1/mymaster/1/2", "/MASTER[/db]"),
    ("redis+cluster://n1/1", "no path"),
    ("redis+sentinel+cluster://n1/m", "not supported"),
    ("unix://host/sock", "path, not a host"),
];

/// Accepted by `open` too; loopback addresses only, so the background connection attempts
/// (refused) need no DNS.
const OPENABLE: &[&str] = &[
    "memory",
    "redis://127.0.0.1:1/2",
    "rediss://:pw@127.0.0.1:1?tls_skip_verify=true",
    "redis://[::1]:1",
    "unix:///nonexistent/gatehouse-test.sock",
    "redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster",
    "redis+cluster://127.0.0.1:1,127.0.0.1:2",
];

#[test]
fn valid_urls_are_accepted() {
    for url in VALID {
        validate_url(url).unwrap_or_else(|error| panic!("{url}: {error}"));
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _inside = runtime.enter();
    for url in OPENABLE {
        validate_url(url).unwrap_or_else(|error| panic!("{url}: {error}"));
        let store =
            open(url, StoreOptions::default()).unwrap_or_else(|error| panic!("{url}: {error}"));
        let expected = if *url == "memory" { "memory" } else { "redis" };
        assert_eq!(store.kind(), expected, "{url}");
    }
}

#[test]
fn invalid_urls_are_config_errors() {
    for (url, expected) in INVALID {
        match validate_url(url) {
            Err(StoreError::Config(message)) => assert!(
                message.contains(expected),
                "{url}: message {message:?} does not mention {expected:?}"
            ),
            other => panic!("{url}: expected a Config error, got {other:?}"),
        }
    }
}

#[test]
fn errors_never_contain_the_password() {
    let secret = "Sup3rS3cretPw";
    let cases = [
        format!("redis://user:{secret}@host:99999"),
        format!("redis://:{secret}@host/notadb"),
        format!("redis://:{secret}@h1,h2"),
        format!("redis://user:{secret}@host?bogus=1"),
        format!("redis://user:{secret}host:6379"),
        format!("redis://user:{secret}/@host:6379"),
        format!("redis+sentinel://:{secret}@s1:26379"),
        format!("redis+sentinel://s1:26379/mymaster?password={secret}&bogus=1"),
        format!("redis+sentinel://s1:26379/mymaster?{secret}=1"),
        format!("redis+cluster://:{secret}@n1/2"),
        format!("redis://user:{secret}@host#x"),
    ];
    for url in &cases {
        let error = validate_url(url).expect_err(url);
        let shown = format!("{error} {error:?}");
        assert!(
            !shown.contains(secret),
            "{url}: password leaked in {shown:?}"
        );
        assert!(matches!(error, StoreError::Config(_)), "{url}: {error:?}");
    }
}

#[test]
fn a_missing_ca_file_is_a_config_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _inside = runtime.enter();
    let result = open(
        "rediss://host?tls_ca_file=/nonexistent/gatehouse-ca.pem",
        StoreOptions::default(),
    );
    assert!(matches!(result, Err(StoreError::Config(message)) if message.contains("tls_ca_file")));
}
