//! The JWTs gatehouse issues (DESIGN "identity JWT"): ES256 with a published `kid`, `aud` the
//! routed host whatever the client says, at most five minutes, verifiable only for that host,
//! and never accepted back as a credential in any form.

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};

use crate::cases;
use crate::headers::jwt_claims;
use crate::runner::Report;
use crate::stack::{assert_one, describe, Kind, Options, Stack, COOKIE, NAMED_HOST};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_we_issue() {
    let s = Stack::start(Options::default()).await;
    let mut report = Report::default();
    report
        .each(
            &s,
            cases![
                assertions_are_es256_short_lived_and_verifiable,
                the_audience_is_the_routed_host_whatever_the_client_says,
                an_assertion_verifies_for_its_own_host_only,
                forged_and_reissued_tokens_are_no_credential,
                the_jwks_holds_public_keys_only,
            ],
        )
        .await;
    report.finish("jwt");
}

/// The assertion the upstream received for alice's request to `host`/`path` with `extra`.
async fn assertion(s: &Stack, host: &str, path: &str, extra: &str) -> String {
    let mark = s.mark();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nCookie: {COOKIE}={}\r\n{extra}Connection: close\r\n\r\n",
        s.alice
    );
    let r = s.send(req.as_bytes()).await;
    assert_eq!(r.status, 200, "Host: {host} {extra:?}:\n{}", r.dump());
    let seen = s.since(&mark);
    assert_eq!(seen.len(), 1, "{}", describe(&seen));
    let mut a = seen[0].header("x-gatehouse-jwt-assertion");
    assert_eq!(a.len(), 1, "{}", seen[0].raw_head());
    a.pop().unwrap()
}

async fn jwks(s: &Stack) -> JwkSet {
    let r = s
        .send(
            s.anon("GET", "/.well-known/gatehouse/jwks.json", "")
                .as_slice(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.dump());
    serde_json::from_slice(&r.body).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Verifies `token` with the JWKS for `audience`.
fn verify(
    jwks: &JwkSet,
    token: &str,
    audience: &str,
) -> jsonwebtoken::errors::Result<serde_json::Value> {
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.unwrap_or_default();
    let jwk = jwks.find(&kid).ok_or_else(|| {
        jsonwebtoken::errors::Error::from(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)
    })?;
    let key = DecodingKey::from_jwk(jwk)?;
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[audience]);
    v.leeway = 0;
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).map(|d| d.claims)
}

async fn assertions_are_es256_short_lived_and_verifiable(s: Arc<Stack>) {
    let token = assertion(&s, &s.host, "/admin/x", "").await;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    let kid = header.kid.clone().expect("kid");
    let set = jwks(&s).await;
    assert!(set.find(&kid).is_some(), "kid {kid} is not in the JWKS");
    let claims = verify(&set, &token, "127.0.0.1").unwrap_or_else(|e| panic!("{e}: {token}"));
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert!(exp > now(), "{claims}");
    assert!(exp - iat <= 300, "lives longer than 5 minutes: {claims}");
    assert!(iat <= now() + 5, "{claims}");
    assert!(
        claims["sub"].as_str().unwrap().ends_with("|alice"),
        "{claims}"
    );
    assert_eq!(claims["email"], "alice@example.com");
    for c in ["iss", "jti", "sid"] {
        assert!(
            claims[c].as_str().is_some_and(|v| !v.is_empty()),
            "no {c}: {claims}"
        );
    }
    let raw = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    for secret in [&s.alice[..20], "refresh", "access_token", "id_token"] {
        assert!(
            !raw.contains(secret),
            "the assertion carries {secret:?}: {raw}"
        );
    }
}

