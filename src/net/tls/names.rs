//! Server Name Indication: which certificate a handshake gets, by the name the client asked for.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificates by server name, and the default one for clients that name none (or an unknown one).
#[derive(Debug, Default, Clone)]
pub struct ServerNames {
    default: Option<Arc<CertifiedKey>>,
    /// Lower-case names; a wildcard `*.example.com` is kept as written.
    names: HashMap<String, Arc<CertifiedKey>>,
}

impl ServerNames {
    pub fn new(default: Arc<CertifiedKey>) -> Self {
        Self {
            default: Some(default),
            names: HashMap::new(),
        }
    }

    pub fn insert(&mut self, name: &str, key: Arc<CertifiedKey>) {
        self.names.insert(name.to_ascii_lowercase(), key);
    }

    pub fn remove(&mut self, name: &str) -> bool {
        self.names.remove(&name.to_ascii_lowercase()).is_some()
    }

    /// The exact name first, then a wildcard for its first label only (`*.example.com` serves
    /// `a.example.com`, not `example.com` nor `a.b.example.com`), then the default.
    pub fn lookup(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let found = server_name.and_then(|name| {
            let name = name.to_ascii_lowercase();
            self.names.get(&name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.names.get(&format!("*.{parent}"))
            })
        });
        found.or(self.default.as_ref()).cloned()
    }
}

/// The resolver a `rustls::ServerConfig` asks; the names change in place (add, remove, reload).
#[derive(Debug, Default)]
pub struct NameResolver {
    names: RwLock<ServerNames>,
}

impl NameResolver {
    pub fn new(names: ServerNames) -> Self {
        Self {
            names: RwLock::new(names),
        }
    }

    pub fn update<T>(&self, change: impl FnOnce(&mut ServerNames) -> T) -> T {
        change(&mut self.names.write().expect("server names poisoned"))
    }
}

impl ResolvesServerCert for NameResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.names
            .read()
            .expect("server names poisoned")
            .lookup(hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::sign::SigningKey;

    fn key(marker: &str) -> Arc<CertifiedKey> {
        #[derive(Debug)]
        struct NoSigning;
        impl SigningKey for NoSigning {
            fn choose_scheme(
                &self,
                _: &[rustls::SignatureScheme],
            ) -> Option<Box<dyn rustls::sign::Signer>> {
                None
            }
            fn algorithm(&self) -> rustls::SignatureAlgorithm {
                rustls::SignatureAlgorithm::ED25519
            }
        }
        let cert = rustls::pki_types::CertificateDer::from(marker.as_bytes().to_vec());
        Arc::new(CertifiedKey::new(vec![cert], Arc::new(NoSigning)))
    }

    fn served(names: &ServerNames, asked: Option<&str>) -> String {
        let key = names.lookup(asked).expect("a certificate");
        String::from_utf8(key.cert[0].to_vec()).unwrap()
    }

    #[test]
    fn exact_names_then_one_label_wildcards_then_the_default() {
        let mut names = ServerNames::new(key("default"));
        names.insert("Example.com", key("exact"));
        names.insert("*.example.com", key("wildcard"));
        assert_eq!(served(&names, Some("example.com")), "exact");
        assert_eq!(served(&names, Some("EXAMPLE.COM")), "exact");
        assert_eq!(served(&names, Some("a.example.com")), "wildcard");
        assert_eq!(served(&names, Some("a.b.example.com")), "default");
        assert_eq!(served(&names, Some("other.org")), "default");
        assert_eq!(served(&names, None), "default");
        assert!(names.remove("*.EXAMPLE.com"));
        assert_eq!(served(&names, Some("a.example.com")), "default");
        assert!(!names.remove("*.example.com"));
    }
}
