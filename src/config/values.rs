//! Checks for single values shared by the global and route conversions: addresses, URLs,
//! header names and values, PEM material, secrets and the files they come from.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use base64::Engine as _;
use http::{HeaderName, HeaderValue};

use super::problem::Report;

/// Reads files named in the config, relative to the config file's directory.
#[derive(Debug, Clone)]
pub(super) struct Sources {
    pub(super) base_dir: PathBuf,
}

/// Headers that describe one connection, never a request: they cannot be set by a route.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

// === impl Sources ===

impl Sources {
    /// `path` resolved against the config file's directory.
    pub(super) fn resolve(&self, path: &str) -> PathBuf {
        self.base_dir.join(path)
    }

    /// The bytes of the file `path`; the error names the file.
    pub(super) fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        if path.trim().is_empty() {
            return Err("empty file name".to_owned());
        }
        let full = self.resolve(path);
        std::fs::read(&full).map_err(|e| format!("cannot read file {}: {e}", show(&full)))
    }

    /// A secret given inline (`value_key`) or in a file (`file_key`), at most one of them.
    /// File contents are trimmed of surrounding whitespace (the trailing newline).
    pub(super) fn secret(
        &self,
        report: &mut Report,
        (value_key, value): (&str, Option<String>),
        (file_key, file): (&str, Option<String>),
    ) -> Option<String> {
        match (value, file) {
            (Some(_), Some(_)) => {
                report.error(
                    file_key,
                    format!(
                        "set {} or {}, not both",
                        last_key(value_key),
                        last_key(file_key)
                    ),
                );
                None
            }
            (Some(value), None) => Some(value),
            (None, Some(file)) => {
                let bytes = report.check(file_key, self.read(&file))?;
                match String::from_utf8(bytes) {
                    Ok(text) => Some(text.trim().to_owned()),
                    Err(_) => {
                        report.error(file_key, format!("file {file:?} is not UTF-8 text"));
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    /// PEM material given inline (`value_key`: base64 of PEM, or PEM) or as a file
    /// (`file_key`), at most one of them; it must hold a `label` block.
    pub(super) fn pem(
        &self,
        report: &mut Report,
        label: &str,
        (value_key, value): (&str, Option<String>),
        (file_key, file): (&str, Option<String>),
    ) -> Option<Vec<u8>> {
        let (path, pem) = match (value, file) {
            (Some(_), Some(_)) => {
                report.error(
                    file_key,
                    format!(
                        "set {} or {}, not both",
                        last_key(value_key),
                        last_key(file_key)
                    ),
                );
                return None;
            }
            (Some(value), None) => (value_key, inline_pem(&value)),
            (None, Some(file)) => (
                file_key,
                self.read(&file).map(|bytes| {
                    // A file may also hold base64 of PEM; keep what it holds otherwise.
                    match std::str::from_utf8(&bytes).ok().map(inline_pem) {
                        Some(Ok(pem)) => pem,
                        _ => bytes,
                    }
                }),
            ),
            (None, None) => return None,
        };
        let pem = pem.and_then(|pem| require_pem_block(pem, label));
        report.check(path, pem)
    }
}

/// The path as written in messages.
fn show(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// PEM text, or base64 of PEM text (how Pomerium takes inline keys and certificates).
pub(super) fn inline_pem(value: &str) -> Result<Vec<u8>, String> {
    let trimmed = value.trim();
    if trimmed.starts_with("-----BEGIN") {
        return Ok(trimmed.as_bytes().to_vec());
    }
    let decoded = decode_base64(trimmed).ok_or("is neither PEM nor base64 of PEM")?;
    if decoded.windows(10).any(|w| w == b"-----BEGIN") {
        Ok(decoded)
    } else {
        Err("decodes from base64 but holds no PEM block".to_owned())
    }
}

/// Checks that `pem` holds a `-----BEGIN … {label}-----` block (`CERTIFICATE`,
/// `PRIVATE KEY`, `X509 CRL`); `PRIVATE KEY` also matches `EC PRIVATE KEY` and the like.
pub(super) fn require_pem_block(pem: Vec<u8>, label: &str) -> Result<Vec<u8>, String> {
    let text = String::from_utf8_lossy(&pem);
    let found = text.lines().any(|line| {
        let line = line.trim();
        line.starts_with("-----BEGIN ") && line.ends_with(&format!("{label}-----"))
    });
    if found {
        Ok(pem)
    } else {
        Err(format!("holds no PEM {label} block"))
    }
}

/// Standard or URL-safe base64, padded or not.
pub(super) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

/// A listen address: `:443` (all IPv4 interfaces), `0.0.0.0:8443`, `[::]:443`,
/// `localhost:8080`.
pub(super) fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let invalid =
        || format!("invalid address {text:?} (write e.g. :443, 0.0.0.0:8443 or 127.0.0.1:8080)");
    if let Some(port) = text.strip_prefix(':') {
        let port = port.parse::<u16>().map_err(|_| invalid())?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        let port = port.parse::<u16>().map_err(|_| invalid())?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse().map_err(|_| invalid())
}

/// An absolute `http`/`https` URL.
pub(super) fn http_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text.trim()).map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(format!("unsupported scheme {other:?} (use http or https)")),
    }
    if url.host().is_none() {
        return Err(format!("URL {text:?} has no host"));
    }
    Ok(url)
}

/// A host name or IP literal with an optional port (`host_rewrite`, `host_redirect`,
/// `tls_server_name`).
pub(super) fn host_and_port(text: &str, allow_port: bool) -> Result<String, String> {
    let invalid = || format!("invalid host {text:?}");
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => (host, Some(port)),
        _ => (text, None),
    };
    if let Some(port) = port {
        if !allow_port {
            return Err(format!("{text:?} must be a host name without a port"));
        }
        port.parse::<u16>().map_err(|_| invalid())?;
    }
    if host.is_empty() || host.contains(['/', '?', '#', '@', ' ', '*']) {
        return Err(invalid());
    }
    url::Host::parse(host).map_err(|_| invalid())?;
    Ok(text.to_owned())
}

/// A header name a route may name: a valid token without `_` (SECURITY.md principle 2).
pub(super) fn header_name(text: &str) -> Result<HeaderName, String> {
    if text.contains('_') {
        return Err(format!(
            "header name {text:?} contains \"_\" (such names are rejected: use \"-\")"
        ));
    }
    HeaderName::from_bytes(text.as_bytes()).map_err(|_| format!("invalid header name {text:?}"))
}

/// A header value: no CR, LF, NUL or other control character.
pub(super) fn header_value(text: &str) -> Result<HeaderValue, String> {
    if text.contains(['\r', '\n', '\0']) {
        return Err("header value contains CR, LF or NUL".to_owned());
    }
    HeaderValue::from_str(text).map_err(|_| "header value contains a control character".to_owned())
}

/// Header names `set_request_headers`/`set_response_headers` cannot set, with the reason.
pub(super) fn forbidden_to_set(name: &HeaderName, request: bool) -> Option<&'static str> {
    let name = name.as_str();
    if HOP_BY_HOP.contains(&name) {
        return Some("is a hop-by-hop header");
    }
    if name == "content-length" {
        return Some("frames the message and cannot be set");
    }
    if request && name == "host" {
        return Some("cannot be set here (use host_rewrite or preserve_host_header)");
    }
    if request && name.starts_with("x-gatehouse-") {
        return Some("is reserved for the identity headers gatehouse writes");
    }
    None
}

/// Checks a list of strings where an empty entry would be a mistake (allow-lists, scopes).
pub(super) fn non_empty_entries(
    report: &mut Report,
    path: &str,
    entries: Vec<(String, String)>,
) -> Vec<String> {
    let mut kept = Vec::with_capacity(entries.len());
    for (entry_path, entry) in entries {
        if entry.trim().is_empty() {
            report.error(&entry_path, format!("empty entry in {}", last_key(path)));
        } else {
            kept.push(entry.trim().to_owned());
        }
    }
    kept
}

/// `(path[i], item)` for each item of a list.
pub(super) fn indexed(path: &str, items: Vec<String>) -> Vec<(String, String)> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| (format!("{path}[{i}]"), item))
        .collect()
}

fn last_key(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Looks `text` up (case-insensitively) among `(name, value)` choices.
pub(super) fn one_of<T: Copy>(text: &str, choices: &[(&str, T)]) -> Result<T, String> {
    choices
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text.trim()))
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            format!("unknown value {text:?} (use one of {})", names.join(", "))
        })
}
