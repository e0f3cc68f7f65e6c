//! OpenAI's Chat Completions wire format, as documented in the API reference:
//! the `chat.completion` object, the `chat.completion.chunk` stream (role chunk,
//! content deltas, a finish chunk with an empty delta, the usage chunk with
//! `"choices":[]` only when `stream_options.include_usage` is set, then
//! `data: [DONE]`), the `list` of models and the `{"error":{...}}` envelope.
//! When usage is requested every other chunk carries `"usage":null`, as OpenAI's do.
//! Bodies are appended by hand in the documented field order (see `json.rs`).

use crate::chat::Turn;
use crate::json::{push_num, push_raw, push_str};
use crate::sse::Emitter;

/// The non-streamed `chat.completion` body.
pub fn full(t: &Turn<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(320 + t.reply.text.len());
    head(&mut out, t, "chat.completion");
    push_raw(&mut out, "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    push_str(&mut out, &t.reply.text);
    push_raw(&mut out, "},\"logprobs\":null,\"finish_reason\":\"stop\"}],");
    usage(&mut out, t);
    out.push(b'}');
    out
}

/// The chunks before the content: the assistant role with empty content.
pub fn prelude(t: &Turn<'_>, em: &mut Emitter) {
    let out = em.data();
    head(out, t, "chat.completion.chunk");
    push_raw(out, "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]");
    tail(out, t);
    em.emit(None);
}

/// Content chunk `i`.
pub fn delta(t: &Turn<'_>, i: usize, em: &mut Emitter) {
    let out = em.data();
    head(out, t, "chat.completion.chunk");
    push_raw(out, "\"choices\":[{\"index\":0,\"delta\":{\"content\":");
    push_str(out, t.reply.chunk(i));
    push_raw(out, "},\"logprobs\":null,\"finish_reason\":null}]");
    tail(out, t);
    em.emit(None);
}

/// The finish chunk, the usage chunk if asked for, and `[DONE]`.
pub fn finale(t: &Turn<'_>, em: &mut Emitter) {
    let out = em.data();
    head(out, t, "chat.completion.chunk");
    push_raw(out, "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]");
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
    out.push(b'}');
}

/// The error envelope for `status`; `message` overrides the default text and
/// `param` names the offending field.
pub fn error(status: u16, message: Option<&str>, param: Option<&str>) -> Vec<u8> {
    let (kind, code, default) = match status {
        401 => (
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
        ),
        404 => (
            "invalid_request_error",
            Some("model_not_found"),
            "The model does not exist or you do not have access to it.",
        ),
        429 => ("requests", Some("rate_limit_exceeded"), "Rate limit reached for requests. Please try again later."),
        400..=499 => ("invalid_request_error", None, "Invalid request."),
        500 => ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
        502 => ("server_error", None, "Bad gateway."),
        504 => ("server_error", None, "Gateway timeout."),
        _ => ("server_error", None, "The server is overloaded or not ready yet."),
    };
    let mut out = Vec::with_capacity(200);
    push_raw(&mut out, "{\"error\":{\"message\":");
    push_str(&mut out, message.unwrap_or(default));
    push_raw(&mut out, ",\"type\":");
    push_str(&mut out, kind);
    push_raw(&mut out, ",\"param\":");
    match param {
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
    use crate::chat::Reply;
    use crate::sse::Style;

    #[test]
    fn full_body_has_the_documented_shape() {
        let reply = Reply::echo("hi", None);
        let t = Turn {
            id: "chatcmpl-1".into(),
            created: 7,
            model: "m",
            prompt_tokens: 4,
            include_usage: false,
            reply: &reply,
        };
        assert_eq!(
            String::from_utf8(full(&t)).unwrap(),
            r#"{"id":"chatcmpl-1","object":"chat.completion","created":7,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Echo: hi"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}"#
        );
    }

    #[test]
    fn stream_ends_with_usage_then_done() {
        let reply = Reply::echo("hi", None);
        let t = Turn { id: "c".into(), created: 7, model: "m", prompt_tokens: 4, include_usage: true, reply: &reply };
        let mut em = Emitter::new(Style::default());
        prelude(&t, &mut em);
        delta(&t, 0, &mut em);
        finale(&t, &mut em);
        let text = String::from_utf8(em.take().to_vec()).unwrap();
        assert!(text.contains(r#""delta":{"content":"Echo: hi"},"logprobs":null,"finish_reason":null}],"usage":null}"#));
        assert!(text.contains(r#""choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}"#));
        assert!(text.ends_with("data: [DONE]\n\n\r\n"));
    }
}
