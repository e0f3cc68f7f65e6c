//! What the mock received, exactly: the last `CAPACITY` requests (the `/__mock/*`
//! control endpoints excepted), shown at `GET /__mock/requests` and forgotten on
//! `POST /__mock/reset`, so tests can assert on the bytes the gateway sent.
//!
//! ```text
//! {"total": N,              requests recorded since start or reset
//!  "capacity": 64,
//!  "requests": [            oldest first
//!    {"seq": 1,             1-based position since start or reset
//!     "method": "POST",
//!     "target": "/path?query",
//!     "path": "/path", "query": "query" | null,
//!     "headers": {"name": "value", ...},   lower-case names; repeats joined by ", "
//!     "rawHeaders": [["name", "value"], ...], lower-case names, wire order
//!     "body": "...",        the raw body as a string (lossy if not UTF-8)
//!     "bodyBase64": "...",  only when the body is not UTF-8
//!     "json": {...} | null} the body parsed as JSON, when it parses
//!  ]}
//! ```
//! `GET /__mock/requests?path=/v1/messages` keeps only the requests to that path.
//! Requests are kept as parsed (`Request` holds its head and body as shared `Bytes`,
//! so keeping one is a header-index copy, no body copy) and rendered on demand.

use std::collections::VecDeque;

use clawgate::http::Request;

use crate::json::{push_base64, push_num, push_raw, push_str};

/// Requests kept.
pub const CAPACITY: usize = 64;

/// The ring of recent requests.
#[derive(Default)]
pub struct Recorder {
    total: u64,
    ring: VecDeque<(u64, Request)>,
}

impl Recorder {
    pub fn push(&mut self, req: &Request) {
        self.total += 1;
        if self.ring.len() == CAPACITY {
            self.ring.pop_front();
        }
        self.ring.push_back((self.total, req.clone()));
    }

    /// The JSON document above; `path` filters by exact path.
    pub fn render(&self, path: Option<&str>) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        push_raw(&mut out, "{\"total\":");
        push_num(&mut out, self.total);
        push_raw(&mut out, ",\"capacity\":");
        push_num(&mut out, CAPACITY as u64);
        push_raw(&mut out, ",\"requests\":[");
        let kept = self.ring.iter().filter(|(_, r)| path.is_none_or(|p| r.path() == p));
        for (i, (seq, req)) in kept.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            render(&mut out, *seq, req);
        }
        push_raw(&mut out, "]}");
        out
    }
}

fn render(out: &mut Vec<u8>, seq: u64, req: &Request) {
    push_raw(out, "{\"seq\":");
    push_num(out, seq);
    push_raw(out, ",\"method\":");
    push_str(out, req.method.as_str());
    push_raw(out, ",\"target\":");
    match req.query() {
        Some(q) => push_str(out, &format!("{}?{q}", req.path())),
        None => push_str(out, req.path()),
    }
    push_raw(out, ",\"path\":");
    push_str(out, req.path());
    push_raw(out, ",\"query\":");
    match req.query() {
        Some(q) => push_str(out, q),
        None => push_raw(out, "null"),
    }
    push_raw(out, ",\"headers\":");
    headers_object(out, req);
    push_raw(out, ",\"rawHeaders\":[");
    for (i, (name, value)) in req.headers().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        push_str(out, &String::from_utf8_lossy(name).to_ascii_lowercase());
        out.push(b',');
        push_str(out, &String::from_utf8_lossy(value));
        out.push(b']');
    }
    push_raw(out, "],\"body\":");
    match std::str::from_utf8(&req.body) {
        Ok(text) => push_str(out, text),
        Err(_) => {
            push_str(out, &String::from_utf8_lossy(&req.body));
            push_raw(out, ",\"bodyBase64\":\"");
            push_base64(out, &req.body);
            out.push(b'"');
        }
    }
    push_raw(out, ",\"json\":");
    if is_json(&req.body) {
        out.extend_from_slice(&req.body);
    } else {
        push_raw(out, "null");
    }
    out.push(b'}');
}

/// Whether `body` is one JSON value (then it can be embedded verbatim).
pub fn is_json(body: &[u8]) -> bool {
    !body.is_empty() && sonic_rs::from_slice::<sonic_rs::Value>(body).is_ok()
}

/// The headers as one object: lower-case names, repeated names joined with ", "
/// (RFC 9110 5.3), in order of first appearance.
pub fn headers_object(out: &mut Vec<u8>, req: &Request) {
    let mut headers: Vec<(String, String)> = Vec::new();
    for (name, value) in req.headers() {
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        let value = String::from_utf8_lossy(value).into_owned();
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push_str(", ");
                v.push_str(&value);
            }
            None => headers.push((name, value)),
        }
    }
    out.push(b'{');
    for (i, (name, value)) in headers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, name);
        out.push(b':');
        push_str(out, value);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw: &str, body: &[u8]) -> Request {
        let mut req = Request::from_head(bytes::Bytes::copy_from_slice(raw.as_bytes()), 64).unwrap();
        req.body = bytes::Bytes::copy_from_slice(body);
        req
    }

    #[test]
    fn keeps_the_last_requests_with_their_exact_bytes() {
        let mut rec = Recorder::default();
        for i in 0..CAPACITY + 2 {
            let head = format!("POST /p{i}?a=1 HTTP/1.1\r\nHost: x\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\n");
            rec.push(&request(&head, br#"{"n": 1}"#));
        }
        let v: serde_json::Value = serde_json::from_slice(&rec.render(None)).unwrap();
        assert_eq!(v["total"], CAPACITY as u64 + 2);
        let list = v["requests"].as_array().unwrap();
        assert_eq!(list.len(), CAPACITY);
        assert_eq!(list[0]["seq"], 3);
        let last = &list[CAPACITY - 1];
        assert_eq!(last["target"], format!("/p{}?a=1", CAPACITY + 1));
        assert_eq!(last["query"], "a=1");
        assert_eq!(last["headers"]["x-dup"], "1, 2");
        assert_eq!(last["rawHeaders"][2], serde_json::json!(["x-dup", "2"]));
        assert_eq!(last["body"], r#"{"n": 1}"#);
        assert_eq!(last["json"], serde_json::json!({"n": 1}));
        let v: serde_json::Value = serde_json::from_slice(&rec.render(Some("/p5"))).unwrap();
        assert_eq!(v["requests"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn binary_bodies_come_with_base64() {
        let mut rec = Recorder::default();
        rec.push(&request("POST / HTTP/1.1\r\nHost: x\r\n\r\n", &[0xff, 0x00, b'a', b'b']));
        let v: serde_json::Value = serde_json::from_slice(&rec.render(None)).unwrap();
        assert_eq!(v["requests"][0]["bodyBase64"], "/wBhYg==");
        assert!(v["requests"][0]["json"].is_null());
    }
}
