//! The translation conformance matrix (issue 11): each feature an OpenAI client uses x
//! each path a request can take, against the mock upstream (which records what it
//! received and answers with payloads copied from each provider's documentation).
//!
//! `/v1/chat/completions` paths: `pass` (an OpenAI model, forwarded untouched),
//! `fallbacks` (an OpenAI model with an OpenAI-format fallback: still forwarded, each
//! attempt splicing its model), `anthropic`, `gemini`, `azure` (OpenAI's format on the
//! deployment path: forwarded), `session` (an OpenAI model with `X-Session-Id`:
//! translated, the history from the session). The gateway protocol's `/api/chat` and
//! `/ws` carry text only (no tools, images or sampling settings), so their rows are
//! replies, streams, history, every error kind and compressed answers, for every
//! provider kind.
//!
//! Each test runs one feature over every path and reports every failing cell at once.

use serde_json::{json, Value};

use crate::providers::v1_stream_with;
use crate::support::*;

/// Every provider kind in front of `up`, all answering within 800 ms of first byte and
/// never retried, so deadlines and error kinds show at once.
fn gateway(up: &Upstream) -> Gateway {
    let a = up.addr;
    Gateway::start(&format!(
        r#"[server]
listen = "127.0.0.1:0"
workers = 1

[[keys]]
name = "ops"
key = "sk-admin"
role = "admin"

[[providers]]
name = "openai"
kind = "openai"
base_url = "http://{a}/v1"
api_key = "sk-upstream-secret-1"
first_byte_timeout_ms = 800
max_retries = 0

[[providers]]
name = "compat"
kind = "openai_compat"
base_url = "http://{a}/v1"
api_key = "compat-key"
first_byte_timeout_ms = 800
max_retries = 0

[[providers]]
name = "anthropic"
kind = "anthropic"
base_url = "http://{a}"
api_key = "sk-ant-secret-1"
first_byte_timeout_ms = 800
max_retries = 0

[[providers]]
name = "gemini"
kind = "gemini"
base_url = "http://{a}"
api_key = "gm-secret-key"
first_byte_timeout_ms = 800
max_retries = 0

[[providers]]
name = "azure"
kind = "azure_openai"
base_url = "http://{a}"
api_key = "az-secret-key"
api_version = "2024-10-21"
first_byte_timeout_ms = 800
max_retries = 0

[[models]]
id = "gpt"
provider = "openai"
upstream = "gpt-4o"
default = true

[[models]]
id = "gpt-fb"
provider = "openai"
upstream = "gpt-4o"
fallbacks = ["llama"]

[[models]]
id = "llama"
provider = "compat"
upstream = "llama3"

[[models]]
id = "claude"
provider = "anthropic"
upstream = "claude-3-5-sonnet"

[[models]]
id = "gemini"
provider = "gemini"
upstream = "gemini-2.5-flash"

[[models]]
id = "azure"
provider = "azure"
upstream = "my-gpt4o"
"#
    ))
}

/// A path through the gateway for `/v1/chat/completions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Pass,
    Fallbacks,
    Anthropic,
    Gemini,
    Azure,
    Session,
}

const PATHS: [Path; 6] = [Path::Pass, Path::Fallbacks, Path::Anthropic, Path::Gemini, Path::Azure, Path::Session];

impl Path {
    fn model(self) -> &'static str {
        match self {
            Path::Pass | Path::Session => "gpt",
            Path::Fallbacks => "gpt-fb",
            Path::Anthropic => "claude",
            Path::Gemini => "gemini",
            Path::Azure => "azure",
        }
    }

    /// Where the upstream call of this path goes (the mock records it there).
    fn upstream_path(self, stream: bool) -> &'static str {
        match self {
            Path::Pass | Path::Fallbacks | Path::Session => "/v1/chat/completions",
            Path::Anthropic => "/v1/messages",
            Path::Gemini if stream => "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            Path::Gemini => "/v1beta/models/gemini-2.5-flash:generateContent",
            Path::Azure => "/openai/deployments/my-gpt4o/chat/completions",
        }
    }

    /// Whether the request reaches the provider untouched but for the model.
    fn forwarded(self) -> bool {
        matches!(self, Path::Pass | Path::Fallbacks | Path::Azure)
    }

    /// The request of this path: the model set, and the session header on `session`.
    fn send(self, gw: &Gateway, body: &Value) -> Response {
        let mut body = body.clone();
        body["model"] = json!(self.model());
        let r = req("POST", "/v1/chat/completions").key("sk-admin");
        let r = if self == Path::Session { r.header("x-session-id", &unique_session()) } else { r };
        gw.send(&r.json(&body))
    }

    fn stream(self, gw: &Gateway, body: &Value) -> Vec<Value> {
        let mut body = body.clone();
        body["model"] = json!(self.model());
        body["stream"] = json!(true);
        let session = unique_session();
        let headers: &[(&str, &str)] = if self == Path::Session { &[("x-session-id", &session)] } else { &[] };
        let events = v1_stream_with(gw, "sk-admin", &body, headers);
        events.iter().filter(|e| *e != "[DONE]").map(|e| serde_json::from_str(e).unwrap_or(json!({"raw": e}))).collect()
    }
}

