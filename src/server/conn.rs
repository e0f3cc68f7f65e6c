//! The connection loop: one task per accepted socket, on the worker that accepted it.
//!
//! ```text
//! read (deadline) -> Request::take (one parse: size limits, framing rules)
//!   -> body (Content-Length split off as Bytes | chunked decoder) (deadline, 413)
//!   -> server::dispatch -> CORS headers (`cors::decorate`) -> encode into the output
//!      buffer -> flush when no request is waiting in the input (pipelined responses
//!      leave in order, in one write)
//!   -> SSE: head flushed at once, then one write per event as it is produced
//! ```
//! Client errors (404, 400 on a bad body, ...) keep the connection; protocol errors
//! (garbage, bad framing, 413, 431, timeouts) answer and close it. An error answered
//! before the request was read whole closes in stages (`Conn::linger`, RFC 9112
//! section 9.6): the write side is shut, then what the client still sends is read
//! and discarded until it closes, for at most `server.lingering_close_ms` and
//! `server.lingering_close_bytes`, so a client that writes its whole body before it
//! reads gets the answer instead of a reset. Nothing here can take down anything but
//! this one connection. Idle keep-alive reads are cancelable so a drain closes idle
//! sockets at once. Buffers: one `BytesMut` for input (bodies are split from it
//! without copying) and one reused for output.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent};
use monoio::net::TcpStream;

use crate::tls::{self, ClientStream};

use crate::api;
use crate::auth::AuthMemo;
use crate::config::{AccessLog, ServerConfig};
use crate::error::ErrorShape;
use crate::error::{ApiError, ErrorCode};
use crate::http::body::{too_large, ChunkedDecoder, Progress};
use crate::http::request::BodyKind;
use crate::http::response::{write_head, write_head_for, Body, Framing, Response};
use crate::http::sse::{unchunk, LAST_CHUNK};
use crate::http::{Method, Request};
use crate::log;
use crate::worker::{Snapshot, Worker, WorkerStats};

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 16 * 1024;
/// Pipelined responses are flushed once this much output is waiting.
const FLUSH_AT: usize = 64 * 1024;
/// Buffer for the reads of a lingering close (discarded as they come).
const LINGER_READ: usize = 64 * 1024;

enum ReadOutcome {
    Data,
    Eof,
    Timeout,
    Canceled,
    Failed,
}

struct Conn {
    stream: ClientStream,
    peer: SocketAddr,
    rbuf: BytesMut,
    wbuf: BytesMut,
    worker: Rc<Worker>,
    /// The config this connection started with: a reload applies to new connections,
    /// open ones keep theirs (DESIGN.md), and no request pays for a fresh lookup.
    snap: Arc<Snapshot>,
    cancel: CancelHandle,
    /// Set when the last exchange switched protocols: `serve` hands the socket on.
    upgrade: Option<Box<dyn std::any::Any>>,
    /// The last key accepted on this connection (no SHA-256 per request).
    auth_memo: AuthMemo,
    /// Set when an error was answered while the client may still be sending (its
    /// request not read whole): the close lingers (`linger`).
    linger: bool,
    /// Set when a read for the current request ended in EOF, an error, a timeout or
    /// a drain, or a write failed: the client sends no more, nothing to linger for.
    client_done: bool,
    /// The listener it came through.
    door: super::Door,
}

