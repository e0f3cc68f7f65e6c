//! Request heads: parsed by `httparse` from the connection's read buffer, then frozen
//! into a `Request` that keeps the head bytes (`Bytes`, no copy) and byte ranges for
//! the path, query and headers. Header lookups are a linear scan over at most
//! `max_headers` entries with ASCII case-insensitive compare: cheaper than building a
//! map for the handful of lookups a request makes.
//!
//! Framing rules (RFC 9112) that guard against smuggling are enforced here: both
//! `Content-Length` and `Transfer-Encoding`, conflicting lengths, or a transfer coding
//! other than `chunked` are rejected and close the connection.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::error::{ApiError, ErrorCode};

/// Request methods the gateway routes on; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Other,
}

impl Method {
    fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other => "OTHER",
        }
    }
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

type Span = (u32, u32);

/// A parsed request: head bytes plus spans, and the body once it has been read.
#[derive(Debug, Clone)]
pub struct Request {
    head: Bytes,
    pub method: Method,
    path: Span,
    query: Option<Span>,
    headers: Vec<(Span, Span)>,
    /// The first `Origin` header's value, noted in the parse pass (CORS reads it for
    /// every request: no second scan).
    origin: Option<Span>,
    /// HTTP/1.x minor version.
    pub minor: u8,
    pub body_kind: BodyKind,
    /// Whether the client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub body: Bytes,
    pub peer: Option<SocketAddr>,
}

/// Outcome of trying to parse a head from the front of a buffer.
#[derive(Debug)]
pub enum Parsed {
    /// A whole head of this many bytes.
    Complete(usize),
    /// More bytes are needed.
    Partial,
}

/// Checks whether `buf` starts with a complete head, enforcing the size limits.
/// (`Request::take` does the same and builds the request in the same pass.)
pub fn probe_head(buf: &[u8], max_head: usize, max_headers: usize) -> Result<Parsed, ApiError> {
    Ok(match parse(buf, max_head, max_headers)? {
        Some((n, _)) => Parsed::Complete(n),
        None => Parsed::Partial,
    })
}

/// The most header fields any configuration may allow.
pub const MAX_HEADERS_HARD: usize = 256;

fn head_too_large() -> ApiError {
    ApiError::new(ErrorCode::HeadersTooLarge, "request head exceeds the size limit").closing()
}

