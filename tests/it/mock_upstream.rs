//! Tests of the `mock_upstream` binary that the gateway's integration and load tests
//! rely on: it is started on port 0 by the same `support::Upstream` the provider tests
//! use, and spoken to with the raw client (over rustls for HTTPS), so the bytes checked
//! here are the bytes the gateway's upstream client will see. This file: the OpenAI and
//! Anthropic JSON and SSE shapes, an injected status with `Retry-After`, a reset before
//! the head, a fail-key that fails only the first tries, the stats endpoint and the
//! record of received requests. Submodules: `scripted` (scripted answers: tool calls,
//! thinking, stop reasons, cached usage, in OpenAI's and Anthropic's formats),
//! `formats` (the Gemini and Azure OpenAI routes), `failures` (documented error bodies
//! by kind, in-stream errors, compressed answers), `fronts` (Responses, embeddings in
//! every format, Anthropic's `count_tokens`).

mod failures;
mod formats;
mod fronts;
mod scripted;

use std::net::TcpStream;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::support::*;

const OPENAI: &[(&str, &str)] = &[("Authorization", "Bearer sk-test"), ("Content-Type", "application/json")];
const ANTHROPIC: &[(&str, &str)] = &[("x-api-key", "sk-ant-test"), ("anthropic-version", "2023-06-01")];

/// The arguments of the mock's first and second tool call of an answer.
const ARGS: [&str; 2] =
    [r#"{"location":"San Francisco, CA","unit":"celsius"}"#, r#"{"location":"Tokyo, Japan","unit":"celsius"}"#];

/// Prompt tokens as the mock counts them for one message: words + 3.
fn tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64 + 3
}

/// `POST path` with `headers` and `Connection: close`.
fn post(path: &str, headers: &[(&str, &str)], body: &str) -> Req {
    let mut r = req("POST", path).header("Connection", "close");
    for (name, value) in headers {
        r = r.header(name, value);
    }
    r.body(body)
}

/// Sends one request on a new connection and reads its response.
fn send(up: &Upstream, r: &Req) -> Response {
    Conn::open(up.addr).exchange(r)
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

/// The JSON `data:` payloads of an SSE body (without `[DONE]`).
fn data(body: &str) -> Vec<Value> {
    events(body)
        .into_iter()
        .filter(|(_, d)| d != "[DONE]")
        .map(|(_, d)| serde_json::from_str(&d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

#[test]
fn openai_json_and_stream_follow_the_wire_format() {
    let up = Upstream::start();
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"one two three four"}]}"#;
    let r = send(&up, &post("/v1/chat/completions", OPENAI, body));
    assert_eq!(r.status(), 200);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["choices"][0]["message"]["content"], "Echo: one two three four");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"], json!({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}));

    let body = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"one two three four"}]}"#;
    let r = send(&up, &post("/v1/chat/completions", OPENAI, body));
    assert_eq!(r.header("content-type"), Some("text/event-stream; charset=utf-8"));
    let ev = events(&r.text());
    assert_eq!(ev.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = ev[..ev.len() - 1].iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Echo: one two three four");
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[chunks.len() - 1]["choices"], json!([]));
    assert_eq!(chunks[chunks.len() - 1]["usage"]["completion_tokens"], 5);

    let r = send(&up, &post("/v1/chat/completions", &[], body));
    assert_eq!(r.status(), 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
}

#[test]
fn anthropic_json_and_stream_follow_the_wire_format() {
    let up = Upstream::start();
    let body = r#"{"model":"claude-x","max_tokens":64,"system":"be brief","messages":[{"role":"user","content":"hello there"}]}"#;
    let r = send(&up, &post("/v1/messages", ANTHROPIC, body));
    assert_eq!(r.status(), 200);
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"], json!([{"type": "text", "text": "Echo: hello there"}]));
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"], json!({"input_tokens": 10, "output_tokens": 3}));

    let body = r#"{"model":"claude-x","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hello there [fault:chunks=4,crlf]"}]}"#;
    let r = send(&up, &post("/v1/messages", ANTHROPIC, body));
    let text = r.text();
    assert!(text.contains("\r\n\r\n"), "crlf mode uses CRLF line endings");
    let ev = events(&text.replace("\r\n", "\n"));
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
        .map(|(_, d)| serde_json::from_str::<Value>(d).unwrap()["delta"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, "Echo: hello there Echo:");

    let r = send(&up, &post("/v1/messages", &[("x-api-key", "k")], body));
    assert_eq!((r.status(), r.json()["error"]["type"].as_str()), (400, Some("invalid_request_error")));
}

#[test]
fn injected_status_carries_retry_after_and_the_provider_error() {
    let up = Upstream::start();
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let mut headers = OPENAI.to_vec();
    headers.push(("x-mock-fault", "status=429,retry-after=2"));
    let r = send(&up, &post("/v1/chat/completions", &headers, body));
    assert_eq!((r.status(), r.header("retry-after")), (429, Some("2")));
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");

    let body = r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi [fault:status=529]"}]}"#;
    let r = send(&up, &post("/v1/messages", ANTHROPIC, body));
    assert_eq!(r.status(), 529);
    assert_eq!(r.json(), json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}));
}

