//! What a policy decides on: the signed-in subject and the facts of one request.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use serde::{Deserialize, Serialize};

/// The signed-in user a policy is evaluated for (built by the session layer from the ID token
/// and userinfo). Absent for anonymous requests.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Subject {
    /// The stable user id: issuer and subject joined as `"{iss}|{sub}"` (see
    /// [`Subject::user_id_of`]). `user` criteria match this, never the email.
    pub user_id: String,
    /// The `email` claim as the IdP sent it.
    pub email: Option<String>,
    /// The `email_verified` claim; `email`/`domain` criteria only match when true.
    pub email_verified: bool,
    /// Display name, for the user page; no criterion reads it.
    pub name: Option<String>,
    /// Group ids or names as the IdP sent them; `groups` criteria match these.
    pub groups: Vec<String>,
    /// Other claims, flattened: claim name (nested objects joined with `/`) → values (a scalar
    /// claim is a one-element list). `claim/<name>` criteria match these.
    pub claims: BTreeMap<String, Vec<ClaimValue>>,
}

/// One scalar value of a claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClaimValue {
    /// A JSON boolean.
    Bool(bool),
    /// A JSON number (compared numerically, as Rego does).
    Number(f64),
    /// A JSON string.
    String(String),
}

/// The facts of one request that policies may read. Borrowed from the request context;
/// building one does not allocate.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The request method as sent (criteria compare it ASCII-case-insensitively).
    pub method: &'a str,
    /// The canonical path (never the query string): the one routing used and the upstream gets.
    pub path: &'a str,
    /// The client address (the TCP peer, or the forwarded client of a trusted proxy). `None`
    /// (e.g. a Unix socket peer) matches no `source_ip`.
    pub source_ip: Option<IpAddr>,
    /// The client certificate; `None` when none was presented.
    pub client_certificate: Option<ClientCertFacts<'a>>,
    /// The `Origin` request header, if present.
    pub origin: Option<&'a str>,
    /// The `Access-Control-Request-Method` request header, if present.
    pub access_control_request_method: Option<&'a str>,
}

/// A presented client certificate as the TLS layer (or a policy table test) describes it;
/// [`ClientCertificate::facts`] is the view policies evaluate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificate {
    /// It chains to the `downstream_mtls` CA, is within its validity and not revoked
    /// (table tests: presented certificates are valid unless they say `valid: false`).
    #[serde(default = "valid_by_default")]
    pub valid: bool,
    /// SHA-256 of the certificate DER, lower-case hex.
    #[serde(default)]
    pub fingerprint: String,
    /// SHA-256 of the SubjectPublicKeyInfo DER, standard base64 (as Pomerium).
    #[serde(default)]
    pub spki_hash: String,
    #[serde(default)]
    pub san_dns: Vec<String>,
    #[serde(default)]
    pub san_email: Vec<String>,
    #[serde(default)]
    pub san_uri: Vec<String>,
}

fn valid_by_default() -> bool {
    true
}

impl ClientCertificate {
    /// The borrowed view policies evaluate.
    pub fn facts(&self) -> ClientCertFacts<'_> {
        ClientCertFacts {
            valid: self.valid,
            fingerprint: &self.fingerprint,
            spki_hash: &self.spki_hash,
            san_dns: &self.san_dns,
            san_email: &self.san_email,
            san_uri: &self.san_uri,
        }
    }
}

/// Facts of a presented client certificate, computed once per TLS connection.
#[derive(Debug, Clone, Copy)]
pub struct ClientCertFacts<'a> {
    /// Whether the chain verified against `downstream_mtls` CA (and CRL).
    pub valid: bool,
    /// SHA-256 of the leaf DER, lower-case hex (64 characters).
    pub fingerprint: &'a str,
    /// SHA-256 of the leaf's SubjectPublicKeyInfo DER, standard base64 (44 characters).
    pub spki_hash: &'a str,
    /// DNS subject alternative names.
    pub san_dns: &'a [String],
    /// Email subject alternative names.
    pub san_email: &'a [String],
    /// URI subject alternative names.
    pub san_uri: &'a [String],
}

/// Which inputs a compiled policy reads; the decision cache keys on exactly these (and, for
/// [`FactSet::TIME`], expires entries at the policy's next time boundary instead).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FactSet(u8);

// === impl Subject ===

impl Subject {
    /// The stable user id for an issuer and subject: `"{iss}|{sub}"`.
    pub fn user_id_of(issuer: &str, subject: &str) -> String {
        format!("{issuer}|{subject}")
    }