fn unique_session() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("matrix-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The failing cells of one feature, reported together.
#[derive(Default)]
struct Cells(Vec<String>);

impl Cells {
    fn check(&mut self, cell: impl std::fmt::Debug, ok: bool, detail: impl std::fmt::Display) {
        if !ok {
            self.0.push(format!("{cell:?}: {detail}"));
        }
    }

    fn assert_green(self, feature: &str) {
        assert!(self.0.is_empty(), "{feature}: {} failing cell(s):\n{}", self.0.len(), self.0.join("\n"));
    }
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}})
}

fn user(text: &str) -> Value {
    json!({"messages": [{"role": "user", "content": text}]})
}

/// Whether `needle` occurs in the JSON text of `v`.
fn mentions(v: &Value, needle: &str) -> bool {
    v.to_string().contains(needle)
}

#[test]
fn tools_reach_every_provider_and_the_call_comes_back() {
    let up = Upstream::start();
    let gw = gateway(&up);
    let mut cells = Cells::default();
    for path in PATHS {
        let mut body = user("Weather in SF? [fault:reply=tool_call]");
        body["tools"] = json!([weather_tool()]);
        let r = path.send(&gw, &body);
        let sent = up.last_request_to(path.upstream_path(false))["json"].clone();
        cells.check(path, mentions(&sent, "get_weather") && mentions(&sent, "Current weather"), format!("sent {sent}"));
        let v = r.json();
        let choice = &v["choices"][0];
        cells.check(path, choice["finish_reason"] == "tool_calls", &v);
        cells.check(path, choice["message"]["tool_calls"][0]["function"]["name"] == "get_weather", &v);
        let args = choice["message"]["tool_calls"][0]["function"]["arguments"].as_str().unwrap_or("");
        let args: Value = serde_json::from_str(args).unwrap_or(Value::Null);
        cells.check(path, args["location"] == "San Francisco, CA", &v);
    }
    cells.assert_green("tools");
}

#[test]
fn a_tool_result_follow_up_reaches_every_provider() {
    let up = Upstream::start();
    let gw = gateway(&up);
    let mut cells = Cells::default();
    for path in PATHS {
        let call = json!({"id": "call_7", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"location\":\"SF\"}"}});
        let body = json!({"tools": [weather_tool()], "messages": [
            {"role": "user", "content": "Weather in SF?"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_7", "content": "18C and sunny"}]});
        let r = path.send(&gw, &body);
        cells.check(path, r.status() == 200, r.text());
        let sent = up.last_request_to(path.upstream_path(false))["json"].clone();
        cells.check(path, mentions(&sent, "18C and sunny") && mentions(&sent, "get_weather"), format!("sent {sent}"));
        // The call's id is carried where the provider's format has one (Gemini names
        // the function instead).
        if path != Path::Gemini {
            cells.check(path, mentions(&sent, "call_7"), format!("sent {sent}"));
        }
    }
    cells.assert_green("tool follow-up");
}

#[test]
fn streamed_tool_calls_arrive_as_openai_deltas_on_every_path() {
    let up = Upstream::start();
    let gw = gateway(&up);
    let mut cells = Cells::default();
    for path in PATHS {
        let mut body = user("Weather in SF? [fault:reply=tool_call]");
        body["tools"] = json!([weather_tool()]);
        let chunks = path.stream(&gw, &body);
        let calls: Vec<&Value> =
            chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0].as_object().map(|_| c)).collect();
        let first = calls.first().map(|c| &c["choices"][0]["delta"]["tool_calls"][0]);
        cells.check(
            path,
            first.is_some_and(|f| f["function"]["name"] == "get_weather" && f["id"].is_string()),
            format!("{chunks:?}"),
        );
        let args: String = calls
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
            .collect();
        let args: Value = serde_json::from_str(&args).unwrap_or(Value::Null);
        cells.check(path, args["location"] == "San Francisco, CA", format!("arguments {args}"));
        let finish = chunks.iter().rev().find_map(|c| c["choices"][0]["finish_reason"].as_str());
        cells.check(path, finish == Some("tool_calls"), format!("finish {finish:?}"));
    }
    cells.assert_green("streamed tool calls");
}

#[test]
fn images_reach_every_provider() {
    let up = Upstream::start();
    let gw = gateway(&up);
    let mut cells = Cells::default();
    for path in PATHS {
        let body = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]});
        let r = path.send(&gw, &body);
        cells.check(path, r.status() == 200, r.text());
        let sent = up.last_request_to(path.upstream_path(false))["json"].clone();
        cells.check(path, mentions(&sent, "iVBORw0KGgo=") && mentions(&sent, "image/png"), format!("sent {sent}"));
    }
    cells.assert_green("images");
}

