//! Conversion of the top level of a file: listeners, TLS, timeouts, mTLS, and the routes.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use ipnet::IpNet;

use crate::access_log::{Field, DEFAULT_FIELDS};
use serde_yaml::Value;

use super::{
    collect::deserialize_all,
    file::{FileCertificate, FileConfig, FileDownstreamMtls, FileRoute},
    identity,
    problem::{index_path, key_path, Report},
    route::{self, RouteDefaults},
    types::{BasicAuth, CertificatePair, Config, DownstreamMtls, LogLevel, MtlsEnforcement},
    values::{inline_pem, one_of, socket_addr, Sources},
};

const LOG_LEVELS: &[(&str, LogLevel)] = &[
    ("error", LogLevel::Error),
    ("warn", LogLevel::Warn),
    ("info", LogLevel::Info),
    ("debug", LogLevel::Debug),
    ("trace", LogLevel::Trace),
];

const ENFORCEMENTS: &[(&str, MtlsEnforcement)] = &[
    (
        "policy_with_default_deny",
        MtlsEnforcement::PolicyWithDefaultDeny,
    ),
    ("policy", MtlsEnforcement::Policy),
    ("reject_connection", MtlsEnforcement::RejectConnection),
];

/// Converts the file struct into the typed config, recording every problem in `report`.
/// The returned config is only meaningful when `report` holds no errors.
pub(super) fn build(file: FileConfig, sources: &Sources, report: &mut Report) -> Config {
    let FileConfig {
        address,
        insecure_server,
        http_redirect_addr,
        certificates,
        certificate_file,
        certificate_key_file,
        certificate,
        certificate_key,
        metrics_address,
        threads,
        shutdown_grace_period,
        timeout_idle,
        request_header_timeout,
        default_upstream_timeout,
        trusted_proxies,
        downstream_mtls,
        policies_dir,
        log_level,
        access_log_fields,
        metrics_basic_auth,
        authenticate_service_url,
        idp_provider,
        idp_provider_url,
        idp_client_id,
        idp_client_secret,
        idp_client_secret_file,
        idp_scopes,
        cookie_name,
        cookie_secret,
        cookie_secret_file,
        cookie_expire,
        cookie_domain,
        cookie_same_site,
        session_store,
        signing_key,
        signing_key_file,
        pass_identity_headers,
        jwt_claims_headers,
        identity_providers,
        programmatic_redirect_domain_whitelist,
        routes,
    } = file;

    let insecure_server = insecure_server.unwrap_or(false);
    let default_address = SocketAddr::new(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        if insecure_server { 80 } else { 443 },
    );
    let address = address
        .and_then(|a| report.check("address", socket_addr(&a)))
        .unwrap_or(default_address);
    let http_redirect_addr =
        http_redirect_addr.and_then(|a| report.check("http_redirect_addr", socket_addr(&a)));
    let metrics_address =
        metrics_address.and_then(|a| report.check("metrics_address", socket_addr(&a)));

    let mut pairs = Vec::new();
    for (i, entry) in certificates.into_iter().flatten().enumerate() {
        pairs.extend(certificate_entry(
            entry,
            &index_path("certificates", i),
            sources,
            report,
        ));
    }
    pairs.extend(certificate_pair(
        sources,
        report,
        ("certificate", certificate),
        ("certificate_file", certificate_file),
        ("certificate_key", certificate_key),
        ("certificate_key_file", certificate_key_file),
    ));
    let certificate_errors = [
        "certificates",
        "certificate",
        "certificate_file",
        "certificate_key",
        "certificate_key_file",
    ]
    .iter()
    .any(|p| report.has_error_under(p));
    if !insecure_server && pairs.is_empty() && !certificate_errors {
        report.error(
            "certificates",
            "TLS needs a certificate: set certificates, or certificate_file and \
             certificate_key_file (or insecure_server: true to serve plain HTTP)",
        );
    }
    if insecure_server && !pairs.is_empty() {
        report.warn(
            "insecure_server",
            "certificates are ignored with insecure_server: true",
        );
    }

    let trusted_proxies = trusted_proxies
        .map(|list| {
            list.entries("trusted_proxies")
                .into_iter()
                .filter_map(|(path, text)| report.check(&path, ip_net(&text)))
                .collect()
        })
        .unwrap_or_default();

    let downstream_mtls = downstream_mtls.and_then(|m| mtls(m, sources, report));

    let policies_dir = policies_dir.and_then(|dir| {
        let full = sources.resolve(&dir);
        if full.is_dir() {
            Some(full)
        } else {
            report.error(
                "policies_dir",
                format!("{dir:?} is not a readable directory"),
            );
            None
        }
    });

    let log_level = log_level
        .and_then(|l| report.check("log_level", one_of(&l, LOG_LEVELS)))
        .unwrap_or(LogLevel::Info);
    let access_log_fields = match access_log_fields {
        None => DEFAULT_FIELDS.to_vec(),
        Some(names) => access_fields(&names, report),
    };
    let metrics_basic_auth =
        metrics_basic_auth.and_then(|v| report.check("metrics_basic_auth", basic_auth(&v)));
    if metrics_basic_auth.is_some() && metrics_address.is_none() {
        report.warn(
            "metrics_basic_auth",
            "set without metrics_address: there is no admin listener to protect",
        );
    }

    let identity = identity::build(
        identity::Keys {
            authenticate_service_url,
            idp_provider,
            idp_provider_url,
            idp_client_id,
            idp_client_secret,
            idp_client_secret_file,
            idp_scopes,
            cookie_name,
            cookie_secret,
            cookie_secret_file,
            cookie_expire,
            cookie_domain,
            cookie_same_site,
            session_store,
            signing_key,
            signing_key_file,
            pass_identity_headers,
            jwt_claims_headers,
            identity_providers,
            programmatic_redirect_domain_whitelist,
        },
        insecure_server,
        sources,
        report,
    );

    let default_upstream_timeout =
        default_upstream_timeout.map_or(Duration::from_secs(30), |d| d.0);
    let defaults = RouteDefaults {
        upstream_timeout: default_upstream_timeout,
        has_policies_dir: policies_dir.is_some() || report.has_error_under("policies_dir"),
    };
    let routes = build_routes(routes, &defaults, sources, report);
    Config {
        address,
        insecure_server,
        http_redirect_addr,
        certificates: pairs,
        metrics_address,
        threads: threads.unwrap_or(0),
        shutdown_grace_period: shutdown_grace_period.map_or(Duration::from_secs(30), |d| d.0),
        timeout_idle: timeout_idle.map_or(Duration::from_secs(300), |d| d.0),
        request_header_timeout: request_header_timeout.map_or(Duration::from_secs(10), |d| d.0),
        default_upstream_timeout,
        trusted_proxies,
        downstream_mtls,
        policies_dir,
        log_level,
        access_log_fields,
        metrics_basic_auth,
        identity,
        routes,
    }
}

