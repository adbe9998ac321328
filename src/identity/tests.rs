//! Tests of the identity module: shared fixtures and helpers here, the cases in `tests/`.

use std::time::{Duration, SystemTime};

use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};

use super::*;
use crate::policy::Subject;

mod cache;
mod claim_headers;
mod keys;
mod tokens;

/// openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256
const P256_PKCS8: &str = include_str!("testdata/p256-pkcs8.pem");
/// Its RFC 7638 thumbprint, computed independently with Python `cryptography` + hashlib.
const P256_PKCS8_KID: &str = "dNsw8TFqiX0hzD7l3IeBbvAFV7JX1d68GivoMJe3Q2U";
/// openssl ecparam -name prime256v1 -genkey -noout
const P256_SEC1: &str = include_str!("testdata/p256-sec1.pem");
const P256_SEC1_KID: &str = "uuxs7INMm1bMgS8cgVqh8pAmX4kniIAqsE23zNPWNkU";
/// openssl ecparam -name prime256v1 -genkey (with the EC PARAMETERS block)
const P256_SEC1_PARAMS: &str = include_str!("testdata/p256-sec1-params.pem");
const P384_PKCS8: &str = include_str!("testdata/p384-pkcs8.pem");
const P384_SEC1: &str = include_str!("testdata/p384-sec1.pem");
const RSA_PKCS8: &str = include_str!("testdata/rsa.pem");
const RSA_TRADITIONAL: &str = include_str!("testdata/rsa-trad.pem");
const ED25519: &str = include_str!("testdata/ed.pem");

fn keys(pem: &str) -> SigningKeys {
    SigningKeys::from_pem(pem.as_bytes()).unwrap()
}

fn key_error(pem: &str) -> String {
    SigningKeys::from_pem(pem.as_bytes())
        .unwrap_err()
        .to_string()
}

fn alice() -> Subject {
    Subject {
        user_id: "https://idp.example|alice".to_owned(),
        email: Some("alice@corp.example".to_owned()),
        email_verified: true,
        name: Some("Alice Example".to_owned()),
        groups: vec!["admins".to_owned(), "staff".to_owned()],
        ..Subject::default()
    }
}

/// Verifies `token` the way an upstream would: with only the JWKS document, expecting
/// `audience` and `issuer`. Returns the claims.
fn verify(
    jwks: &Jwks,
    token: &str,
    issuer: &str,
    audience: &str,
) -> Result<serde_json::Value, jsonwebtoken::errors::Error> {
    let set: JwkSet = serde_json::from_slice(&jwks.body).unwrap();
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.as_deref().unwrap();
    let jwk = set.find(kid).expect("kid published in the JWKS");
    let key = DecodingKey::from_jwk(jwk)?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    Ok(jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)?.claims)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn now() -> SystemTime {
    SystemTime::now()
}