#[test]
fn max_tokens_in_both_spellings_and_stop_reach_every_provider() {
    let up = Upstream::start();
    let gw = gateway(&up);
    let mut cells = Cells::default();
    for path in PATHS {
        for (field, n) in [("max_tokens", 33), ("max_completion_tokens", 34)] {
            let mut body = user("hi");
            body[field] = json!(n);
            body["stop"] = json!(["END"]);
            let r = path.send(&gw, &body);
            cells.check((path, field), r.status() == 200, r.text());
            let sent = up.last_request_to(path.upstream_path(false))["json"].clone();
            let (got, stop) = match path {
                _ if path.forwarded() => (sent[field].clone(), sent["stop"].clone()),
                Path::Anthropic => (sent["max_tokens"].clone(), sent["stop_sequences"].clone()),
                Path::Gemini => (
                    sent["generationConfig"]["maxOutputTokens"].clone(),
                    sent["generationConfig"]["stopSequences"].clone(),
                ),
                _ => (sent["max_completion_tokens"].clone(), sent["stop"].clone()),
            };
            cells.check((path, field), got == json!(n), format!("sent {sent}"));
            cells.check((path, field), stop == json!(["END"]), format!("sent {sent}"));
        }
    }
    cells.assert_green("max tokens and stop");
}

#[test]
fn n_is_forwarded_where_the_body_is_and_refused_by_name_where_it_cannot_be_carried() {
    let up = Upstream::start();
    let gw = gateway(&up);
    let mut cells = Cells::default();
    for path in PATHS {
        let mut body = user("hi");
        body["n"] = json!(2);
        let before = up.requests().len();
        let r = path.send(&gw, &body);
        if path.forwarded() {
            cells.check(path, r.status() == 200, r.text());
            let sent = up.last_request_to(path.upstream_path(false))["json"].clone();
            cells.check(path, sent["n"] == 2, format!("sent {sent}"));
        } else {
            cells.check(path, r.status() == 400, r.text());
            cells.check(path, r.json()["error"]["message"].as_str().is_some_and(|m| m.contains("`n`")), r.text());
            cells.check(path, up.requests().len() == before, "nothing may be sent");
        }
    }
    cells.assert_green("n");
}

#[test]
fn finish_reasons_are_mapped_on_every_path_streamed_or_not() {
    let up = Upstream::start();
    let gw = gateway(&up);
    let mut cells = Cells::default();
    for path in PATHS {
        for (fault, want) in
            [("stop=length", "length"), ("stop=content_filter", "content_filter"), ("stop=end", "stop")]
        {
            let body = user(&format!("one two [fault:{fault}]"));
            let v = path.send(&gw, &body).json();
            cells.check((path, fault), v["choices"][0]["finish_reason"] == want, &v);
            let chunks = path.stream(&gw, &body);
            let finish = chunks.iter().rev().find_map(|c| c["choices"][0]["finish_reason"].as_str());
            cells.check((path, fault, "stream"), finish == Some(want), format!("{finish:?}"));
        }
    }
    cells.assert_green("finish reasons");
}