/// One `httparse` pass over the front of `buf`: `None` if the head is incomplete,
/// else its length and the request with spans relative to `buf`'s start (head bytes
/// not yet attached). Header storage is uninitialised stack space: no per-request
/// memset of 256 header slots.
fn parse(buf: &[u8], max_head: usize, max_headers: usize) -> Result<Option<(usize, Request)>, ApiError> {
    let mut storage = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_HARD];
    let limit = max_headers.clamp(1, MAX_HEADERS_HARD);
    let mut parsed = httparse::Request::new(&mut []);
    let n = match parsed.parse_with_uninit_headers(buf, &mut storage[..limit]) {
        Ok(httparse::Status::Complete(n)) if n > max_head => return Err(head_too_large()),
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > max_head => return Err(head_too_large()),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(
                ApiError::new(ErrorCode::HeadersTooLarge, format!("too many header fields (limit {limit})")).closing()
            )
        }
        Err(e) => return Err(ApiError::invalid(format!("malformed request head: {e}")).closing()),
    };
    let base = buf.as_ptr() as usize;
    let span = |s: &[u8]| -> Span {
        let start = s.as_ptr() as usize - base;
        (start as u32, (start + s.len()) as u32)
    };
    let method = Method::parse(parsed.method.unwrap_or(""));
    let target = parsed.path.unwrap_or("/");
    if !target.starts_with('/') {
        return Err(ApiError::invalid("request target must be an absolute path").closing());
    }
    let (path, query) = match target.find('?') {
        Some(q) => (&target[..q], Some(&target[q + 1..])),
        None => (target, None),
    };
    let minor = parsed.version.unwrap_or(1);
    let mut headers = Vec::with_capacity(parsed.headers.len());
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    let mut hosts = 0u32;
    let mut origin: Option<Span> = None;
    for h in parsed.headers.iter() {
        headers.push((span(h.name.as_bytes()), span(h.value)));
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let v = parse_length(h.value)?;
            if content_length.is_some_and(|old| old != v) {
                return Err(ApiError::invalid("conflicting Content-Length headers").closing());
            }
            content_length = Some(v);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let v = trim(h.value);
            if chunked || !v.eq_ignore_ascii_case(b"chunked") {
                return Err(
                    ApiError::new(ErrorCode::NotImplemented, "only Transfer-Encoding: chunked is supported").closing()
                );
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',') {
                let t = trim(token);
                if t.eq_ignore_ascii_case(b"close") {
                    conn_close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    conn_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue = trim(h.value).eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if origin.is_none() && name.eq_ignore_ascii_case("origin") {
            origin = Some(span(h.value));
        }
    }
    // RFC 9112 section 3.2: 400 to an HTTP/1.1 request without Host, and to any
    // request with more than one.
    if hosts > 1 || (minor >= 1 && hosts == 0) {
        let why = if hosts > 1 { "more than one Host header" } else { "HTTP/1.1 requests need a Host header" };
        return Err(ApiError::invalid(why).closing());
    }
    let body_kind = match (content_length, chunked) {
        (Some(_), true) => {
            return Err(ApiError::invalid("both Content-Length and Transfer-Encoding are present").closing())
        }
        (Some(0), false) | (None, false) => BodyKind::None,
        (Some(n), false) => BodyKind::Length(n),
        (None, true) => BodyKind::Chunked,
    };
    let keep_alive = if minor == 0 { conn_keep_alive && !conn_close } else { !conn_close };
    let req = Request {
        method,
        path: span(path.as_bytes()),
        query: query.map(|q| span(q.as_bytes())),
        headers,
        origin,
        minor,
        body_kind,
        keep_alive,
        expect_continue,
        body: Bytes::new(),
        peer: None,
        head: Bytes::new(),
    };
    Ok(Some((n, req)))
}

impl Request {
    /// Parses a head off the front of `buf` in one pass: `Ok(None)` while it is
    /// incomplete; otherwise the head bytes are split off `buf` (no copy) and owned by
    /// the request, and any pipelined bytes stay in `buf`.
    pub fn take(buf: &mut bytes::BytesMut, max_head: usize, max_headers: usize) -> Result<Option<Request>, ApiError> {
        let Some((n, mut req)) = parse(buf, max_head, max_headers)? else { return Ok(None) };
        req.head = buf.split_to(n).freeze();
        Ok(Some(req))
    }

    /// Builds a request from exactly one complete head (as found by `probe_head`).
    pub fn from_head(head: Bytes, max_headers: usize) -> Result<Request, ApiError> {
        match parse(&head, usize::MAX, max_headers)? {
            Some((_, mut req)) => {
                req.head = head;
                Ok(req)
            }
            None => Err(ApiError::invalid("malformed request head").closing()),
        }
    }

    fn slice(&self, (a, b): Span) -> &[u8] {
        self.head.get(a as usize..b as usize).unwrap_or_default()
    }

    fn str_of(&self, span: Span) -> &str {
        // Path and query come from httparse's `&str`; header values may be any bytes.
        std::str::from_utf8(self.slice(span)).unwrap_or("")
    }

    /// The path without the query string, e.g. `/api/chat`.
    pub fn path(&self) -> &str {
        self.str_of(self.path)
    }

    /// The raw query string without `?`.
    pub fn query(&self) -> Option<&str> {
        self.query.map(|q| self.str_of(q))
    }

    /// First value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let q = self.query()?;
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k).as_deref() == Some(name)).then(|| percent_decode(v)).flatten()
        })
    }

    /// First value of a header as bytes.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find_map(|&(n, v)| self.slice(n).eq_ignore_ascii_case(name.as_bytes()).then(|| self.slice(v)))
    }

    /// First value of a header, if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_bytes(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The `Origin` header's value (browsers send it on cross-origin requests and
    /// WebSocket upgrades), without a header scan: its place was noted when parsing.
    pub fn origin(&self) -> Option<&[u8]> {
        self.origin.map(|o| self.slice(o))
    }

    /// Whether a comma-separated header contains `token` (case-insensitive).
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers.iter().any(|&(n, v)| {
            self.slice(n).eq_ignore_ascii_case(name.as_bytes())
                && self.slice(v).split(|b| *b == b',').any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// All headers as (name, value) byte pairs.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers.iter().map(|&(n, v)| (self.slice(n), self.slice(v)))
    }

    /// Size of the head in bytes.
    pub fn head_len(&self) -> usize {
        self.head.len()
    }
}

