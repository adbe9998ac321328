//! The criteria of the language: parsing each from its YAML value, evaluating it against a
//! subject and request facts, and what facts it reads.

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde_yaml::Value;

use super::{
    facts::{ClientCertFacts, FactSet, RequestFacts, Subject},
    matcher::{ListMatcher, StringMatcher},
    parse::{describe, Problems},
    reason::{Reason, Reasons},
    time::{DateRange, DayOfWeek, TimeOfDay},
};

/// The names of every criterion, for messages.
pub(crate) const CRITERIA: &str = "accept, reject, authenticated_user, user, email, domain, \
    groups, claim/<name>, http_method, http_path, source_ip, cors_preflight, client_certificate, \
    invalid_client_certificate, date, day_of_week, time_of_day";

/// One compiled criterion.
#[derive(Debug, Clone)]
pub(crate) enum Criterion {
    Accept,
    Reject,
    AuthenticatedUser,
    User(StringMatcher),
    Email(StringMatcher),
    /// Matcher folds case.
    Domain(StringMatcher),
    Groups(ListMatcher),
    Claim {
        /// The claim name as written after `claim/`.
        name: Box<str>,
        /// The name with `.` read as `/` (Pomerium's nested lookup), when it differs.
        nested: Option<Box<str>>,
        matcher: ListMatcher,
    },
    /// Matcher folds case: methods are compared ASCII-case-insensitively so `delete` cannot
    /// slip past a rule on `DELETE`.
    HttpMethod(StringMatcher),
    HttpPath(StringMatcher),
    SourceIp(Box<[IpNet]>),
    CorsPreflight,
    ClientCertificate(Box<CertMatcher>),
    InvalidClientCertificate,
    Date(DateRange),
    DayOfWeek(DayOfWeek),
    TimeOfDay(TimeOfDay),
}

/// `client_certificate: {fingerprint, spki_hash, san_dns, san_email, san_uri}`; every given
/// key must hold.
#[derive(Debug, Clone, Default)]
pub(crate) struct CertMatcher {
    /// Lower-case hex SHA-256 of the DER.
    fingerprints: Box<[Box<str>]>,
    /// Canonical standard base64 SHA-256 of the SPKI.
    spki_hashes: Box<[Box<str>]>,
    san_dns: Option<StringMatcher>,
    san_email: Option<StringMatcher>,
    san_uri: Option<StringMatcher>,
}

/// What one criterion or operator yields: whether it held, and why (Pomerium's
/// `[bool, reasons]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) holds: bool,
    pub(crate) reasons: Reasons,
}

/// Everything a criterion may read.
pub(crate) struct Input<'a> {
    pub(crate) subject: Option<&'a Subject>,
    pub(crate) facts: &'a RequestFacts<'a>,
    /// Only meaningful when the policy reads [`FactSet::TIME`].
    pub(crate) now: DateTime<Utc>,
}

// === impl Criterion ===

impl Criterion {
    /// Parses the criterion `key` (`name` or `name/sub`) with its value; problems go under
    /// `path`.
    pub(crate) fn parse(key: &str, v: &Value, path: &str, p: &mut Problems) -> Option<Criterion> {
        let (name, sub) = match key.split_once('/') {
            Some((n, s)) => (n, Some(s)),
            None => (key, None),
        };
        if let (Some(_), false) = (sub, name == "claim") {
            p.push(path, format!("criterion `{name}` takes no `/` sub-path"));
            return None;
        }
        let c = match name {
            "accept" => flag(v, path, p, Criterion::Accept)?,
            "reject" => flag(v, path, p, Criterion::Reject)?,
            "authenticated_user" => flag(v, path, p, Criterion::AuthenticatedUser)?,
            "cors_preflight" => flag(v, path, p, Criterion::CorsPreflight)?,
            "invalid_client_certificate" => flag(v, path, p, Criterion::InvalidClientCertificate)?,
            "user" => Criterion::User(StringMatcher::parse(v, path, false, p)?),
            "email" => Criterion::Email(StringMatcher::parse(v, path, false, p)?),
            "domain" => Criterion::Domain(StringMatcher::parse(v, path, true, p)?),
            "groups" => Criterion::Groups(ListMatcher::parse(v, path, true, p)?),
            "claim" => {
                let name = sub.unwrap_or_default();
                if name.is_empty() {
                    p.push(path, "`claim` needs a claim name: `claim/<name>`");
                    return None;
                }
                let nested = name.contains('.').then(|| name.replace('.', "/").into());
                Criterion::Claim {
                    name: name.into(),
                    nested,
                    matcher: ListMatcher::parse(v, path, false, p)?,
                }
            }
            "http_method" => Criterion::HttpMethod(StringMatcher::parse(v, path, true, p)?),
            "http_path" => Criterion::HttpPath(StringMatcher::parse(v, path, false, p)?),
            "source_ip" => Criterion::SourceIp(parse_source_ip(v, path, p)?),
            "client_certificate" => {
                Criterion::ClientCertificate(Box::new(CertMatcher::parse(v, path, p)?))
            }
            "date" => Criterion::Date(DateRange::parse(v, path, p)?),
            "day_of_week" => Criterion::DayOfWeek(DayOfWeek::parse(v, path, p)?),
            "time_of_day" => Criterion::TimeOfDay(TimeOfDay::parse(v, path, p)?),
            other => {
                p.push(
                    path,
                    format!("unknown criterion `{other}` (expected one of {CRITERIA})"),
                );
                return None;
            }
        };
        Some(c)
    }

