//! Authentication: the identity provider a person signs in at (an OIDC relying party, or a
//! provider with its own protocol), and bearer credentials of machines.

pub mod github;
pub mod machine;
pub mod oidc;

use std::{sync::Arc, time::SystemTime};

use github::Github;
use oidc::{AuthnError, LoginState, Oidc, SignedIn, SignedInRef};

/// The identity provider people sign in at.
#[derive(Clone)]
pub enum Provider {
    /// Any OpenID Connect provider (the `oidc`, `google`, `okta`, `azure`, `gitlab` and
    /// `auth0` presets).
    Oidc(Arc<Oidc>),
    /// GitHub or GitHub Enterprise Server (OAuth 2 and the REST API; `github`).
    Github(Arc<Github>),
}

// === impl Provider ===

impl Provider {
    /// Fetches what the provider needs before the first login (discovery); failures are
    /// only logged.
    pub async fn warm_up(&self) {
        match self {
            Provider::Oidc(oidc) => oidc.warm_up().await,
            // Nothing to discover: GitHub's endpoints follow from the base URL.
            Provider::Github(_) => {}
        }
    }

    /// Starts a login: the provider's authorization URL and the state for the browser.
    pub async fn start(
        &self,
        redirect_uri: &str,
        return_to: String,
        programmatic: bool,
        now: SystemTime,
    ) -> Result<(String, LoginState), AuthnError> {
        match self {
            Provider::Oidc(oidc) => oidc.start(redirect_uri, return_to, programmatic, now).await,
            Provider::Github(github) => github.start(redirect_uri, return_to, programmatic, now),
        }
    }

    /// Finishes a login at the callback.
    pub async fn finish(
        &self,
        login: &LoginState,
        code: &str,
        response_iss: Option<&str>,
    ) -> Result<SignedIn, AuthnError> {
        match self {
            Provider::Oidc(oidc) => oidc.finish(login, code, response_iss).await,
            Provider::Github(github) => github.finish(login, code, response_iss).await,
        }
    }

    /// Refreshes a session's tokens and claims.
    pub async fn refresh(&self, previous: &SignedInRef<'_>) -> Result<SignedIn, AuthnError> {
        match self {
            Provider::Oidc(oidc) => oidc.refresh(previous).await,
            Provider::Github(github) => github.refresh(previous),
        }
    }

    /// Where to send a browser to end its session at the provider too, if it offers that.
    pub async fn end_session_url(
        &self,
        id_token_hint: Option<&str>,
        post_logout_redirect: &str,
    ) -> Option<String> {
        match self {
            Provider::Oidc(oidc) => {
                oidc.end_session_url(id_token_hint, post_logout_redirect)
                    .await
            }
            // GitHub has no RP-initiated logout.
            Provider::Github(_) => None,
        }
    }
}
