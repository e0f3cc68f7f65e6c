//! The raw HTTP/1.1 client of the tests: `Req` serialises a request by hand, `Conn`
//! is one blocking stream (a `TcpStream`, or anything `Read + Write` such as a rustls
//! stream) with its own read buffer that reads response heads, `Content-Length`,
//! chunked (chunk by chunk, boundaries kept) and close-delimited bodies, and can
//! assert that the server closed or reset the connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use super::IO_TIMEOUT;

// ---------------------------------------------------------------------------------
// Requests

/// A request to serialise by hand: `Host` and `Content-Length` are added for you.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub version: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

/// A request builder.
pub fn req(method: &str, path: &str) -> Req {
    Req { method: method.into(), path: path.into(), version: "HTTP/1.1", headers: Vec::new(), body: None }
}

impl Req {
    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn key(self, key: &str) -> Req {
        self.header("Authorization", &format!("Bearer {key}"))
    }

    pub fn key_opt(self, key: Option<&str>) -> Req {
        match key {
            Some(k) => self.key(k),
            None => self,
        }
    }

    pub fn id(self, request_id: &str) -> Req {
        self.header("X-Request-Id", request_id)
    }

    pub fn json(mut self, body: &Value) -> Req {
        self.headers.push(("Content-Type".into(), "application/json".into()));
        self.body = Some(serde_json::to_vec(body).expect("serialise"));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = Some(body.into());
        self
    }

    pub fn http10(mut self) -> Req {
        self.version = "HTTP/1.0";
        self
    }

    /// The bytes on the wire.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} {}\r\nHost: 127.0.0.1\r\n", self.method, self.path, self.version).into_bytes();
        for (n, v) in &self.headers {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        if let Some(body) = &self.body {
            out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if let Some(body) = &self.body {
            out.extend_from_slice(body);
        }
        out
    }
}

// ---------------------------------------------------------------------------------
// Responses

/// A response head.
#[derive(Clone, Debug)]
pub struct Head {
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Names lowercased, in wire order.
    pub headers: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: &[u8]) -> Head {
        let text = std::str::from_utf8(raw).unwrap_or_else(|_| panic!("non-UTF-8 response head: {raw:?}"));
        let mut lines = text.trim_end_matches("\r\n").split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let status =
            parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let reason = parts.next().unwrap_or("").to_string();
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap_or_else(|| panic!("bad header line {l:?}"));
                (n.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        Head { version, status, reason, headers }
    }

    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a header.
    pub fn all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.as_str()).collect()
    }

    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    }
}

/// A whole response.
#[derive(Clone, Debug)]
pub struct Response {
    pub head: Head,
    pub body: Vec<u8>,
    /// The chunks as they came on the wire (chunked bodies only).
    pub chunks: Vec<Vec<u8>>,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head.status
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; also checks the content type.
    pub fn json(&self) -> Value {
        assert_eq!(self.header("content-type"), Some("application/json"), "content type of {}", self.text());
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// The generated or echoed request id.
    pub fn request_id(&self) -> &str {
        self.header("x-request-id").unwrap_or_else(|| panic!("no X-Request-Id in {:?}", self.head))
    }
}

// ---------------------------------------------------------------------------------
// The client

/// One client connection with its own read buffer.
pub struct Conn<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
        stream.set_write_timeout(Some(IO_TIMEOUT)).expect("write timeout");
        stream.set_nodelay(true).expect("nodelay");
        Conn::over(stream)
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).expect("read timeout");
    }

    /// Asserts that the server closes the connection within `within` without sending
    /// anything more.
    pub fn expect_closed(&mut self, within: Duration) {
        assert!(self.buf.is_empty(), "unread bytes before close: {:?}", String::from_utf8_lossy(&self.buf));
        self.set_read_timeout(within);
        match self.fill() {
            Ok(0) => {}
            Ok(_) => panic!("expected a close, got bytes: {:?}", String::from_utf8_lossy(&self.buf)),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected the server to close the connection within {within:?}: {e}"),
        }
        self.set_read_timeout(IO_TIMEOUT);
    }

    /// Asserts that the server resets the connection (RST) before sending a byte.
    pub fn expect_reset(&mut self) {
        assert!(self.buf.is_empty(), "unread bytes before reset: {:?}", String::from_utf8_lossy(&self.buf));
        match self.fill() {
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Ok(0) => panic!("expected a reset, got a clean close"),
            Ok(_) => panic!("expected a reset, got bytes: {:?}", String::from_utf8_lossy(&self.buf)),
            Err(e) => panic!("expected a reset, got {e}"),
        }
    }
}

