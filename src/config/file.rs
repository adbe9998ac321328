//! The file layer: serde structs mirroring the YAML keys exactly (`deny_unknown_fields`).
//! Every field is optional so that one bad key can be dropped and the rest still checked;
//! defaults and rules live in the conversion to the typed config.

use std::{fmt, marker::PhantomData};

use serde::{
    de::{self, Deserializer, MapAccess, SeqAccess, Visitor},
    Deserialize,
};
use serde_yaml::Value;

use super::duration::Dur;

/// The top level of a config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) address: Option<String>,
    pub(super) insecure_server: Option<bool>,
    pub(super) http_redirect_addr: Option<String>,
    pub(super) certificates: Option<Vec<FileCertificate>>,
    pub(super) certificate_file: Option<String>,
    pub(super) certificate_key_file: Option<String>,
    pub(super) certificate: Option<String>,
    pub(super) certificate_key: Option<String>,
    pub(super) metrics_address: Option<String>,
    pub(super) threads: Option<usize>,
    pub(super) shutdown_grace_period: Option<Dur>,
    pub(super) timeout_idle: Option<Dur>,
    pub(super) request_header_timeout: Option<Dur>,
    pub(super) default_upstream_timeout: Option<Dur>,
    pub(super) trusted_proxies: Option<OneOrMany>,
    pub(super) downstream_mtls: Option<FileDownstreamMtls>,
    pub(super) policies_dir: Option<String>,
    pub(super) log_level: Option<String>,
    pub(super) access_log_fields: Option<Vec<String>>,
    pub(super) metrics_basic_auth: Option<String>,
    pub(super) authenticate_service_url: Option<String>,
    pub(super) idp_provider: Option<String>,
    pub(super) idp_provider_url: Option<String>,
    pub(super) idp_client_id: Option<String>,
    pub(super) idp_client_secret: Option<String>,
    pub(super) idp_client_secret_file: Option<String>,
    pub(super) idp_scopes: Option<OneOrMany>,
    pub(super) cookie_name: Option<String>,
    pub(super) cookie_secret: Option<String>,
    pub(super) cookie_secret_file: Option<String>,
    pub(super) cookie_expire: Option<Dur>,
    pub(super) cookie_domain: Option<String>,
    pub(super) cookie_same_site: Option<String>,
    pub(super) session_store: Option<String>,
    pub(super) signing_key: Option<String>,
    pub(super) signing_key_file: Option<String>,
    pub(super) pass_identity_headers: Option<bool>,
    pub(super) jwt_claims_headers: Option<ClaimHeaders>,
    pub(super) identity_providers: Option<Keyed<FileTrustedIssuer>>,
    pub(super) programmatic_redirect_domain_whitelist: Option<Vec<String>>,
    /// Each route is deserialized on its own, so one broken route does not hide the others.
    pub(super) routes: Option<Vec<Value>>,
}

/// One `certificates` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCertificate {
    pub(super) cert_file: Option<String>,
    pub(super) key_file: Option<String>,
    /// Base64 PEM, PEM, or (as Pomerium accepts) a file path.
    pub(super) cert: Option<String>,
    pub(super) key: Option<String>,
}

/// `downstream_mtls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDownstreamMtls {
    pub(super) ca_file: Option<String>,
    pub(super) ca: Option<String>,
    pub(super) crl_file: Option<String>,
    pub(super) crl: Option<String>,
    pub(super) enforcement: Option<String>,
}

/// One `identity_providers` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTrustedIssuer {
    pub(super) issuer: Option<String>,
    pub(super) jwks_url: Option<String>,
    pub(super) audiences: Option<OneOrMany>,
}

/// One entry of `routes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRoute {
    pub(super) from: Option<String>,
    pub(super) prefix: Option<String>,
    pub(super) path: Option<String>,
    pub(super) regex: Option<String>,
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
    pub(super) allow_public_unauthenticated_access: Option<bool>,
    pub(super) allow_any_authenticated_user: Option<bool>,
    pub(super) allowed_users: Option<Vec<String>>,
    pub(super) allowed_domains: Option<Vec<String>>,
    pub(super) allowed_groups: Option<Vec<String>>,
    /// A policy file name, or inline PPL checked later by the policy compiler.
    pub(super) policy: Option<Value>,
    pub(super) pass_identity_headers: Option<bool>,
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
    pub(super) redirect: Option<FileRedirect>,
    pub(super) response: Option<FileResponse>,
    pub(super) show_error_details: Option<bool>,
    pub(super) allow_path_parameters: Option<bool>,
    pub(super) id: Option<String>,
    pub(super) name: Option<String>,
    pub(super) description: Option<String>,
    pub(super) logo_url: Option<String>,
}

