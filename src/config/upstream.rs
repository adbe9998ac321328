//! Conversion of a proxying route's upstream side: `to`, balancing, health checks, rewrites,
//! header operations, timeouts and upstream TLS.

use std::time::Duration;

use super::{
    duration::Dur,
    file::{FileHealthCheck, FileHttpHealthCheck, FileStatusRange, Keyed, OneOrMany, Text},
    global::certificate_pair,
    problem::{index_path, key_path, Report},
    route::compile_regex,
    types::{
        HealthCheck, HealthCheckKind, LoadBalancingPolicy, ProxyAction, UpstreamScheme,
        UpstreamTls, UpstreamUrl,
    },
    values::{
        forbidden_to_set, header_name, header_value, host_and_port, indexed, one_of, Sources,
    },
};

/// The keys of a route that only mean something when it proxies (`to` is set).
#[derive(Debug)]
pub(super) struct ProxyKeys {
    pub(super) to: Option<OneOrMany>,
    pub(super) prefix_rewrite: Option<String>,
    pub(super) regex_rewrite_pattern: Option<String>,
    pub(super) regex_rewrite_substitution: Option<String>,
    pub(super) preserve_host_header: Option<bool>,
    pub(super) host_rewrite: Option<String>,
    pub(super) set_request_headers: Option<Keyed<Text>>,
    pub(super) remove_request_headers: Option<Vec<String>>,
    pub(super) set_response_headers: Option<Keyed<Text>>,
    pub(super) timeout: Option<Dur>,
    pub(super) idle_timeout: Option<Dur>,
    pub(super) allow_websockets: Option<bool>,
    pub(super) load_balancing_policy: Option<String>,
    pub(super) health_checks: Option<Vec<FileHealthCheck>>,
    pub(super) tls_skip_verify: Option<bool>,
    pub(super) tls_server_name: Option<String>,
    pub(super) tls_custom_ca_file: Option<String>,
    pub(super) tls_custom_ca: Option<String>,
    pub(super) tls_client_cert_file: Option<String>,
    pub(super) tls_client_key_file: Option<String>,
    pub(super) tls_client_cert: Option<String>,
    pub(super) tls_client_key: Option<String>,
}

const LB_POLICIES: &[(&str, LoadBalancingPolicy)] = &[
    ("ROUND_ROBIN", LoadBalancingPolicy::RoundRobin),
    ("RANDOM", LoadBalancingPolicy::Random),
    ("RING_HASH", LoadBalancingPolicy::RingHash),
    ("MAGLEV", LoadBalancingPolicy::Maglev),
    ("LEAST_REQUEST", LoadBalancingPolicy::LeastRequest),
];

/// Health-check defaults when a key is left out.
const HC_TIMEOUT: Duration = Duration::from_secs(5);
const HC_INTERVAL: Duration = Duration::from_secs(10);
const HC_HEALTHY: u32 = 1;
const HC_UNHEALTHY: u32 = 3;

// === impl ProxyKeys ===

impl ProxyKeys {
    /// The proxy-only keys that are set (besides `to`), to warn about on other routes.
    pub(super) fn set_keys(&self) -> Vec<&'static str> {
        let set = [
            ("prefix_rewrite", self.prefix_rewrite.is_some()),
            (
                "regex_rewrite_pattern",
                self.regex_rewrite_pattern.is_some(),
            ),
            (
                "regex_rewrite_substitution",
                self.regex_rewrite_substitution.is_some(),
            ),
            ("preserve_host_header", self.preserve_host_header.is_some()),
            ("host_rewrite", self.host_rewrite.is_some()),
            ("set_request_headers", self.set_request_headers.is_some()),
            (
                "remove_request_headers",
                self.remove_request_headers.is_some(),
            ),
            ("set_response_headers", self.set_response_headers.is_some()),
            ("timeout", self.timeout.is_some()),
            ("idle_timeout", self.idle_timeout.is_some()),
            ("allow_websockets", self.allow_websockets.is_some()),
            (
                "load_balancing_policy",
                self.load_balancing_policy.is_some(),
            ),
            ("health_checks", self.health_checks.is_some()),
            ("tls_skip_verify", self.tls_skip_verify.is_some()),
            ("tls_server_name", self.tls_server_name.is_some()),
            ("tls_custom_ca_file", self.tls_custom_ca_file.is_some()),
            ("tls_custom_ca", self.tls_custom_ca.is_some()),
            ("tls_client_cert_file", self.tls_client_cert_file.is_some()),
            ("tls_client_key_file", self.tls_client_key_file.is_some()),
            ("tls_client_cert", self.tls_client_cert.is_some()),
            ("tls_client_key", self.tls_client_key.is_some()),
        ];
        set.iter().filter(|(_, s)| *s).map(|(k, _)| *k).collect()
    }
}

