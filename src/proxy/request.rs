//! Request hygiene before routing (SECURITY.md principles 1, 2 and 8): one authority, sane
//! framing, bounded sizes, no ambiguous header names or values.

use http::{header, Version};
use pingora_http::RequestHeader;

/// Longest request target accepted (bytes); longer → 414.
pub(super) const MAX_URI_BYTES: usize = 8 * 1024;
/// Most request header fields accepted; more → 431.
pub(super) const MAX_HEADERS: usize = 100;
/// Most request header bytes accepted (names + values); more → 431.
pub(super) const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Why a request was refused before routing; each maps to one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rejection {
    UriTooLong,
    HeadersTooLarge,
    /// Any other malformed request, with a short stable reason.
    Bad(&'static str),
}

/// Where the request is addressed to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Authority<'a> {
    /// Host without port or trailing dot, as sent (case preserved).
    pub host: &'a str,
    /// Explicit port, or the listener's default.
    pub port: u16,
}

// === impl Rejection ===

impl Rejection {
    /// The HTTP status this rejection is answered with.
    pub(super) fn status(self) -> u16 {
        match self {
            Rejection::UriTooLong => 414,
            Rejection::HeadersTooLarge => 431,
            Rejection::Bad(_) => 400,
        }
    }

    /// A short, stable reason for logs and error details.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Rejection::UriTooLong => "uri-too-long",
            Rejection::HeadersTooLarge => "headers-too-large",
            Rejection::Bad(reason) => reason,
        }
    }
}

/// Checks the request header and returns its authority and request target (origin form).
/// `default_port` is the listener's (443 on TLS, else 80).
pub(super) fn inspect(
    req: &RequestHeader,
    default_port: u16,
) -> Result<(Authority<'_>, &str), Rejection> {
    if req.raw_path().len() > MAX_URI_BYTES {
        return Err(Rejection::UriTooLong);
    }
    let headers = &req.headers;
    if headers.len() > MAX_HEADERS {
        return Err(Rejection::HeadersTooLarge);
    }
    let mut bytes = 0usize;
    for (name, value) in headers {
        bytes += name.as_str().len() + value.len() + 4;
        if name.as_str().contains('_') {
            return Err(Rejection::Bad("underscore-in-header-name"));
        }
        if value
            .as_bytes()
            .iter()
            .any(|b| matches!(b, 0 | b'\r' | b'\n'))
        {
            return Err(Rejection::Bad("invalid-header-value"));
        }
    }
    if bytes > MAX_HEADER_BYTES {
        return Err(Rejection::HeadersTooLarge);
    }
    check_framing(req)?;

    let mut hosts = headers.get_all(header::HOST).iter();
    let host_header = hosts.next();
    if hosts.next().is_some() {
        return Err(Rejection::Bad("duplicate-host"));
    }
    let host_header = match host_header {
        Some(v) => Some(v.to_str().map_err(|_| Rejection::Bad("invalid-host"))?),
        None => None,
    };
    let uri_authority = req.uri.authority().map(|a| a.as_str());
    let authority = match (uri_authority, host_header) {
        (Some(a), Some(h)) if !a.eq_ignore_ascii_case(h) => {
            return Err(Rejection::Bad("authority-mismatch"))
        }
        (Some(a), _) => a,
        (None, Some(h)) => h,
        (None, None) => return Err(Rejection::Bad("missing-host")),
    };
    let authority = parse_authority(authority, default_port)?;

    let target = if req.raw_path().first() == Some(&b'/') {
        std::str::from_utf8(req.raw_path()).map_err(|_| Rejection::Bad("non-ascii"))?
    } else if uri_authority.is_some() {
        req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    } else {
        return Err(Rejection::Bad("not-origin-form"));
    };
    Ok((authority, target))
}

/// The host a request that passed [`inspect`] is addressed to: without port or trailing dot,
/// case as sent; an IPv6 literal in brackets, as in a URL.
pub(super) fn host(req: &RequestHeader) -> Option<&str> {
    let authority = match req.uri.authority() {
        Some(a) => a.as_str(),
        None => req.headers.get(header::HOST)?.to_str().ok()?,
    };
    let host = parse_authority(authority, 0).ok()?.host;
    Some(if authority.starts_with('[') {
        &authority[..host.len() + 2]
    } else {
        host
    })
}

/// Rejects ambiguous message framing: Content-Length with Transfer-Encoding, several or
/// malformed Content-Length values, and chunked on HTTP/1.0. Pingora's HTTP/1 parser already
/// resolves or refuses these before this runs; the check stays for HTTP/2 requests (whose
/// headers come from the h2 crate) and so the rule does not depend on one parser.
fn check_framing(req: &RequestHeader) -> Result<(), Rejection> {
    let headers = &req.headers;
    let te = headers.get(header::TRANSFER_ENCODING);
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let first_length = lengths.next();
    if lengths.next().is_some() {
        return Err(Rejection::Bad("duplicate-content-length"));
    }
    if let Some(len) = first_length {
        let ok = !len.is_empty() && len.as_bytes().iter().all(u8::is_ascii_digit);
        if !ok {
            return Err(Rejection::Bad("invalid-content-length"));
        }
        if te.is_some() {
            return Err(Rejection::Bad("content-length-with-transfer-encoding"));
        }
    }
    if te.is_some() && req.version == Version::HTTP_10 {
        return Err(Rejection::Bad("chunked-on-http10"));
    }
    Ok(())
}

