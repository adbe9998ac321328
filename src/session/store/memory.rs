//! The embedded store: bounded in-process caches, for a single instance.
//!
//! Every cache has a fixed capacity (principle 8): beyond it the least useful entries are
//! evicted, which for sessions means those users log in again.

use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::ops::compute::{CompResult, Op};
use moka::sync::Cache;
use moka::Expiry;
use tokio::sync::broadcast;

use super::{
    clamp_ttl, LockToken, SessionId, SessionStore, StoreError, StoreEvent, StoreHealth,
    EVENT_CAPACITY, MAX_CODE_TTL, MAX_TTL,
};

/// Most session records kept at once.
const MAX_SESSIONS: u64 = 1_000_000;
/// Most one-time codes kept at once.
const MAX_CODES: u64 = 100_000;
/// Most leases kept at once.
const MAX_LOCKS: u64 = 10_000;

/// Sessions, codes and leases in bounded moka caches with per-entry TTL.
pub(super) struct MemoryStore {
    sessions: Cache<SessionId, Stored<Bytes>>,
    codes: Cache<[u8; 32], Stored<Bytes>>,
    locks: Cache<Vec<u8>, Stored<LockToken>>,
    events: broadcast::Sender<StoreEvent>,
}

/// A value with its lifetime. The deadline is checked on every read too, so an entry is never
/// served past its TTL even before the cache evicts it.
#[derive(Clone)]
struct Stored<V> {
    value: V,
    ttl: Duration,
    deadline: Instant,
}

/// Tells moka each entry's own TTL, on insert and on replace.
struct PerEntryTtl;

// === impl MemoryStore ===

impl MemoryStore {
    pub(super) fn new() -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Self {
            sessions: Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .expire_after(PerEntryTtl)
                .build(),
            codes: Cache::builder()
                .max_capacity(MAX_CODES)
                .expire_after(PerEntryTtl)
                .build(),
            locks: Cache::builder()
                .max_capacity(MAX_LOCKS)
                .expire_after(PerEntryTtl)
                .build(),
            events,
        }
    }
}

#[async_trait::async_trait]
impl SessionStore for MemoryStore {
    async fn get(&self, id: &SessionId) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .sessions
            .get(id)
            .filter(Stored::is_live)
            .map(|stored| stored.value))
    }

    async fn put(&self, id: &SessionId, record: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let stored = Stored::new(Bytes::copy_from_slice(record), clamp_ttl(ttl, MAX_TTL));
        self.sessions.insert(*id, stored);
        Ok(())
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.sessions.invalidate(id);
        Ok(())
    }

    async fn put_code(
        &self,
        code: &[u8; 32],
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let ttl = clamp_ttl(ttl, MAX_CODE_TTL);
        let result = self.codes.entry(*code).and_compute_with(|current| {
            if current.is_some_and(|entry| entry.value().is_live()) {
                Op::Nop
            } else {
                Op::Put(Stored::new(Bytes::copy_from_slice(value), ttl))
            }
        });
        Ok(matches!(
            result,
            CompResult::Inserted(_) | CompResult::ReplacedWith(_)
        ))
    }

    async fn take_code(&self, code: &[u8; 32]) -> Result<Option<Bytes>, StoreError> {
        // `remove` is atomic: of concurrent takers, exactly one gets the value.
        Ok(self
            .codes
            .remove(code)
            .filter(Stored::is_live)
            .map(|stored| stored.value))
    }

    async fn try_lock(&self, name: &[u8], ttl: Duration) -> Result<Option<LockToken>, StoreError> {
        let ttl = clamp_ttl(ttl, MAX_TTL);
        let token = LockToken::random();
        let result = self.locks.entry_by_ref(name).and_compute_with(|current| {
            if current.is_some_and(|entry| entry.value().is_live()) {
                Op::Nop
            } else {
                Op::Put(Stored::new(token.clone(), ttl))
            }
        });
        Ok(match result {
            CompResult::Inserted(_) | CompResult::ReplacedWith(_) => Some(token),
            _ => None,
        })
    }

    async fn unlock(&self, name: &[u8], token: &LockToken) -> Result<(), StoreError> {
        self.locks
            .entry_by_ref(name)
            .and_compute_with(|current| match current {
                Some(entry) if entry.value().value == *token => Op::Remove,
                _ => Op::Nop,
            });
        Ok(())
    }

    async fn publish_invalidation(&self, id: &SessionId) -> Result<(), StoreError> {
        // No receiver is not an error: nobody caches anything yet.
        let _ = self.events.send(StoreEvent::Invalidated(*id));
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    fn health(&self) -> StoreHealth {
        StoreHealth {
            connected: true,
            subscribed: true,
        }
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

// === impl Stored ===

impl<V> Stored<V> {
    fn new(value: V, ttl: Duration) -> Self {
        Self {
            value,
            ttl,
            deadline: Instant::now() + ttl,
        }
    }

    fn is_live(&self) -> bool {
        Instant::now() < self.deadline
    }
}

// === impl PerEntryTtl ===

impl<K, V> Expiry<K, Stored<V>> for PerEntryTtl {
    fn expire_after_create(&self, _: &K, stored: &Stored<V>, _: Instant) -> Option<Duration> {
        Some(stored.ttl)
    }

    fn expire_after_update(
        &self,
        _: &K,
        stored: &Stored<V>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(stored.ttl)
    }
}
