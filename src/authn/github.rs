//! Sign-in with GitHub (github.com or GitHub Enterprise Server): OAuth 2 without OIDC. The
//! authorization-code flow with state and PKCE S256; the identity comes from the REST API
//! (`/user`, `/user/emails`, `/user/orgs`, `/user/teams`), not from a signed ID token, so it
//! is only as trustworthy as the TLS connection to the API host.
//!
//! The user id is the numeric GitHub id (logins can be renamed and then re-registered by
//! someone else); groups are org logins and `org/team-slug`; the email counts only when it
//! is the primary one and GitHub marks it verified. OAuth-app tokens do not expire and have no
//! refresh grant, so sessions last until `cookie_expire` and group changes at GitHub take
//! effect at the next sign-in.

use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, SystemTime},
};

use base64::Engine as _;
use reqwest::{header, StatusCode};
use serde::{de::DeserializeOwned, Deserialize};
use sha2::Digest as _;

use super::oidc::{AuthnError, LoginState, SignedIn, SignedInRef};
use crate::{
    metrics::{IdpMetrics, IdpOp},
    policy::Subject,
    session::{unix, IdpTokens},
};

/// The issuer string of github.com users (their user ids are `https://github.com|<id>`).
pub const GITHUB_COM: &str = "https://github.com";
/// Scopes asked for when `idp_scopes` is empty: profile, email addresses, org and team
/// memberships.
pub const DEFAULT_SCOPES: [&str; 3] = ["read:user", "user:email", "read:org"];
/// Each call to GitHub is bounded by this.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The whole callback (token, then every API page) is bounded by this.
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);
/// List endpoints are read for at most this many pages (of 100 entries); more fails the
/// sign-in rather than deciding on a partial group list.
const MAX_PAGES: usize = 10;
/// Responses larger than this are refused.
const MAX_BODY: usize = 1 << 20;
/// The REST API version the response shapes below are written against.
const API_VERSION: &str = "2022-11-28";
/// GitHub refuses API calls without a User-Agent.
const USER_AGENT: &str = concat!("gatehouse/", env!("CARGO_PKG_VERSION"));

/// What the GitHub provider needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubSettings {
    /// `idp_provider_url`: `https://github.com` or a GitHub Enterprise Server.
    pub base_url: url::Url,
    pub client_id: String,
    /// GitHub wants it even with PKCE.
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
}

/// The GitHub sign-in of one OAuth app.
pub struct Github {
    settings: GithubSettings,
    endpoints: Endpoints,
    http: reqwest::Client,
    metrics: IdpMetrics,
}

/// Where things are, derived once from the base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoints {
    /// The issuer half of user ids.
    issuer: String,
    authorize: String,
    token: String,
    /// REST API root, without a trailing slash.
    api: String,
    /// Pagination links are followed (with the token) only to this origin.
    api_origin: url::Origin,
}

#[derive(Deserialize)]
struct User {
    id: u64,
    login: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Email {
    email: String,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    verified: bool,
}

#[derive(Deserialize)]
struct Org {
    login: String,
}

#[derive(Deserialize)]
struct Team {
    slug: String,
    organization: Org,
}

// === impl Github ===

impl Github {
    /// The provider for `settings`; nothing is fetched until a login.
    pub fn new(settings: GithubSettings, metrics: IdpMetrics) -> Result<Arc<Github>, AuthnError> {
        let endpoints = Endpoints::of(&settings.base_url)?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| AuthnError::Unavailable(format!("HTTP client: {e}")))?;
        Ok(Arc::new(Github {
            settings,
            endpoints,
            http,
            metrics,
        }))
    }

