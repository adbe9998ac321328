//! The OIDC relying party (openidconnect): discovery (lazy, cached, refreshed in the
//! background, last-known-good on failure), the authorization-code flow with PKCE S256, state
//! and nonce, every ID-token check of SECURITY.md principle 4, userinfo merged only for the
//! same `sub`, refresh, and RP-initiated logout.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use arc_swap::ArcSwapOption;
use openidconnect::{
    core::{
        CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
        CoreClientAuthMethod, CoreErrorResponseType, CoreGenderClaim, CoreGrantType,
        CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
        CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType, CoreRevocableToken,
        CoreRevocationErrorResponse, CoreSubjectIdentifierType, CoreTokenIntrospectionResponse,
        CoreTokenType,
    },
    AdditionalClaims, AdditionalProviderMetadata, AuthType, AuthorizationCode,
    ClaimsVerificationError, Client, ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields, IssuerUrl, JsonWebKeySet, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl,
    RefreshToken, RequestTokenError, Scope, SignatureVerificationError, StandardErrorResponse,
    StandardTokenResponse, SubjectIdentifier, TokenResponse,
};
use serde::{Deserialize, Serialize};

use crate::{
    metrics::{IdpMetrics, IdpOp},
    policy::Subject,
    session::{unix, IdpTokens},
};

/// How long discovery results are used before a background refresh.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// After a failed discovery, the next attempt waits at least this long.
const DISCOVERY_RETRY: Duration = Duration::from_secs(2);
/// Unknown `kid`: at most one JWKS refetch per this interval.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Every call to the IdP is bounded by this.
const IDP_TIMEOUT: Duration = Duration::from_secs(10);

/// Signature algorithms accepted for ID tokens: asymmetric only (never `none`, never HMAC
/// keyed with anything an attacker may know).
const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// Provider metadata beyond OIDC Discovery's core set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraMetadata {
    #[serde(default)]
    end_session_endpoint: Option<url::Url>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: Option<bool>,
}
impl AdditionalProviderMetadata for ExtraMetadata {}

/// Every claim of an ID token or userinfo response, kept for groups and `claim/*` rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AllClaims {
    #[serde(flatten)]
    map: serde_json::Map<String, serde_json::Value>,
}
impl AdditionalClaims for AllClaims {}

type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;
type Fields = IdTokenFields<
    AllClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<Fields, CoreTokenType>;
type RpClient = Client<
    AllClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;
type IdTokenClaims = openidconnect::IdTokenClaims<AllClaims, CoreGenderClaim>;

/// What the relying party needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
    /// The claim holding groups (default `groups`).
    pub groups_claim: String,
    /// Microsoft Entra: discovery may name the issuer with another tenant spelling (a GUID
    /// for a domain) or as the multi-tenant template `…/{tenantid}/v2.0`.
    pub azure: bool,
}

/// Why a login or refresh failed. Messages are for logs and never carry tokens or codes.
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    /// The IdP could not be reached or answered with a server error (retry later: 503).
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
    /// The IdP answered something that fails a check (a 4xx/502 and no session).
    #[error("sign-in rejected: {0}")]
    Rejected(String),
    /// The refresh token is no longer valid: the session ends.
    #[error("refresh token rejected (invalid_grant)")]
    InvalidGrant,
}

/// The login in progress, carried in the sealed login-state cookie.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginState {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// The redirect URI given to the IdP (the token request repeats it).
    pub redirect_uri: String,
    /// Where the browser goes after the callback (an absolute URL of a configured route, or
    /// a loopback URL for programmatic logins).
    pub return_to: String,
    /// A programmatic login: the client's loopback callback.
    #[serde(default)]
    pub programmatic: bool,
    pub issued_at: u64,
}

/// A verified sign-in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub subject: Subject,
    pub issuer: String,
    pub tokens: IdpTokens,
}

/// Discovery results in use.
struct Discovered {
    client: RpClient,
    metadata: Metadata,
    fetched_at: Instant,
    /// Entra's multi-tenant issuer template: an ID token's `iss` must be it with
    /// `{tenantid}` replaced by the token's `tid`.
    issuer_template: Option<String>,
}

