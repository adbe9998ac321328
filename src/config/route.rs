//! Conversion of one `routes[i]` entry: what it matches, what it does, who may use it.

use std::time::Duration;

mod action;

use regex::Regex;
use serde_yaml::Value;

use super::{
    file::{FileRedirect, FileResponse, FileRoute},
    problem::{index_path, key_path, Report},
    types::{Access, FromUrl, HostPattern, PathMatch, PolicySource, Route, RouteAction},
    upstream::{self, ProxyKeys},
    values::{indexed, non_empty_entries, Sources},
};

/// Global settings a route falls back on.
#[derive(Debug, Clone)]
pub(super) struct RouteDefaults {
    /// `default_upstream_timeout`.
    pub(super) upstream_timeout: Duration,
    /// Whether named policies can be looked up (or `policies_dir` was already reported).
    pub(super) has_policies_dir: bool,
}

/// Converts route `index`; None when it has errors (all of them recorded in `report`).
pub(super) fn build(
    index: usize,
    file: FileRoute,
    defaults: &RouteDefaults,
    sources: &Sources,
    report: &mut Report,
) -> Option<Route> {
    let p = index_path("routes", index);
    let k = |key: &str| key_path(&p, key);
    let errors_before = report.error_count();
    let FileRoute {
        from,
        prefix,
        path,
        regex,
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
        allow_public_unauthenticated_access,
        allow_any_authenticated_user,
        allowed_users,
        allowed_domains,
        allowed_groups,
        policy,
        pass_identity_headers,
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
        redirect,
        response,
        show_error_details,
        allow_path_parameters,
        id,
        name,
        description,
        logo_url,
    } = file;

    let from_text = from.clone().unwrap_or_default();
    let from = match from {
        Some(text) => report.check(&k("from"), from_url(&text)),
        None => {
            if !report.has_error_under(&k("from")) {
                report.error(
                    &k("from"),
                    "missing: every route needs from (e.g. https://app.example.com)",
                );
            }
            None
        }
    };
    let (path_match, matcher_text) = path_match(&p, prefix, path, regex, report);

    let proxy_keys = ProxyKeys {
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
    };
    let action = action(
        &p, proxy_keys, redirect, response, defaults, sources, report,
    );

    let list = |report: &mut Report, key: &str, items: Option<Vec<String>>| {
        let path = k(key);
        non_empty_entries(report, &path, indexed(&path, items.unwrap_or_default()))
    };
    let access = Access {
        allow_public_unauthenticated_access: allow_public_unauthenticated_access.unwrap_or(false),
        allow_any_authenticated_user: allow_any_authenticated_user.unwrap_or(false),
        allowed_users: list(report, "allowed_users", allowed_users),
        allowed_domains: list(report, "allowed_domains", allowed_domains),
        allowed_groups: list(report, "allowed_groups", allowed_groups),
        policy: policy.and_then(|v| policy_source(v, &k("policy"), defaults, report)),
        pass_identity_headers,
        compiled: Default::default(),
    };
    check_access(&p, &access, report);

    let name = name
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| format!("{from_text}{matcher_text}"));
    if report.error_count() > errors_before {
        return None;
    }
    Some(Route {
        index,
        name,
        id,
        description,
        logo_url,
        from: from?,
        path: path_match?,
        action: action?,
        access,
        show_error_details: show_error_details.unwrap_or(false),
        allow_path_parameters: allow_path_parameters.unwrap_or(false),
    })
}

fn action(
    p: &str,
    proxy: ProxyKeys,
    redirect: Option<FileRedirect>,
    response: Option<FileResponse>,
    defaults: &RouteDefaults,
    sources: &Sources,
    report: &mut Report,
) -> Option<RouteAction> {
    let has_to = proxy.to.is_some();
    if !has_to {
        for key in proxy.set_keys() {
            report.warn(&key_path(p, key), "ignored: this route has no to");
        }
    }
    match (has_to, redirect, response) {
        (true, None, None) => upstream::build(p, proxy, defaults.upstream_timeout, sources, report)
            .map(|a| RouteAction::Proxy(Box::new(a))),
        (false, Some(redirect), None) => {
            action::redirect(&key_path(p, "redirect"), redirect, report).map(RouteAction::Redirect)
        }
        (false, None, Some(response)) => {
            action::response(&key_path(p, "response"), response, report).map(RouteAction::Response)
        }
        (false, None, None) => {
            let failed = ["to", "redirect", "response"]
                .iter()
                .any(|key| report.has_error_under(&key_path(p, key)));
            if !failed {
                report.error(p, "needs one of to, redirect or response");
            }
            None
        }
        _ => {
            report.error(p, "set only one of to, redirect or response");
            None
        }
    }
}

