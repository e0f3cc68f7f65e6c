//! `TlsStream`: a rustls server session driven over a monoio `TcpStream`, and
//! `ClientStream`, the socket of one accepted connection (plain TCP or TLS) behind the
//! monoio I/O traits the connection loop and the WebSocket use.
//!
//! Reads pull ciphertext into `raw` (16 KiB, the largest TLS record), feed it to
//! rustls and hand out plaintext; writes give plaintext to rustls and write the
//! records it produces. Every buffer lent to the kernel is an `Option` taken for the
//! operation and put back after it, so a read or write whose future is dropped (a
//! deadline) loses only that operation, never the stream's ability to be used or
//! closed: nothing here can panic. A cancelled read (`cancelable_read`) returns the
//! kernel's `ECANCELED` unchanged, and ciphertext that raced the cancel stays in
//! rustls, so no byte is lost (`ws::io` relies on both).

use std::io::{self, BufRead, Write};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent};
use monoio::net::TcpStream;
use monoio::BufResult;

use super::Acceptor;

/// Bytes asked of the kernel per ciphertext read: one whole TLS record and its header.
const RAW_READ: usize = 16 * 1024 + 256;
/// An output buffer grown past this (a large response) is not kept between writes.
const KEEP_OUT: usize = 64 * 1024;

/// One accepted TLS connection, handshake done.
pub struct TlsStream {
    tcp: TcpStream,
    session: rustls::ServerConnection,
    /// Ciphertext read from the socket; `raw[fed..]` is not yet given to rustls.
    /// `None` only while a read is in flight (or after one was dropped).
    raw: Option<Vec<u8>>,
    fed: usize,
    /// Records rustls produced, being written. `None` while a write is in flight.
    out: Option<Vec<u8>>,
    /// The socket read EOF (told to rustls).
    tcp_eof: bool,
}

/// Runs the server side of a TLS handshake on `tcp`. `prefix`: bytes already read
/// from the socket (the start of the ClientHello, after any PROXY header). The caller
/// bounds it in time. Errors: the peer closed, an I/O error, or the handshake failed
/// (`InvalidData`, carrying rustls' error: no common version, cipher suite or ALPN
/// protocol, a bad message, ...); the alert rustls produced is sent first.
pub async fn accept(acceptor: &Acceptor, tcp: TcpStream, prefix: &[u8]) -> io::Result<TlsStream> {
    let session = acceptor.session().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut raw = Vec::with_capacity(RAW_READ.max(prefix.len()));
    raw.extend_from_slice(prefix);
    let mut s = TlsStream { tcp, session, raw: Some(raw), fed: 0, out: None, tcp_eof: false };
    while s.session.is_handshaking() {
        if s.session.wants_write() {
            s.flush_tls().await?;
            continue;
        }
        if s.feed().await? {
            continue;
        }
        if s.tcp_eof {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed during the TLS handshake"));
        }
        s.read_raw(None).await?;
    }
    s.flush_tls().await?;
    Ok(s)
}

impl TlsStream {
    /// The ALPN protocol agreed in the handshake, if any (`http/1.1`).
    pub fn alpn(&self) -> Option<&[u8]> {
        self.session.alpn_protocol()
    }

    /// Gives rustls the ciphertext read but not yet fed and processes it. `Ok(false)`:
    /// nothing was pending. A record rustls refuses ends the connection: its alert is
    /// sent, then `InvalidData`.
    async fn feed(&mut self) -> io::Result<bool> {
        let Some(raw) = self.raw.as_ref() else { return Ok(false) };
        if self.fed >= raw.len() {
            return Ok(false);
        }
        let mut pending = &raw[self.fed..];
        let n = self.session.read_tls(&mut pending)?;
        self.fed += n;
        self.process().await?;
        Ok(true)
    }

