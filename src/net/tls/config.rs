//! A server's TLS side: its rustls configuration, built from files, changed by server name, rebuilt on
//! reload without touching open connections.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::error::TlsError;
use super::files::{read_chain, KeyPairFiles};
use super::names::{NameResolver, ServerNames};

/// Whether clients must present a certificate signed by the configured CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Asked for; a client without one is served (and has no `peer_certificate`).
    Optional,
    Required,
}

#[derive(Debug, Clone)]
pub struct ClientCa {
    pub file: PathBuf,
    pub auth: ClientAuth,
}

/// What the TLS configuration is built from; read again by `reload`.
#[derive(Debug, Clone)]
struct Sources {
    default: KeyPairFiles,
    names: Vec<(String, KeyPairFiles)>,
    client: Option<ClientCa>,
}

#[derive(Debug)]
pub struct Tls {
    provider: Arc<CryptoProvider>,
    resolver: Arc<NameResolver>,
    config: RwLock<Arc<ServerConfig>>,
    sources: Mutex<Sources>,
    handshake_failures: AtomicU64,
}

impl Tls {
    pub fn new(default: KeyPairFiles, client: Option<ClientCa>) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let names = ServerNames::new(default.load(&provider)?);
        let resolver = Arc::new(NameResolver::new(names));
        let config = build_config(&provider, &resolver, client.as_ref())?;
        Ok(Self {
            provider,
            resolver,
            config: RwLock::new(Arc::new(config)),
            sources: Mutex::new(Sources {
                default,
                names: Vec::new(),
                client,
            }),
            handshake_failures: AtomicU64::new(0),
        })
    }

    /// Accepts handshakes with the configuration of now (a reload serves the next ones).
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config.read().expect("TLS configuration poisoned"))
    }

    /// Serves `name` (or `*.domain`) with its own certificate; replaces one given before.
    pub fn add_name(&self, name: &str, files: KeyPairFiles) -> Result<(), TlsError> {
        let mut sources = self.sources();
        let key = files.load(&self.provider)?;
        self.resolver.update(|names| names.insert(name, key));
        sources
            .names
            .retain(|(known, _)| !known.eq_ignore_ascii_case(name));
        sources.names.push((name.to_owned(), files));
        Ok(())
    }

    /// Returns whether `name` had a certificate of its own.
    pub fn remove_name(&self, name: &str) -> bool {
        let mut sources = self.sources();
        sources
            .names
            .retain(|(known, _)| !known.eq_ignore_ascii_case(name));
        self.resolver.update(|names| names.remove(name))
    }

    /// Reads every file again. New handshakes use what was read; open connections keep their session.
    /// If any file fails, nothing changes and the error names it.
    pub fn reload(&self) -> Result<(), TlsError> {
        let sources = self.sources();
        let mut names = ServerNames::new(sources.default.load(&self.provider)?);
        for (name, files) in &sources.names {
            names.insert(name, files.load(&self.provider)?);
        }
        let config = build_config(&self.provider, &self.resolver, sources.client.as_ref())?;
        self.resolver.update(|current| *current = names);
        *self.config.write().expect("TLS configuration poisoned") = Arc::new(config);
        Ok(())
    }

    pub fn count_handshake_failure(&self) {
        self.handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn handshake_failures(&self) -> u64 {
        self.handshake_failures.load(Ordering::Relaxed)
    }

    fn sources(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.sources.lock().expect("TLS sources poisoned")
    }
}

fn build_config(
    provider: &Arc<CryptoProvider>,
    resolver: &Arc<NameResolver>,
    client: Option<&ClientCa>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()
        .expect("the aws-lc-rs provider supports TLS 1.2 and 1.3");
    let builder = match client {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_chain(&ca.file)? {
                roots.add(cert).map_err(|error| {
                    TlsError::invalid(&ca.file, format!("not a usable CA certificate: {error}"))
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
            let verifier = match ca.auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                ClientAuth::Required => verifier,
            };
            let verifier = verifier.build().map_err(|error| {
                TlsError::invalid(&ca.file, format!("cannot verify clients with it: {error}"))
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::clone(resolver) as _);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
