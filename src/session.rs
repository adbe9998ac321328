//! Sessions: the sealed cookie ticket, the session record (sealed under the session's own
//! secret in a [`store::SessionStore`]), and [`Sessions`], the per-instance cache of decoded
//! sessions that every instance drops on a fleet-wide invalidation.
//!
//! A ticket is `{version, session id, per-session secret, issued_at}` sealed with a key derived
//! from `cookie_secret`. The store holds the record sealed under the per-session secret, so
//! neither a session id alone nor a dump of the store can be turned into a working session.

pub mod seal;
pub mod store;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use moka::sync::Cache;
use serde::{Deserialize, Serialize};

use crate::{authz::SessionKey, policy::Subject};
pub use seal::{Purpose, Sealer};
pub use store::{SessionId, SessionStore, StoreError, StoreEvent};

const TICKET_VERSION: u8 = 1;
const TICKET_LEN: usize = 1 + 16 + 32 + 8;

/// How long a cached session is trusted without a store read while invalidations cannot
/// reach this instance (the subscription is down).
const UNSUBSCRIBED_TTL: Duration = Duration::from_secs(5);
/// For this long after the store failed to answer, a read that has a cached copy to fall
/// back on waits at most [`FALLBACK_WAIT`] for the store: a frozen store costs such a request
/// 50 ms, not the whole store timeout, while an answer (the session ended elsewhere) still
/// wins whenever the store gives one.
const STORE_DOWN_WINDOW: Duration = Duration::from_secs(1);
const FALLBACK_WAIT: Duration = Duration::from_millis(50);

/// The client's half of a session: which record, and the key that opens it.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    pub id: SessionId,
    secret: [u8; 32],
    /// Seconds since the epoch.
    pub issued_at: u64,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("id", &hex::encode(self.id))
            .finish_non_exhaustive()
    }
}

/// What kind of sign-in made the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// A browser login (cookie).
    Browser,
    /// A programmatic login (bearer token).
    Programmatic,
    /// A workload's JWT from a trusted issuer (never stored; lives as long as the token).
    Machine,
}

/// The IdP's tokens of a session. Never shown to anyone, never logged.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdpTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    /// When the access token (or, if earlier, the ID token) expires; seconds since the epoch.
    pub expires_at: Option<u64>,
}

impl std::fmt::Debug for IdpTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpTokens")
            .field("refresh_token", &self.refresh_token.is_some())
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The session record kept in the store (sealed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Bumped on every change; part of every decision cache key.
    pub version: u64,
    pub kind: SessionKind,
    pub subject: Subject,
    /// The IdP's issuer (`iss` of the ID token).
    pub issuer: String,
    /// Seconds since the epoch.
    pub created_at: u64,
    pub expires_at: u64,
    pub refreshed_at: u64,
    pub tokens: IdpTokens,
}

/// A session read for a request.
#[derive(Debug)]
pub struct Loaded {
    pub id: SessionId,
    sid: String,
    secret: [u8; 32],
    pub record: SessionRecord,
    /// Id and version, for cache keys.
    pub key: SessionKey,
    pub expires: SystemTime,
    loaded_at: Instant,
    /// Claim headers computed for this session under one configuration generation.
    claim_headers: arc_swap::ArcSwapOption<(u64, ClaimHeaders)>,
}

/// Claim headers (`jwt_claims_headers`) of a session.
pub type ClaimHeaders = Arc<[(http::HeaderName, http::HeaderValue)]>;

/// The result of looking a ticket up.
#[derive(Debug)]
pub enum Lookup {
    Found(Arc<Loaded>),
    /// No such session (expired, signed out, or never existed).
    Missing,
    /// The store could not answer and the session is not cached: 503.
    Unavailable,
}

/// Sessions of this instance: the store, a bounded cache of decoded sessions, and the
/// invalidation listener.
pub struct Sessions {
    store: Arc<dyn SessionStore>,
    cache: Cache<SessionId, Arc<Loaded>>,
    subscribed: AtomicBool,
    /// Cached sessions loaded before this point (nanoseconds after `created`) may have
    /// missed an invalidation: they are re-read, and serve only while the store cannot answer.
    missed_before_ns: AtomicU64,
    /// Until when (nanoseconds after `created`) the store is taken to be down.
    down_until_ns: AtomicU64,
    created: Instant,
}

// === impl Ticket ===

impl Ticket {
    /// A new random session id and secret.
    pub fn generate(now: SystemTime) -> Ticket {
        let mut id = [0u8; 16];
        let mut secret = [0u8; 32];
        rand::fill(&mut id);
        rand::fill(&mut secret);
        Ticket {
            id,
            secret,
            issued_at: unix(now),
        }
    }

    /// The cookie (or bearer token) value.
    pub fn seal(&self, sealer: &Sealer) -> String {
        let mut raw = [0u8; TICKET_LEN];
        raw[0] = TICKET_VERSION;
        raw[1..17].copy_from_slice(&self.id);
        raw[17..49].copy_from_slice(&self.secret);
        raw[49..57].copy_from_slice(&self.issued_at.to_be_bytes());
        sealer.seal(Purpose::Ticket, b"", &raw)
    }

