//! Signed assertions, checked the way an upstream checks them.

use super::*;

const ISS: &str = "https://authenticate.corp.example";
const APP: &str = "app.corp.example";

#[test]
fn assertion_verifies_with_only_the_jwks() {
    let k = keys(P256_PKCS8);
    let issued = now();
    let (token, exp) = k.sign(ISS, APP, &alice(), "00ff", issued).unwrap();
    let claims = verify(k.jwks(), &token, ISS, APP).unwrap();

    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(P256_PKCS8_KID));
    assert_eq!(header.typ.as_deref(), Some("JWT"));

    assert_eq!(claims["iss"], ISS);
    assert_eq!(claims["aud"], APP);
    assert_eq!(claims["sub"], "https://idp.example|alice");
    assert_eq!(claims["user"], "https://idp.example|alice");
    assert_eq!(claims["email"], "alice@corp.example");
    assert_eq!(claims["name"], "Alice Example");
    assert_eq!(claims["groups"], serde_json::json!(["admins", "staff"]));
    assert_eq!(claims["sid"], "00ff");
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(claims["exp"].as_u64().unwrap() - iat, 300);
    let unix = |t: SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(iat, unix(issued));
    assert_eq!(unix(exp), iat + 300);
    // 128 random bits, base64url: 22 characters, different every time.
    let jti = claims["jti"].as_str().unwrap();
    assert_eq!(jti.len(), 22);
    let (again, _) = k.sign(ISS, APP, &alice(), "00ff", issued).unwrap();
    assert_ne!(verify(k.jwks(), &again, ISS, APP).unwrap()["jti"], jti);
}

#[test]
fn minimal_subject_still_has_a_groups_array() {
    let k = keys(P256_SEC1);
    let bob = Subject {
        user_id: "https://idp.example|bob".to_owned(),
        ..Subject::default()
    };
    let (token, _) = k.sign(APP, APP, &bob, "01", now()).unwrap();
    let claims = verify(k.jwks(), &token, APP, APP).unwrap();
    assert_eq!(claims["groups"], serde_json::json!([]));
    let object = claims.as_object().unwrap();
    assert!(!object.contains_key("email"));
    assert!(!object.contains_key("name"));
}

#[test]
fn assertion_for_one_app_is_rejected_by_another() {
    let k = keys(P256_PKCS8);
    let (token, _) = k.sign(ISS, APP, &alice(), "00ff", now()).unwrap();
    let err = verify(k.jwks(), &token, ISS, "other.corp.example").unwrap_err();
    assert_eq!(
        *err.kind(),
        jsonwebtoken::errors::ErrorKind::InvalidAudience
    );
    let err = verify(k.jwks(), &token, "https://evil.example", APP).unwrap_err();
    assert_eq!(*err.kind(), jsonwebtoken::errors::ErrorKind::InvalidIssuer);
}

#[test]
fn another_key_set_does_not_verify() {
    let ours = keys(P256_PKCS8);
    let theirs = keys(P256_SEC1);
    let (token, _) = ours.sign(ISS, APP, &alice(), "00ff", now()).unwrap();
    // Their JWKS lacks our kid; forcing their key on our token fails the signature.
    let set: JwkSet = serde_json::from_slice(&theirs.jwks().body).unwrap();
    assert!(set.find(ours.kid()).is_none());
    let key = DecodingKey::from_jwk(&set.keys[0]).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[APP]);
    assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).is_err());
}

#[test]
fn expired_assertions_fail_verification() {
    let k = keys(P256_PKCS8);
    let (token, _) = k
        .sign(ISS, APP, &alice(), "00ff", now() - secs(600))
        .unwrap();
    let err = verify(k.jwks(), &token, ISS, APP).unwrap_err();
    assert_eq!(
        *err.kind(),
        jsonwebtoken::errors::ErrorKind::ExpiredSignature
    );
}

#[test]
fn awkward_claim_text_is_escaped_json() {
    let k = keys(P256_PKCS8);
    let mut mallory = alice();
    mallory.name = Some("M\"allory\r\n\u{0}".to_owned());
    mallory.groups = vec!["a,b".to_owned(), "ü".to_owned()];
    let (token, _) = k.sign(ISS, APP, &mallory, "00ff", now()).unwrap();
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
    let claims = verify(k.jwks(), &token, ISS, APP).unwrap();
    assert_eq!(claims["name"], "M\"allory\r\n\u{0}");
    assert_eq!(claims["groups"], serde_json::json!(["a,b", "ü"]));
}

#[test]
fn before_the_epoch_is_an_error() {
    let k = keys(P256_PKCS8);
    let err = k
        .sign(ISS, APP, &alice(), "00ff", std::time::UNIX_EPOCH - secs(1))
        .unwrap_err();
    assert!(matches!(err, IdentityError::Clock));
}
