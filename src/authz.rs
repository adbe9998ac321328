//! Authorization through the decision cache: a route's compiled policy, the session and the
//! request facts → [`Decision`], evaluated at most once per key while the answer holds.
//!
//! The key is (snapshot generation, route index, session id + version, a keyed 128-bit hash of
//! exactly the facts the policy reads). A reload bumps the generation and a session change
//! bumps its version, so neither can be answered from an old entry. An entry is valid until
//! the earliest of: the session's expiry, the policy's next time boundary, and `max_ttl`;
//! validity is checked against the caller's `now` on every hit (moka's per-entry expiry only
//! reclaims memory), so a stale entry is never served even if the clocks disagree.

use std::{
    hash::{BuildHasher, Hash, Hasher},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant, SystemTime},
};

use moka::{sync::Cache, Expiry};

use crate::policy::{evaluate, Decision, FactSet, Policy, RequestFacts, Subject};

/// A session as cache keys see it: its id and its version (bumped on every refresh or change
/// of the session record). Copy, 24 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey {
    /// The session id (or its first 128 bits).
    pub id: u128,
    /// The session record's version counter.
    pub version: u64,
}

/// The signed-in session of a request, as the authorizer needs it.
#[derive(Debug, Clone, Copy)]
pub struct SessionRef<'a> {
    /// Id and version.
    pub key: SessionKey,
    /// When the session ends; no cached decision for it outlives this.
    pub expires_at: SystemTime,
    /// Who is signed in.
    pub subject: &'a Subject,
}

/// The cache key of one decision. Fixed size: it holds a hash of the facts, never the facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecisionKey {
    generation: u64,
    route: u64,
    /// `None` for anonymous requests, and for policies that read no subject (their decision is
    /// the same for everyone).
    session: Option<SessionKey>,
    facts: u128,
}

/// A bounded cache of decisions with hit/miss counters for the metrics.
pub struct DecisionCache {
    cache: Cache<DecisionKey, CachedDecision>,
    /// Two independently, randomly keyed SipHash instances: 128 bits that an attacker cannot
    /// compute offline, so no two requests' facts can be made to collide.
    hash_keys: (
        std::collections::hash_map::RandomState,
        std::collections::hash_map::RandomState,
    ),
    max_ttl: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct CachedDecision {
    decision: Decision,
    valid_until: SystemTime,
    /// `valid_until - now` at insertion, for moka's expiry.
    ttl: Duration,
}

struct DecisionExpiry;

// === impl DecisionCache ===

impl DecisionCache {
    /// A cache of at most `max_entries` decisions, each kept at most `max_ttl`.
    pub fn new(max_entries: u64, max_ttl: Duration) -> DecisionCache {
        DecisionCache {
            cache: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(DecisionExpiry)
                .build(),
            hash_keys: Default::default(),
            max_ttl,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The decision for a request to route `route` (its index in snapshot `generation`), whose
    /// compiled policy is `policy`: from the cache when a valid entry exists, else evaluated
    /// (once for all concurrent callers with the same key) and cached. `now` is the request's
    /// time (`SystemTime::now()` in the proxy).
    pub fn decide(
        &self,
        generation: u64,
        route: usize,
        policy: &Policy,
        session: Option<&SessionRef<'_>>,
        facts: &RequestFacts<'_>,
        now: SystemTime,
    ) -> Decision {
        let key = self.key(generation, route, policy, session, facts);
        // Fast path: a plain read. Misses and stale entries go through the entry API, which
        // coalesces concurrent evaluations of one key.
        if let Some(cached) = self.cache.get(&key) {
            if cached.valid_until > now {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return cached.decision;
            }
        }
        let mut evaluated = false;
        let entry = self.cache.entry(key).or_insert_with_if(
            || {
                evaluated = true;
                let decision = evaluate(policy, session.map(|s| s.subject), facts, now);
                let mut valid_until = now + self.max_ttl;
                if let (Some(s), true) = (session, key.session.is_some()) {
                    valid_until = valid_until.min(s.expires_at);
                }
                if let Some(b) = policy.next_time_boundary(now) {
                    valid_until = valid_until.min(b);
                }
                let ttl = valid_until.duration_since(now).unwrap_or(Duration::ZERO);
                CachedDecision {
                    decision,
                    valid_until,
                    ttl,
                }
            },
            |cached| cached.valid_until <= now,
        );
        if evaluated {
            self.misses.fetch_add(1, Ordering::Relaxed);
        } else {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        entry.into_value().decision
    }

    /// The key [`DecisionCache::decide`] uses: only the facts `policy` reads go into it, and
    /// the session only when the policy reads the subject.
    pub fn key(
        &self,
        generation: u64,
        route: usize,
        policy: &Policy,
        session: Option<&SessionRef<'_>>,
        facts: &RequestFacts<'_>,
    ) -> DecisionKey {
        let reads = policy.facts_read();
        let session = if reads.contains(FactSet::SUBJECT) {
            session.map(|s| s.key)
        } else {
            None
        };
        let mut h1 = self.hash_keys.0.build_hasher();
        let mut h2 = self.hash_keys.1.build_hasher();
        hash_facts(&mut h1, reads, facts);
        hash_facts(&mut h2, reads, facts);
        DecisionKey {
            generation,
            route: route as u64,
            session,
            facts: (u128::from(h1.finish()) << 64) | u128::from(h2.finish()),
        }
    }

    /// Decisions answered from the cache so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Decisions evaluated so far.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Entries currently held (approximate; moka updates it lazily).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Whether a valid-or-not-yet-reclaimed entry exists for `key` (for tests and debugging).
    pub fn contains(&self, key: &DecisionKey) -> bool {
        self.cache.contains_key(key)
    }

    /// Drops every entry (the generation in keys already makes old entries unreachable; this
    /// frees their memory at once, e.g. after a reload).
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }
}

fn hash_facts(h: &mut impl Hasher, reads: FactSet, f: &RequestFacts<'_>) {
    // Each fact is prefixed with a tag so different fact sets cannot produce the same stream.
    if reads.contains(FactSet::METHOD) {
        (1u8, f.method).hash(h);
    }
    if reads.contains(FactSet::PATH) {
        (2u8, f.path).hash(h);
    }
    if reads.contains(FactSet::SOURCE_IP) {
        (3u8, f.source_ip.map(|ip| ip.to_canonical())).hash(h);
    }
    if reads.contains(FactSet::CLIENT_CERT) {
        4u8.hash(h);
        match &f.client_certificate {
            None => 0u8.hash(h),
            Some(c) => {
                (1u8, c.valid, c.fingerprint, c.spki_hash).hash(h);
                (c.san_dns, c.san_email, c.san_uri).hash(h);
            }
        }
    }
    if reads.contains(FactSet::HEADERS) {
        // cors_preflight reads only whether these headers are present.
        (
            5u8,
            f.origin.is_some(),
            f.access_control_request_method.is_some(),
        )
            .hash(h);
    }
    // FactSet::TIME is not keyed: entries expire at the policy's next time boundary instead.
}

// === impl DecisionExpiry ===

impl Expiry<DecisionKey, CachedDecision> for DecisionExpiry {
    fn expire_after_create(
        &self,
        _: &DecisionKey,
        v: &CachedDecision,
        _: Instant,
    ) -> Option<Duration> {
        Some(v.ttl)
    }

    fn expire_after_update(
        &self,
        _: &DecisionKey,
        v: &CachedDecision,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

impl std::fmt::Debug for DecisionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionCache")
            .field("entries", &self.cache.entry_count())
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

#[cfg(test)]
mod tests;
