//! Conversion of the identity keys (OIDC, cookies, sessions, signing). They are validated
//! now; the identity work acts on them.

use std::time::Duration;

use super::{
    duration::Dur,
    file::{ClaimHeaders, FileTrustedIssuer, Keyed, OneOrMany},
    problem::{key_path, Report},
    types::{IdentitySettings, IdpProvider, SameSite, SessionStoreUrl, TrustedIssuer},
    values::{
        decode_base64, header_name, host_and_port, http_url, indexed, non_empty_entries, one_of,
        Sources,
    },
};

/// The identity keys of the top level, handed over by the global conversion.
#[derive(Debug)]
pub(super) struct Keys {
    pub(super) authenticate_service_url: Option<String>,
    pub(super) idp_provider: Option<String>,
    pub(super) idp_provider_url: Option<String>,
    pub(super) idp_client_id: Option<String>,
    pub(super) idp_client_secret: Option<String>,
    pub(super) idp_client_secret_file: Option<String>,
    pub(super) idp_scopes: Option<OneOrMany>,
    pub(super) cookie_name: Option<String>,
    pub(super) cookie_secret: Option<String>,
    pub(super) cookie_secret_file: Option<String>,
    pub(super) cookie_expire: Option<Dur>,
    pub(super) cookie_domain: Option<String>,
    pub(super) cookie_same_site: Option<String>,
    pub(super) session_store: Option<String>,
    pub(super) signing_key: Option<String>,
    pub(super) signing_key_file: Option<String>,
    pub(super) pass_identity_headers: Option<bool>,
    pub(super) jwt_claims_headers: Option<ClaimHeaders>,
    pub(super) identity_providers: Option<Keyed<FileTrustedIssuer>>,
    pub(super) programmatic_redirect_domain_whitelist: Option<Vec<String>>,
}

const PROVIDERS: &[(&str, IdpProvider)] = &[
    ("oidc", IdpProvider::Oidc),
    ("google", IdpProvider::Google),
    ("okta", IdpProvider::Okta),
    ("azure", IdpProvider::Azure),
    ("gitlab", IdpProvider::Gitlab),
    ("auth0", IdpProvider::Auth0),
    ("github", IdpProvider::Github),
];

const SAME_SITE: &[(&str, SameSite)] = &[
    ("lax", SameSite::Lax),
    ("strict", SameSite::Strict),
    ("none", SameSite::None),
];

/// Converts and checks the identity keys.
pub(super) fn build(
    keys: Keys,
    insecure_server: bool,
    sources: &Sources,
    report: &mut Report,
) -> IdentitySettings {
    if insecure_server && (keys.idp_provider_url.is_some() || keys.idp_provider.is_some()) {
        report.warn(
            "insecure_server",
            "sign-in over plain HTTP: session cookies are sent without Secure \
             (fine for a local demo; use TLS anywhere else)",
        );
    }
    if keys
        .session_store
        .as_deref()
        .is_some_and(|s| s.trim() != "memory")
    {
        if keys.signing_key.is_none() && keys.signing_key_file.is_none() {
            report.warn(
                "session_store",
                "a shared session store without signing_key: every instance signs identity \
                 assertions with its own generated key (give the fleet one key from \
                 `gatehouse keygen`)",
            );
        }
        if keys.cookie_secret.is_none() && keys.cookie_secret_file.is_none() {
            report.warn(
                "session_store",
                "a shared session store without cookie_secret: each instance generates its \
                 own, so no session works across instances or restarts",
            );
        }
    }
    let Keys {
        authenticate_service_url,
        idp_provider,
        idp_provider_url,
        idp_client_id,
        idp_client_secret,
        idp_client_secret_file,
        idp_scopes,
        cookie_name,
        cookie_secret,
        cookie_secret_file,
        cookie_expire,
        cookie_domain,
        cookie_same_site,
        session_store,
        signing_key,
        signing_key_file,
        pass_identity_headers,
        jwt_claims_headers,
        identity_providers,
        programmatic_redirect_domain_whitelist,
    } = keys;

    let idp_client_id = idp_client_id.and_then(|id| {
        if id.trim().is_empty() {
            report.error("idp_client_id", "is empty");
            None
        } else {
            Some(id)
        }
    });
    let idp_scopes = idp_scopes
        .map(|scopes| non_empty_entries(report, "idp_scopes", comma_entries(scopes, "idp_scopes")))
        .unwrap_or_default();

    let cookie_secret_path = if cookie_secret_file.is_some() {
        "cookie_secret_file"
    } else {
        "cookie_secret"
    };
    let cookie_secret = sources
        .secret(
            report,
            ("cookie_secret", cookie_secret),
            ("cookie_secret_file", cookie_secret_file),
        )
        .and_then(|text| report.check(cookie_secret_path, cookie_key(&text)));

    let cookie_expire = cookie_expire.map_or(Duration::from_secs(14 * 3600), |d| d.0);
    if cookie_expire.is_zero() {
        report.error("cookie_expire", "must be longer than 0");
    }

    IdentitySettings {
        authenticate_service_url: authenticate_service_url
            .and_then(|u| report.check("authenticate_service_url", http_url(&u))),
        idp_provider: idp_provider
            .and_then(|p| report.check("idp_provider", one_of(&p, PROVIDERS))),
        idp_provider_url: idp_provider_url
            .and_then(|u| report.check("idp_provider_url", http_url(&u))),
        idp_client_id,
        idp_client_secret: sources.secret(
            report,
            ("idp_client_secret", idp_client_secret),
            ("idp_client_secret_file", idp_client_secret_file),
        ),
        idp_scopes,
        cookie_name: cookie_name
            .and_then(|n| report.check("cookie_name", cookie_name_token(&n)))
            .unwrap_or_else(|| "_gatehouse".to_owned()),
        cookie_secret,
        cookie_expire,
        cookie_domain: cookie_domain.and_then(|d| {
            let host = d.strip_prefix('.').unwrap_or(&d);
            report.check(
                "cookie_domain",
                host_and_port(host, false).map(|_| d.clone()),
            )
        }),
        cookie_same_site: cookie_same_site
            .and_then(|s| report.check("cookie_same_site", one_of(&s, SAME_SITE)))
            .unwrap_or_default(),
        session_store: session_store
            .and_then(|s| report.check("session_store", session_store_url(&s)))
            .unwrap_or_default(),
        signing_key_pem: sources.pem(
            report,
            "PRIVATE KEY",
            ("signing_key", signing_key),
            ("signing_key_file", signing_key_file),
        ),
        pass_identity_headers: pass_identity_headers.unwrap_or(false),
        jwt_claims_headers: jwt_claims_headers
            .map(|h| claim_headers(h, report))
            .unwrap_or_default(),
        identity_providers: identity_providers
            .map(|p| trusted_issuers(p, report))
            .unwrap_or_default(),
        programmatic_redirect_domain_whitelist: programmatic_redirect_domain_whitelist
            .map(|list| {
                let path = "programmatic_redirect_domain_whitelist";
                non_empty_entries(report, path, indexed(path, list))
            })
            .unwrap_or_default(),
    }
}

