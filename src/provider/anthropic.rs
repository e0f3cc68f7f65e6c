//! The Anthropic adapter: `POST {base_url}/v1/messages` with `x-api-key` and
//! `anthropic-version`. System messages become the top-level `system` string;
//! `max_tokens` (required by the API) defaults to the model's or 4096. Streams are
//! Anthropic's named events: `message_start` (input tokens), `content_block_delta`
//! (`text_delta`), `message_delta` (output tokens), `message_stop`, `error`, `ping`.

use std::borrow::Cow;
use std::collections::VecDeque;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::chat::{MessageRole, Usage};
use crate::provider::stream::{self, SseStream};
use crate::provider::{ChatRequest, ErrorInfo, ProviderError, StreamEvent};
use crate::upstream::BodyReader;

/// `max_tokens` when neither the request nor the model sets one.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    content: Vec<Block<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct StreamPayload<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    message: Option<Message<'a>>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(borrow, default)]
    error: Option<ErrorDetail<'a>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
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
}

/// The request body for `req`.
pub fn encode(req: &ChatRequest) -> Result<Bytes, ProviderError> {
    let mut system: Option<String> = None;
    let mut messages = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        match m.role {
            MessageRole::System => {
                let s = system.get_or_insert_with(String::new);
                if !s.is_empty() {
                    s.push_str("\n\n");
                }
                s.push_str(&m.content);
            }
            MessageRole::User => messages.push(WireMessage { role: "user", content: &m.content }),
            MessageRole::Assistant => messages.push(WireMessage { role: "assistant", content: &m.content }),
        }
    }
    let wire = WireRequest {
        model: &req.upstream_model,
        max_tokens: req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        system,
        messages,
        stream: req.stream,
    };
    sonic_rs::to_vec(&wire)
        .map(Bytes::from)
        .map_err(|e| ProviderError::upstream(format!("cannot encode the request: {e}")))
}

/// Reads a non-streamed message: the text blocks joined and the usage.
pub fn decode_message(body: &[u8]) -> Result<(String, Usage), ProviderError> {
    let m: Message<'_> = crate::json::from_slice(body)
        .map_err(|e| ProviderError::upstream(format!("provider sent an unreadable message: {e}")))?;
    let text: String = m.content.iter().filter(|b| b.kind == "text").filter_map(|b| b.text.as_deref()).collect();
    let u = m.usage.unwrap_or_default();
    Ok((text, Usage { prompt_tokens: u.input_tokens.unwrap_or(0), completion_tokens: u.output_tokens.unwrap_or(0) }))
}

/// The `error.message` of an Anthropic error body, if it has one.
pub fn error_message(body: &[u8]) -> Option<String> {
    error_info(body).map(|i| i.message)
}

/// `error.message` and `error.type` of an Anthropic error body
/// (`{"type":"error","error":{"type":"invalid_request_error","message":...}}`,
/// https://docs.anthropic.com/en/api/errors), if it is one.
pub fn error_info(body: &[u8]) -> Option<ErrorInfo> {
    let e: ErrorBody<'_> = crate::json::from_slice(body).ok()?;
    Some(ErrorInfo {
        message: e.error.message.map(Cow::into_owned).unwrap_or_default(),
        kind: e.error.kind.map(Cow::into_owned),
        code: None,
    })
}

/// A streamed message in progress.
pub type Stream = SseStream<Events>;

/// Starts reading a streamed message.
pub fn stream(body: BodyReader) -> Stream {
    SseStream::new(body, Events { usage: Usage::default() })
}

/// Anthropic's stream of named events (see the module doc).
#[derive(Default)]
pub struct Events {
    usage: Usage,
}

impl stream::Events for Events {
    const END: &'static str = "message_stop";

    fn on_event(
        &mut self,
        _name: Option<&[u8]>,
        data: &[u8],
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        let p: StreamPayload<'_> = crate::json::from_slice(data)
            .map_err(|e| ProviderError::upstream(format!("provider sent an unreadable event: {e}")))?;
        match &*p.kind {
            "message_start" => {
                if let Some(u) = p.message.and_then(|m| m.usage) {
                    self.usage.prompt_tokens = u.input_tokens.unwrap_or(0);
                    self.usage.completion_tokens = u.output_tokens.unwrap_or(0);
                }
            }
            "content_block_delta" => {
                if let Some(d) = p.delta {
                    if d.kind.as_deref() == Some("text_delta") {
                        if let Some(t) = d.text.filter(|t| !t.is_empty()) {
                            out.push_back(StreamEvent::Delta(t.into_owned()));
                        }
                    }
                }
            }
            "message_delta" => {
                if let Some(u) = p.usage {
                    if let Some(n) = u.output_tokens {
                        self.usage.completion_tokens = n;
                    }
                    if let Some(n) = u.input_tokens {
                        self.usage.prompt_tokens = n;
                    }
                }
            }
            "message_stop" => {
                out.push_back(StreamEvent::Done(self.usage));
                return Ok(true);
            }
            "error" => {
                let msg = p.error.and_then(|e| e.message).map(Cow::into_owned).unwrap_or_default();
                return Err(ProviderError::upstream(format!("provider stream failed: {msg}")));
            }
            _ => {} // ping, content_block_start/stop
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Message as Msg;

    #[test]
    fn system_messages_move_to_the_top_level() {
        let req = ChatRequest {
            upstream_model: "claude-x".into(),
            messages: vec![
                Msg { role: MessageRole::System, content: "be brief".into() },
                Msg { role: MessageRole::User, content: "hi".into() },
            ],
            max_tokens: None,
            stream: false,
        };
        assert_eq!(
            std::str::from_utf8(&encode(&req).unwrap()).unwrap(),
            r#"{"model":"claude-x","max_tokens":4096,"system":"be brief","messages":[{"role":"user","content":"hi"}],"stream":false}"#
        );
    }

    #[test]
    fn message_text_and_usage_are_read() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"Hello"},{"type":"text","text":" there"}],"stop_reason":"end_turn","usage":{"input_tokens":9,"output_tokens":2}}"#;
        let (text, usage) = decode_message(body).unwrap();
        assert_eq!(text, "Hello there");
        assert_eq!(usage, Usage { prompt_tokens: 9, completion_tokens: 2 });
    }
}
