//! Parsing the `session_store` Redis URL, in the forms Pomerium accepts:
//!
//! - `redis://[user:pass@]host[:port][/db]`, `rediss://…` (TLS), `unix://[user:pass@]/path[?db=N]`
//! - `redis+sentinel://[:pass@]h1[:26379],h2…/MASTER[/db][?username=U&password=P]`: as in
//!   Pomerium, the password in the authority is the *sentinels'*, the `username`/`password`
//!   parameters are the master's. TLS: `rediss+sentinel`, `redis+sentinels`.
//! - `redis+cluster://[user:pass@]h1[:6379],h2…`; TLS: `rediss+cluster`, `redis+clusters`.
//!   (Pomerium's `-` spellings such as `redis-cluster` are accepted too.)
//!
//! Parameters: `tls_skip_verify=true` (alias `skip_verify`), `tls_ca_file=PATH` (PEM; replaces
//! the public roots), both only with a TLS scheme. Pomerium's connection-tuning parameters
//! (`dial_timeout`, `pool_size`, …) are accepted and ignored, since gatehouse bounds every
//! operation itself. Anything else is an error: a typo must not silently change behaviour.
//!
//! Error messages never repeat user text other than the scheme and parameter names, so a
//! misplaced password cannot leak through them.

use std::path::PathBuf;

use super::super::StoreError;

/// A parsed Redis `session_store` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::session::store) struct RedisConfig {
    pub(super) topology: Topology,
    /// `Some` for the TLS schemes.
    pub(super) tls: Option<Tls>,
    /// Credentials of the data nodes (standalone server, master, cluster nodes).
    pub(super) auth: Auth,
    /// Credentials of the sentinels.
    pub(super) sentinel_auth: Auth,
    /// Logical database (standalone and sentinel only).
    pub(super) db: i64,
    /// Pomerium tuning parameters that were present and are ignored (for a warning).
    pub(super) ignored_params: Vec<String>,
}

/// Which kind of deployment the URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Topology {
    Standalone(Endpoint),
    Sentinel {
        sentinels: Vec<Endpoint>,
        master: String,
    },
    Cluster {
        seeds: Vec<Endpoint>,
    },
}

/// One server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Endpoint {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

/// TLS settings of a TLS scheme.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Tls {
    pub(super) skip_verify: bool,
    pub(super) ca_file: Option<PathBuf>,
}

/// Optional username and password.
#[derive(Clone, PartialEq, Eq, Default)]
pub(super) struct Auth {
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
}

/// Parameters of Pomerium's (go-redis) URLs that tune connection pools and retries; gatehouse
/// bounds operations itself, so they are accepted for compatibility and ignored.
const IGNORED_PARAMS: &[&str] = &[
    "client_name",
    "conn_max_idle_time",
    "conn_max_lifetime",
    "dial_timeout",
    "idle_check_frequency",
    "idle_timeout",
    "max_conn_age",
    "max_idle_conns",
    "max_redirects",
    "max_retries",
    "max_retry_backoff",
    "min_idle_conns",
    "min_retry_backoff",
    "pool_fifo",
    "pool_size",
    "pool_timeout",
    "query_sentinel_randomly",
    "read_only",
    "read_timeout",
    "route_by_latency",
    "route_randomly",
    "slave_only",
    "use_disconnected_slaves",
    "write_timeout",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Standalone,
    Unix,
    Sentinel,
    Cluster,
}

/// The parts of `scheme://userinfo@hosts/path?query`, still percent-encoded.
struct Parts<'a> {
    userinfo: Option<&'a str>,
    hosts: &'a str,
    path: &'a str,
    query: &'a str,
}

// === impl RedisConfig ===

impl RedisConfig {
    /// Parses a Redis `session_store` URL. Pure: reads no file, touches no network.
    pub(in crate::session::store) fn parse(url: &str) -> Result<Self, StoreError> {
        let url = url.trim();
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| config("expected \"memory\" or a URL such as redis://host:6379"))?;
        let scheme = scheme.to_ascii_lowercase();
        let (kind, tls) = scheme_kind(&scheme)?;
        let parts = split(rest)?;
        // Pomerium: in a sentinel URL the authority's credentials are the sentinels', and the
        // master's come from the `username`/`password` parameters.
        let userinfo = parse_userinfo(parts.userinfo)?;
        let (mut auth, sentinel_auth) = match kind {
            Kind::Sentinel => (Auth::default(), userinfo),
            _ => (userinfo, Auth::default()),
        };
        let mut tls = tls.then(Tls::default);
        let mut db = 0;
        let mut ignored_params = Vec::new();

