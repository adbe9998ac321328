//! The JWKS document (`/.well-known/gatehouse/jwks.json`) and its conditional-GET answer.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{keys::KeyPair, IdentityError};

/// The public keys of a [`super::SigningKeys`] as an RFC 7517 JWK Set, serialized once.
#[derive(Debug, Clone)]
pub struct Jwks {
    /// `{"keys":[{"kty":"EC","crv":"P-256","x","y","kid","alg":"ES256","use":"sig"},…]}`,
    /// signing key first.
    pub body: Bytes,
    /// Strong ETag: the quoted base64url SHA-256 of `body`.
    pub etag: HeaderValue,
}

/// How to answer a JWKS request: status, body and the headers to set. Building one does not
/// allocate (every field is a reference-counted or static value).
#[derive(Debug, Clone)]
pub struct JwksReply {
    /// 200, or 304 when `If-None-Match` matched.
    pub status: StatusCode,
    /// The document for 200; empty for 304.
    pub body: Bytes,
    /// `ETag`, on both 200 and 304.
    pub etag: HeaderValue,
    /// `Cache-Control: public, max-age=300`, on both 200 and 304.
    pub cache_control: HeaderValue,
    /// `Content-Type: application/json` for 200; `None` for 304.
    pub content_type: Option<HeaderValue>,
}

#[derive(Serialize)]
struct JwkSet<'a> {
    keys: Vec<Jwk<'a>>,
}

#[derive(Serialize)]
struct Jwk<'a> {
    kty: &'static str,
    crv: &'static str,
    x: &'a str,
    y: &'a str,
    kid: &'a str,
    alg: &'static str,
    #[serde(rename = "use")]
    use_: &'static str,
}

// === impl Jwks ===

impl Jwks {
    /// `Cache-Control` of the document: keys rotate through configuration reloads, so
    /// verifiers may hold it five minutes.
    pub const CACHE_CONTROL: &'static str = "public, max-age=300";

    pub(super) fn build<'a>(
        keys: impl Iterator<Item = &'a KeyPair>,
    ) -> Result<Jwks, IdentityError> {
        let set = JwkSet {
            keys: keys
                .map(|k| Jwk {
                    kty: "EC",
                    crv: "P-256",
                    x: &k.x,
                    y: &k.y,
                    kid: &k.kid,
                    alg: "ES256",
                    use_: "sig",
                })
                .collect(),
        };
        let body = serde_json::to_vec(&set).map_err(|_| IdentityError::Encode("JWKS"))?;
        let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(Sha256::digest(&body)));
        let etag = HeaderValue::from_maybe_shared(Bytes::from(etag))
            .map_err(|_| IdentityError::Encode("JWKS ETag"))?;
        Ok(Jwks {
            body: Bytes::from(body),
            etag,
        })
    }

    /// The answer to a GET or HEAD of the document. `if_none_match` is the request's
    /// `If-None-Match` value (join repeated headers with `,`); when it lists this ETag (weak
    /// comparison, as RFC 9110 asks for `If-None-Match`) or is `*`, the answer is 304.
    pub fn reply(&self, if_none_match: Option<&[u8]>) -> JwksReply {
        let cache_control = HeaderValue::from_static(Self::CACHE_CONTROL);
        if if_none_match.is_some_and(|v| self.matches(v)) {
            return JwksReply {
                status: StatusCode::NOT_MODIFIED,
                body: Bytes::new(),
                etag: self.etag.clone(),
                cache_control,
                content_type: None,
            };
        }
        JwksReply {
            status: StatusCode::OK,
            body: self.body.clone(),
            etag: self.etag.clone(),
            cache_control,
            content_type: Some(HeaderValue::from_static("application/json")),
        }
    }

    /// Whether an `If-None-Match` value names this document.
    fn matches(&self, if_none_match: &[u8]) -> bool {
        let ours = self.etag.as_bytes();
        if_none_match.split(|&b| b == b',').any(|tag| {
            let tag = tag.trim_ascii();
            tag == b"*" || tag.strip_prefix(b"W/").unwrap_or(tag) == ours
        })
    }
}
