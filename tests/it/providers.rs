//! Provider adapters end to end: the gateway in front of `mock_upstream`, which speaks
//! OpenAI's and Anthropic's real wire formats (JSON and SSE) and injects faults on
//! request. Each adapter is driven through `/api/chat` (JSON and SSE), over plain TCP
//! and over TLS with the test CA, and every failure mode of issue 3 is exercised:
//! retry then success, fallback, 429 with `Retry-After`, timeouts, a mid-stream reset
//! (error event, pool still healthy), a client that disconnects (the upstream sees the
//! cancel), non-retryable errors, and the circuit breaker.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

/// A gateway with one provider of each kind in front of `up` (plain) and, if given,
/// an OpenAI provider over TLS in front of `tls_up`.
pub(crate) fn gateway(up: &Upstream, tls_up: Option<&Upstream>, extra_server: &str, provider_extra: &str) -> Gateway {
    let a = up.addr;
    let mut toml = format!(
        r#"[server]
listen = "127.0.0.1:0"
workers = 1
{extra_server}

[[keys]]
name = "ops"
key = "sk-admin"
role = "admin"

[[providers]]
name = "openai"
kind = "openai"
base_url = "http://{a}/v1"
api_key = "sk-upstream-secret-1"
first_byte_timeout_ms = 1000
{provider_extra}

[[providers]]
name = "anthropic"
kind = "anthropic"
base_url = "http://{a}"
api_key = "sk-ant-secret-1"
{provider_extra}

[[providers]]
name = "compat"
kind = "openai_compat"
base_url = "http://{a}/v1"
api_key = "compat-key"
headers = {{ "X-Compat-Tenant" = "tenant-7" }}
{provider_extra}

[[providers]]
name = "dead"
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
api_key = "sk-dead"
max_retries = 0
connect_timeout_ms = 500

[[providers]]
name = "gemini"
kind = "gemini"
base_url = "http://{a}"
api_key = "gm-secret-key"
{provider_extra}

[[providers]]
name = "azure"
kind = "azure_openai"
base_url = "http://{a}"
api_key = "az-secret-key"
api_version = "2024-10-21"
{provider_extra}

[[models]]
id = "gemini"
provider = "gemini"
upstream = "gemini-2.5-flash"

[[models]]
id = "azure"
provider = "azure"
upstream = "my-gpt4o"

[[models]]
id = "gpt"
provider = "openai"
upstream = "gpt-4o"
default = true

[[models]]
id = "claude"
provider = "anthropic"
upstream = "claude-3-5-sonnet"

[[models]]
id = "llama"
provider = "compat"
upstream = "llama3"

[[models]]
id = "broken"
provider = "dead"
fallbacks = ["claude"]

[[models]]
id = "dead-only"
provider = "dead"
"#
    );
    if let Some(t) = tls_up {
        let ca = fixture("test-ca.pem");
        toml.push_str(&format!(
            r#"
[[providers]]
name = "secure"
kind = "openai"
base_url = "https://localhost:{}/v1"
api_key = "sk-tls"
ca_file = "{ca}"

[[models]]
id = "gpt-tls"
provider = "secure"
"#,
            t.addr.port()
        ));
    }
    Gateway::start(&toml)
}

fn chat(gw: &Gateway, model: &str, message: &str) -> Response {
    gw.post("/api/chat", Some("sk-admin"), &json!({"message": message, "model": model}))
}

fn stream(gw: &Gateway, model: &str, message: &str) -> Vec<SseEvent> {
    let mut conn = gw.conn();
    conn.send(
        &req("POST", "/api/chat")
            .key("sk-admin")
            .json(&json!({"message": message, "model": model, "stream": true}))
            .bytes(),
    );
    let (_, events) = read_sse(&mut conn);
    events.into_iter().map(|(_, e)| e).collect()
}

fn text_of(events: &[SseEvent]) -> String {
    events.iter().filter(|e| e.data["type"] == "chunk").map(|e| e.data["content"].as_str().unwrap_or("")).collect()
}

/// Prompt tokens as the mock counts them: words + 3 per message.
fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

