use super::*;

fn settings(base: &str) -> GithubSettings {
    GithubSettings {
        base_url: url::Url::parse(base).unwrap(),
        client_id: "cid".into(),
        client_secret: Some("secret".into()),
        scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
    }
}

#[test]
fn github_com_uses_api_github_com_and_a_fixed_issuer() {
    let e = Endpoints::of(&url::Url::parse("http://github.com/").unwrap()).unwrap();
    assert_eq!(e.issuer, "https://github.com");
    assert_eq!(e.authorize, "https://github.com/login/oauth/authorize");
    assert_eq!(e.token, "https://github.com/login/oauth/access_token");
    assert_eq!(e.api, "https://api.github.com");
}

#[test]
fn enterprise_uses_api_v3_under_the_base_url() {
    let e = Endpoints::of(&url::Url::parse("https://ghe.example.com/").unwrap()).unwrap();
    assert_eq!(e.issuer, "https://ghe.example.com");
    assert_eq!(e.token, "https://ghe.example.com/login/oauth/access_token");
    assert_eq!(e.api, "https://ghe.example.com/api/v3");
}

#[test]
fn the_authorize_url_carries_state_pkce_and_no_signup() {
    let gh = Github::new(
        settings("https://github.com"),
        crate::metrics::Metrics::new().unwrap().identity.idp,
    )
    .unwrap();
    let (url, login) = gh
        .start(
            "https://auth.example.com/oauth2/callback",
            "https://app.example.com/".into(),
            false,
            SystemTime::now(),
        )
        .unwrap();
    let url = url::Url::parse(&url).unwrap();
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], "cid");
    assert_eq!(
        q["redirect_uri"],
        "https://auth.example.com/oauth2/callback"
    );
    assert_eq!(q["scope"], "read:user user:email read:org");
    assert_eq!(q["state"], login.state);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"], pkce_challenge(&login.pkce_verifier));
    assert_eq!(q["allow_signup"], "false");
    assert!(!q.contains_key("client_secret"));
    assert_eq!(login.pkce_verifier.len(), 43);
    assert_ne!(login.state, login.pkce_verifier);
}

#[test]
fn pkce_challenge_matches_rfc_7636_appendix_b() {
    assert_eq!(
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
}

#[test]
fn token_answers_are_classified() {
    let ok = br#"{"access_token":"gho_x","token_type":"bearer","scope":"read:org"}"#;
    assert_eq!(access_token_of(StatusCode::OK, ok).unwrap(), "gho_x");
    // GitHub's errors come with 200.
    let bad = br#"{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired."}"#;
    assert!(matches!(
        access_token_of(StatusCode::OK, bad),
        Err(AuthnError::Rejected(m)) if m.contains("bad_verification_code")
    ));
    assert!(matches!(
        access_token_of(StatusCode::OK, b"<html>oops</html>"),
        Err(AuthnError::Unavailable(_))
    ));
    assert!(matches!(
        access_token_of(StatusCode::BAD_GATEWAY, ok),
        Err(AuthnError::Unavailable(_))
    ));
    assert!(matches!(
        access_token_of(
            StatusCode::OK,
            br#"{"access_token":"x","token_type":"mac"}"#
        ),
        Err(AuthnError::Rejected(_))
    ));
    assert!(matches!(
        access_token_of(StatusCode::OK, br#"{"token_type":"bearer"}"#),
        Err(AuthnError::Rejected(_))
    ));
    assert!(matches!(
        access_token_of(StatusCode::UNAUTHORIZED, b"{}"),
        Err(AuthnError::Rejected(_))
    ));
}

#[test]
fn next_links_are_found_and_kept_on_the_api_origin() {
    let v = r#"<https://api.github.com/user/teams?page=2>; rel="next", <https://api.github.com/user/teams?page=5>; rel="last""#;
    assert_eq!(
        next_link(v),
        Some("https://api.github.com/user/teams?page=2")
    );
    assert_eq!(
        next_link(r#"<https://api.github.com/x?page=1>; rel="prev""#),
        None
    );
    let origin = url::Url::parse("https://api.github.com").unwrap().origin();
    let mut headers = header::HeaderMap::new();
    headers.insert(header::LINK, v.parse().unwrap());
    let next = next_page(&headers, "https://api.github.com/user/teams", &origin, "/t").unwrap();
    assert_eq!(
        next.as_deref(),
        Some("https://api.github.com/user/teams?page=2")
    );
    headers.insert(
        header::LINK,
        r#"<https://evil.example/steal>; rel="next""#.parse().unwrap(),
    );
    assert!(next_page(&headers, "https://api.github.com/user/teams", &origin, "/t").is_err());
}

#[test]
fn the_subject_uses_the_numeric_id_and_only_a_verified_primary_email() {
    let user = || User {
        id: 42,
        login: "octo".into(),
        name: None,
    };
    let email = |address: &str, primary, verified| Email {
        email: address.into(),
        primary,
        verified,
    };
    let org = |login: &str| Org {
        login: login.into(),
    };
    let s = subject_of(
        GITHUB_COM,
        user(),
        vec![
            email("other@example.com", false, true),
            email("octo@example.com", true, true),
        ],
        vec![org("acme")],
        vec![Team {
            slug: "platform".into(),
            organization: org("acme"),
        }],
    )
    .unwrap();
    assert_eq!(s.user_id, "https://github.com|42");
    assert_eq!(s.email.as_deref(), Some("octo@example.com"));
    assert!(s.email_verified);
    assert_eq!(s.groups, ["acme", "acme/platform"]);
    assert_eq!(s.name.as_deref(), Some("octo"));
    assert_eq!(
        s.claims["login"],
        [crate::policy::ClaimValue::String("octo".into())]
    );

    let s = subject_of(
        GITHUB_COM,
        user(),
        vec![
            email("verified@example.com", false, true),
            email("octo@example.com", true, false),
        ],
        vec![],
        vec![],
    )
    .unwrap();
    assert_eq!(s.email.as_deref(), Some("octo@example.com"));
    assert!(!s.email_verified);
    assert!(s.verified_email().is_none());

    let nobody = User {
        id: 0,
        login: "x".into(),
        name: None,
    };
    assert!(subject_of(GITHUB_COM, nobody, vec![], vec![], vec![]).is_err());
}