/// Serves one connection until it closes. Counts it in the worker's stats.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, worker: Rc<Worker>, cancel: CancelHandle, door: super::Door) {
    let _ = tcp.set_nodelay(true);
    let stats = worker.stats();
    WorkerStats::add(&stats.connections, 1);
    let snap = worker.snapshot();
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut peer = peer;
    let Some(stream) = open(tcp, &mut peer, &mut rbuf, &snap, &worker, door).await else {
        WorkerStats::sub(&worker.stats().connections, 1);
        return;
    };
    let mut conn = Conn {
        stream,
        peer,
        rbuf,
        wbuf: BytesMut::with_capacity(4096),
        snap,
        worker: worker.clone(),
        cancel,
        upgrade: None,
        auth_memo: AuthMemo::default(),
        linger: false,
        client_done: false,
        door,
    };
    conn.run().await;
    match conn.upgrade.take() {
        // The 101 is out: the socket and any bytes the client sent after the head
        // belong to the WebSocket now (the only hand-off: a 101 made by `ws::upgrade`).
        Some(up) => {
            let Ok(up) = up.downcast::<crate::ws::Upgrade>() else {
                WorkerStats::sub(&worker.stats().connections, 1);
                return;
            };
            // Everything but the socket and the unread bytes is freed before the
            // (long-lived) WebSocket starts.
            let Conn { stream, rbuf, wbuf, worker: conn_worker, cancel, .. } = conn;
            drop((wbuf, conn_worker, cancel));
            // Its own task: this one's state (sized for every HTTP handler) is freed.
            // The socket stays counted as a connection until the WebSocket ends.
            monoio::spawn(async move {
                crate::ws::serve(stream, rbuf.freeze(), worker.clone(), *up).await;
                WorkerStats::sub(&worker.stats().connections, 1);
            });
            return;
        }
        None if conn.linger => conn.linger().await,
        None => {
            let _ = conn.stream.shutdown().await;
        }
    }
    WorkerStats::sub(&worker.stats().connections, 1);
}

/// Answers a connection over the worker's limit with 503 and closes it.
pub async fn reject_overloaded(mut stream: TcpStream, request_id: String) {
    let err = ApiError::new(ErrorCode::Overloaded, "too many connections; retry shortly").with_retry_after(1);
    let mut resp = api::error_response(&err, ErrorShape::Gateway);
    resp.close = true;
    resp.push_header("x-request-id", request_id);
    let mut out = BytesMut::new();
    encode_full(&mut out, resp, false, false, false);
    let _ = monoio::time::timeout(Duration::from_secs(1), stream.write_all(out)).await;
    let _ = stream.shutdown().await;
}

/// Opens an accepted socket before its first request: the PROXY protocol header the
/// balancer sends first (`server.proxy_protocol`; its source address becomes `peer`),
/// then, on a TLS listener (`[server.tls]`, main door only), the handshake. Both within
/// `server.header_timeout_ms`. `None`: the connection is closed (no valid PROXY header,
/// the client left, a failed or slow handshake, or plain HTTP sent to the TLS port,
/// which is answered 400 in plain HTTP first, as nginx does). Handshakes are counted by
/// outcome (`WorkerStats::tls_handshakes`, `/metrics`); failures are logged at debug
/// level only: scanners make them common and they harm nobody else.
async fn open(
    mut tcp: TcpStream,
    peer: &mut SocketAddr,
    rbuf: &mut BytesMut,
    snap: &Snapshot,
    worker: &Worker,
    door: super::Door,
) -> Option<ClientStream> {
    let cfg = &snap.config.server;
    let deadline = Instant::now() + Duration::from_millis(cfg.header_timeout_ms);
    if cfg.proxy_protocol && !read_proxy_header(&mut tcp, peer, rbuf, deadline).await {
        return None;
    }
    let acceptor = match (&snap.server_tls, door) {
        (Some(acceptor), super::Door::Main) => acceptor,
        _ => return Some(ClientStream::Plain(tcp)),
    };
    let counters = &worker.stats().tls_handshakes;
    while rbuf.is_empty() {
        match read_some(&mut tcp, rbuf, deadline).await {
            ReadOutcome::Data => {}
            ReadOutcome::Timeout => {
                WorkerStats::add(&counters[2], 1);
                return None;
            }
            _ => return None,
        }
    }
    if rbuf[0] != tls::HANDSHAKE_RECORD {
        WorkerStats::add(&counters[3], 1);
        let err = ApiError::invalid("this port speaks HTTPS: the request was sent as plain HTTP").closing();
        let mut resp = api::error_response(&err, ErrorShape::Gateway);
        resp.push_header("x-request-id", worker.next_request_id());
        let mut out = BytesMut::new();
        encode_full(&mut out, resp, false, false, false);
        let _ = monoio::time::timeout(Duration::from_secs(1), tcp.write_all(out)).await;
        let _ = tcp.shutdown().await;
        return None;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let prefix = std::mem::take(rbuf);
    match monoio::time::timeout(left, tls::accept(acceptor, tcp, &prefix)).await {
        Ok(Ok(stream)) => {
            WorkerStats::add(&counters[0], 1);
            *rbuf = prefix;
            rbuf.clear();
            Some(ClientStream::Tls(Box::new(stream)))
        }
        Ok(Err(e)) => {
            WorkerStats::add(&counters[1], 1);
            log::debug(&format!("TLS handshake with {peer} failed: {e}"));
            None
        }
        Err(_) => {
            WorkerStats::add(&counters[2], 1);
            log::debug(&format!("TLS handshake with {peer} timed out"));
            None
        }
    }
}

/// Reads the PROXY protocol header (v1 text or v2 binary) into `rbuf` and takes the
/// client's address from it, leaving what follows it in `rbuf`. `false`: no valid
/// header by `deadline` (or within 4 KiB).
async fn read_proxy_header(tcp: &mut TcpStream, peer: &mut SocketAddr, rbuf: &mut BytesMut, deadline: Instant) -> bool {
    loop {
        match super::client_addr::parse_proxy(rbuf) {
            super::client_addr::Proxied::Header { consumed, source } => {
                let _ = rbuf.split_to(consumed.min(rbuf.len()));
                if let Some(source) = source {
                    *peer = source;
                }
                return true;
            }
            super::client_addr::Proxied::Invalid(why) => {
                log::debug(&format!("connection from {peer}: {why}; closed"));
                return false;
            }
            super::client_addr::Proxied::Incomplete if rbuf.len() > 4096 => return false,
            super::client_addr::Proxied::Incomplete => {}
        }
        if !matches!(read_some(tcp, rbuf, deadline).await, ReadOutcome::Data) {
            return false;
        }
    }
}

/// One read from the bare socket into the spare capacity of `rbuf`, by `deadline`.
async fn read_some(tcp: &mut TcpStream, rbuf: &mut BytesMut, deadline: Instant) -> ReadOutcome {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return ReadOutcome::Timeout;
    }
    if rbuf.capacity() - rbuf.len() < 1024 {
        rbuf.reserve(READ_CHUNK);
    }
    let (len, cap) = (rbuf.len(), rbuf.capacity());
    let slice = std::mem::take(rbuf).slice_mut(len..cap);
    match monoio::time::timeout(left, tcp.read(slice)).await {
        Err(_) => ReadOutcome::Timeout,
        Ok((res, slice)) => {
            *rbuf = slice.into_inner();
            match res {
                Ok(0) => ReadOutcome::Eof,
                Ok(_) => ReadOutcome::Data,
                Err(_) => ReadOutcome::Failed,
            }
        }
    }
}