#[test]
fn each_adapter_answers_json_turns_with_provider_usage() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "");
    for model in ["gpt", "claude", "llama"] {
        let r = chat(&gw, model, "Hello there friend");
        assert_eq!(r.status(), 200, "{model}: {}", r.text());
        let data = &r.json()["data"];
        assert_eq!(data["message"], "Echo: Hello there friend", "{model}");
        assert_eq!(data["model"], model);
        let prompt = words("Hello there friend") + 3;
        let completion = words("Echo: Hello there friend");
        assert_eq!(
            data["usage"],
            json!({"promptTokens": prompt, "completionTokens": completion, "totalTokens": prompt + completion}),
            "{model}"
        );
    }
    let last = &up.stats()["lastRequest"];
    assert_eq!(last["body"]["model"], "llama3", "compat provider sent its upstream model: {last}");
    assert_eq!(last["headers"]["x-compat-tenant"], "tenant-7", "extra headers are sent: {last}");
}

#[test]
fn each_adapter_streams_chunks_as_they_arrive_with_provider_usage() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "");
    for model in ["gpt", "claude", "llama"] {
        let events = stream(&gw, model, "Write a short poem [fault:chunks=6,chunk-ms=20]");
        let chunks = events.iter().filter(|e| e.data["type"] == "chunk").count();
        assert_eq!(chunks, 6, "{model}: {events:?}");
        assert!(text_of(&events).starts_with("Echo:"), "{model}");
        let done = events.last().expect("events");
        assert_eq!(done.data["type"], "done", "{model}: {events:?}");
        assert_eq!(done.data["model"], model);
        assert!(done.data["usage"]["completionTokens"].as_u64().unwrap_or(0) > 0, "{model}: usage from the provider");
    }
}

#[test]
fn history_reaches_the_provider_on_the_next_turn() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "");
    let body = json!({"message": "first", "model": "claude", "sessionId": "hist-1"});
    assert_eq!(gw.post("/api/chat", Some("sk-admin"), &body).status(), 200);
    let body = json!({"message": "second", "model": "claude", "sessionId": "hist-1"});
    assert_eq!(gw.post("/api/chat", Some("sk-admin"), &body).status(), 200);
    let sent = up.stats()["lastRequest"].to_string();
    for needle in ["first", "Echo: first", "second"] {
        assert!(sent.contains(needle), "upstream request lacks {needle:?}: {sent}");
    }
}

#[test]
fn tls_provider_works_with_the_test_ca() {
    let up = Upstream::start();
    let tls = Upstream::start_tls();
    let gw = gateway(&up, Some(&tls), "", "");
    let r = chat(&gw, "gpt-tls", "over tls");
    assert_eq!(r.status(), 200, "{}", r.text());
    assert_eq!(r.json()["data"]["message"], "Echo: over tls");
    let events = stream(&gw, "gpt-tls", "streamed over tls");
    assert_eq!(text_of(&events), "Echo: streamed over tls");
}

#[test]
fn a_retryable_failure_is_retried_then_succeeds() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "");
    let before = up.stats()["requests"].as_u64().unwrap_or(0);
    let r = chat(&gw, "gpt", "hi [fault:status=503,fail-times=2,fail-key=retry-1]");
    assert_eq!(r.status(), 200, "{}", r.text());
    let after = up.stats()["requests"].as_u64().unwrap_or(0);
    assert!(after - before >= 3, "two failures and one success reached the mock ({before} -> {after})");
}

#[test]
fn retry_after_on_429_is_honoured() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "");
    let started = Instant::now();
    let r = chat(&gw, "claude", "hi [fault:status=429,retry-after=1,fail-times=1,fail-key=ra-1]");
    assert_eq!(r.status(), 200, "{}", r.text());
    assert!(started.elapsed() >= Duration::from_millis(950), "waited {:?}", started.elapsed());
}

#[test]
fn fallback_model_serves_when_the_provider_is_unreachable() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "");
    let r = chat(&gw, "broken", "please answer");
    assert_eq!(r.status(), 200, "{}", r.text());
    assert_eq!(r.json()["data"]["model"], "claude");
    assert_eq!(r.json()["data"]["message"], "Echo: please answer");
}

