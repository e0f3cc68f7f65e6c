//! The request path without sockets: parse a head with our `probe_head` +
//! `Request::from_head`, route it, and render a JSON envelope, against the naive
//! alternative (an owned `HashMap<String, String>` of headers and `serde_json` to a
//! `String`). Also the chat body: sonic-rs borrowed parse vs serde_json into owned
//! structs. Run: `cargo bench --bench request_path`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hint::black_box;

use bytes::Bytes;
use clawgate::http::request::{probe_head, Parsed, Request};
use clawgate::router;
use criterion::{criterion_group, criterion_main, Criterion};

const HEAD: &[u8] = b"POST /api/v1/chat HTTP/1.1\r\nHost: gateway.example.com\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\nAuthorization: Bearer sk-clawgate-demo-user\r\nContent-Type: application/json\r\nContent-Length: 98\r\nX-Request-Id: abc-123\r\n\r\n";
const BODY: &[u8] =
    br#"{"channel":"api","message":"Hello there, how are you today?","sessionId":"session-123","stream":false}"#;

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Borrowed<'a> {
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "sessionId")]
    session_id: Option<Cow<'a, str>>,
    stream: Option<bool>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Owned {
    channel: Option<String>,
    message: Option<String>,
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
    stream: Option<bool>,
}

#[derive(serde::Serialize)]
struct Reply<'a> {
    success: bool,
    data: &'a str,
    timestamp: &'a str,
}

fn ours(head: &Bytes) -> usize {
    let Ok(Parsed::Complete(n)) = probe_head(head, 16384, 64) else { return 0 };
    let Ok(req) = Request::from_head(head.slice(..n), 64) else { return 0 };
    let route = router::route(req.method, req.path());
    let auth = req.header_bytes("authorization").map_or(0, <[u8]>::len);
    let body =
        sonic_rs::to_vec(&Reply { success: true, data: "ok", timestamp: "2026-03-10T08:30:00Z" }).unwrap_or_default();
    body.len() + auth + usize::from(route.is_ok())
}

fn naive(head: &[u8]) -> usize {
    let text = String::from_utf8_lossy(head).into_owned();
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let path = first.split(' ').nth(1).unwrap_or("/").to_string();
    let headers: HashMap<String, String> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string())).collect();
    let route = path.trim_start_matches("/api/v1").to_string();
    let auth = headers.get("authorization").map_or(0, String::len);
    let body =
        serde_json::to_string(&serde_json::json!({"success": true, "data": "ok", "timestamp": "2026-03-10T08:30:00Z"}))
            .unwrap_or_default();
    body.len() + auth + route.len()
}

fn request_path(c: &mut Criterion) {
    let head = Bytes::from_static(HEAD);
    let mut g = c.benchmark_group("request_path");
    g.bench_function("ours_parse_route_render", |b| b.iter(|| ours(black_box(&head))));
    g.bench_function("naive_parse_route_render", |b| b.iter(|| naive(black_box(HEAD))));
    g.finish();

    let mut g = c.benchmark_group("chat_body");
    g.bench_function("sonic_borrowed", |b| {
        b.iter(|| sonic_rs::from_slice::<Borrowed<'_>>(black_box(BODY)).map(|p| p.message.map_or(0, |m| m.len())))
    });
    g.bench_function("serde_json_owned", |b| {
        b.iter(|| serde_json::from_slice::<Owned>(black_box(BODY)).map(|p| p.message.map_or(0, |m| m.len())))
    });
    g.finish();
}

criterion_group!(benches, request_path);
criterion_main!(benches);
