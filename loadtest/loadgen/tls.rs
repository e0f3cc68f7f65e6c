//! The client side of TLS for `https://` targets: rustls with its `ring` provider (never
//! aws-lc-rs, like the gateway), TLS 1.3 and 1.2, ALPN `http/1.1`, trusting only the
//! certificates of `--ca`. Connections are made with `monoio-rustls` (`http::Conn`).
//!
//! - Resumption is off unless `--tls-resume`: every handshake is then full (key
//!   exchange, certificate, signature), which is what "new handshakes per second"
//!   measures. With it, rustls' in-memory cache keeps the server's TLS 1.3 tickets
//!   (TLS 1.2: tickets or session ids) per server name, shared by all connections.
//! - `monoio-rustls` streams must never be used again after a read or write future
//!   was dropped (its buffers panic): `drive.rs` drops a connection after any failure,
//!   timeouts included, and never reuses it.
//! - `probe` makes one blocking handshake before the load: a wrong CA or name fails
//!   the run at once, and the report names what was negotiated.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use monoio_rustls::TlsConnector;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind, RootCertStore};
use serde::Serialize;

/// Everything a connection needs to start TLS: the connector and the name checked.
#[derive(Clone)]
pub struct Client {
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
    config: Arc<ClientConfig>,
    resume: bool,
}

/// What the probe handshake negotiated, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct TlsInfo {
    pub version: String,
    pub cipher_suite: String,
    pub key_exchange: String,
    pub alpn: String,
    /// Whether `--tls-resume` was given (resumption offered by the client at all).
    pub resumption: bool,
}

impl Client {
    /// Reads the CA file and builds the client settings for `server_name` (a DNS name or
    /// an IP address, as in the URL).
    pub fn new(ca_path: &str, server_name: &str, resume: bool) -> Result<Client, String> {
        let pem = std::fs::read(ca_path).map_err(|e| format!("--ca {ca_path}: {e}"))?;
        let mut roots = RootCertStore::empty();
        let mut n = 0;
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let cert = cert.map_err(|e| format!("--ca {ca_path}: bad PEM: {e}"))?;
            roots.add(cert).map_err(|e| format!("--ca {ca_path}: {e}"))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!("--ca {ca_path}: no PEM CERTIFICATE block"));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if !resume {
            config.resumption = Resumption::disabled();
        }
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|e| format!("{server_name}: not a TLS server name: {e}"))?;
        let config = Arc::new(config);
        Ok(Client { connector: TlsConnector::from(config.clone()), server_name, config, resume })
    }

    /// One blocking handshake with the server (std I/O, before the load): checks the
    /// certificate and reports what was negotiated.
    pub fn probe(&self, addr: SocketAddr) -> Result<TlsInfo, String> {
        let fail = |what: &str, e: &dyn std::fmt::Display| format!("TLS probe of {addr}: {what}: {e}");
        let mut sock =
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| fail("connect", &e))?;
        let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = sock.set_write_timeout(Some(Duration::from_secs(5)));
        let mut conn = rustls::ClientConnection::new(self.config.clone(), self.server_name.clone())
            .map_err(|e| fail("session", &e))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).map_err(|e| fail("handshake", &e))?;
        }
        let info = TlsInfo {
            version: conn.protocol_version().map_or("-".into(), |v| format!("{v:?}")),
            cipher_suite: conn.negotiated_cipher_suite().map_or("-".into(), |s| format!("{:?}", s.suite())),
            key_exchange: conn.negotiated_key_exchange_group().map_or("-".into(), |g| format!("{:?}", g.name())),
            alpn: conn.alpn_protocol().map_or("-".into(), |p| String::from_utf8_lossy(p).into_owned()),
            resumption: self.resume,
        };
        conn.send_close_notify();
        let _ = conn.complete_io(&mut sock);
        let _ = sock.flush();
        Ok(info)
    }
}

/// Whether a finished handshake was a resumption.
pub fn resumed(kind: Option<HandshakeKind>) -> bool {
    kind == Some(HandshakeKind::Resumed)
}