impl Conn {
    async fn run(&mut self) {
        loop {
            let snap = self.snap.clone();
            let cfg = &snap.config.server;
            let mut req = match self.next_head(cfg).await {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => return self.fail(e).await,
            };
            req.peer = Some(self.client_of(&req, cfg));
            let stats = self.worker.stats();
            WorkerStats::add(&stats.requests, 1);
            WorkerStats::add(&stats.in_flight, 1);
            let keep = self.exchange(req, cfg).await;
            WorkerStats::sub(&self.worker.stats().in_flight, 1);
            if !keep {
                // Input left unread at a close (pipelined requests after one that
                // closes) lingers too, as RFC 9112 section 9.6 asks.
                self.linger |= !self.rbuf.is_empty() && !self.client_done;
                if self.flush().await.is_err() {
                    self.linger = false;
                }
                return;
            }
            if (self.rbuf.is_empty() || self.wbuf.len() >= FLUSH_AT) && self.flush().await.is_err() {
                return;
            }
        }
    }

    /// The client of `req`: the connection's peer (the PROXY header's source when there
    /// was one), or what `X-Forwarded-For` says when that peer is a trusted proxy.
    fn client_of(&self, req: &Request, cfg: &ServerConfig) -> SocketAddr {
        if cfg.trusted_proxies.is_empty() {
            return self.peer;
        }
        let xff = req.header("x-forwarded-for");
        let ip = super::client_addr::forwarded_client(self.peer.ip(), xff, &cfg.trusted_proxies);
        if ip == self.peer.ip() {
            self.peer
        } else {
            SocketAddr::new(ip, 0)
        }
    }

