//! Documented error bodies by kind (`error=`, `status=`) in every format, the
//! providers' in-stream error events (`stream-error=`), and compressed answers
//! (`encoding=`).

use std::io::Read;

use serde_json::{json, Value};

use super::{data, events, post, send, ANTHROPIC, OPENAI};
use crate::support::*;

const GEMINI: &[(&str, &str)] = &[("x-goog-api-key", "AIza-test")];

#[derive(Clone, Copy, Debug)]
enum Format {
    OpenAi,
    Anthropic,
    Gemini,
}

/// A valid chat request in `format` whose `x-mock-fault` header is `spec`.
fn faulty(up: &Upstream, format: Format, spec: &str, stream: bool) -> Response {
    let (path, headers, body) = match format {
        Format::OpenAi => (
            "/v1/chat/completions".to_string(),
            OPENAI,
            json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        Format::Anthropic => (
            "/v1/messages".to_string(),
            ANTHROPIC,
            json!({"model": "m", "max_tokens": 9, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        Format::Gemini => (
            format!("/v1beta/models/g:{}", if stream { "streamGenerateContent?alt=sse" } else { "generateContent" }),
            GEMINI,
            json!({"contents": [{"parts": [{"text": "hi"}]}]}),
        ),
    };
    let mut all = headers.to_vec();
    all.push(("x-mock-fault", spec));
    send(up, &post(&path, &all, &body.to_string()))
}

/// `(status, the body's error type or status name, its code)` of an error answer.
fn error_of(format: Format, r: &Response) -> (u16, String, Value) {
    let v = r.json();
    let e = &v["error"];
    match format {
        Format::OpenAi => (r.status(), e["type"].as_str().unwrap_or("").to_string(), e["code"].clone()),
        Format::Anthropic => {
            assert_eq!(v["type"], "error", "{v}");
            (r.status(), e["type"].as_str().unwrap_or("").to_string(), Value::Null)
        }
        Format::Gemini => {
            assert_eq!(e["code"], r.status(), "{v}");
            (r.status(), e["status"].as_str().unwrap_or("").to_string(), Value::Null)
        }
    }
}

#[test]
fn error_kinds_answer_each_providers_documented_body() {
    let up = Upstream::start();
    use Format::*;
    let cases: &[(&str, Format, u16, &str, Value)] = &[
        ("error=context_length", OpenAi, 400, "invalid_request_error", json!("context_length_exceeded")),
        ("error=context_length", Anthropic, 400, "invalid_request_error", Value::Null),
        ("error=context_length", Gemini, 400, "INVALID_ARGUMENT", Value::Null),
        ("error=rate_limit", OpenAi, 429, "requests", json!("rate_limit_exceeded")),
        ("error=rate_limit", Anthropic, 429, "rate_limit_error", Value::Null),
        ("error=rate_limit", Gemini, 429, "RESOURCE_EXHAUSTED", Value::Null),
        ("error=quota", OpenAi, 429, "insufficient_quota", json!("insufficient_quota")),
        ("error=quota", Anthropic, 400, "invalid_request_error", Value::Null),
        ("error=quota", Gemini, 429, "RESOURCE_EXHAUSTED", Value::Null),
        ("error=overloaded", OpenAi, 503, "server_error", Value::Null),
        ("error=overloaded", Anthropic, 529, "overloaded_error", Value::Null),
        ("error=overloaded", Gemini, 503, "UNAVAILABLE", Value::Null),
        ("status=401", OpenAi, 401, "invalid_request_error", json!("invalid_api_key")),
        ("status=401", Anthropic, 401, "authentication_error", Value::Null),
        ("status=401", Gemini, 401, "UNAUTHENTICATED", Value::Null),
        ("error=permission", OpenAi, 403, "request_forbidden", json!("unsupported_country_region_territory")),
        ("error=permission", Anthropic, 403, "permission_error", Value::Null),
        ("error=permission", Gemini, 403, "PERMISSION_DENIED", Value::Null),
        ("status=404", OpenAi, 404, "invalid_request_error", json!("model_not_found")),
        ("status=404", Anthropic, 404, "not_found_error", Value::Null),
        ("status=404", Gemini, 404, "NOT_FOUND", Value::Null),
        ("error=too_large", OpenAi, 413, "invalid_request_error", Value::Null),
        ("error=too_large", Anthropic, 413, "request_too_large", Value::Null),
        ("error=too_large", Gemini, 413, "INVALID_ARGUMENT", Value::Null),
        ("status=422", OpenAi, 422, "invalid_request_error", Value::Null),
        ("status=422", Anthropic, 422, "invalid_request_error", Value::Null),
        ("error=server", OpenAi, 500, "server_error", Value::Null),
        ("error=server", Anthropic, 500, "api_error", Value::Null),
        ("error=server", Gemini, 500, "INTERNAL", Value::Null),
        ("error=unavailable", Gemini, 503, "UNAVAILABLE", Value::Null),
        ("error=timeout", Anthropic, 504, "timeout_error", Value::Null),
        ("error=timeout", Gemini, 504, "DEADLINE_EXCEEDED", Value::Null),
    ];
    for (spec, format, status, kind, code) in cases {
        let r = faulty(&up, *format, spec, false);
        assert_eq!(error_of(*format, &r), (*status, kind.to_string(), code.clone()), "{spec} {format:?}: {}", r.text());
        let retry = if spec.contains("rate_limit") { Some("1") } else { None };
        assert_eq!(r.header("retry-after"), retry, "{spec} {format:?}");
    }

    let r = faulty(&up, Format::OpenAi, "error=context_length", false);
    assert_eq!(r.json()["error"]["param"], "messages");
    let r = faulty(&up, Format::Anthropic, "error=context_length", false);
    assert_eq!(
        r.json(),
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 210000 tokens > 200000 maximum"}})
    );
    let r = faulty(&up, Format::Gemini, "error=rate_limit,retry-after=7", false);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(
        r.json()["error"]["details"],
        json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}])
    );
    let r = faulty(&up, Format::OpenAi, "status=422", false);
    assert_eq!(r.head.reason, "Unprocessable Content");
    let r = faulty(&up, Format::OpenAi, "error=teapot", false);
    assert_eq!(r.status(), 400, "an unknown kind is loud");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("error=teapot"));
}