#[test]
fn exhausted_retries_become_upstream_error_without_secrets() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 1");
    let r = chat(&gw, "gpt", "hi [fault:status=500]");
    assert_eq!(r.status(), 502, "{}", r.text());
    let v = r.json();
    assert_eq!(v["success"], false);
    assert_eq!(v["error"]["code"], "UPSTREAM_ERROR");
    assert!(!r.text().contains("sk-upstream-secret-1"));
    assert!(r.json()["error"]["message"].as_str().unwrap_or("").contains("provider openai"), "{}", r.text());
}

/// What the mock saw, by path (`/__mock/stats`).
fn upstream_hits(up: &Upstream) -> u64 {
    up.stats()["requests"].as_u64().unwrap_or(0)
}

#[test]
fn a_request_the_provider_refuses_is_a_400_with_its_message_never_retried_nor_sent_to_a_fallback() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 2");
    for model in ["gpt", "claude", "broken"] {
        let before = upstream_hits(&up);
        let r = chat(&gw, model, "hi [fault:status=400]");
        assert_eq!(r.status(), 400, "{model}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "INVALID_REQUEST", "{model}");
        let message = r.json()["error"]["message"].as_str().unwrap_or("").to_string();
        assert!(message.starts_with("provider "), "{model}: {message}");
        // One call: no retry, and for `broken` (dead provider, falls back to claude) the
        // fallback's refusal ends the chain too.
        assert_eq!(upstream_hits(&up) - before, 1, "{model}: {}", up.stats());
    }
}

#[test]
fn a_provider_429_is_a_429_with_retry_after_after_the_retries() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 1");
    let before = upstream_hits(&up);
    let r = chat(&gw, "gpt", "hi [fault:status=429,retry-after=1]");
    assert_eq!(r.status(), 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "RATE_LIMITED");
    assert!(
        r.header("retry-after").is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s >= 1)),
        "{:?}",
        r.header("retry-after")
    );
    assert!(r.json()["error"]["message"].as_str().unwrap_or("").contains("rate limit"), "{}", r.text());
    assert_eq!(upstream_hits(&up) - before, 2, "retried once: {}", up.stats());
}

#[test]
fn a_refused_provider_key_is_a_502_naming_the_provider_never_the_key() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 2");
    let before = upstream_hits(&up);
    let r = chat(&gw, "gpt", "hi [fault:status=401]");
    assert_eq!(r.status(), 502, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "UPSTREAM_ERROR");
    let message = r.json()["error"]["message"].as_str().unwrap_or("").to_string();
    assert!(message.contains("provider openai refused the gateway's credentials"), "{message}");
    assert!(!r.text().contains("sk-upstream-secret-1"));
    assert_eq!(upstream_hits(&up) - before, 1, "not retried: {}", up.stats());
}

#[test]
fn openai_clients_get_the_provider_refusal_with_its_type_and_code() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "");
    // Translated (an Anthropic model): 400 INVALID_REQUEST carrying Anthropic's type
    // and message.
    let body = json!({"model": "claude", "messages": [{"role": "user", "content": "hi [fault:status=404]"}]});
    let r = gw.post("/v1/chat/completions", Some("sk-admin"), &body);
    assert_eq!(r.status(), 400, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "not_found_error", "{}", r.text());
    assert_eq!(r.json()["error"]["message"], "provider anthropic: The requested resource could not be found.");
    // Passed through (an OpenAI model): the provider's answer as it was.
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "hi [fault:status=404]"}]});
    let r = gw.post("/v1/chat/completions", Some("sk-admin"), &body);
    assert_eq!(r.status(), 404, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "model_not_found", "{}", r.text());
}

#[test]
fn a_connect_failure_names_the_provider_and_never_its_address() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "");
    let r = chat(&gw, "dead-only", "hi");
    assert_eq!(r.status(), 502, "{}", r.text());
    let message = r.json()["error"]["message"].as_str().unwrap_or("").to_string();
    assert_eq!(message, "provider dead: could not connect to the provider");
    // The cause, with the address, is in the gateway's log with the request id.
    let id = r.request_id().to_string();
    assert!(
        gw.wait_for_log(
            &format!("request {id}: model dead-only failed: provider dead, attempt 1: cannot connect"),
            Duration::from_secs(5)
        ),
        "{:?}",
        gw.logs()
    );
}

