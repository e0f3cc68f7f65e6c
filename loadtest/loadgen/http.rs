//! The client side of HTTP/1.1, just enough to load a server honestly: one keep-alive
//! connection (`Conn`) with an append-only read buffer, a request writer, and a
//! response reader that parses the head with `httparse` and then walks the body's
//! framing (Content-Length, chunked, or until close) **chunk by chunk**, handing every
//! HTTP chunk to a `BodySink` together with the time of the read that completed it and
//! that read's number. That is what lets the SSE scenario tell a server that wrote two
//! events into one chunk (it buffered them) from a kernel that delivered two chunks in
//! one read (nobody's fault).
//!
//! Cost per response: one `httparse` pass over the head, a scan of chunk-size lines,
//! and no copy of body bytes (sinks see slices of the read buffer).
//!
//! Over `https://` the same reader runs on a `monoio-rustls` stream (`Stream::Tls`):
//! such a stream must be dropped, never used again, once a read or write future on it
//! was dropped (a timeout), which `drive.rs` does for every failed connection.

use std::io;
use std::time::Instant;

use monoio::buf::{IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio_rustls::ClientTlsStream;
use rustls::HandshakeKind;

use crate::tls;

/// Most header lines accepted in a response.
const MAX_HEADERS: usize = 64;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Why an exchange failed; `kind()` is the key in the report's error table.
#[derive(Debug)]
pub enum Failure {
    Connect(io::Error),
    Write(io::Error),
    Read(io::Error),
    /// The server closed the connection before the response was complete.
    Eof,
    /// The response could not be parsed.
    Parse(&'static str),
    /// A well-formed answer with an unexpected status.
    Status(u16),
    /// The TLS handshake failed (after the TCP connect).
    Tls(String),
    /// A WebSocket-level failure (handshake, protocol, close, error frame).
    Ws(String),
    /// The per-request deadline passed.
    Timeout,
}

impl Failure {
    pub fn kind(&self) -> String {
        match self {
            Failure::Connect(e) => format!("connect: {}", short(e)),
            Failure::Write(e) => format!("write: {}", short(e)),
            Failure::Read(e) => format!("read: {}", short(e)),
            Failure::Eof => "closed before the end of the response".into(),
            Failure::Parse(what) => format!("bad response: {what}"),
            Failure::Status(s) => format!("status {s}"),
            Failure::Tls(what) => format!("tls handshake: {what}"),
            Failure::Ws(what) => format!("ws: {what}"),
            Failure::Timeout => "timeout".into(),
        }
    }
}

fn short(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => format!("{:?} (os {code})", e.kind()),
        None => format!("{:?}", e.kind()),
    }
}

/// Receives the body of a response as it arrives.
pub trait BodySink {
    /// One HTTP chunk (or, without chunked framing, the bytes of one read), complete.
    /// `at` is when the read that completed it returned; `read_no` numbers the reads of
    /// this connection, so two chunks with the same number arrived together.
    fn chunk(&mut self, data: &[u8], at: Instant, read_no: u64);
}

/// A sink that ignores the body.
pub struct Discard;

impl BodySink for Discard {
    fn chunk(&mut self, _data: &[u8], _at: Instant, _read_no: u64) {}
}

/// What the reader learnt from a response.
#[derive(Debug, Clone, Copy)]
pub struct ResponseInfo {
    pub status: u16,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
    pub body_bytes: u64,
}

/// The connection under `Conn`: plain TCP or TLS over TCP.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<ClientTlsStream<TcpStream>>),
}

/// One client connection with its read buffer.
pub struct Conn {
    pub stream: Stream,
    /// Bytes read and not yet consumed live in `rbuf[pos..]`.
    pub rbuf: Vec<u8>,
    pub pos: usize,
    /// Number of the last read (see `BodySink::chunk`).
    pub reads: u64,
    /// When the last read returned.
    pub last_read_at: Instant,
}

