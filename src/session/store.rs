//! Where session records live: the `SessionStore` trait and its two implementations,
//! `memory` (embedded, one instance) and `redis` (a fleet sharing standalone Redis, Sentinel
//! or Cluster).
//!
//! The store only moves opaque bytes. Records arrive already sealed by the caller, so a dump
//! of the store cannot be turned into a session. Besides records it keeps one-time handoff
//! codes, fleet-wide leases, and fans out "this session changed" events to every instance.
//!
//! Every operation is bounded by [`StoreOptions::op_timeout`]. The Redis store connects in the
//! background: [`open`] never waits for Redis, operations fail fast with
//! [`StoreError::Unavailable`] while it is down, and it recovers by itself.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast;

mod memory;
mod metered;
mod redis;

pub use metered::Metered;

/// A session's identifier: 16 random bytes, carried inside the sealed cookie.
pub type SessionId = [u8; 16];

/// Why a store operation failed.
///
/// No message ever contains a password from the store URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached right now: connection refused or lost, timed out, down,
    /// failing over. The caller answers 503 and keeps the cookie; the store recovers by itself.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something that is not a valid answer (not Redis, wrong data).
    #[error("session store protocol error: {0}")]
    Protocol(String),
    /// The `session_store` value or the options are invalid.
    #[error("invalid session store configuration: {0}")]
    Config(String),
}

/// Settings shared by every store implementation.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Upper bound for each operation, including waiting for a connection (default 1 s).
    pub op_timeout: Duration,
    /// Prefix of every Redis key and of the invalidation channel (default `gatehouse:`), so
    /// several deployments can share one Redis. Ignored by the memory store.
    pub key_prefix: String,
    /// Runtime that runs the Redis store's background tasks (connection supervisor,
    /// subscription). `None` (default) means the runtime current when [`open`] is called; it
    /// must outlive the store. Ignored by the memory store.
    pub runtime: Option<tokio::runtime::Handle>,
}

/// A change announced by [`SessionStore::subscribe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// Session `id` changed or ended on some instance (maybe this one): drop any cached copy.
    /// May arrive more than once for one publication.
    Invalidated(SessionId),
    /// The invalidation subscription is (again) established. Invalidations published while it
    /// was down were missed: drop cached sessions, or let them expire quickly.
    SubscriptionUp,
    /// The invalidation subscription was lost: until `SubscriptionUp`, invalidations from
    /// other instances are not seen, so cached sessions should only live briefly.
    SubscriptionDown,
}

/// Connection state of a store, for readiness checks and cache policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreHealth {
    /// Commands currently have a connection (always true for memory). When false, operations
    /// fail fast with `Unavailable`.
    pub connected: bool,
    /// Invalidations from other instances are currently being received (always true for
    /// memory).
    pub subscribed: bool,
}

/// Proof of holding a lease taken with [`SessionStore::try_lock`]: 16 random bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockToken([u8; 16]);