#[test]
fn a_slow_first_byte_is_a_504() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    let r = chat(&gw, "gpt", "hi [fault:first-byte-ms=3000]");
    assert_eq!(r.status(), 504, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "UPSTREAM_TIMEOUT");
}

#[test]
fn a_timeout_whose_retry_meets_the_open_breaker_is_still_a_504() {
    let up = Upstream::start();
    // One retry per call: two failing calls are four breaker failures; the slow call's
    // first attempt is the fifth (the breaker opens), its retry is refused by the
    // breaker, and the client is told what actually went wrong: a timeout.
    let gw = gateway(&up, None, "", "max_retries = 1");
    for _ in 0..2 {
        assert_eq!(chat(&gw, "gpt", "x [fault:status=502]").status(), 502);
    }
    let r = chat(&gw, "gpt", "slow [fault:first-byte-ms=3000]");
    assert_eq!(r.status(), 504, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "UPSTREAM_TIMEOUT");
}

#[test]
fn a_reset_mid_stream_ends_with_an_error_event_and_the_pool_recovers() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "");
    let events = stream(&gw, "gpt", "tell me more [fault:chunks=8,reset-mid-stream=2]");
    let chunks = events.iter().filter(|e| e.data["type"] == "chunk").count();
    assert_eq!(chunks, 2, "{events:?}");
    let last = events.last().expect("an error event");
    assert_eq!(last.data["type"], "error", "{events:?}");
    assert_eq!(last.data["code"], "UPSTREAM_ERROR");
    for i in 0..3 {
        let r = chat(&gw, "gpt", &format!("after reset {i}"));
        assert_eq!(r.status(), 200, "{}", r.text());
    }
}

#[test]
fn a_client_that_disconnects_cancels_the_upstream_stream() {
    let up = Upstream::start();
    // The turn outlives its client only for the resume window (resumable SSE), then
    // it is cut and the upstream call with it.
    let gw = gateway(&up, None, "sse_resume_window_ms = 200", "");
    let cancelled_before = up.stats()["cancelled"].as_u64().unwrap_or(0);
    let mut conn = gw.conn();
    conn.send(
        &req("POST", "/api/chat")
            .key("sk-admin")
            .json(&json!({"message": "long [fault:chunks=50,chunk-ms=100]", "model": "gpt", "stream": true}))
            .bytes(),
    );
    let head = conn.read_head();
    assert_eq!(head.status, 200);
    assert!(conn.read_chunk().is_some());
    drop(conn);
    let seen = eventually(Duration::from_secs(10), || up.stats()["cancelled"].as_u64().unwrap_or(0) > cancelled_before);
    assert!(seen, "the mock saw the cancel: {}", up.stats());
}

#[test]
fn a_provider_that_keeps_failing_is_marked_down() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    for _ in 0..6 {
        let _ = chat(&gw, "llama", "x [fault:status=502]");
    }
    let r = chat(&gw, "llama", "now healthy");
    assert_eq!(r.status(), 502, "the breaker refuses while open: {}", r.text());
    assert!(r.text().contains("marked down"), "{}", r.text());
    let health = gw.get("/health/detailed", None).json();
    let compat = health["data"]["providers"]
        .as_array()
        .and_then(|l| l.iter().find(|p| p["name"] == "compat").cloned())
        .expect("compat in /health/detailed");
    assert_eq!(compat["state"], "down", "{health}");
}

#[test]
fn models_show_provider_and_upstream_names() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "");
    let v = gw.get("/api/models", Some("sk-admin")).json();
    let claude = v["data"].as_array().and_then(|l| l.iter().find(|m| m["id"] == "claude").cloned()).expect("claude");
    let doors =
        json!({"/v1/chat/completions": "translated", "/v1/messages": "passthrough", "/v1/responses": "translated"});
    assert_eq!(
        claude,
        json!({"id": "claude", "provider": "anthropic", "upstreamModel": "claude-3-5-sonnet", "default": false,
            "frontDoors": doors})
    );
    // /api/status lists the same for every model.
    let status = gw.get("/api/status", Some("sk-admin")).json();
    let listed = status["data"]["models"].as_array().and_then(|l| l.iter().find(|m| m["id"] == "claude").cloned());
    assert_eq!(listed, Some(json!({"id": "claude", "frontDoors": doors})));
}

