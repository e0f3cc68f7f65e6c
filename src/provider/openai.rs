//! The OpenAI adapter: `POST {base_url}/chat/completions` with `Authorization: Bearer`.
//! Streams ask for `stream_options.include_usage` so usage comes from the provider.
//! Each SSE `data:` payload is parsed with sonic-rs into borrowed structs (`Cow`
//! content: no copy unless the provider escaped something); `[DONE]` ends the stream.
//! The wire types are private to this file; `openai_compat` reuses them.

use std::borrow::Cow;
use std::collections::VecDeque;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::chat::{MessageRole, Usage};
use crate::provider::stream::{self, SseStream};
use crate::provider::{ChatRequest, ErrorInfo, ProviderError, StreamEvent};
use crate::upstream::BodyReader;

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// OpenAI's `usage` object (the counts clawgate reads).
#[derive(Deserialize)]
pub struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens }
    }
}

#[derive(Deserialize)]
struct Completion<'a> {
    #[serde(borrow, default)]
    choices: Vec<Choice<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    /// Set when a stream reports a failure in-band (one parse serves both cases).
    #[serde(borrow, default)]
    error: Option<ErrorDetail<'a>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    message: Option<Content<'a>>,
    #[serde(borrow, default)]
    delta: Option<Content<'a>>,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(borrow)]
    error: ErrorDetail<'a>,
}

#[derive(Deserialize)]
struct ErrorDetail<'a> {
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    /// A string in OpenAI's answers; some compatible servers send a number.
    #[serde(default)]
    code: Option<sonic_rs::Value>,
}

fn role(r: MessageRole) -> &'static str {
    match r {
        MessageRole::System => "system",
        MessageRole::User => "user",
        MessageRole::Assistant => "assistant",
    }
}

/// The request body for `req`.
pub fn encode(req: &ChatRequest) -> Result<Bytes, ProviderError> {
    let wire = WireRequest {
        model: &req.upstream_model,
        messages: req.messages.iter().map(|m| WireMessage { role: role(m.role), content: &m.content }).collect(),
        stream: req.stream,
        stream_options: req.stream.then_some(StreamOptions { include_usage: true }),
        max_tokens: req.max_tokens,
    };
    sonic_rs::to_vec(&wire)
        .map(Bytes::from)
        .map_err(|e| ProviderError::upstream(format!("cannot encode the request: {e}")))
}

/// Reads a non-streamed completion: the text and the usage. The common shape (the
/// first choice's `message.content` a string, `usage` found by `scan_usage`) is read
/// with one lazy lookup and a scan; anything else is parsed whole.
pub fn decode_completion(body: &[u8]) -> Result<(String, Usage), ProviderError> {
    if let Some(usage) = scan_usage(body) {
        if let Ok(v) = crate::json::get(body, &sonic_rs::pointer!["choices", 0, "message", "content"]) {
            if let Ok(text) = sonic_rs::from_str::<String>(v.as_raw_str()) {
                return Ok((text, usage));
            }
        }
    }
    let c: Completion<'_> = crate::json::from_slice(body)
        .map_err(|e| ProviderError::upstream(format!("provider sent an unreadable completion: {e}")))?;
    let text = c
        .choices
        .into_iter()
        .next()
        .and_then(|ch| ch.message)
        .and_then(|m| m.content)
        .map(Cow::into_owned)
        .unwrap_or_default();
    let usage = c.usage.map(Usage::from).unwrap_or_else(|| Usage { prompt_tokens: 0, completion_tokens: 0 });
    Ok((text, usage))
}

/// `read_usage` by scanning instead of parsing, for the common shape: the document
/// names `"usage"` exactly once (an unescaped quote cannot occur inside a JSON
/// string, so `"usage"` followed by `:` is a key), with `null` or an object whose
/// `prompt_tokens` and `completion_tokens` are plain integers. Anything else: `None`,
/// and the caller parses. A completion's `usage` comes last, after the content, so
/// this skips the whole answer with two SIMD searches instead of a JSON walk.
pub fn scan_usage(json: &[u8]) -> Option<Usage> {
    const KEY: &[u8] = b"\"usage\"";
    let at = memchr::memmem::rfind(json, KEY)?;
    if memchr::memmem::find(json, KEY)? != at {
        return None;
    }
    let rest = skip_ws(&json[at + KEY.len()..]);
    let rest = skip_ws(rest.strip_prefix(b":")?);
    if rest.starts_with(b"null") {
        return Some(Usage::default());
    }
    let object = rest.strip_prefix(b"{")?;
    Some(Usage {
        prompt_tokens: scan_count(object, b"\"prompt_tokens\"")?,
        completion_tokens: scan_count(object, b"\"completion_tokens\"")?,
    })
}

