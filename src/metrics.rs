//! Every metric family gatehouse exports, defined in one place. Labels are bounded: route
//! names come from the configuration, the rest are closed enums.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// HTTP status classes used as the `status_class` label.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The metric families. One instance per process, registered in its own registry.
pub struct Metrics {
    pub registry: Registry,
    pub http_requests_total: IntCounterVec,
    pub upstream_backend_healthy: IntGaugeVec,
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
    /// Decision cache hits and misses (synchronised from the cache at scrape time).
    pub decision_cache_hits_total: IntCounter,
    pub decision_cache_misses_total: IntCounter,
    /// 1 when the session store answers (and, for Redis, invalidations arrive).
    pub session_store_up: IntGaugeVec,
}

/// Pre-resolved request counters of one route, indexed by status class, so that the
/// per-request path does no label hashing.
#[derive(Clone)]
pub struct RouteCounters([IntCounter; 5]);

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
        let upstream_backend_healthy = IntGaugeVec::new(
            Opts::new(
                "gatehouse_upstream_backend_healthy",
                "1 when the backend passes its health check (or has none), else 0.",
            ),
            &["route", "backend"],
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
        registry.register(Box::new(upstream_backend_healthy.clone()))?;
        registry.register(Box::new(config_last_reload_success.clone()))?;
        registry.register(Box::new(
            config_last_reload_success_timestamp_seconds.clone(),
        ))?;
        registry.register(Box::new(config_reloads_total.clone()))?;
        registry.register(Box::new(build_info.clone()))?;
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
            upstream_backend_healthy,
            config_last_reload_success,
            config_last_reload_success_timestamp_seconds,
            config_reloads_total,
            build_info,
            identity,
        })
    }

    /// The request counters of one route label (resolved once per snapshot build).
    pub fn route_counters(&self, route: &str) -> RouteCounters {
        RouteCounters(
            STATUS_CLASSES.map(|class| self.http_requests_total.with_label_values(&[route, class])),
        )
    }

    /// Renders every family in the Prometheus text format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
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
        let decision_cache_hits_total = IntCounter::new(
            "gatehouse_authz_decision_cache_hits_total",
            "Authorization decisions answered from the decision cache.",
        )?;
        let decision_cache_misses_total = IntCounter::new(
            "gatehouse_authz_decision_cache_misses_total",
            "Authorization decisions evaluated (not in the cache).",
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
        registry.register(Box::new(decision_cache_hits_total.clone()))?;
        registry.register(Box::new(decision_cache_misses_total.clone()))?;
        registry.register(Box::new(session_store_up.clone()))?;
        Ok(IdentityMetrics {
            logins_total,
            refreshes_total,
            sign_outs_total,
            decision_cache_hits_total,
            decision_cache_misses_total,
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

// === impl RouteCounters ===

impl RouteCounters {
    /// Counts one answered request with HTTP status `status`.
    pub fn observe(&self, status: u16) {
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        };
        self.0[class].inc();
    }
}
