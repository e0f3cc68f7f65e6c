//! The upstream HTTP/1.1 client that carries turns to model providers. One `Client`
//! per worker holds that core's keep-alive pools (no sharing, no locks). A call is:
//! resolve (cache, or the resolver thread: DNS never blocks a worker) -> check out an
//! idle connection or connect (TCP, then TLS by rustls) -> write the request head and
//! body in one write -> read the response head (first-byte deadline) -> hand back a
//! `BodyReader` that yields body pieces as they arrive (`Bytes` split off the read
//! buffer, no copy), each read bounded by the chunk-gap deadline. A body read to its
//! end on a keep-alive response returns the connection to the pool; a body dropped
//! early (client gone) or broken closes the connection, so a broken connection is
//! never reused and the provider sees the cancel.
//!
//! Retries and fallbacks are policy and live in `provider`; this layer only says
//! whether an error is safe to retry (`UpstreamError::retryable`).

pub mod dns;
pub mod io;
pub mod pool;
pub mod response;
pub mod sse;
pub mod tls;

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

pub use pool::Pool;
pub use response::{BodyReader, UpResponse};

/// Where a provider lives, parsed once from its `base_url`.
#[derive(Clone)]
pub struct Endpoint {
    pub tls: Option<tls::Connector>,
    pub host: String,
    pub port: u16,
    /// Path prefix from the base URL, without a trailing `/` (e.g. `/v1`).
    pub base_path: String,
    /// `host` or `host:port` for the `Host` header.
    pub authority: String,
    /// Pool key: `scheme://host:port`.
    pub key: Rc<str>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key)
    }
}

impl Endpoint {
    /// Parses `http(s)://host[:port][/path]`.
    pub fn parse(base_url: &str, tls: Option<tls::Connector>) -> Result<Endpoint, String> {
        let (https, rest) = if let Some(r) = base_url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = base_url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("base_url {base_url} must start with http:// or https://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, tail) = v6.split_once(']').ok_or_else(|| format!("bad IPv6 host in {base_url}"))?;
            let port = match tail.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("bad port in {base_url}"))?,
                None => default_port,
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| format!("bad port in {base_url}"))?),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("base_url {base_url} has no host"));
        }
        if https && tls.is_none() {
            return Err(format!("base_url {base_url} needs TLS but no TLS config was given"));
        }
        let scheme = if https { "https" } else { "http" };
        Ok(Endpoint {
            tls: if https { tls } else { None },
            key: Rc::from(format!("{scheme}://{host}:{port}")),
            authority: authority.to_string(),
            host,
            port,
            base_path: path.trim_end_matches('/').to_string(),
        })
    }
}

/// Deadlines for one call.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub chunk: Duration,
    pub total: Duration,
}

/// Why an upstream call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// DNS, TCP connect or TLS handshake failed: the request was never sent.
    Connect(String),
    /// A deadline passed (`phase` says which).
    Timeout(&'static str),
    /// The connection broke; `sent` tells whether the provider may have seen it.
    Io { message: String, before_response: bool },
    /// The provider answered with a non-success status. `message`, `error_type` and
    /// `error_code` are what its error body said (when it said it in a known shape);
    /// `context_length` marks a prompt longer than the model's context window.
    Status {
        status: u16,
        retry_after: Option<Duration>,
        message: String,
        error_type: Option<String>,
        error_code: Option<String>,
        context_length: bool,
    },
    /// The provider's bytes made no sense.
    Protocol(String),
    /// This worker's budget for buffered answers (`server.upstream_body_budget_mb`) is
    /// spent by answers being read: the call is given up, the client told to retry.
    Overloaded(String),
}

