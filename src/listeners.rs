//! TLS for the public listener: certificates chosen by SNI (swappable on reload), ALPN
//! h2/http1.1, and downstream mTLS whose verified client certificate is handed to the
//! request path.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use base64::Engine;
use pingora_core::{
    listeners::{tls::TlsSettings, TlsAccept},
    protocols::tls::TlsRef,
    tls::{
        ext,
        pkey::{PKey, Private},
        ssl::{NameType, SslVerifyMode},
        x509::X509,
    },
};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use crate::{
    config::{CertificatePair, DownstreamMtls, MtlsEnforcement},
    policy::ClientCertificate,
    snapshot::Shared,
};

/// Loaded server certificates, indexed by the DNS names they cover.
pub struct CertificateStore {
    entries: Vec<CertEntry>,
    exact: HashMap<String, usize>,
    /// `.example.com` for `*.example.com` SANs.
    wildcard: HashMap<String, usize>,
}

struct CertEntry {
    chain: Vec<X509>,
    key: PKey<Private>,
}

/// What the TLS handshake learned, attached to the connection's TLS digest for the
/// request path.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// The SNI the client sent.
    pub server_name: Option<String>,
    /// The client certificate, when one was presented.
    pub client_certificate: Option<ClientCertificate>,
}

/// The TLS callbacks of the public listener.
struct Callbacks {
    shared: Arc<Shared>,
    revoked: Arc<Vec<Vec<u8>>>,
}

// === impl CertificateStore ===

impl CertificateStore {
    /// Parses every pair; the first certificate is the default for unknown or absent SNI.
    pub fn new(pairs: &[CertificatePair]) -> Result<CertificateStore, String> {
        let mut store = CertificateStore {
            entries: Vec::with_capacity(pairs.len()),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        };
        for pair in pairs {
            let chain = X509::stack_from_pem(&pair.cert_pem)
                .map_err(|e| format!("{}: certificate: {e}", pair.origin))?;
            let key = PKey::private_key_from_pem(&pair.key_pem)
                .map_err(|e| format!("{}: private key: {e}", pair.origin))?;
            let leaf = chain
                .first()
                .ok_or_else(|| format!("{}: no certificate in PEM", pair.origin))?;
            let der = leaf
                .to_der()
                .map_err(|e| format!("{}: certificate: {e}", pair.origin))?;
            let index = store.entries.len();
            for name in dns_names(&der) {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix('*') {
                    Some(suffix) => store.wildcard.entry(suffix.to_owned()).or_insert(index),
                    None => store.exact.entry(name).or_insert(index),
                };
            }
            store.entries.push(CertEntry { chain, key });
        }
        Ok(store)
    }

    fn pick(&self, server_name: Option<&str>) -> Option<&CertEntry> {
        let index = server_name
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
            .and_then(|name| {
                self.exact.get(&name).copied().or_else(|| {
                    name.find('.')
                        .and_then(|dot| self.wildcard.get(&name[dot..]).copied())
                })
            })
            .unwrap_or(0);
        self.entries.get(index)
    }
}

/// The listener's TLS settings: SNI certificate selection from the current snapshot (so a
/// reload can replace certificates), ALPN h2 + http/1.1, and client-certificate
/// verification per `mtls` (fixed for the process lifetime).
pub fn tls_settings(
    shared: Arc<Shared>,
    mtls: Option<&DownstreamMtls>,
) -> Result<TlsSettings, String> {
    let revoked = match mtls.and_then(|m| m.crl_pem.as_deref()) {
        Some(pem) => revoked_serials(pem)?,
        None => Vec::new(),
    };
    let callbacks = Callbacks {
        shared,
        revoked: Arc::new(revoked),
    };
    let mut settings = TlsSettings::with_callbacks(Box::new(callbacks))
        .map_err(|e| format!("TLS settings: {e}"))?;
    settings.enable_h2();
    if let Some(mtls) = mtls {
        let cas =
            X509::stack_from_pem(&mtls.ca_pem).map_err(|e| format!("downstream_mtls.ca: {e}"))?;
        for ca in &cas {
            settings
                .cert_store_mut()
                .add_cert(ca.clone())
                .map_err(|e| format!("downstream_mtls.ca: {e}"))?;
            settings
                .add_client_ca(ca)
                .map_err(|e| format!("downstream_mtls.ca: {e}"))?;
        }
        match mtls.enforcement {
            MtlsEnforcement::RejectConnection => {
                settings.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT)
            }
            // Request a certificate but let the handshake finish without a valid one: the
            // request path decides (and records the verification result for policies).
            MtlsEnforcement::Policy | MtlsEnforcement::PolicyWithDefaultDeny => {
                settings.set_verify_callback(SslVerifyMode::PEER, |_, _| true)
            }
        }
    }
    Ok(settings)
}

