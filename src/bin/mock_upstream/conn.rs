//! The mock's connection loop, generic over plain TCP and TLS streams.
//!
//! ```text
//! read -> probe_head (clawgate::http::request) -> Request::from_head
//!   -> body (Content-Length split off | ChunkedDecoder) -> route::exchange
//!   -> responses appended to `wbuf`; flushed when no further request is buffered
//!      (pipelined answers leave in one write), streams write as they go
//! ```
//! It reuses the gateway's own head parser and chunked decoder, so the mock and the
//! gateway agree on HTTP/1.1 framing. An exchange ends in `Next`: keep the connection,
//! close it, or reset it (`SO_LINGER` 0 then close, so the peer sees an RST: the
//! "connection reset" faults). Buffers are one `BytesMut` in, one out, reused.

use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clawgate::http::body::{ChunkedDecoder, Progress};
use clawgate::http::request::{probe_head, BodyKind, Parsed};
use clawgate::http::Request;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use crate::route;
use crate::stats::Stats;

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 16 * 1024;
/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Most header fields accepted.
const MAX_HEADERS: usize = 128;
/// Largest request body accepted.
pub const MAX_BODY: usize = 32 * 1024 * 1024;
/// Pipelined answers are flushed once this much output waits.
const FLUSH_AT: usize = 64 * 1024;
/// An idle keep-alive connection is closed after this long.
const IDLE: Duration = Duration::from_secs(300);
/// A write that makes no progress for this long counts as a client gone away.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What happens to the connection after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    KeepAlive,
    Close,
    Reset,
}

/// One client connection.
pub struct Conn<S> {
    io: S,
    /// The TCP socket under `io` (for `SO_LINGER`); valid while `io` lives.
    fd: RawFd,
    rbuf: BytesMut,
    /// Output waiting to be flushed.
    pub wbuf: BytesMut,
    pub stats: Arc<Stats>,
}

/// Serves one connection until it closes.
pub async fn serve<S: AsyncReadRent + AsyncWriteRent>(io: S, fd: RawFd, stats: Arc<Stats>) {
    let mut conn =
        Conn { io, fd, rbuf: BytesMut::with_capacity(READ_CHUNK), wbuf: BytesMut::with_capacity(4096), stats };
    match conn.run().await {
        Next::Reset => conn.reset(),
        Next::KeepAlive | Next::Close => {
            let _ = conn.io.shutdown().await;
        }
    }
}

impl<S: AsyncReadRent + AsyncWriteRent> Conn<S> {
    async fn run(&mut self) -> Next {
        loop {
            let head_len = match self.next_head().await {
                Ok(Some(n)) => n,
                Ok(None) => return Next::Close,
                Err(message) => return self.protocol_error(400, &message).await,
            };
            let head = self.rbuf.split_to(head_len).freeze();
            let mut req = match Request::from_head(head, MAX_HEADERS) {
                Ok(r) => r,
                Err(e) => return self.protocol_error(e.status(), &e.message).await,
            };
            if let Err((status, message)) = self.read_body(&mut req).await {
                return self.protocol_error(status, &message).await;
            }
            match route::exchange(self, &req).await {
                Next::KeepAlive if req.keep_alive => {}
                Next::Reset => return Next::Reset,
                Next::KeepAlive | Next::Close => {
                    let _ = self.flush().await;
                    return Next::Close;
                }
            }
            if (self.rbuf.is_empty() || self.wbuf.len() >= FLUSH_AT) && self.flush().await.is_err() {
                return Next::Close;
            }
        }
    }