/// `access_log_fields`: every name must be known (a typo would silently drop a field).
fn access_fields(names: &[String], report: &mut Report) -> Vec<Field> {
    let mut fields = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        match Field::from_name(name) {
            Some(f) if !fields.contains(&f) => fields.push(f),
            Some(_) => {}
            None => report.error(
                &index_path("access_log_fields", i),
                format!(
                    "unknown field {name:?} (known: {})",
                    Field::names().collect::<Vec<_>>().join(", ")
                ),
            ),
        }
    }
    fields
}

/// `metrics_basic_auth`: Pomerium's form, base64 of `user:password`.
fn basic_auth(value: &str) -> Result<BasicAuth, String> {
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| "not base64 of user:password".to_owned())?;
    let text = String::from_utf8(decoded).map_err(|_| "not UTF-8 user:password".to_owned())?;
    match text.split_once(':') {
        Some((user, password)) if !user.is_empty() && !password.is_empty() => Ok(BasicAuth {
            user: user.to_owned(),
            password: password.to_owned(),
        }),
        _ => Err("expected base64 of user:password (both non-empty)".to_owned()),
    }
}

fn build_routes(
    routes: Option<Vec<Value>>,
    defaults: &RouteDefaults,
    sources: &Sources,
    report: &mut Report,
) -> Vec<super::types::Route> {
    let routes = routes.unwrap_or_default();
    if routes.is_empty() {
        report.warn("routes", "no routes: every request gets 404");
    }
    let mut built = Vec::with_capacity(routes.len());
    for (index, value) in routes.into_iter().enumerate() {
        let path = index_path("routes", index);
        if !value.is_mapping() {
            report.error(&path, "a route must be a mapping (from, to, …)");
            continue;
        }
        if let Some(file) = deserialize_all::<FileRoute>(value, &path, report) {
            built.extend(route::build(index, file, defaults, sources, report));
        }
    }
    built
}

