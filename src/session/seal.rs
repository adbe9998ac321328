//! Sealed values: AES-256-GCM (BoringSSL) under keys derived from `cookie_secret`, one key per
//! purpose, so a value sealed for one use (say, a login state) can never be opened as another
//! (say, a session ticket). Output is URL-safe base64 without padding:
//! `nonce (12) ‖ ciphertext ‖ tag (16)`.
//!
//! Opening answers only "valid or not": a flipped bit, a truncation, bad base64 or a value of
//! another purpose all give `None`, so no response can tell which check failed.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use boring::symm::{decrypt_aead, encrypt_aead, Cipher};
use hkdf::Hkdf;
use sha2::Sha256;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Sealed values longer than this (in base64) are refused before decoding.
pub const MAX_SEALED_LEN: usize = 4096;

/// What a sealed value is for; each purpose has its own key and additional data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The session cookie (and the programmatic bearer token) ticket.
    Ticket,
    /// The short-lived login state cookie (state, nonce, PKCE verifier, return URL).
    LoginState,
    /// The sign-in hop from an app host to the authenticate host (return URL).
    SignIn,
    /// A sign-out link or form token bound to one session.
    SignOut,
    /// The record of a session in the store, under the session's own secret.
    Record,
}

impl Purpose {
    const ALL: [Purpose; 5] = [
        Purpose::Ticket,
        Purpose::LoginState,
        Purpose::SignIn,
        Purpose::SignOut,
        Purpose::Record,
    ];

    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Ticket => b"gatehouse v1 ticket",
            Purpose::LoginState => b"gatehouse v1 login state",
            Purpose::SignIn => b"gatehouse v1 sign in",
            Purpose::SignOut => b"gatehouse v1 sign out",
            Purpose::Record => b"gatehouse v1 session record",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Seals and opens values with keys derived from one 32-byte secret.
#[derive(Clone)]
pub struct Sealer {
    keys: [[u8; 32]; Purpose::ALL.len()],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

// === impl Sealer ===

impl Sealer {
    /// Keys for every purpose, derived from `secret` with HKDF-SHA256.
    pub fn new(secret: &[u8; 32]) -> Sealer {
        let hkdf = Hkdf::<Sha256>::new(Some(b"gatehouse cookie keys"), secret);
        let mut keys = [[0u8; 32]; Purpose::ALL.len()];
        for purpose in Purpose::ALL {
            // 32 bytes is far below HKDF-SHA256's limit of 8160: this cannot fail.
            let _ = hkdf.expand(purpose.label(), &mut keys[purpose.index()]);
        }
        Sealer { keys }
    }

    /// `plaintext` sealed for `purpose`, with `context` bound as additional data (it must be
    /// given again to open).
    pub fn seal(&self, purpose: Purpose, context: &[u8], plaintext: &[u8]) -> String {
        seal_with(&self.keys[purpose.index()], purpose, context, plaintext)
    }

    /// The plaintext of a value sealed for `purpose` and `context`, or `None`.
    pub fn open(&self, purpose: Purpose, context: &[u8], sealed: &str) -> Option<Vec<u8>> {
        open_with(&self.keys[purpose.index()], purpose, context, sealed)
    }
}

/// Seals with an explicit key (session records use the session's own secret).
pub fn seal_with(key: &[u8; 32], purpose: Purpose, context: &[u8], plaintext: &[u8]) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce);
    let aad = additional_data(purpose, context);
    let mut tag = [0u8; TAG_LEN];
    // AES-256-GCM with a 32-byte key and 12-byte nonce does not fail; an empty value would
    // simply not open.
    let ciphertext = encrypt_aead(
        Cipher::aes_256_gcm(),
        key,
        Some(&nonce),
        &aad,
        plaintext,
        &mut tag,
    )
    .unwrap_or_default();
    let mut raw = Vec::with_capacity(NONCE_LEN + ciphertext.len() + TAG_LEN);
    raw.extend_from_slice(&nonce);
    raw.extend_from_slice(&ciphertext);
    raw.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Opens with an explicit key; `None` for anything that is not a value sealed by `key` for
/// this purpose and context.
pub fn open_with(
    key: &[u8; 32],
    purpose: Purpose,
    context: &[u8],
    sealed: &str,
) -> Option<Vec<u8>> {
    if sealed.len() > MAX_SEALED_LEN {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(sealed.as_bytes()).ok()?;
    if raw.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, rest) = raw.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let aad = additional_data(purpose, context);
    decrypt_aead(
        Cipher::aes_256_gcm(),
        key,
        Some(nonce),
        &aad,
        ciphertext,
        tag,
    )
    .ok()
}

fn additional_data(purpose: Purpose, context: &[u8]) -> Vec<u8> {
    let label = purpose.label();
    let mut aad = Vec::with_capacity(label.len() + 1 + context.len());
    aad.extend_from_slice(label);
    aad.push(0);
    aad.extend_from_slice(context);
    aad
}

/// Equality whose time depends only on the lengths (BoringSSL's comparison).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && boring::memcmp::eq(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(&[7u8; 32])
    }

    #[test]
    fn round_trip() {
        let s = sealer();
        let sealed = s.seal(Purpose::Ticket, b"ctx", b"hello");
        assert_eq!(
            s.open(Purpose::Ticket, b"ctx", &sealed).as_deref(),
            Some(&b"hello"[..])
        );
        assert!(!sealed.contains("hello"));
        // Fresh nonce each time.
        assert_ne!(sealed, s.seal(Purpose::Ticket, b"ctx", b"hello"));
    }

    #[test]
    fn purpose_context_and_key_are_bound() {
        let s = sealer();
        let sealed = s.seal(Purpose::LoginState, b"a", b"x");
        assert!(s.open(Purpose::Ticket, b"a", &sealed).is_none());
        assert!(s.open(Purpose::LoginState, b"b", &sealed).is_none());
        assert!(Sealer::new(&[8u8; 32])
            .open(Purpose::LoginState, b"a", &sealed)
            .is_none());
    }

    #[test]
    fn every_flipped_bit_and_truncation_fails() {
        let s = sealer();
        let sealed = s.seal(Purpose::Ticket, b"", b"some session ticket bytes");
        let raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for i in 0..raw.len() * 8 {
            let mut bad = raw.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(s
                .open(Purpose::Ticket, b"", &URL_SAFE_NO_PAD.encode(&bad))
                .is_none());
        }
        for len in 0..raw.len() {
            assert!(s
                .open(Purpose::Ticket, b"", &URL_SAFE_NO_PAD.encode(&raw[..len]))
                .is_none());
        }
        for junk in ["", "!!!!", "a", &"A".repeat(MAX_SEALED_LEN + 4)] {
            assert!(s.open(Purpose::Ticket, b"", junk).is_none());
        }
    }
}