#[test]
fn usage_details_come_back_on_every_path() {
    let up = Upstream::start();
    let gw = gateway(&up);
    let mut cells = Cells::default();
    for path in PATHS {
        let v = path.send(&gw, &user("one two three [fault:cached=2,reply=thinking+text]")).json();
        let u = &v["usage"];
        cells.check(path, u["prompt_tokens_details"]["cached_tokens"] == 2, u);
        // Anthropic counts thinking inside `output_tokens` and reports no part of it:
        // no detail is made up.
        let reasoning = &u["completion_tokens_details"]["reasoning_tokens"];
        let want =
            if path == Path::Anthropic { reasoning.is_null() } else { reasoning.as_u64().is_some_and(|n| n > 0) };
        cells.check(path, want, u);
        let total = u["prompt_tokens"].as_u64().unwrap_or(0) + u["completion_tokens"].as_u64().unwrap_or(0);
        cells.check(path, u["total_tokens"] == total && total > 0, u);
    }
    cells.assert_green("usage details");
}

/// The provider error kinds and what every path must answer (PROTOCOL.md "Provider
/// errors, by kind"): (fault, status, gateway code, OpenAI error type).
const ERROR_KINDS: [(&str, u16, &str, &str); 6] = [
    ("error=invalid_request", 400, "INVALID_REQUEST", "invalid_request_error"),
    ("error=rate_limit", 429, "RATE_LIMITED", "rate_limit_error"),
    ("error=auth", 502, "UPSTREAM_ERROR", "server_error"),
    ("error=server", 502, "UPSTREAM_ERROR", "server_error"),
    ("error=overloaded", 502, "UPSTREAM_ERROR", "server_error"),
    ("first-byte-ms=1500", 504, "UPSTREAM_TIMEOUT", "server_error"),
];

#[test]
fn each_error_kind_is_the_same_on_every_v1_path() {
    let up = Upstream::start();
    let gw = gateway(&up);
    let mut cells = Cells::default();
    for path in PATHS {
        for (fault, status, _, _) in ERROR_KINDS {
            let r = path.send(&gw, &user(&format!("hi [fault:{fault}]")));
            cells.check((path, fault), r.status() == status, format!("{} {}", r.status(), r.text()));
            let message = r.json()["error"]["message"].as_str().unwrap_or("").to_string();
            // Translated answers name the provider; forwarded ones are the provider's own.
            cells.check((path, fault), !message.is_empty() && !message.contains("127.0.0.1"), &message);
            if status == 429 {
                cells.check((path, fault), r.header("retry-after").is_some(), "no Retry-After");
            }
            // A success between kinds, so the breaker (5 failures in a row) stays closed.
            path.send(&gw, &user("hi"));
        }
    }
    cells.assert_green("error kinds on /v1");
}

/// The gateway protocol's paths, over every provider kind.
const MODELS: [&str; 5] = ["gpt", "llama", "claude", "gemini", "azure"];

fn ws_turn(gw: &Gateway, model: &str, content: &str, session: &str) -> Vec<Value> {
    let mut c = gw.ws("sk-admin");
    c.text(&json!({"type": "message", "content": content, "sessionId": session, "model": model}).to_string());
    let mut frames = Vec::new();
    loop {
        let v: Value = serde_json::from_str(&c.read_text()).unwrap_or(Value::Null);
        let end = v["type"] == "done" || v["type"] == "error" || v.is_null();
        frames.push(v);
        if end {
            return frames;
        }
    }
}