/// `from: scheme://host[:port]`, host possibly `*.example.com`, no path.
pub(super) fn from_url(raw: &str) -> Result<FromUrl, String> {
    let text = raw.trim();
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| format!("{raw:?} is not a URL (write e.g. https://app.example.com)"))?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "https" => true,
        "http" => false,
        other => return Err(format!("unsupported scheme {other:?} (use http or https)")),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if !tail.is_empty() && tail != "/" {
        return Err(
            "from must not have a path, query or fragment (use prefix, path or regex)".to_owned(),
        );
    }
    if authority.contains('@') {
        return Err("from must not contain user information".to_owned());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("invalid port {port:?}"))?;
            (host, Some(port))
        }
        _ => (authority, None),
    };
    let host = host.to_ascii_lowercase();
    if let Some(domain) = host.strip_prefix("*.") {
        match url::Host::parse(domain) {
            Ok(url::Host::Domain(d)) if !d.contains('*') => {
                return Ok(FromUrl {
                    https,
                    host: HostPattern::Wildcard(format!(".{d}")),
                    port,
                })
            }
            _ => {
                return Err(format!(
                    "invalid wildcard host {host:?} (write e.g. *.example.com)"
                ))
            }
        }
    }
    if host.contains('*') {
        return Err(format!(
            "{host:?}: a wildcard must be the whole leftmost label (*.example.com)"
        ));
    }
    let host = match url::Host::parse(&host) {
        Ok(url::Host::Ipv6(addr)) => addr.to_string(),
        Ok(parsed) if !host.is_empty() => parsed.to_string(),
        _ => return Err(format!("invalid host {host:?}")),
    };
    Ok(FromUrl {
        https,
        host: HostPattern::Exact(host),
        port,
    })
}

/// `prefix` | `path` | `regex`, with the text used in the default route name.
fn path_match(
    p: &str,
    prefix: Option<String>,
    path: Option<String>,
    regex: Option<String>,
    report: &mut Report,
) -> (Option<PathMatch>, String) {
    let set = [prefix.is_some(), path.is_some(), regex.is_some()];
    if set.iter().filter(|s| **s).count() > 1 {
        report.error(p, "set at most one of prefix, path or regex");
        return (None, String::new());
    }
    if let Some(prefix) = prefix {
        let checked = canonical_path(&prefix).map(|()| {
            let trimmed = prefix.trim_end_matches('/');
            PathMatch::Prefix(if trimmed.is_empty() {
                "/".to_owned()
            } else {
                trimmed.to_owned()
            })
        });
        return (report.check(&key_path(p, "prefix"), checked), prefix);
    }
    if let Some(path) = path {
        let checked = canonical_path(&path).map(|()| PathMatch::Exact(path.clone()));
        return (report.check(&key_path(p, "path"), checked), path);
    }
    if let Some(regex) = regex {
        let compiled = compile_regex(&format!("^(?:{regex})$")).map(PathMatch::Regex);
        return (
            report.check(&key_path(p, "regex"), compiled),
            format!(" ~{regex}"),
        );
    }
    (Some(PathMatch::Any), String::new())
}

/// A regex, with the regex crate's multi-line message cut to its last line.
pub(super) fn compile_regex(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| {
        let text = e.to_string();
        let reason = text
            .lines()
            .last()
            .unwrap_or("")
            .trim_start_matches("error: ");
        format!("invalid regex: {reason}")
    })
}

/// A path as gatehouse's canonicalization leaves it: starts with `/`, no empty, `.` or `..`
/// segments, no query or fragment. A matcher that is not canonical could never match.
fn canonical_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with /"));
    }
    if path.contains(['?', '#']) || path.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!(
            "{path:?} must be a path only (no query, fragment, spaces)"
        ));
    }
    let inner = path.trim_end_matches('/');
    if inner.len() > 1
        && inner[1..]
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(format!(
            "{path:?} is not canonical (no //, /./ or /../); it would never match"
        ));
    }
    Ok(())
}

fn policy_source(
    value: Value,
    path: &str,
    defaults: &RouteDefaults,
    report: &mut Report,
) -> Option<PolicySource> {
    match value {
        Value::Mapping(_) | Value::Sequence(_) => Some(PolicySource::Inline(value)),
        Value::String(name) => {
            let name = name.strip_suffix(".yaml").unwrap_or(&name).to_owned();
            let valid = !name.is_empty()
                && !name.starts_with('.')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !valid {
                report.error(
                    path,
                    format!("{name:?} is not a policy file name (letters, digits, - _ .)"),
                );
                None
            } else if !defaults.has_policies_dir {
                report.error(path, "names a policy file, but policies_dir is not set");
                None
            } else {
                Some(PolicySource::Named(name))
            }
        }
        _ => {
            report.error(
                path,
                "expected an inline policy (mapping or list) or the name of a file in policies_dir",
            );
            None
        }
    }
}

fn check_access(p: &str, access: &Access, report: &mut Report) {
    let Access {
        allow_public_unauthenticated_access: public,
        allow_any_authenticated_user: any_user,
        allowed_users,
        allowed_domains,
        allowed_groups,
        policy,
        pass_identity_headers: _,
        compiled: _,
    } = access;
    let others = *any_user
        || !allowed_users.is_empty()
        || !allowed_domains.is_empty()
        || !allowed_groups.is_empty()
        || policy.is_some();
    if *public && others {
        report.error(
            &key_path(p, "allow_public_unauthenticated_access"),
            "a public route cannot also have user rules (they would never be consulted)",
        );
    }
    let rule_failed = [
        "allowed_users",
        "allowed_domains",
        "allowed_groups",
        "policy",
    ]
    .iter()
    .any(|key| report.has_error_under(&key_path(p, key)));
    if !*public && !others && !rule_failed {
        report.warn(
            p,
            "no access rule (allow_public_unauthenticated_access, allow_any_authenticated_user, \
             allowed_users, allowed_domains, allowed_groups or policy): every request is denied",
        );
    }
}
