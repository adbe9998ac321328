//! Reading P-256 private keys out of PEM text, with an error per block that says what is
//! wrong without repeating any of it.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use p256::{
    elliptic_curve::zeroize::Zeroizing,
    pkcs8::{der::Decode as _, DecodePrivateKey as _, ObjectIdentifier, PrivateKeyInfoRef},
    SecretKey,
};

use super::IdentityError;

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// Algorithms and curves we can name in messages, by OID.
const KNOWN_OIDS: &[(&str, &str)] = &[
    ("1.2.840.113549.1.1.1", "an RSA key"),
    ("1.2.840.113549.1.1.10", "an RSA-PSS key"),
    ("1.2.840.10040.4.1", "a DSA key"),
    ("1.3.101.110", "an X25519 key"),
    ("1.3.101.111", "an X448 key"),
    ("1.3.101.112", "an Ed25519 key"),
    ("1.3.101.113", "an Ed448 key"),
    ("1.3.132.0.34", "a P-384 (secp384r1) key"),
    ("1.3.132.0.35", "a P-521 (secp521r1) key"),
    ("1.3.132.0.10", "a secp256k1 key"),
    ("1.2.840.10045.3.1.1", "a P-192 (prime192v1) key"),
    ("1.3.132.0.33", "a P-224 (secp224r1) key"),
];

const NEEDS: &str = "; ES256 needs a P-256 (prime256v1) EC private key";

/// The P-256 private keys in `text`, in order. Blocks are numbered from 1 in the order of
/// their `-----BEGIN` lines; text outside blocks is ignored. `EC PARAMETERS` blocks naming
/// P-256 (as `openssl ecparam -genkey` writes them) are skipped.
pub(super) fn private_keys(text: &[u8]) -> Result<Vec<SecretKey>, IdentityError> {
    let text = std::str::from_utf8(text).map_err(|_| IdentityError::KeyBlock {
        block: 1,
        reason: "is not PEM text (the file is not valid UTF-8)".to_owned(),
    })?;
    let mut keys = Vec::new();
    let mut block = 0;
    let mut lines = text.lines().map(|l| l.trim());
    while let Some(line) = lines.next() {
        let Some(label) = begin_label(line) else {
            continue;
        };
        block += 1;
        let fail = |reason: String| IdentityError::KeyBlock { block, reason };
        let der = block_body(&mut lines, label).map_err(|r| fail(r.to_owned()))?;
        match label {
            "PRIVATE KEY" => keys.push(pkcs8_key(&der).map_err(fail)?),
            "EC PRIVATE KEY" => keys.push(sec1_key(&der).map_err(fail)?),
            "EC PARAMETERS" => ec_parameters(&der).map_err(fail)?,
            "RSA PRIVATE KEY" => return Err(fail(format!("is an RSA key{NEEDS}"))),
            "DSA PRIVATE KEY" => return Err(fail(format!("is a DSA key{NEEDS}"))),
            "ENCRYPTED PRIVATE KEY" => {
                return Err(fail(
                    "is encrypted; store the key unencrypted (openssl pkcs8 -topk8 -nocrypt)"
                        .to_owned(),
                ))
            }
            other => {
                return Err(fail(format!(
                    "is a {other} block, not a private key{NEEDS}"
                )))
            }
        }
    }
    if keys.is_empty() {
        return Err(IdentityError::NoKey);
    }
    Ok(keys)
}

/// The label of a `-----BEGIN <label>-----` line, if it is one with a short printable label.
fn begin_label(line: &str) -> Option<&str> {
    let label = line.strip_prefix("-----BEGIN ")?.strip_suffix("-----")?;
    let printable = label.len() <= 40 && label.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
    printable.then_some(label)
}

/// Decodes the base64 body up to the matching `-----END <label>-----` line.
fn block_body<'a>(
    lines: &mut impl Iterator<Item = &'a str>,
    label: &str,
) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    let mut body = Zeroizing::new(String::new());
    for line in lines.by_ref() {
        if let Some(end) = line.strip_prefix("-----END ") {
            if end.strip_suffix("-----") != Some(label) {
                return Err("ends with an END line of another label");
            }
            let der = STANDARD
                .decode(body.as_bytes())
                .map_err(|_| "has a body that is not valid base64")?;
            return Ok(Zeroizing::new(der));
        }
        if line.starts_with("-----BEGIN ") {
            return Err("has no END line");
        }
        if line.contains(':') {
            // RFC 1421 headers: `Proc-Type: 4,ENCRYPTED` and friends.
            return Err("is encrypted (it has PEM headers); store the key unencrypted");
        }
        body.push_str(line);
    }
    Err("has no END line")
}

fn pkcs8_key(der: &[u8]) -> Result<SecretKey, String> {
    let info = PrivateKeyInfoRef::try_from(der)
        .map_err(|_| "is not a valid PKCS#8 private key".to_owned())?;
    let algorithm = info.algorithm.oid;
    if algorithm != ID_EC_PUBLIC_KEY {
        return Err(format!("is {}{NEEDS}", describe(algorithm, "key")));
    }
    match info.algorithm.parameters_oid() {
        Ok(curve) if curve == P256 => {}
        Ok(curve) => return Err(format!("is {}{NEEDS}", describe(curve, "EC curve"))),
        Err(_) => return Err(format!("is an EC key without a named curve{NEEDS}")),
    }
    SecretKey::from_pkcs8_der(der).map_err(|_| "is not a valid P-256 private key".to_owned())
}

fn sec1_key(der: &[u8]) -> Result<SecretKey, String> {
    let key = sec1::EcPrivateKey::try_from(der)
        .map_err(|_| "is not a valid SEC1 EC private key".to_owned())?;
    if let Some(curve) = key.parameters.and_then(|p| p.named_curve()) {
        if curve != P256 {
            return Err(format!("is {}{NEEDS}", describe(curve, "EC curve")));
        }
    }
    SecretKey::from_sec1_der(der).map_err(|_| format!("is not a valid P-256 private key{NEEDS}"))
}

/// `EC PARAMETERS` before an `EC PRIVATE KEY` is harmless when it names P-256.
fn ec_parameters(der: &[u8]) -> Result<(), String> {
    match ObjectIdentifier::from_der(der) {
        Ok(curve) if curve == P256 => Ok(()),
        Ok(curve) => Err(format!(
            "(EC PARAMETERS) names {}{NEEDS}",
            describe(curve, "EC curve")
        )),
        Err(_) => Err("(EC PARAMETERS) does not name a curve".to_owned()),
    }
}

/// "an RSA key", or "a key of algorithm 1.2.3" for an OID we have no name for.
fn describe(oid: ObjectIdentifier, what: &str) -> String {
    let text = oid.to_string();
    KNOWN_OIDS
        .iter()
        .find(|(known, _)| *known == text)
        .map_or_else(
            || format!("a {what} of OID {text}"),
            |(_, name)| (*name).to_owned(),
        )
}
