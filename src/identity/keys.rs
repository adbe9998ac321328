//! The ES256 keys that sign identity assertions: loading, generating, and signing.

use std::{fmt, time::SystemTime};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use p256::{
    ecdsa::{signature::Signer as _, Signature, SigningKey},
    elliptic_curve::{sec1::ToSec1Point as _, Generate as _},
    pkcs8::{EncodePrivateKey as _, LineEnding},
    SecretKey,
};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{assertion::Claims, jwks::Jwks, pem, IdentityError};
use crate::policy::Subject;

/// The signing key set of one configuration snapshot: the first key signs, every key is
/// published in the JWKS (so a fleet can roll keys: publish the new one second, then move
/// it first). Never printed: `Debug` shows only the key ids.
pub struct SigningKeys {
    signer: KeyPair,
    others: Vec<KeyPair>,
    jwks: Jwks,
}

/// The JOSE header of every assertion a key signs.
#[derive(Serialize)]
struct JoseHeader<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// One key with its derived public values.
pub(super) struct KeyPair {
    signing: SigningKey,
    /// RFC 7638 JWK thumbprint, base64url.
    pub(super) kid: String,
    /// Public point coordinates, base64url.
    pub(super) x: String,
    pub(super) y: String,
    /// base64url of the JOSE header `{"alg":"ES256","typ":"JWT","kid":…}`.
    header: String,
}

// === impl SigningKeys ===

impl SigningKeys {
    /// Parses `signing_key` / `signing_key_file` contents: PEM text with one or more P-256
    /// private keys, each `BEGIN PRIVATE KEY` (PKCS#8) or `BEGIN EC PRIVATE KEY` (SEC1);
    /// `EC PARAMETERS` blocks naming P-256 and text outside blocks are ignored.
    /// Errors: [`IdentityError::NoKey`] when there is no key block,
    /// [`IdentityError::KeyBlock`] naming the first bad block (RSA, another curve, encrypted,
    /// malformed, any other block type).
    pub fn from_pem(text: &[u8]) -> Result<SigningKeys, IdentityError> {
        let mut keys = pem::private_keys(text)?.into_iter();
        let first = keys.next().ok_or(IdentityError::NoKey)?;
        Self::from_keys(first, keys.collect())
    }

    /// One fresh random key: used by `keygen`, and when no signing key is configured (then
    /// assertions only verify against this instance's JWKS until it restarts).
    pub fn generate() -> Result<SigningKeys, IdentityError> {
        let key = SecretKey::try_generate().map_err(|_| IdentityError::Random)?;
        Self::from_keys(key, Vec::new())
    }

    /// Every key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), signing key first, LF line
    /// endings. Secret: for `keygen` output only.
    pub fn to_pem(&self) -> Result<String, IdentityError> {
        let mut out = String::new();
        for pair in self.iter() {
            let pem = pair
                .signing
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|_| IdentityError::Encode("signing key as PEM"))?;
            out.push_str(&pem);
        }
        Ok(out)
    }

    /// The `kid` of the key that signs (an RFC 7638 JWK thumbprint).
    pub fn kid(&self) -> &str {
        &self.signer.kid
    }

    /// The `kid` of every published key, signing key first.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|k| k.kid.as_str())
    }

    /// The JWKS document publishing every key, built once when the keys were loaded.
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    /// Signs a fresh identity assertion: `iss` = `issuer` (the authenticate host or the route
    /// host), `aud` = `audience` (the route host without port), `sub` and `user` = the
    /// subject's user id, `email` and `name` when known, `groups` (always an array), `sid`,
    /// a random 128-bit `jti`, `iat` = `now` and `exp` = `iat` + [`super::ASSERTION_LIFETIME`].
    /// Returns the compact JWT and its expiry. Takes tens of microseconds; call it through
    /// [`super::AssertionCache`] on the request path.
    pub fn sign(
        &self,
        issuer: &str,
        audience: &str,
        subject: &Subject,
        sid: &str,
        now: SystemTime,
    ) -> Result<(String, SystemTime), IdentityError> {
        let claims = Claims::new(issuer, audience, subject, sid, now)?;
        let payload =
            serde_json::to_vec(&claims).map_err(|_| IdentityError::Encode("assertion claims"))?;
        let header = &self.signer.header;
        let mut token = String::with_capacity(header.len() + payload.len() * 4 / 3 + 92);
        token.push_str(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature: Signature = self
            .signer
            .signing
            .try_sign(token.as_bytes())
            .map_err(|_| IdentityError::Encode("assertion signature"))?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
        Ok((token, claims.expiry()))
    }

    /// Signing key first, then the others.
    pub(super) fn iter(&self) -> impl Iterator<Item = &KeyPair> {
        std::iter::once(&self.signer).chain(&self.others)
    }

    fn from_keys(first: SecretKey, rest: Vec<SecretKey>) -> Result<SigningKeys, IdentityError> {
        let signer = KeyPair::new(first)?;
        let others = rest
            .into_iter()
            .map(KeyPair::new)
            .collect::<Result<Vec<_>, _>>()?;
        let jwks = Jwks::build(std::iter::once(&signer).chain(&others))?;
        Ok(SigningKeys {
            signer,
            others,
            jwks,
        })
    }
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("kids", &self.kids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

// === impl KeyPair ===

impl KeyPair {
    fn new(secret: SecretKey) -> Result<KeyPair, IdentityError> {
        let point = secret.public_key().to_sec1_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(IdentityError::Encode("public key"));
        };
        let x = URL_SAFE_NO_PAD.encode(x);
        let y = URL_SAFE_NO_PAD.encode(y);
        let kid = thumbprint(&x, &y);
        let header = JoseHeader {
            alg: "ES256",
            typ: "JWT",
            kid: &kid,
        };
        let header =
            serde_json::to_vec(&header).map_err(|_| IdentityError::Encode("assertion header"))?;
        Ok(KeyPair {
            signing: SigningKey::from(secret),
            header: URL_SAFE_NO_PAD.encode(header),
            kid,
            x,
            y,
        })
    }
}

/// RFC 7638 JWK thumbprint of a P-256 public key: base64url SHA-256 of the members `crv`,
/// `kty`, `x`, `y` in that order, without whitespace.
fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}
