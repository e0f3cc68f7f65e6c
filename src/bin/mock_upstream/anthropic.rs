//! Anthropic's Messages wire format, as documented in the API reference
//! (docs.anthropic.com: "Messages", "Streaming Messages", "Errors"): the `message`
//! object with its content blocks (`thinking` with its `signature`, `text`,
//! `tool_use` with `id`, `name` and `input`), the named-event stream
//! (`message_start`, then per block `content_block_start` / `content_block_delta`
//! (`thinking_delta`, `signature_delta`, `text_delta`, `input_json_delta` whose
//! `partial_json` pieces begin with an empty one) / `content_block_stop`, a `ping`
//! after the first block opens, `message_delta` with `stop_reason` (`end_turn`,
//! `tool_use`, `max_tokens`, `refusal`, `stop_sequence`) and `message_stop`), usage
//! with `cache_creation_input_tokens` / `cache_read_input_tokens` when the prompt
//! cache was read (`input_tokens` then counts only the uncached part), the models
//! list, the `count_tokens` answer `{"input_tokens":N}` (the prompt tokens a Messages
//! request with the same body reports) and the `{"type":"error","error":{...}}` envelope with its documented error
//! types, also sent as an in-stream `error` event. Bodies are appended by hand in the
//! documented field order (see `json.rs`).

use crate::chat::Turn;
use crate::json::{push_num, push_raw, push_str};
use crate::reply::{Block, SIGNATURE};
use crate::scenario::{ErrorKind, StopKind};
use crate::sse::Emitter;

/// The id of the `ordinal`-th tool call of an answer.
pub fn tool_id(ordinal: usize) -> String {
    format!("toolu_mock_{}", ordinal + 1)
}

fn stop_reason(stop: StopKind) -> &'static str {
    match stop {
        StopKind::End => "end_turn",
        StopKind::ToolUse => "tool_use",
        StopKind::Length => "max_tokens",
        StopKind::ContentFilter => "refusal",
        StopKind::StopSequence => "stop_sequence",
    }
}

/// The non-streamed `message` body.
pub fn full(t: &Turn<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(400);
    message_head(&mut out, t);
    push_raw(&mut out, "\"content\":[");
    for (i, block) in t.reply.blocks.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match block {
            Block::Thinking { text, .. } => {
                push_raw(&mut out, "{\"type\":\"thinking\",\"thinking\":");
                push_str(&mut out, text);
                push_raw(&mut out, ",\"signature\":");
                push_str(&mut out, SIGNATURE);
                out.push(b'}');
            }
            Block::Text { text, .. } => {
                push_raw(&mut out, "{\"type\":\"text\",\"text\":");
                push_str(&mut out, text);
                out.push(b'}');
            }
            Block::Tool { ordinal, name, arguments, .. } => {
                push_raw(&mut out, "{\"type\":\"tool_use\",\"id\":");
                push_str(&mut out, &tool_id(*ordinal));
                push_raw(&mut out, ",\"name\":");
                push_str(&mut out, name);
                push_raw(&mut out, ",\"input\":");
                push_raw(&mut out, arguments);
                out.push(b'}');
            }
        }
    }
    push_raw(&mut out, "],");
    stop_fields(&mut out, t);
    push_raw(&mut out, ",\"usage\":");
    usage_in(&mut out, t, t.completion_tokens());
    out.push(b'}');
    out
}

/// `"stop_reason":...,"stop_sequence":...`.
fn stop_fields(out: &mut Vec<u8>, t: &Turn<'_>) {
    push_raw(out, "\"stop_reason\":\"");
    push_raw(out, stop_reason(t.reply.stop));
    push_raw(out, "\",\"stop_sequence\":");
    if t.reply.stop == StopKind::StopSequence {
        push_str(out, &t.reply.stop_sequence);
    } else {
        push_raw(out, "null");
    }
}

