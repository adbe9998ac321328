//! The immutable state every request reads: validated config, compiled route table,
//! backend pools and pre-resolved metric handles. A reload builds a new snapshot and swaps
//! it in atomically; requests in flight keep the one they started with.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;

use crate::{
    auth::{Auth, AuthKeys, Fallbacks},
    config::{Config, RouteAction},
    listeners::CertificateStore,
    metrics::{Metrics, RouteMetrics},
    routes::RouteTable,
    upstreams::{Pool, PoolError},
};

/// Why a validated config could not become a snapshot (resolution, key material).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("routes[{route}]: {source}")]
    Pool { route: usize, source: PoolError },
    #[error("certificates: {0}")]
    Certificates(String),
    #[error("{0}")]
    Keys(String),
}

/// One generation of the running configuration.
pub struct Snapshot {
    /// Increases by one with every successful load; part of every cache key.
    pub generation: u64,
    pub config: Config,
    pub routes: RouteTable,
    /// Backend pool per route index (None for redirect/response routes).
    pub pools: Vec<Option<Arc<Pool>>>,
    /// Metric handles per route index, plus one last entry for requests without a route.
    pub route_metrics: Vec<RouteMetrics>,
    /// Server certificates chosen by SNI.
    pub certificates: Arc<CertificateStore>,
    /// Cookie sealing and identity signing keys.
    pub keys: Arc<AuthKeys>,
}

/// Process-wide state shared by all services.
pub struct Shared {
    current: ArcSwap<Snapshot>,
    /// The identity runtime (sessions, relying party, decision cache).
    pub auth: Arc<Auth>,
    /// Secrets generated at start, used while the config sets none.
    pub fallbacks: Fallbacks,
    pub metrics: Metrics,
    pub config_path: PathBuf,
    next_generation: AtomicU64,
    /// Set once the public listener accepts connections.
    pub listening: AtomicBool,
    in_flight: AtomicU64,
}

/// Counts one downstream connection as being served until dropped (for the SIGTERM drain).
pub struct InFlight<'a>(&'a Shared);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

// === impl Snapshot ===

impl Snapshot {
    /// Builds a snapshot from a validated config, reusing the pools of `previous` whose
    /// settings did not change (so their health state survives a reload).
    pub fn build(
        config: Config,
        generation: u64,
        previous: Option<&Snapshot>,
        metrics: &Metrics,
        fallbacks: &Fallbacks,
    ) -> Result<Snapshot, BuildError> {
        let keys =
            Arc::new(AuthKeys::build(&config.identity, fallbacks).map_err(BuildError::Keys)?);
        let routes = RouteTable::new(&config.routes);
        // Reuse is looked up by settings fingerprint in one map, not by scanning every
        // previous pool per route (10,000 routes would make that 10^8 comparisons).
        let previous_pools: HashMap<&str, &Arc<Pool>> = previous
            .map(|p| {
                p.pools
                    .iter()
                    .flatten()
                    .map(|pool| (pool.fingerprint(), pool))
                    .collect()
            })
            .unwrap_or_default();
        let mut pools = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let RouteAction::Proxy(action) = &route.action else {
                pools.push(None);
                continue;
            };
            let fingerprint = format!("{action:?}");
            let pool = match previous_pools.get(fingerprint.as_str()) {
                Some(pool) => Arc::clone(pool),
                None => Arc::new(Pool::build(action, fingerprint).map_err(|source| {
                    BuildError::Pool {
                        route: route.index,
                        source,
                    }
                })?),
            };
            pools.push(Some(pool));
        }
        let mut route_metrics: Vec<RouteMetrics> = config
            .routes
            .iter()
            .map(|r| metrics.route_metrics(&r.name))
            .collect();
        route_metrics.push(metrics.route_metrics("none"));
        let certificates = Arc::new(
            CertificateStore::new(&config.certificates).map_err(BuildError::Certificates)?,
        );
        Ok(Snapshot {
            generation,
            config,
            routes,
            pools,
            route_metrics,
            certificates,
            keys,
        })
    }

    /// Metric handles for a route index, or the "no route" handles for `None`.
    pub fn route_metrics(&self, route: Option<usize>) -> &RouteMetrics {
        let last = self.route_metrics.len() - 1;
        &self.route_metrics[route.unwrap_or(last).min(last)]
    }
}

// === impl Shared ===

impl Shared {
    /// Wraps the first snapshot (generation 1).
    pub fn new(
        first: Snapshot,
        metrics: Metrics,
        config_path: PathBuf,
        auth: Arc<Auth>,
        fallbacks: Fallbacks,
    ) -> Shared {
        metrics.config_last_reload_success.set(1);
        metrics
            .config_last_reload_success_timestamp_seconds
            .set(unix_now());
        Shared {
            next_generation: AtomicU64::new(first.generation + 1),
            current: ArcSwap::from_pointee(first),
            auth,
            fallbacks,
            metrics,
            config_path,
            listening: AtomicBool::new(false),
            in_flight: AtomicU64::new(0),
        }
    }

    /// Marks a connection as being served until the guard is dropped.
    pub fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Connections currently being served (a kept-alive HTTP/1 connection counts while it
    /// waits for its next request; Pingora ends those waits at shutdown).
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The snapshot new requests use.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Takes a generation number for a snapshot about to be built.
    pub fn take_generation(&self) -> u64 {
        self.next_generation.fetch_add(1, Ordering::Relaxed)
    }

    /// Installs a new snapshot and records the successful reload.
    pub fn install(&self, next: Snapshot) {
        self.current.store(Arc::new(next));
        self.metrics.config_last_reload_success.set(1);
        self.metrics
            .config_last_reload_success_timestamp_seconds
            .set(unix_now());
        self.metrics
            .config_reloads_total
            .with_label_values(&["success"])
            .inc();
    }

    /// Records a rejected reload; the current snapshot keeps serving.
    pub fn reject(&self) {
        self.metrics.config_last_reload_success.set(0);
        self.metrics
            .config_reloads_total
            .with_label_values(&["failure"])
            .inc();
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