impl UpstreamError {
    /// Whether retrying (after backoff) may succeed: connect failures, resets before
    /// the response, 429, 500, 502, 503, 504, 529, and first-byte timeouts.
    pub fn retryable(&self) -> bool {
        match self {
            UpstreamError::Connect(_) => true,
            UpstreamError::Timeout(phase) => *phase != "total",
            UpstreamError::Io { before_response, .. } => *before_response,
            UpstreamError::Status { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504 | 529),
            UpstreamError::Protocol(_) | UpstreamError::Overloaded(_) => false,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, UpstreamError::Timeout(_))
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            UpstreamError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl UpstreamError {
    /// What a client may be told: the kind of failure, never an address or a host
    /// name (those stay in `Display`, for the log).
    pub fn client_message(&self) -> String {
        match self {
            UpstreamError::Connect(_) => "could not connect to the provider".to_string(),
            UpstreamError::Timeout(phase) => format!("timed out waiting for the {phase}"),
            UpstreamError::Io { .. } => "the connection to the provider broke".to_string(),
            UpstreamError::Status { status, message, .. } if message.is_empty() => {
                format!("provider answered {status}")
            }
            UpstreamError::Status { status, message, .. } => format!("provider answered {status}: {message}"),
            UpstreamError::Overloaded(_) => {
                "the gateway is buffering too many provider answers at once; retry shortly".to_string()
            }
            // The gateway wrote these reasons itself: their first line, printable only.
            UpstreamError::Protocol(m) => {
                let line: String = m.lines().next().unwrap_or_default().chars().take(200).collect();
                let clean: String = line.chars().filter(|c| !c.is_control()).collect();
                format!("the provider sent an unusable answer: {clean}")
            }
        }
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(m) => write!(f, "cannot connect: {m}"),
            UpstreamError::Timeout(phase) => write!(f, "timed out waiting for the {phase}"),
            UpstreamError::Io { message, .. } => write!(f, "connection failed: {message}"),
            UpstreamError::Status { status, message, .. } => write!(f, "provider answered {status}: {message}"),
            UpstreamError::Protocol(m) => write!(f, "bad response: {m}"),
            UpstreamError::Overloaded(m) => write!(f, "overloaded: {m}"),
        }
    }
}

/// A request to send, with a JSON body.
pub struct Outgoing<'a> {
    /// `POST` for providers; the chat platforms' send APIs also take `PATCH` (Discord).
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Bytes,
}

/// One worker's HTTP client.
#[derive(Default)]
pub struct Client {
    pool: Rc<Pool>,
    dns: dns::Cache,
}

impl Client {
    pub fn new() -> Self {
        Client::default()
    }

    /// Sends `req` and waits for the response head. A pooled connection that turns out
    /// to be dead before any response byte is replaced by a fresh one, once.
    pub async fn send(&self, ep: &Endpoint, req: &Outgoing<'_>, t: Timeouts) -> Result<UpResponse, UpstreamError> {
        let started = Instant::now();
        let mut head = BytesMut::with_capacity(256 + req.body.len());
        encode_request(&mut head, ep, req);
        head.put_slice(&req.body);
        let wire = head.freeze();
        if let Some(conn) = self.pool.checkout(&ep.key) {
            match response::exchange(conn, wire.clone(), ep, &self.pool, t, started).await {
                Err(UpstreamError::Io { before_response: true, .. }) => {}
                other => return other,
            }
        }
        let conn = io::connect(ep, &self.dns, t.connect).await?;
        response::exchange(conn, wire, ep, &self.pool, t, started).await
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

fn encode_request(out: &mut BytesMut, ep: &Endpoint, req: &Outgoing<'_>) {
    out.put_slice(req.method.as_bytes());
    out.put_slice(b" ");
    out.put_slice(ep.base_path.as_bytes());
    out.put_slice(req.path.as_bytes());
    out.put_slice(b" HTTP/1.1\r\nhost: ");
    out.put_slice(ep.authority.as_bytes());
    // `identity`: providers may compress an answer unless told not to (RFC 9110
    // section 12.5.3); the gateway relays and parses bodies as they are.
    out.put_slice(b"\r\naccept-encoding: identity\r\ncontent-type: application/json\r\ncontent-length: ");
    crate::http::response::put_u64(out, req.body.len() as u64);
    out.put_slice(b"\r\n");
    for (name, value) in req.headers {
        out.put_slice(name.as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_scheme_host_port_and_path() {
        let e = Endpoint::parse("http://127.0.0.1:9000/v1/", None).unwrap();
        assert_eq!((e.host.as_str(), e.port, e.base_path.as_str()), ("127.0.0.1", 9000, "/v1"));
        assert_eq!(&*e.key, "http://127.0.0.1:9000");
        let e = Endpoint::parse("http://[::1]:8080", None).unwrap();
        assert_eq!((e.host.as_str(), e.port, e.base_path.as_str()), ("::1", 8080, ""));
        assert!(Endpoint::parse("ftp://x", None).is_err());
        assert!(Endpoint::parse("https://api.openai.com/v1", None).is_err());
    }

    #[test]
    fn retry_policy_matches_the_contract() {
        let status = |s| UpstreamError::Status {
            status: s,
            retry_after: None,
            message: String::new(),
            error_type: None,
            error_code: None,
            context_length: false,
        };
        for s in [429, 500, 502, 503, 504, 529] {
            assert!(status(s).retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 422] {
            assert!(!status(s).retryable(), "{s}");
        }
        assert!(UpstreamError::Connect("x".into()).retryable());
        assert!(!UpstreamError::Io { message: "x".into(), before_response: false }.retryable());
    }
}