    /// The facts this criterion reads.
    pub(crate) fn reads(&self) -> FactSet {
        match self {
            Criterion::Accept | Criterion::Reject => FactSet::NONE,
            Criterion::AuthenticatedUser
            | Criterion::User(_)
            | Criterion::Email(_)
            | Criterion::Domain(_)
            | Criterion::Groups(_)
            | Criterion::Claim { .. } => FactSet::SUBJECT,
            Criterion::HttpMethod(_) => FactSet::METHOD,
            Criterion::HttpPath(_) => FactSet::PATH,
            Criterion::SourceIp(_) => FactSet::SOURCE_IP,
            Criterion::CorsPreflight => FactSet::METHOD.union(FactSet::HEADERS),
            Criterion::ClientCertificate(_) | Criterion::InvalidClientCertificate => {
                FactSet::CLIENT_CERT
            }
            Criterion::Date(_) | Criterion::DayOfWeek(_) | Criterion::TimeOfDay(_) => FactSet::TIME,
        }
    }

    /// The earliest instant after `now` at which this criterion's result may change (time
    /// criteria only).
    pub(crate) fn next_boundary(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Criterion::Date(d) => d.next_boundary(now),
            Criterion::DayOfWeek(d) => Some(d.next_boundary(now)),
            Criterion::TimeOfDay(t) => Some(t.next_boundary(now)),
            _ => None,
        }
    }

    /// Evaluates the criterion. Never allocates.
    pub(crate) fn eval(&self, input: &Input<'_>) -> Outcome {
        use Reason as R;
        let f = input.facts;
        match self {
            Criterion::Accept => Outcome::new(true, R::Accept),
            Criterion::Reject => Outcome::new(false, R::Reject),
            Criterion::AuthenticatedUser => {
                with_subject(input, R::UserOk, R::UserUnauthorized, |s| {
                    !s.user_id.is_empty()
                })
            }
            Criterion::User(m) => with_subject(input, R::UserOk, R::UserUnauthorized, |s| {
                !s.user_id.is_empty() && m.matches(&s.user_id)
            }),
            Criterion::Email(m) => with_subject(input, R::EmailOk, R::EmailUnauthorized, |s| {
                s.verified_email().is_some_and(|e| m.matches(e))
            }),
            Criterion::Domain(m) => with_subject(input, R::DomainOk, R::DomainUnauthorized, |s| {
                s.verified_email()
                    .and_then(|e| e.split_once('@'))
                    .is_some_and(|(_, domain)| m.matches(domain))
            }),
            Criterion::Groups(m) => with_subject(input, R::GroupsOk, R::GroupsUnauthorized, |s| {
                m.matches(&s.groups)
            }),
            Criterion::Claim {
                name,
                nested,
                matcher,
            } => with_subject(input, R::ClaimOk, R::ClaimUnauthorized, |s| {
                let values = s
                    .claims
                    .get(&**name)
                    .or_else(|| nested.as_deref().and_then(|n| s.claims.get(n)))
                    .map_or(&[][..], Vec::as_slice);
                matcher.matches(values)
            }),
            Criterion::HttpMethod(m) => Outcome::pick(
                m.matches(f.method),
                R::HttpMethodOk,
                R::HttpMethodUnauthorized,
            ),
            Criterion::HttpPath(m) => {
                Outcome::pick(m.matches(f.path), R::HttpPathOk, R::HttpPathUnauthorized)
            }
            Criterion::SourceIp(nets) => {
                let ok = f.source_ip.is_some_and(|ip| {
                    // An IPv4-mapped IPv6 peer is the IPv4 client it maps.
                    let ip = ip.to_canonical();
                    nets.iter().any(|n| n.contains(&ip))
                });
                Outcome::pick(ok, R::SourceIpOk, R::SourceIpUnauthorized)
            }
            Criterion::CorsPreflight => {
                let ok = f.method.eq_ignore_ascii_case("OPTIONS")
                    && f.origin.is_some()
                    && f.access_control_request_method.is_some();
                Outcome::pick(ok, R::CorsRequest, R::NonCorsRequest)
            }
            Criterion::ClientCertificate(m) => {
                let ok = f.client_certificate.as_ref().is_some_and(|c| m.matches(c));
                Outcome::pick(ok, R::ClientCertificateOk, R::ClientCertificateUnauthorized)
            }
            Criterion::InvalidClientCertificate => match &f.client_certificate {
                Some(c) if c.valid => Outcome::new(false, R::ValidClientCertificate),
                Some(_) => Outcome::new(true, R::InvalidClientCertificate),
                None => Outcome::new(true, R::ClientCertificateRequired),
            },
            Criterion::Date(d) => Outcome::pick(d.holds(input.now), R::DateOk, R::DateUnauthorized),
            Criterion::DayOfWeek(d) => {
                Outcome::pick(d.holds(input.now), R::DayOfWeekOk, R::DayOfWeekUnauthorized)
            }
            Criterion::TimeOfDay(t) => {
                Outcome::pick(t.holds(input.now), R::TimeOfDayOk, R::TimeOfDayUnauthorized)
            }
        }
    }
}