#[test]
fn the_gateway_protocol_serves_every_provider_kind_with_history() {
    let up = Upstream::start();
    let gw = gateway(&up);
    let mut cells = Cells::default();
    for model in MODELS {
        // /api/chat, whole and streamed, then the session's second turn.
        let session = unique_session();
        let r = gw.post(
            "/api/chat",
            Some("sk-admin"),
            &json!({"message": "one two", "model": model, "sessionId": session}),
        );
        cells.check(("/api/chat", model), r.json()["data"]["message"] == "Echo: one two", r.text());
        let r =
            gw.post("/api/chat", Some("sk-admin"), &json!({"message": "three", "model": model, "sessionId": session}));
        cells.check(("/api/chat", model), r.json()["data"]["message"] == "Echo: three", r.text());
        let path = match model {
            "claude" => "/v1/messages",
            "gemini" => "/v1beta/models/gemini-2.5-flash:generateContent",
            "azure" => "/openai/deployments/my-gpt4o/chat/completions",
            _ => "/v1/chat/completions",
        };
        let sent = up.last_request_to(path)["json"].clone();
        cells.check(
            ("/api/chat history", model),
            mentions(&sent, "one two") && mentions(&sent, "Echo: one two"),
            &sent,
        );
        let mut conn = gw.conn();
        conn.send(
            &req("POST", "/api/chat")
                .key("sk-admin")
                .json(&json!({"message": "four five", "model": model, "stream": true}))
                .bytes(),
        );
        let (_, events) = read_sse(&mut conn);
        let text: String = events
            .iter()
            .filter(|(_, e)| e.data["type"] == "chunk")
            .map(|(_, e)| e.data["content"].as_str().unwrap_or(""))
            .collect();
        cells.check(("/api/chat stream", model), text == "Echo: four five", &text);
        // /ws, on its own session, twice.
        let session = unique_session();
        let frames = ws_turn(&gw, model, "six", &session);
        let reply: String =
            frames.iter().filter(|f| f["type"] == "chunk").map(|f| f["content"].as_str().unwrap_or("")).collect();
        cells.check(
            ("/ws", model),
            reply == "Echo: six" && frames.last().is_some_and(|f| f["type"] == "done"),
            format!("{frames:?}"),
        );
        let frames = ws_turn(&gw, model, "seven", &session);
        cells.check(("/ws", model), frames.last().is_some_and(|f| f["type"] == "done"), format!("{frames:?}"));
        let path = path.replace(":generateContent", ":streamGenerateContent");
        let sent = up.last_request_to(&path)["json"].clone();
        cells.check(("/ws history", model), mentions(&sent, "Echo: six") && mentions(&sent, "seven"), &sent);
    }
    cells.assert_green("gateway protocol");
}

#[test]
fn each_error_kind_is_the_same_on_the_gateway_protocol_for_every_provider_kind() {
    let up = Upstream::start();
    let gw = gateway(&up);
    let mut cells = Cells::default();
    for model in MODELS {
        for (fault, status, code, _) in ERROR_KINDS {
            let content = format!("hi [fault:{fault}]");
            let r = gw.post("/api/chat", Some("sk-admin"), &json!({"message": content, "model": model}));
            // A success between failures, so the breaker (5 failures in a row) stays closed.
            gw.post("/api/chat", Some("sk-admin"), &json!({"message": "hi", "model": model}));
            cells.check(("/api/chat", model, fault), r.status() == status, r.text());
            cells.check(("/api/chat", model, fault), r.json()["error"]["code"] == code, r.text());
            let frames = ws_turn(&gw, model, &content, &unique_session());
            let last = frames.last().cloned().unwrap_or(Value::Null);
            cells.check(("/ws", model, fault), last["type"] == "error" && last["code"] == code, &last);
            let message = last["message"].as_str().unwrap_or("");
            cells.check(("/ws", model, fault), !message.contains("127.0.0.1"), message);
        }
    }
    cells.assert_green("error kinds on the gateway protocol");
}

#[test]
fn compressed_answers_are_decoded_on_every_path() {
    let up = Upstream::start();
    let gw = gateway(&up);
    let mut cells = Cells::default();
    for path in PATHS {
        for coding in ["gzip", "deflate"] {
            let body = user(&format!("one two [fault:encoding={coding}]"));
            let r = path.send(&gw, &body);
            let text = r.json()["choices"][0]["message"]["content"].as_str().unwrap_or("").to_string();
            cells.check((path, coding), text == "Echo: one two" && r.header("content-encoding").is_none(), &text);
            let chunks = path.stream(&gw, &body);
            let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
            cells.check((path, coding, "stream"), text == "Echo: one two", &text);
        }
    }
    for model in MODELS {
        let r = gw.post(
            "/api/chat",
            Some("sk-admin"),
            &json!({"message": "one two [fault:encoding=gzip]", "model": model}),
        );
        cells.check(("/api/chat", model), r.json()["data"]["message"] == "Echo: one two", r.text());
        let frames = ws_turn(&gw, model, "one two [fault:encoding=gzip]", &unique_session());
        let reply: String =
            frames.iter().filter(|f| f["type"] == "chunk").map(|f| f["content"].as_str().unwrap_or("")).collect();
        cells.check(("/ws", model), reply == "Echo: one two", format!("{frames:?}"));
    }
    cells.assert_green("compressed answers");
}