        let mut seen: Vec<String> = Vec::new();
        for (name, value) in url::form_urlencoded::parse(parts.query.as_bytes()) {
            let name = name.into_owned();
            if seen.contains(&name) {
                return Err(config(format!(
                    "query parameter {} is given twice",
                    shown_param(&name)
                )));
            }
            seen.push(name.clone());
            match (name.as_str(), kind) {
                ("tls_skip_verify" | "skip_verify", _) => {
                    let tls = tls.as_mut().ok_or_else(|| {
                        config(format!(
                            "{name} needs a TLS scheme (rediss://, rediss+cluster://, …)"
                        ))
                    })?;
                    tls.skip_verify = parse_bool(&name, &value)?;
                }
                ("tls_ca_file", _) => {
                    let tls = tls.as_mut().ok_or_else(|| {
                        config("tls_ca_file needs a TLS scheme (rediss://, rediss+cluster://, …)")
                    })?;
                    if value.is_empty() {
                        return Err(config("tls_ca_file is empty"));
                    }
                    tls.ca_file = Some(PathBuf::from(value.into_owned()));
                }
                ("username", Kind::Sentinel) => auth.username = non_empty(value.into_owned()),
                ("password", Kind::Sentinel) => auth.password = non_empty(value.into_owned()),
                ("db", Kind::Unix) => db = parse_db(&value)?,
                (other, _) if IGNORED_PARAMS.contains(&other) => ignored_params.push(name),
                _ => {
                    return Err(config(format!(
                        "unknown query parameter {}",
                        shown_param(&name)
                    )))
                }
            }
        }

        let topology = match kind {
            Kind::Standalone => {
                let mut endpoints = parse_hosts(parts.hosts, 6379)?;
                if endpoints.len() != 1 {
                    return Err(config(
                        "several hosts need redis+cluster:// or redis+sentinel://",
                    ));
                }
                db = match parts.path.trim_start_matches('/') {
                    "" => 0,
                    path => parse_db(path)?,
                };
                Topology::Standalone(endpoints.remove(0))
            }
            Kind::Unix => {
                if !parts.hosts.is_empty() {
                    return Err(config(
                        "unix:// takes a path, not a host: unix:///path/to/socket",
                    ));
                }
                if parts.path.len() < 2 {
                    return Err(config(
                        "unix:// needs a socket path: unix:///path/to/socket",
                    ));
                }
                let path = percent_decode(parts.path, "socket path")?;
                Topology::Standalone(Endpoint::Unix(PathBuf::from(path)))
            }
            Kind::Sentinel => {
                let sentinels = parse_hosts(parts.hosts, 26379)?;
                let mut segments = parts.path.trim_start_matches('/').split('/');
                let master = segments.next().unwrap_or_default();
                if master.is_empty() {
                    return Err(config(
                        "redis+sentinel:// needs the master name: redis+sentinel://host:26379/mymaster",
                    ));
                }
                if !master
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                {
                    return Err(config(
                        "master name may only hold letters, digits, '-', '_', '.'",
                    ));
                }
                if let Some(db_text) = segments.next() {
                    db = parse_db(db_text)?;
                }
                if segments.next().is_some() {
                    return Err(config("sentinel path must be /MASTER[/db]"));
                }
                Topology::Sentinel {
                    sentinels,
                    master: master.to_owned(),
                }
            }
            Kind::Cluster => {
                if !matches!(parts.path, "" | "/") {
                    return Err(config(
                        "a cluster URL takes no path (Redis Cluster has only db 0)",
                    ));
                }
                Topology::Cluster {
                    seeds: parse_hosts(parts.hosts, 6379)?,
                }
            }
        };

        Ok(Self {
            topology,
            tls,
            auth,
            sentinel_auth,
            db,
            ignored_params,
        })
    }

    /// Every password in the URL, to scrub from messages that come from elsewhere.
    pub(super) fn secrets(&self) -> Vec<String> {
        [&self.auth.password, &self.sentinel_auth.password]
            .into_iter()
            .flatten()
            .filter(|secret| !secret.is_empty())
            .cloned()
            .collect()
    }
}

// === impl Auth ===

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn config(message: impl Into<String>) -> StoreError {
    StoreError::Config(message.into())
}

