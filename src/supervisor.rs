//! The background service that keeps the running state current: config reloads (SIGHUP or
//! a changed file), health-check loops of the current pools, readiness, and the SIGTERM
//! drain that lets the process exit as soon as in-flight requests are done.

use std::{
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    sync::{atomic::Ordering, Arc, Weak},
    time::{Duration, Instant, SystemTime},
};

use async_trait::async_trait;
use pingora_core::{server::ShutdownWatch, services::background::BackgroundService};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    config,
    snapshot::{Shared, Snapshot},
    upstreams::Pool,
};

/// How often the config file (and policies) are checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// The supervisor service.
pub struct Supervisor {
    shared: Arc<Shared>,
}

/// Result of one reload attempt.
#[derive(Debug)]
pub enum ReloadOutcome {
    Installed(u64),
    Rejected(String),
}

// === impl Supervisor ===

impl Supervisor {
    /// A supervisor for `shared`.
    pub fn new(shared: Arc<Shared>) -> Supervisor {
        Supervisor { shared }
    }

    async fn run(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload on file change only");
                None
            }
        };
        let mut stamp = watched_stamp(&self.shared);
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.start_health_checks();
        let listen_addr = self.shared.load().config.address;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if !self.shared.listening.load(Ordering::Acquire) && probe(listen_addr).await {
                        self.shared.listening.store(true, Ordering::Release);
                        tracing::info!(address = %listen_addr, "listening");
                    }
                    let now = watched_stamp(&self.shared);
                    if now != stamp {
                        stamp = now;
                        self.reload_and_log("file change").await;
                    }
                }
                Some(()) = async { match hangup.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                    stamp = watched_stamp(&self.shared);
                    self.reload_and_log("SIGHUP").await;
                }
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        self.drain().await;
                        return;
                    }
                }
            }
        }
    }

    async fn reload_and_log(&self, why: &str) {
        match reload(&self.shared).await {
            ReloadOutcome::Installed(generation) => {
                tracing::info!(generation, trigger = why, "configuration reloaded");
                self.start_health_checks();
            }
            ReloadOutcome::Rejected(reason) => {
                tracing::error!(
                    trigger = why,
                    "configuration rejected, previous one keeps serving:\n{reason}"
                );
            }
        }
    }

    /// Starts one health-check loop per pool that has a check and none running yet. A loop
    /// ends when its pool is no longer part of any snapshot.
    fn start_health_checks(&self) {
        let snap = self.shared.load();
        for (index, pool) in snap.pools.iter().enumerate() {
            let Some(pool) = pool else { continue };
            if !pool.claim_health_task() {
                continue;
            }
            let route = snap.config.routes[index].name.clone();
            let weak = Arc::downgrade(pool);
            let shared = Arc::downgrade(&self.shared);
            tokio::spawn(health_loop(weak, shared, route));
        }
    }

    /// After SIGTERM (or SIGQUIT once the sockets are handed over): listeners have stopped
    /// accepting; wait for the connections being served to finish (bounded by the grace
    /// period), then exit without waiting out the rest of it.
    async fn drain(&self) {
        let grace = self.shared.load().config.shutdown_grace_period;
        let deadline = Instant::now() + grace;
        tracing::info!(?grace, "draining connections being served");
        while self.shared.in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = self.shared.in_flight();
        tracing::info!(left, "drained; exiting");
        std::process::exit(0);
    }
}

#[async_trait]
impl BackgroundService for Supervisor {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.run(shutdown).await;
    }
}

/// Loads the config file again and installs it if valid; the current snapshot keeps
/// serving otherwise.
pub async fn reload(shared: &Arc<Shared>) -> ReloadOutcome {
    let path = shared.config_path.clone();
    let shared2 = Arc::clone(shared);
    let built = tokio::task::spawn_blocking(move || {
        let loaded = config::load(&path).map_err(|e| e.to_string())?;
        let current = shared2.load();
        let generation = shared2.take_generation();
        Snapshot::build(
            loaded.config,
            generation,
            Some(&current),
            &shared2.metrics,
            &shared2.fallbacks,
        )
        .map_err(|e| format!("{}: {e}", path.display()))
    })
    .await;
    match built {
        Ok(Ok(snapshot)) => {
            let generation = snapshot.generation;
            shared.install(snapshot);
            ReloadOutcome::Installed(generation)
        }
        Ok(Err(reason)) => {
            shared.reject();
            ReloadOutcome::Rejected(reason)
        }
        Err(e) => {
            shared.reject();
            ReloadOutcome::Rejected(e.to_string())
        }
    }
}

async fn health_loop(pool: Weak<Pool>, shared: Weak<Shared>, route: String) {
    loop {
        let interval = {
            let Some(pool) = pool.upgrade() else { return };
            pool.run_health_check().await;
            if let Some(shared) = shared.upgrade() {
                for (i, target) in pool.targets.iter().enumerate() {
                    shared
                        .metrics
                        .upstream_backend_healthy
                        .with_label_values(&[route.as_str(), target.url.raw.as_str()])
                        .set(i64::from(pool.is_healthy(i)));
                }
            }
            pool.health_check
                .as_ref()
                .map_or(Duration::from_secs(10), |h| h.interval)
        };
        tokio::time::sleep(interval).await;
    }
}

/// Modification stamps of the config file and the files in `policies_dir`.
fn watched_stamp(shared: &Shared) -> Vec<(PathBuf, Option<SystemTime>)> {
    let mut out = vec![(shared.config_path.clone(), mtime(&shared.config_path))];
    if let Some(dir) = &shared.load().config.policies_dir {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut files: Vec<_> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            out.extend(files.into_iter().map(|p| {
                let m = mtime(&p);
                (p, m)
            }));
        }
    }
    out
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Whether something accepts TCP connections at `addr` (0.0.0.0 / :: probed on loopback).
async fn probe(addr: SocketAddr) -> bool {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    tokio::task::spawn_blocking(move || {
        TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok()
    })
    .await
    .unwrap_or(false)
}
