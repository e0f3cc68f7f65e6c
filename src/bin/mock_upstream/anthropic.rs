//! Anthropic's Messages wire format, as documented in the API reference: the
//! `message` object, the named-event stream (`message_start`, `content_block_start`,
//! `ping`, one `content_block_delta` per chunk, `content_block_stop`,
//! `message_delta`, `message_stop`), the models list and the
//! `{"type":"error","error":{...}}` envelope with its documented error types.
//! Bodies are appended by hand in the documented field order (see `json.rs`).

use crate::chat::Turn;
use crate::json::{push_num, push_raw, push_str};
use crate::sse::Emitter;

/// The non-streamed `message` body.
pub fn full(t: &Turn<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(300 + t.reply.text.len());
    message_head(&mut out, t);
    push_raw(&mut out, "\"content\":[{\"type\":\"text\",\"text\":");
    push_str(&mut out, &t.reply.text);
    push_raw(&mut out, "}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":");
    push_num(&mut out, t.prompt_tokens);
    push_raw(&mut out, ",\"output_tokens\":");
    push_num(&mut out, t.completion_tokens());
    push_raw(&mut out, "}}");
    out
}

/// `{"id","type":"message","role":"assistant","model",`.
fn message_head(out: &mut Vec<u8>, t: &Turn<'_>) {
    push_raw(out, "{\"id\":");
    push_str(out, &t.id);
    push_raw(out, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    push_str(out, t.model);
    out.push(b',');
}

/// `message_start`, `content_block_start` and `ping`.
pub fn prelude(t: &Turn<'_>, em: &mut Emitter) {
    let out = em.data();
    push_raw(out, "{\"type\":\"message_start\",\"message\":");
    message_head(out, t);
    push_raw(out, "\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":");
    push_num(out, t.prompt_tokens);
    push_raw(out, ",\"output_tokens\":1}}}");
    em.emit(Some("message_start"));
    push_raw(
        em.data(),
        "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}",
    );
    em.emit(Some("content_block_start"));
    push_raw(em.data(), "{\"type\":\"ping\"}");
    em.emit(Some("ping"));
}

/// `content_block_delta` for content chunk `i`.
pub fn delta(t: &Turn<'_>, i: usize, em: &mut Emitter) {
    let out = em.data();
    push_raw(out, "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":");
    push_str(out, t.reply.chunk(i));
    push_raw(out, "}}");
    em.emit(Some("content_block_delta"));
}

/// `content_block_stop`, `message_delta` (stop reason, output tokens), `message_stop`.
pub fn finale(t: &Turn<'_>, em: &mut Emitter) {
    push_raw(em.data(), "{\"type\":\"content_block_stop\",\"index\":0}");
    em.emit(Some("content_block_stop"));
    let out = em.data();
    push_raw(
        out,
        "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":",
    );
    push_num(out, t.completion_tokens());
    push_raw(out, "}}");
    em.emit(Some("message_delta"));
    push_raw(em.data(), "{\"type\":\"message_stop\"}");
    em.emit(Some("message_stop"));
}

/// The error envelope for `status`, with the documented error type for each code.
pub fn error(status: u16, message: Option<&str>) -> Vec<u8> {
    let (kind, default) = match status {
        401 => ("authentication_error", "invalid x-api-key"),
        403 => ("permission_error", "Your API key does not have permission to use the specified resource."),
        404 => ("not_found_error", "The requested resource could not be found."),
        413 => ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
        429 => ("rate_limit_error", "Number of requests has exceeded your rate limit."),
        400..=499 => ("invalid_request_error", "Invalid request."),
        504 => ("timeout_error", "Request timed out."),
        529 => ("overloaded_error", "Overloaded"),
        _ => ("api_error", "Internal server error"),
    };
    let mut out = Vec::with_capacity(160);
    push_raw(&mut out, "{\"type\":\"error\",\"error\":{\"type\":");
    push_str(&mut out, kind);
    push_raw(&mut out, ",\"message\":");
    push_str(&mut out, message.unwrap_or(default));
    push_raw(&mut out, "}}");
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
    use crate::chat::Reply;
    use crate::sse::Style;

    #[test]
    fn stream_has_the_documented_event_sequence() {
        let reply = Reply::echo("a b c d", None);
        let t =
            Turn { id: "msg_1".into(), created: 0, model: "c", prompt_tokens: 7, include_usage: false, reply: &reply };
        let mut em = Emitter::new(Style::default());
        prelude(&t, &mut em);
        for i in 0..reply.chunks.len() {
            delta(&t, i, &mut em);
        }
        finale(&t, &mut em);
        let text = String::from_utf8(em.take().to_vec()).unwrap();
        let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
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
        assert!(text.contains(r#""usage":{"input_tokens":7,"output_tokens":1}}}"#));
        assert!(text.contains(r#"{"type":"text_delta","text":"Echo: a b"}"#));
        assert!(text.contains(r#""usage":{"output_tokens":5}}"#));
    }

    #[test]
    fn errors_use_the_documented_types() {
        assert_eq!(
            String::from_utf8(error(529, None)).unwrap(),
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
        );
        assert!(String::from_utf8(error(429, None)).unwrap().contains("rate_limit_error"));
    }
}
