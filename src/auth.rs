//! The identity runtime shared by every request: the session store and cache, the identity
//! provider (an OIDC relying party, or GitHub), the decision cache and the background work
//! (discovery, refresh) on a dedicated runtime. Keys that a config may set (cookie secret,
//! signing keys) live in each snapshot as [`AuthKeys`]; when the config has none, the ones
//! generated at start are used for the life of the process.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime},
};

use moka::sync::Cache;

use crate::{
    authn::{
        github::{self, Github, GithubSettings},
        machine::{MachineError, MachineVerifier},
        oidc::{AuthnError, Oidc, OidcSettings, SignedInRef},
        Provider,
    },
    authz::DecisionCache,
    config::{Config, IdentitySettings, IdpProvider, SessionStoreUrl},
    identity::{AssertionCache, SigningKeys},
    metrics::{IdentityMetrics, IdpMetrics},
    session::{store, IdpTokens, Loaded, SessionId, SessionKind, SessionRecord, Sessions},
};

/// Sessions cached per instance.
const SESSION_CACHE_CAPACITY: u64 = 100_000;
/// Decisions cached per instance, and how long at most.
const DECISION_CACHE_CAPACITY: u64 = 200_000;
const DECISION_MAX_TTL: Duration = Duration::from_secs(300);
/// Tokens are refreshed this long before they expire.
pub const REFRESH_AHEAD: Duration = Duration::from_secs(60);
/// After a refresh (failed or not), the next one for the same session waits this long.
const REFRESH_RETRY: Duration = Duration::from_secs(5);

/// Keys of one configuration snapshot.
pub struct AuthKeys {
    pub sealer: crate::session::Sealer,
    pub assertions: AssertionCache,
    /// The cookie secret was generated at start (not configured).
    pub generated_cookie_secret: bool,
}

/// What a process generates once when the config does not set it.
pub struct Fallbacks {
    cookie_secret: [u8; 32],
    signing: Arc<SigningKeys>,
}

/// The identity runtime.
pub struct Auth {
    pub sessions: Arc<Sessions>,
    /// Where people sign in (None: no identity provider configured).
    pub idp: Option<Provider>,
    pub decisions: DecisionCache,
    /// States of logins already redeemed here (single use).
    used_states: Cache<String, ()>,
    /// Sessions being refreshed by this instance, or whose refresh failed recently.
    refreshing: Cache<SessionId, ()>,
    runtime: tokio::runtime::Handle,
    pub metrics: IdentityMetrics,
    machines: Arc<MachineVerifier>,
    /// Verified workload JWTs (by SHA-256 of the token) as sessions, until their `exp`.
    machine_sessions: Cache<[u8; 32], Arc<Loaded>>,
}

/// The outcome of a bearer JWT.
pub enum MachineLookup {
    Found(Arc<Loaded>),
    /// Not a credential (unknown issuer, bad signature, expired, …).
    Invalid,
    /// The issuer's keys could not be fetched.
    Unavailable,
}

// === impl Fallbacks ===

impl Fallbacks {
    /// Fresh random secrets.
    pub fn generate() -> Result<Fallbacks, String> {
        let mut cookie_secret = [0u8; 32];
        rand::fill(&mut cookie_secret);
        let signing = SigningKeys::generate().map_err(|e| e.to_string())?;
        Ok(Fallbacks {
            cookie_secret,
            signing: Arc::new(signing),
        })
    }
}

// === impl AuthKeys ===

impl AuthKeys {
    /// The keys for `identity`, falling back to the process's generated ones.
    pub fn build(identity: &IdentitySettings, fallbacks: &Fallbacks) -> Result<AuthKeys, String> {
        let sealer = crate::session::Sealer::new(
            identity
                .cookie_secret
                .as_ref()
                .unwrap_or(&fallbacks.cookie_secret),
        );
        let signing = match &identity.signing_key_pem {
            Some(pem) => {
                Arc::new(SigningKeys::from_pem(pem).map_err(|e| format!("signing_key: {e}"))?)
            }
            None => Arc::clone(&fallbacks.signing),
        };
        Ok(AuthKeys {
            sealer,
            assertions: AssertionCache::new(signing, 64 << 20),
            generated_cookie_secret: identity.cookie_secret.is_none(),
        })
    }
}

// === impl Auth ===

