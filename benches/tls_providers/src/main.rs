//! `cargo run --release` in benches/tls_providers: for each rustls crypto provider, the server's CPU
//! time per TLS 1.3 handshake (ECDSA P-256 and RSA 2048 certificates, in memory: no sockets, the
//! client's time not counted) and per 16 KiB record encrypted. Prints the ratio aws-lc-rs / ring.
//! The engine's choice and this run's figures are in docs/architecture.md.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
};

const HANDSHAKES: u32 = 2000;
const RECORDS: u32 = 20_000;
const RECORD: usize = 16 * 1024;

struct Identity {
    name: &'static str,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn identity(name: &'static str, algorithm: &'static rcgen::SignatureAlgorithm) -> Identity {
    let key = rcgen::KeyPair::generate_for(algorithm).expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    Identity {
        name,
        cert: cert.der().clone(),
        key: PrivateKeyDer::try_from(key.serialize_der()).expect("der"),
    }
}

fn configs(
    provider: &Arc<CryptoProvider>,
    id: &Identity,
) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let server = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![id.cert.clone()], id.key.clone_key())
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(id.cert.clone()).unwrap();
    let mut client = ClientConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.resumption = rustls::client::Resumption::disabled();
    (Arc::new(server), Arc::new(client))
}

/// Moves everything `from` has to send into `to`, adding the time each spent to `spent_from`, `spent_to`.
fn pass(
    from: &mut Connection,
    to: &mut Connection,
    spent_from: &mut Duration,
    spent_to: &mut Duration,
) {
    let mut wire = Vec::new();
    let start = Instant::now();
    while from.wants_write() {
        from.write_tls(&mut wire).unwrap();
    }
    *spent_from += start.elapsed();
    let start = Instant::now();
    let mut slice = &wire[..];
    while !slice.is_empty() {
        to.read_tls(&mut slice).unwrap();
        to.process_new_packets().unwrap();
    }
    *spent_to += start.elapsed();
}

fn connected(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
    server_time: &mut Duration,
) -> (Connection, Connection) {
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = Connection::Client(ClientConnection::new(Arc::clone(client), name).unwrap());
    let start = Instant::now();
    let mut s = Connection::Server(ServerConnection::new(Arc::clone(server)).unwrap());
    *server_time += start.elapsed();
    let mut client_time = Duration::ZERO;
    while c.is_handshaking() || s.is_handshaking() || c.wants_write() || s.wants_write() {
        pass(&mut c, &mut s, &mut client_time, server_time);
        pass(&mut s, &mut c, server_time, &mut client_time);
    }
    (s, c)
}

/// Server µs per handshake.
fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> f64 {
    let mut server_time = Duration::ZERO;
    for _ in 0..HANDSHAKES {
        connected(server, client, &mut server_time);
    }
    server_time.as_secs_f64() * 1e6 / f64::from(HANDSHAKES)
}

/// Server MB/s encrypting 16 KiB records (the client decrypts them, not counted).
fn bulk(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> f64 {
    let mut handshake_time = Duration::ZERO;
    let (mut s, mut c) = connected(server, client, &mut handshake_time);
    let payload = vec![7u8; RECORD];
    let mut received = vec![0u8; RECORD];
    let (mut server_time, mut client_time) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..RECORDS {
        let start = Instant::now();
        s.writer().write_all(&payload).unwrap();
        server_time += start.elapsed();
        pass(&mut s, &mut c, &mut server_time, &mut client_time);
        c.reader().read_exact(&mut received).unwrap();
    }
    (f64::from(RECORDS) * RECORD as f64) / server_time.as_secs_f64() / 1e6
}

// ring's provider is deprecated in rustls (no post-quantum key exchange); it is measured all the same.
#[allow(deprecated)]
fn main() {
    let providers = [
        ("ring", Arc::new(rustls::crypto::ring::default_provider())),
        (
            "aws-lc-rs",
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        ),
    ];
    let identities = [
        identity("ECDSA P-256", &rcgen::PKCS_ECDSA_P256_SHA256),
        identity("RSA 2048", &rcgen::PKCS_RSA_SHA256),
    ];
    for id in &identities {
        let mut results = Vec::new();
        for (name, provider) in &providers {
            let (server, client) = configs(provider, id);
            results.push((name, handshake(&server, &client), bulk(&server, &client)));
        }
        for (name, micros, megabytes) in &results {
            println!(
                "{:12} {:10}: {:7.1} µs of server CPU per handshake, {:7.0} MB/s encrypting",
                id.name, name, micros, megabytes
            );
        }
        let (ring, aws) = (&results[0], &results[1]);
        println!(
            "{:12} aws-lc-rs / ring: handshake time {:.2}x, encryption speed {:.2}x",
            id.name,
            aws.1 / ring.1,
            aws.2 / ring.2
        );
    }
}
