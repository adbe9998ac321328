//! `jwt_claims_headers` values and `keygen` output.

use http::HeaderName;

use super::*;
use crate::policy::ClaimValue;

fn configured(pairs: &[(&str, &str)]) -> Vec<(HeaderName, String)> {
    pairs
        .iter()
        .map(|(h, c)| {
            (
                HeaderName::from_bytes(h.as_bytes()).unwrap(),
                (*c).to_owned(),
            )
        })
        .collect()
}

fn values(subject: &Subject, pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    claim_header_values(subject, &configured(pairs))
        .into_iter()
        .map(|(h, v)| (h.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn standard_and_custom_claims() {
    let mut alice = alice();
    alice.claims.insert(
        "department".to_owned(),
        vec![ClaimValue::String("R&D".to_owned())],
    );
    alice.claims.insert(
        "levels".to_owned(),
        vec![
            ClaimValue::Number(3.0),
            ClaimValue::Number(2.5),
            ClaimValue::Bool(true),
        ],
    );
    let got = values(
        &alice,
        &[
            ("x-gatehouse-claim-email", "email"),
            ("x-gatehouse-claim-groups", "groups"),
            ("x-gatehouse-claim-name", "name"),
            ("x-gatehouse-claim-user", "user"),
            ("x-sub", "sub"),
            ("x-verified", "email_verified"),
            ("x-dept", "department"),
            ("x-levels", "levels"),
            ("x-missing", "given_name"),
        ],
    );
    let want = [
        ("x-gatehouse-claim-email", "alice@corp.example"),
        ("x-gatehouse-claim-groups", "admins,staff"),
        ("x-gatehouse-claim-name", "Alice Example"),
        ("x-gatehouse-claim-user", "https://idp.example|alice"),
        ("x-sub", "https://idp.example|alice"),
        ("x-verified", "true"),
        ("x-dept", "R&D"),
        ("x-levels", "3,2.5,true"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(h, v)| ((*h).to_owned(), (*v).to_owned()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn missing_and_empty_claims_set_no_header() {
    let nobody = Subject {
        user_id: "https://idp.example|n".to_owned(),
        ..Subject::default()
    };
    let got = values(
        &nobody,
        &[
            ("x-email", "email"),
            ("x-groups", "groups"),
            ("x-name", "name"),
            ("x-v", "email_verified"),
        ],
    );
    assert_eq!(got, [("x-v".to_owned(), "false".to_owned())]);
}

#[test]
fn control_bytes_are_never_injected() {
    let mut mallory = alice();
    mallory.name = Some("Mallory\r\nX-Admin: 1".to_owned());
    mallory.email = Some("m@corp.example\0".to_owned());
    mallory.groups = vec!["ok".to_owned(), "bad\ngroup".to_owned()];
    mallory.claims.insert(
        "tabbed".to_owned(),
        vec![ClaimValue::String("a\tb".to_owned())],
    );
    mallory.claims.insert(
        "city".to_owned(),
        vec![ClaimValue::String("Zürich".to_owned())],
    );
    let pairs = [
        ("x-name", "name"),
        ("x-email", "email"),
        ("x-groups", "groups"),
        ("x-tabbed", "tabbed"),
        ("x-city", "city"),
    ];
    let got = claim_header_values(&mallory, &configured(&pairs));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "x-city");
    assert_eq!(got[0].1.as_bytes(), "Zürich".as_bytes());
}

#[test]
fn keygen_output_pastes_into_a_config() {
    let text = keygen_text().unwrap();
    assert!(text.starts_with('#'), "{text}");
    assert!(text.contains("secret"));
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let secret = doc["cookie_secret"].as_str().unwrap();
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret)
        .unwrap();
    assert_eq!(bytes.len(), 32);
    let pem = doc["signing_key"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let k = SigningKeys::from_pem(pem.as_bytes()).unwrap();
    assert_eq!(k.kids().count(), 1);
    // Fresh every time.
    let again: serde_yaml::Value = serde_yaml::from_str(&keygen_text().unwrap()).unwrap();
    assert_ne!(again["cookie_secret"], doc["cookie_secret"]);
    assert_ne!(again["signing_key"], doc["signing_key"]);
}
