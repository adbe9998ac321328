//! Every metric family gatehouse exports, defined in one place. Labels are bounded: route
//! names come from the configuration, the rest are closed enums (never a path, user, email or
//! session id).
//!
//! The request path never hashes labels: per-route handles are resolved when a snapshot is
//! built ([`RouteMetrics`]), or once on first use for the sparse families (histograms,
//! decisions, upstream errors), so that a config with 10,000 routes does not export series
//! for routes nobody used.

use std::sync::OnceLock;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::policy::{Reason, Reasons};

/// HTTP status classes used as the `status_class` label.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Latency buckets (seconds) for request, upstream and store durations: a proxy hop is
/// tens of microseconds, a slow upstream seconds.
const LATENCY_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Why a request to an upstream failed (`kind` label of `gatehouse_upstream_errors_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    ConnectRefused,
    ConnectTimeout,
    ConnectError,
    Tls,
    Timeout,
    Closed,
    Protocol,
    NoHealthyBackend,
    Other,
}

/// What the authorization decision was (`decision` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionKind {
    Allow,
    Deny,
    Login,
}

/// Session store operations (`op` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    Get,
    Put,
    Delete,
    PutCode,
    TakeCode,
    Lock,
    Unlock,
    Publish,
}

/// Outcome of a store operation (`result` label): `miss` is a read that found nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreResult {
    Ok,
    Miss,
    Error,
}

/// Calls to the identity provider (`op` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdpOp {
    /// The discovery document (and, with it, the JWKS).
    Discovery,
    /// A JWKS refetch for an unknown key id.
    Jwks,
    /// The authorization-code exchange at the token endpoint.
    Token,
    /// A refresh-token grant.
    Refresh,
    Userinfo,
    /// A provider API call (GitHub's user, emails, orgs and teams).
    Api,
}

/// The metric families. One instance per process, registered in its own registry.
pub struct Metrics {
    pub registry: Registry,
    pub http_requests_total: IntCounterVec,
    http_request_duration_seconds: HistogramVec,
    upstream_request_duration_seconds: HistogramVec,
    upstream_errors_total: IntCounterVec,
    authz_decisions_total: IntCounterVec,
    pub upstream_backend_healthy: IntGaugeVec,
    pub downstream_connections: IntGauge,
    pub config_last_reload_success: IntGauge,
    pub config_last_reload_success_timestamp_seconds: IntGauge,
    pub config_reloads_total: IntCounterVec,
    pub build_info: IntGaugeVec,
    pub identity: IdentityMetrics,
}

/// Families of the identity path. Cloned into the identity runtime (handles are shared).
#[derive(Clone)]
pub struct IdentityMetrics {
    /// Finished sign-ins, by result (`success`, `rejected`, `unavailable`).
    pub logins_total: IntCounterVec,
    /// Background token refreshes, by result (`success`, `failure`, `invalid_grant`).
    pub refreshes_total: IntCounterVec,
    /// Sessions ended by sign-out.
    pub sign_outs_total: IntCounter,
    /// Decision cache lookups (synchronised from the cache at scrape time).
    pub authz_cache_hits: IntCounter,
    pub authz_cache_misses: IntCounter,
    /// Session cache lookups on the request path.
    pub session_cache_hits: IntCounter,
    pub session_cache_misses: IntCounter,
    /// Session store operations and their durations.
    pub store: StoreMetrics,
    /// Calls to the identity provider.
    pub idp: IdpMetrics,
    /// 1 when the session store answers (and, for Redis, invalidations arrive).
    pub session_store_up: IntGaugeVec,
}

/// Pre-resolved handles of `gatehouse_session_store_*`, indexed by [`StoreOp`] and
/// [`StoreResult`].
#[derive(Clone)]
pub struct StoreMetrics {
    operations: [[IntCounter; 3]; 8],
    durations: [Histogram; 8],
}

/// Pre-resolved handles of `gatehouse_idp_requests_total`, indexed by [`IdpOp`] and
/// ok/error.
#[derive(Clone)]
pub struct IdpMetrics([[IntCounter; 2]; 6]);

/// Decision counters per decision kind: one per reason, and one for none.
const REASON_SLOTS: usize = Reason::ALL.len() + 1;

/// The handles of one route (or of "no route"), made once per snapshot build. Request
/// counters are resolved eagerly; the rest on first use.
pub struct RouteMetrics {
    route: String,
    requests: [IntCounter; 5],
    duration: OnceLock<Histogram>,
    upstream_duration: OnceLock<Histogram>,
    upstream_errors: [OnceLock<IntCounter>; 9],
    /// Indexed by decision × (first reason, or none).
    decisions: OnceLock<Box<[OnceLock<IntCounter>; 3 * REASON_SLOTS]>>,
    // Families the lazy handles come from (cheap clones of `Arc`s).
    families: RouteFamilies,
}

#[derive(Clone)]
struct RouteFamilies {
    duration: HistogramVec,
    upstream_duration: HistogramVec,
    upstream_errors: IntCounterVec,
    decisions: IntCounterVec,
}

// === impl UpstreamErrorKind ===

impl UpstreamErrorKind {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::ConnectRefused => "connect_refused",
            UpstreamErrorKind::ConnectTimeout => "connect_timeout",
            UpstreamErrorKind::ConnectError => "connect_error",
            UpstreamErrorKind::Tls => "tls",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Closed => "closed",
            UpstreamErrorKind::Protocol => "protocol",
            UpstreamErrorKind::NoHealthyBackend => "no_healthy_backend",
            UpstreamErrorKind::Other => "other",
        }
    }
}

// === impl DecisionKind ===

impl DecisionKind {
    /// The label value (the names of [`crate::policy::Decision::as_str`]).
    pub const fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Allow => "allow",
            DecisionKind::Deny => "deny",
            DecisionKind::Login => "login",
        }
    }
}

// === impl StoreOp ===

impl StoreOp {
    const ALL: [StoreOp; 8] = [
        StoreOp::Get,
        StoreOp::Put,
        StoreOp::Delete,
        StoreOp::PutCode,
        StoreOp::TakeCode,
        StoreOp::Lock,
        StoreOp::Unlock,
        StoreOp::Publish,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            StoreOp::Get => "get",
            StoreOp::Put => "put",
            StoreOp::Delete => "delete",
            StoreOp::PutCode => "put_code",
            StoreOp::TakeCode => "take_code",
            StoreOp::Lock => "lock",
            StoreOp::Unlock => "unlock",
            StoreOp::Publish => "publish",
        }
    }
}

const STORE_RESULTS: [&str; 3] = ["ok", "miss", "error"];

// === impl IdpOp ===

impl IdpOp {
    const ALL: [IdpOp; 6] = [
        IdpOp::Discovery,
        IdpOp::Jwks,
        IdpOp::Token,
        IdpOp::Refresh,
        IdpOp::Userinfo,
        IdpOp::Api,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            IdpOp::Discovery => "discovery",
            IdpOp::Jwks => "jwks",
            IdpOp::Token => "token",
            IdpOp::Refresh => "refresh",
            IdpOp::Userinfo => "userinfo",
            IdpOp::Api => "api",
        }
    }
}

// === impl Metrics ===

impl Metrics {
    /// Creates and registers every family (and the process collector on Linux).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let http_requests_total = IntCounterVec::new(
            Opts::new(
                "gatehouse_http_requests_total",
                "HTTP requests answered, by route and status class.",
            ),
            &["route", "status_class"],
        )?;
        let http_request_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "gatehouse_http_request_duration_seconds",
                "Time from the request's arrival to the end of the response, by route.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let upstream_request_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "gatehouse_upstream_request_duration_seconds",
                "Time from choosing a backend to its response headers (connect included), \
                 by route.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let upstream_errors_total = IntCounterVec::new(
            Opts::new(
                "gatehouse_upstream_errors_total",
                "Failed attempts to reach or read from an upstream, by route and kind.",
            ),
            &["route", "kind"],
        )?;
        let authz_decisions_total = IntCounterVec::new(
            Opts::new(
                "gatehouse_authz_decisions_total",
                "Authorization decisions, by route, decision (allow, deny, login) and the \
                 decision's first reason (all reasons are in the access log).",
            ),
            &["route", "decision", "reason"],
        )?;
        let upstream_backend_healthy = IntGaugeVec::new(
            Opts::new(
                "gatehouse_upstream_backend_healthy",
                "1 when the backend passes its health check (or has none), else 0.",
            ),
            &["route", "backend"],
        )?;
        let downstream_connections = IntGauge::new(
            "gatehouse_downstream_connections",
            "Client connections currently open on the public listeners.",
        )?;
        let config_last_reload_success = IntGauge::new(
            "gatehouse_config_last_reload_success",
            "1 when the last configuration load succeeded, else 0.",
        )?;
        let config_last_reload_success_timestamp_seconds = IntGauge::new(
            "gatehouse_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.",
        )?;
        let config_reloads_total = IntCounterVec::new(
            Opts::new(
                "gatehouse_config_reloads_total",
                "Configuration reload attempts, by result.",
            ),
            &["result"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("gatehouse_build_info", "Build information; always 1."),
            &["version"],
        )?;
        registry.register(Box::new(http_requests_total.clone()))?;
        registry.register(Box::new(http_request_duration_seconds.clone()))?;
        registry.register(Box::new(upstream_request_duration_seconds.clone()))?;
        registry.register(Box::new(upstream_errors_total.clone()))?;
        registry.register(Box::new(authz_decisions_total.clone()))?;
        registry.register(Box::new(upstream_backend_healthy.clone()))?;
        registry.register(Box::new(downstream_connections.clone()))?;
        registry.register(Box::new(config_last_reload_success.clone()))?;
        registry.register(Box::new(
            config_last_reload_success_timestamp_seconds.clone(),
        ))?;
        registry.register(Box::new(config_reloads_total.clone()))?;
        registry.register(Box::new(build_info.clone()))?;
        for result in ["success", "failure"] {
            config_reloads_total.with_label_values(&[result]);
        }
        let identity = IdentityMetrics::register(&registry)?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Ok(Metrics {
            registry,
            http_requests_total,
            http_request_duration_seconds,
            upstream_request_duration_seconds,
            upstream_errors_total,
            authz_decisions_total,
            upstream_backend_healthy,
            downstream_connections,
            config_last_reload_success,
            config_last_reload_success_timestamp_seconds,
            config_reloads_total,
            build_info,
            identity,
        })
    }

    /// The handles of one route label (made once per snapshot build).
    pub fn route_metrics(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            route: route.to_owned(),
            requests: STATUS_CLASSES
                .map(|class| self.http_requests_total.with_label_values(&[route, class])),
            duration: OnceLock::new(),
            upstream_duration: OnceLock::new(),
            upstream_errors: Default::default(),
            decisions: OnceLock::new(),
            families: RouteFamilies {
                duration: self.http_request_duration_seconds.clone(),
                upstream_duration: self.upstream_request_duration_seconds.clone(),
                upstream_errors: self.upstream_errors_total.clone(),
                decisions: self.authz_decisions_total.clone(),
            },
        }
    }

    /// Renders every family in the Prometheus text format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let encoder = prometheus::TextEncoder::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = prometheus::Encoder::encode(&encoder, &self.registry.gather(), &mut out);
        out
    }
}

// === impl IdentityMetrics ===

impl IdentityMetrics {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let logins_total = IntCounterVec::new(
            Opts::new(
                "gatehouse_logins_total",
                "Finished sign-ins (IdP callbacks), by result.",
            ),
            &["result"],
        )?;
        let refreshes_total = IntCounterVec::new(
            Opts::new(
                "gatehouse_session_refreshes_total",
                "Background IdP token refreshes, by result.",
            ),
            &["result"],
        )?;
        let sign_outs_total =
            IntCounter::new("gatehouse_sign_outs_total", "Sessions ended by sign-out.")?;
        let authz_cache = IntCounterVec::new(
            Opts::new(
                "gatehouse_authz_cache_lookups_total",
                "Authorization decision cache lookups, by result (hit, miss).",
            ),
            &["result"],
        )?;
        let session_cache = IntCounterVec::new(
            Opts::new(
                "gatehouse_session_cache_lookups_total",
                "Lookups of a request's session in the instance's cache, by result (hit, \
                 miss: read from the store).",
            ),
            &["result"],
        )?;
        let store_operations = IntCounterVec::new(
            Opts::new(
                "gatehouse_session_store_operations_total",
                "Session store operations, by operation and result (ok, miss, error).",
            ),
            &["op", "result"],
        )?;
        let store_durations = HistogramVec::new(
            HistogramOpts::new(
                "gatehouse_session_store_duration_seconds",
                "Session store operation latency, by operation.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["op"],
        )?;
        let idp_requests = IntCounterVec::new(
            Opts::new(
                "gatehouse_idp_requests_total",
                "Requests to the identity provider, by operation and result (ok, error).",
            ),
            &["op", "result"],
        )?;
        let session_store_up = IntGaugeVec::new(
            Opts::new(
                "gatehouse_session_store_up",
                "1 when the session store is connected (connection) and invalidations \
                 arrive (subscription), else 0.",
            ),
            &["kind", "check"],
        )?;
        registry.register(Box::new(logins_total.clone()))?;
        registry.register(Box::new(refreshes_total.clone()))?;
        registry.register(Box::new(sign_outs_total.clone()))?;
        registry.register(Box::new(authz_cache.clone()))?;
        registry.register(Box::new(session_cache.clone()))?;
        registry.register(Box::new(store_operations.clone()))?;
        registry.register(Box::new(store_durations.clone()))?;
        registry.register(Box::new(idp_requests.clone()))?;
        registry.register(Box::new(session_store_up.clone()))?;
        for result in ["success", "rejected", "unavailable"] {
            logins_total.with_label_values(&[result]);
        }
        for result in ["success", "failure", "invalid_grant"] {
            refreshes_total.with_label_values(&[result]);
        }
        let store = StoreMetrics {
            operations: StoreOp::ALL.map(|op| {
                STORE_RESULTS.map(|r| store_operations.with_label_values(&[op.as_str(), r]))
            }),
            durations: StoreOp::ALL.map(|op| store_durations.with_label_values(&[op.as_str()])),
        };
        let idp =
            IdpMetrics(IdpOp::ALL.map(|op| {
                ["ok", "error"].map(|r| idp_requests.with_label_values(&[op.as_str(), r]))
            }));
        Ok(IdentityMetrics {
            logins_total,
            refreshes_total,
            sign_outs_total,
            authz_cache_hits: authz_cache.with_label_values(&["hit"]),
            authz_cache_misses: authz_cache.with_label_values(&["miss"]),
            session_cache_hits: session_cache.with_label_values(&["hit"]),
            session_cache_misses: session_cache.with_label_values(&["miss"]),
            store,
            idp,
            session_store_up,
        })
    }

    /// Brings a counter that mirrors an external monotonic count up to `value`.
    pub fn sync_counter(counter: &IntCounter, value: u64) {
        let current = counter.get();
        if value > current {
            counter.inc_by(value - current);
        }
    }
}

// === impl StoreMetrics ===

impl StoreMetrics {
    /// Records one operation and how long it took.
    pub fn observe(&self, op: StoreOp, result: StoreResult, seconds: f64) {
        self.operations[op as usize][result as usize].inc();
        self.durations[op as usize].observe(seconds);
    }
}

// === impl IdpMetrics ===

impl IdpMetrics {
    /// Counts one call to the identity provider; passes the result through.
    pub fn observe<T, E>(&self, op: IdpOp, result: Result<T, E>) -> Result<T, E> {
        self.0[op as usize][usize::from(result.is_err())].inc();
        result
    }
}

// === impl RouteMetrics ===

impl RouteMetrics {
    /// Counts one answered request with HTTP status `status` that took `seconds`.
    pub fn observe(&self, status: u16, seconds: f64) {
        self.count(status);
        self.duration
            .get_or_init(|| self.families.duration.with_label_values(&[&self.route]))
            .observe(seconds);
    }

    /// Counts one answered request whose duration is not known (a head refused before
    /// parsing): it adds no sample to the duration histogram.
    pub fn count(&self, status: u16) {
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        };
        self.requests[class].inc();
    }

    /// Records the time from choosing a backend to its response headers.
    pub fn observe_upstream(&self, seconds: f64) {
        self.upstream_duration
            .get_or_init(|| {
                self.families
                    .upstream_duration
                    .with_label_values(&[&self.route])
            })
            .observe(seconds);
    }

    /// Counts one failed upstream attempt.
    pub fn upstream_error(&self, kind: UpstreamErrorKind) {
        self.upstream_errors[kind as usize]
            .get_or_init(|| {
                self.families
                    .upstream_errors
                    .with_label_values(&[&self.route, kind.as_str()])
            })
            .inc();
    }

    /// Counts one authorization decision, labelled with its first reason.
    pub fn decision(&self, decision: DecisionKind, reasons: Reasons) {
        let first = reasons.iter().next();
        let slot =
            decision as usize * REASON_SLOTS + first.map_or(REASON_SLOTS - 1, |r| r as usize);
        let all = self
            .decisions
            .get_or_init(|| Box::new(std::array::from_fn(|_| OnceLock::new())));
        all[slot]
            .get_or_init(|| {
                let reason = first.map_or("none", Reason::as_str);
                self.families
                    .decisions
                    .with_label_values(&[&self.route, decision.as_str(), reason])
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let families = m.registry.gather();
        let family = families.iter().find(|f| f.name() == name)?;
        family
            .get_metric()
            .iter()
            .find(|metric| {
                labels.iter().all(|(k, v)| {
                    metric
                        .get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map(|metric| {
                if metric.get_counter().has_value() {
                    metric.get_counter().value()
                } else if metric.get_histogram().has_sample_count() {
                    metric.get_histogram().get_sample_count() as f64
                } else {
                    metric.get_gauge().value()
                }
            })
    }

    #[test]
    fn route_handles_count_into_their_labels() {
        let m = Metrics::new().unwrap();
        let r = m.route_metrics("api");
        r.observe(204, 0.001);
        r.observe(503, 0.2);
        r.observe_upstream(0.0005);
        r.upstream_error(UpstreamErrorKind::ConnectRefused);
        r.decision(
            DecisionKind::Deny,
            Reasons::one(Reason::GroupsUnauthorized).union(Reasons::one(Reason::EmailUnauthorized)),
        );
        r.decision(DecisionKind::Allow, Reasons::EMPTY);
        let q = |name, labels: &[(&str, &str)]| sample(&m, name, labels);
        assert_eq!(
            q(
                "gatehouse_http_requests_total",
                &[("route", "api"), ("status_class", "2xx")]
            ),
            Some(1.0)
        );
        assert_eq!(
            q(
                "gatehouse_http_requests_total",
                &[("route", "api"), ("status_class", "5xx")]
            ),
            Some(1.0)
        );
        assert_eq!(
            q(
                "gatehouse_http_request_duration_seconds",
                &[("route", "api")]
            ),
            Some(2.0)
        );
        assert_eq!(
            q(
                "gatehouse_upstream_request_duration_seconds",
                &[("route", "api")]
            ),
            Some(1.0)
        );
        assert_eq!(
            q(
                "gatehouse_upstream_errors_total",
                &[("route", "api"), ("kind", "connect_refused")]
            ),
            Some(1.0)
        );
        // The first reason in declaration order labels the decision.
        assert_eq!(
            q(
                "gatehouse_authz_decisions_total",
                &[("decision", "deny"), ("reason", "email-unauthorized")]
            ),
            Some(1.0)
        );
        assert_eq!(
            q(
                "gatehouse_authz_decisions_total",
                &[("decision", "allow"), ("reason", "none")]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn unused_routes_export_no_sparse_series() {
        let m = Metrics::new().unwrap();
        let _r = m.route_metrics("quiet");
        let text = String::from_utf8(m.render()).unwrap();
        assert!(!text.contains("gatehouse_http_request_duration_seconds_bucket{route=\"quiet\""));
        assert!(
            text.contains("gatehouse_http_requests_total{route=\"quiet\",status_class=\"2xx\"} 0")
        );
        // Closed enums are exported at zero from the start, so dashboards see them.
        assert!(text
            .contains("gatehouse_session_store_operations_total{op=\"get\",result=\"error\"} 0"));
        assert!(text.contains("gatehouse_idp_requests_total{op=\"token\",result=\"error\"} 0"));
    }

    #[test]
    fn store_and_idp_handles_count() {
        let m = Metrics::new().unwrap();
        m.identity
            .store
            .observe(StoreOp::Get, StoreResult::Miss, 0.0002);
        let _ = m
            .identity
            .idp
            .observe::<(), &str>(IdpOp::Refresh, Err("down"));
        assert_eq!(
            sample(
                &m,
                "gatehouse_session_store_operations_total",
                &[("op", "get"), ("result", "miss")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &m,
                "gatehouse_session_store_duration_seconds",
                &[("op", "get")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &m,
                "gatehouse_idp_requests_total",
                &[("op", "refresh"), ("result", "error")]
            ),
            Some(1.0)
        );
    }
}
