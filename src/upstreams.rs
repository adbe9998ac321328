//! Backend pools of proxy routes: address resolution (at snapshot build, never per request),
//! load balancing, health checks, and the `HttpPeer` each request is sent to.

use std::{
    collections::BTreeSet,
    net::{SocketAddr, ToSocketAddrs},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use futures_util::FutureExt;
use pingora_core::{
    protocols::ALPN,
    tls::{pkey::PKey, x509::X509},
    upstreams::peer::{HttpPeer, HttpUpstreamRequestPolicy},
    utils::tls::CertKey,
};
use pingora_load_balancing::{
    discovery::Static,
    health_check::{HttpHealthCheck, TcpHealthCheck},
    selection::{Consistent, Random, RoundRobin},
    Backend, Backends, LoadBalancer,
};

use crate::config::{
    HealthCheck, HealthCheckKind, LoadBalancingPolicy, ProxyAction, UpstreamScheme, UpstreamUrl,
};

/// Why a pool could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("{url}: cannot resolve {host}: {source}")]
    Resolve {
        url: String,
        host: String,
        source: std::io::Error,
    },
    #[error("{url}: {host} resolves to no address")]
    NoAddress { url: String, host: String },
    #[error("invalid PEM in {what}: {detail}")]
    Pem { what: &'static str, detail: String },
    #[error("load balancer: {0}")]
    Balancer(String),
}

/// One `to` entry after resolution.
#[derive(Debug)]
pub struct Target {
    pub url: UpstreamUrl,
    pub addr: SocketAddr,
    /// The Host header value the upstream expects (`host` or `host:port`).
    pub authority: String,
}

/// Index of a [`Target`] in its pool, kept in the `Backend` extensions.
#[derive(Clone, Copy, Debug)]
struct TargetIndex(usize);

enum Balancer {
    RoundRobin(LoadBalancer<RoundRobin>),
    Random(LoadBalancer<Random>),
    Consistent(LoadBalancer<Consistent>),
}

/// The backends of one proxy route with their balancer and health state. Immutable once
/// built; shared between snapshots while the route's upstream settings are unchanged, so a
/// reload keeps health state.
pub struct Pool {
    pub targets: Vec<Target>,
    balancer: Balancer,
    least_request: bool,
    /// In-flight requests per target (for `LEAST_REQUEST` and for tests of it).
    in_flight: Vec<AtomicUsize>,
    pub health_check: Option<HealthCheck>,
    health_task_started: AtomicBool,
    peer_template: HttpPeer,
    /// The configuration this pool was built from, to decide reuse on reload.
    fingerprint: String,
}

/// The chosen backend of one request. Dropping it ends the request's in-flight count.
pub struct Selected {
    pool: Arc<Pool>,
    index: usize,
}

// === impl Pool ===

impl Pool {
    /// Builds a pool: resolves every `to` host (blocking DNS, at load time only) and sets up
    /// selection and TLS material. `fingerprint` identifies the settings for reuse.
    pub fn build(action: &ProxyAction, fingerprint: String) -> Result<Pool, PoolError> {
        let mut targets = Vec::with_capacity(action.to.len());
        let mut backends = BTreeSet::new();
        for (i, url) in action.to.iter().enumerate() {
            let addr = resolve(url)?;
            let default_port = match url.scheme {
                UpstreamScheme::Https => 443,
                UpstreamScheme::Http | UpstreamScheme::H2c => 80,
            };
            let host = if url.host.contains(':') {
                format!("[{}]", url.host)
            } else {
                url.host.clone()
            };
            let authority = if url.port == default_port {
                host
            } else {
                format!("{host}:{}", url.port)
            };
            let mut backend = Backend {
                addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(addr),
                weight: url.weight as usize,
                ext: http::Extensions::new(),
            };
            backend.ext.insert(TargetIndex(i));
            backends.insert(backend);
            targets.push(Target {
                url: url.clone(),
                addr,
                authority,
            });
        }
        let peer_template = peer_template(action)?;
        let discovery = Static::new(backends);
        let balancer = match action.load_balancing_policy {
            LoadBalancingPolicy::RoundRobin | LoadBalancingPolicy::LeastRequest => {
                Balancer::RoundRobin(new_balancer(discovery, action, &peer_template)?)
            }
            LoadBalancingPolicy::Random => {
                Balancer::Random(new_balancer(discovery, action, &peer_template)?)
            }
            // Both consistent-hash policies use Ketama hashing: a backend leaving moves only
            // its own keys, which is the property users ask MAGLEV for.
            LoadBalancingPolicy::RingHash | LoadBalancingPolicy::Maglev => {
                Balancer::Consistent(new_balancer(discovery, action, &peer_template)?)
            }
        };
        let in_flight = targets.iter().map(|_| AtomicUsize::new(0)).collect();
        Ok(Pool {
            targets,
            balancer,
            least_request: action.load_balancing_policy == LoadBalancingPolicy::LeastRequest,
            in_flight,
            health_check: action.health_check.clone(),
            health_task_started: AtomicBool::new(false),
            peer_template,
            fingerprint,
        })
    }

    /// The settings this pool was built from; equal fingerprints mean an equal pool.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Picks a healthy backend not in `tried` (a bitmask of target indexes). `key` is the
    /// consistent-hash key (client IP now, session later). `None`: no healthy backend left.
    pub fn select(self: &Arc<Self>, key: &[u8], tried: u64) -> Option<Selected> {
        let accept = |b: &Backend, healthy: bool| {
            healthy
                && b.ext
                    .get::<TargetIndex>()
                    .is_some_and(|t| tried & bit(t.0) == 0)
        };
        let max = self.targets.len() * 2 + 8;
        // One backend (most routes): no balancer walk, whose iterator allocates a set.
        let backend = if self.targets.len() == 1 {
            (tried & 1 == 0 && self.is_healthy(0)).then_some(0)
        } else if self.least_request {
            self.least_loaded(tried)
        } else {
            match &self.balancer {
                Balancer::RoundRobin(lb) => lb.select_with(key, max, accept),
                Balancer::Random(lb) => lb.select_with(key, max, accept),
                Balancer::Consistent(lb) => lb.select_with(key, max, accept),
            }
            .and_then(|b| b.ext.get::<TargetIndex>().map(|t| t.0))
        }?;
        self.in_flight[backend].fetch_add(1, Ordering::Relaxed);
        Some(Selected {
            pool: Arc::clone(self),
            index: backend,
        })
    }

    /// `LEAST_REQUEST`: the healthy untried backend with the fewest in-flight requests per
    /// unit of weight; ties go to the round-robin order so idle pools still spread.
    fn least_loaded(&self, tried: u64) -> Option<usize> {
        let Balancer::RoundRobin(lb) = &self.balancer else {
            return None;
        };
        let start = lb
            .select_with(b"", self.targets.len() + 8, |_, _| true)
            .and_then(|b| b.ext.get::<TargetIndex>().map(|t| t.0))
            .unwrap_or(0);
        let n = self.targets.len();
        let mut best: Option<(usize, usize)> = None;
        for offset in 0..n {
            let i = (start + offset) % n;
            if tried & bit(i) != 0 || !self.is_healthy(i) {
                continue;
            }
            let weight = self.targets[i].url.weight.max(1) as usize;
            let load = self.in_flight[i].load(Ordering::Relaxed) * 1000 / weight;
            if best.is_none_or(|(_, l)| load < l) {
                best = Some((i, load));
            }
        }
        best.map(|(i, _)| i)
    }

    /// Whether a healthy backend outside `tried` remains.
    pub fn has_untried(&self, tried: u64) -> bool {
        (0..self.targets.len()).any(|i| tried & bit(i) == 0 && self.is_healthy(i))
    }

    /// Whether target `i` currently passes its health check (always true without one).
    pub fn is_healthy(&self, i: usize) -> bool {
        let Some(target) = self.targets.get(i) else {
            return false;
        };
        let backend = Backend {
            addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(target.addr),
            weight: target.url.weight as usize,
            ext: http::Extensions::new(),
        };
        match &self.balancer {
            Balancer::RoundRobin(lb) => lb.backends().ready(&backend),
            Balancer::Random(lb) => lb.backends().ready(&backend),
            Balancer::Consistent(lb) => lb.backends().ready(&backend),
        }
    }

    /// Runs one health-check pass over every backend.
    pub async fn run_health_check(&self) {
        match &self.balancer {
            Balancer::RoundRobin(lb) => lb.backends().run_health_check(true).await,
            Balancer::Random(lb) => lb.backends().run_health_check(true).await,
            Balancer::Consistent(lb) => lb.backends().run_health_check(true).await,
        }
    }

    /// Marks the health task as started; true only for the first caller.
    pub fn claim_health_task(&self) -> bool {
        self.health_check.is_some() && !self.health_task_started.swap(true, Ordering::AcqRel)
    }
}

// === impl Selected ===

impl Selected {
    /// The chosen target.
    pub fn target(&self) -> &Target {
        &self.pool.targets[self.index]
    }

    /// Bit of this target for the `tried` mask of [`Pool::select`].
    pub fn bit(&self) -> u64 {
        bit(self.index)
    }

    /// A peer for this target with the route's TLS and timeout settings. `upgrade`: the
    /// request asks for a protocol upgrade (WebSocket); `read_timeout` then becomes the
    /// idle timeout.
    pub fn peer(&self, timeout: Duration, idle_timeout: Duration, upgrade: bool) -> HttpPeer {
        let mut peer = self.pool.peer_template.clone();
        let target = self.target();
        peer._address = pingora_core::protocols::l4::socket::SocketAddr::Inet(target.addr);
        if peer.sni.is_empty() && target.url.scheme == UpstreamScheme::Https {
            peer.sni.clone_from(&target.url.host);
        }
        let read = if upgrade { idle_timeout } else { timeout };
        peer.options.read_timeout = nonzero(read);
        peer.options.write_timeout = nonzero(read);
        peer
    }
}

impl Drop for Selected {
    fn drop(&mut self) {
        self.pool.in_flight[self.index].fetch_sub(1, Ordering::Relaxed);
    }
}

fn bit(i: usize) -> u64 {
    1u64.checked_shl(i as u32).unwrap_or(0)
}

fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

fn resolve(url: &UpstreamUrl) -> Result<SocketAddr, PoolError> {
    let addrs: Vec<SocketAddr> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|source| PoolError::Resolve {
            url: url.raw.clone(),
            host: url.host.clone(),
            source,
        })?
        .collect();
    // Prefer IPv4: `localhost` often resolves to ::1 first while test and demo servers
    // listen on 127.0.0.1.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| PoolError::NoAddress {
            url: url.raw.clone(),
            host: url.host.clone(),
        })
}