impl Conn {
    /// Connects, and with `tls` also completes the TLS handshake.
    pub async fn connect(addr: std::net::SocketAddr, tls: Option<&tls::Client>) -> Result<Conn, Failure> {
        let tcp = TcpStream::connect_addr(addr).await.map_err(Failure::Connect)?;
        let _ = tcp.set_nodelay(true);
        let stream = match tls {
            None => Stream::Plain(tcp),
            Some(t) => match t.connector.connect(t.server_name.clone(), tcp).await {
                Ok(s) => Stream::Tls(Box::new(s)),
                Err(monoio_rustls::TlsError::Io(e)) => return Err(Failure::Tls(short(&e))),
                Err(monoio_rustls::TlsError::Rustls(e)) => return Err(Failure::Tls(e.to_string())),
            },
        };
        Ok(Conn { stream, rbuf: Vec::with_capacity(16 * 1024), pos: 0, reads: 0, last_read_at: Instant::now() })
    }

    /// Drops the connection; for TLS says how its handshake went (full or resumed).
    pub fn close(self) -> Option<HandshakeKind> {
        match self.stream {
            Stream::Plain(_) => None,
            Stream::Tls(s) => s.into_parts().1.handshake_kind(),
        }
    }

    /// Writes all of `buf` and gives it back for reuse.
    pub async fn write(&mut self, buf: Vec<u8>) -> (Result<(), Failure>, Vec<u8>) {
        let (res, buf) = match &mut self.stream {
            Stream::Plain(s) => s.write_all(buf).await,
            Stream::Tls(s) => s.write_all(buf).await,
        };
        (res.map(|_| ()).map_err(Failure::Write), buf)
    }

    /// The unread bytes.
    pub fn unread(&self) -> &[u8] {
        self.rbuf.get(self.pos..).unwrap_or(&[])
    }

