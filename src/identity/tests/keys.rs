//! Loading signing keys: formats, several keys, and what is refused.

use super::*;

#[test]
fn parses_pkcs8_and_sec1_with_rfc7638_kids() {
    assert_eq!(keys(P256_PKCS8).kid(), P256_PKCS8_KID);
    assert_eq!(keys(P256_SEC1).kid(), P256_SEC1_KID);
    // `openssl ecparam -genkey` without -noout writes an EC PARAMETERS block first.
    let with_params = keys(P256_SEC1_PARAMS);
    assert_eq!(with_params.kids().count(), 1);
    // CRLF line endings and comments around blocks are fine.
    let crlf = format!("# signing key\r\n{}", P256_PKCS8.replace('\n', "\r\n"));
    assert_eq!(keys(&crlf).kid(), P256_PKCS8_KID);
}

#[test]
fn several_keys_first_signs_all_published() {
    let both = keys(&format!("{P256_SEC1}\n{P256_PKCS8}"));
    assert_eq!(both.kid(), P256_SEC1_KID);
    assert_eq!(
        both.kids().collect::<Vec<_>>(),
        [P256_SEC1_KID, P256_PKCS8_KID]
    );
    let set: JwkSet = serde_json::from_slice(&both.jwks().body).unwrap();
    let kids: Vec<_> = set
        .keys
        .iter()
        .map(|k| k.common.key_id.clone().unwrap())
        .collect();
    assert_eq!(kids, [P256_SEC1_KID, P256_PKCS8_KID]);
    let (token, _) = both
        .sign("https://auth.example", "app.example", &alice(), "s", now())
        .unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(P256_SEC1_KID));
}

#[test]
fn wrong_keys_are_refused_with_their_block_number() {
    let cases = [
        (RSA_PKCS8.to_owned(), "PEM block 1 is an RSA key"),
        (RSA_TRADITIONAL.to_owned(), "PEM block 1 is an RSA key"),
        (
            P384_PKCS8.to_owned(),
            "PEM block 1 is a P-384 (secp384r1) key",
        ),
        (
            P384_SEC1.to_owned(),
            "PEM block 1 is a P-384 (secp384r1) key",
        ),
        (ED25519.to_owned(), "PEM block 1 is an Ed25519 key"),
        (
            format!("{P256_PKCS8}{RSA_PKCS8}"),
            "PEM block 2 is an RSA key",
        ),
        (
            format!("{P256_SEC1_PARAMS}{P384_SEC1}"),
            "PEM block 3 is a P-384",
        ),
        (
            format!("{P256_PKCS8}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            "PEM block 2 is a CERTIFICATE block, not a private key",
        ),
    ];
    for (pem, want) in cases {
        let got = key_error(&pem);
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        assert!(got.contains("P-256"), "{got:?} should say what is needed");
    }
}

#[test]
fn garbage_is_refused_without_echoing_it() {
    let body: String = P256_PKCS8
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let cases = [
        (String::new(), "holds no PEM private key block"),
        (
            "just some text".to_owned(),
            "holds no PEM private key block",
        ),
        (body.clone(), "holds no PEM private key block"),
        (
            format!("-----BEGIN PRIVATE KEY-----\n{body}\n"),
            "PEM block 1 has no END line",
        ),
        (
            format!("-----BEGIN PRIVATE KEY-----\n{body}!\n-----END PRIVATE KEY-----\n"),
            "PEM block 1 has a body that is not valid base64",
        ),
        (
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_owned(),
            "PEM block 1 is not a valid PKCS#8 private key",
        ),
        (
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n".to_owned(),
            "PEM block 1 is not a valid SEC1 EC private key",
        ),
        (
            format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END EC PRIVATE KEY-----\n"),
            "PEM block 1 ends with an END line of another label",
        ),
        (
            "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAAAA\n\
             -----END EC PRIVATE KEY-----\n"
                .to_owned(),
            "PEM block 1 is encrypted",
        ),
        (
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
                .to_owned(),
            "PEM block 1 is encrypted",
        ),
    ];
    for (pem, want) in cases {
        let got = key_error(&pem);
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        assert!(!got.contains(&body[10..30]), "{got:?} echoes key material");
    }
    assert!(SigningKeys::from_pem(&[0xff, 0xfe, 0x00]).is_err());
}

#[test]
fn debug_shows_kids_only() {
    let k = keys(P256_PKCS8);
    let shown = format!("{k:?}");
    assert!(shown.contains(P256_PKCS8_KID), "{shown}");
    let pem = k.to_pem().unwrap();
    let body_line = pem.lines().nth(1).unwrap();
    assert!(!shown.contains(body_line));
}

#[test]
fn generated_keys_round_trip_through_pem() {
    let fresh = SigningKeys::generate().unwrap();
    let pem = fresh.to_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert_eq!(keys(&pem).kid(), fresh.kid());
    assert_ne!(SigningKeys::generate().unwrap().kid(), fresh.kid());
    // Several keys write out in order and load back in order.
    let both = keys(&format!("{P256_SEC1}{P256_PKCS8}"));
    let again = keys(&both.to_pem().unwrap());
    assert_eq!(
        again.kids().collect::<Vec<_>>(),
        [P256_SEC1_KID, P256_PKCS8_KID]
    );
}

#[test]
fn jwks_document_and_conditional_get() {
    let k = keys(P256_PKCS8);
    let jwks = k.jwks();
    let doc: serde_json::Value = serde_json::from_slice(&jwks.body).unwrap();
    assert_eq!(
        doc,
        serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256",
            "x": "VDxsiS6bHqnXAV8WHbOZp8VKPU__Eaa7AH8Ne1RH7G8",
            "y": "HTtwcAYVEluytM4UvZuMHEgmMBE1xQU0FHRlaejue4w",
            "kid": P256_PKCS8_KID, "alg": "ES256", "use": "sig",
        }]})
    );
    // The ETag is the quoted base64url SHA-256 of the body.
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(&jwks.body);
    let want = format!(
        "\"{}\"",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    );
    assert_eq!(jwks.etag.to_str().unwrap(), want);

    let full = jwks.reply(None);
    assert_eq!(full.status, http::StatusCode::OK);
    assert_eq!(full.body, jwks.body);
    assert_eq!(full.cache_control, "public, max-age=300");
    assert_eq!(full.content_type.unwrap(), "application/json");
    let etag = jwks.etag.as_bytes();
    for inm in [
        etag.to_vec(),
        [b"W/", etag].concat(),
        [b"\"other\", ", etag].concat(),
        b"*".to_vec(),
    ] {
        let r = jwks.reply(Some(&inm));
        assert_eq!(r.status, http::StatusCode::NOT_MODIFIED, "{inm:?}");
        assert!(r.body.is_empty());
        assert_eq!(r.etag, jwks.etag);
        assert!(r.content_type.is_none());
    }
    assert_eq!(jwks.reply(Some(b"\"other\"")).status, http::StatusCode::OK);
    // Another key set, another ETag.
    assert_ne!(keys(P256_SEC1).jwks().etag, jwks.etag);
}
