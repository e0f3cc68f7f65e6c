//! Reading an upstream response: the head (status, the few headers that matter) within
//! the first-byte deadline, then the body through `BodyReader`, which yields pieces as
//! they arrive: split off the connection's read buffer for `Content-Length` and
//! chunked bodies, and read to end of stream for close-delimited ones. Each read is
//! bounded by the chunk-gap deadline and by the call's total deadline.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::http::body::{ChunkedDecoder, Piece};
use crate::upstream::io::UpConn;
use crate::upstream::{Endpoint, Pool, Timeouts, UpstreamError};

/// Longest response head accepted from a provider.
const MAX_HEAD: usize = 64 * 1024;

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
                        // Asked for `identity`: a coded body is never relayed or parsed as
                        // if it were plain (its bytes would reach clients as JSON).
                        return Err(HeadError::Protocol(format!(
                            "provider answered with Content-Encoding {value} although the gateway asked for identity"
                        )));
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
        while let Some(piece) = self.next().await? {
            if out.len() + piece.len() > max {
                self.conn = None;
                return Err(UpstreamError::Protocol(format!("response body over {max} bytes")));
            }
            if out.is_empty() && matches!(self.framing, Framing::Length(0)) {
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