#[test]
fn openai_requests_pass_through_untouched_but_for_the_model() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    let body = json!({
        "model": "gpt",
        "messages": [{"role": "system", "content": "be terse"}, {"role": "user", "content": "hi there"}],
        "temperature": 0.25,
        "response_format": {"type": "text"}
    });
    let r = gw.post("/v1/chat/completions", Some("sk-admin"), &body);
    assert_eq!(r.status(), 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "Echo: hi there");
    let prompt = words("be terse") + 3 + words("hi there") + 3;
    assert_eq!(v["usage"]["prompt_tokens"], prompt);
    let sent = &up.stats()["lastRequest"]["body"];
    assert_eq!(sent["model"], "gpt-4o", "the model is rewritten to the upstream name: {sent}");
    assert_eq!(sent["temperature"], 0.25, "other fields reach the provider: {sent}");
    assert_eq!(sent["response_format"], json!({"type": "text"}));
    let totals = gw.get("/api/status", Some("sk-admin")).json()["data"]["totals"].clone();
    assert_eq!(totals["promptTokens"], prompt, "usage is counted: {totals}");

    let bad = json!({"model": "gpt", "messages": [{"role": "user", "content": "x [fault:status=400]"}]});
    let r = gw.post("/v1/chat/completions", Some("sk-admin"), &bad);
    assert_eq!(r.status(), 400, "a client error from the provider is handed on: {}", r.text());
    assert!(r.json()["error"]["message"].is_string());
    let failing = json!({"model": "gpt", "messages": [{"role": "user", "content": "x [fault:status=500]"}]});
    let r = gw.post("/v1/chat/completions", Some("sk-admin"), &failing);
    assert_eq!(r.status(), 502, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "server_error");
    assert!(!r.text().contains("sk-upstream-secret-1"));
}

/// The raw `data:` payloads of a `/v1` stream, checking that every HTTP chunk is
/// exactly one SSE event.
pub(crate) fn v1_stream(gw: &Gateway, key: &str, body: &Value) -> Vec<String> {
    v1_stream_with(gw, key, body, &[])
}

/// `v1_stream` with extra request headers.
pub(crate) fn v1_stream_with(gw: &Gateway, key: &str, body: &Value, headers: &[(&str, &str)]) -> Vec<String> {
    let mut conn = gw.conn();
    let mut r = req("POST", "/v1/chat/completions").key(key);
    for (name, value) in headers {
        r = r.header(name, value);
    }
    conn.send(&r.json(body).bytes());
    let head = conn.read_head();
    assert_eq!(head.status, 200, "{head:?}");
    assert!(head.is_chunked(), "{head:?}");
    let mut out = Vec::new();
    while let Some(chunk) = conn.read_chunk() {
        let text = String::from_utf8(chunk).expect("UTF-8 event");
        let data = text.strip_prefix("data: ").and_then(|t| t.strip_suffix("\n\n"));
        let data = data.unwrap_or_else(|| panic!("one event per chunk: {text:?}"));
        assert!(!data.contains("\n\n"), "one event per chunk: {text:?}");
        out.push(data.to_string());
    }
    out
}

#[test]
fn openai_streams_are_relayed_event_by_event() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    let before = gw.get("/api/status", Some("sk-admin")).json()["data"]["totals"]["promptTokens"].as_u64().unwrap();
    let body = json!({"model": "gpt", "stream": true, "temperature": 0.5,
        "messages": [{"role": "user", "content": "one two three four five six seven"}]});
    let data = v1_stream(&gw, "sk-admin", &body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant", "{data:?}");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Echo: one two three four five six seven");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "gpt-4o"), "{data:?}");
    // Usage was asked for upstream (for quotas) but the client did not ask: not relayed.
    assert!(chunks.iter().all(|c| c["choices"].as_array().is_some_and(|a| !a.is_empty())), "{data:?}");
    let sent = &up.stats()["lastRequest"]["body"];
    assert_eq!(sent["stream_options"], json!({"include_usage": true}), "{sent}");
    assert_eq!((&sent["model"], &sent["temperature"]), (&json!("gpt-4o"), &json!(0.5)), "{sent}");
    let after = gw.get("/api/status", Some("sk-admin")).json()["data"]["totals"]["promptTokens"].as_u64().unwrap();
    assert_eq!(after - before, words("one two three four five six seven") + 3, "usage is counted");

    // A client that asks for usage gets the usage chunk, as the provider sent it.
    let mut asked = body.clone();
    asked["stream_options"] = json!({"include_usage": true});
    let data = v1_stream(&gw, "sk-admin", &asked);
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]), "{data:?}");
    assert_eq!(usage["usage"]["prompt_tokens"], words("one two three four five six seven") + 3);
    assert_eq!(up.stats()["lastRequest"]["body"]["stream_options"], json!({"include_usage": true}));
}

