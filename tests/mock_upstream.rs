//! Smoke test of the `mock_upstream` binary that the gateway's integration and load
//! tests rely on: it is started on port 0 like they start it, and spoken to over a raw
//! `std::net::TcpStream` (and rustls for HTTPS), so the bytes checked here are the
//! bytes the gateway's upstream client will see: both providers' JSON and SSE shapes,
//! an injected status with `Retry-After`, a reset before the head, a fail-key that
//! fails only the first tries, and the stats endpoint.

// Test helpers outside `#[test]` functions are not covered by clippy.toml's
// allow-*-in-tests; a failed expectation here should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// A running mock, killed when dropped.
struct Mock {
    child: Child,
    addr: SocketAddr,
}

impl Mock {
    fn start(extra: &[&str]) -> Mock {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mock_upstream"))
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mock_upstream");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines.next().expect("mock_upstream exited before listening").expect("read stderr");
            if let Some(rest) = line.strip_prefix("mock_upstream listening on ") {
                let hostport = rest.split("://").nth(1).expect("scheme");
                break hostport.parse().expect("address");
            }
        };
        // Keep draining stderr so the mock never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Mock { child, addr }
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed response: status, lower-cased headers, de-chunked body.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (n, v) in headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    raw.into_bytes()
}

/// Sends one request with `Connection: close` and reads the answer to EOF.
fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(&request(method, path, headers, body))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    Ok(parse(&raw))
}

fn parse(raw: &[u8]) -> Resp {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("complete head");
    let head = std::str::from_utf8(&raw[..split]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(n, v)| n == "transfer-encoding" && v == "chunked") {
        body = dechunk(&body);
    }
    Resp { status, headers, body: String::from_utf8(body).expect("UTF-8 body") }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap(), 16).unwrap();
        b = &b[eol + 2..];
        if size == 0 {
            assert_eq!(b, b"\r\n", "body ends with the last chunk");
            return out;
        }
        out.extend_from_slice(&b[..size]);
        assert_eq!(&b[size..size + 2], b"\r\n");
        b = &b[size + 2..];
    }
}

/// The `data:` payloads of an SSE body, with their event names.
fn events(body: &str) -> Vec<(Option<String>, String)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = None;
            let mut data = Vec::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push(d);
                }
            }
            (name, data.join("\n"))
        })
        .collect()
}

const OPENAI: &[(&str, &str)] = &[("Authorization", "Bearer sk-test"), ("Content-Type", "application/json")];
const ANTHROPIC: &[(&str, &str)] = &[("x-api-key", "sk-ant-test"), ("anthropic-version", "2023-06-01")];

#[test]
fn openai_json_and_stream_follow_the_wire_format() {
    let mock = Mock::start(&[]);
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"one two three four"}]}"#;
    let r = send(mock.addr, "POST", "/v1/chat/completions", OPENAI, body).unwrap();
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["choices"][0]["message"]["content"], "Echo: one two three four");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"], serde_json::json!({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}));

    let body = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"one two three four"}]}"#;
    let r = send(mock.addr, "POST", "/v1/chat/completions", OPENAI, body).unwrap();
    assert_eq!(r.header("content-type"), Some("text/event-stream; charset=utf-8"));
    let ev = events(&r.body);
    assert_eq!(ev.last().unwrap().1, "[DONE]");
    let chunks: Vec<serde_json::Value> =
        ev[..ev.len() - 1].iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"], serde_json::json!({"role": "assistant", "content": ""}));
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Echo: one two three four");
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[chunks.len() - 1]["choices"], serde_json::json!([]));
    assert_eq!(chunks[chunks.len() - 1]["usage"]["completion_tokens"], 5);

    let r = send(mock.addr, "POST", "/v1/chat/completions", &[], body).unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
}