#[test]
fn a_stream_error_ends_the_stream_with_the_providers_error_event() {
    let up = Upstream::start();
    let r = faulty(&up, Format::OpenAi, "chunks=4,stream-error=2", true);
    assert_eq!(r.status(), 200);
    let text = r.text();
    assert!(!text.contains("[DONE]"), "{text}");
    let chunks = data(&text);
    assert_eq!(chunks.len(), 1 + 2 + 1, "role, two content chunks, the error: {text}");
    assert_eq!(chunks[3]["error"]["type"], "server_error");

    let r = faulty(&up, Format::Anthropic, "chunks=4,stream-error=1", true);
    let ev = events(&r.text());
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_deref().unwrap_or("")).collect();
    assert_eq!(names, ["message_start", "content_block_start", "ping", "content_block_delta", "error"]);
    let error: Value = serde_json::from_str(&ev[4].1).unwrap();
    assert_eq!(error, json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}));

    let chunks = data(&faulty(&up, Format::Gemini, "chunks=3,stream-error=1", true).text());
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[1]["error"]["status"], "UNAVAILABLE");

    // A failure like the others: fail-times lets the next try through whole.
    let spec = "chunks=2,stream-error=1,fail-times=1,fail-key=se";
    assert!(faulty(&up, Format::OpenAi, spec, true).text().contains("server_error"));
    assert!(faulty(&up, Format::OpenAi, spec, true).text().ends_with("data: [DONE]\n\n"));
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes).read_to_string(&mut out).unwrap_or_else(|e| panic!("gzip: {e}"));
    out
}

#[test]
fn encoding_compresses_json_answers_errors_and_streams() {
    let up = Upstream::start();
    let r = faulty(&up, Format::OpenAi, "encoding=gzip", false);
    assert_eq!((r.status(), r.header("content-encoding")), (200, Some("gzip")));
    let v: Value = serde_json::from_str(&gunzip(&r.body)).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Echo: hi");

    let r = faulty(&up, Format::Gemini, "encoding=gzip,status=503", false);
    assert_eq!((r.status(), r.header("content-encoding")), (503, Some("gzip")));
    let v: Value = serde_json::from_str(&gunzip(&r.body)).unwrap();
    assert_eq!(v["error"]["status"], "UNAVAILABLE");

    let r = faulty(&up, Format::Anthropic, "encoding=deflate", true);
    assert_eq!(r.header("content-encoding"), Some("deflate"));
    assert!(r.head.is_chunked());
    let mut text = String::new();
    flate2::read::ZlibDecoder::new(&r.body[..]).read_to_string(&mut text).unwrap();
    let names: Vec<String> = events(&text).into_iter().filter_map(|(n, _)| n).collect();
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    // Each event is flushed on its own: the first chunk alone decodes to the first event.
    let mut first = Vec::new();
    let _ = flate2::read::ZlibDecoder::new(&r.chunks[0][..]).read_to_end(&mut first);
    assert!(String::from_utf8_lossy(&first).starts_with("event: message_start\n"), "{first:?}");

    let r = faulty(&up, Format::OpenAi, "encoding=gzip,chunks=3", true);
    let text = gunzip(&r.body);
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let r = faulty(&up, Format::OpenAi, "encoding=br", false);
    assert_eq!(r.status(), 400, "only gzip and deflate");
}