/// The per-route part of every peer: scheme, SNI, verification, CA, client certificate.
fn peer_template(action: &ProxyAction) -> Result<HttpPeer, PoolError> {
    let scheme = action
        .to
        .first()
        .map(|u| u.scheme)
        .unwrap_or(UpstreamScheme::Http);
    let tls = scheme == UpstreamScheme::Https;
    let sni = action.tls.server_name.clone().unwrap_or_default();
    let placeholder: SocketAddr = ([127, 0, 0, 1], 1).into();
    let mut peer = match &action.tls.client_cert {
        Some(pair) => {
            let certs = X509::stack_from_pem(&pair.cert_pem).map_err(|e| PoolError::Pem {
                what: "tls_client_cert_file",
                detail: e.to_string(),
            })?;
            let key = PKey::private_key_from_pem(&pair.key_pem).map_err(|e| PoolError::Pem {
                what: "tls_client_key_file",
                detail: e.to_string(),
            })?;
            HttpPeer::new_mtls(placeholder, sni, Arc::new(CertKey::new(certs, key)))
        }
        None => HttpPeer::new(placeholder, tls, sni),
    };
    if let Some(name) = &action.tls.server_name {
        peer.options.alternative_cn = Some(name.clone());
    }
    if tls {
        peer.options.verify_cert = !action.tls.skip_verify;
        peer.options.verify_hostname = !action.tls.skip_verify;
        if let Some(ca) = &action.tls.custom_ca_pem {
            let certs = X509::stack_from_pem(ca).map_err(|e| PoolError::Pem {
                what: "tls_custom_ca_file",
                detail: e.to_string(),
            })?;
            peer.options.ca = Some(Arc::new(certs.into_boxed_slice()));
        }
        peer.options.alpn = ALPN::H1;
    }
    if scheme == UpstreamScheme::H2c {
        peer.options.set_http_version(2, 2);
    }
    peer.options.connection_timeout = Some(Duration::from_secs(10));
    peer.options.idle_timeout = Some(Duration::from_secs(60));
    peer.options.http_upstream_request_policy = if action.allow_websockets {
        HttpUpstreamRequestPolicy::standard()
    } else {
        HttpUpstreamRequestPolicy::deny_upgrades()
    };
    Ok(peer)
}