/// Converts the proxy keys of route path `p`; None when any of them is invalid.
pub(super) fn build(
    p: &str,
    keys: ProxyKeys,
    default_timeout: Duration,
    sources: &Sources,
    report: &mut Report,
) -> Option<ProxyAction> {
    let k = |key: &str| key_path(p, key);
    let errors_before = report.error_count();
    let ProxyKeys {
        to,
        prefix_rewrite,
        regex_rewrite_pattern,
        regex_rewrite_substitution,
        preserve_host_header,
        host_rewrite,
        set_request_headers,
        remove_request_headers,
        set_response_headers,
        timeout,
        idle_timeout,
        allow_websockets,
        load_balancing_policy,
        health_checks,
        tls_skip_verify,
        tls_server_name,
        tls_custom_ca_file,
        tls_custom_ca,
        tls_client_cert_file,
        tls_client_key_file,
        tls_client_cert,
        tls_client_key,
    } = keys;

    let entries = to.map(|t| t.entries(&k("to"))).unwrap_or_default();
    if entries.is_empty() {
        report.error(&k("to"), "needs at least one upstream URL");
    }
    let to: Vec<UpstreamUrl> = entries
        .into_iter()
        .filter_map(|(path, raw)| report.check(&path, upstream_url(&raw)))
        .collect();

    let regex_rewrite = match (regex_rewrite_pattern, regex_rewrite_substitution) {
        (Some(pattern), Some(substitution)) => report
            .check(&k("regex_rewrite_pattern"), compile_regex(&pattern))
            .map(|re| (re, envoy_substitution(&substitution))),
        (Some(_), None) => {
            report.error(
                &k("regex_rewrite_pattern"),
                "needs regex_rewrite_substitution as well",
            );
            None
        }
        (None, Some(_)) => {
            report.error(
                &k("regex_rewrite_substitution"),
                "needs regex_rewrite_pattern as well",
            );
            None
        }
        (None, None) => None,
    };
    let preserve_host_header = preserve_host_header.unwrap_or(false);
    if preserve_host_header && host_rewrite.is_some() {
        report.error(
            &k("host_rewrite"),
            "set preserve_host_header or host_rewrite, not both",
        );
    }

    let client_cert = certificate_pair(
        sources,
        report,
        (&k("tls_client_cert"), tls_client_cert),
        (&k("tls_client_cert_file"), tls_client_cert_file),
        (&k("tls_client_key"), tls_client_key),
        (&k("tls_client_key_file"), tls_client_key_file),
    );
    if !tls_skip_verify.unwrap_or(false) && tls_server_name.is_none() {
        for (i, url) in to.iter().enumerate() {
            if url.scheme == UpstreamScheme::Https && url.host.parse::<std::net::IpAddr>().is_ok() {
                report.error(
                    &format!("{}[{i}]", k("to")),
                    "an https upstream given by IP address needs tls_server_name (a DNS name in \
                     its certificate) or tls_skip_verify; certificates are verified by name",
                );
            }
        }
    }
    let tls = UpstreamTls {
        skip_verify: tls_skip_verify.unwrap_or(false),
        server_name: tls_server_name
            .and_then(|n| report.check(&k("tls_server_name"), host_and_port(&n, false))),
        custom_ca_pem: sources.pem(
            report,
            "CERTIFICATE",
            (&k("tls_custom_ca"), tls_custom_ca),
            (&k("tls_custom_ca_file"), tls_custom_ca_file),
        ),
        client_cert,
    };

    let action = ProxyAction {
        to,
        load_balancing_policy: load_balancing_policy
            .and_then(|l| report.check(&k("load_balancing_policy"), one_of(&l, LB_POLICIES)))
            .unwrap_or_default(),
        health_check: health_checks.and_then(|h| health_check(&k("health_checks"), h, report)),
        prefix_rewrite: prefix_rewrite.and_then(|v| {
            let ok = v.starts_with('/');
            report.check(
                &k("prefix_rewrite"),
                if ok {
                    Ok(v)
                } else {
                    Err("must start with /".to_owned())
                },
            )
        }),
        regex_rewrite,
        preserve_host_header,
        host_rewrite: host_rewrite
            .and_then(|h| report.check(&k("host_rewrite"), host_and_port(&h, true))),
        set_request_headers: set_headers(
            &k("set_request_headers"),
            set_request_headers,
            true,
            report,
        ),
        remove_request_headers: indexed(
            &k("remove_request_headers"),
            remove_request_headers.unwrap_or_default(),
        )
        .into_iter()
        .filter_map(|(path, name)| report.check(&path, header_name(&name)))
        .collect(),
        set_response_headers: set_headers(
            &k("set_response_headers"),
            set_response_headers,
            false,
            report,
        ),
        timeout: timeout.map_or(default_timeout, |d| d.0),
        idle_timeout: idle_timeout.map_or(Duration::from_secs(300), |d| d.0),
        allow_websockets: allow_websockets.unwrap_or(false),
        tls,
    };
    (report.error_count() == errors_before).then_some(action)
}