#[async_trait]
impl TlsAccept for Callbacks {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let snapshot = self.shared.load();
        let Some(entry) = snapshot
            .certificates
            .pick(ssl.servername(NameType::HOST_NAME))
        else {
            return;
        };
        let Some(leaf) = entry.chain.first() else {
            return;
        };
        // Errors leave the handshake without a certificate, which fails it: nothing else to do.
        let _ = ext::ssl_use_certificate(ssl, leaf);
        let _ = ext::ssl_use_private_key(ssl, &entry.key);
        for cert in entry.chain.iter().skip(1) {
            let _ = ext::ssl_add_chain_cert(ssl, cert);
        }
    }

    async fn handshake_complete_callback(
        &self,
        ssl: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let server_name = ssl.servername(NameType::HOST_NAME).map(str::to_owned);
        let client_certificate = ssl.peer_certificate().and_then(|cert| {
            let der = cert.to_der().ok()?;
            let mut info = describe(&der);
            let chain_ok = ssl.verify_result().is_ok();
            let serial = cert.serial_number().to_bn().ok().map(|bn| bn.to_vec());
            let revoked = serial.is_some_and(|s| self.revoked.contains(&s));
            info.valid = chain_ok && !revoked;
            Some(info)
        });
        Some(Arc::new(TlsInfo {
            server_name,
            client_certificate,
        }))
    }
}

/// Fingerprint, SPKI hash and SANs of a DER certificate; `valid` is left false for the
/// caller to decide.
pub fn describe(der: &[u8]) -> ClientCertificate {
    let mut info = ClientCertificate {
        valid: false,
        fingerprint: hex::encode(Sha256::digest(der)),
        ..ClientCertificate::default()
    };
    if let Ok((_, cert)) = X509Certificate::from_der(der) {
        info.spki_hash = base64::engine::general_purpose::STANDARD
            .encode(Sha256::digest(cert.tbs_certificate.subject_pki.raw));
        for ext in cert.extensions() {
            if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(n) => info.san_dns.push((*n).to_owned()),
                        GeneralName::RFC822Name(n) => info.san_email.push((*n).to_owned()),
                        GeneralName::URI(n) => info.san_uri.push((*n).to_owned()),
                        _ => {}
                    }
                }
            }
        }
    }
    info
}

fn dns_names(der: &[u8]) -> Vec<String> {
    let mut names = describe(der).san_dns;
    if names.is_empty() {
        if let Ok((_, cert)) = X509Certificate::from_der(der) {
            for cn in cert.subject().iter_common_name() {
                if let Ok(cn) = cn.as_str() {
                    names.push(cn.to_owned());
                }
            }
        }
    }
    names
}

/// Serial numbers (big-endian bytes, no leading zeros) listed in a PEM or DER CRL.
fn revoked_serials(crl: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let der = match x509_parser::pem::parse_x509_pem(crl) {
        Ok((_, pem)) => pem.contents,
        Err(_) => crl.to_vec(),
    };
    let (_, list) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der)
        .map_err(|e| format!("downstream_mtls.crl: {e}"))?;
    Ok(list
        .iter_revoked_certificates()
        .map(|r| {
            let bytes = r.user_certificate.to_bytes_be();
            let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
            bytes[start..].to_vec()
        })
        .collect())
}