fn new_balancer<S>(
    discovery: Box<Static>,
    action: &ProxyAction,
    template: &HttpPeer,
) -> Result<LoadBalancer<S>, PoolError>
where
    S: pingora_load_balancing::selection::BackendSelection + 'static,
    S::Iter: pingora_load_balancing::selection::BackendIter,
{
    let mut lb = LoadBalancer::<S>::from_backends(Backends::new(discovery));
    lb.update()
        .now_or_never()
        .ok_or_else(|| PoolError::Balancer("static discovery blocked".into()))?
        .map_err(|e| PoolError::Balancer(e.to_string()))?;
    if let Some(hc) = &action.health_check {
        let success = hc.healthy_threshold.max(1) as usize;
        let failure = hc.unhealthy_threshold.max(1) as usize;
        match &hc.kind {
            HealthCheckKind::Tcp => {
                let mut check = TcpHealthCheck::new();
                check.consecutive_success = success;
                check.consecutive_failure = failure;
                check.peer_template.options.connection_timeout = Some(hc.timeout);
                lb.set_health_check(check);
            }
            HealthCheckKind::Http {
                path,
                expected_statuses,
            } => {
                let host = action.to.first().map(|u| u.host.as_str()).unwrap_or("");
                let tls = template.is_tls();
                let mut check = HttpHealthCheck::new(host, tls);
                check.consecutive_success = success;
                check.consecutive_failure = failure;
                check.peer_template.options.connection_timeout = Some(hc.timeout);
                check.peer_template.options.read_timeout = Some(hc.timeout);
                check.peer_template.options.verify_cert = template.options.verify_cert;
                check.peer_template.options.verify_hostname = template.options.verify_hostname;
                check
                    .peer_template
                    .options
                    .ca
                    .clone_from(&template.options.ca);
                check.peer_template.sni.clone_from(&template.sni);
                check.req.set_uri(
                    path.parse().map_err(|_| {
                        PoolError::Balancer(format!("bad health check path {path}"))
                    })?,
                );
                let ranges = expected_statuses.clone();
                check.validator = Some(Box::new(move |resp| {
                    let code = resp.status.as_u16();
                    if ranges
                        .iter()
                        .any(|&(start, end)| code >= start && code < end)
                    {
                        Ok(())
                    } else {
                        pingora_error::Error::e_explain(
                            pingora_error::ErrorType::Custom("UnexpectedHealthStatus"),
                            format!("status {code}"),
                        )
                    }
                }));
                lb.set_health_check(Box::new(check));
            }
        }
        lb.health_check_frequency = Some(hc.interval);
    }
    Ok(lb)
}
