//! An upstream connection: plain TCP or TLS over TCP, behind one enum so the rest of
//! the client is written once. `connect` resolves, connects (trying each address in
//! turn) with `TCP_NODELAY` (without it the first TLS response took 42-90 ms, see
//! STACK.md), then does the TLS handshake, all inside the connect deadline.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::buf::{IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;

use crate::upstream::tls::Connector;
use crate::upstream::{dns, Endpoint, UpstreamError};

/// The byte stream under one upstream connection.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<monoio_rustls::ClientTlsStream<TcpStream>>),
}

impl Io {
    pub async fn read(&mut self, buf: SliceMut<BytesMut>) -> BufResult<usize, SliceMut<BytesMut>> {
        match self {
            Io::Plain(s) => s.read(buf).await,
            Io::Tls(s) => s.read(buf).await,
        }
    }

    pub async fn write_all(&mut self, buf: Bytes) -> BufResult<usize, Bytes> {
        match self {
            Io::Plain(s) => s.write_all(buf).await,
            Io::Tls(s) => s.write_all(buf).await,
        }
    }
}

/// A connection with its read buffer and bookkeeping.
pub struct UpConn {
    pub io: Io,
    pub rbuf: BytesMut,
    /// When it last went idle, `clock::coarse_ms()`.
    pub idle_since: u64,
    pub uses: u32,
}

impl UpConn {
    pub fn new(io: Io) -> Self {
        UpConn { io, rbuf: BytesMut::with_capacity(16 * 1024), idle_since: crate::clock::coarse_ms(), uses: 0 }
    }

    /// One read into the spare capacity of the buffer; `Ok(0)` is end of stream.
    pub async fn read_more(&mut self) -> std::io::Result<usize> {
        if self.rbuf.capacity() - self.rbuf.len() < 2048 {
            self.rbuf.reserve(16 * 1024);
        }
        let (len, cap) = (self.rbuf.len(), self.rbuf.capacity());
        let slice = std::mem::take(&mut self.rbuf).slice_mut(len..cap);
        let (res, slice) = self.io.read(slice).await;
        self.rbuf = slice.into_inner();
        res
    }
}

/// Opens a new connection to `ep` within `timeout`.
pub async fn connect(ep: &Endpoint, dns: &dns::Cache, timeout: Duration) -> Result<UpConn, UpstreamError> {
    match monoio::time::timeout(timeout, connect_inner(ep, dns)).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::Timeout("connection")),
    }
}

async fn connect_inner(ep: &Endpoint, dns: &dns::Cache) -> Result<UpConn, UpstreamError> {
    let addrs = dns.resolve(&ep.host, ep.port).await.map_err(UpstreamError::Connect)?;
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect_addr(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let io = match &ep.tls {
                    None => Io::Plain(stream),
                    Some(tls) => Io::Tls(Box::new(handshake(tls, &ep.host, stream).await?)),
                };
                return Ok(UpConn::new(io));
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(UpstreamError::Connect(last))
}

async fn handshake(
    tls: &Connector,
    host: &str,
    stream: TcpStream,
) -> Result<monoio_rustls::ClientTlsStream<TcpStream>, UpstreamError> {
    let name = Connector::server_name(host).map_err(UpstreamError::Connect)?;
    tls.inner
        .connect(name, stream)
        .await
        .map_err(|e| UpstreamError::Connect(format!("TLS handshake with {host} failed: {}", tls_error(e))))
}

fn tls_error(e: monoio_rustls::TlsError) -> String {
    match e {
        monoio_rustls::TlsError::Io(e) => e.to_string(),
        monoio_rustls::TlsError::Rustls(e) => e.to_string(),
    }
}
