//! Google's Gemini API wire format (ai.google.dev/api: "Generating content",
//! "Function calling", "Thinking", "Safety settings", and the Google API error
//! model): `POST /v1beta/models/{model}:generateContent` answers one
//! `GenerateContentResponse`, `:streamGenerateContent?alt=sse` a stream of them as
//! `data:` events (no event names, no `[DONE]`), and `:streamGenerateContent`
//! without `alt=sse` the same objects as one JSON array, streamed. The key is sent
//! in `x-goog-api-key`. The same key and error bodies serve `:embedContent` and
//! `:batchEmbedContents` (`embeddings.rs`).
//!
//! A response is `{"candidates":[{"content":{"parts":[...],"role":"model"},
//! "finishReason","index":0}],"usageMetadata":{...},"modelVersion","responseId"}`.
//! Parts are `{"text"}`, `{"functionCall":{"name","args"}}` (a call arrives whole,
//! never split) and, only when the request set
//! `generationConfig.thinkingConfig.includeThoughts`, thought summaries
//! `{"text","thought":true}`. `finishReason` is `STOP` (also after a function
//! call), `MAX_TOKENS` or `SAFETY`; a `SAFETY` candidate has no content and carries
//! `safetyRatings` with the blocked category. `usageMetadata` has
//! `promptTokenCount` (cached tokens included, also given as
//! `cachedContentTokenCount`), `candidatesTokenCount` (without thinking),
//! `thoughtsTokenCount` and `totalTokenCount` (all three added). Stream chunks carry
//! one part each with the prompt count; the last has the `finishReason` and the
//! whole usage. Errors are `{"error":{"code":N,"message","status"}}` with Google's
//! canonical status names and, for some, `details`.

use crate::chat::Turn;
use crate::json::{push_num, push_raw, push_str};
use crate::reply::Block;
use crate::scenario::{ErrorKind, StopKind};
use crate::sse::Emitter;

/// The methods the mock serves on a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Generate,
    Stream,
    /// `embedContent` (`embeddings.rs`).
    Embed,
    /// `batchEmbedContents` (`embeddings.rs`).
    BatchEmbed,
}

/// `(model, method)` of a model method path (`/v1beta/models/{model}:{method}`, also
/// under `/v1/`), if `path` is one; an unknown method is `None` for the model.
pub fn target(path: &str) -> Option<(&str, Option<Method>)> {
    let rest = path.strip_prefix("/v1beta/models/").or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, method) = rest.rsplit_once(':')?;
    if model.is_empty() || model.contains('/') {
        return None;
    }
    let method = match method {
        "generateContent" => Some(Method::Generate),
        "streamGenerateContent" => Some(Method::Stream),
        "embedContent" => Some(Method::Embed),
        "batchEmbedContents" => Some(Method::BatchEmbed),
        _ => None,
    };
    Some((model, method))
}

fn finish_reason(stop: StopKind) -> &'static str {
    match stop {
        StopKind::End | StopKind::ToolUse | StopKind::StopSequence => "STOP",
        StopKind::Length => "MAX_TOKENS",
        StopKind::ContentFilter => "SAFETY",
    }
}