async fn the_audience_is_the_routed_host_whatever_the_client_says(s: Arc<Stack>) {
    let port = s.gh.addr.port();
    let named = format!("{NAMED_HOST}:{port}");
    let spoof = "X-Forwarded-Host: evil.example\r\nForwarded: host=evil.example\r\nX-Original-Host: evil.example\r\n";
    for (host, extra, aud) in [
        (s.host.clone(), "", "127.0.0.1"),
        (s.host.clone(), spoof, "127.0.0.1"),
        (s.host.replace("127.0.0.1", "127.0.0.1."), "", "127.0.0.1"),
        (named.clone(), "", NAMED_HOST),
        (named.clone(), spoof, NAMED_HOST),
        (named.to_ascii_uppercase(), "", NAMED_HOST),
        (named.replace(".localtest", ".localtest."), "", NAMED_HOST),
        (named.replace("app.", "App."), "", NAMED_HOST),
    ] {
        let path = if host.to_ascii_lowercase().starts_with(NAMED_HOST) {
            "/x"
        } else {
            "/admin/x"
        };
        let token = assertion(&s, &host, path, extra).await;
        let claims = jwt_claims(&token);
        assert_eq!(claims["aud"], aud, "Host: {host} {extra:?}: {claims}");
    }
}

async fn an_assertion_verifies_for_its_own_host_only(s: Arc<Stack>) {
    let set = jwks(&s).await;
    let a = assertion(&s, &s.host, "/admin/x", "").await;
    let named = format!("{NAMED_HOST}:{}", s.gh.addr.port());
    let b = assertion(&s, &named, "/x", "").await;
    assert!(verify(&set, &a, "127.0.0.1").is_ok());
    assert!(verify(&set, &b, NAMED_HOST).is_ok());
    assert!(
        verify(&set, &a, NAMED_HOST).is_err(),
        "app A's assertion passes app B's check"
    );
    assert!(
        verify(&set, &b, "127.0.0.1").is_err(),
        "app B's assertion passes app A's check"
    );
}

async fn forged_and_reissued_tokens_are_no_credential(s: Arc<Stack>) {
    let real = assertion(&s, &s.host, "/admin/x", "").await;
    let parts: Vec<&str> = real.split('.').collect();
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let claims = jwt_claims(&real);
    let none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
        parts[1]
    );
    let hs = {
        let header = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": jsonwebtoken::decode_header(&real).unwrap().kid});
        let key = serde_json::to_vec(&jwks(&s).await).unwrap();
        jsonwebtoken::encode(
            &jsonwebtoken::Header {
                alg: Algorithm::HS256,
                kid: header["kid"].as_str().map(str::to_owned),
                ..Default::default()
            },
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&key).unwrap(),
        )
        .unwrap()
    };
    let flipped = {
        let mut sig = parts[2].as_bytes().to_vec();
        sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            String::from_utf8(sig).unwrap()
        )
    };
    let mark = s.mark();
    for token in [&real, &none, &hs, &flipped] {
        for header in [
            format!("Authorization: Bearer {token}\r\n"),
            format!("Cookie: {COOKIE}={token}\r\n"),
        ] {
            let r = s.send(&s.anon("GET", "/admin/x", &header)).await;
            assert_eq!(r.status, 401, "{header:.50}…:\n{}", r.dump());
        }
    }
    let seen = s.settled_since(&mark).await;
    assert!(seen.is_empty(), "a JWT opened a route: {}", describe(&seen));
    // The real one, on the route it was made for, from the client: stripped, not trusted.
    let mark = s.mark();
    let r = s
        .send(&s.h1(
            Kind::Group,
            "GET",
            "/admin/x",
            &format!("X-Gatehouse-Jwt-Assertion: {none}\r\n"),
        ))
        .await;
    assert_eq!(r.status, 200);
    let one = assert_one(&s.since(&mark), "admin", "forged assertion header");
    assert!(!one.raw_head().contains(&none[..30]), "{}", one.raw_head());
}

async fn the_jwks_holds_public_keys_only(s: Arc<Stack>) {
    let r = s
        .send(
            s.anon("GET", "/.well-known/gatehouse/jwks.json", "")
                .as_slice(),
        )
        .await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let keys = v["keys"].as_array().expect("keys");
    assert!(!keys.is_empty());
    for k in keys {
        assert_eq!(k["kty"], "EC", "{k}");
        assert_eq!(k["crv"], "P-256", "{k}");
        assert!(k["kid"].as_str().is_some_and(|s| !s.is_empty()), "{k}");
        assert!(k.get("d").is_none(), "a private key is published: {k}");
    }
}