impl Auth {
    /// Starts the identity runtime for the first config: a dedicated thread runs store
    /// connections, the invalidation listener and IdP calls. Neither the store nor the IdP
    /// needs to be reachable now.
    pub fn start(config: &Config, metrics: IdentityMetrics) -> Result<Arc<Auth>, String> {
        // One process-wide rustls provider for the IdP and Redis clients (an error only means
        // one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("gatehouse-auth")
            .enable_all()
            .build()
            .map_err(|e| format!("identity runtime: {e}"))?;
        let handle = runtime.handle().clone();
        // The runtime lives as long as the process.
        std::mem::forget(runtime);
        let identity = &config.identity;
        let url = match &identity.session_store {
            SessionStoreUrl::Memory => "memory".to_owned(),
            SessionStoreUrl::Redis(url) => url.clone(),
        };
        let (sessions, idp) = handle.block_on(async {
            let store = store::open(&url, store::StoreOptions::default())
                .map_err(|e| format!("session_store: {e}"))?;
            let store: Arc<dyn store::SessionStore> =
                Arc::new(store::Metered::new(store, metrics.store.clone()));
            let sessions = Sessions::new(store, SESSION_CACHE_CAPACITY);
            sessions.listen();
            let idp = provider(identity, &metrics.idp)?;
            if let Some(idp) = &idp {
                let warm = idp.clone();
                tokio::spawn(async move { warm.warm_up().await });
            }
            Ok::<_, String>((sessions, idp))
        })?;
        Ok(Arc::new(Auth {
            sessions,
            idp,
            decisions: DecisionCache::new(DECISION_CACHE_CAPACITY, DECISION_MAX_TTL),
            used_states: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(900))
                .build(),
            refreshing: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(REFRESH_RETRY)
                .build(),
            runtime: handle,
            metrics,
            machines: Arc::new(MachineVerifier::new()?),
            machine_sessions: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        }))
    }

    /// Copies the decision cache counters and the store's health into the metrics (called
    /// when `/metrics` is scraped).
    pub fn sync_metrics(&self) {
        let m = &self.metrics;
        IdentityMetrics::sync_counter(&m.authz_cache_hits, self.decisions.hits());
        IdentityMetrics::sync_counter(&m.authz_cache_misses, self.decisions.misses());
        let store = self.sessions.store();
        let health = store.health();
        m.session_store_up
            .with_label_values(&[store.kind(), "connection"])
            .set(i64::from(health.connected));
        m.session_store_up
            .with_label_values(&[store.kind(), "subscription"])
            .set(i64::from(health.subscribed));
    }

    /// Runs `fut` on the identity runtime (store and IdP connections live there) and waits
    /// for it from any runtime.
    pub async fn run<T, F>(&self, fut: F) -> Option<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.runtime.spawn(fut).await.ok()
    }

    /// The session of a workload JWT from one of `issuers`: cached until the token's `exp`,
    /// else verified (on the identity runtime, which fetches JWKS).
    pub async fn machine(
        &self,
        token: &str,
        issuers: &[crate::config::TrustedIssuer],
        own_kids: Vec<String>,
        now: SystemTime,
    ) -> MachineLookup {
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(loaded) = self.machine_sessions.get(&digest) {
            if loaded.expires > now {
                return MachineLookup::Found(loaded);
            }
            self.machine_sessions.invalidate(&digest);
        }
        let (verifier, token, issuers) = (
            Arc::clone(&self.machines),
            token.to_owned(),
            issuers.to_vec(),
        );
        let verified = self
            .run(async move { verifier.verify(&token, &issuers, &own_kids).await })
            .await;
        let machine = match verified {
            Some(Ok(m)) => m,
            Some(Err(MachineError::Unavailable(e))) => {
                tracing::warn!(error = %e, "workload token issuer keys unavailable");
                return MachineLookup::Unavailable;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "bearer token refused");
                return MachineLookup::Invalid;
            }
            None => return MachineLookup::Unavailable,
        };
        let now_secs = crate::session::unix(now);
        let record = SessionRecord {
            version: 1,
            kind: SessionKind::Machine,
            subject: machine.subject,
            issuer: machine.issuer,
            created_at: now_secs,
            expires_at: machine.expires_at,
            refreshed_at: now_secs,
            tokens: IdpTokens::default(),
        };
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        let loaded = Arc::new(Loaded::ephemeral(id, record));
        self.machine_sessions.insert(digest, Arc::clone(&loaded));
        MachineLookup::Found(loaded)
    }

    /// Marks a login state as redeemed; false if it already was (a replay).
    pub fn redeem_state(&self, state: &str) -> bool {
        let mut fresh = false;
        self.used_states.entry(state.to_owned()).or_insert_with(|| {
            fresh = true;
        });
        fresh
    }

    /// Refreshes the session's IdP tokens in the background when they expire within
    /// [`REFRESH_AHEAD`]: one refresh per session in this instance (and across the fleet, by a
    /// store lock). The request that noticed goes on with the current session.
    pub fn refresh_if_due(self: &Arc<Self>, loaded: &Arc<Loaded>, now: SystemTime) {
        let Some(idp) = &self.idp else { return };
        let tokens = &loaded.record.tokens;
        let due = tokens.refresh_token.is_some()
            && tokens
                .expires_at
                .is_some_and(|exp| exp <= crate::session::unix(now + REFRESH_AHEAD));
        if !due {
            return;
        }
        let mut claimed = false;
        self.refreshing.entry(loaded.id).or_insert_with(|| {
            claimed = true;
        });
        if !claimed {
            return;
        }
        let (auth, idp, loaded) = (Arc::clone(self), idp.clone(), Arc::clone(loaded));
        self.runtime.spawn(async move {
            auth.refresh(&idp, &loaded).await;
        });
    }

    async fn refresh(&self, idp: &Provider, loaded: &Loaded) {
        let store = self.sessions.store();
        let mut lock_name = b"refresh:".to_vec();
        lock_name.extend_from_slice(&loaded.id);
        let token = match store.try_lock(&lock_name, Duration::from_secs(30)).await {
            Ok(Some(token)) => token,
            // Another instance refreshes it.
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "refresh skipped: session store unavailable");
                return;
            }
        };
        let record = &loaded.record;
        let previous = SignedInRef {
            issuer: &record.issuer,
            user_id: &record.subject.user_id,
            subject: &record.subject,
            tokens: &record.tokens,
        };
        match idp.refresh(&previous).await {
            Ok(signed_in) => {
                self.metrics
                    .refreshes_total
                    .with_label_values(&["success"])
                    .inc();
                let mut next = record.clone();
                next.subject = signed_in.subject;
                next.tokens = signed_in.tokens;
                next.refreshed_at = crate::session::unix(SystemTime::now());
                // The claim in `refreshing` stays until REFRESH_RETRY passes: at most one
                // refresh per session per interval, even with tokens shorter than
                // REFRESH_AHEAD.
                if let Err(e) = self.sessions.update(loaded, next, SystemTime::now()).await {
                    tracing::warn!(error = %e, "refreshed session could not be stored");
                }
            }
            Err(AuthnError::InvalidGrant) => {
                self.metrics
                    .refreshes_total
                    .with_label_values(&["invalid_grant"])
                    .inc();
                tracing::info!(sid = %loaded.sid(), "refresh token rejected; session ended");
                if let Err(e) = self.sessions.delete(&loaded.id).await {
                    tracing::warn!(error = %e, "ended session could not be deleted");
                }
            }
            // Timeouts, 5xx, garbage: keep the session and retry after REFRESH_RETRY.
            Err(e) => {
                self.metrics
                    .refreshes_total
                    .with_label_values(&["failure"])
                    .inc();
                tracing::warn!(error = %e, sid = %loaded.sid(), "refresh failed; will retry");
            }
        }
        if let Err(e) = store.unlock(&lock_name, &token).await {
            tracing::debug!(error = %e, "refresh lock release failed (it expires)");
        }
    }
}