    /// Reads until a whole head is buffered and returns it parsed (one parse pass).
    /// `Ok(None)`: the peer closed, went idle or the worker is draining, with nothing
    /// pending.
    async fn next_head(&mut self, cfg: &ServerConfig) -> Result<Option<Request>, ApiError> {
        let mut started: Option<Instant> = (!self.rbuf.is_empty()).then(Instant::now);
        loop {
            if let Some(req) = Request::take(&mut self.rbuf, cfg.max_header_bytes, cfg.max_headers)? {
                return Ok(Some(req));
            }
            if !self.wbuf.is_empty() && self.flush().await.is_err() {
                return Ok(None);
            }
            let idle = self.rbuf.is_empty();
            if idle && self.worker.shared.closing() {
                return Ok(None);
            }
            let deadline = match started {
                None => Duration::from_millis(cfg.idle_timeout_ms),
                Some(t) => Duration::from_millis(cfg.header_timeout_ms).saturating_sub(t.elapsed()),
            };
            match self.read_more(deadline, idle).await {
                ReadOutcome::Data => {
                    started.get_or_insert_with(Instant::now);
                }
                ReadOutcome::Eof | ReadOutcome::Canceled | ReadOutcome::Failed => return Ok(None),
                ReadOutcome::Timeout if started.is_none() => return Ok(None),
                ReadOutcome::Timeout => {
                    self.client_done = true;
                    return Err(
                        ApiError::new(ErrorCode::InvalidRequest, "timed out reading the request head").closing()
                    );
                }
            }
        }
    }

    /// Reads the body, dispatches, and encodes the response. Returns whether the
    /// connection may carry another request.
    async fn exchange(&mut self, mut req: Request, cfg: &ServerConfig) -> bool {
        // The request's duration: its latency histogram and the access log.
        let started = Instant::now();
        let request_id = match req.header("x-request-id").filter(|v| valid_request_id(v)) {
            Some(v) => v.to_string(),
            None => self.worker.next_request_id(),
        };
        if let Err(e) = self.read_body(&mut req, cfg).await {
            // Unless the client stopped sending (closed, stalled), it may still be
            // sending the body: close in stages so that it reads this answer.
            self.linger = !self.client_done;
            let mut resp = api::error_response(&e, crate::router::error_shape(req.path()));
            resp.push_header("x-request-id", request_id.clone());
            super::cors::decorate(cfg, &req, &mut resp);
            self.finished(cfg, &req, resp.status, started, &request_id, &resp.log);
            if e.close || !self.rbuf.is_empty() {
                encode_full(&mut self.wbuf, resp, false, false, req.minor == 0);
                return false;
            }
            encode_full(&mut self.wbuf, resp, req.keep_alive, req.method == Method::Head, req.minor == 0);
            return req.keep_alive;
        }
        if !self.wbuf.is_empty() && self.flush().await.is_err() {
            return false;
        }
        let snap = self.snap.clone();
        let mut resp = match self.door {
            super::Door::Main => super::dispatch(&self.worker, &snap, &req, &request_id, &mut self.auth_memo).await,
            super::Door::Metrics => super::dispatch::metrics_door(&self.worker, &snap, &req).await,
        };
        resp.push_header("x-request-id", request_id.clone());
        // Browsers read nothing without it, errors and streams included (no-op without `Origin`).
        super::cors::decorate(cfg, &req, &mut resp);
        let keep = req.keep_alive && !resp.close && !self.worker.shared.draining();
        let status = resp.status;
        let fields = std::mem::take(&mut resp.log);
        if let Body::Upgrade(_) = resp.body {
            if let Body::Upgrade(up) = std::mem::replace(&mut resp.body, Body::Empty) {
                write_head(&mut self.wbuf, &resp, Framing::None, true);
                if self.flush().await.is_ok() {
                    self.upgrade = Some(up);
                }
            }
            self.finished(cfg, &req, status, started, &request_id, &fields);
            return false;
        }
        let ok = match resp.body {
            Body::Sse(_) => self.stream_sse(resp, keep, req.minor == 0).await,
            _ => {
                encode_full(&mut self.wbuf, resp, keep, req.method == Method::Head, req.minor == 0);
                true
            }
        };
        self.finished(cfg, &req, status, started, &request_id, &fields);
        ok && keep
    }