    /// Starts a login: GitHub's authorization URL (state, PKCE S256, `allow_signup=false`)
    /// and the state to seal into the browser. No I/O.
    pub fn start(
        &self,
        redirect_uri: &str,
        return_to: String,
        programmatic: bool,
        now: SystemTime,
    ) -> Result<(String, LoginState), AuthnError> {
        let state = random_token();
        let verifier = random_token();
        let mut url = url::Url::parse(&self.endpoints.authorize)
            .map_err(|e| AuthnError::Rejected(format!("authorize URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.settings.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("code_challenge", &pkce_challenge(&verifier))
            .append_pair("code_challenge_method", "S256")
            .append_pair("allow_signup", "false");
        Ok((
            url.to_string(),
            LoginState {
                state,
                // GitHub issues no ID token, so there is nothing a nonce could bind.
                nonce: String::new(),
                pkce_verifier: verifier,
                redirect_uri: redirect_uri.to_owned(),
                return_to,
                programmatic,
                issued_at: unix(now),
            },
        ))
    }

    /// Finishes a login: redeems the code (with the PKCE verifier), then reads the user, the
    /// primary email, orgs and teams. GitHub sends no `iss`; one that is present must be ours.
    pub async fn finish(
        &self,
        login: &LoginState,
        code: &str,
        response_iss: Option<&str>,
    ) -> Result<SignedIn, AuthnError> {
        if response_iss.is_some_and(|iss| iss != self.endpoints.issuer) {
            return Err(AuthnError::Rejected(
                "authorization response iss is not this provider".into(),
            ));
        }
        tokio::time::timeout(FINISH_TIMEOUT, self.sign_in(login, code))
            .await
            .unwrap_or_else(|_| Err(AuthnError::Unavailable("GitHub sign-in timed out".into())))
    }

    async fn sign_in(&self, login: &LoginState, code: &str) -> Result<SignedIn, AuthnError> {
        let token = self.redeem(login, code).await?;
        let (user, emails, orgs, teams) = tokio::try_join!(
            self.get::<User>(&token, "/user"),
            self.list::<Email>(&token, "/user/emails"),
            self.list::<Org>(&token, "/user/orgs"),
            self.list::<Team>(&token, "/user/teams"),
        )?;
        Ok(SignedIn {
            subject: subject_of(&self.endpoints.issuer, user, emails, orgs, teams)?,
            issuer: self.endpoints.issuer.clone(),
            // The token is only needed for the calls above: a token that never expires is
            // not worth keeping in the session store.
            tokens: IdpTokens::default(),
        })
    }

    /// Exchanges the code for an access token.
    async fn redeem(&self, login: &LoginState, code: &str) -> Result<String, AuthnError> {
        let redeemed = self.redeem_once(login, code).await;
        self.metrics.observe(IdpOp::Token, redeemed)
    }

    async fn redeem_once(&self, login: &LoginState, code: &str) -> Result<String, AuthnError> {
        let mut form = vec![
            ("client_id", self.settings.client_id.as_str()),
            ("code", code),
            ("redirect_uri", login.redirect_uri.as_str()),
            ("code_verifier", login.pkce_verifier.as_str()),
        ];
        if let Some(secret) = &self.settings.client_secret {
            form.push(("client_secret", secret));
        }
        let response = self
            .http
            .post(&self.endpoints.token)
            .header(header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| AuthnError::Unavailable(format!("token endpoint: {}", chain(&e))))?;
        let status = response.status();
        let body = read_bounded(response, "token endpoint").await?;
        access_token_of(status, &body)
    }

    /// One API object.
    async fn get<T: DeserializeOwned>(&self, token: &str, path: &str) -> Result<T, AuthnError> {
        let url = format!("{}{path}", self.endpoints.api);
        let (value, _) = self.call(token, &url, path).await?;
        serde_json::from_value(value)
            .map_err(|e| AuthnError::Rejected(format!("GET {path}: unexpected shape: {e}")))
    }

    /// Every entry of an API list, following `Link: rel="next"` on the API origin for at
    /// most [`MAX_PAGES`] pages.
    async fn list<T: DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
    ) -> Result<Vec<T>, AuthnError> {
        let mut url = format!("{}{path}?per_page=100", self.endpoints.api);
        let mut all = Vec::new();
        for _ in 0..MAX_PAGES {
            let (value, next) = self.call(token, &url, path).await?;
            let page: Vec<T> = serde_json::from_value(value)
                .map_err(|e| AuthnError::Rejected(format!("GET {path}: unexpected shape: {e}")))?;
            all.extend(page);
            match next {
                Some(next) => url = next,
                None => return Ok(all),
            }
        }
        Err(AuthnError::Rejected(format!(
            "GET {path}: more than {MAX_PAGES} pages"
        )))
    }

    /// GET with the user's token: the JSON body and the checked next-page URL.
    async fn call(
        &self,
        token: &str,
        url: &str,
        path: &str,
    ) -> Result<(serde_json::Value, Option<String>), AuthnError> {
        let answered = self.call_once(token, url, path).await;
        self.metrics.observe(IdpOp::Api, answered)
    }

    async fn call_once(
        &self,
        token: &str,
        url: &str,
        path: &str,
    ) -> Result<(serde_json::Value, Option<String>), AuthnError> {
        let response = self
            .http
            .get(url)
            .bearer_auth(token)
            .header(header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .send()
            .await
            .map_err(|e| AuthnError::Unavailable(format!("GET {path}: {}", chain(&e))))?;
        let status = response.status();
        if !status.is_success() {
            return Err(api_status_error(path, &response));
        }
        let next = next_page(response.headers(), url, &self.endpoints.api_origin, path)?;
        let body = read_bounded(response, path).await?;
        let value = serde_json::from_slice(&body).map_err(|_| {
            AuthnError::Unavailable(format!("GET {path}: answered something that is not JSON"))
        })?;
        Ok((value, next))
    }

    /// GitHub has no refresh grant for OAuth-app tokens (they do not expire), so sessions
    /// carry no refresh token and [`crate::auth::Auth`] never calls this. Should it be called,
    /// the identity stays as it is: ending the session (`InvalidGrant`) would sign people
    /// out of a login GitHub still honours, before `cookie_expire`.
    pub fn refresh(&self, previous: &SignedInRef<'_>) -> Result<SignedIn, AuthnError> {
        Ok(SignedIn {
            subject: previous.subject.clone(),
            issuer: previous.issuer.to_owned(),
            tokens: previous.tokens.clone(),
        })
    }
}

// === impl Endpoints ===

impl Endpoints {
    /// github.com (any scheme or path given for it) or an Enterprise Server at `base`.
    fn of(base: &url::Url) -> Result<Endpoints, AuthnError> {
        let (root, api) = if base.host_str() == Some("github.com") {
            (GITHUB_COM.to_owned(), "https://api.github.com".to_owned())
        } else {
            let mut root = base.clone();
            root.set_query(None);
            root.set_fragment(None);
            let root = root.as_str().trim_end_matches('/').to_owned();
            let api = format!("{root}/api/v3");
            (root, api)
        };
        let api_origin = url::Url::parse(&api)
            .map_err(|e| AuthnError::Rejected(format!("API URL: {e}")))?
            .origin();
        Ok(Endpoints {
            authorize: format!("{root}/login/oauth/authorize"),
            token: format!("{root}/login/oauth/access_token"),
            issuer: root,
            api,
            api_origin,
        })
    }
}

/// 32 random bytes, base64url: a state, or a PKCE verifier (43 characters, RFC 7636).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The S256 challenge of a PKCE verifier.
fn pkce_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

/// The access token of a token-endpoint answer. GitHub reports errors (a bad or used code,
/// a wrong verifier or secret) as JSON `{"error": …}`, usually with status 200.
fn access_token_of(status: StatusCode, body: &[u8]) -> Result<String, AuthnError> {
    let answered = format!("token endpoint answered {status}");
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Err(AuthnError::Unavailable(answered));
    }
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(body) else {
        // An HTML error page, a proxy's page: an outage, not a verdict on this login.
        return Err(AuthnError::Unavailable(format!(
            "{answered} with something that is not JSON ({} bytes)",
            body.len()
        )));
    };
    if let Some(error) = answer.get("error").and_then(|e| e.as_str()) {
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(AuthnError::Rejected(format!("token endpoint error {code}")));
    }
    if !status.is_success() {
        return Err(AuthnError::Rejected(answered));
    }
    let bearer = answer
        .get("token_type")
        .and_then(|t| t.as_str())
        .is_none_or(|t| t.eq_ignore_ascii_case("bearer"));
    match answer.get("access_token").and_then(|t| t.as_str()) {
        Some(token) if bearer && !token.is_empty() => Ok(token.to_owned()),
        _ => Err(AuthnError::Rejected(
            "token response has no bearer access token".into(),
        )),
    }
}

/// Why a non-2xx API answer fails the sign-in: rate limits and server errors are outages,
/// anything else (a revoked token, a missing scope, SSO not authorized) a refusal.
fn api_status_error(path: &str, response: &reqwest::Response) -> AuthnError {
    let status = response.status();
    let rate_limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN
            && (response.headers().contains_key(header::RETRY_AFTER)
                || response
                    .headers()
                    .get("x-ratelimit-remaining")
                    .is_some_and(|v| v == "0")));
    if status.is_server_error() || rate_limited {
        AuthnError::Unavailable(format!("GET {path}: {status}"))
    } else {
        AuthnError::Rejected(format!("GET {path}: {status}"))
    }
}

/// The `rel="next"` target of the Link headers, resolved against `current`; it must stay on
/// the API origin (the request carries the user's token).
fn next_page(
    headers: &header::HeaderMap,
    current: &str,
    api_origin: &url::Origin,
    path: &str,
) -> Result<Option<String>, AuthnError> {
    let Some(target) = headers
        .get_all(header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(next_link)
    else {
        return Ok(None);
    };
    let next = url::Url::parse(current)
        .and_then(|base| base.join(target))
        .map_err(|_| AuthnError::Rejected(format!("GET {path}: invalid next-page link")))?;
    if &next.origin() != api_origin {
        return Err(AuthnError::Rejected(format!(
            "GET {path}: next-page link leaves the API host"
        )));
    }
    Ok(Some(next.to_string()))
}

/// The target of the `rel="next"` entry of one Link header value (RFC 8288).
fn next_link(value: &str) -> Option<&str> {
    value.split(',').find_map(|entry| {
        let mut parts = entry.split(';');
        let target = parts.next()?.trim().strip_prefix('<')?.strip_suffix('>')?;
        parts
            .any(|p| {
                let p = p.trim();
                p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
            })
            .then_some(target)
    })
}

/// The subject of a GitHub user.
fn subject_of(
    issuer: &str,
    user: User,
    emails: Vec<Email>,
    orgs: Vec<Org>,
    teams: Vec<Team>,
) -> Result<Subject, AuthnError> {
    if user.id == 0 || user.login.is_empty() {
        return Err(AuthnError::Rejected("GET /user: no id or login".into()));
    }
    let (email, email_verified) = match emails.into_iter().find(|e| e.primary) {
        Some(primary) => (Some(primary.email), primary.verified),
        None => (None, false),
    };
    let mut seen = BTreeSet::new();
    let groups = orgs
        .into_iter()
        .map(|o| o.login)
        .chain(
            teams
                .into_iter()
                .map(|t| format!("{}/{}", t.organization.login, t.slug)),
        )
        .filter(|g| !g.is_empty() && seen.insert(g.clone()))
        .collect();
    let mut claims = serde_json::Map::new();
    claims.insert("login".into(), user.login.clone().into());
    Ok(Subject {
        user_id: Subject::user_id_of(issuer, &user.id.to_string()),
        email,
        email_verified,
        name: user.name.filter(|n| !n.is_empty()).or(Some(user.login)),
        groups,
        claims: Subject::claims_from_json(&claims),
    })
}

/// The body, refused beyond [`MAX_BODY`].
async fn read_bounded(mut response: reqwest::Response, what: &str) -> Result<Vec<u8>, AuthnError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| AuthnError::Unavailable(format!("{what}: {}", chain(&e))))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(AuthnError::Rejected(format!(
                "{what}: response larger than {MAX_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its sources, on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let messages: Vec<String> = std::iter::successors(Some(e), |e| e.source())
        .map(|e| e.to_string())
        .collect();
    messages.join(": ")
}

#[cfg(test)]
mod tests;