/// One `certificates[i]` entry: `cert_file`/`key_file`, or `cert`/`key` (base64 PEM, PEM, or
/// a file path, as Pomerium accepts).
fn certificate_entry(
    entry: FileCertificate,
    path: &str,
    sources: &Sources,
    report: &mut Report,
) -> Option<CertificatePair> {
    let FileCertificate {
        cert_file,
        key_file,
        cert,
        key,
    } = entry;
    // Pomerium's `cert`/`key` may name files; inline PEM is told apart by its content.
    let split = |value: Option<String>, file: Option<String>| match value {
        Some(v) if inline_pem(&v).is_err() && file.is_none() => (None, Some(v)),
        v => (v, file),
    };
    let (cert, cert_file) = split(cert, cert_file);
    let (key, key_file) = split(key, key_file);
    let pair = certificate_pair(
        sources,
        report,
        (&key_path(path, "cert"), cert),
        (&key_path(path, "cert_file"), cert_file),
        (&key_path(path, "key"), key),
        (&key_path(path, "key_file"), key_file),
    );
    if pair.is_none() && !report.has_error_under(path) {
        report.error(path, "needs cert_file and key_file (or cert and key)");
    }
    pair.map(|p| CertificatePair {
        origin: path.to_owned(),
        ..p
    })
}

/// A certificate and its key, each inline or from a file. None when neither is set or on error.
pub(super) fn certificate_pair(
    sources: &Sources,
    report: &mut Report,
    cert: (&str, Option<String>),
    cert_file: (&str, Option<String>),
    key: (&str, Option<String>),
    key_file: (&str, Option<String>),
) -> Option<CertificatePair> {
    let cert_set = cert.1.is_some() || cert_file.1.is_some();
    let key_set = key.1.is_some() || key_file.1.is_some();
    let (cert_name, key_name) = (cert_file.0.to_owned(), key_file.0.to_owned());
    let origin = if cert.1.is_some() {
        cert.0
    } else {
        cert_file.0
    }
    .to_owned();
    match (cert_set, key_set) {
        (false, false) => return None,
        (true, false) => report.error(&cert_name, format!("needs {key_name} as well")),
        (false, true) => report.error(&key_name, format!("needs {cert_name} as well")),
        (true, true) => {}
    }
    let cert_pem = sources.pem(report, "CERTIFICATE", cert, cert_file);
    let key_pem = sources.pem(report, "PRIVATE KEY", key, key_file);
    Some(CertificatePair {
        cert_pem: cert_pem?,
        key_pem: key_pem?,
        origin,
    })
}

/// An IP network (`10.0.0.0/8`) or a single address (`192.0.2.7`).
fn ip_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{text:?} is not an IP address or CIDR (write e.g. 10.0.0.0/8)"))
}

fn mtls(
    file: FileDownstreamMtls,
    sources: &Sources,
    report: &mut Report,
) -> Option<DownstreamMtls> {
    let FileDownstreamMtls {
        ca_file,
        ca,
        crl_file,
        crl,
        enforcement,
    } = file;
    let had_ca = ca.is_some() || ca_file.is_some();
    let ca_pem = sources.pem(
        report,
        "CERTIFICATE",
        ("downstream_mtls.ca", ca),
        ("downstream_mtls.ca_file", ca_file),
    );
    let crl_pem = sources.pem(
        report,
        "X509 CRL",
        ("downstream_mtls.crl", crl),
        ("downstream_mtls.crl_file", crl_file),
    );
    let enforcement = enforcement
        .and_then(|e| report.check("downstream_mtls.enforcement", one_of(&e, ENFORCEMENTS)))
        .unwrap_or(MtlsEnforcement::PolicyWithDefaultDeny);
    if !had_ca {
        report.error(
            "downstream_mtls",
            "needs ca_file or ca (the client CA bundle)",
        );
    }
    Some(DownstreamMtls {
        ca_pem: ca_pem?,
        crl_pem,
        enforcement,
    })
}