    async fn read_body(&mut self, req: &mut Request, cfg: &ServerConfig) -> Result<(), ApiError> {
        let deadline = Instant::now() + Duration::from_millis(cfg.body_timeout_ms);
        match req.body_kind {
            BodyKind::None => Ok(()),
            BodyKind::Length(n) => {
                if n > cfg.max_body_bytes as u64 {
                    return Err(too_large(cfg.max_body_bytes));
                }
                let n = n as usize;
                if req.expect_continue && self.rbuf.len() < n {
                    self.continue_100().await?;
                }
                while self.rbuf.len() < n {
                    self.rbuf.reserve(n - self.rbuf.len());
                    self.read_for_body(deadline).await?;
                }
                req.body = self.rbuf.split_to(n).freeze();
                Ok(())
            }
            BodyKind::Chunked => {
                if req.expect_continue {
                    self.continue_100().await?;
                }
                let mut decoder = ChunkedDecoder::new(cfg.max_body_bytes);
                while decoder.decode(&mut self.rbuf)? == Progress::NeedMore {
                    self.read_for_body(deadline).await?;
                }
                req.body = decoder.finish();
                Ok(())
            }
        }
    }

    /// Asks for the body with an interim `100 Continue`.
    async fn continue_100(&mut self) -> Result<(), ApiError> {
        self.wbuf.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        self.flush().await.map_err(|_| {
            self.client_done = true;
            body_cut()
        })
    }