    /// `process_new_packets`, sending the alert of a failure before reporting it.
    async fn process(&mut self) -> io::Result<()> {
        if let Err(e) = self.session.process_new_packets() {
            let _ = self.flush_tls().await;
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(())
    }

    /// One read of ciphertext from the socket into `raw` (all of `raw` was fed). At EOF
    /// rustls is told, so plaintext reads end (`close_notify`) or fail
    /// (`UnexpectedEof`: closed without one).
    async fn read_raw(&mut self, cancel: Option<&CancelHandle>) -> io::Result<()> {
        let mut buf = self.raw.take().unwrap_or_default();
        buf.clear();
        buf.reserve(RAW_READ);
        self.fed = 0;
        let (res, buf) = match cancel {
            Some(c) => self.tcp.cancelable_read(buf, c.clone()).await,
            None => self.tcp.read(buf).await,
        };
        self.raw = Some(buf);
        if res? == 0 {
            self.tcp_eof = true;
            self.session.read_tls(&mut &[][..])?;
            self.process().await?;
        }
        Ok(())
    }

    /// Waits until plaintext can be read. `Ok(true)`: some is buffered in rustls;
    /// `Ok(false)`: the peer closed (with or without `close_notify`).
    async fn fill(&mut self, cancel: Option<&CancelHandle>) -> io::Result<bool> {
        loop {
            match self.session.reader().fill_buf() {
                Ok(chunk) => return Ok(!chunk.is_empty()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
                Err(e) => return Err(e),
            }
            if self.feed().await? {
                continue;
            }
            if self.tcp_eof {
                return Ok(false);
            }
            // A key update or an alert rustls wants answered.
            if self.session.wants_write() {
                self.flush_tls().await?;
            }
            self.read_raw(cancel).await?;
        }
    }

    /// Reads plaintext into `buf` (at most its free space). `Ok(0)` at EOF.
    async fn read_into<T: IoBufMut>(&mut self, mut buf: T, cancel: Option<&CancelHandle>) -> BufResult<usize, T> {
        let room = buf.bytes_total();
        if room == 0 {
            return (Ok(0), buf);
        }
        match self.fill(cancel).await {
            Ok(true) => {}
            Ok(false) => return (Ok(0), buf),
            Err(e) => return (Err(e), buf),
        }
        let mut reader = self.session.reader();
        let n = match reader.fill_buf() {
            Ok(chunk) => {
                let n = chunk.len().min(room);
                copy_into(&mut buf, &chunk[..n]);
                n
            }
            Err(e) => return (Err(e), buf),
        };
        reader.consume(n);
        (Ok(n), buf)
    }

    /// Encrypts `data` (up to rustls' send buffer, 64 KiB) and writes the records.
    async fn write_plain(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self.session.wants_write() {
            self.flush_tls().await?;
        }
        let n = self.session.writer().write(data)?;
        self.flush_tls().await?;
        Ok(n)
    }

    /// Writes every record rustls has ready.
    async fn flush_tls(&mut self) -> io::Result<()> {
        while self.session.wants_write() {
            let mut out = self.out.take().unwrap_or_default();
            out.clear();
            while self.session.wants_write() {
                self.session.write_tls(&mut out)?;
            }
            let (res, mut out) = self.tcp.write_all(out).await;
            if out.capacity() <= KEEP_OUT {
                out.clear();
                self.out = Some(out);
            }
            res?;
        }
        Ok(())
    }

    /// Sends `close_notify`, then shuts the socket's write side.
    async fn shutdown(&mut self) -> io::Result<()> {
        self.session.send_close_notify();
        let sent = self.flush_tls().await;
        let shut = self.tcp.shutdown().await;
        sent.and(shut)
    }
}

/// Copies `src` into the free space of `buf` and marks it written.
fn copy_into<T: IoBufMut>(buf: &mut T, src: &[u8]) {
    debug_assert!(src.len() <= buf.bytes_total());
    let n = src.len().min(buf.bytes_total());
    // SAFETY: `IoBufMut` promises `write_ptr()` is valid for `bytes_total()` bytes of
    // writes; `n` is at most that. `src` is rustls' own buffer, so the two cannot
    // overlap. `set_init(n)` then covers exactly the `n` bytes just written.
    #[allow(unsafe_code)]
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), buf.write_ptr(), n);
        buf.set_init(n);
    }
}

/// The initialized bytes of `buf`.
fn bytes_of<T: IoBuf>(buf: &T) -> &[u8] {
    // SAFETY: `IoBuf` promises `read_ptr()` is valid for `bytes_init()` initialized
    // bytes for as long as `buf` is borrowed.
    #[allow(unsafe_code)]
    unsafe {
        std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init())
    }
}

/// The socket of an accepted connection.
pub enum ClientStream {
    /// A plain TCP connection (no `[server.tls]`, or the `[metrics] listen` door).
    Plain(TcpStream),
    /// Boxed: a rustls session is a few KiB, and most connections are plain.
    Tls(Box<TlsStream>),
}

impl ClientStream {
    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }
}

impl AsyncReadRent for ClientStream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            ClientStream::Plain(s) => s.read(buf).await,
            ClientStream::Tls(s) => s.read_into(buf, None).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        match self {
            ClientStream::Plain(s) => s.readv(buf).await,
            ClientStream::Tls(s) => {
                // The first buffer of the vector (a short read is a read).
                // SAFETY: the iovecs stay owned by `buf`, which lives until this
                // read returns; `RawBuf` only borrows the first one's pointer.
                #[allow(unsafe_code)]
                let raw = unsafe { RawBuf::new_from_iovec_mut(&mut buf) };
                let Some(raw) = raw else { return (Ok(0), buf) };
                let (res, _) = s.read_into(raw, None).await;
                if let Ok(n) = res {
                    // SAFETY: `n` bytes were written at the start of the first iovec.
                    #[allow(unsafe_code)]
                    unsafe {
                        buf.set_init(n)
                    };
                }
                (res, buf)
            }
        }
    }
}

impl CancelableAsyncReadRent for ClientStream {
    async fn cancelable_read<T: IoBufMut>(&mut self, buf: T, c: CancelHandle) -> BufResult<usize, T> {
        match self {
            ClientStream::Plain(s) => s.cancelable_read(buf, c).await,
            ClientStream::Tls(s) => s.read_into(buf, Some(&c)).await,
        }
    }

    async fn cancelable_readv<T: IoVecBufMut>(&mut self, buf: T, c: CancelHandle) -> BufResult<usize, T> {
        match self {
            ClientStream::Plain(s) => s.cancelable_readv(buf, c).await,
            // Vectored reads are not used on accepted sockets; no cancel needed.
            ClientStream::Tls(_) => self.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for ClientStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            ClientStream::Plain(s) => s.write(buf).await,
            ClientStream::Tls(s) => {
                let res = s.write_plain(bytes_of(&buf)).await;
                (res, buf)
            }
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            ClientStream::Plain(s) => s.writev(buf).await,
            ClientStream::Tls(s) => {
                // The first buffer of the vector (a short write is a write).
                // SAFETY: the iovecs stay owned by `buf` until this write returns.
                #[allow(unsafe_code)]
                let raw = unsafe { RawBuf::new_from_iovec(&buf) };
                let res = match raw {
                    Some(raw) => s.write_plain(bytes_of(&raw)).await,
                    None => Ok(0),
                };
                (res, buf)
            }
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            ClientStream::Plain(s) => s.flush().await,
            ClientStream::Tls(s) => s.flush_tls().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            ClientStream::Plain(s) => s.shutdown().await,
            ClientStream::Tls(s) => s.shutdown().await,
        }
    }
}
