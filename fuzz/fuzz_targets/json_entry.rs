//! Every JSON entry point reachable through the library's public API, on arbitrary
//! bytes: `json::check_depth`, `json::from_slice` / `from_str` / `get` (the depth-checked
//! wrappers every parse goes through), the WebSocket `ClientFrame`, the request-body
//! gate `api::require_body` and its error message `api::json_error`.
//!
//! The request bodies of `/api/chat`, `/v1/chat/completions`, `/api/sessions/{id}` and
//! the pass-through's peek are parsed into private structs; until those parses are
//! public, mirrors of their shapes (below, same serde attributes) stand in, parsed the
//! way `api::dispatch` + the handlers do (depth check first, then sonic-rs).
//!
//! Input: the bytes (byte 0 also picks a depth limit for the extra `check_depth` runs).
//! Checked: no panic and no stack overflow, however deep the input; whatever parses
//! nests no deeper than the process-wide limit; `check_depth` is monotone in its limit.
#![no_main]

use std::borrow::Cow;

use bytes::Bytes;
use clawgate::api::{json_error, require_body, JsonKind};
use clawgate::http::Request;
use clawgate::json::{self, check_depth, JsonError};
use clawgate::ws::protocol::ClientFrame;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use sonic_rs::{JsonContainerTrait, Value};

/// Nesting depth of a parsed value, without recursion (the outermost container is 1).
fn depth(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        if let Some(a) = v.as_array() {
            max = max.max(d);
            stack.extend(a.iter().map(|x| (x, d + 1)));
        } else if let Some(o) = v.as_object() {
            max = max.max(d);
            stack.extend(o.iter().map(|(_, x)| (x, d + 1)));
        }
    }
    max
}

// Mirrors of the private request-body structs (api/chat.rs ChatBody, api/openai.rs
// CompletionBody, api/sessions.rs OpBody, api/openai/pass.rs Peek).
#[derive(Deserialize)]
#[allow(dead_code)]
struct ChatBody<'a> {
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "sessionId")]
    session_id: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct CompletionBody<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    messages: Option<Vec<InMessage<'a>>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct InMessage<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(default)]
    content: Option<Content<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum Content<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Parts(#[serde(borrow)] Vec<Part<'a>>),
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Part<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct OpBody<'a> {
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    limit: Option<u64>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

const CHAT_FIELDS: &[(&str, JsonKind)] = &[
    ("channel", JsonKind::String),
    ("message", JsonKind::String),
    ("sessionId", JsonKind::String),
    ("stream", JsonKind::Bool),
    ("model", JsonKind::String),
];
const OP_FIELDS: &[(&str, JsonKind)] =
    &[("action", JsonKind::String), ("model", JsonKind::String), ("limit", JsonKind::Integer)];

/// A handler's parse: the depth-checked wrapper, then `json_error` for the message.
fn handler_parse<'a, T: Deserialize<'a>>(body: &'a [u8], fields: &[(&str, JsonKind)]) {
    if let Err(JsonError::Parse(e)) = json::from_slice::<T>(body) {
        let _ = json_error(body, &e, fields).message;
    }
}

fn request_with_body(body: &[u8]) -> Option<Request> {
    let head = Bytes::from_static(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n");
    let mut req = Request::from_head(head, 64).ok()?;
    req.body = Bytes::copy_from_slice(body);
    Some(req)
}

fuzz_target!(|data: &[u8]| {
    let limit = json::max_depth();

    // The wrappers: a refusal is `TooDeep` (never a crash); an accepted value fits.
    let checked = check_depth(data, limit);
    match json::from_slice::<Value>(data) {
        Ok(v) => {
            assert!(checked.is_ok(), "from_slice accepted what check_depth refused");
            assert!(depth(&v) <= limit, "a value nested {} deep got past the limit {limit}", depth(&v));
            let _ = sonic_rs::to_string(&v);
        }
        Err(JsonError::TooDeep { limit: l }) => assert!(checked.is_err() && l == limit),
        Err(e @ JsonError::Parse(_)) => {
            let _ = e.first_line();
        }
    }
    if let Some(&b) = data.first() {
        let small = usize::from(b % 16) + 1;
        if check_depth(data, small).is_ok() {
            assert!(check_depth(data, small + 1).is_ok() && check_depth(data, limit.max(small)).is_ok());
        }
    }
    let _ = json::get(data, &["message"]).map(|v| v.as_raw_str().len());
    let _ = json::get(data, &sonic_rs::pointer!["messages", 0, "content"]).map(|v| v.as_raw_str().len());

    // WebSocket text frames (ws/session.rs `on_text`).
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(f) = json::from_str::<ClientFrame<'_>>(text) {
            let _ = (f.kind.len(), f.token, f.channel, f.content, f.session_id, f.model, f.events);
        }
    }

    // HTTP bodies: the object-only gate every body route passes, then the handlers.
    if let Some(req) = request_with_body(data) {
        if let Ok(body) = require_body(&req) {
            if check_depth(body, limit).is_ok() {
                handler_parse::<ChatBody<'_>>(body, CHAT_FIELDS);
                handler_parse::<CompletionBody<'_>>(body, &[]);
                handler_parse::<OpBody<'_>>(body, OP_FIELDS);
                let _ = json::from_slice::<Peek<'_>>(body);
            }
        }
    }
});