    /// The ticket in a cookie or bearer value; `None` for anything we did not seal.
    pub fn open(sealer: &Sealer, value: &str) -> Option<Ticket> {
        let raw = sealer.open(Purpose::Ticket, b"", value)?;
        if raw.len() != TICKET_LEN || raw[0] != TICKET_VERSION {
            return None;
        }
        let mut id = [0u8; 16];
        let mut secret = [0u8; 32];
        let mut issued = [0u8; 8];
        id.copy_from_slice(&raw[1..17]);
        secret.copy_from_slice(&raw[17..49]);
        issued.copy_from_slice(&raw[49..57]);
        Some(Ticket {
            id,
            secret,
            issued_at: u64::from_be_bytes(issued),
        })
    }
}

// === impl SessionRecord ===

impl SessionRecord {
    fn seal(&self, ticket: &Ticket) -> Vec<u8> {
        // Serializing plain data to JSON cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        seal::seal_with(&ticket.secret, Purpose::Record, &ticket.id, &json).into_bytes()
    }

    fn open(sealed: &[u8], id: &SessionId, secret: &[u8; 32]) -> Option<SessionRecord> {
        let text = std::str::from_utf8(sealed).ok()?;
        let json = seal::open_with(secret, Purpose::Record, id, text)?;
        serde_json::from_slice(&json).ok()
    }

    /// Time left until the session ends.
    pub fn remaining(&self, now: SystemTime) -> Duration {
        Duration::from_secs(self.expires_at.saturating_sub(unix(now)))
    }
}

// === impl Loaded ===

impl Loaded {
    fn new(ticket: &Ticket, record: SessionRecord) -> Loaded {
        Loaded {
            id: ticket.id,
            sid: public_sid(&ticket.id),
            secret: ticket.secret,
            key: SessionKey {
                id: u128::from_be_bytes(ticket.id),
                version: record.version,
            },
            expires: UNIX_EPOCH + Duration::from_secs(record.expires_at),
            record,
            loaded_at: Instant::now(),
            claim_headers: arc_swap::ArcSwapOption::empty(),
        }
    }

    /// A session that exists only in this instance's memory (a verified workload JWT): `id`
    /// is derived from the token, and no ticket can open it.
    pub fn ephemeral(id: SessionId, record: SessionRecord) -> Loaded {
        let mut unopenable = [0u8; 32];
        rand::fill(&mut unopenable);
        let ticket = Ticket {
            id,
            secret: unopenable,
            issued_at: 0,
        };
        Loaded::new(&ticket, record)
    }

    /// The claim headers of this session for configuration `generation`, computed by
    /// `compute` once per generation (a config reload may change the claim list).
    pub fn claim_headers(
        &self,
        generation: u64,
        compute: impl FnOnce() -> Vec<(http::HeaderName, http::HeaderValue)>,
    ) -> ClaimHeaders {
        if let Some(cached) = self.claim_headers.load().as_ref() {
            if cached.0 == generation {
                return Arc::clone(&cached.1);
            }
        }
        let headers: ClaimHeaders = compute().into();
        self.claim_headers
            .store(Some(Arc::new((generation, Arc::clone(&headers)))));
        headers
    }

    /// The session's public handle (the `sid` of identity assertions and logs).
    pub fn sid(&self) -> &str {
        &self.sid
    }

    fn opened_by(&self, ticket: &Ticket) -> bool {
        // Both are secret-derived: compare without an early exit.
        self.secret
            .iter()
            .zip(ticket.secret.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
            && self.id == ticket.id
    }
}

// === impl Sessions ===

impl Sessions {
    /// Sessions on `store`, caching at most `capacity` decoded sessions. Call
    /// [`Sessions::listen`] once inside the runtime to follow invalidations.
    pub fn new(store: Arc<dyn SessionStore>, capacity: u64) -> Arc<Sessions> {
        Arc::new(Sessions {
            subscribed: AtomicBool::new(store.kind() == "memory"),
            missed_before_ns: AtomicU64::new(0),
            down_until_ns: AtomicU64::new(0),
            created: Instant::now(),
            store,
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(Duration::from_secs(24 * 3600))
                .build(),
        })
    }