/// The non-streamed `GenerateContentResponse`.
pub fn full(t: &Turn<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(600);
    push_raw(&mut out, "{\"candidates\":[");
    if t.reply.stop == StopKind::ContentFilter {
        blocked_candidate(&mut out);
    } else {
        push_raw(&mut out, "{\"content\":{\"parts\":[");
        let mut first = true;
        for block in &t.reply.blocks {
            if matches!(block, Block::Thinking { .. }) && !t.include_thoughts {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            match block {
                Block::Thinking { text, .. } => thought(&mut out, text),
                Block::Text { text, .. } => text_part(&mut out, text),
                Block::Tool { name, arguments, .. } => function_call(&mut out, name, arguments),
            }
        }
        push_raw(&mut out, "],\"role\":\"model\"},\"finishReason\":\"");
        push_raw(&mut out, finish_reason(t.reply.stop));
        push_raw(&mut out, "\",\"index\":0}");
    }
    push_raw(&mut out, "],");
    usage(&mut out, t);
    tail(&mut out, t);
    out
}

fn text_part(out: &mut Vec<u8>, text: &str) {
    push_raw(out, "{\"text\":");
    push_str(out, text);
    out.push(b'}');
}

fn thought(out: &mut Vec<u8>, text: &str) {
    push_raw(out, "{\"text\":");
    push_str(out, text);
    push_raw(out, ",\"thought\":true}");
}

fn function_call(out: &mut Vec<u8>, name: &str, arguments: &str) {
    push_raw(out, "{\"functionCall\":{\"name\":");
    push_str(out, name);
    push_raw(out, ",\"args\":");
    push_raw(out, arguments);
    push_raw(out, "}}");
}

/// A candidate stopped by the safety filters: no content, the ratings.
fn blocked_candidate(out: &mut Vec<u8>) {
    push_raw(
        out,
        "{\"finishReason\":\"SAFETY\",\"index\":0,\"safetyRatings\":[\
         {\"category\":\"HARM_CATEGORY_SEXUALLY_EXPLICIT\",\"probability\":\"NEGLIGIBLE\"},\
         {\"category\":\"HARM_CATEGORY_HATE_SPEECH\",\"probability\":\"NEGLIGIBLE\"},\
         {\"category\":\"HARM_CATEGORY_HARASSMENT\",\"probability\":\"NEGLIGIBLE\"},\
         {\"category\":\"HARM_CATEGORY_DANGEROUS_CONTENT\",\"probability\":\"HIGH\",\"blocked\":true}]}",
    );
}

/// `"usageMetadata":{...},` with every count.
fn usage(out: &mut Vec<u8>, t: &Turn<'_>) {
    let (p, v, r, k) = (t.prompt_tokens, t.reply.visible_tokens(), t.reply.thinking_tokens(), t.cached_tokens());
    push_raw(out, "\"usageMetadata\":{\"promptTokenCount\":");
    push_num(out, p);
    push_raw(out, ",\"candidatesTokenCount\":");
    push_num(out, v);
    push_raw(out, ",\"totalTokenCount\":");
    push_num(out, p + v + r);
    if k > 0 {
        push_raw(out, ",\"cachedContentTokenCount\":");
        push_num(out, k);
    }
    push_raw(out, ",\"promptTokensDetails\":[{\"modality\":\"TEXT\",\"tokenCount\":");
    push_num(out, p);
    push_raw(out, "}]");
    if r > 0 {
        push_raw(out, ",\"thoughtsTokenCount\":");
        push_num(out, r);
    }
    push_raw(out, "},");
}

/// `"modelVersion","responseId"}`.
fn tail(out: &mut Vec<u8>, t: &Turn<'_>) {
    push_raw(out, "\"modelVersion\":");
    push_str(out, t.model);
    push_raw(out, ",\"responseId\":");
    push_str(out, &t.id);
    out.push(b'}');
}

/// Gemini streams start with content: nothing comes before the first part.
pub fn prelude(_t: &Turn<'_>, _em: &mut Emitter) {}

/// Stream step `i`: one chunk with one part (a thought only when asked for; a
/// function call whole, on its first piece; nothing for a signature).
pub fn delta(t: &Turn<'_>, i: usize, em: &mut Emitter) {
    let Some(step) = t.reply.steps.get(i).copied() else { return };
    let piece = t.reply.piece(i);
    let block = t.reply.blocks.get(step.block);
    let visible = match block {
        Some(Block::Thinking { chunks, .. }) => t.include_thoughts && step.piece < chunks.len(),
        Some(Block::Tool { .. }) => step.piece == 0,
        Some(Block::Text { .. }) => true,
        None => false,
    };
    if !visible {
        return;
    }
    let out = em.data();
    push_raw(out, "{\"candidates\":[{\"content\":{\"parts\":[");
    match block {
        Some(Block::Thinking { .. }) => thought(out, piece),
        Some(Block::Tool { name, arguments, .. }) => function_call(out, name, arguments),
        _ => text_part(out, piece),
    }
    push_raw(out, "],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":");
    push_num(out, t.prompt_tokens);
    push_raw(out, ",\"totalTokenCount\":");
    push_num(out, t.prompt_tokens);
    push_raw(out, "},");
    tail(out, t);
    em.emit(None);
}

/// The last chunk: the finish reason (an empty text part with it, or the blocked
/// candidate) and the whole usage.
pub fn finale(t: &Turn<'_>, em: &mut Emitter) {
    let out = em.data();
    push_raw(out, "{\"candidates\":[");
    if t.reply.stop == StopKind::ContentFilter {
        blocked_candidate(out);
    } else {
        push_raw(out, "{\"content\":{\"parts\":[{\"text\":\"\"}],\"role\":\"model\"},\"finishReason\":\"");
        push_raw(out, finish_reason(t.reply.stop));
        push_raw(out, "\",\"index\":0}");
    }
    push_raw(out, "],");
    usage(out, t);
    tail(out, t);
    em.emit(None);
}

/// An error object in place of the rest of the stream.
pub fn stream_error(em: &mut Emitter) {
    em.data().extend_from_slice(&error(503, None, None, None));
    em.emit(None);
}

/// Google's canonical status name for an HTTP status.
fn status_name(status: u16) -> &'static str {
    match status {
        400 | 413 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 | 529 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        400..=499 => "FAILED_PRECONDITION",
        _ => "INTERNAL",
    }
}

/// The error body: `kind` picks a documented special case, else `status` the
/// canonical one; `message` overrides the text; `retry_after` adds a `RetryInfo`
/// detail to a 429.
pub fn error(status: u16, kind: Option<ErrorKind>, message: Option<&str>, retry_after: Option<u64>) -> Vec<u8> {
    let default = match (kind, status) {
        (Some(ErrorKind::ContextLength), _) => {
            "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576)."
        }
        (Some(ErrorKind::Quota), _) => "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
        (_, 400) => "Request contains an invalid argument.",
        (_, 401) => "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        (_, 403) => "The caller does not have permission",
        (_, 404) => "Requested entity was not found.",
        (_, 413) => "Request payload size exceeds the limit: 20971520 bytes.",
        (_, 429) => "Resource has been exhausted (e.g. check quota).",
        (_, 500) => "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        (_, 503 | 529) => "The model is overloaded. Please try again later.",
        (_, 504) => "Deadline expired before operation could complete.",
        (_, 400..=499) => "Request contains an invalid argument.",
        _ => "Internal error encountered.",
    };
    let mut out = Vec::with_capacity(240);
    envelope(&mut out, status, message.unwrap_or(default));
    if let (429, Some(s)) = (status, retry_after) {
        push_raw(&mut out, ",\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":\"");
        push_num(&mut out, s);
        push_raw(&mut out, "s\"}]");
    }
    push_raw(&mut out, "}}");
    out
}

/// `{"error":{"code","message","status"` (left open for details).
fn envelope(out: &mut Vec<u8>, status: u16, message: &str) {
    push_raw(out, "{\"error\":{\"code\":");
    push_num(out, u64::from(status));
    push_raw(out, ",\"message\":");
    push_str(out, message);
    push_raw(out, ",\"status\":");
    push_str(out, status_name(status));
}

/// A key that was sent but is not valid: Google answers 400, not 401.
pub fn invalid_key() -> Vec<u8> {
    let mut out = Vec::with_capacity(300);
    envelope(&mut out, 400, "API key not valid. Please pass a valid API key.");
    push_raw(
        &mut out,
        ",\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\",\"reason\":\"API_KEY_INVALID\",\
         \"domain\":\"googleapis.com\",\"metadata\":{\"service\":\"generativelanguage.googleapis.com\"}}]}}",
    );
    out
}

/// `GET /v1beta/models`: a fixed list.
pub fn models() -> Vec<u8> {
    let mut out = Vec::with_capacity(600);
    push_raw(&mut out, "{\"models\":[");
    let models = [("gemini-2.5-flash", "Gemini 2.5 Flash"), ("gemini-2.5-pro", "Gemini 2.5 Pro")];
    for (i, (id, name)) in models.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_raw(&mut out, "{\"name\":\"models/");
        push_raw(&mut out, id);
        push_raw(&mut out, "\",\"version\":\"001\",\"displayName\":");
        push_str(&mut out, name);
        push_raw(
            &mut out,
            ",\"inputTokenLimit\":1048576,\"outputTokenLimit\":65536,\
             \"supportedGenerationMethods\":[\"generateContent\",\"countTokens\"],\"thinking\":true}",
        );
    }
    push_raw(&mut out, "]}");
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::chat::Dialect;
    use crate::reply::{Asked, Reply, TOOL_ARGS};
    use crate::scenario::Scenario;
    use crate::sse::Style;

    fn turn(reply: &Reply, include_thoughts: bool) -> Turn<'_> {
        Turn {
            id: "resp1".into(),
            created: 0,
            model: "gemini-2.5-flash",
            prompt_tokens: 6,
            include_usage: false,
            include_thoughts,
            dialect: Dialect::Gemini,
            reply,
            echo: None,
        }
    }

    fn scripted(spec: &str, stop: Option<&str>) -> Reply {
        let mut s = Scenario::default();
        s.set_reply(spec).unwrap();
        if let Some(stop) = stop {
            s.set_stop(stop).unwrap();
        }
        Reply::build(&s, &Asked { last_user: "hi there", ..Asked::default() })
    }

    fn chunks(t: &Turn<'_>) -> Vec<Value> {
        let mut em = Emitter::new(Style::default());
        prelude(t, &mut em);
        for i in 0..t.reply.steps.len() {
            delta(t, i, &mut em);
        }
        finale(t, &mut em);
        let text = String::from_utf8(em.take().to_vec()).unwrap();
        text.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap()).collect()
    }

    #[test]
    fn paths_name_the_model_and_method() {
        assert_eq!(
            target("/v1beta/models/gemini-2.5-flash:generateContent"),
            Some(("gemini-2.5-flash", Some(Method::Generate)))
        );
        assert_eq!(target("/v1/models/g:streamGenerateContent"), Some(("g", Some(Method::Stream))));
        assert_eq!(target("/v1beta/models/g:countTokens"), Some(("g", None)));
        assert_eq!(
            target("/v1beta/models/text-embedding-004:embedContent"),
            Some(("text-embedding-004", Some(Method::Embed)))
        );
        assert_eq!(target("/v1beta/models/e:batchEmbedContents"), Some(("e", Some(Method::BatchEmbed))));
        assert_eq!(target("/v1beta/models"), None);
    }

    #[test]
    fn full_response_has_the_documented_shape() {
        let reply = Reply::echo("hi there", None);
        let v: Value = serde_json::from_slice(&full(&turn(&reply, false))).unwrap();
        assert_eq!(
            v,
            json!({"candidates": [{"content": {"parts": [{"text": "Echo: hi there"}], "role": "model"}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 6, "candidatesTokenCount": 3, "totalTokenCount": 9,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 6}]},
                "modelVersion": "gemini-2.5-flash", "responseId": "resp1"})
        );
    }

    #[test]
    fn thoughts_function_calls_and_safety() {
        let reply = scripted("thinking+text+tool_call", None);
        let v: Value = serde_json::from_slice(&full(&turn(&reply, true))).unwrap();
        let args: Value = serde_json::from_str(TOOL_ARGS[0]).unwrap();
        assert_eq!(
            v["candidates"][0]["content"]["parts"],
            json!([{"text": "Thinking about: hi there", "thought": true}, {"text": "Echo: hi there"},
                {"functionCall": {"name": "get_weather", "args": args}}])
        );
        assert_eq!(v["candidates"][0]["finishReason"], "STOP");
        assert_eq!(v["usageMetadata"]["thoughtsTokenCount"], 4);
        assert_eq!(v["usageMetadata"]["totalTokenCount"], 6 + 3 + 3 + 4);
        let hidden: Value = serde_json::from_slice(&full(&turn(&reply, false))).unwrap();
        assert_eq!(hidden["candidates"][0]["content"]["parts"].as_array().unwrap().len(), 2);

        let c = chunks(&turn(&reply, false));
        let calls: Vec<&Value> =
            c.iter().filter(|c| c["candidates"][0]["content"]["parts"][0].get("functionCall").is_some()).collect();
        assert_eq!(calls.len(), 1, "a call arrives whole: {c:?}");
        assert_eq!(c.last().unwrap()["candidates"][0]["finishReason"], "STOP");

        let blocked = scripted("text", Some("content_filter"));
        let v: Value = serde_json::from_slice(&full(&turn(&blocked, false))).unwrap();
        assert!(v["candidates"][0].get("content").is_none());
        assert_eq!(v["candidates"][0]["finishReason"], "SAFETY");
        let long = scripted("length", None);
        assert_eq!(chunks(&turn(&long, false)).last().unwrap()["candidates"][0]["finishReason"], "MAX_TOKENS");
    }

    #[test]
    fn errors_use_google_status_names() {
        let v: Value = serde_json::from_slice(&error(429, None, None, Some(20))).unwrap();
        assert_eq!(
            v,
            json!({"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "20s"}]}})
        );
        let v: Value = serde_json::from_slice(&invalid_key()).unwrap();
        assert_eq!(v["error"]["details"][0]["reason"], "API_KEY_INVALID");
        let v: Value = serde_json::from_slice(&error(401, None, None, None)).unwrap();
        assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
    }
}