/// `{"input_tokens"[,cache fields],"output_tokens"}`.
fn usage_in(out: &mut Vec<u8>, t: &Turn<'_>, output: u64) {
    let cached = t.cached_tokens();
    push_raw(out, "{\"input_tokens\":");
    push_num(out, t.prompt_tokens - cached);
    if cached > 0 {
        push_raw(out, ",\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":");
        push_num(out, cached);
    }
    push_raw(out, ",\"output_tokens\":");
    push_num(out, output);
    out.push(b'}');
}

/// `{"id","type":"message","role":"assistant","model",`.
fn message_head(out: &mut Vec<u8>, t: &Turn<'_>) {
    push_raw(out, "{\"id\":");
    push_str(out, &t.id);
    push_raw(out, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    push_str(out, t.model);
    out.push(b',');
}

/// `message_start`, the first `content_block_start` and `ping`.
pub fn prelude(t: &Turn<'_>, em: &mut Emitter) {
    let out = em.data();
    push_raw(out, "{\"type\":\"message_start\",\"message\":");
    message_head(out, t);
    push_raw(out, "\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":");
    usage_in(out, t, 1);
    push_raw(out, "}}");
    em.emit(Some("message_start"));
    block_start(t, 0, em);
    push_raw(em.data(), "{\"type\":\"ping\"}");
    em.emit(Some("ping"));
}

/// `content_block_start` for block `index`, with the block's empty shape.
fn block_start(t: &Turn<'_>, index: usize, em: &mut Emitter) {
    let out = em.data();
    push_raw(out, "{\"type\":\"content_block_start\",\"index\":");
    push_num(out, index as u64);
    push_raw(out, ",\"content_block\":");
    match t.reply.blocks.get(index) {
        Some(Block::Thinking { .. }) => push_raw(out, "{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}"),
        Some(Block::Tool { ordinal, name, .. }) => {
            push_raw(out, "{\"type\":\"tool_use\",\"id\":");
            push_str(out, &tool_id(*ordinal));
            push_raw(out, ",\"name\":");
            push_str(out, name);
            push_raw(out, ",\"input\":{}}");
        }
        Some(Block::Text { .. }) | None => push_raw(out, "{\"type\":\"text\",\"text\":\"\"}"),
    }
    out.push(b'}');
    em.emit(Some("content_block_start"));
}

fn block_stop(index: usize, em: &mut Emitter) {
    let out = em.data();
    push_raw(out, "{\"type\":\"content_block_stop\",\"index\":");
    push_num(out, index as u64);
    out.push(b'}');
    em.emit(Some("content_block_stop"));
}

/// One `content_block_delta`.
fn block_delta(index: usize, kind: &str, field: &str, value: &str, em: &mut Emitter) {
    let out = em.data();
    push_raw(out, "{\"type\":\"content_block_delta\",\"index\":");
    push_num(out, index as u64);
    push_raw(out, ",\"delta\":{\"type\":\"");
    push_raw(out, kind);
    push_raw(out, "\",\"");
    push_raw(out, field);
    push_raw(out, "\":");
    push_str(out, value);
    push_raw(out, "}}");
    em.emit(Some("content_block_delta"));
}

/// Stream step `i`: closes the previous block and opens the next when the step
/// starts a new one, then its `content_block_delta`.
pub fn delta(t: &Turn<'_>, i: usize, em: &mut Emitter) {
    let Some(step) = t.reply.steps.get(i).copied() else { return };
    let prev = if i == 0 { 0 } else { t.reply.steps.get(i - 1).map_or(0, |s| s.block) };
    if step.block != prev {
        block_stop(prev, em);
        block_start(t, step.block, em);
    }
    let piece = t.reply.piece(i);
    match t.reply.blocks.get(step.block) {
        Some(Block::Thinking { chunks, .. }) if step.piece < chunks.len() => {
            block_delta(step.block, "thinking_delta", "thinking", piece, em);
        }
        Some(Block::Thinking { .. }) => block_delta(step.block, "signature_delta", "signature", piece, em),
        Some(Block::Text { .. }) => block_delta(step.block, "text_delta", "text", piece, em),
        Some(Block::Tool { .. }) => {
            if step.piece == 0 {
                block_delta(step.block, "input_json_delta", "partial_json", "", em);
            }
            block_delta(step.block, "input_json_delta", "partial_json", piece, em);
        }
        None => {}
    }
}

/// `content_block_stop`, `message_delta` (stop reason, output tokens), `message_stop`.
pub fn finale(t: &Turn<'_>, em: &mut Emitter) {
    block_stop(t.reply.steps.last().map_or(0, |s| s.block), em);
    let out = em.data();
    push_raw(out, "{\"type\":\"message_delta\",\"delta\":{");
    stop_fields(out, t);
    push_raw(out, "},\"usage\":{\"output_tokens\":");
    push_num(out, t.completion_tokens());
    push_raw(out, "}}");
    em.emit(Some("message_delta"));
    push_raw(em.data(), "{\"type\":\"message_stop\"}");
    em.emit(Some("message_stop"));
}

/// An `error` event in place of the rest of the stream.
pub fn stream_error(em: &mut Emitter) {
    em.data().extend_from_slice(&error(529, None, None));
    em.emit(Some("error"));
}

/// The error envelope: `kind` picks a documented special case, else `status` the
/// documented error type for that code; `message` overrides the text.
pub fn error(status: u16, kind: Option<ErrorKind>, message: Option<&str>) -> Vec<u8> {
    let (kind_name, default) = match (kind, status) {
        (Some(ErrorKind::ContextLength), _) => ("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
        (Some(ErrorKind::Quota), _) => (
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
        ),
        (_, 401) => ("authentication_error", "invalid x-api-key"),
        (_, 403) => ("permission_error", "Your API key does not have permission to use the specified resource."),
        (_, 404) => ("not_found_error", "The requested resource could not be found."),
        (_, 413) => ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
        (_, 429) => ("rate_limit_error", "Number of requests has exceeded your rate limit."),
        (_, 400..=499) => ("invalid_request_error", "Invalid request."),
        (_, 504) => ("timeout_error", "Request timed out."),
        (_, 529) => ("overloaded_error", "Overloaded"),
        _ => ("api_error", "Internal server error"),
    };
    let mut out = Vec::with_capacity(160);
    push_raw(&mut out, "{\"type\":\"error\",\"error\":{\"type\":");
    push_str(&mut out, kind_name);
    push_raw(&mut out, ",\"message\":");
    push_str(&mut out, message.unwrap_or(default));
    push_raw(&mut out, "}}");
    out
}

/// The `count_tokens` answer (`MessageTokensCount`): `{"input_tokens":N}`.
pub fn token_count(input_tokens: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    push_raw(&mut out, "{\"input_tokens\":");
    push_num(&mut out, input_tokens);
    out.push(b'}');
    out
}

/// `GET /v1/models` with `anthropic-version`: a fixed list in Anthropic's shape.
pub fn models() -> Vec<u8> {
    let mut out = Vec::with_capacity(400);
    push_raw(&mut out, "{\"data\":[");
    let models = [("claude-sonnet-4-20250514", "Claude Sonnet 4"), ("claude-3-5-haiku-20241022", "Claude Haiku 3.5")];
    for (i, (id, name)) in models.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_raw(&mut out, "{\"type\":\"model\",\"id\":");
        push_str(&mut out, id);
        push_raw(&mut out, ",\"display_name\":");
        push_str(&mut out, name);
        push_raw(&mut out, ",\"created_at\":\"2025-05-22T00:00:00Z\"}");
    }
    push_raw(
        &mut out,
        "],\"has_more\":false,\"first_id\":\"claude-sonnet-4-20250514\",\"last_id\":\"claude-3-5-haiku-20241022\"}",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Dialect;
    use crate::reply::{Asked, Reply, TOOL_ARGS};
    use crate::scenario::Scenario;
    use crate::sse::Style;

    fn turn(reply: &Reply) -> Turn<'_> {
        Turn {
            id: "msg_1".into(),
            created: 0,
            model: "c",
            prompt_tokens: 7,
            include_usage: false,
            include_thoughts: false,
            dialect: Dialect::Anthropic,
            reply,
            echo: None,
        }
    }

    fn events(t: &Turn<'_>) -> Vec<(String, serde_json::Value)> {
        let mut em = Emitter::new(Style::default());
        prelude(t, &mut em);
        for i in 0..t.reply.steps.len() {
            delta(t, i, &mut em);
        }
        finale(t, &mut em);
        let text = String::from_utf8(em.take().to_vec()).unwrap();
        let names = text.lines().filter_map(|l| l.strip_prefix("event: ").map(str::to_string));
        let data = text.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap());
        names.zip(data).collect()
    }

    #[test]
    fn stream_has_the_documented_event_sequence() {
        let reply = Reply::echo("a b c d", None);
        let ev = events(&turn(&reply));
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(ev[0].1["message"]["usage"], serde_json::json!({"input_tokens": 7, "output_tokens": 1}));
        assert_eq!(ev[3].1["delta"], serde_json::json!({"type": "text_delta", "text": "Echo: a b"}));
        assert_eq!(ev[6].1["usage"], serde_json::json!({"output_tokens": 5}));
    }

    #[test]
    fn thinking_text_and_tool_use_blocks_stream_in_order() {
        let mut s = Scenario::default();
        s.set_reply("thinking+text+tool_call").unwrap();
        s.cached = 5;
        let reply = Reply::build(&s, &Asked { last_user: "hi", ..Asked::default() });
        let t = turn(&reply);
        let v: serde_json::Value = serde_json::from_slice(&full(&t)).unwrap();
        let input: serde_json::Value = serde_json::from_str(TOOL_ARGS[0]).unwrap();
        assert_eq!(
            v["content"],
            serde_json::json!([
                {"type": "thinking", "thinking": "Thinking about: hi", "signature": SIGNATURE},
                {"type": "text", "text": "Echo: hi"},
                {"type": "tool_use", "id": "toolu_mock_1", "name": "get_weather", "input": input}
            ])
        );
        assert_eq!((v["stop_reason"].as_str(), v["stop_sequence"].is_null()), (Some("tool_use"), true));
        assert_eq!(
            v["usage"],
            serde_json::json!({"input_tokens": 2, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 5, "output_tokens": 3 + 2 + 3})
        );
        let ev = events(&t);
        let starts: Vec<&str> = ev
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| d["content_block"]["type"].as_str().unwrap())
            .collect();
        assert_eq!(starts, ["thinking", "text", "tool_use"]);
        let deltas: Vec<&str> = ev
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .map(|(_, d)| d["delta"]["type"].as_str().unwrap())
            .collect();
        assert_eq!(&deltas[..3], ["thinking_delta", "signature_delta", "text_delta"]);
        let json: String = ev
            .iter()
            .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
            .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(json, TOOL_ARGS[0]);
        let stops: Vec<u64> =
            ev.iter().filter(|(n, _)| n == "content_block_stop").map(|(_, d)| d["index"].as_u64().unwrap()).collect();
        assert_eq!(stops, [0, 1, 2]);
    }

    #[test]
    fn errors_use_the_documented_types() {
        assert_eq!(
            String::from_utf8(error(529, None, None)).unwrap(),
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
        );
        assert!(String::from_utf8(error(429, None, None)).unwrap().contains("rate_limit_error"));
        let body = String::from_utf8(error(400, Some(ErrorKind::ContextLength), None)).unwrap();
        assert!(body.contains("prompt is too long"), "{body}");
    }
}
