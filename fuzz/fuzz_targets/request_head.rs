//! The front door's request-head parser: `probe_head`, `Request::take` and
//! `Request::from_head` on arbitrary bytes, under a few limit settings, then every
//! accessor a handler uses (path, query, headers, routing, the WebSocket handshake,
//! the `Authorization` check).
//!
//! Input: byte 0 picks the limits, the rest is what the client sent.
//! Checked: no panic; `probe_head` and `take` agree; a head that `probe_head` accepted
//! is accepted by `from_head`; `take` splits off exactly the head and leaves any
//! pipelined bytes in the buffer.
#![no_main]

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use clawgate::auth::KeyStore;
use clawgate::config::Config;
use clawgate::http::request::{percent_decode, probe_head, Parsed};
use clawgate::http::Request;
use libfuzzer_sys::fuzz_target;

/// (max head bytes, max header fields): the defaults, tight limits, and extremes.
const LIMITS: [(usize, usize); 6] = [(16_384, 64), (64, 4), (256, 1), (8_192, 256), (0, 0), (1 << 20, 1_000)];

fn keys() -> &'static KeyStore {
    static KEYS: OnceLock<KeyStore> = OnceLock::new();
    KEYS.get_or_init(|| {
        let toml = "[server]\nlisten = \"127.0.0.1:0\"\n[[keys]]\nname = \"fuzz\"\nkey = \"sk-fuzz-key\"\n";
        let config = Config::from_toml_str(toml, None).unwrap_or_else(|_| Config::builtin_default());
        KeyStore::new(&config)
    })
}

fn exercise(req: &Request) {
    let path = req.path();
    let _ = req.query();
    let _ = req.query_param("limit");
    let _ = req.query_param("");
    let _ = req.header("host");
    let _ = req.header_bytes("content-type");
    let _ = req.header_has_token("connection", "upgrade");
    let _ = req.header_has_token("accept", "text/event-stream");
    let mut total = 0usize;
    for (name, value) in req.headers() {
        total += name.len() + value.len();
    }
    assert!(total <= req.head_len());
    let _ = req.method.as_str();
    if let Some(q) = req.query() {
        for pair in q.split('&') {
            let _ = percent_decode(pair);
        }
    }
    let shape = clawgate::router::error_shape(path);
    let _ = clawgate::router::route_index(req.method, path);
    match clawgate::router::route(req.method, path) {
        Ok(route) => {
            let _ = (route.label(), route.needs_auth(), route.error_shape(), route.index());
        }
        Err(e) => {
            let _ = clawgate::api::error_response(&e, shape);
        }
    }
    let _ = clawgate::ws::handshake::accept_key(req);
    let _ = keys().authenticate_header(req.header_bytes("authorization"));
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, raw)) = data.split_first() else { return };
    let (max_head, max_headers) = LIMITS[usize::from(pick) % LIMITS.len()];

    let probed = probe_head(raw, max_head, max_headers);
    let mut buf = BytesMut::from(raw);
    let taken = Request::take(&mut buf, max_head, max_headers);
    match (&probed, &taken) {
        (Ok(Parsed::Complete(n)), Ok(Some(req))) => {
            assert_eq!(req.head_len(), *n, "take and probe_head disagree on the head length");
            assert_eq!(&buf[..], &raw[*n..], "take must leave the pipelined bytes");
            exercise(req);
            // The mock upstream's path: probe, then build from exactly the head.
            let again = Request::from_head(Bytes::copy_from_slice(&raw[..*n]), max_headers)
                .unwrap_or_else(|e| panic!("from_head refused a head probe_head accepted: {}", e.message));
            assert_eq!(again.path(), req.path());
            assert_eq!(again.body_kind, req.body_kind);
            assert_eq!(again.keep_alive, req.keep_alive);
            exercise(&again);
        }
        (Ok(Parsed::Partial), Ok(None)) => assert_eq!(&buf[..], raw, "a partial head must not be consumed"),
        (Err(a), Err(b)) => {
            assert_eq!(a.status(), b.status());
            assert!(a.close && b.close, "a refused head must close the connection");
        }
        _ => panic!("probe_head and take disagree: {probed:?} vs {:?}", taken.as_ref().map(Option::is_some)),
    }
});