impl<S: Read + Write> Conn<S> {
    /// A connection over an already open stream (e.g. TLS), timeouts set by the caller.
    pub fn over(stream: S) -> Conn<S> {
        Conn { stream, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap_or_else(|e| panic!("write failed: {e}"));
    }

    /// Writes one byte per `write` call, pausing between them so each leaves alone.
    pub fn send_bytewise(&mut self, bytes: &[u8], pause: Duration) {
        for b in bytes {
            self.stream.write_all(std::slice::from_ref(b)).unwrap_or_else(|e| panic!("write failed: {e}"));
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
    }

    /// Sends a request and reads its response (`HEAD` aware).
    pub fn exchange(&mut self, req: &Req) -> Response {
        self.send(&req.bytes());
        if req.method == "HEAD" {
            self.read_response_to_head()
        } else {
            self.read_response()
        }
    }

    /// `exchange`, or `None` if the connection broke on the way (the server died).
    pub fn try_exchange(&mut self, req: &Req) -> Option<Response> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.exchange(req))).ok()
    }

    fn fill(&mut self) -> std::io::Result<usize> {
        let mut tmp = [0u8; 16 * 1024];
        let n = self.stream.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    fn fill_or_panic(&mut self, what: &str) {
        match self.fill() {
            Ok(0) => {
                panic!("connection closed while reading {what}; unread bytes: {:?}", String::from_utf8_lossy(&self.buf))
            }
            Ok(_) => {}
            Err(e) => panic!("error reading {what}: {e}; unread bytes: {:?}", String::from_utf8_lossy(&self.buf)),
        }
    }

    /// Reads one response head.
    pub fn read_head(&mut self) -> Head {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..pos + 4).collect();
                return Head::parse(&head);
            }
            self.fill_or_panic("a response head");
        }
    }

    fn read_exact_buf(&mut self, n: usize, what: &str) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill_or_panic(what);
        }
        self.buf.drain(..n).collect()
    }

    fn read_line(&mut self, what: &str) -> String {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                return String::from_utf8_lossy(&line[..pos]).into_owned();
            }
            self.fill_or_panic(what);
        }
    }

    /// Reads one chunk of a chunked body; `None` at the last chunk (trailers consumed).
    pub fn read_chunk(&mut self) -> Option<Vec<u8>> {
        let line = self.read_line("a chunk size line");
        let digits = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(digits, 16).unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        if size == 0 {
            while !self.read_line("a trailer line").is_empty() {}
            return None;
        }
        let data = self.read_exact_buf(size, "chunk data");
        let crlf = self.read_exact_buf(2, "the CRLF after chunk data");
        assert_eq!(crlf, b"\r\n", "chunk data not followed by CRLF");
        Some(data)
    }

    /// Reads the body that follows `head` (for a response to a non-HEAD request).
    pub fn read_body(&mut self, head: Head) -> Response {
        let mut chunks = Vec::new();
        let body = if head.status < 200 || head.status == 204 || head.status == 304 {
            Vec::new()
        } else if head.is_chunked() {
            let mut body = Vec::new();
            while let Some(c) = self.read_chunk() {
                body.extend_from_slice(&c);
                chunks.push(c);
            }
            body
        } else if let Some(len) = head.header("content-length") {
            let n: usize = len.parse().unwrap_or_else(|_| panic!("bad content-length {len:?}"));
            self.read_exact_buf(n, "a content-length body")
        } else {
            self.read_to_eof()
        };
        Response { head, body, chunks }
    }

    pub fn read_response(&mut self) -> Response {
        let head = self.read_head();
        self.read_body(head)
    }

    /// Reads a response to a `HEAD` request: no body whatever the headers say.
    pub fn read_response_to_head(&mut self) -> Response {
        let head = self.read_head();
        Response { head, body: Vec::new(), chunks: Vec::new() }
    }

    /// Reads until the peer closes (a reset after data counts as the end).
    pub fn read_to_eof(&mut self) -> Vec<u8> {
        loop {
            match self.fill() {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("error reading to EOF: {e}; read so far {:?}", String::from_utf8_lossy(&self.buf)),
            }
        }
        std::mem::take(&mut self.buf)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