/// List entries, or the parts of a comma-separated string, with their key paths.
fn comma_entries(value: OneOrMany, path: &str) -> Vec<(String, String)> {
    match value {
        OneOrMany::One(text) => text
            .split(',')
            .map(|s| (path.to_owned(), s.to_owned()))
            .collect(),
        many @ OneOrMany::Many(_) => many.entries(path),
    }
}

/// Base64 of exactly 32 bytes. The message never repeats the secret.
fn cookie_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = decode_base64(text.trim())
        .ok_or("is not base64 (generate one with: head -c32 /dev/urandom | base64)".to_owned())?;
    let len = bytes.len();
    <[u8; 32]>::try_from(bytes).map_err(|_| {
        format!(
            "must be base64 of exactly 32 bytes, but decodes to {len} \
             (generate one with: head -c32 /dev/urandom | base64)"
        )
    })
}

/// A cookie name: an RFC 6265 token.
fn cookie_name_token(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(format!("{name:?} is not a valid cookie name"))
    }
}

fn session_store_url(text: &str) -> Result<SessionStoreUrl, String> {
    let text = text.trim();
    if text == "memory" {
        return Ok(SessionStoreUrl::Memory);
    }
    // The store's own parser (pure; its messages never repeat a password).
    crate::session::store::validate_url(text).map_err(|e| match e {
        crate::session::store::StoreError::Config(m) => m,
        other => other.to_string(),
    })?;
    Ok(SessionStoreUrl::Redis(text.to_owned()))
}

/// `X-Gatehouse-Claim-Given-Name` for claim `given_name`.
fn claim_header_name(claim: &str) -> String {
    let words: Vec<String> = claim
        .split(['_', '-', '.'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect();
    format!("X-Gatehouse-Claim-{}", words.join("-"))
}

fn claim_headers(headers: ClaimHeaders, report: &mut Report) -> Vec<(http::HeaderName, String)> {
    let path = "jwt_claims_headers";
    let pairs: Vec<(String, String, String)> = match headers {
        ClaimHeaders::Claims(claims) => comma_entries(claims, path)
            .into_iter()
            .map(|(p, claim)| (p, claim_header_name(claim.trim()), claim.trim().to_owned()))
            .collect(),
        ClaimHeaders::Map(Keyed(map)) => map
            .into_iter()
            .map(|(header, claim)| (key_path(path, &header), header, claim.trim().to_owned()))
            .collect(),
    };
    let mut out = Vec::with_capacity(pairs.len());
    for (entry_path, header, claim) in pairs {
        if claim.is_empty() {
            report.error(&entry_path, "empty claim name");
            continue;
        }
        if let Some(name) = report.check(&entry_path, header_name(&header)) {
            out.push((name, claim));
        }
    }
    out
}

fn trusted_issuers(providers: Keyed<FileTrustedIssuer>, report: &mut Report) -> Vec<TrustedIssuer> {
    let mut out = Vec::new();
    for (name, provider) in providers.0 {
        let path = key_path("identity_providers", &name);
        let FileTrustedIssuer {
            issuer,
            jwks_url,
            audiences,
        } = provider;
        let issuer = match issuer {
            Some(i) if !i.trim().is_empty() => Some(i),
            _ => {
                report.error(
                    &key_path(&path, "issuer"),
                    "missing: the exact iss of the tokens",
                );
                None
            }
        };
        let jwks_path = key_path(&path, "jwks_url");
        let jwks_url = match jwks_url {
            Some(u) => report.check(&jwks_path, http_url(&u)),
            None => {
                report.error(&jwks_path, "missing: where the issuer publishes its keys");
                None
            }
        };
        let audiences_path = key_path(&path, "audiences");
        let audiences = audiences
            .map(|a| non_empty_entries(report, &audiences_path, a.entries(&audiences_path)))
            .unwrap_or_default();
        if audiences.is_empty() && !report.has_error_under(&audiences_path) {
            report.error(&audiences_path, "at least one audience is needed");
        }
        if let (Some(issuer), Some(jwks_url)) = (issuer, jwks_url) {
            out.push(TrustedIssuer {
                name,
                issuer,
                jwks_url,
                audiences,
            });
        }
    }
    out
}