    /// Marks `n` unread bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.rbuf.len());
        if self.pos == self.rbuf.len() {
            self.rbuf.clear();
            self.pos = 0;
        }
    }

    /// One read appended to the buffer; `Ok(0)` is end of stream.
    pub async fn read_more(&mut self) -> Result<usize, Failure> {
        if self.pos > 0 && self.pos * 2 >= self.rbuf.len() {
            // Move the unread tail to the front before the buffer grows.
            self.rbuf.drain(..self.pos);
            self.pos = 0;
        }
        if self.rbuf.capacity() - self.rbuf.len() < 4096 {
            self.rbuf.reserve(16 * 1024);
        }
        let (len, cap) = (self.rbuf.len(), self.rbuf.capacity());
        let slice: SliceMut<Vec<u8>> = std::mem::take(&mut self.rbuf).slice_mut(len..cap);
        let (res, slice) = match &mut self.stream {
            Stream::Plain(s) => s.read(slice).await,
            Stream::Tls(s) => s.read(slice).await,
        };
        self.rbuf = slice.into_inner();
        self.last_read_at = Instant::now();
        self.reads += 1;
        res.map_err(Failure::Read)
    }

    /// Reads until at least one more byte arrived; EOF is a failure.
    async fn fill(&mut self) -> Result<(), Failure> {
        match self.read_more().await? {
            0 => Err(Failure::Eof),
            _ => Ok(()),
        }
    }

    /// Reads one response head. Returns the status, the header facts the body reader
    /// needs, and consumes the head from the buffer.
    pub async fn read_head(&mut self) -> Result<Head, Failure> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(self.unread()) {
                Ok(httparse::Status::Complete(n)) => {
                    let head = Head::from_parsed(&resp)?;
                    self.consume(n);
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) => {
                    if self.unread().len() > MAX_HEAD {
                        return Err(Failure::Parse("response head too large"));
                    }
                }
                Err(_) => return Err(Failure::Parse("malformed response head")),
            }
            self.fill().await?;
        }
    }

    /// Reads one whole response, feeding its body to `sink`.
    pub async fn read_response(&mut self, sink: &mut dyn BodySink) -> Result<ResponseInfo, Failure> {
        let head = self.read_head().await?;
        let body_bytes = match head.framing {
            Framing::Empty => 0,
            Framing::Length(n) => self.read_length(n, sink).await?,
            Framing::Chunked => self.read_chunked(sink).await?,
            Framing::UntilClose => self.read_until_close(sink).await?,
        };
        let keep_alive = head.keep_alive && head.framing != Framing::UntilClose;
        Ok(ResponseInfo { status: head.status, keep_alive, body_bytes })
    }

    async fn read_length(&mut self, n: u64, sink: &mut dyn BodySink) -> Result<u64, Failure> {
        let mut left = n;
        while left > 0 {
            if self.unread().is_empty() {
                self.fill().await?;
            }
            let take = self.unread().len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let (at, no) = (self.last_read_at, self.reads);
            sink.chunk(&self.unread()[..take], at, no);
            self.consume(take);
            left -= take as u64;
        }
        Ok(n)
    }

    async fn read_until_close(&mut self, sink: &mut dyn BodySink) -> Result<u64, Failure> {
        let mut total = 0u64;
        loop {
            if !self.unread().is_empty() {
                let n = self.unread().len();
                let (at, no) = (self.last_read_at, self.reads);
                sink.chunk(self.unread(), at, no);
                self.consume(n);
                total += n as u64;
            }
            if self.read_more().await? == 0 {
                return Ok(total);
            }
        }
    }

    async fn read_chunked(&mut self, sink: &mut dyn BodySink) -> Result<u64, Failure> {
        let mut total = 0u64;
        loop {
            // The size line.
            let (size, line_len) = loop {
                match parse_chunk_size(self.unread())? {
                    Some(v) => break v,
                    None => self.fill().await?,
                }
            };
            self.consume(line_len);
            if size == 0 {
                // Trailers (none expected) end with an empty line.
                loop {
                    let buf = self.unread();
                    if let Some(i) = find(buf, b"\r\n") {
                        self.consume(i + 2);
                        if i == 0 {
                            return Ok(total);
                        }
                        continue;
                    }
                    if buf.len() > MAX_HEAD {
                        return Err(Failure::Parse("trailers too large"));
                    }
                    self.fill().await?;
                }
            }
            let need = usize::try_from(size).map_err(|_| Failure::Parse("chunk too large"))?;
            while self.unread().len() < need + 2 {
                self.fill().await?;
            }
            if &self.unread()[need..need + 2] != b"\r\n" {
                return Err(Failure::Parse("chunk not followed by CRLF"));
            }
            let (at, no) = (self.last_read_at, self.reads);
            sink.chunk(&self.unread()[..need], at, no);
            self.consume(need + 2);
            total += size;
        }
    }
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The facts of a response head.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
    pub keep_alive: bool,
    /// `Sec-WebSocket-Accept`, for the upgrade check.
    pub ws_accept: Option<String>,
}

impl Head {
    fn from_parsed(resp: &httparse::Response<'_, '_>) -> Result<Head, Failure> {
        let status = resp.code.ok_or(Failure::Parse("no status"))?;
        let mut length = None;
        let mut chunked = false;
        let mut keep_alive = resp.version == Some(1);
        let mut ws_accept = None;
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = std::str::from_utf8(h.value).map_err(|_| Failure::Parse("content-length"))?;
                length = Some(v.trim().parse::<u64>().map_err(|_| Failure::Parse("content-length"))?);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = h.value.windows(7).any(|w| w.eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("connection") {
                if h.value.windows(5).any(|w| w.eq_ignore_ascii_case(b"close")) {
                    keep_alive = false;
                } else if h.value.windows(10).any(|w| w.eq_ignore_ascii_case(b"keep-alive")) {
                    keep_alive = true;
                }
            } else if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
                ws_accept = Some(String::from_utf8_lossy(h.value).trim().to_string());
            }
        }
        let framing = if status == 101 || status == 204 || status == 304 || (100..200).contains(&status) {
            Framing::Empty
        } else if chunked {
            Framing::Chunked
        } else if let Some(n) = length {
            if n == 0 {
                Framing::Empty
            } else {
                Framing::Length(n)
            }
        } else {
            Framing::UntilClose
        };
        Ok(Head { status, framing, keep_alive, ws_accept })
    }
}

