//! Reading an upstream response: the head (status, the few headers that matter) within
//! the first-byte deadline, then the body through `BodyReader`, which yields pieces as
//! they arrive: split off the connection's read buffer for `Content-Length` and
//! chunked bodies, and read to end of stream for close-delimited ones. Each read is
//! bounded by the chunk-gap deadline and by the call's total deadline.
//!
//! The gateway asks for `Accept-Encoding: identity`; a provider that compresses
//! anyway with `gzip` or `deflate` (RFC 9110 section 8.4.1) is decoded piece by piece
//! as the body arrives (`flate2`, streams included), each piece's expansion bounded;
//! any other coding is refused with a clear error. A body is never handed on with an
//! encoding its headers do not declare.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::http::body::{ChunkedDecoder, Piece};
use crate::upstream::io::UpConn;
use crate::upstream::{Endpoint, Pool, Timeouts, UpstreamError};

/// Longest response head accepted from a provider.
const MAX_HEAD: usize = 64 * 1024;
/// Most bytes one compressed piece may expand to (a decompression bomb is an error).
const MAX_DECODED_PIECE: usize = 8 << 20;

/// A content coding being undone (`Content-Encoding: gzip` or `deflate`).
enum Decoder {
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    /// HTTP's `deflate` is the zlib format (RFC 9110 section 8.4.1.2).
    Deflate(flate2::write::ZlibDecoder<Vec<u8>>),
}

impl Decoder {
    fn for_coding(coding: &str) -> Option<Decoder> {
        match coding.to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(Decoder::Gzip(flate2::write::GzDecoder::new(Vec::new()))),
            "deflate" => Some(Decoder::Deflate(flate2::write::ZlibDecoder::new(Vec::new()))),
            _ => None,
        }
    }

    /// Decodes `piece`; returns what it expanded to so far.
    fn feed(&mut self, piece: &[u8]) -> Result<Bytes, UpstreamError> {
        use std::io::Write;
        let (result, out) = match self {
            Decoder::Gzip(d) => (d.write_all(piece).and_then(|_| d.flush()), d.get_mut()),
            Decoder::Deflate(d) => (d.write_all(piece).and_then(|_| d.flush()), d.get_mut()),
        };
        result.map_err(|e| UpstreamError::Protocol(format!("provider sent a corrupt compressed body: {e}")))?;
        if out.len() > MAX_DECODED_PIECE {
            return Err(UpstreamError::Protocol(format!(
                "a compressed piece of the provider's answer expands past {MAX_DECODED_PIECE} bytes"
            )));
        }
        Ok(Bytes::from(std::mem::take(out)))
    }

    /// Ends the stream: the rest of the output; an error if the coding was cut.
    fn finish(self) -> Result<Bytes, UpstreamError> {
        let out = match self {
            Decoder::Gzip(d) => d.finish(),
            Decoder::Deflate(d) => d.finish(),
        };
        out.map(Bytes::from)
            .map_err(|e| UpstreamError::Protocol(format!("provider's compressed body ended early: {e}")))
    }
}

/// Bytes of the worker's answer budget (`Pool::charge`) held by one `collect`.
struct Held {
    pool: Rc<Pool>,
    bytes: Cell<usize>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.pool.release(self.bytes.get());
    }
}

/// A response whose head has arrived.
pub struct UpResponse {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub content_type: String,
    pub body: BodyReader,
}

enum Framing {
    Length(u64),
    Chunked(ChunkedDecoder),
    Close,
}

/// The body of an upstream response, read piece by piece.
pub struct BodyReader {
    conn: Option<UpConn>,
    framing: Framing,
    keep_alive: bool,
    pool: Rc<Pool>,
    key: Rc<str>,
    chunk_timeout: Duration,
    deadline: Instant,
    done: bool,
    /// Set when the provider compressed the body (see the module doc).
    decoder: Option<Decoder>,
}