/// Splits `host[:port]`, dropping a trailing dot. A `:` belongs only in a bracketed IPv6
/// address: `a:b.example.com:80` or a bare `::1` would be routed on a host that upstreams
/// (and URLs built from it) read differently.
fn parse_authority(authority: &str, default_port: u16) -> Result<Authority<'_>, Rejection> {
    let bad = Rejection::Bad("invalid-host");
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']').ok_or(bad)?;
        let host = &rest[..end];
        host.parse::<std::net::Ipv6Addr>().map_err(|_| bad)?;
        match &rest[end + 1..] {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or(bad)?)),
        }
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        let valid = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !valid || reads_as_other_ipv4(host) {
            return Err(bad);
        }
        (host, port)
    };
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| bad)?,
        None => default_port,
    };
    Ok(Authority { host, port })
}

/// URL parsers (WHATWG, so browsers) read a host whose last label is a number as an IPv4
/// address: `0x7f.1` is 127.0.0.1, `010.0.0.1` is 8.0.0.1 and `a1.1` is no host. Only the
/// dotted-decimal form means the same everywhere.
fn reads_as_other_ipv4(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or(host);
    let number = match last.strip_prefix("0x").or_else(|| last.strip_prefix("0X")) {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()),
    };
    number && host.parse::<std::net::Ipv4Addr>().is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn authority_and_port() {
        let r = req("/x", &[("host", "App.Example.com:8443")]);
        let (a, t) = inspect(&r, 443).unwrap();
        assert_eq!((a.host, a.port, t), ("App.Example.com", 8443, "/x"));
        let r = req("/x", &[("host", "[::1]")]);
        assert_eq!(inspect(&r, 80).unwrap().0.host, "::1");
        let r = req("/x", &[("host", "a.example.com.")]);
        assert_eq!(inspect(&r, 80).unwrap().0.host, "a.example.com");
        let r = req("/x", &[("host", "10.0.0.1:8080")]);
        assert_eq!(inspect(&r, 80).unwrap().0.host, "10.0.0.1");
        let r = req("/x", &[("host", "app.1x.example")]);
        assert_eq!(inspect(&r, 80).unwrap().0.host, "app.1x.example");
    }

    #[test]
    fn rejections() {
        let two_hosts = req("/", &[("host", "a"), ("host", "b")]);
        assert_eq!(
            inspect(&two_hosts, 80).unwrap_err(),
            Rejection::Bad("duplicate-host")
        );
        let underscore = req("/", &[("host", "a"), ("x_user", "1")]);
        assert_eq!(inspect(&underscore, 80).unwrap_err().status(), 400);
        let cl_te = req(
            "/",
            &[
                ("host", "a"),
                ("content-length", "1"),
                ("transfer-encoding", "chunked"),
            ],
        );
        assert_eq!(inspect(&cl_te, 80).unwrap_err().status(), 400);
        let long = req(&format!("/{}", "a".repeat(MAX_URI_BYTES)), &[("host", "a")]);
        assert_eq!(inspect(&long, 80).unwrap_err().status(), 414);
        let abs = req("http://other.internal/admin", &[("host", "app")]);
        // Pingora's parser refuses most of these itself; here too it must be a 400.
        assert_eq!(inspect(&abs, 80).unwrap_err().status(), 400);
        let no_host = req("/", &[]);
        assert_eq!(inspect(&no_host, 80).unwrap_err().status(), 400);
        for host in [
            "a:b.example.com:80",
            "::1",
            "[a:b.example.com]",
            "[::1",
            "[::1]x",
            "a1.1",
            "0x7f.1",
            "010.0.0.1",
            "1.2.3.4.5",
        ] {
            let r = req("/", &[("host", host)]);
            assert_eq!(
                inspect(&r, 80).unwrap_err(),
                Rejection::Bad("invalid-host"),
                "{host}"
            );
        }
    }

    #[test]
    fn too_many_headers() {
        let many: Vec<(String, String)> = (0..=MAX_HEADERS)
            .map(|i| (format!("x-h{i}"), "v".to_owned()))
            .collect();
        let mut r = req("/", &[("host", "a")]);
        for (k, v) in &many {
            r.append_header(k.clone(), v.as_str()).unwrap();
        }
        assert_eq!(inspect(&r, 80).unwrap_err().status(), 431);
    }
}
