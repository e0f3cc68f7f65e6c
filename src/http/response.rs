//! Responses: a status, a few headers and a body that is either whole (`Bytes`, sent
//! with `Content-Length`) or a stream of SSE events (sent chunked, one chunk per event,
//! flushed as each is produced). `write_head` encodes the head straight into the
//! connection's output buffer; no intermediate `String`s.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use bytes::{BufMut, Bytes, BytesMut};

/// A source of already-framed SSE events (see `http::sse`). `None` ends the stream.
/// Dropping it cancels whatever produces the events (e.g. the upstream call).
pub trait EventStream {
    fn next_event(&mut self) -> Pin<Box<dyn Future<Output = Option<Bytes>> + '_>>;
}

/// A response body.
pub enum Body {
    Empty,
    Full(Bytes),
    Sse(Box<dyn EventStream>),
    /// A `101 Switching Protocols`: after the head, the connection loop hands the
    /// socket and this opaque value to whoever made it (the server downcasts it to
    /// `ws::Upgrade`); the codec knows nothing of the protocol switched to.
    Upgrade(Box<dyn std::any::Any>),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Empty"),
            Body::Full(b) => write!(f, "Full({} bytes)", b.len()),
            Body::Sse(_) => f.write_str("Sse"),
            Body::Upgrade(_) => f.write_str("Upgrade"),
        }
    }
}

pub type HeaderValue = Cow<'static, str>;

/// A response under construction.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, HeaderValue)>,
    pub body: Body,
    /// Close the connection after this response.
    pub close: bool,
    /// What the access log says of the request beyond the HTTP exchange.
    pub log: crate::log::LogFields,
}

impl Response {
    pub fn new(status: u16, body: Body) -> Self {
        Response { status, headers: Vec::with_capacity(8), body, close: false, log: crate::log::LogFields::default() }
    }

    /// A JSON body.
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        let mut r = Response::new(status, Body::Full(body.into()));
        r.headers.push(("content-type", Cow::Borrowed("application/json")));
        r
    }

    /// An SSE stream.
    pub fn sse(stream: Box<dyn EventStream>) -> Self {
        let mut r = Response::new(200, Body::Sse(stream));
        r.headers.push(("content-type", Cow::Borrowed("text/event-stream")));
        r.headers.push(("cache-control", Cow::Borrowed("no-cache")));
        r.headers.push(("x-accel-buffering", Cow::Borrowed("no")));
        r
    }

    pub fn header(mut self, name: &'static str, value: impl Into<HeaderValue>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn push_header(&mut self, name: &'static str, value: impl Into<HeaderValue>) {
        self.headers.push((name, value.into()));
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

/// The reason phrase for the statuses the gateway sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Site Overloaded",
        _ => "Unknown",
    }
}

/// How the body that follows the head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
    /// No body and no framing headers (`101 Switching Protocols`, `204 No Content`).
    None,
    /// A body that ends when the connection closes (streams to HTTP/1.0 clients,
    /// which must not be sent `Transfer-Encoding`).
    Close,
}

/// Encodes the status line and headers (plus framing and `Connection`) into `out`,
/// for an HTTP/1.1 client.
pub fn write_head(out: &mut BytesMut, resp: &Response, framing: Framing, keep_alive: bool) {
    write_head_for(out, resp, framing, keep_alive, false);
}

/// As `write_head`; an HTTP/1.0 client (`http10`) kept alive is told so with
/// `Connection: keep-alive`, since 1.0 closes by default.
pub fn write_head_for(out: &mut BytesMut, resp: &Response, framing: Framing, keep_alive: bool, http10: bool) {
    out.reserve(128 + resp.headers.len() * 48);
    out.put_slice(b"HTTP/1.1 ");
    put_u64(out, u64::from(resp.status));
    out.put_u8(b' ');
    out.put_slice(reason(resp.status).as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in &resp.headers {
        out.put_slice(name.as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) => {
            out.put_slice(b"content-length: ");
            put_u64(out, n as u64);
            out.put_slice(b"\r\n");
        }
        Framing::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None | Framing::Close => {}
    }
    if !keep_alive {
        out.put_slice(b"connection: close\r\n");
    } else if http10 {
        out.put_slice(b"connection: keep-alive\r\n");
    }
    out.put_slice(b"\r\n");
}

/// Appends the decimal form of `n` without going through `fmt`.
pub fn put_u64(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_has_status_headers_and_length() {
        let r = Response::json(404, &b"{}"[..]).header("x-request-id", "abc");
        let mut out = BytesMut::new();
        write_head(&mut out, &r, Framing::Length(2), false);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\nx-request-id: abc\r\ncontent-length: 2\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn writes_numbers() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            let mut out = BytesMut::new();
            put_u64(&mut out, n);
            assert_eq!(&out[..], n.to_string().as_bytes());
        }
    }
}