/// The integer after `key` and a colon, where `key` occurs once in `object`.
fn scan_count(object: &[u8], key: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(object, key)?;
    if memchr::memmem::find(&object[at + 1..], key).is_some() {
        return None;
    }
    let rest = skip_ws(&object[at + key.len()..]);
    let rest = skip_ws(rest.strip_prefix(b":")?);
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let after = skip_ws(&rest[digits..]);
    if digits == 0 || digits > 18 || !matches!(after.first(), Some(b',' | b'}')) {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

fn skip_ws(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r')).count();
    &b[n..]
}

/// The `error.message` of an OpenAI-shaped error body, if it has one.
pub fn error_message(body: &[u8]) -> Option<String> {
    error_info(body).map(|i| i.message)
}

/// `error.message`, `error.type` and `error.code` of an OpenAI-shaped error body
/// (https://platform.openai.com/docs/guides/error-codes), if it is one.
pub fn error_info(body: &[u8]) -> Option<ErrorInfo> {
    use sonic_rs::JsonValueTrait;
    let e: ErrorBody<'_> = crate::json::from_slice(body).ok()?;
    let code = e.error.code.and_then(|c| c.as_str().map(str::to_string).or_else(|| c.as_i64().map(|n| n.to_string())));
    Some(ErrorInfo {
        message: e.error.message.map(Cow::into_owned).unwrap_or_default(),
        kind: e.error.kind.map(Cow::into_owned),
        code,
    })
}

/// A streamed completion in progress.
pub type Stream = SseStream<Events>;

/// Starts reading a streamed completion.
pub fn stream(body: BodyReader) -> Stream {
    SseStream::new(body, Events { usage: None })
}

/// OpenAI's stream: `data:` chunks with `choices[].delta.content`, a usage chunk
/// (asked for with `include_usage`), then `data: [DONE]`.
#[derive(Default)]
pub struct Events {
    usage: Option<Usage>,
}

impl stream::Events for Events {
    const END: &'static str = "[DONE]";

    fn on_event(
        &mut self,
        _name: Option<&[u8]>,
        data: &[u8],
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        if data == b"[DONE]" {
            out.push_back(StreamEvent::Done(self.usage.unwrap_or_default()));
            return Ok(true);
        }
        let chunk: Completion<'_> = crate::json::from_slice(data)
            .map_err(|e| ProviderError::upstream(format!("provider sent an unreadable chunk: {e}")))?;
        if let Some(e) = chunk.error {
            let msg = e.message.map(Cow::into_owned).unwrap_or_default();
            return Err(ProviderError::upstream(format!("provider stream failed: {msg}")));
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u.into());
        }
        for choice in chunk.choices {
            if let Some(text) = choice.delta.and_then(|d| d.content).filter(|t| !t.is_empty()) {
                out.push_back(StreamEvent::Delta(text.into_owned()));
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Message;

    #[test]
    fn request_asks_for_usage_when_streaming() {
        let req = ChatRequest {
            upstream_model: "gpt-4o".into(),
            messages: vec![Message { role: MessageRole::User, content: "hi \"you\"".into() }],
            max_tokens: None,
            stream: true,
        };
        let body = encode(&req).unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi \"you\""}],"stream":true,"stream_options":{"include_usage":true}}"#
        );
    }

    #[test]
    fn completion_text_and_usage_are_read() {
        let body = br#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi \u00e9"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        let (text, usage) = decode_completion(body).unwrap();
        assert_eq!(text, "Hi é");
        assert_eq!(usage, Usage { prompt_tokens: 5, completion_tokens: 2 });
        // Shapes off the fast path give what the whole parse gives.
        let cases: [(&[u8], &str, u64); 4] = [
            (br#"{"choices":[{"message":{"content":null,"tool_calls":[]}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#, "", 3),
            (br#"{"choices":[{"message":{"content":"a \"usage\": {"}}],"usage":{"prompt_tokens":4,"completion_tokens":1}}"#, "a \"usage\": {", 4),
            (br#"{"choices":[{"message":{"content":"no usage"}}]}"#, "no usage", 0),
            (br#"{"choices":[],"usage":{"prompt_tokens":6,"completion_tokens":0}}"#, "", 6),
        ];
        for (body, want, prompt) in cases {
            let (text, usage) = decode_completion(body).unwrap();
            assert_eq!((text.as_str(), usage.prompt_tokens), (want, prompt), "{}", String::from_utf8_lossy(body));
        }
        assert!(decode_completion(b"{not json").is_err());
    }
}