/// The relying party for one IdP.
pub struct Oidc {
    settings: OidcSettings,
    http: reqwest::Client,
    current: ArcSwapOption<Discovered>,
    discovering: tokio::sync::Mutex<()>,
    last_failure: Mutex<Option<Instant>>,
    last_jwks_refetch: Mutex<Option<Instant>>,
    metrics: IdpMetrics,
}

// === impl Oidc ===

impl Oidc {
    /// A relying party; nothing is fetched until first needed.
    pub fn new(settings: OidcSettings, metrics: IdpMetrics) -> Result<Arc<Oidc>, AuthnError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(IDP_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| AuthnError::Unavailable(format!("HTTP client: {e}")))?;
        Ok(Arc::new(Oidc {
            settings,
            http,
            current: ArcSwapOption::empty(),
            discovering: tokio::sync::Mutex::new(()),
            last_failure: Mutex::new(None),
            last_jwks_refetch: Mutex::new(None),
            metrics,
        }))
    }

    /// The settings this relying party was built with.
    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// Fetches discovery now (at startup, in the background); failure is only logged.
    pub async fn warm_up(self: &Arc<Self>) {
        if let Err(e) = self.discovered().await {
            tracing::warn!(error = %e, "identity provider discovery failed; will retry on demand");
        }
    }

    /// Discovery results: cached; stale ones are refreshed in the background (the caller
    /// goes on with the known ones), and kept when that fails.
    async fn discovered(self: &Arc<Self>) -> Result<Arc<Discovered>, AuthnError> {
        if let Some(d) = self.current.load_full() {
            if d.fetched_at.elapsed() >= DISCOVERY_TTL {
                if let Ok(_guard) = self.discovering.try_lock() {
                    let me = Arc::clone(self);
                    tokio::spawn(async move { me.rediscover().await });
                }
            }
            return Ok(d);
        }
        self.rediscover().await
    }

    /// Fetches discovery again (one fetch at a time; failures rate-limited and last known
    /// good kept).
    async fn rediscover(&self) -> Result<Arc<Discovered>, AuthnError> {
        let _guard = self.discovering.lock().await;
        let known = self.current.load_full();
        if let Some(d) = &known {
            if d.fetched_at.elapsed() < DISCOVERY_TTL {
                return Ok(Arc::clone(d));
            }
        }
        let recently_failed = self
            .last_failure
            .lock()
            .ok()
            .and_then(|f| *f)
            .is_some_and(|t| t.elapsed() < DISCOVERY_RETRY);
        if recently_failed {
            return known
                .ok_or_else(|| AuthnError::Unavailable("discovery failed recently".into()));
        }
        match self.discover().await {
            Ok(d) => {
                let d = Arc::new(d);
                self.current.store(Some(Arc::clone(&d)));
                Ok(d)
            }
            Err(e) => {
                if let Ok(mut f) = self.last_failure.lock() {
                    *f = Some(Instant::now());
                }
                match known {
                    // Last known good.
                    Some(d) => {
                        tracing::warn!(error = %e, "discovery refresh failed; keeping the last result");
                        Ok(d)
                    }
                    None => Err(e),
                }
            }
        }
    }

    async fn discover(&self) -> Result<Discovered, AuthnError> {
        let issuer = IssuerUrl::new(self.settings.issuer.clone())
            .map_err(|e| AuthnError::Rejected(format!("issuer URL: {e}")))?;
        if self.settings.azure {
            let found = self.discover_azure(&issuer).await;
            return self.metrics.observe(IdpOp::Discovery, found);
        }
        let metadata = Metadata::discover_async(issuer, &self.http).await;
        let metadata = self
            .metrics
            .observe(IdpOp::Discovery, metadata)
            .map_err(|e| AuthnError::Unavailable(format!("discovery: {}", error_chain(&e))))?;
        Ok(self.build(metadata))
    }

    /// Entra's discovery: the document's issuer may differ from the configured URL in the
    /// tenant segment only (a GUID for a domain name, or the `{tenantid}` template of the
    /// `common`/`organizations` endpoints). Anything else is refused as for other IdPs.
    async fn discover_azure(&self, configured: &IssuerUrl) -> Result<Discovered, AuthnError> {
        let unavailable = |e: &dyn std::error::Error| {
            AuthnError::Unavailable(format!("discovery: {}", error_chain(e)))
        };
        let url = format!(
            "{}/.well-known/openid-configuration",
            configured.as_str().trim_end_matches('/')
        );
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        if !response.status().is_success() {
            return Err(AuthnError::Unavailable(format!(
                "discovery: HTTP {}",
                response.status()
            )));
        }
        let body = response.bytes().await.map_err(|e| unavailable(&e))?;
        let metadata: Metadata = serde_json::from_slice(&body)
            .map_err(|e| AuthnError::Rejected(format!("discovery document: {e}")))?;
        let found = metadata.issuer().as_str();
        if !same_but_tenant(configured.as_str(), found) {
            return Err(AuthnError::Rejected(format!(
                "discovery names issuer {found}, which is not {configured} (up to the tenant)",
                configured = configured.as_str()
            )));
        }
        let jwks = JsonWebKeySet::fetch_async(metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| unavailable(&e))?;
        let template = found.contains("{tenantid}").then(|| found.to_owned());
        let mut discovered = self.build(metadata.set_jwks(jwks));
        discovered.issuer_template = template;
        Ok(discovered)
    }

    fn build(&self, metadata: Metadata) -> Discovered {
        let basic = metadata
            .token_endpoint_auth_methods_supported()
            .is_none_or(|m| m.contains(&CoreClientAuthMethod::ClientSecretBasic));
        let client = RpClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.settings.client_id.clone()),
            self.settings.client_secret.clone().map(ClientSecret::new),
        )
        .set_auth_type(if basic {
            AuthType::BasicAuth
        } else {
            AuthType::RequestBody
        });
        Discovered {
            client,
            metadata,
            fetched_at: Instant::now(),
            issuer_template: None,
        }
    }

    /// Starts a login: the IdP's authorization URL and the state to seal into the browser.
    pub async fn start(
        self: &Arc<Self>,
        redirect_uri: &str,
        return_to: String,
        programmatic: bool,
        now: SystemTime,
    ) -> Result<(String, LoginState), AuthnError> {
        let d = self.discovered().await?;
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|e| AuthnError::Rejected(format!("redirect URI: {e}")))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = d
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_redirect_uri(std::borrow::Cow::Owned(redirect))
            .set_pkce_challenge(challenge);
        for scope in &self.settings.scopes {
            if scope != "openid" {
                request = request.add_scope(Scope::new(scope.clone()));
            }
        }
        let (url, state, nonce) = request.url();
        Ok((
            url.to_string(),
            LoginState {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
                redirect_uri: redirect_uri.to_owned(),
                return_to,
                programmatic,
                issued_at: unix(now),
            },
        ))
    }

    /// Finishes a login: checks the response `iss` (RFC 9207), redeems the code (with the PKCE
    /// verifier), verifies the ID token, merges userinfo.
    pub async fn finish(
        self: &Arc<Self>,
        login: &LoginState,
        code: &str,
        response_iss: Option<&str>,
    ) -> Result<SignedIn, AuthnError> {
        let d = self.discovered().await?;
        let issuer = d.metadata.issuer().as_str();
        match response_iss {
            Some(iss) if iss != issuer => {
                return Err(AuthnError::Rejected(
                    "authorization response iss differs from the issuer".into(),
                ));
            }
            None if d
                .metadata
                .additional_metadata()
                .authorization_response_iss_parameter_supported
                == Some(true) =>
            {
                return Err(AuthnError::Rejected(
                    "authorization response lacks the iss the IdP advertises".into(),
                ));
            }
            _ => {}
        }
        let redirect = RedirectUrl::new(login.redirect_uri.clone())
            .map_err(|e| AuthnError::Rejected(format!("redirect URI: {e}")))?;
        let tokens = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| AuthnError::Rejected(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(login.pkce_verifier.clone()))
            .set_redirect_uri(std::borrow::Cow::Owned(redirect))
            .request_async(&self.http)
            .await;
        let tokens = self
            .metrics
            .observe(IdpOp::Token, tokens)
            .map_err(token_error)?;
        let nonce = Nonce::new(login.nonce.clone());
        let (claims, d) = self.verify_id_token(d, &tokens, Some(&nonce)).await?;
        let claims = claims.ok_or_else(|| AuthnError::Rejected("no ID token".into()))?;
        self.signed_in(&d, &claims, &tokens).await
    }

    /// Refreshes a session's tokens. A refreshed ID token must keep `iss`, `sub` and `aud`.
    pub async fn refresh(
        self: &Arc<Self>,
        previous: &SignedInRef<'_>,
    ) -> Result<SignedIn, AuthnError> {
        let d = self.discovered().await?;
        let Some(refresh_token) = previous.tokens.refresh_token.clone() else {
            return Err(AuthnError::InvalidGrant);
        };
        let tokens = d
            .client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.clone()))
            .map_err(|e| AuthnError::Rejected(format!("token endpoint: {e}")))?
            .request_async(&self.http)
            .await;
        let tokens = self
            .metrics
            .observe(IdpOp::Refresh, tokens)
            .map_err(token_error)?;
        let (claims, d) = self.verify_id_token(d, &tokens, None).await?;
        let mut signed_in = match claims {
            Some(claims) => {
                let sub = claims.subject().as_str();
                let expected = Subject::user_id_of(claims.issuer().as_str(), sub);
                if claims.issuer().as_str() != previous.issuer || expected != previous.user_id {
                    return Err(AuthnError::Rejected(
                        "refreshed ID token names another issuer or subject".into(),
                    ));
                }
                self.signed_in(&d, &claims, &tokens).await?
            }
            // No new ID token: keep the identity, refresh claims from userinfo.
            None => {
                let sub = previous
                    .user_id
                    .strip_prefix(previous.issuer)
                    .and_then(|s| s.strip_prefix('|'))
                    .unwrap_or_default()
                    .to_owned();
                let mut subject = previous.subject.clone();
                if let Some(info) = self.userinfo(&d, &tokens, &sub).await? {
                    merge_userinfo(&mut subject, &info, &self.settings.groups_claim);
                }
                SignedIn {
                    subject,
                    issuer: previous.issuer.to_owned(),
                    tokens: token_set(&tokens, previous.tokens.id_token.clone(), None),
                }
            }
        };
        if signed_in.tokens.refresh_token.is_none() {
            // The IdP did not rotate it: keep using the one we have.
            signed_in.tokens.refresh_token = Some(refresh_token);
        }
        Ok(signed_in)
    }

    /// Verifies the ID token of a token response (if it has one). An unknown `kid` triggers
    /// one rate-limited JWKS refetch and a second attempt.
    async fn verify_id_token(
        &self,
        d: Arc<Discovered>,
        tokens: &Tokens,
        nonce: Option<&Nonce>,
    ) -> Result<(Option<IdTokenClaims>, Arc<Discovered>), AuthnError> {
        let Some(id_token) = tokens.id_token() else {
            return if nonce.is_some() {
                Err(AuthnError::Rejected(
                    "token response has no ID token".into(),
                ))
            } else {
                Ok((None, d))
            };
        };
        let check = |d: &Discovered| -> Result<IdTokenClaims, ClaimsVerificationError> {
            let verifier = d
                .client
                .id_token_verifier()
                .set_allowed_algs(ALLOWED_ALGS)
                .require_issuer_match(d.issuer_template.is_none())
                .require_audience_match(true);
            let claims = match nonce {
                Some(n) => id_token.claims(&verifier, n)?,
                // Refreshed ID tokens carry no nonce of ours.
                None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(()))?,
            };
            if let Some(template) = &d.issuer_template {
                check_templated_issuer(template, claims)?;
            }
            Ok(claims.clone())
        };
        let result = match check(&d) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => match self.refetch_jwks(&d).await {
                Some(fresh) => {
                    let r = check(&fresh);
                    return finish_claims(r, &self.settings.client_id).map(|c| (Some(c), fresh));
                }
                None => Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )),
            },
            other => other,
        };
        finish_claims(result, &self.settings.client_id).map(|c| (Some(c), d))
    }

    /// Fetches the JWKS again (at most once per [`JWKS_REFETCH_INTERVAL`]).
    async fn refetch_jwks(&self, d: &Discovered) -> Option<Arc<Discovered>> {
        {
            let mut last = self.last_jwks_refetch.lock().ok()?;
            if last.is_some_and(|t| t.elapsed() < JWKS_REFETCH_INTERVAL) {
                return None;
            }
            *last = Some(Instant::now());
        }
        let jwks = JsonWebKeySet::fetch_async(d.metadata.jwks_uri(), &self.http).await;
        let jwks = self
            .metrics
            .observe(IdpOp::Jwks, jwks)
            .map_err(|e| tracing::warn!(error = %error_chain(&e), "JWKS refetch failed"))
            .ok()?;
        let metadata = d.metadata.clone().set_jwks(jwks);
        let fresh = Arc::new(self.build(metadata));
        self.current.store(Some(Arc::clone(&fresh)));
        Some(fresh)
    }

    async fn userinfo(
        &self,
        d: &Discovered,
        tokens: &Tokens,
        sub: &str,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>, AuthnError> {
        let Ok(request) = d.client.user_info(
            tokens.access_token().clone(),
            Some(SubjectIdentifier::new(sub.to_owned())),
        ) else {
            return Ok(None); // no userinfo endpoint
        };
        let info: Result<openidconnect::UserInfoClaims<AllClaims, CoreGenderClaim>, _> =
            request.request_async(&self.http).await;
        let info = self
            .metrics
            .observe(IdpOp::Userinfo, info)
            .map_err(|e| match e {
                openidconnect::UserInfoError::ClaimsVerification(v) => {
                    AuthnError::Rejected(format!("userinfo: {v}"))
                }
                other => AuthnError::Unavailable(format!("userinfo: {}", error_chain(&other))),
            })?;
        let mut map = info.additional_claims().map.clone();
        if let Some(email) = info.email() {
            map.insert("email".into(), email.as_str().into());
        }
        if let Some(v) = info.email_verified() {
            map.insert("email_verified".into(), v.into());
        }
        if let Some(name) = info.name().and_then(|n| n.get(None)) {
            map.insert("name".into(), name.as_str().into());
        }
        Ok(Some(map))
    }

    async fn signed_in(
        &self,
        d: &Discovered,
        claims: &IdTokenClaims,
        tokens: &Tokens,
    ) -> Result<SignedIn, AuthnError> {
        let issuer = claims.issuer().as_str().to_owned();
        let sub = claims.subject().as_str();
        let mut all = claims.additional_claims().map.clone();
        all.remove("nonce");
        let mut subject = Subject {
            user_id: Subject::user_id_of(&issuer, sub),
            email: claims.email().map(|e| e.as_str().to_owned()),
            email_verified: claims.email_verified().unwrap_or(false),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned()),
            groups: groups_of(&all, &self.settings.groups_claim),
            claims: Subject::claims_from_json(&all),
        };
        if let Some(info) = self.userinfo(d, tokens, sub).await? {
            merge_userinfo(&mut subject, &info, &self.settings.groups_claim);
        }
        let id_exp = unix(claims.expiration().into());
        Ok(SignedIn {
            subject,
            issuer,
            tokens: token_set(
                tokens,
                tokens.id_token().map(|t| t.to_string()),
                Some(id_exp),
            ),
        })
    }

    /// The IdP's RP-initiated logout URL, if it offers one.
    pub async fn end_session_url(
        &self,
        id_token_hint: Option<&str>,
        post_logout_redirect: &str,
    ) -> Option<String> {
        let d = self.current.load_full()?;
        let mut url = d
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(hint) = id_token_hint {
                q.append_pair("id_token_hint", hint);
            }
            q.append_pair("client_id", &self.settings.client_id);
            q.append_pair("post_logout_redirect_uri", post_logout_redirect);
        }
        Some(url.to_string())
    }
}