/// One `to` entry: `scheme://host[:port][/path][,weight]`.
pub(super) fn upstream_url(raw: &str) -> Result<UpstreamUrl, String> {
    let (text, weight) = match raw.rsplit_once(',') {
        Some((url, weight)) => {
            let weight = weight.trim();
            let parsed = weight
                .parse::<u32>()
                .ok()
                .filter(|w| *w > 0)
                .ok_or_else(|| format!("weight {weight:?} must be a whole number of at least 1"))?;
            (url.trim(), parsed)
        }
        None => (raw.trim(), 1),
    };
    let (scheme_text, rest) = text
        .split_once("://")
        .ok_or_else(|| format!("{text:?} is not a URL (write e.g. http://10.0.0.5:8080)"))?;
    let scheme = match scheme_text.to_ascii_lowercase().as_str() {
        "http" => UpstreamScheme::Http,
        "https" => UpstreamScheme::Https,
        "h2c" => UpstreamScheme::H2c,
        other => {
            return Err(format!(
                "unsupported scheme {other:?} (use http, https or h2c)"
            ))
        }
    };
    // h2c is plain HTTP/2: parse it as http so the host and default port follow http's rules.
    let parse_as = match scheme {
        UpstreamScheme::Https => format!("https://{rest}"),
        UpstreamScheme::Http | UpstreamScheme::H2c => format!("http://{rest}"),
    };
    let url = url::Url::parse(&parse_as).map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in upstream URLs are not supported".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?} must not have a query or fragment"));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        _ => return Err(format!("{text:?} has no host")),
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let path = match url.path() {
        "/" | "" => String::new(),
        other => other.to_owned(),
    };
    Ok(UpstreamUrl {
        scheme,
        host,
        port,
        path,
        weight,
        raw: raw.to_owned(),
    })
}

fn set_headers(
    path: &str,
    headers: Option<Keyed<Text>>,
    request: bool,
    report: &mut Report,
) -> Vec<(http::HeaderName, http::HeaderValue)> {
    let mut out: Vec<(http::HeaderName, http::HeaderValue)> = Vec::new();
    for (name, Text(value)) in headers.map(|h| h.0).unwrap_or_default() {
        let entry = key_path(path, &name);
        let Some(header) = report.check(&entry, header_name(&name)) else {
            continue;
        };
        if let Some(reason) = forbidden_to_set(&header, request) {
            report.error(&entry, format!("{name} {reason}"));
            continue;
        }
        if out.iter().any(|(existing, _)| *existing == header) {
            report.error(&entry, format!("{name} is set twice"));
            continue;
        }
        if let Some(value) = report.check(&entry, header_value(&value)) {
            out.push((header, value));
        }
    }
    out
}