#[test]
fn anthropic_json_and_stream_follow_the_wire_format() {
    let mock = Mock::start(&[]);
    let body = r#"{"model":"claude-x","max_tokens":64,"system":"be brief","messages":[{"role":"user","content":"hello there"}]}"#;
    let r = send(mock.addr, "POST", "/v1/messages", ANTHROPIC, body).unwrap();
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"], serde_json::json!([{"type": "text", "text": "Echo: hello there"}]));
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"], serde_json::json!({"input_tokens": 10, "output_tokens": 3}));

    let body = r#"{"model":"claude-x","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hello there [fault:chunks=4,crlf]"}]}"#;
    let r = send(mock.addr, "POST", "/v1/messages", ANTHROPIC, body).unwrap();
    assert!(r.body.contains("\r\n\r\n"), "crlf mode uses CRLF line endings");
    let ev = events(&r.body.replace("\r\n", "\n"));
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let text: String = ev
        .iter()
        .filter(|(n, _)| n.as_deref() == Some("content_block_delta"))
        .map(|(_, d)| {
            serde_json::from_str::<serde_json::Value>(d).unwrap()["delta"]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(text, "Echo: hello there Echo:");

    let r = send(mock.addr, "POST", "/v1/messages", &[("x-api-key", "k")], body).unwrap();
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (400, Some("invalid_request_error")));
}

#[test]
fn injected_status_carries_retry_after_and_the_provider_error() {
    let mock = Mock::start(&[]);
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let mut headers = OPENAI.to_vec();
    headers.push(("x-mock-fault", "status=429,retry-after=2"));
    let r = send(mock.addr, "POST", "/v1/chat/completions", &headers, body).unwrap();
    assert_eq!((r.status, r.header("retry-after")), (429, Some("2")));
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");

    let body = r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi [fault:status=529]"}]}"#;
    let r = send(mock.addr, "POST", "/v1/messages", ANTHROPIC, body).unwrap();
    assert_eq!(r.status, 529);
    assert_eq!(
        r.json(),
        serde_json::json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
}

#[test]
fn reset_before_head_resets_the_connection() {
    let mock = Mock::start(&[]);
    let mut headers = OPENAI.to_vec();
    headers.push(("x-mock-fault", "reset-before-head"));
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let err = send(mock.addr, "POST", "/v1/chat/completions", &headers, body).err().expect("a reset, not an answer");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}

#[test]
fn fail_key_fails_only_the_first_tries_and_stats_count_them() {
    let mock = Mock::start(&[]);
    let mut headers = OPENAI.to_vec();
    headers.push(("x-mock-fault", "status=503,fail-times=2,fail-key=smoke"));
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let statuses: Vec<u16> =
        (0..3).map(|_| send(mock.addr, "POST", "/v1/chat/completions", &headers, body).unwrap().status).collect();
    assert_eq!(statuses, [503, 503, 200]);
    let stats = send(mock.addr, "GET", "/__mock/stats", &[], "").unwrap().json();
    assert_eq!(stats["requests"], 3);
    assert_eq!(stats["byPath"]["/v1/chat/completions"], 3);
    assert_eq!(stats["lastRequest"]["headers"]["x-mock-fault"], "status=503,fail-times=2,fail-key=smoke");
    assert_eq!(stats["lastRequest"]["body"]["model"], "m");
    send(mock.addr, "POST", "/__mock/reset", &[], "").unwrap();
    assert_eq!(send(mock.addr, "GET", "/__mock/stats", &[], "").unwrap().json()["requests"], 0);
}

#[test]
fn serves_https_with_the_test_ca() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let cert = format!("{dir}/test-server.pem");
    let key = format!("{dir}/test-server.key");
    let mock = Mock::start(&["--tls-cert", &cert, "--tls-key", &key]);

    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(format!("{dir}/test-ca.pem")).unwrap();
    for c in rustls_pemfile::certs(&mut &ca[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(mock.addr).unwrap());
    let body = r#"{"model":"m","messages":[{"role":"user","content":"over tls"}]}"#;
    tls.write_all(&request("POST", "/v1/chat/completions", OPENAI, body)).unwrap();
    let mut raw = Vec::new();
    tls.read_to_end(&mut raw).unwrap();
    let r = parse(&raw);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "Echo: over tls");
}