    /// Turns a JSON claims object into [`Subject::claims`]: arrays become lists of their
    /// scalars, scalars one-element lists, nested objects `/`-joined names (up to 8 levels);
    /// nulls are dropped.
    pub fn claims_from_json(
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> BTreeMap<String, Vec<ClaimValue>> {
        let mut out = BTreeMap::new();
        flatten_claims(&mut out, "", claims, 0);
        out
    }

    /// The email address `email`/`domain` criteria may use: present, verified, and with
    /// exactly one `@` that is neither first nor last.
    pub fn verified_email(&self) -> Option<&str> {
        let email = self.email.as_deref()?;
        if !self.email_verified {
            return None;
        }
        let at = email.find('@')?;
        let ok = at > 0 && at + 1 < email.len() && !email[at + 1..].contains('@');
        ok.then_some(email)
    }
}

fn flatten_claims(
    out: &mut BTreeMap<String, Vec<ClaimValue>>,
    prefix: &str,
    obj: &serde_json::Map<String, serde_json::Value>,
    depth: usize,
) {
    use serde_json::Value;
    for (k, v) in obj {
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}/{k}")
        };
        match v {
            Value::Object(inner) if depth < 8 => flatten_claims(out, &name, inner, depth + 1),
            Value::Array(items) => {
                let values: Vec<ClaimValue> =
                    items.iter().filter_map(ClaimValue::from_json).collect();
                out.insert(name, values);
            }
            other => {
                if let Some(cv) = ClaimValue::from_json(other) {
                    out.insert(name, vec![cv]);
                }
            }
        }
    }
}

// === impl ClaimValue ===

impl ClaimValue {
    /// The claim value for a JSON scalar; `None` for null, arrays and objects.
    pub fn from_json(v: &serde_json::Value) -> Option<ClaimValue> {
        match v {
            serde_json::Value::Bool(b) => Some(ClaimValue::Bool(*b)),
            serde_json::Value::Number(n) => n.as_f64().map(ClaimValue::Number),
            serde_json::Value::String(s) => Some(ClaimValue::String(s.clone())),
            _ => None,
        }
    }
}

// === impl RequestFacts ===

impl<'a> RequestFacts<'a> {
    /// Facts for a plain request: no certificate, no CORS headers.
    pub fn new(method: &'a str, path: &'a str, source_ip: Option<IpAddr>) -> Self {
        RequestFacts {
            method,
            path,
            source_ip,
            client_certificate: None,
            origin: None,
            access_control_request_method: None,
        }
    }
}

// === impl FactSet ===

impl FactSet {
    /// No facts.
    pub const NONE: FactSet = FactSet(0);
    /// The request method (`http_method`, `cors_preflight`).
    pub const METHOD: FactSet = FactSet(1);
    /// The canonical path (`http_path`).
    pub const PATH: FactSet = FactSet(1 << 1);
    /// The client address (`source_ip`).
    pub const SOURCE_IP: FactSet = FactSet(1 << 2);
    /// The client certificate (`client_certificate`, `invalid_client_certificate`).
    pub const CLIENT_CERT: FactSet = FactSet(1 << 3);
    /// The clock (`date`, `day_of_week`, `time_of_day`).
    pub const TIME: FactSet = FactSet(1 << 4);
    /// Whether `Origin` and `Access-Control-Request-Method` are present (`cors_preflight`).
    pub const HEADERS: FactSet = FactSet(1 << 5);
    /// The signed-in subject (any user, email, domain, group or claim criterion). A policy
    /// without it decides the same for everyone, signed in or not.
    pub const SUBJECT: FactSet = FactSet(1 << 6);

    const NAMES: [(FactSet, &'static str); 7] = [
        (FactSet::METHOD, "method"),
        (FactSet::PATH, "path"),
        (FactSet::SOURCE_IP, "source_ip"),
        (FactSet::CLIENT_CERT, "client_cert"),
        (FactSet::TIME, "time"),
        (FactSet::HEADERS, "headers"),
        (FactSet::SUBJECT, "subject"),
    ];

    /// Whether every fact of `other` is in `self`.
    pub const fn contains(self, other: FactSet) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of both sets.
    pub const fn union(self, other: FactSet) -> FactSet {
        FactSet(self.0 | other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the members (`method`, `path`, `source_ip`, `client_cert`, `time`,
    /// `headers`, `subject`).
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        FactSet::NAMES
            .into_iter()
            .filter(move |(f, _)| self.contains(*f))
            .map(|(_, n)| n)
    }
}

impl fmt::Debug for FactSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}