fn parse_length(v: &[u8]) -> Result<u64, ApiError> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(ApiError::invalid("invalid Content-Length").closing());
    }
    Ok(v.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0')))
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &v[start..end]
}

/// Decodes `%XX` and `+` in a query component; `None` when the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    decode(s, true)
}

/// Decodes `%XX` in a path segment (`+` stays a `+` there, RFC 3986); `None` when the
/// result is not UTF-8.
pub fn percent_decode_path(s: &str) -> Option<String> {
    decode(s, false)
}

fn decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &str) -> Result<Request, ApiError> {
        let bytes = Bytes::copy_from_slice(raw.as_bytes());
        match probe_head(&bytes, 16384, 64)? {
            Parsed::Complete(n) => Request::from_head(bytes.slice(..n), 64),
            Parsed::Partial => panic!("partial"),
        }
    }

    #[test]
    fn parses_path_query_and_headers() {
        let r =
            req("GET /api/sessions?limit=5&channel=a%20b HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc\r\n\r\n").unwrap();
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path(), "/api/sessions");
        assert_eq!(r.query_param("limit").as_deref(), Some("5"));
        assert_eq!(r.query_param("channel").as_deref(), Some("a b"));
        assert_eq!(r.header("x-request-id"), Some("abc"));
        assert_eq!(r.origin(), None);
        assert!(r.keep_alive);
        assert_eq!(r.body_kind, BodyKind::None);
    }

    #[test]
    fn the_origin_is_noted_in_the_parse_pass() {
        let r = req("OPTIONS /v1/models HTTP/1.1\r\nHost: x\r\norigin: http://app.example\r\nOrigin: http://b\r\n\r\n");
        assert_eq!(r.unwrap().origin(), Some(&b"http://app.example"[..]));
    }

    #[test]
    fn head_split_at_every_offset_is_partial_until_complete() {
        let raw = b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
        let head_len = raw.len() - 2;
        for cut in 0..head_len {
            assert!(matches!(probe_head(&raw[..cut], 16384, 64), Ok(Parsed::Partial)), "cut {cut}");
        }
        assert!(matches!(probe_head(&raw[..head_len], 16384, 64), Ok(Parsed::Complete(n)) if n == head_len));
    }

    #[test]
    fn rejects_smuggling_shapes() {
        assert!(req("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(req("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n").is_err());
        assert!(req("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").is_err());
        assert!(req("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n").is_err());
        assert!(req("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n").is_ok());
    }

    #[test]
    fn oversized_head_is_431() {
        let long = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
        let err = probe_head(long.as_bytes(), 16384, 64).unwrap_err();
        assert_eq!(err.status(), 431);
        let err = probe_head(&long.as_bytes()[..17_000], 16384, 64).unwrap_err();
        assert_eq!(err.status(), 431);
    }

    #[test]
    fn http10_closes_unless_keep_alive() {
        assert!(!req("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap().keep_alive);
        assert!(!req("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap().keep_alive);
    }

    #[test]
    fn host_must_appear_exactly_once_on_http11() {
        for raw in ["GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"] {
            let err = req(raw).unwrap_err();
            assert_eq!((err.status(), err.close), (400, true), "{raw:?}");
        }
        assert!(req("GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n").is_err());
        assert!(req("GET / HTTP/1.0\r\n\r\n").is_ok());
        assert!(req("GET / HTTP/1.1\r\nhOsT: a\r\n\r\n").is_ok());
    }

    #[test]
    fn paths_decode_percent_escapes_but_keep_plus() {
        assert_eq!(percent_decode_path("org%2Fembed-small").as_deref(), Some("org/embed-small"));
        assert_eq!(percent_decode_path("a+b%2b").as_deref(), Some("a+b+"));
        assert_eq!(percent_decode("a+b").as_deref(), Some("a b"));
        assert_eq!(percent_decode_path("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode_path("%ff"), None);
    }

    #[test]
    fn garbage_is_a_closing_400() {
        let err = probe_head(b"\x16\x03\x01\x02\x00garbage\r\n\r\n", 16384, 64).unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.close);
    }
}
