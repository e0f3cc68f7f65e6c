//! TLS termination on the listener (`[server.tls]`), with rustls and its `ring`
//! provider (never aws-lc-rs: STACK.md).
//!
//! ```text
//! accept -> [PROXY header] -> first byte 0x16 (a TLS handshake record)?
//!   no:  400 in plain HTTP, close (plain HTTP sent to the HTTPS port)
//!   yes: tls::accept (deadline server.header_timeout_ms) -> ClientStream::Tls
//!        -> the same HTTP/1.1 connection loop, SSE and WebSocket as plain TCP
//! ```
//! - Versions TLS 1.3 and TLS 1.2 (RFC 8446, RFC 5246), ALPN `http/1.1` only
//!   (RFC 7301): a client that offers only `h2` is refused in the handshake.
//! - Resumption: stateless tickets (rustls' ring `Ticketer`, keys rotated every 6 h)
//!   plus rustls' in-memory session cache for TLS 1.2 clients without tickets.
//! - Reload: an `Acceptor` is built from the PEM files into every config `Snapshot`,
//!   at start-up and on each SIGHUP. A new connection takes the snapshot's acceptor;
//!   connections already open keep theirs, so a rotation drops nothing. A reload whose
//!   files cannot be read or do not match is refused as a whole and the running
//!   certificate stays.
//! - `TlsStream` drives a `rustls::ServerConnection` over a `TcpStream` itself instead
//!   of through `monoio-rustls`: that crate's buffers panic when a read future is
//!   dropped (a timeout) and then used again, and it loses the OS error of a cancelled
//!   read, both of which the connection loop and the WebSocket's cancel-safe reads rely
//!   on (`server::conn`, `ws::io`).

mod stream;

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

pub use stream::{accept, ClientStream, TlsStream};

/// The first byte of a TLS record carrying a handshake message (RFC 8446 section 5.1,
/// `ContentType.handshake`): every TLS client's first byte. Anything else on a TLS
/// listener is someone speaking plain HTTP (or garbage).
pub const HANDSHAKE_RECORD: u8 = 0x16;

/// The listener's TLS settings: the certificate chain and key of one `Snapshot`.
/// Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Acceptor {
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor").field("alpn", &self.config.alpn_protocols).finish()
    }
}

impl Acceptor {
    /// Reads `cfg.cert` (PEM chain, leaf first) and `cfg.key` (PEM PKCS#8, PKCS#1 or
    /// SEC1) and builds the server settings. Errors name the file and what is wrong
    /// with it: unreadable, no certificate, no key, a key that does not belong to the
    /// leaf certificate.
    pub fn load(cfg: &TlsConfig) -> Result<Acceptor, String> {
        let certs = read_certs(&cfg.cert)?;
        let key = read_key(&cfg.key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                format!(
                    "server.tls: certificate {} and key {} cannot be used together: {e}",
                    cfg.cert.display(),
                    cfg.key.display()
                )
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| format!("TLS session tickets unavailable: {e}"))?;
        Ok(Acceptor { config: Arc::new(config) })
    }

    /// A fresh server-side session for one connection.
    fn session(&self) -> Result<rustls::ServerConnection, rustls::Error> {
        rustls::ServerConnection::new(self.config.clone())
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("server.tls.cert: cannot read {}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("server.tls.cert: bad PEM in {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("server.tls.cert: {} holds no PEM CERTIFICATE block", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("server.tls.key: cannot read {}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| format!("server.tls.key: bad PEM in {}: {e}", path.display()))?
        .ok_or_else(|| {
            format!("server.tls.key: {} holds no private key (PEM PRIVATE KEY, RSA or EC PRIVATE KEY)", path.display())
        })
}

#[cfg(test)]
mod tests;