/// Writes the request on `conn` and reads the response head.
pub(crate) async fn exchange(
    mut conn: UpConn,
    wire: Bytes,
    ep: &Endpoint,
    pool: &Rc<Pool>,
    t: Timeouts,
    started: Instant,
) -> Result<UpResponse, UpstreamError> {
    let deadline = started + t.total;
    let reused = conn.uses > 0;
    let (res, _) = conn.io.write_all(wire).await;
    if let Err(e) = res {
        return Err(UpstreamError::Io { message: e.to_string(), before_response: true });
    }
    // Counted from the start of the attempt (connect and write included), which
    // spares a clock read per call.
    let first_byte = (started + t.first_byte).min(deadline);
    let head = monoio::time::timeout_at(first_byte.into(), read_head(&mut conn)).await;
    let head = match head {
        Err(_) => return Err(UpstreamError::Timeout("first byte")),
        Ok(Err(e)) => {
            // A reused connection that dies before any byte was most likely closed by
            // the provider while idle: safe to retry on a fresh one.
            let before_response = conn.rbuf.is_empty();
            return Err(match e {
                HeadError::Io(message) => UpstreamError::Io { message, before_response: before_response || reused },
                HeadError::Protocol(m) => UpstreamError::Protocol(m),
            });
        }
        Ok(Ok(h)) => h,
    };
    let framing = match (head.chunked, head.content_length) {
        (true, _) => Framing::Chunked(ChunkedDecoder::new(usize::MAX)),
        (false, Some(n)) => Framing::Length(n),
        (false, None) if head.status == 204 || head.status == 304 => Framing::Length(0),
        (false, None) => Framing::Close,
    };
    let keep_alive = head.keep_alive && !matches!(framing, Framing::Close);
    Ok(UpResponse {
        status: head.status,
        retry_after: head.retry_after,
        content_type: head.content_type,
        body: BodyReader {
            conn: Some(conn),
            framing,
            keep_alive,
            pool: pool.clone(),
            key: ep.key.clone(),
            chunk_timeout: t.chunk,
            deadline,
            done: false,
            decoder: head.coding.as_deref().and_then(Decoder::for_coding),
        },
    })
}

struct Head {
    status: u16,
    content_length: Option<u64>,
    chunked: bool,
    keep_alive: bool,
    retry_after: Option<Duration>,
    content_type: String,
    /// `Content-Encoding` other than `identity` (only codings `Decoder` undoes get here).
    coding: Option<String>,
}

enum HeadError {
    Io(String),
    Protocol(String),
}

async fn read_head(conn: &mut UpConn) -> Result<Head, HeadError> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&conn.rbuf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = resp.code.unwrap_or(0);
                let mut head = Head {
                    status,
                    content_length: None,
                    chunked: false,
                    keep_alive: resp.version == Some(1),
                    retry_after: None,
                    content_type: String::new(),
                    coding: None,
                };
                for h in resp.headers.iter() {
                    let value = std::str::from_utf8(h.value).unwrap_or("").trim();
                    if h.name.eq_ignore_ascii_case("content-length") {
                        head.content_length =
                            Some(value.parse().map_err(|_| HeadError::Protocol("bad Content-Length".into()))?);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        head.chunked = value.eq_ignore_ascii_case("chunked");
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        if value.eq_ignore_ascii_case("close") {
                            head.keep_alive = false;
                        } else if value.eq_ignore_ascii_case("keep-alive") {
                            head.keep_alive = true;
                        }
                    } else if h.name.eq_ignore_ascii_case("retry-after") {
                        head.retry_after = value.parse::<f64>().ok().filter(|s| *s >= 0.0).map(Duration::from_secs_f64);
                    } else if h.name.eq_ignore_ascii_case("content-type") {
                        head.content_type = value.to_ascii_lowercase();
                    } else if h.name.eq_ignore_ascii_case("content-encoding") && !value.eq_ignore_ascii_case("identity")
                    {
                        // Asked for `identity`: a coded body is decoded, or refused, never
                        // relayed or parsed as if it were plain.
                        if Decoder::for_coding(value).is_none() {
                            return Err(HeadError::Protocol(format!(
                                "provider answered with Content-Encoding {value}, which the gateway cannot decode \
                                 (it asked for identity; gzip and deflate are decoded)"
                            )));
                        }
                        head.coding = Some(value.to_string());
                    }
                }
                let _ = conn.rbuf.split_to(n);
                if (100..200).contains(&status) {
                    continue; // 100 Continue and friends: the real head follows
                }
                return Ok(head);
            }
            Ok(httparse::Status::Partial) if conn.rbuf.len() > MAX_HEAD => {
                return Err(HeadError::Protocol("response head too large".into()))
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(HeadError::Protocol(format!("malformed response head: {e}"))),
        }
        match conn.read_more().await {
            Ok(0) => return Err(HeadError::Io("connection closed before the response".into())),
            Ok(_) => {}
            Err(e) => return Err(HeadError::Io(e.to_string())),
        }
    }
}

