//! The TLS client for `wss://` urls: rustls (aws-lc-rs provider) through tokio-rustls, TLS 1.3 only, trusting
//! only the CA given with `--ca`. Every connection makes a full handshake (no session resumption), with X25519 as
//! the only key exchange group, so every server does the same work per handshake.
//!
//! The server's chain is validated in full (webpki, against the CA) the first time it is seen; a later handshake
//! that presents the byte-identical chain for the same name skips that path validation, as a browser's
//! verification cache does, so the generator spends less per handshake than the servers it measures. The
//! handshake's own signature (CertificateVerify, the proof that the server holds the key) is checked every time.

use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// What every `wss://` connection of a run uses: one client configuration and the name sent as SNI (and checked
/// against the server's certificate).
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsClient({:?})", self.name)
    }
}

/// The first handshake's protocol, cipher suite and key exchange group, for the report.
static NEGOTIATED: OnceLock<String> = OnceLock::new();

pub fn negotiated() -> Option<&'static str> {
    NEGOTIATED.get().map(String::as_str)
}

impl TlsClient {
    /// A client that trusts the certificates in the PEM file `ca_file` and expects the server to be `name`.
    pub fn new(ca_file: &str, name: &str) -> Result<TlsClient, String> {
        let config = client_config(trusted_roots(ca_file)?)?;
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| format!("--tls-name {name:?}: {e}"))?;
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    /// The TLS handshake on a connected socket.
    pub async fn handshake(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, String> {
        let stream = self
            .connector
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        if NEGOTIATED.get().is_none() {
            let _ = NEGOTIATED.set(describe(stream.get_ref().1));
        }
        Ok(stream)
    }
}

fn trusted_roots(ca_file: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(ca_file).map_err(|e| format!("--ca {ca_file:?}: {e}"))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("--ca {ca_file:?}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("--ca {ca_file:?}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("--ca {ca_file:?}: no certificate in it"));
    }
    Ok(roots)
}

fn client_config(roots: RootCertStore) -> Result<ClientConfig, String> {
    let provider = Arc::new(CryptoProvider {
        kx_groups: vec![aws_lc_rs::kx_group::X25519],
        ..aws_lc_rs::default_provider()
    });
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("TLS verifier: {e}"))?;
    let verifier = Arc::new(CachingVerifier {
        webpki,
        verified: Mutex::default(),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn describe(c: &rustls::ClientConnection) -> String {
    let version = c
        .protocol_version()
        .map_or("?".into(), |v| format!("{v:?}"));
    let suite = c
        .negotiated_cipher_suite()
        .map_or("?".into(), |s| format!("{:?}", s.suite()));
    let group = c
        .negotiated_key_exchange_group()
        .map_or("?".into(), |g| format!("{:?}", g.name()));
    format!("{version} {suite} {group}")
}

/// webpki's verifier, remembering the chains it accepted (see the module's comment).
#[derive(Debug)]
struct CachingVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// (server name, chain DER) pairs validated in full.
    verified: Mutex<Vec<(String, Vec<Vec<u8>>)>>,
}

fn chain_key(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
) -> (String, Vec<Vec<u8>>) {
    let chain = std::iter::once(end_entity)
        .chain(intermediates)
        .map(|c| c.as_ref().to_vec())
        .collect();
    (server_name.to_str().into_owned(), chain)
}

impl ServerCertVerifier for CachingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = chain_key(end_entity, intermediates, server_name);
        let mut verified = self.verified.lock().expect("verifier cache");
        if verified.contains(&key) {
            return Ok(ServerCertVerified::assertion());
        }
        let ok = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        verified.push(key);
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