/// A criterion that takes no data: `true` (or nothing) is accepted; anything else is an error,
/// because Pomerium ignores the value and `accept: false` would silently mean `accept`.
fn flag(v: &Value, path: &str, p: &mut Problems, c: Criterion) -> Option<Criterion> {
    match v {
        Value::Bool(true) | Value::Null => Some(c),
        other => {
            p.push(
                path,
                format!(
                    "this criterion takes `true`, got {} (negate it with `not`)",
                    describe(other)
                ),
            );
            None
        }
    }
}

fn with_subject(
    input: &Input<'_>,
    ok: Reason,
    bad: Reason,
    f: impl FnOnce(&Subject) -> bool,
) -> Outcome {
    match input.subject {
        None => Outcome::new(false, Reason::UserUnauthenticated),
        Some(s) => Outcome::pick(f(s), ok, bad),
    }
}

fn parse_source_ip(v: &Value, path: &str, p: &mut Problems) -> Option<Box<[IpNet]>> {
    let items: Vec<(&Value, String)> = match v {
        Value::Sequence(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, x)| (x, format!("{path}[{i}]")))
            .collect(),
        Value::Sequence(_) => {
            p.push(path, "empty list");
            return None;
        }
        other => vec![(other, path.to_owned())],
    };
    let mut nets = Vec::with_capacity(items.len());
    let mut ok = true;
    for (item, sub) in items {
        let Value::String(s) = item else {
            p.push(
                &sub,
                format!(
                    "expected an IP address or CIDR string, got {}",
                    describe(item)
                ),
            );
            ok = false;
            continue;
        };
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            nets.push(canonical_net(net));
        } else if let Ok(ip) = s.parse::<std::net::IpAddr>() {
            nets.push(IpNet::from(ip.to_canonical()));
        } else {
            p.push(&sub, format!("`{s}` is not an IP address or CIDR"));
            ok = false;
        }
    }
    ok.then(|| nets.into())
}

/// Host bits cleared; an IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) becomes the IPv4
/// network it maps, since request addresses are canonicalised the same way.
fn canonical_net(net: IpNet) -> IpNet {
    let net = net.trunc();
    if let IpNet::V6(v6) = net {
        if let (Some(v4), true) = (v6.addr().to_ipv4_mapped(), v6.prefix_len() >= 96) {
            if let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96) {
                return IpNet::V4(n);
            }
        }
    }
    net
}

// === impl CertMatcher ===