    async fn read_for_body(&mut self, deadline: Instant) -> Result<(), ApiError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let outcome = self.read_more(left, false).await;
        self.client_done = !matches!(outcome, ReadOutcome::Data);
        match outcome {
            ReadOutcome::Data => Ok(()),
            ReadOutcome::Timeout => {
                Err(ApiError::new(ErrorCode::InvalidRequest, "timed out reading the request body").closing())
            }
            ReadOutcome::Eof | ReadOutcome::Canceled | ReadOutcome::Failed => Err(body_cut()),
        }
    }

    /// One read into the spare capacity of the input buffer.
    async fn read_more(&mut self, deadline: Duration, cancelable: bool) -> ReadOutcome {
        if self.rbuf.capacity() - self.rbuf.len() < 1024 {
            self.rbuf.reserve(READ_CHUNK);
        }
        let len = self.rbuf.len();
        let cap = self.rbuf.capacity();
        let slice = std::mem::take(&mut self.rbuf).slice_mut(len..cap);
        let result = if cancelable {
            let read = self.stream.cancelable_read(slice, self.cancel.clone());
            monoio::time::timeout(deadline, read).await
        } else {
            monoio::time::timeout(deadline, self.stream.read(slice)).await
        };
        match result {
            Err(_) => ReadOutcome::Timeout,
            Ok((res, slice)) => {
                self.rbuf = slice.into_inner();
                match res {
                    Ok(0) => ReadOutcome::Eof,
                    Ok(_) => ReadOutcome::Data,
                    Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => ReadOutcome::Canceled,
                    Err(_) => ReadOutcome::Failed,
                }
            }
        }
    }

    async fn flush(&mut self) -> Result<(), ()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.wbuf);
        let timeout = Duration::from_millis(self.snap.config.server.write_timeout_ms);
        match monoio::time::timeout(timeout, self.stream.write_all(buf)).await {
            Ok((Ok(_), mut buf)) => {
                buf.clear();
                self.wbuf = buf;
                Ok(())
            }
            _ => Err(()),
        }
    }

    /// Streams an SSE body: the head at once, then one chunk per event. Returns false
    /// if the client went away (the stream is dropped, cancelling its producer). An
    /// HTTP/1.0 client gets the events unchunked and the end of the body is the close.
    async fn stream_sse(&mut self, mut resp: Response, keep: bool, http10: bool) -> bool {
        let Body::Sse(mut events) = std::mem::replace(&mut resp.body, Body::Empty) else { return false };
        let framing = if http10 { Framing::Close } else { Framing::Chunked };
        write_head_for(&mut self.wbuf, &resp, framing, keep && !http10, http10);
        // Events that are ready now join the pending write (each its own HTTP chunk):
        // OpenAI's role chunk leaves with the head, the finish chunk, `[DONE]` and the
        // terminating chunk together. When the next event is not ready, what is
        // buffered goes out first, so nothing waits in the buffer.
        loop {
            let event = {
                let mut next = events.next_event();
                match std::future::poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx))).await {
                    Poll::Ready(event) => event,
                    Poll::Pending => {
                        if self.flush().await.is_err() {
                            return false;
                        }
                        next.await
                    }
                }
            };
            let Some(event) = event else { break };
            if http10 {
                self.wbuf.extend_from_slice(&unchunk(&event));
            } else {
                self.wbuf.extend_from_slice(&event);
            }
        }
        drop(events);
        if !http10 {
            self.wbuf.extend_from_slice(LAST_CHUNK);
        }
        self.flush().await.is_ok()
    }

    /// Answers a protocol error in the request head and closes (lingering, unless the
    /// client stalled: the rest of its request is unread).
    async fn fail(&mut self, e: ApiError) {
        let mut resp = api::error_response(&e, ErrorShape::Gateway);
        resp.push_header("x-request-id", self.worker.next_request_id());
        encode_full(&mut self.wbuf, resp, false, false, false);
        self.linger = !self.client_done;
        if self.flush().await.is_err() {
            self.linger = false;
        }
    }

    /// The staged close of RFC 9112 section 9.6 ("lingering close", as nginx calls
    /// it), after an error answered before the request was read whole. Closing at
    /// once with unread input makes the kernel answer the client's next bytes with
    /// a reset, which can destroy the response still unread in the client's buffers,
    /// and a client that writes its whole body before it reads (Python's
    /// `http.client`, most SDKs) dies on a broken pipe instead of reading the 413. So:
    /// shut the write side (the client sees the response end), then read and discard
    /// until the client closes, `server.lingering_close_ms` pass or
    /// `server.lingering_close_bytes` were discarded, whichever comes first. The reads
    /// are cancelable: a drain ends the linger at once. The caller has flushed the
    /// response; the socket is dropped (closed) after this.
    async fn linger(&mut self) {
        let _ = self.stream.shutdown().await;
        let (limit, max_bytes) = {
            let cfg = &self.snap.config.server;
            (Duration::from_millis(cfg.lingering_close_ms), cfg.lingering_close_bytes)
        };
        let deadline = Instant::now() + limit;
        let mut discarded = 0usize;
        if max_bytes > 0 && !limit.is_zero() {
            // Larger reads than a request's: fewer wake-ups to discard megabytes.
            self.rbuf.clear();
            self.rbuf.reserve(LINGER_READ);
        }
        while discarded < max_bytes {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.rbuf.clear();
            match self.read_more(left, true).await {
                ReadOutcome::Data => discarded = discarded.saturating_add(self.rbuf.len()),
                ReadOutcome::Eof | ReadOutcome::Timeout | ReadOutcome::Canceled | ReadOutcome::Failed => break,
            }
        }
    }

    /// A request was answered: its route's counters and latency (`/metrics`), and the
    /// access log line.
    fn finished(
        &self,
        cfg: &ServerConfig,
        req: &Request,
        status: u16,
        started: Instant,
        id: &str,
        fields: &log::LogFields,
    ) {
        let took = started.elapsed();
        if self.snap.config.metrics.enabled {
            // The route dispatch found, else what the request would have routed to.
            let route = fields.route_slot.unwrap_or_else(|| crate::router::route_index(req.method, req.path()));
            self.worker.stats().http.observe(route, status, took);
        }
        if cfg.access_log == AccessLog::Off {
            return;
        }
        let client = req.peer.unwrap_or(self.peer);
        log::access(cfg.access_log, self.worker.id, &client, req.method.as_str(), req.path(), status, took, id, fields);
    }
}

/// Encodes a whole response (head + body) into `out`.
fn encode_full(out: &mut BytesMut, resp: Response, keep_alive: bool, head_only: bool, http10: bool) {
    let body = match &resp.body {
        Body::Full(b) => b.clone(),
        Body::Empty | Body::Sse(_) | Body::Upgrade(_) => Bytes::new(),
    };
    // A 204 has no body and no `Content-Length` (RFC 9110 section 8.6).
    let framing = if resp.status == 204 { Framing::None } else { Framing::Length(body.len()) };
    write_head_for(out, &resp, framing, keep_alive, http10);
    if !head_only {
        out.extend_from_slice(&body);
    }
}

fn body_cut() -> ApiError {
    ApiError::invalid("connection closed before the body was complete").closing()
}

/// A client's `X-Request-Id` is echoed if it is 1-128 visible ASCII characters.
fn valid_request_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())
}