impl BodyReader {
    /// The next piece of the body; `None` at its end (the connection then goes back to
    /// the pool when it can be reused).
    pub async fn next(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        if self.decoder.is_none() {
            return self.next_raw().await;
        }
        loop {
            match self.next_raw().await? {
                Some(piece) => {
                    let out = match self.decoder.as_mut() {
                        Some(d) => d.feed(&piece)?,
                        None => piece,
                    };
                    if !out.is_empty() {
                        return Ok(Some(out));
                    }
                }
                None => {
                    let rest = match self.decoder.take() {
                        Some(d) => d.finish()?,
                        None => Bytes::new(),
                    };
                    return Ok((!rest.is_empty()).then_some(rest));
                }
            }
        }
    }

    /// The next piece as it came off the wire (still coded, if it was).
    async fn next_raw(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        if self.done {
            return Ok(None);
        }
        loop {
            let Some(conn) = self.conn.as_mut() else { return Ok(None) };
            let piece = match &mut self.framing {
                Framing::Length(0) => Piece::Done,
                Framing::Length(left) if conn.rbuf.is_empty() => Piece::NeedMore,
                Framing::Length(left) => {
                    let n = (*left).min(conn.rbuf.len() as u64) as usize;
                    *left -= n as u64;
                    Piece::Data(conn.rbuf.split_to(n).freeze())
                }
                Framing::Chunked(dec) => {
                    dec.next_piece(&mut conn.rbuf).map_err(|e| UpstreamError::Protocol(e.message.to_string()))?
                }
                Framing::Close if conn.rbuf.is_empty() => Piece::NeedMore,
                Framing::Close => Piece::Data(conn.rbuf.split().freeze()),
            };
            match piece {
                Piece::Data(d) if d.is_empty() => continue,
                Piece::Data(d) => return Ok(Some(d)),
                Piece::Done => {
                    self.finish();
                    return Ok(None);
                }
                Piece::NeedMore => {}
            }
            let left = self.deadline.saturating_duration_since(Instant::now());
            let wait = self.chunk_timeout.min(left);
            let phase = if wait == left { "total" } else { "next chunk" };
            match monoio::time::timeout(wait, conn.read_more()).await {
                Err(_) => {
                    self.conn = None;
                    return Err(UpstreamError::Timeout(phase));
                }
                Ok(Ok(0)) if matches!(self.framing, Framing::Close) => {
                    self.done = true;
                    self.conn = None;
                    return Ok(None);
                }
                Ok(Ok(0)) => {
                    self.conn = None;
                    return Err(UpstreamError::Io {
                        message: "connection closed mid-body".into(),
                        before_response: false,
                    });
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    self.conn = None;
                    return Err(UpstreamError::Io { message: e.to_string(), before_response: false });
                }
            }
        }
    }

    /// Reads the whole body (bounded), for JSON answers and error bodies.
    pub async fn collect(&mut self, max: usize) -> Result<Bytes, UpstreamError> {
        let mut out = BytesMut::new();
        // What this answer holds of the worker's budget, given back however the read
        // ends (a dropped future included).
        let held = Held { pool: self.pool.clone(), bytes: Cell::new(0) };
        while let Some(piece) = self.next().await? {
            if out.len() + piece.len() > max {
                self.conn = None;
                return Err(UpstreamError::Protocol(format!("response body over {max} bytes")));
            }
            if !held.pool.charge(piece.len()) {
                self.conn = None;
                return Err(UpstreamError::Overloaded(format!(
                    "answers being read on this worker hold {} bytes; server.upstream_body_budget_mb is spent",
                    held.pool.buffered()
                )));
            }
            held.bytes.set(held.bytes.get() + piece.len());
            if out.is_empty() && matches!(self.framing, Framing::Length(0)) && self.decoder.is_none() {
                // The whole body came as one piece: no copy.
                self.finish();
                return Ok(piece);
            }
            out.extend_from_slice(&piece);
        }
        Ok(out.freeze())
    }

    fn finish(&mut self) {
        self.done = true;
        if let Some(conn) = self.conn.take() {
            if self.keep_alive && conn.rbuf.is_empty() {
                self.pool.checkin(&self.key, conn);
            }
        }
    }
}