impl CertMatcher {
    fn parse(v: &Value, path: &str, p: &mut Problems) -> Option<CertMatcher> {
        let Value::Mapping(map) = v else {
            p.push(
                path,
                format!(
                    "expected an object {{fingerprint, spki_hash, san_dns, san_email, san_uri}}, got {}",
                    describe(v)
                ),
            );
            return None;
        };
        if map.is_empty() {
            p.push(
                path,
                "empty certificate matcher (it would match any certificate)",
            );
            return None;
        }
        let mut m = CertMatcher::default();
        let mut ok = true;
        for (k, val) in map {
            let key = k.as_str().unwrap_or("");
            let sub = format!("{path}.{key}");
            let done = match key {
                "fingerprint" => parse_hashes(val, &sub, p, canonical_fingerprint)
                    .map(|h| m.fingerprints = h)
                    .is_some(),
                "spki_hash" => parse_hashes(val, &sub, p, canonical_spki)
                    .map(|h| m.spki_hashes = h)
                    .is_some(),
                "san_dns" => StringMatcher::parse(val, &sub, true, p)
                    .map(|s| m.san_dns = Some(s))
                    .is_some(),
                "san_email" => StringMatcher::parse(val, &sub, false, p)
                    .map(|s| m.san_email = Some(s))
                    .is_some(),
                "san_uri" => StringMatcher::parse(val, &sub, false, p)
                    .map(|s| m.san_uri = Some(s))
                    .is_some(),
                _ => {
                    p.push(
                        &sub,
                        format!(
                            "unknown certificate matcher `{}` (expected fingerprint, spki_hash, \
                             san_dns, san_email or san_uri)",
                            k.as_str().unwrap_or(describe(k))
                        ),
                    );
                    false
                }
            };
            ok &= done;
        }
        ok.then_some(m)
    }

    fn matches(&self, c: &ClientCertFacts<'_>) -> bool {
        let san = |m: &Option<StringMatcher>, sans: &[String]| {
            // SANs are only evidence when the chain verified: anyone can mint a certificate
            // with any SAN. Fingerprints and SPKI hashes pin a key the client proved it holds.
            m.as_ref()
                .is_none_or(|m| c.valid && sans.iter().any(|s| m.matches(s)))
        };
        (self.fingerprints.is_empty()
            || self
                .fingerprints
                .iter()
                .any(|f| f.as_bytes().eq_ignore_ascii_case(c.fingerprint.as_bytes())))
            && (self.spki_hashes.is_empty() || self.spki_hashes.iter().any(|h| **h == *c.spki_hash))
            && san(&self.san_dns, c.san_dns)
            && san(&self.san_email, c.san_email)
            && san(&self.san_uri, c.san_uri)
    }
}

fn parse_hashes(
    v: &Value,
    path: &str,
    p: &mut Problems,
    canon: fn(&str) -> Result<String, String>,
) -> Option<Box<[Box<str>]>> {
    let items: Vec<(&Value, String)> = match v {
        Value::Sequence(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, x)| (x, format!("{path}[{i}]")))
            .collect(),
        other => vec![(other, path.to_owned())],
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (item, sub) in items {
        let r = match item {
            Value::String(s) => canon(s.trim()),
            other => Err(format!("expected a string, got {}", describe(other))),
        };
        match r {
            Ok(h) => out.push(h.into_boxed_str()),
            Err(e) => {
                p.push(&sub, e);
                ok = false;
            }
        }
    }
    ok.then(|| out.into())
}

/// `64 hex` or `AA:BB:…` (32 bytes) → lower-case 64 hex.
fn canonical_fingerprint(s: &str) -> Result<String, String> {
    let hex: String = if s.contains(':') {
        s.split(':').collect()
    } else {
        s.to_owned()
    };
    let ok = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    let parts_ok = !s.contains(':') || s.split(':').all(|x| x.len() == 2);
    if s.is_empty() {
        Err("empty string".into())
    } else if ok && parts_ok {
        Ok(hex.to_ascii_lowercase())
    } else {
        Err(format!(
            "`{s}` is not a SHA-256 fingerprint (64 hex digits, or 32 colon-separated bytes)"
        ))
    }
}

/// Base64 of a 32-byte SHA-256 → its canonical standard base64.
fn canonical_spki(s: &str) -> Result<String, String> {
    match BASE64.decode(s) {
        _ if s.is_empty() => Err("empty string".into()),
        Ok(b) if b.len() == 32 => Ok(BASE64.encode(b)),
        _ => Err(format!(
            "`{s}` is not a base64-encoded SHA-256 hash of a SubjectPublicKeyInfo"
        )),
    }
}

// === impl Outcome ===

impl Outcome {
    pub(crate) const fn new(holds: bool, reason: Reason) -> Outcome {
        Outcome {
            holds,
            reasons: Reasons::one(reason),
        }
    }

    const fn pick(holds: bool, ok: Reason, bad: Reason) -> Outcome {
        Outcome::new(holds, if holds { ok } else { bad })
    }
}
