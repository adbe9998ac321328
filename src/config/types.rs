//! The validated, typed configuration. Nothing here derives `Deserialize`: values are built
//! only by `config::load`/`config::parse` from the file structs, after validation.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use http::{HeaderName, HeaderValue};
use ipnet::IpNet;
use regex::Regex;

/// A whole validated configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// `address`: the public listener (default `:443`, or `:80` with `insecure_server`).
    pub address: SocketAddr,
    /// `insecure_server`: serve plain HTTP on `address` (default false).
    pub insecure_server: bool,
    /// `http_redirect_addr`: plain-HTTP listener answering 301 to https.
    pub http_redirect_addr: Option<SocketAddr>,
    /// `certificates` plus `certificate_file`/`certificate_key_file`, in that order.
    /// Non-empty unless `insecure_server`.
    pub certificates: Vec<CertificatePair>,
    /// `metrics_address`: the admin listener (`/metrics`, `/healthz`, `/readyz`).
    pub metrics_address: Option<SocketAddr>,
    /// `threads`: worker threads (0 = number of CPUs; default 0).
    pub threads: usize,
    /// `shutdown_grace_period`: how long SIGTERM waits for in-flight requests (default 30s).
    pub shutdown_grace_period: Duration,
    /// `timeout_idle`: idle downstream keep-alive connections are closed after this (default 5m).
    pub timeout_idle: Duration,
    /// `request_header_timeout`: total deadline for reading a request's headers (default 10s).
    pub request_header_timeout: Duration,
    /// `default_upstream_timeout`: a route's `timeout` when it has none (default 30s).
    pub default_upstream_timeout: Duration,
    /// `trusted_proxies`: peers whose X-Forwarded-* / Forwarded headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// `downstream_mtls`.
    pub downstream_mtls: Option<DownstreamMtls>,
    /// `policies_dir` (relative paths are resolved against the config file's directory).
    pub policies_dir: Option<PathBuf>,
    /// `log_level` (default `info`).
    pub log_level: LogLevel,
    /// `access_log_fields`: what each access line holds (default: all but the user agent).
    pub access_log_fields: Vec<crate::access_log::Field>,
    /// `metrics_basic_auth`: credentials the admin listener's `/metrics` requires.
    pub metrics_basic_auth: Option<BasicAuth>,
    /// Settings owned by the identity work; validated now.
    pub identity: IdentitySettings,
    /// `routes`, in declaration order.
    pub routes: Vec<Route>,
}