#[test]
fn reset_before_head_resets_the_connection() {
    let up = Upstream::start();
    let mut headers = OPENAI.to_vec();
    headers.push(("x-mock-fault", "reset-before-head"));
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let mut conn = Conn::open(up.addr);
    conn.send(&post("/v1/chat/completions", &headers, body).bytes());
    conn.expect_reset();
}

#[test]
fn fail_key_fails_only_the_first_tries_and_stats_count_them() {
    let up = Upstream::start();
    let mut headers = OPENAI.to_vec();
    headers.push(("x-mock-fault", "status=503,fail-times=2,fail-key=smoke"));
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let statuses: Vec<u16> =
        (0..3).map(|_| send(&up, &post("/v1/chat/completions", &headers, body)).status()).collect();
    assert_eq!(statuses, [503, 503, 200]);
    let stats = up.stats();
    assert_eq!(stats["requests"], 3);
    assert_eq!(stats["byPath"]["/v1/chat/completions"], 3);
    assert_eq!(stats["lastRequest"]["headers"]["x-mock-fault"], "status=503,fail-times=2,fail-key=smoke");
    assert_eq!(stats["lastRequest"]["body"]["model"], "m");
    up.reset();
    assert_eq!(up.stats()["requests"], 0);
}

#[test]
fn serves_https_with_the_test_ca() {
    let up = Upstream::start_tls();
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(fixture("test-ca.pem")).unwrap();
    for c in rustls_pemfile::certs(&mut &ca[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(up.addr).unwrap();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut conn = Conn::over(rustls::StreamOwned::new(tls, tcp));
    let body = r#"{"model":"m","messages":[{"role":"user","content":"over tls"}]}"#;
    let r = conn.exchange(&post("/v1/chat/completions", OPENAI, body));
    assert_eq!(r.status(), 200);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "Echo: over tls");
}

#[test]
fn every_request_is_recorded_exactly_and_reset_forgets_it() {
    let up = Upstream::start();
    let body = "{\"model\":\"m\",  \"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    let headers = [("Authorization", "Bearer sk-test"), ("X-Dup", "a"), ("x-dup", "b")];
    assert_eq!(send(&up, &post("/v1/chat/completions?trace=1", &headers, body)).status(), 200);
    let models = req("GET", "/v1/models").header("Connection", "close").key("sk-test");
    assert_eq!(send(&up, &models).status(), 200);
    assert_eq!(send(&up, &post("/nowhere", &[], "not json")).status(), 404);
    let _ = up.stats(); // the mock's own endpoints are not recorded

    let list = up.requests();
    assert_eq!(list.len(), 3, "{list:?}");
    let first = &list[0];
    assert_eq!(first["seq"], 1);
    assert_eq!(
        (first["method"].as_str(), first["target"].as_str()),
        (Some("POST"), Some("/v1/chat/completions?trace=1"))
    );
    assert_eq!((first["path"].as_str(), first["query"].as_str()), (Some("/v1/chat/completions"), Some("trace=1")));
    assert_eq!(first["headers"]["x-dup"], "a, b");
    assert_eq!(
        first["rawHeaders"],
        json!([
            ["host", "127.0.0.1"],
            ["connection", "close"],
            ["authorization", "Bearer sk-test"],
            ["x-dup", "a"],
            ["x-dup", "b"],
            ["content-length", body.len().to_string()]
        ])
    );
    assert_eq!(first["body"], body, "the body exactly as sent, spacing included");
    assert_eq!(first["json"], json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
    assert!(first.get("bodyBase64").is_none());
    assert_eq!((list[1]["method"].as_str(), list[1]["body"].as_str()), (Some("GET"), Some("")));
    assert_eq!((list[2]["body"].as_str(), list[2]["json"].is_null()), (Some("not json"), true));
    assert_eq!(up.last_request_to("/v1/models")["seq"], 2);

    up.reset();
    assert!(up.requests().is_empty());
    assert_eq!(send(&up, &post("/v1/chat/completions", OPENAI, body)).status(), 200);
    assert_eq!(up.requests()[0]["seq"], 1, "numbering starts again after a reset");
}