    /// Reads until a whole head is buffered; `Ok(None)` when the peer closed or idled.
    async fn next_head(&mut self) -> Result<Option<usize>, String> {
        loop {
            match probe_head(&self.rbuf, MAX_HEAD, MAX_HEADERS) {
                Ok(Parsed::Complete(n)) => return Ok(Some(n)),
                Ok(Parsed::Partial) => {}
                Err(e) => return Err(e.message.into_owned()),
            }
            if self.flush().await.is_err() {
                return Ok(None);
            }
            match monoio::time::timeout(IDLE, self.read_more()).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) if self.rbuf.is_empty() => return Ok(None),
                Ok(Ok(false)) => return Err("connection closed inside a request head".into()),
                Ok(Err(())) | Err(_) => return Ok(None),
            }
        }
    }

    /// Reads the request body into `req.body`.
    async fn read_body(&mut self, req: &mut Request) -> Result<(), (u16, String)> {
        let cut = || (400, "connection closed before the body was complete".to_string());
        match req.body_kind {
            BodyKind::None => Ok(()),
            BodyKind::Length(n) => {
                if n > MAX_BODY as u64 {
                    return Err((413, format!("request body exceeds {MAX_BODY} bytes")));
                }
                let n = n as usize;
                if req.expect_continue && self.rbuf.len() < n {
                    self.continue_100().await.map_err(|_| cut())?;
                }
                while self.rbuf.len() < n {
                    self.rbuf.reserve(n - self.rbuf.len());
                    if !matches!(self.read_more().await, Ok(true)) {
                        return Err(cut());
                    }
                }
                req.body = self.rbuf.split_to(n).freeze();
                Ok(())
            }
            BodyKind::Chunked => {
                if req.expect_continue {
                    self.continue_100().await.map_err(|_| cut())?;
                }
                let mut decoder = ChunkedDecoder::new(MAX_BODY);
                loop {
                    match decoder.decode(&mut self.rbuf) {
                        Ok(Progress::Done) => break,
                        Ok(Progress::NeedMore) => {
                            if !matches!(self.read_more().await, Ok(true)) {
                                return Err(cut());
                            }
                        }
                        Err(e) => return Err((e.status(), e.message.into_owned())),
                    }
                }
                req.body = decoder.finish();
                Ok(())
            }
        }
    }

    async fn continue_100(&mut self) -> Result<(), ()> {
        self.wbuf.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        self.flush().await
    }

    /// One read into the spare capacity of `rbuf`: `Ok(true)` data, `Ok(false)` EOF.
    async fn read_more(&mut self) -> Result<bool, ()> {
        if self.rbuf.capacity() - self.rbuf.len() < 1024 {
            self.rbuf.reserve(READ_CHUNK);
        }
        let (len, cap) = (self.rbuf.len(), self.rbuf.capacity());
        let slice = std::mem::take(&mut self.rbuf).slice_mut(len..cap);
        let (res, slice) = self.io.read(slice).await;
        self.rbuf = slice.into_inner();
        match res {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(_) => Err(()),
        }
    }

    /// Writes out `wbuf`. `Err` means the client is gone.
    pub async fn flush(&mut self) -> Result<(), ()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.wbuf);
        match monoio::time::timeout(WRITE_TIMEOUT, self.io.write_all(buf)).await {
            Ok((Ok(_), mut buf)) => {
                buf.clear();
                self.wbuf = buf;
                Ok(())
            }
            _ => Err(()),
        }
    }

    /// Writes `bytes` after anything already in `wbuf`. `Err` means the client is gone.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), ()> {
        self.flush().await?;
        match monoio::time::timeout(WRITE_TIMEOUT, self.io.write_all(bytes)).await {
            Ok((Ok(_), _)) => Ok(()),
            _ => Err(()),
        }
    }

    /// Answers a framing error and closes, as the gateway does.
    async fn protocol_error(&mut self, status: u16, message: &str) -> Next {
        let mut body = Vec::with_capacity(message.len() + 32);
        crate::json::push_raw(&mut body, "{\"error\":{\"message\":");
        crate::json::push_str(&mut body, message);
        crate::json::push_raw(&mut body, "}}");
        respond(&mut self.wbuf, status, "application/json", &[], &body, false);
        let _ = self.flush().await;
        Next::Close
    }

    /// Resets the connection: linger 0, then drop (close sends RST instead of FIN).
    fn reset(self) {
        self.stats.reset();
        set_linger_zero(self.fd);
        drop(self.io);
    }
}

#[allow(unsafe_code)]
fn set_linger_zero(fd: RawFd) {
    // SAFETY: `fd` is the TCP socket owned by the connection's stream, which the
    // caller still holds and drops only after this call; the borrow ends here.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = socket2::SockRef::from(&borrowed).set_linger(Some(Duration::ZERO));
}

/// The reason phrase: the gateway's, plus the statuses only the mock sends.
fn reason(status: u16) -> &'static str {
    match status {
        402 => "Payment Required",
        409 => "Conflict",
        422 => "Unprocessable Content",
        status => clawgate::http::response::reason(status),
    }
}

/// How a response body is delimited.
pub enum Framing {
    Length(usize),
    Chunked,
}

/// Appends a whole response with a `Content-Length` body.
pub fn respond(out: &mut BytesMut, status: u16, content_type: &str, headers: &[(&str, &str)], body: &[u8], keep: bool) {
    head(out, status, content_type, headers, Framing::Length(body.len()), keep);
    out.extend_from_slice(body);
}

/// Appends a response head.
pub fn head(
    out: &mut BytesMut,
    status: u16,
    content_type: &str,
    headers: &[(&str, &str)],
    framing: Framing,
    keep: bool,
) {
    out.reserve(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: ");
    out.extend_from_slice(content_type.as_bytes());
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"\r\ncontent-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Framing::Chunked => out.extend_from_slice(b"\r\ntransfer-encoding: chunked\r\ncache-control: no-cache"),
    }
    for (name, value) in headers {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
    if !keep {
        out.extend_from_slice(b"\r\nconnection: close");
    }
    out.extend_from_slice(b"\r\n\r\n");
}
