//! OpenAI's Chat Completions wire format, as documented in the API reference
//! (platform.openai.com/docs/api-reference/chat): the `chat.completion` object, the
//! `chat.completion.chunk` stream (role chunk, content deltas, tool-call deltas, a
//! finish chunk with an empty delta, the usage chunk with `"choices":[]` only when
//! `stream_options.include_usage` is set, then `data: [DONE]`), the `list` of
//! models and the `{"error":{...}}` envelope. When usage is requested every other
//! chunk carries `"usage":null`, as OpenAI's do.
//!
//! Tool calls follow the function-calling guide: `message.tool_calls[]` of
//! `{"id":"call_...","type":"function","function":{"name","arguments"}}` with the
//! arguments as a JSON string and `finish_reason: "tool_calls"`; streamed, the first
//! delta of call k carries `index: k`, its id, type, name and `arguments: ""`, later
//! deltas only `index` and a piece of `arguments`. A call that opens the answer
//! rides in the role chunk (`"content":null`). Chat Completions never shows the
//! reasoning text: a thinking block only counts in
//! `usage.completion_tokens_details.reasoning_tokens`. Usage details
//! (`prompt_tokens_details.cached_tokens`, `completion_tokens_details`) appear when
//! the prompt cache or reasoning is involved. Azure OpenAI adds its content-filter
//! annotations (see `azure.rs`). Bodies are appended by hand in the documented field
//! order (see `json.rs`).

use crate::azure;
use crate::chat::{Dialect, Turn};
use crate::json::{push_num, push_raw, push_str};
use crate::reply::Block;
use crate::scenario::{ErrorKind, StopKind};
use crate::sse::Emitter;

/// The id of the `ordinal`-th tool call of an answer.
pub fn call_id(ordinal: usize) -> String {
    format!("call_mock_{}", ordinal + 1)
}

fn finish_reason(stop: StopKind) -> &'static str {
    match stop {
        StopKind::End | StopKind::StopSequence => "stop",
        StopKind::ToolUse => "tool_calls",
        StopKind::Length => "length",
        StopKind::ContentFilter => "content_filter",
    }
}

/// The non-streamed `chat.completion` body.
pub fn full(t: &Turn<'_>) -> Vec<u8> {
    let text = t.reply.text();
    let mut out = Vec::with_capacity(400 + text.len());
    head(&mut out, t, "chat.completion");
    push_raw(&mut out, "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    if t.reply.has_text() {
        push_str(&mut out, &text);
    } else if t.reply.tools().next().is_some() {
        push_raw(&mut out, "null");
    } else {
        push_raw(&mut out, "\"\"");
    }
    let mut calls = t.reply.tools().peekable();
    if calls.peek().is_some() {
        push_raw(&mut out, ",\"tool_calls\":[");
        for (i, call) in calls.enumerate() {
            if let Block::Tool { ordinal, name, arguments, .. } = call {
                if i > 0 {
                    out.push(b',');
                }
                push_raw(&mut out, "{\"id\":");
                push_str(&mut out, &call_id(*ordinal));
                push_raw(&mut out, ",\"type\":\"function\",\"function\":{\"name\":");
                push_str(&mut out, name);
                push_raw(&mut out, ",\"arguments\":");
                push_str(&mut out, arguments);
                push_raw(&mut out, "}}");
            }
        }
        out.push(b']');
    }
    push_raw(&mut out, "},\"logprobs\":null,\"finish_reason\":\"");
    push_raw(&mut out, finish_reason(t.reply.stop));
    out.push(b'"');
    if t.dialect == Dialect::Azure {
        push_raw(&mut out, ",\"content_filter_results\":");
        azure::content_filter_results(&mut out, t.reply.stop == StopKind::ContentFilter);
    }
    push_raw(&mut out, "}],");
    usage(&mut out, t);
    if t.dialect == Dialect::Azure {
        push_raw(&mut out, ",\"prompt_filter_results\":");
        azure::prompt_filter_results(&mut out);
    }
    out.push(b'}');
    out
}

/// The block whose deltas the client sees first (thinking is not shown).
fn first_visible(t: &Turn<'_>) -> Option<usize> {
    t.reply.blocks.iter().position(|b| !matches!(b, Block::Thinking { .. }))
}