fn health_check(
    path: &str,
    mut list: Vec<FileHealthCheck>,
    report: &mut Report,
) -> Option<HealthCheck> {
    if list.len() > 1 {
        report.error(path, "only one health check per route is supported");
        return None;
    }
    let entry = list.pop()?;
    let p = index_path(path, 0);
    let k = |key: &str| key_path(&p, key);
    let FileHealthCheck {
        timeout,
        interval,
        healthy_threshold,
        unhealthy_threshold,
        http_health_check,
        tcp_health_check,
    } = entry;
    let mut positive = |key: &str, d: Option<Dur>, default: Duration| {
        let d = d.map_or(default, |d| d.0);
        if d.is_zero() {
            report.error(&k(key), "must be longer than 0");
        }
        d
    };
    let timeout = positive("timeout", timeout, HC_TIMEOUT);
    let interval = positive("interval", interval, HC_INTERVAL);
    let mut threshold = |key: &str, n: Option<u32>, default: u32| {
        let n = n.unwrap_or(default);
        if n == 0 {
            report.error(&k(key), "must be at least 1");
        }
        n
    };
    let healthy_threshold = threshold("healthy_threshold", healthy_threshold, HC_HEALTHY);
    let unhealthy_threshold = threshold("unhealthy_threshold", unhealthy_threshold, HC_UNHEALTHY);
    let kind = match (http_health_check, tcp_health_check) {
        (Some(http), None) => http_check(&k("http_health_check"), http, report),
        (None, Some(_)) => Some(HealthCheckKind::Tcp),
        (Some(_), Some(_)) => {
            report.error(&p, "set http_health_check or tcp_health_check, not both");
            None
        }
        (None, None) => {
            if !report.has_error_under(&p) {
                report.error(
                    &p,
                    "needs http_health_check: {path: …} or tcp_health_check: {}",
                );
            }
            None
        }
    };
    Some(HealthCheck {
        timeout,
        interval,
        healthy_threshold,
        unhealthy_threshold,
        kind: kind?,
    })
}

fn http_check(p: &str, file: FileHttpHealthCheck, report: &mut Report) -> Option<HealthCheckKind> {
    let FileHttpHealthCheck {
        path,
        expected_statuses,
    } = file;
    let path_key = key_path(p, "path");
    let path = match path {
        Some(path) if path.starts_with('/') => Some(path),
        Some(path) => {
            report.error(&path_key, format!("{path:?} must start with /"));
            None
        }
        None => {
            if !report.has_error_under(&path_key) {
                report.error(&path_key, "missing: the path to request (e.g. /healthz)");
            }
            None
        }
    };
    let mut ranges = Vec::new();
    for (i, range) in expected_statuses.into_iter().flatten().enumerate() {
        let FileStatusRange { start, end } = range;
        let rp = index_path(&key_path(p, "expected_statuses"), i);
        match (start, end) {
            (Some(start), Some(end))
                if (100..600).contains(&start) && start < end && end <= 600 =>
            {
                ranges.push((start, end))
            }
            (Some(start), Some(end)) => report.error(
                &rp,
                format!("invalid status range [{start}, {end}): need 100 ≤ start < end ≤ 600"),
            ),
            _ => report.error(
                &rp,
                "needs start and end (end excluded), e.g. {start: 200, end: 300}",
            ),
        }
    }
    if ranges.is_empty() {
        ranges.push((200, 300));
    }
    Some(HealthCheckKind::Http {
        path: path?,
        expected_statuses: ranges,
    })
}

/// Pomerium (through Envoy) writes capture references as `\1`; the regex crate as `${1}`.
/// A literal `$` must not start a reference, so it becomes `$$`.
fn envoy_substitution(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push_str("${");
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    out.push(d);
                    chars.next();
                }
                out.push('}');
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}