/// Storage for sealed session records, one-time codes and leases, shared by the fleet.
///
/// Every method is bounded by the store's `op_timeout`; none ever waits longer.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Reads the record of session `id`: `None` if absent, expired, or not a record at all
    /// (a Redis key of another type).
    async fn get(&self, id: &SessionId) -> Result<Option<Bytes>, StoreError>;

    /// Creates or replaces the record of session `id`; the entry disappears after `ttl`
    /// (rounded up to whole milliseconds, at least 1 ms, at most [`MAX_TTL`]).
    async fn put(&self, id: &SessionId, record: &[u8], ttl: Duration) -> Result<(), StoreError>;

    /// Removes the record of session `id` (no error if it did not exist).
    async fn delete(&self, id: &SessionId) -> Result<(), StoreError>;

    /// One-time codes (multi-host handoff): stores `value` under `code` for `ttl` (clamped to
    /// [`MAX_CODE_TTL`]), only if absent. Returns false if the code already existed (nothing
    /// is changed then).
    async fn put_code(
        &self,
        code: &[u8; 32],
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Atomically reads and deletes a code: a code is redeemable once, by one instance.
    /// `None` if it never existed, expired or was already taken.
    async fn take_code(&self, code: &[u8; 32]) -> Result<Option<Bytes>, StoreError>;

    /// Takes the fleet-wide lease `name` for `ttl` if nobody holds it: `Some(token)` if
    /// acquired, `None` if held by someone else. The lease ends after `ttl` even if never
    /// released.
    async fn try_lock(&self, name: &[u8], ttl: Duration) -> Result<Option<LockToken>, StoreError>;

    /// Releases lease `name` only if `token` still holds it (compare-and-delete); releasing a
    /// lease that expired or was taken over by someone else does nothing.
    async fn unlock(&self, name: &[u8], token: &LockToken) -> Result<(), StoreError>;

    /// Tells every instance, this one included, that session `id` changed or ended. This
    /// instance's subscribers are told even if the store is unavailable (then the error says
    /// the others may not have been).
    async fn publish_invalidation(&self, id: &SessionId) -> Result<(), StoreError>;

    /// Events from every instance's `publish_invalidation`, plus subscription state changes.
    ///
    /// The channel is bounded: a receiver that falls behind gets `RecvError::Lagged` and
    /// should then drop every cached session.
    fn subscribe(&self) -> broadcast::Receiver<StoreEvent>;

    /// Current connection state (cheap; no I/O).
    fn health(&self) -> StoreHealth;

    /// "memory" or "redis" (for logs and metric labels).
    fn kind(&self) -> &'static str;
}

/// Longest entry lifetime accepted; longer TTLs are shortened to it.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

/// Longest lifetime of a one-time code; longer TTLs are shortened to it.
pub const MAX_CODE_TTL: Duration = Duration::from_secs(60);

/// Capacity of the event channel returned by [`SessionStore::subscribe`].
const EVENT_CAPACITY: usize = 1024;

/// Builds the store for the `session_store` config value: `memory`, or a Redis URL
/// (`redis://`, `rediss://`, `unix://`, `redis+sentinel://`, `rediss+sentinel://`,
/// `redis+cluster://`, `rediss+cluster://` and Pomerium's aliases of these).
///
/// Never waits for Redis: it connects in the background, so gatehouse starts while Redis is
/// down. A Redis store spawns its tasks on `options.runtime`, or on the current tokio runtime
/// (without either, this fails with `Config`). Errors are `Config` only; the message names the
/// problem and never contains a password.
pub fn open(url: &str, options: StoreOptions) -> Result<Arc<dyn SessionStore>, StoreError> {
    if options.op_timeout.is_zero() {
        return Err(StoreError::Config("op_timeout must be positive".into()));
    }
    if url.trim() == "memory" {
        return Ok(Arc::new(memory::MemoryStore::new()));
    }
    let config = redis::RedisConfig::parse(url)?;
    let runtime = match options.runtime.clone() {
        Some(handle) => handle,
        None => tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::Config("a redis session store must be opened inside a tokio runtime".into())
        })?,
    };
    Ok(Arc::new(redis::RedisStore::start(
        config, options, &runtime,
    )?))
}

/// Checks a `session_store` value without side effects (no file, no network), for config
/// validation. Same errors as [`open`] for a bad URL.
pub fn validate_url(url: &str) -> Result<(), StoreError> {
    if url.trim() == "memory" {
        return Ok(());
    }
    redis::RedisConfig::parse(url).map(drop)
}

// === impl StoreOptions ===

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            op_timeout: Duration::from_secs(1),
            key_prefix: "gatehouse:".to_owned(),
            runtime: None,
        }
    }
}

// === impl LockToken ===

impl LockToken {
    /// A fresh random token.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The token's bytes (what the store holds under the lease key).
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

/// `ttl` clamped to what the stores accept: whole milliseconds in `[1 ms, max]`.
fn clamp_ttl(ttl: Duration, max: Duration) -> Duration {
    let ttl = ttl.min(max);
    let millis = ttl.as_nanos().div_ceil(1_000_000).max(1);
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod redis_server;
