//! Machine identities: workload JWTs from a trusted issuer (`identity_providers`) are the
//! request's identity for their lifetime; everything else about them is refused (wrong
//! audience or issuer, expired, symmetric or no signature, unknown key, gatehouse's own
//! assertions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use support::{Gatehouse, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ISSUER: &str = "https://workloads.example";
const SIGNING_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgKdJPFlBnwPfsXTnD
Am4JNNB+9R0tN7Xw087IANG9RUOhRANCAAS7CPo86iSMrSaxQVwRghAwNL3ZsZFR
jJNAotrhOBK73PQmy4s4X1eLIXnUJdwzlCAd2vvNjY8MVNLVZFVfg+SN
-----END PRIVATE KEY-----
";

/// A JWKS endpoint on 127.0.0.1:0 that counts its requests.
struct Jwks {
    url: String,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Jwks {
    async fn serve(body: String) -> Jwks {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        Jwks { url, hits, task }
    }
}

impl Drop for Jwks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A workload signing key and its public JWK.
struct Workload {
    key: EncodingKey,
    jwk: serde_json::Value,
}

fn workload_key(kid: &str) -> Workload {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = pair.public_key_raw();
    assert_eq!(point.len(), 65);
    Workload {
        key: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
        jwk: serde_json::json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(key: &Workload, kid: &str, claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, &claims, &key.key).unwrap()
}

fn claims(sub: &str, aud: &str, iss: &str, exp_in: i64) -> serde_json::Value {
    let now = now() as i64;
    serde_json::json!({"iss": iss, "sub": sub, "aud": aud, "iat": now, "exp": now + exp_in,
                       "groups": ["batch"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_tokens_from_trusted_issuers_are_identities_and_nothing_else_is() {
    let key = workload_key("w1");
    let stranger = workload_key("w2");
    let jwks = Jwks::serve(serde_json::json!({ "keys": [key.jwk] }).to_string()).await;
    let upstream = Upstream::start("api").await;
    let config = format!(
        "signing_key: |
{indented}
pass_identity_headers: true
identity_providers:
  ci:
    issuer: {ISSUER}
    jwks_url: {jwks}
    audiences: [gatehouse-api]
routes:
  - from: http://api.internal
    prefix: /batch
    to: {up}
    allowed_users: [\"{ISSUER}|svc-a\"]
  - from: http://api.internal
    prefix: /
    to: {up}
    allowed_groups: [batch]
",
        indented = SIGNING_KEY
            .lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        jwks = jwks.url,
        up = upstream.url(),
    );
    let gh = Gatehouse::plain(&config).await;
    let client = gh.client(&["api.internal"]);
    let base = format!("http://api.internal:{}", gh.addr.port());
    let get = |path: &str, bearer: &str| {
        client
            .get(format!("{base}{path}"))
            .bearer_auth(bearer)
            .header("accept", "application/json")
            .send()
    };

    // A valid token: the identity, its policies, an assertion upstream, no bearer forwarded.
    let a = token(&key, "w1", claims("svc-a", "gatehouse-api", ISSUER, 300));
    let r = get("/batch/run", &a).await.unwrap();
    assert_eq!(r.status(), 200, "{}", gh.log());
    let body: serde_json::Value = r.json().await.unwrap();
    let headers = body["headers"].as_array().unwrap();
    assert!(
        !headers
            .iter()
            .any(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("authorization")),
        "the workload token reached the upstream"
    );
    assert!(headers.iter().any(|h| h[0]
        .as_str()
        .unwrap()
        .eq_ignore_ascii_case("x-gatehouse-jwt-assertion")));
    let b = token(&key, "w1", claims("svc-b", "gatehouse-api", ISSUER, 300));
    assert_eq!(get("/batch/run", &b).await.unwrap().status(), 403);
    assert_eq!(
        get("/other", &b).await.unwrap().status(),
        200,
        "group from the token"
    );

    // Everything else is no credential: 401.
    let mut hs256 = Header::new(Algorithm::HS256);
    hs256.kid = Some("w1".into());
    let forged_hs = jsonwebtoken::encode(
        &hs256,
        &claims("svc-a", "gatehouse-api", ISSUER, 300),
        &EncodingKey::from_secret(b"anything").unwrap(),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"w1"}"#),
        URL_SAFE_NO_PAD.encode(claims("svc-a", "gatehouse-api", ISSUER, 300).to_string())
    );
    let own = gatehouse::identity::SigningKeys::from_pem(SIGNING_KEY.as_bytes()).unwrap();
    let subject = gatehouse::policy::Subject {
        user_id: format!("{ISSUER}|svc-a"),
        ..Default::default()
    };
    let (own_assertion, _) = own
        .sign(
            ISSUER,
            "gatehouse-api",
            &subject,
            "sid",
            std::time::SystemTime::now(),
        )
        .unwrap();
    let hits_before = jwks.hits.load(Ordering::SeqCst);
    for (what, bad) in [
        (
            "wrong audience",
            token(&key, "w1", claims("svc-a", "other", ISSUER, 300)),
        ),
        (
            "untrusted issuer",
            token(
                &key,
                "w1",
                claims("svc-a", "gatehouse-api", "https://evil", 300),
            ),
        ),
        (
            "expired",
            token(&key, "w1", claims("svc-a", "gatehouse-api", ISSUER, -120)),
        ),
        ("HS256", forged_hs),
        ("alg none", none),
        (
            "unknown key",
            token(
                &stranger,
                "w2",
                claims("svc-a", "gatehouse-api", ISSUER, 300),
            ),
        ),
        ("gatehouse's own assertion", own_assertion),
        ("garbage", "a.b.c".to_owned()),
    ] {
        let r = get("/other", &bad).await.unwrap();
        assert_eq!(r.status(), 401, "{what}");
    }
    // The unknown key caused at most one refetch.
    let refetches = jwks.hits.load(Ordering::SeqCst) - hits_before;
    assert!(
        refetches <= 1,
        "{refetches} JWKS fetches for one unknown kid"
    );
    let again = token(
        &stranger,
        "w2",
        claims("svc-c", "gatehouse-api", ISSUER, 300),
    );
    assert_eq!(get("/other", &again).await.unwrap().status(), 401);
    assert!(
        jwks.hits.load(Ordering::SeqCst) - hits_before <= 1,
        "refetch not rate-limited"
    );
}
