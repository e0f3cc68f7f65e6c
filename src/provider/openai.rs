//! The OpenAI adapter: `POST {base_url}/chat/completions` with `Authorization: Bearer`.
//! Streams ask for `stream_options.include_usage` so usage comes from the provider.
//! Each SSE `data:` payload is parsed with sonic-rs into borrowed structs (`Cow`
//! content: no copy unless the provider escaped something); `[DONE]` ends the stream.
//! The wire types are private to this file; `openai_compat` reuses them.

use std::borrow::Cow;
use std::collections::VecDeque;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::provider::stream::{self, SseStream};
use crate::provider::{ChatRequest, MessageRole, ProviderError, StreamEvent, Usage};
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

#[derive(Deserialize)]
struct WireUsage {
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

/// Reads a non-streamed completion: the text and the usage.
pub fn decode_completion(body: &[u8]) -> Result<(String, Usage), ProviderError> {
    let c: Completion<'_> = sonic_rs::from_slice(body)
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

/// The `error.message` of an OpenAI-shaped error body, if it has one.
pub fn error_message(body: &[u8]) -> Option<String> {
    let e: ErrorBody<'_> = sonic_rs::from_slice(body).ok()?;
    e.error.message.map(Cow::into_owned)
}

/// A streamed completion in progress.
pub type Stream = SseStream<Events>;

/// Starts reading a streamed completion.
pub fn stream(body: BodyReader) -> Stream {
    SseStream::new(body, Events { usage: None })
}

/// OpenAI's stream: `data:` chunks with `choices[].delta.content`, a usage chunk
/// (asked for with `include_usage`), then `data: [DONE]`.
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
        let chunk: Completion<'_> = sonic_rs::from_slice(data)
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
    use crate::provider::Message;

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
    }
}