#[test]
fn a_relayed_stream_cut_by_the_provider_ends_with_an_error_chunk() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    let body = json!({"model": "gpt", "stream": true,
        "messages": [{"role": "user", "content": "tell me more [fault:chunks=8,reset-mid-stream=2]"}]});
    let data = v1_stream(&gw, "sk-admin", &body);
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap_or_else(|_| panic!("{data:?}"));
    assert_eq!(last["error"]["type"], "server_error", "{data:?}");
    assert!(!data.iter().any(|d| d == "[DONE]"), "a cut stream must not look complete: {data:?}");
    // A client error from the provider is handed on as JSON; the pool still serves.
    let bad =
        json!({"model": "gpt", "stream": true, "messages": [{"role": "user", "content": "x [fault:status=400]"}]});
    let r = gw.post("/v1/chat/completions", Some("sk-admin"), &bad);
    assert_eq!(r.status(), 400, "{}", r.text());
    assert!(r.json()["error"]["message"].is_string());
    let ok = json!({"model": "gpt", "stream": true, "messages": [{"role": "user", "content": "again"}]});
    assert_eq!(v1_stream(&gw, "sk-admin", &ok).last().map(String::as_str), Some("[DONE]"));
}

#[test]
fn a_relayed_stream_past_the_token_budget_is_cut_with_rate_limited() {
    let up = Upstream::start();
    let tokens = "\n[[keys]]\nname = \"tokens\"\nkey = \"sk-tokens\"\ntpm = 100\n";
    let gw = gateway(&up, None, tokens, "max_retries = 0");
    let message = vec!["lorem"; 45].join(" ");
    let body = json!({"model": "gpt", "stream": true, "messages": [{"role": "user", "content": message}]});
    let data = v1_stream(&gw, "sk-tokens", &body);
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap_or_else(|_| panic!("{data:?}"));
    assert_eq!(last["error"]["code"], "rate_limit_exceeded", "{data:?}");
    assert!(data.len() > 2, "some of the reply came first: {data:?}");
    assert!(!data.iter().any(|d| d == "[DONE]"), "{data:?}");
    let r = gw.post("/v1/chat/completions", Some("sk-tokens"), &body);
    assert_eq!(r.status(), 429, "the budget is spent: {}", r.text());
}

#[test]
fn a_client_leaving_a_relayed_stream_cancels_the_upstream_call() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "");
    let cancelled_before = up.stats()["cancelled"].as_u64().unwrap_or(0);
    let mut conn = gw.conn();
    let body = json!({"model": "gpt", "stream": true,
        "messages": [{"role": "user", "content": "long [fault:chunks=50,chunk-ms=100]"}]});
    conn.send(&req("POST", "/v1/chat/completions").key("sk-admin").json(&body).bytes());
    assert_eq!(conn.read_head().status, 200);
    assert!(conn.read_chunk().is_some());
    drop(conn);
    let seen = eventually(Duration::from_secs(10), || up.stats()["cancelled"].as_u64().unwrap_or(0) > cancelled_before);
    assert!(seen, "the mock saw the cancel: {}", up.stats());
}