/// Parses `HEX[;ext]\r\n` at the start of `buf`: `(size, line length)`, or `None` if
/// the line is not complete yet.
fn parse_chunk_size(buf: &[u8]) -> Result<Option<(u64, usize)>, Failure> {
    let Some(end) = find(buf, b"\r\n") else {
        if buf.len() > 1024 {
            return Err(Failure::Parse("chunk size line too long"));
        }
        return Ok(None);
    };
    let line = &buf[..end];
    let hex = line.split(|&b| b == b';').next().unwrap_or(&[]);
    let hex = std::str::from_utf8(hex).map_err(|_| Failure::Parse("chunk size"))?.trim();
    if hex.is_empty() || hex.len() > 15 {
        return Err(Failure::Parse("chunk size"));
    }
    let size = u64::from_str_radix(hex, 16).map_err(|_| Failure::Parse("chunk size"))?;
    Ok(Some((size, end + 2)))
}

/// First position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A request, rendered from its parts. Placeholders `{conn}` and `{seq}` in the body are
/// replaced per request when present (otherwise the bytes are built once and reused).
pub struct RequestTemplate {
    head_before_length: Vec<u8>,
    body: Template,
}

impl RequestTemplate {
    pub fn new(method: &str, path: &str, host: &str, headers: &[(String, String)], body: Option<&str>) -> Self {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let has_type = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if body.is_some() && !has_type {
            head.push_str("Content-Type: application/json\r\n");
        }
        RequestTemplate { head_before_length: head.into_bytes(), body: Template::new(body.unwrap_or("")) }
    }

    /// Whether every request of a connection is the same bytes.
    pub fn is_fixed_per_conn(&self) -> bool {
        !self.body.has_seq
    }

    /// Renders the request for connection `conn`, request number `seq`, into `out`.
    pub fn render(&self, conn: usize, seq: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.head_before_length);
        let body = self.body.render(conn, seq);
        if !body.is_empty()
            || self.head_before_length.starts_with(b"POST")
            || self.head_before_length.starts_with(b"PUT")
        {
            out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body.as_bytes());
    }
}

/// A string with optional `{conn}` / `{seq}` placeholders.
pub struct Template {
    text: String,
    has_conn: bool,
    has_seq: bool,
}

impl Template {
    pub fn new(text: &str) -> Template {
        Template { text: text.to_string(), has_conn: text.contains("{conn}"), has_seq: text.contains("{seq}") }
    }

    pub fn render(&self, conn: usize, seq: u64) -> String {
        let mut s = self.text.clone();
        if self.has_conn {
            s = s.replace("{conn}", &conn.to_string());
        }
        if self.has_seq {
            s = s.replace("{seq}", &seq.to_string());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines_parse_with_extensions_and_wait_for_the_crlf() {
        assert_eq!(parse_chunk_size(b"1a\r\nxx").unwrap(), Some((26, 4)));
        assert_eq!(parse_chunk_size(b"0;ext=1\r\n").unwrap(), Some((0, 9)));
        assert_eq!(parse_chunk_size(b"1a").unwrap(), None);
        assert!(parse_chunk_size(b"zz\r\n").is_err());
    }

    #[test]
    fn requests_render_with_length_and_placeholders() {
        let t = RequestTemplate::new(
            "POST",
            "/api/chat",
            "127.0.0.1:1",
            &[("Authorization".into(), "Bearer k".into())],
            Some(r#"{"sessionId":"s-{conn}","n":{seq}}"#),
        );
        let mut out = Vec::new();
        t.render(3, 7, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1:1\r\nAuthorization: Bearer k\r\n\
             Content-Type: application/json\r\nContent-Length: 25\r\n\r\n{\"sessionId\":\"s-3\",\"n\":7}"
        );
        assert!(!t.is_fixed_per_conn());
    }
}
