//! The identity assertion's claims, and the cache that signs each (session, audience) once
//! per few minutes instead of once per request.

use std::{
    hash::BuildHasher as _,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use bytes::Bytes;
use http::HeaderValue;
use moka::{ops::compute::Op, sync::Cache};
use rand::{rngs::OsRng, TryRngCore as _};
use serde::Serialize;

use super::{IdentityError, SigningKeys};
use crate::policy::Subject;

/// How long an assertion is valid: `exp` = `iat` + 5 minutes.
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// A cached assertion is re-signed once less than this much validity remains, so an upstream
/// never receives one that expires in transit or during a short request.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(60);

/// Who an assertion is for: one session, at one version, towards one route host.
#[derive(Debug, Clone, Copy)]
pub struct AssertionRequest<'a> {
    /// The session id; with `session_version` it keys the cache.
    pub session_id: u128,
    /// Bumped by the session layer whenever the subject changes (refresh, new groups): a new
    /// version never gets an assertion signed for an older one.
    pub session_version: u64,
    /// The `sid` claim (the session id as hex, or whatever public handle the caller uses).
    pub sid: &'a str,
    /// The `iss` claim: the authenticate host, or the route host.
    pub issuer: &'a str,
    /// The `aud` claim: the route host without port.
    pub audience: &'a str,
    /// The signed-in user.
    pub subject: &'a Subject,
}

/// Signed assertions per (session, version, issuer, audience), bounded in bytes, each kept
/// until [`REFRESH_BEFORE_EXPIRY`] before its `exp`. Built per configuration snapshot
/// together with its [`SigningKeys`], so a key change never serves an old key's tokens.
pub struct AssertionCache {
    keys: Arc<SigningKeys>,
    entries: Cache<EntryKey, Arc<Entry>>,
    /// Hashes (issuer, audience) into the key so a hit does not allocate; the entry keeps
    /// both strings and a hit compares them, so a hash collision can only cost a re-sign.
    target_hasher: std::collections::hash_map::RandomState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct EntryKey {
    session_id: u128,
    session_version: u64,
    target: u64,
}

struct Entry {
    token: HeaderValue,
    exp: SystemTime,
    issuer: Box<str>,
    audience: Box<str>,
}

/// The JWT payload, in Pomerium's claim names.
#[derive(Serialize)]
pub(super) struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    groups: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    sid: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

// === impl Claims ===

impl<'a> Claims<'a> {
    pub(super) fn new(
        issuer: &'a str,
        audience: &'a str,
        subject: &'a Subject,
        sid: &'a str,
        now: SystemTime,
    ) -> Result<Claims<'a>, IdentityError> {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| IdentityError::Clock)?
            .as_secs();
        let mut jti = [0u8; 16];
        OsRng
            .try_fill_bytes(&mut jti)
            .map_err(|_| IdentityError::Random)?;
        Ok(Claims {
            iss: issuer,
            aud: audience,
            sub: &subject.user_id,
            user: &subject.user_id,
            email: subject.email.as_deref(),
            groups: &subject.groups,
            name: subject.name.as_deref(),
            sid,
            jti: URL_SAFE_NO_PAD.encode(jti),
            iat,
            exp: iat + ASSERTION_LIFETIME.as_secs(),
        })
    }

    /// `exp` as a time.
    pub(super) fn expiry(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.exp)
    }
}

// === impl AssertionCache ===

impl AssertionCache {
    /// The default bound: 64 MiB of tokens (about 60,000 sessions × routes with small group
    /// lists; fewer when users carry hundreds of groups).
    pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;

    /// An empty cache signing with `keys`, holding at most about `max_bytes` of tokens.
    pub fn new(keys: Arc<SigningKeys>, max_bytes: u64) -> AssertionCache {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_: &EntryKey, e: &Arc<Entry>| {
                let bytes = e.token.len() + e.issuer.len() + e.audience.len() + 128;
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            // No entry outlives its usefulness: after this it would be refreshed anyway.
            .time_to_live(ASSERTION_LIFETIME - REFRESH_BEFORE_EXPIRY)
            .build();
        AssertionCache {
            keys,
            entries,
            target_hasher: Default::default(),
        }
    }

    /// The keys this cache signs with (serve their [`SigningKeys::jwks`] from the same
    /// snapshot).
    pub fn keys(&self) -> &Arc<SigningKeys> {
        &self.keys
    }

    /// The `X-Gatehouse-Jwt-Assertion` value for `request` at `now`: the cached token while
    /// more than [`REFRESH_BEFORE_EXPIRY`] of its validity remains, otherwise a freshly signed
    /// one, which replaces the cached one. A hit clones one reference-counted value and
    /// allocates nothing itself (moka's housekeeping, run every 64 reads, occasionally does);
    /// about 0.2 µs against about 60 µs for a signature. Concurrent misses for one key sign
    /// once. Errors only when signing fails ([`IdentityError::Random`], [`IdentityError::Clock`]).
    pub fn get_or_sign(
        &self,
        request: &AssertionRequest<'_>,
        now: SystemTime,
    ) -> Result<HeaderValue, IdentityError> {
        let key = EntryKey {
            session_id: request.session_id,
            session_version: request.session_version,
            target: self
                .target_hasher
                .hash_one((request.issuer, request.audience)),
        };
        if let Some(entry) = self.entries.get(&key) {
            if entry.serves(request, now) {
                return Ok(entry.token.clone());
            }
        }
        let result = self.entries.entry(key).and_try_compute_with(|current| {
            if let Some(current) = current {
                // Another thread may have refreshed it while we waited for the key lock.
                if current.value().serves(request, now) {
                    return Ok(Op::Nop);
                }
            }
            self.sign(request, now).map(|e| Op::Put(Arc::new(e)))
        })?;
        match result.into_entry() {
            Some(entry) => Ok(entry.value().token.clone()),
            // Unreachable: the closure either kept an existing entry or put one.
            None => self.sign(request, now).map(|e| e.token),
        }
    }

    fn sign(
        &self,
        request: &AssertionRequest<'_>,
        now: SystemTime,
    ) -> Result<Entry, IdentityError> {
        let (token, exp) = self.keys.sign(
            request.issuer,
            request.audience,
            request.subject,
            request.sid,
            now,
        )?;
        let token = HeaderValue::from_maybe_shared(Bytes::from(token))
            .map_err(|_| IdentityError::Encode("assertion header value"))?;
        Ok(Entry {
            token,
            exp,
            issuer: request.issuer.into(),
            audience: request.audience.into(),
        })
    }
}

// === impl Entry ===

impl Entry {
    /// Whether this entry answers `request` at `now`: same issuer and audience (the key holds
    /// only their hash), and more than [`REFRESH_BEFORE_EXPIRY`] of validity left.
    fn serves(&self, request: &AssertionRequest<'_>, now: SystemTime) -> bool {
        *self.audience == *request.audience
            && *self.issuer == *request.issuer
            && self
                .exp
                .duration_since(now)
                .is_ok_and(|left| left > REFRESH_BEFORE_EXPIRY)
    }
}
