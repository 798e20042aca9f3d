//! Certificate chains and private keys read from PEM files, with errors that name the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pkcs8::der::Document;
use pkcs8::EncryptedPrivateKeyInfo;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use super::error::TlsError;

const ENCRYPTED_PKCS8: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
/// OpenSSL's legacy encryption of PKCS#1 and SEC1 keys (headers inside the PEM block).
const LEGACY_ENCRYPTED: &str = "Proc-Type: 4,ENCRYPTED";

/// Where one certificate and its key are, as given by the app (read again on reload).
#[derive(Debug, Clone)]
pub struct KeyPairFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub password: Option<String>,
}

impl KeyPairFiles {
    /// Reads and checks both files: the chain, the key, and that the key belongs to the certificate.
    pub fn load(&self, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
        let chain = read_chain(&self.cert)?;
        let key = read_private_key(&self.key, self.password.as_deref())?;
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|error| {
                TlsError::invalid(&self.key, format!("unusable private key: {error}"))
            })?;
        let certified = CertifiedKey::new(chain, signing);
        certified.keys_match().map_err(|_| {
            TlsError::invalid(
                &self.key,
                format!(
                    "this private key does not belong to the certificate in {}",
                    self.cert.display()
                ),
            )
        })?;
        Ok(Arc::new(certified))
    }
}

/// Every certificate in a PEM file, the server's first (its chain after it).
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::invalid(path, format!("malformed PEM: {error}")))?;
    if chain.is_empty() {
        return Err(TlsError::invalid(
            path,
            "no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(chain)
}

/// The private key of a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), or PKCS#8 encrypted with `password`.
fn read_private_key(
    path: &Path,
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    let text = String::from_utf8_lossy(&pem);
    if text.contains(ENCRYPTED_PKCS8) {
        return decrypt_pkcs8(path, &text, password);
    }
    if text.contains(LEGACY_ENCRYPTED) {
        return Err(TlsError::invalid(
            path,
            "the key is encrypted the legacy OpenSSL way, which is not supported: convert it to \
             encrypted PKCS#8 with `openssl pkcs8 -topk8 -in KEY -out NEW`",
        ));
    }
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::invalid(
            path,
            "no private key in it (expected PEM: PKCS#8, PKCS#1 RSA or SEC1 EC)",
        ),
        other => TlsError::invalid(path, format!("malformed PEM: {other}")),
    })
}

fn decrypt_pkcs8(
    path: &Path,
    text: &str,
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let Some(password) = password else {
        return Err(TlsError::invalid(
            path,
            "the key is encrypted: give its password as key_password",
        ));
    };
    let start = text.find(ENCRYPTED_PKCS8).unwrap_or(0);
    let (_label, document) = Document::from_pem(&text[start..])
        .map_err(|error| TlsError::invalid(path, format!("malformed encrypted key: {error}")))?;
    let encrypted = EncryptedPrivateKeyInfo::try_from(document.as_bytes())
        .map_err(|error| TlsError::invalid(path, format!("malformed encrypted key: {error}")))?;
    let decrypted = encrypted.decrypt(password).map_err(|_| {
        TlsError::invalid(
            path,
            "cannot decrypt the key: wrong key_password, or an unsupported cipher",
        )
    })?;
    Ok(PrivatePkcs8KeyDer::from(decrypted.as_bytes().to_vec()).into())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::unreadable(path, error))
}