/// One `health_checks` entry (Envoy's shape, as Pomerium takes it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileHealthCheck {
    pub(super) timeout: Option<Dur>,
    pub(super) interval: Option<Dur>,
    pub(super) healthy_threshold: Option<u32>,
    pub(super) unhealthy_threshold: Option<u32>,
    pub(super) http_health_check: Option<FileHttpHealthCheck>,
    pub(super) tcp_health_check: Option<FileTcpHealthCheck>,
}

/// `http_health_check`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileHttpHealthCheck {
    pub(super) path: Option<String>,
    pub(super) expected_statuses: Option<Vec<FileStatusRange>>,
}

/// `tcp_health_check: {}` (payload checks are not supported).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTcpHealthCheck {}

/// `{start, end}`: statuses from `start` up to but excluding `end`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileStatusRange {
    pub(super) start: Option<u16>,
    pub(super) end: Option<u16>,
}

/// A route's `redirect` action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRedirect {
    pub(super) https_redirect: Option<bool>,
    pub(super) scheme_redirect: Option<String>,
    pub(super) host_redirect: Option<String>,
    pub(super) port_redirect: Option<u16>,
    pub(super) path_redirect: Option<String>,
    pub(super) prefix_rewrite: Option<String>,
    pub(super) response_code: Option<u16>,
    pub(super) strip_query: Option<bool>,
}

/// A route's `response` action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileResponse {
    pub(super) status: Option<u16>,
    pub(super) body: Option<String>,
}

/// A string or a list of strings.
#[derive(Debug, Clone)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A scalar written as a string, number or boolean, kept as text (header values such as
/// `X-Version: 2`).
#[derive(Debug, Clone)]
pub(super) struct Text(pub(super) String);

/// A mapping kept in file order: `name: value` pairs.
#[derive(Debug, Clone)]
pub(super) struct Keyed<T>(pub(super) Vec<(String, T)>);

/// `jwt_claims_headers`: claim names (list or comma-separated), or header → claim.
#[derive(Debug, Clone)]
pub(super) enum ClaimHeaders {
    Claims(OneOrMany),
    Map(Keyed<String>),
}

// === impl OneOrMany ===

impl OneOrMany {
    /// Each entry with its key path: `path` for a single string, `path[i]` for a list.
    pub(super) fn entries(&self, path: &str) -> Vec<(String, String)> {
        match self {
            OneOrMany::One(one) => vec![(path.to_owned(), one.clone())],
            OneOrMany::Many(many) => many
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{path}[{i}]"), v.clone()))
                .collect(),
        }
    }
}

struct OneOrManyVisitor;

impl<'de> Visitor<'de> for OneOrManyVisitor {
    type Value = OneOrMany;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a list of strings")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
        Ok(OneOrMany::One(v.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<String>()? {
            items.push(item);
        }
        Ok(OneOrMany::Many(items))
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<OneOrMany, D::Error> {
        deserializer.deserialize_any(OneOrManyVisitor)
    }
}

// === impl Keyed ===

struct KeyedVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for KeyedVisitor<T> {
    type Value = Keyed<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keyed<T>, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<String, T>()? {
            entries.push(entry);
        }
        Ok(Keyed(entries))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Keyed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Keyed<T>, D::Error> {
        deserializer.deserialize_map(KeyedVisitor(PhantomData))
    }
}

// === impl ClaimHeaders ===

struct ClaimHeadersVisitor;

impl<'de> Visitor<'de> for ClaimHeadersVisitor {
    type Value = ClaimHeaders;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of claim names or a mapping of header name to claim")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ClaimHeaders, E> {
        OneOrManyVisitor.visit_str(v).map(ClaimHeaders::Claims)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ClaimHeaders, A::Error> {
        OneOrManyVisitor.visit_seq(seq).map(ClaimHeaders::Claims)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ClaimHeaders, A::Error> {
        KeyedVisitor(PhantomData)
            .visit_map(map)
            .map(ClaimHeaders::Map)
    }
}

impl<'de> Deserialize<'de> for ClaimHeaders {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ClaimHeaders, D::Error> {
        deserializer.deserialize_any(ClaimHeadersVisitor)
    }
}

// === impl Text ===

struct TextVisitor;

impl Visitor<'_> for TextVisitor {
    type Value = Text;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
        Ok(Text(v.to_owned()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }
}