#[test]
fn a_reply_over_max_reply_bytes_is_cut_its_upstream_cancelled_and_stored_marked_cut() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "max_reply_bytes = 2048", "max_retries = 0");
    let long = "long [fault:chunks=1000,chunk-ms=1]";
    // Translated (the gateway protocol, in a session): an error event ends the stream.
    let cancelled_before = up.stats()["cancelled"].as_u64().unwrap_or(0);
    let mut conn = gw.conn();
    let body = json!({"message": long, "model": "gpt", "stream": true, "sessionId": "cut-1"});
    conn.send(&req("POST", "/api/chat").key("sk-admin").json(&body).bytes());
    let (_, events) = read_sse(&mut conn);
    let last = &events.last().expect("events").1.data;
    assert_eq!(last["type"], "error", "{last}");
    assert_eq!(last["code"], "UPSTREAM_ERROR");
    assert!(last["message"].as_str().unwrap_or("").contains("server.max_reply_bytes (2048 bytes)"), "{last}");
    let text: usize = events.iter().filter_map(|(_, e)| e.data["content"].as_str()).map(str::len).sum();
    assert!(text > 1000 && text <= 2048, "{text} bytes relayed");
    let seen = eventually(Duration::from_secs(10), || up.stats()["cancelled"].as_u64().unwrap_or(0) > cancelled_before);
    assert!(seen, "the upstream call was cancelled: {}", up.stats());
    // The part that came is stored, marked cut.
    let session = gw.get("/api/sessions/cut-1", Some("sk-admin")).json();
    let messages = session["data"]["messages"].as_array().cloned().unwrap_or_default();
    let reply = messages.last().and_then(|m| m["content"].as_str()).unwrap_or("").to_string();
    assert!(reply.ends_with(" [cut: reply over server.max_reply_bytes]"), "{session}");
    assert_eq!(reply.len() - " [cut: reply over server.max_reply_bytes]".len(), text);
    // The cut turn's tokens count, estimated (no usage came): about four bytes a token.
    let totals = gw.get("/api/status", Some("sk-admin")).json()["data"]["totals"].clone();
    let completion = totals["completionTokens"].as_u64().unwrap_or(0);
    assert!(completion >= (text as u64) / 4 && totals["promptTokens"].as_u64().unwrap_or(0) > 0, "{totals}");
    // Passed through: the relayed events are counted too; an error chunk, no [DONE].
    let cancelled_before = up.stats()["cancelled"].as_u64().unwrap_or(0);
    let data = v1_stream(
        &gw,
        "sk-admin",
        &json!({"model": "gpt", "stream": true, "messages": [{"role": "user", "content": long}]}),
    );
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap_or_else(|_| panic!("{data:?}"));
    assert!(last["error"]["message"].as_str().unwrap_or("").contains("max_reply_bytes"), "{last}");
    assert!(!data.iter().any(|d| d == "[DONE]"));
    let seen = eventually(Duration::from_secs(10), || up.stats()["cancelled"].as_u64().unwrap_or(0) > cancelled_before);
    assert!(seen, "the relayed call was cancelled: {}", up.stats());
}

/// `server.upstream_body_budget_mb`: answers read whole on a worker share a budget; an
/// answer that would pass it ends with 503 `OVERLOADED` + `Retry-After` (nothing held
/// after: the next small turn is served, and the provider is not marked failing).
#[test]
fn answers_read_whole_share_a_per_worker_budget() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "upstream_body_budget_mb = 1", "max_retries = 0");
    let word = "x".repeat(1000);
    // About 2 MB of answer: 4,000 chunks cycling "Echo:" and the 1,000-character word.
    let big = chat(&gw, "gpt", &format!("{word} [fault:chunks=4000]"));
    assert_eq!(big.status(), 503, "{}", big.text());
    assert_eq!(big.json()["error"]["code"], "OVERLOADED");
    assert_eq!(big.header("retry-after"), Some("1"));
    assert!(big.json()["error"]["message"].as_str().unwrap_or("").contains("retry shortly"), "{}", big.text());
    // About 0.5 MB fits, and the budget the refused answer held was given back.
    for _ in 0..3 {
        let ok = chat(&gw, "gpt", &format!("{word} [fault:chunks=1000]"));
        assert_eq!(ok.status(), 200, "{}", ok.text());
    }
    // Without a budget the big answer is served.
    let gw = gateway(&up, None, "upstream_body_budget_mb = 0", "max_retries = 0");
    assert_eq!(chat(&gw, "gpt", &format!("{word} [fault:chunks=4000]")).status(), 200);
}