/// A user name and password (HTTP Basic).
#[derive(Clone)]
pub struct BasicAuth {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// One certificate chain and its key, as PEM file paths (inline `cert`/`key` base64 values
/// are written to nothing: they are kept in memory as PEM bytes).
#[derive(Debug, Clone)]
pub struct CertificatePair {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// Where it came from, for messages (`certificates[1]`, `certificate_file`).
    pub origin: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// `downstream_mtls: {ca_file | ca, crl_file | crl, enforcement}`.
#[derive(Debug, Clone)]
pub struct DownstreamMtls {
    pub ca_pem: Vec<u8>,
    pub crl_pem: Option<Vec<u8>>,
    pub enforcement: MtlsEnforcement,
}

/// Pomerium's `downstream_mtls.enforcement` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtlsEnforcement {
    /// Default: a request without a valid client certificate is denied unless the route's
    /// policy explicitly decides on `invalid_client_certificate`.
    PolicyWithDefaultDeny,
    /// The certificate is only made available to policies.
    Policy,
    /// The TLS handshake fails without a valid client certificate.
    RejectConnection,
}

/// Settings of the identity work (OIDC, sessions, signing). Validated, not yet acted on
/// beyond that by the data plane.
#[derive(Debug, Clone, Default)]
pub struct IdentitySettings {
    pub authenticate_service_url: Option<url::Url>,
    pub idp_provider: Option<IdpProvider>,
    pub idp_provider_url: Option<url::Url>,
    pub idp_client_id: Option<String>,
    pub idp_client_secret: Option<String>,
    pub idp_scopes: Vec<String>,
    pub cookie_name: String,
    pub cookie_secret: Option<[u8; 32]>,
    pub cookie_expire: Duration,
    pub cookie_domain: Option<String>,
    pub cookie_same_site: SameSite,
    pub session_store: SessionStoreUrl,
    pub signing_key_pem: Option<Vec<u8>>,
    pub pass_identity_headers: bool,
    /// (header name, claim name)
    pub jwt_claims_headers: Vec<(HeaderName, String)>,
    pub identity_providers: Vec<TrustedIssuer>,
    pub programmatic_redirect_domain_whitelist: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdpProvider {
    Oidc,
    Google,
    Okta,
    Azure,
    Gitlab,
    Auth0,
    Github,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    #[default]
    Lax,
    Strict,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SessionStoreUrl {
    #[default]
    Memory,
    /// `redis://`, `rediss://`, `redis+sentinel://`, `redis+cluster://` (kept verbatim).
    Redis(String),
}

#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    pub name: String,
    pub issuer: String,
    pub jwks_url: url::Url,
    pub audiences: Vec<String>,
}

/// One route: what it matches, who may use it, and what it does.
#[derive(Debug, Clone)]
pub struct Route {
    /// Position in `routes` (0-based); ties in matching go to the lower index.
    pub index: usize,
    /// `name`, or `from` + path matcher when unnamed. Used as the metric label.
    pub name: String,
    /// `id` (display metadata, as Pomerium's route id).
    pub id: Option<String>,
    /// `description` (display metadata).
    pub description: Option<String>,
    /// `logo_url` (display metadata).
    pub logo_url: Option<String>,
    pub from: FromUrl,
    pub path: PathMatch,
    pub action: RouteAction,
    pub access: Access,
    /// `show_error_details`: deny pages carry the reasons (default false).
    pub show_error_details: bool,
    /// `allow_path_parameters`: `;` in paths is allowed on this route (default false).
    pub allow_path_parameters: bool,
}

/// `from: scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromUrl {
    pub https: bool,
    pub host: HostPattern,
    /// None: any port.
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Lower-case host name or IP literal.
    Exact(String),
    /// `*.example.com` stored as `.example.com` (lower-case); matches one or more labels.
    Wildcard(String),
}

/// `path` | `prefix` | `regex` (at most one may be set; none = any path).
#[derive(Debug, Clone)]
pub enum PathMatch {
    Any,
    Exact(String),
    /// Stored without a trailing `/` (except the root `/`), matched on segment boundaries.
    Prefix(String),
    /// Anchored full-match regex over the canonical path.
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub enum RouteAction {
    Proxy(Box<ProxyAction>),
    Redirect(RedirectAction),
    Response(StaticResponse),
}

/// Who may use a route: the rules as written, and the policy compiled from them.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub allow_public_unauthenticated_access: bool,
    pub allow_any_authenticated_user: bool,
    pub allowed_users: Vec<String>,
    pub allowed_domains: Vec<String>,
    pub allowed_groups: Vec<String>,
    /// `policy`: inline PPL or the name of a file in `policies_dir`.
    pub policy: Option<PolicySource>,
    /// `pass_identity_headers` override for this route.
    pub pass_identity_headers: Option<bool>,
    /// The effective policy compiled from the fields above (and the default mTLS rule), set
    /// by `config::load`/`config::parse` once the config validates. Default: deny all.
    pub compiled: Arc<crate::policy::Policy>,
}

#[derive(Debug, Clone)]
pub enum PolicySource {
    /// The YAML value of an inline policy, with the key path it sits at.
    Inline(serde_yaml::Value),
    /// A file name in `policies_dir` (`NAME` → `NAME.yaml`).
    Named(String),
}

#[derive(Debug, Clone)]
pub struct ProxyAction {
    pub to: Vec<UpstreamUrl>,
    pub load_balancing_policy: LoadBalancingPolicy,
    pub health_check: Option<HealthCheck>,
    pub prefix_rewrite: Option<String>,
    /// (`regex_rewrite_pattern`, `regex_rewrite_substitution`)
    pub regex_rewrite: Option<(Regex, String)>,
    pub preserve_host_header: bool,
    pub host_rewrite: Option<String>,
    pub set_request_headers: Vec<(HeaderName, HeaderValue)>,
    pub remove_request_headers: Vec<HeaderName>,
    pub set_response_headers: Vec<(HeaderName, HeaderValue)>,
    /// `timeout` (default: `default_upstream_timeout`); 0 = none.
    pub timeout: Duration,
    /// `idle_timeout` (default 5m); 0 = none.
    pub idle_timeout: Duration,
    pub allow_websockets: bool,
    pub tls: UpstreamTls,
}

/// One `to` entry: `http://`, `https://` or `h2c://` URL, optional `,weight`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub scheme: UpstreamScheme,
    /// Host name or IP literal (no brackets), as written.
    pub host: String,
    /// Explicit port or the scheme's default.
    pub port: u16,
    /// Path of the URL, if any besides `/` (prepended to forwarded paths, as Pomerium).
    pub path: String,
    /// Default 1.
    pub weight: u32,
    /// The entry as written, for messages and metric labels.
    pub raw: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamScheme {
    Http,
    Https,
    H2c,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadBalancingPolicy {
    #[default]
    RoundRobin,
    Random,
    RingHash,
    Maglev,
    LeastRequest,
}

/// `health_checks: [{timeout, interval, healthy_threshold, unhealthy_threshold,
/// http_health_check: {path, expected_statuses: [{start, end}]} | tcp_health_check: {}}]`
/// (only the first entry is used; more than one is a validation error).
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// `timeout` of one probe (default 5s).
    pub timeout: Duration,
    /// `interval` between probes (default 10s).
    pub interval: Duration,
    /// `healthy_threshold`: successes before a backend is healthy again (default 1).
    pub healthy_threshold: u32,
    /// `unhealthy_threshold`: failures before a backend is ejected (default 3).
    pub unhealthy_threshold: u32,
    pub kind: HealthCheckKind,
}

#[derive(Debug, Clone)]
pub enum HealthCheckKind {
    Tcp,
    Http {
        path: String,
        /// Half-open ranges `[start, end)`; default `[200, 300)`.
        expected_statuses: Vec<(u16, u16)>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct UpstreamTls {
    pub skip_verify: bool,
    pub server_name: Option<String>,
    pub custom_ca_pem: Option<Vec<u8>>,
    pub client_cert: Option<CertificatePair>,
}

/// Pomerium's `redirect:` route action.
#[derive(Debug, Clone, Default)]
pub struct RedirectAction {
    pub https_redirect: bool,
    pub scheme_redirect: Option<String>,
    pub host_redirect: Option<String>,
    pub port_redirect: Option<u16>,
    pub path_redirect: Option<String>,
    pub prefix_rewrite: Option<String>,
    /// 301 (default), 302, 303, 307 or 308.
    pub response_code: u16,
    pub strip_query: bool,
}

/// Pomerium's `response: {status, body}` route action.
#[derive(Debug, Clone)]
pub struct StaticResponse {
    pub status: u16,
    pub body: String,
}