/// The previous state of a session, for [`Oidc::refresh`].
#[derive(Debug, Clone, Copy)]
pub struct SignedInRef<'a> {
    pub issuer: &'a str,
    pub user_id: &'a str,
    pub subject: &'a Subject,
    pub tokens: &'a IdpTokens,
}

/// Entra multi-tenant: `iss` must be the template with `{tenantid}` replaced by the token's
/// own `tid` (a GUID), so a token of one tenant cannot claim another's issuer.
fn check_templated_issuer(
    template: &str,
    claims: &IdTokenClaims,
) -> Result<(), ClaimsVerificationError> {
    let tid = claims
        .additional_claims()
        .map
        .get("tid")
        .and_then(|v| v.as_str())
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        .ok_or_else(|| ClaimsVerificationError::InvalidIssuer("no valid tid claim".into()))?;
    let expected = template.replace("{tenantid}", tid);
    if claims.issuer().as_str() == expected {
        Ok(())
    } else {
        Err(ClaimsVerificationError::InvalidIssuer(format!(
            "expected `{expected}` (found `{}`)",
            claims.issuer().as_str()
        )))
    }
}

/// Whether two issuer URLs are equal but for their first path segment (Entra's tenant).
fn same_but_tenant(configured: &str, found: &str) -> bool {
    if configured.trim_end_matches('/') == found.trim_end_matches('/') {
        return true;
    }
    let (Ok(a), Ok(b)) = (url::Url::parse(configured), url::Url::parse(found)) else {
        return false;
    };
    let segments = |u: &url::Url| -> Vec<String> {
        u.path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let (sa, sb) = (segments(&a), segments(&b));
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
        && sa.len() == sb.len()
        && !sa.is_empty()
        && sa[1..] == sb[1..]
}

/// The checks openidconnect leaves to us: `azp` (when present) must be our client id.
fn finish_claims(
    result: Result<IdTokenClaims, ClaimsVerificationError>,
    client_id: &str,
) -> Result<IdTokenClaims, AuthnError> {
    let claims = result.map_err(|e| AuthnError::Rejected(format!("ID token: {e}")))?;
    if let Some(azp) = claims.authorized_party() {
        if azp.as_str() != client_id {
            return Err(AuthnError::Rejected(
                "ID token azp is another client".into(),
            ));
        }
    }
    if claims.subject().as_str().is_empty() {
        return Err(AuthnError::Rejected("ID token has an empty sub".into()));
    }
    Ok(claims)
}

fn token_set(tokens: &Tokens, id_token: Option<String>, id_exp: Option<u64>) -> IdpTokens {
    let access_exp = tokens.expires_in().map(|d| unix(SystemTime::now() + d));
    let expires_at = match (access_exp, id_exp) {
        (Some(a), Some(i)) => Some(a.min(i)),
        (a, i) => a.or(i),
    };
    IdpTokens {
        access_token: tokens.access_token().secret().clone(),
        refresh_token: tokens.refresh_token().map(|t| t.secret().clone()),
        id_token,
        expires_at,
    }
}

/// Groups from `claim`: an array of strings (or numbers), or one string.
fn groups_of(claims: &serde_json::Map<String, serde_json::Value>, claim: &str) -> Vec<String> {
    match claims.get(claim) {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Userinfo (already checked to be about the same `sub`) over the ID token's claims.
fn merge_userinfo(
    subject: &mut Subject,
    info: &serde_json::Map<String, serde_json::Value>,
    groups_claim: &str,
) {
    if let Some(email) = info.get("email").and_then(|v| v.as_str()) {
        subject.email = Some(email.to_owned());
        subject.email_verified = info
            .get("email_verified")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
    }
    if let Some(name) = info.get("name").and_then(|v| v.as_str()) {
        subject.name = Some(name.to_owned());
    }
    if info.contains_key(groups_claim) {
        subject.groups = groups_of(info, groups_claim);
    }
    let mut extra = info.clone();
    extra.remove("sub");
    for (k, v) in Subject::claims_from_json(&extra) {
        subject.claims.insert(k, v);
    }
}

fn token_error<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
) -> AuthnError {
    match e {
        RequestTokenError::ServerResponse(r) => match r.error() {
            CoreErrorResponseType::InvalidGrant => AuthnError::InvalidGrant,
            other => AuthnError::Rejected(format!("token endpoint error {}", other.as_ref())),
        },
        RequestTokenError::Request(inner) => {
            AuthnError::Unavailable(format!("token endpoint: {}", error_chain(&inner)))
        }
        // JSON that is not a valid token response (say, an ID token without `sub`) is a
        // lie; anything else (an HTML error page) is an outage.
        RequestTokenError::Parse(_, body)
            if serde_json::from_slice::<serde_json::Value>(&body).is_ok() =>
        {
            AuthnError::Rejected("token response fails validation".into())
        }
        RequestTokenError::Parse(_, body) => AuthnError::Unavailable(format!(
            "token endpoint answered something that is not a token response ({} bytes)",
            body.len()
        )),
        RequestTokenError::Other(msg) => AuthnError::Unavailable(format!("token endpoint: {msg}")),
    }
}

/// An error and its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
