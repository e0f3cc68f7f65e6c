//! TLS for upstream connections: rustls with the ring provider (never aws-lc-rs, see
//! STACK.md), the bundled web PKI roots plus an optional per-provider CA file. One
//! `Connector` per provider, built at start-up and shared (`Arc<ClientConfig>`).

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// A provider's TLS client settings.
#[derive(Clone)]
pub struct Connector {
    pub inner: monoio_rustls::TlsConnector,
}

impl Connector {
    /// Web PKI roots plus the PEM certificates in `ca_file`, if given.
    pub fn new(ca_file: Option<&std::path::Path>) -> Result<Connector, String> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
            let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &pem[..])
                .collect::<Result<_, _>>()
                .map_err(|e| format!("bad PEM in ca_file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("ca_file {} holds no certificate", path.display()));
            }
            for c in certs {
                roots.add(c).map_err(|e| format!("bad certificate in ca_file {}: {e}", path.display()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Connector { inner: monoio_rustls::TlsConnector::from(Arc::new(config)) })
    }

    /// The name checked against the server's certificate.
    pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
        ServerName::try_from(host.to_string()).map_err(|e| format!("bad TLS server name {host}: {e}"))
    }
}
