//! HTTPS for the mock (`--tls-cert`, `--tls-key`): a rustls `ServerConfig` on the
//! ring provider (passed explicitly, so no process-wide default provider is needed),
//! TLS 1.2 and 1.3, ALPN `http/1.1`, loaded once at start-up from PEM files. Workers
//! share the config through `monoio_rustls::TlsAcceptor` (an `Arc` inside); the
//! handshake runs on the worker that accepted the socket.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use monoio_rustls::TlsAcceptor;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Builds the acceptor from a PEM certificate chain and a PEM private key.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate/key rejected: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn open(path: &Path) -> Result<BufReader<std::fs::File>, String> {
    std::fs::File::open(path).map(BufReader::new).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: bad PEM certificate: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|e| format!("{}: bad PEM private key: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no private key found", path.display()))
}