    /// The store (for codes and locks).
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// Follows invalidations from every instance, dropping cached copies at once. While the
    /// subscription is down, cached sessions are re-read after [`UNSUBSCRIBED_TTL`]; when it
    /// comes back, everything cached is re-read (events may have been missed), but kept as
    /// the fallback in case the store cannot answer yet.
    pub fn listen(self: &Arc<Self>) {
        let mut events = self.store.subscribe();
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let event = events.recv().await;
                let Some(sessions) = me.upgrade() else { return };
                match event {
                    Ok(StoreEvent::Invalidated(id)) => sessions.cache.invalidate(&id),
                    Ok(StoreEvent::SubscriptionDown) => {
                        sessions.subscribed.store(false, Ordering::Relaxed);
                    }
                    Ok(StoreEvent::SubscriptionUp) => {
                        sessions.mark_all_stale();
                        sessions.subscribed.store(true, Ordering::Release);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        sessions.mark_all_stale();
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// The session of `ticket`: from the cache when fresh, else from the store. When the store
    /// cannot answer, a cached copy is used however old (our outage must not sign people
    /// out); without one the answer is [`Lookup::Unavailable`].
    pub async fn load(&self, ticket: &Ticket, now: SystemTime) -> Lookup {
        if let Some(hit) = self.load_cached(ticket, now) {
            return hit;
        }
        let cached = self.cache.get(&ticket.id).filter(|l| l.opened_by(ticket));
        let read = self.store.get(&ticket.id);
        let answer = if cached.as_ref().is_some_and(|l| l.expires > now) && self.store_down() {
            tokio::time::timeout(FALLBACK_WAIT, read)
                .await
                .unwrap_or_else(|_| Err(StoreError::Unavailable("still down".into())))
        } else {
            read.await
        };
        match answer {
            Ok(Some(sealed)) => match SessionRecord::open(&sealed, &ticket.id, &ticket.secret) {
                Some(record) if record.remaining(now) > Duration::ZERO => {
                    let loaded = Arc::new(Loaded::new(ticket, record));
                    self.cache.insert(ticket.id, Arc::clone(&loaded));
                    Lookup::Found(loaded)
                }
                // Never a fallback for a later outage.
                _ => {
                    self.cache.invalidate(&ticket.id);
                    Lookup::Missing
                }
            },
            Ok(None) => {
                self.cache.invalidate(&ticket.id);
                Lookup::Missing
            }
            Err(e) => {
                tracing::warn!(error = %e, "session store unavailable");
                self.mark_store_down();
                match cached {
                    Some(loaded) if loaded.expires > now => Lookup::Found(loaded),
                    _ => Lookup::Unavailable,
                }
            }
        }
    }

    /// The session of `ticket` if a fresh cached copy answers (no I/O); `None`: ask
    /// [`Sessions::load`].
    pub fn load_cached(&self, ticket: &Ticket, now: SystemTime) -> Option<Lookup> {
        let loaded = self.cache.get(&ticket.id).filter(|l| l.opened_by(ticket))?;
        let missed_before =
            self.created + Duration::from_nanos(self.missed_before_ns.load(Ordering::Acquire));
        let fresh = loaded.loaded_at > missed_before
            && (self.subscribed.load(Ordering::Acquire)
                || loaded.loaded_at.elapsed() < UNSUBSCRIBED_TTL);
        if !fresh {
            return None;
        }
        Some(if loaded.expires > now {
            Lookup::Found(loaded)
        } else {
            Lookup::Missing
        })
    }

    fn nanos_since_created(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether a store read failed less than [`STORE_DOWN_WINDOW`] ago.
    fn store_down(&self) -> bool {
        self.down_until_ns.load(Ordering::Acquire) > self.nanos_since_created()
    }

    fn mark_store_down(&self) {
        let until = self.nanos_since_created() + STORE_DOWN_WINDOW.as_nanos() as u64;
        self.down_until_ns.fetch_max(until, Ordering::AcqRel);
    }

    /// Makes every session cached until now be re-read before it is served again.
    fn mark_all_stale(&self) {
        self.missed_before_ns
            .fetch_max(self.nanos_since_created(), Ordering::AcqRel);
    }

    /// Stores a new session and returns its ticket (a fresh id every time).
    pub async fn create(
        &self,
        record: &SessionRecord,
        now: SystemTime,
    ) -> Result<Ticket, StoreError> {
        let ticket = Ticket::generate(now);
        let ttl = record.remaining(now).max(Duration::from_secs(1));
        self.store
            .put(&ticket.id, &record.seal(&ticket), ttl)
            .await?;
        Ok(ticket)
    }

    /// Replaces a session's record (its version bumped) and tells every instance.
    pub async fn update(
        &self,
        loaded: &Loaded,
        mut record: SessionRecord,
        now: SystemTime,
    ) -> Result<Arc<Loaded>, StoreError> {
        record.version = loaded.record.version.wrapping_add(1);
        let ticket = Ticket {
            id: loaded.id,
            secret: loaded.secret,
            issued_at: 0,
        };
        let ttl = record.remaining(now).max(Duration::from_secs(1));
        self.store
            .put(&loaded.id, &record.seal(&ticket), ttl)
            .await?;
        let next = Arc::new(Loaded::new(&ticket, record));
        self.cache.insert(loaded.id, Arc::clone(&next));
        if let Err(e) = self.store.publish_invalidation(&loaded.id).await {
            tracing::warn!(error = %e, "could not publish a session change");
        }
        Ok(next)
    }

    /// Ends a session everywhere: deleted from the store, dropped by every instance.
    pub async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.cache.invalidate(id);
        self.store.delete(id).await?;
        self.store.publish_invalidation(id).await
    }
}

/// The session's public handle (the `sid` upstreams see): a hash of the id, so logs and
/// upstreams never hold the store key itself.
fn public_sid(id: &SessionId) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::new()
        .chain_update(b"gatehouse sid\0")
        .chain_update(id)
        .finalize();
    hex::encode(&digest[..16])
}

/// Seconds since the epoch (0 before it).
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