/// Maps a scheme to its kind and whether it uses TLS.
fn scheme_kind(scheme: &str) -> Result<(Kind, bool), StoreError> {
    Ok(match scheme {
        "redis" => (Kind::Standalone, false),
        "rediss" => (Kind::Standalone, true),
        "unix" | "redis+unix" => (Kind::Unix, false),
        "redis+sentinel" | "redis-sentinel" => (Kind::Sentinel, false),
        "rediss+sentinel" | "rediss-sentinel" | "redis+sentinels" | "redis-sentinels" => {
            (Kind::Sentinel, true)
        }
        "redis+cluster" | "redis-cluster" => (Kind::Cluster, false),
        "rediss+cluster" | "rediss-cluster" | "redis+clusters" | "redis-clusters" => {
            (Kind::Cluster, true)
        }
        s if s.contains("sentinel") && s.contains("cluster") => {
            return Err(config("sentinel-managed clusters are not supported"))
        }
        s => {
            let shown = if s.len() <= 24
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
            {
                format!("unsupported scheme \"{s}\"")
            } else {
                "unsupported scheme".to_owned()
            };
            return Err(config(format!(
                "{shown}: expected memory, redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://"
            )));
        }
    })
}

/// Splits what follows `://` into its still-encoded parts.
fn split(rest: &str) -> Result<Parts<'_>, StoreError> {
    if rest.contains('#') {
        return Err(config(
            "URL fragments (#…) are not supported; percent-encode '#' in passwords as %23",
        ));
    }
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match before_query.find('/') {
        Some(slash) => before_query.split_at(slash),
        None => (before_query, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    Ok(Parts {
        userinfo,
        hosts,
        path,
        query,
    })
}

fn parse_userinfo(userinfo: Option<&str>) -> Result<Auth, StoreError> {
    let Some(userinfo) = userinfo else {
        return Ok(Auth::default());
    };
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    Ok(Auth {
        username: non_empty(percent_decode(user, "username")?),
        password: match password {
            Some(password) => non_empty(percent_decode(password, "password")?),
            None => None,
        },
    })
}

/// Parses `h1[:p1],h2[:p2]…` (IPv6 in brackets).
fn parse_hosts(hosts: &str, default_port: u16) -> Result<Vec<Endpoint>, StoreError> {
    if hosts.is_empty() {
        return Err(config("missing host"));
    }
    let mut endpoints = Vec::new();
    for (index, entry) in hosts.split(',').enumerate() {
        let nth = index + 1;
        let (host, port) = if let Some(bracketed) = entry.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| config(format!("host #{nth}: unclosed '[' in IPv6 address")))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(config(format!("host #{nth}: invalid IPv6 address")));
            }
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(config(format!("host #{nth}: junk after ']'"))),
                },
            }
        } else {
            match entry.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (entry, None),
            }
        };
        if host.is_empty() {
            return Err(config(format!("host #{nth}: empty host")));
        }
        let is_ipv6 = entry.starts_with('[');
        if !is_ipv6
            && !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(config(format!(
                "host #{nth}: invalid host name (a password with '@', '/', '?' or '#' must be percent-encoded)"
            )));
        }
        if matches!(host, "0.0.0.0" | "::") {
            return Err(config(format!(
                "host #{nth}: cannot connect to a wildcard address"
            )));
        }
        let port = match port {
            None => default_port,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| config(format!("host #{nth}: invalid port")))?,
        };
        endpoints.push(Endpoint::Tcp {
            host: host.to_ascii_lowercase(),
            port,
        });
    }
    Ok(endpoints)
}

fn parse_db(text: &str) -> Result<i64, StoreError> {
    text.parse::<i64>()
        .ok()
        .filter(|db| (0..=1_000_000).contains(db))
        .ok_or_else(|| config("invalid database number"))
}

fn parse_bool(name: &str, value: &str) -> Result<bool, StoreError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(config(format!("{name} must be true or false"))),
    }
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// A parameter name as shown in errors: only if it looks like one.
fn shown_param(name: &str) -> String {
    if name.len() <= 32 && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        format!("\"{name}\"")
    } else {
        "(not shown)".to_owned()
    }
}

/// Decodes `%XX` escapes; `what` names the part in errors (its text is never shown).
fn percent_decode(text: &str, what: &str) -> Result<String, StoreError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|pair| std::str::from_utf8(pair).ok())
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| config(format!("invalid percent-encoding in the {what}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| config(format!("the {what} is not valid UTF-8")))
}

#[cfg(test)]
mod tests;
