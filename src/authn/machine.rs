//! Machine identities: a workload's JWT from a trusted issuer (`identity_providers`: exact
//! `issuer`, `jwks_url`, accepted `audiences`) becomes the request's subject for the token's
//! lifetime. Signatures are asymmetric only; the key type must match `alg`; an unknown `kid`
//! causes one rate-limited JWKS refetch; gatehouse's own assertions are never credentials.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};
use moka::sync::Cache;

use crate::{config::TrustedIssuer, policy::Subject};

/// Tokens longer than this are refused before parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// How long a fetched JWKS is used before it is fetched again.
const JWKS_TTL: Duration = Duration::from_secs(3600);
/// Unknown `kid`: at most one refetch per issuer per this interval.
const REFETCH_INTERVAL: Duration = Duration::from_secs(10);

const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A verified workload identity.
#[derive(Debug, Clone)]
pub struct Machine {
    pub subject: Subject,
    pub issuer: String,
    /// `exp`, seconds since the epoch.
    pub expires_at: u64,
}

/// Why a bearer JWT is no credential (for logs; the client only ever sees 401).
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("not a JWT from a trusted issuer")]
    UnknownIssuer,
    #[error("token rejected: {0}")]
    Rejected(String),
    #[error("issuer keys unavailable: {0}")]
    Unavailable(String),
}

/// JWKS of the trusted issuers, fetched on demand and cached.
pub struct MachineVerifier {
    http: reqwest::Client,
    jwks: Cache<String, Arc<JwkSet>>,
    last_refetch: Mutex<std::collections::HashMap<String, Instant>>,
}

// === impl MachineVerifier ===

impl MachineVerifier {
    pub fn new() -> Result<MachineVerifier, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(MachineVerifier {
            http,
            jwks: Cache::builder()
                .max_capacity(64)
                .time_to_live(JWKS_TTL)
                .build(),
            last_refetch: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Verifies `token` against `issuers`. `own_kids`: the kids of gatehouse's own signing
    /// keys (a token signed by one of them is refused whatever its issuer claims).
    pub async fn verify(
        &self,
        token: &str,
        issuers: &[TrustedIssuer],
        own_kids: &[String],
    ) -> Result<Machine, MachineError> {
        if token.len() > MAX_TOKEN_LEN || token.split('.').count() != 3 {
            return Err(MachineError::UnknownIssuer);
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| MachineError::Rejected(format!("header: {e}")))?;
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(MachineError::Rejected(format!(
                "alg {:?} not allowed",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| MachineError::Rejected("no kid".into()))?;
        if own_kids.contains(&kid) {
            return Err(MachineError::Rejected("gatehouse's own assertion".into()));
        }
        // The issuer claim only selects the configuration; the signature decides.
        let unverified: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|e| MachineError::Rejected(format!("claims: {e}")))?;
        let iss = unverified.get("iss").and_then(|v| v.as_str()).unwrap_or("");
        let trusted = issuers
            .iter()
            .find(|i| i.issuer == iss)
            .ok_or(MachineError::UnknownIssuer)?;
        let jwk = match self.key(trusted, &kid, false).await? {
            Some(jwk) => jwk,
            None => self
                .key(trusted, &kid, true)
                .await?
                .ok_or_else(|| MachineError::Rejected("unknown kid".into()))?,
        };
        let key =
            DecodingKey::from_jwk(&jwk).map_err(|e| MachineError::Rejected(format!("key: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&trusted.issuer]);
        validation.set_audience(&trusted.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key,
            &validation,
        )
        .map_err(|e| MachineError::Rejected(e.to_string()))?;
        let claims = data.claims;
        let sub = claims.get("sub").and_then(|v| v.as_str()).unwrap_or("");
        if sub.is_empty() {
            return Err(MachineError::Rejected("empty sub".into()));
        }
        let expires_at = claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let str_claim = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let groups = match claims.get("groups") {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Machine {
            subject: Subject {
                user_id: Subject::user_id_of(&trusted.issuer, sub),
                email: str_claim("email"),
                email_verified: claims
                    .get("email_verified")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false),
                name: str_claim("name"),
                groups,
                claims: Subject::claims_from_json(&claims),
            },
            issuer: trusted.issuer.clone(),
            expires_at,
        })
    }

    /// The issuer's key `kid`, from the cached JWKS (`refetch`: fetch again first, at most
    /// once per [`REFETCH_INTERVAL`]).
    async fn key(
        &self,
        issuer: &TrustedIssuer,
        kid: &str,
        refetch: bool,
    ) -> Result<Option<jsonwebtoken::jwk::Jwk>, MachineError> {
        let url = issuer.jwks_url.as_str().to_owned();
        if refetch {
            let allowed = self.last_refetch.lock().is_ok_and(|mut last| {
                let due = last
                    .get(&url)
                    .is_none_or(|t| t.elapsed() >= REFETCH_INTERVAL);
                if due {
                    last.insert(url.clone(), Instant::now());
                }
                due
            });
            if !allowed {
                return Ok(None);
            }
            self.jwks.invalidate(&url);
        }
        let set = match self.jwks.get(&url) {
            Some(set) => set,
            None => {
                let set = Arc::new(self.fetch(&url).await?);
                self.jwks.insert(url, Arc::clone(&set));
                set
            }
        };
        Ok(set.find(kid).cloned())
    }

    async fn fetch(&self, url: &str) -> Result<JwkSet, MachineError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| MachineError::Unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(MachineError::Unavailable(format!(
                "JWKS: HTTP {}",
                response.status()
            )));
        }
        response
            .json::<JwkSet>()
            .await
            .map_err(|e| MachineError::Unavailable(format!("JWKS: {e}")))
    }
}
