// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller};
use monoio::net::{TcpListener, TcpStream};
use rustls::pki_types::ServerName;

use super::{accept, Acceptor, ClientStream};
use crate::config::TlsConfig;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/tls/testdata").join(name)
}

fn config(cert: &str, key: &str) -> TlsConfig {
    TlsConfig { cert: data(cert), key: data(key) }
}

#[test]
fn a_chain_and_its_key_load_and_unusable_files_are_named() {
    let ok = Acceptor::load(&config("cert.pem", "key.pem")).unwrap();
    assert_eq!(ok.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    let cases = [
        (config("missing.pem", "key.pem"), "server.tls.cert: cannot read"),
        (config("key.pem", "key.pem"), "holds no PEM CERTIFICATE block"),
        (config("cert.pem", "cert.pem"), "holds no private key"),
        (config("cert.pem", "other_key.pem"), "cannot be used together"),
    ];
    for (cfg, needle) in cases {
        let e = Acceptor::load(&cfg).unwrap_err();
        assert!(e.contains(needle), "{e}");
    }
    let e = Acceptor::load(&config("missing.pem", "key.pem")).unwrap_err();
    assert!(e.contains(&data("missing.pem").display().to_string()), "{e}");
}

/// The test certificate's acceptor and a listener on a free loopback port.
fn listen() -> (Acceptor, TcpListener, std::net::SocketAddr) {
    let acceptor = Acceptor::load(&config("cert.pem", "key.pem")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (acceptor, listener, addr)
}

/// Runs a test on both io drivers (io_uring where the kernel allows it).
fn on_both_drivers<F: std::future::Future<Output = ()>>(test: impl Fn() -> F) {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().unwrap().block_on(test());
    if let Ok(mut uring) = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().enable_timer().build() {
        uring.block_on(test());
    }
}

async fn client(addr: std::net::SocketAddr) -> monoio_rustls::ClientTlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(data("ca.pem")).unwrap();
    for c in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    monoio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.unwrap()
}

async fn read_some<S: AsyncReadRent>(s: &mut S) -> Vec<u8> {
    let (res, buf) = s.read(Vec::with_capacity(4096)).await;
    res.unwrap();
    buf
}

/// The server side over a real socket: the handshake with bytes already read (the
/// connection loop sniffs the first byte), ALPN, reads and writes both ways, a read
/// cancelled and then resumed without losing a byte, a read dropped by a deadline
/// after which the stream still writes and closes (no panic), and a clean close.
#[test]
fn the_server_side_handshakes_reads_cancels_and_closes() {
    on_both_drivers(|| async {
        let (acceptor, listener, addr) = listen();
        let server = monoio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            // The first bytes of the ClientHello, read before the handshake.
            let (res, first) = tcp.read(Vec::with_capacity(5)).await;
            assert!(res.unwrap() > 0 && first[0] == super::HANDSHAKE_RECORD);
            let tls = accept(&acceptor, tcp, &first).await.unwrap();
            assert_eq!(tls.alpn(), Some(&b"http/1.1"[..]));
            let mut s = ClientStream::Tls(Box::new(tls));
            assert!(s.is_tls());
            assert_eq!(read_some(&mut s).await, b"hello");

            // A read cancelled while nothing came: ECANCELED, as on a bare socket.
            {
                let canceller = Canceller::new();
                let read = s.cancelable_read(Vec::with_capacity(64), canceller.handle());
                let mut read = std::pin::pin!(read);
                assert!(monoio::time::timeout(Duration::from_millis(50), read.as_mut()).await.is_err());
                let _ = canceller.cancel();
                let (res, _) = read.await;
                assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::ECANCELED));
            }
            s.write_all(b"ready".to_vec()).await.0.unwrap();
            // ... and the stream reads on, whole.
            let mut got = Vec::new();
            while got.len() < 20_000 {
                got.extend(read_some(&mut s).await);
            }
            assert!(got.iter().all(|b| *b == b'x') && got.len() == 20_000);

            // A read dropped by a deadline loses only itself.
            let dropped = monoio::time::timeout(Duration::from_millis(30), s.read(Vec::with_capacity(64))).await;
            assert!(dropped.is_err());
            s.write_all(b"bye".to_vec()).await.0.unwrap();
            assert_eq!(read_some(&mut s).await, b"");
            s.shutdown().await.unwrap();
        });
        let mut c = client(addr).await;
        c.write_all(b"hello".to_vec()).await.0.unwrap();
        assert_eq!(read_some(&mut c).await, b"ready");
        c.write_all(vec![b'x'; 20_000]).await.0.unwrap();
        assert_eq!(read_some(&mut c).await, b"bye");
        c.shutdown().await.unwrap();
        server.await;
    });
}

/// A peer that is not speaking TLS fails the handshake with an error, never a panic.
#[test]
fn a_handshake_with_garbage_fails_cleanly() {
    on_both_drivers(|| async {
        let (acceptor, listener, addr) = listen();
        let server = monoio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            accept(&acceptor, tcp, b"\x16\x03\x01\x00\x05hello").await.err().map(|e| e.kind())
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        let (res, _) = c.read(Vec::with_capacity(64)).await;
        let _ = res;
        assert_eq!(server.await, Some(std::io::ErrorKind::InvalidData));
    });
}