/// The identity provider of `identity`, if one is configured.
fn provider(identity: &IdentitySettings, metrics: &IdpMetrics) -> Result<Option<Provider>, String> {
    if identity.idp_provider == Some(IdpProvider::Github) {
        return match github_settings(identity) {
            Some(settings) => Ok(Some(Provider::Github(
                Github::new(settings, metrics.clone()).map_err(|e| e.to_string())?,
            ))),
            None => Ok(None),
        };
    }
    match oidc_settings(identity) {
        Some(settings) => Ok(Some(Provider::Oidc(
            Oidc::new(settings, metrics.clone()).map_err(|e| e.to_string())?,
        ))),
        None => Ok(None),
    }
}

/// The GitHub provider's settings (`idp_provider: github`; base URL `https://github.com`
/// unless `idp_provider_url` names an Enterprise Server), if a client id is configured.
pub fn github_settings(identity: &IdentitySettings) -> Option<GithubSettings> {
    let base_url = match &identity.idp_provider_url {
        Some(url) => url.clone(),
        None => url::Url::parse(github::GITHUB_COM).ok()?,
    };
    let scopes = if identity.idp_scopes.is_empty() {
        github::DEFAULT_SCOPES
            .into_iter()
            .map(str::to_owned)
            .collect()
    } else {
        identity.idp_scopes.clone()
    };
    Some(GithubSettings {
        base_url,
        client_id: identity.idp_client_id.clone()?,
        client_secret: identity.idp_client_secret.clone(),
        scopes,
    })
}

/// The relying party's settings, with the provider presets' defaults (None for `github`,
/// which is not OIDC).
pub fn oidc_settings(identity: &IdentitySettings) -> Option<OidcSettings> {
    let provider = identity.idp_provider.unwrap_or(IdpProvider::Oidc);
    if provider == IdpProvider::Github {
        return None;
    }
    let issuer = match (&identity.idp_provider_url, provider) {
        // Auth0 issuers end with a slash; elsewhere a bare host has none.
        (Some(url), IdpProvider::Auth0) => url.as_str().to_owned(),
        (Some(url), _) => url.as_str().trim_end_matches('/').to_owned(),
        (None, IdpProvider::Google) => "https://accounts.google.com".to_owned(),
        (None, IdpProvider::Gitlab) => "https://gitlab.com".to_owned(),
        (None, _) => return None,
    };
    let client_id = identity.idp_client_id.clone()?;
    let scopes = if identity.idp_scopes.is_empty() {
        let mut s = vec!["openid", "profile", "email"];
        if provider == IdpProvider::Oidc {
            s.push("groups");
        }
        if matches!(
            provider,
            IdpProvider::Okta | IdpProvider::Azure | IdpProvider::Auth0
        ) {
            s.push("offline_access");
        }
        s.into_iter().map(str::to_owned).collect()
    } else {
        identity.idp_scopes.clone()
    };
    Some(OidcSettings {
        issuer,
        client_id,
        client_secret: identity.idp_client_secret.clone(),
        scopes,
        groups_claim: "groups".to_owned(),
        azure: provider == IdpProvider::Azure,
    })
}