/// The chunks before the content: Azure's prompt-filter chunk, then the assistant
/// role with empty content (or with the first tool call, content null).
pub fn prelude(t: &Turn<'_>, em: &mut Emitter) {
    if t.dialect == Dialect::Azure {
        azure::prompt_filter_chunk(em);
    }
    let first = first_visible(t).and_then(|b| t.reply.blocks.get(b));
    let out = em.data();
    head(out, t, "chat.completion.chunk");
    push_raw(out, "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":");
    match first {
        Some(call @ Block::Tool { .. }) => {
            push_raw(out, "null,");
            tool_header(out, call);
        }
        _ => push_raw(out, "\"\""),
    }
    push_raw(out, "},\"logprobs\":null,\"finish_reason\":null}]");
    tail(out, t);
    em.emit(None);
}

/// `"tool_calls":[{"index","id","type","function":{"name","arguments":""}}]`.
fn tool_header(out: &mut Vec<u8>, call: &Block) {
    if let Block::Tool { ordinal, name, .. } = call {
        push_raw(out, "\"tool_calls\":[{\"index\":");
        push_num(out, *ordinal as u64);
        push_raw(out, ",\"id\":");
        push_str(out, &call_id(*ordinal));
        push_raw(out, ",\"type\":\"function\",\"function\":{\"name\":");
        push_str(out, name);
        push_raw(out, ",\"arguments\":\"\"}}]");
    }
}

/// Stream step `i`: a content delta, or a tool call's header and/or arguments piece.
pub fn delta(t: &Turn<'_>, i: usize, em: &mut Emitter) {
    let Some(step) = t.reply.steps.get(i).copied() else { return };
    let piece = t.reply.piece(i);
    match t.reply.blocks.get(step.block) {
        Some(Block::Text { .. }) => {
            let out = em.data();
            head(out, t, "chat.completion.chunk");
            push_raw(out, "\"choices\":[{\"index\":0,\"delta\":{\"content\":");
            push_str(out, piece);
            push_raw(out, "},\"logprobs\":null,\"finish_reason\":null}]");
            tail(out, t);
            em.emit(None);
        }
        Some(call @ Block::Tool { ordinal, .. }) => {
            if step.piece == 0 && first_visible(t) != Some(step.block) {
                let out = em.data();
                head(out, t, "chat.completion.chunk");
                push_raw(out, "\"choices\":[{\"index\":0,\"delta\":{");
                tool_header(out, call);
                push_raw(out, "},\"logprobs\":null,\"finish_reason\":null}]");
                tail(out, t);
                em.emit(None);
            }
            let out = em.data();
            head(out, t, "chat.completion.chunk");
            push_raw(out, "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":");
            push_num(out, *ordinal as u64);
            push_raw(out, ",\"function\":{\"arguments\":");
            push_str(out, piece);
            push_raw(out, "}}]},\"logprobs\":null,\"finish_reason\":null}]");
            tail(out, t);
            em.emit(None);
        }
        Some(Block::Thinking { .. }) | None => {}
    }
}

/// The finish chunk, the usage chunk if asked for, and `[DONE]`.
pub fn finale(t: &Turn<'_>, em: &mut Emitter) {
    let out = em.data();
    head(out, t, "chat.completion.chunk");
    push_raw(out, "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"");
    push_raw(out, finish_reason(t.reply.stop));
    push_raw(out, "\"}]");
    tail(out, t);
    em.emit(None);
    if t.include_usage {
        let out = em.data();
        head(out, t, "chat.completion.chunk");
        push_raw(out, "\"choices\":[],");
        usage(out, t);
        out.push(b'}');
        em.emit(None);
    }
    em.data().extend_from_slice(b"[DONE]");
    em.emit(None);
}

/// An error in place of the rest of the stream (no `[DONE]` follows).
pub fn stream_error(em: &mut Emitter) {
    em.data().extend_from_slice(&error(500, None, None, None));
    em.emit(None);
}

/// `{"id","object","created","model",` up to the choices.
fn head(out: &mut Vec<u8>, t: &Turn<'_>, object: &str) {
    push_raw(out, "{\"id\":");
    push_str(out, &t.id);
    push_raw(out, ",\"object\":\"");
    push_raw(out, object);
    push_raw(out, "\",\"created\":");
    push_num(out, t.created);
    push_raw(out, ",\"model\":");
    push_str(out, t.model);
    out.push(b',');
}

/// Closes a stream chunk: `"usage":null` when usage was requested.
fn tail(out: &mut Vec<u8>, t: &Turn<'_>) {
    if t.include_usage {
        push_raw(out, ",\"usage\":null");
    }
    out.push(b'}');
}

fn usage(out: &mut Vec<u8>, t: &Turn<'_>) {
    let (p, c) = (t.prompt_tokens, t.completion_tokens());
    push_raw(out, "\"usage\":{\"prompt_tokens\":");
    push_num(out, p);
    push_raw(out, ",\"completion_tokens\":");
    push_num(out, c);
    push_raw(out, ",\"total_tokens\":");
    push_num(out, p + c);
    if t.cached_tokens() > 0 || t.reply.has_thinking() {
        push_raw(out, ",\"prompt_tokens_details\":{\"cached_tokens\":");
        push_num(out, t.cached_tokens());
        push_raw(out, ",\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":");
        push_num(out, t.reply.thinking_tokens());
        push_raw(out, ",\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}");
    }
    out.push(b'}');
}

/// The error envelope (error-codes guide): `kind` picks a documented special case,
/// else `status` the generic body; `message` overrides the text and `param` names
/// the offending field.
pub fn error(status: u16, kind: Option<ErrorKind>, message: Option<&str>, param: Option<&str>) -> Vec<u8> {
    let (kind_name, code, default, default_param) = match (kind, status) {
        (Some(ErrorKind::ContextLength), _) => (
            "invalid_request_error",
            Some("context_length_exceeded"),
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens. Please reduce the length of the messages.",
            Some("messages"),
        ),
        (Some(ErrorKind::Quota), _) => (
            "insufficient_quota",
            Some("insufficient_quota"),
            "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
            None,
        ),
        (_, 401) => (
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            None,
        ),
        (_, 403) => (
            "request_forbidden",
            Some("unsupported_country_region_territory"),
            "Country, region, or territory not supported",
            None,
        ),
        (_, 404) => (
            "invalid_request_error",
            Some("model_not_found"),
            "The model does not exist or you do not have access to it.",
            None,
        ),
        (_, 413) => ("invalid_request_error", None, "Request too large.", None),
        (_, 429) => {
            ("requests", Some("rate_limit_exceeded"), "Rate limit reached for requests. Please try again later.", None)
        }
        (_, 400..=499) => ("invalid_request_error", None, "Invalid request.", None),
        (_, 500) => {
            ("server_error", None, "The server had an error while processing your request. Sorry about that!", None)
        }
        (_, 502) => ("server_error", None, "Bad gateway.", None),
        (_, 504) => ("server_error", None, "Gateway timeout.", None),
        _ => ("server_error", None, "The server is overloaded or not ready yet.", None),
    };
    let mut out = Vec::with_capacity(240);
    push_raw(&mut out, "{\"error\":{\"message\":");
    push_str(&mut out, message.unwrap_or(default));
    push_raw(&mut out, ",\"type\":");
    push_str(&mut out, kind_name);
    push_raw(&mut out, ",\"param\":");
    match param.or(default_param) {
        Some(p) => push_str(&mut out, p),
        None => push_raw(&mut out, "null"),
    }
    push_raw(&mut out, ",\"code\":");
    match code {
        Some(c) => push_str(&mut out, c),
        None => push_raw(&mut out, "null"),
    }
    push_raw(&mut out, "}}");
    out
}

/// `GET /v1/models`: a fixed list.
pub fn models() -> Vec<u8> {
    let mut out = Vec::with_capacity(400);
    push_raw(&mut out, "{\"object\":\"list\",\"data\":[");
    for (i, id) in ["gpt-4o-mini", "gpt-4o", "mock-model"].iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_raw(&mut out, "{\"id\":");
        push_str(&mut out, id);
        push_raw(&mut out, ",\"object\":\"model\",\"created\":1715367049,\"owned_by\":\"system\"}");
    }
    push_raw(&mut out, "]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::{Asked, Reply, TOOL_ARGS};
    use crate::scenario::Scenario;
    use crate::sse::Style;

    fn turn(reply: &Reply, include_usage: bool) -> Turn<'_> {
        Turn {
            id: "chatcmpl-1".into(),
            created: 7,
            model: "m",
            prompt_tokens: 4,
            include_usage,
            include_thoughts: false,
            dialect: Dialect::OpenAi,
            reply,
            echo: None,
        }
    }

    fn scripted(spec: &str) -> Reply {
        let mut s = Scenario::default();
        s.set_reply(spec).unwrap();
        s.cached = 3;
        Reply::build(&s, &Asked { last_user: "hi", ..Asked::default() })
    }

    fn stream(t: &Turn<'_>) -> Vec<serde_json::Value> {
        let mut em = Emitter::new(Style::default());
        prelude(t, &mut em);
        for i in 0..t.reply.steps.len() {
            delta(t, i, &mut em);
        }
        finale(t, &mut em);
        let text = String::from_utf8(em.take().to_vec()).unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn full_body_has_the_documented_shape() {
        let reply = Reply::echo("hi", None);
        assert_eq!(
            String::from_utf8(full(&turn(&reply, false))).unwrap(),
            r#"{"id":"chatcmpl-1","object":"chat.completion","created":7,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Echo: hi"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}"#
        );
    }

    #[test]
    fn stream_ends_with_usage_then_done() {
        let reply = Reply::echo("hi", None);
        let t = turn(&reply, true);
        let mut em = Emitter::new(Style::default());
        prelude(&t, &mut em);
        delta(&t, 0, &mut em);
        finale(&t, &mut em);
        let text = String::from_utf8(em.take().to_vec()).unwrap();
        assert!(text.contains(r#""delta":{"content":"Echo: hi"},"logprobs":null,"finish_reason":null}],"usage":null}"#));
        assert!(text.contains(r#""choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}"#));
        assert!(text.ends_with("data: [DONE]\n\n\r\n"));
    }

    #[test]
    fn tool_calls_in_full_and_streamed_with_usage_details() {
        let reply = scripted("thinking+tool_calls");
        let v: serde_json::Value = serde_json::from_slice(&full(&turn(&reply, false))).unwrap();
        let expected = serde_json::json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_mock_1", "type": "function", "function": {"name": "get_weather", "arguments": TOOL_ARGS[0]}},
            {"id": "call_mock_2", "type": "function", "function": {"name": "get_weather", "arguments": TOOL_ARGS[1]}}
        ]});
        assert_eq!(v["choices"][0]["message"], expected);
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
        assert_eq!(v["usage"]["completion_tokens_details"]["reasoning_tokens"], 3);

        let chunks = stream(&turn(&reply, false));
        let first = &chunks[0]["choices"][0]["delta"];
        assert_eq!(first["content"], serde_json::Value::Null);
        assert_eq!(first["tool_calls"][0]["id"], "call_mock_1");
        assert_eq!(first["tool_calls"][0]["function"]["arguments"], "");
        let mut args = [String::new(), String::new()];
        let mut headers = 0;
        for c in &chunks[1..chunks.len() - 1] {
            let call = &c["choices"][0]["delta"]["tool_calls"][0];
            let k = call["index"].as_u64().unwrap() as usize;
            if call.get("id").is_some() {
                headers += 1;
                assert_eq!(call["function"]["arguments"], "");
            } else {
                args[k].push_str(call["function"]["arguments"].as_str().unwrap());
            }
        }
        assert_eq!((headers, args[0].as_str(), args[1].as_str()), (1, TOOL_ARGS[0], TOOL_ARGS[1]));
        assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn errors_have_the_documented_codes() {
        let v: serde_json::Value =
            serde_json::from_slice(&error(400, Some(ErrorKind::ContextLength), None, None)).unwrap();
        assert_eq!(
            (v["error"]["code"].as_str(), v["error"]["param"].as_str()),
            (Some("context_length_exceeded"), Some("messages"))
        );
        let v: serde_json::Value = serde_json::from_slice(&error(429, Some(ErrorKind::Quota), None, None)).unwrap();
        assert_eq!(v["error"]["type"], "insufficient_quota");
    }
}
