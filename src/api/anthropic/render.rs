//! Anthropic's answer shapes for a translated turn
//! (https://docs.anthropic.com/en/api/messages and .../messages-streaming): the whole
//! `message` object, and the named-event stream: `message_start` (with the gateway's
//! prompt estimate: the provider's count comes with `message_delta`), then for each
//! block of the answer in order (`thinking`, `text`, `tool_use`)
//! `content_block_start`, its deltas (`thinking_delta` and `signature_delta`,
//! `text_delta`, `input_json_delta`) and `content_block_stop`, then `message_delta`
//! (stop reason and usage) and `message_stop`. A failure after the start is an
//! `error` event, which ends the stream. Usage in Anthropic's terms: `input_tokens`
//! without the cached part, `cache_read_input_tokens` apart.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use serde::Serialize;

use crate::api::native::chunked_event;
use crate::chat::{FinishReason, Usage};
use crate::error::ApiError;
use crate::http::response::EventStream;
use crate::provider::Answer;
use crate::turn::{LiveTurn, TurnEvent};

#[derive(Serialize)]
struct OutUsage {
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
}

impl From<Usage> for OutUsage {
    fn from(u: Usage) -> Self {
        OutUsage {
            input_tokens: u.prompt_tokens.saturating_sub(u.cached_tokens),
            output_tokens: u.completion_tokens,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: u.cached_tokens,
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutBlock<'a> {
    Thinking { thinking: &'a str, signature: &'a str },
    Text { text: &'a str },
    ToolUse { id: &'a str, name: &'a str, input: sonic_rs::Value },
}

#[derive(Serialize)]
struct OutMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<OutBlock<'a>>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<()>,
    usage: OutUsage,
}

/// A tool call's JSON arguments as the `input` object (`{}` when they are not JSON:
/// Anthropic's `input` is always an object).
fn input_of(arguments: &str) -> sonic_rs::Value {
    crate::json::from_slice::<sonic_rs::Value>(arguments.as_bytes())
        .ok()
        .filter(sonic_rs::JsonValueTrait::is_object)
        .unwrap_or_else(|| sonic_rs::json!({}))
}

/// A whole answer as Anthropic's `message` object.
pub fn message(id: &str, model: &str, answer: &Answer) -> Result<Vec<u8>, ApiError> {
    let mut content = Vec::with_capacity(2 + answer.tool_calls.len());
    if !answer.reasoning.is_empty() {
        content.push(OutBlock::Thinking {
            thinking: &answer.reasoning.text,
            signature: answer.reasoning.signature.as_deref().unwrap_or_default(),
        });
    }
    if !answer.text.is_empty() || answer.tool_calls.is_empty() {
        content.push(OutBlock::Text { text: &answer.text });
    }
    for c in &answer.tool_calls {
        content.push(OutBlock::ToolUse { id: &c.id, name: &c.name, input: input_of(&c.arguments) });
    }
    let body = OutMessage {
        id,
        kind: "message",
        role: "assistant",
        model,
        content,
        stop_reason: Some(answer.finish.anthropic()),
        stop_sequence: None,
        usage: answer.usage.into(),
    };
    sonic_rs::to_vec(&body).map_err(|e| ApiError::internal(format!("rendering failed: {e}")))
}

/// The block being streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Thinking,
    Text,
    /// The tool call of this canonical index.
    Tool(u32),
}

/// Where the stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Streaming,
    Over,
}

/// A translated turn rendered as Anthropic's event stream.
pub struct MessageStream {
    turn: LiveTurn,
    id: String,
    prompt_estimate: u64,
    state: State,
    open: Open,
    /// The index of the open block (blocks are numbered from 0 in order).
    index: u32,
    started_any: bool,
}

impl MessageStream {
    pub fn new(turn: LiveTurn, id: String, prompt_estimate: u64) -> Self {
        MessageStream { turn, id, prompt_estimate, state: State::Start, open: Open::None, index: 0, started_any: false }
    }

    fn event(name: &str, data: &sonic_rs::Value) -> Bytes {
        chunked_event(Some(name.as_bytes()), &sonic_rs::to_vec(data).unwrap_or_default())
    }

    /// Closes the open block, if any, into `out`.
    fn close(&mut self, out: &mut Vec<Bytes>) {
        if self.open != Open::None {
            out.push(Self::event(
                "content_block_stop",
                &sonic_rs::json!({"type": "content_block_stop", "index": self.index}),
            ));
            self.open = Open::None;
            self.index += 1;
        }
    }

    /// Opens block `open` (closing the previous one) with its start event.
    fn open(&mut self, open: Open, block: sonic_rs::Value, out: &mut Vec<Bytes>) {
        self.close(out);
        self.open = open;
        self.started_any = true;
        out.push(Self::event(
            "content_block_start",
            &sonic_rs::json!({"type": "content_block_start", "index": self.index, "content_block": block}),
        ));
    }

    fn delta(&self, delta: sonic_rs::Value) -> Bytes {
        Self::event(
            "content_block_delta",
            &sonic_rs::json!({"type": "content_block_delta", "index": self.index, "delta": delta}),
        )
    }

    /// The events one turn event becomes (several when a block closes and one opens).
    fn render(&mut self, event: TurnEvent) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(3);
        match event {
            TurnEvent::Reasoning { text, signature } => {
                if self.open != Open::Thinking {
                    self.open(Open::Thinking, sonic_rs::json!({"type": "thinking", "thinking": ""}), &mut out);
                }
                if !text.is_empty() {
                    out.push(self.delta(sonic_rs::json!({"type": "thinking_delta", "thinking": text})));
                }
                if let Some(sig) = signature {
                    out.push(self.delta(sonic_rs::json!({"type": "signature_delta", "signature": sig})));
                }
            }
            TurnEvent::Delta(text) => {
                if self.open != Open::Text {
                    self.open(Open::Text, sonic_rs::json!({"type": "text", "text": ""}), &mut out);
                }
                out.push(self.delta(sonic_rs::json!({"type": "text_delta", "text": text})));
            }
            TurnEvent::ToolCall { index, id, name, arguments } => {
                if self.open != Open::Tool(index) {
                    let block = sonic_rs::json!({"type": "tool_use", "id": id.unwrap_or_default(),
                        "name": name.unwrap_or_default(), "input": {}});
                    self.open(Open::Tool(index), block, &mut out);
                }
                if !arguments.is_empty() {
                    out.push(self.delta(sonic_rs::json!({"type": "input_json_delta", "partial_json": arguments})));
                }
            }
            TurnEvent::Done { usage, finish, .. } => {
                if !self.started_any && finish != FinishReason::ToolCalls {
                    // Anthropic's answers always have a content block.
                    self.open(Open::Text, sonic_rs::json!({"type": "text", "text": ""}), &mut out);
                }
                self.close(&mut out);
                let usage = OutUsage::from(usage);
                out.push(Self::event(
                    "message_delta",
                    &sonic_rs::json!({"type": "message_delta",
                        "delta": {"stop_reason": finish.anthropic(), "stop_sequence": null},
                        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                            "cache_creation_input_tokens": 0, "cache_read_input_tokens": usage.cache_read_input_tokens}}),
                ));
                out.push(Self::event("message_stop", &sonic_rs::json!({"type": "message_stop"})));
                self.state = State::Over;
            }
            TurnEvent::Failed(e) => {
                out.push(chunked_event(Some(b"error"), &e.render_anthropic()));
                self.state = State::Over;
            }
        }
        out
    }

    async fn step(&mut self, pending: &mut Vec<Bytes>) -> Option<()> {
        match self.state {
            State::Start => {
                self.state = State::Streaming;
                let start = sonic_rs::json!({"type": "message_start", "message": {
                    "id": self.id, "type": "message", "role": "assistant", "model": self.turn.model_id,
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": self.prompt_estimate, "output_tokens": 0,
                        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}});
                pending.push(Self::event("message_start", &start));
                Some(())
            }
            State::Streaming => {
                let event = match self.turn.next().await {
                    Some(e) => e,
                    None => {
                        self.state = State::Over;
                        return None;
                    }
                };
                pending.extend(self.render(event));
                Some(())
            }
            State::Over => None,
        }
    }
}

/// The stream hands out one event per call; events rendered together wait here.
pub struct Queued {
    inner: MessageStream,
    pending: std::collections::VecDeque<Bytes>,
}

impl MessageStream {
    /// This stream with its queue, ready for the server.
    pub fn queued(self) -> Queued {
        Queued { inner: self, pending: std::collections::VecDeque::new() }
    }
}

impl Queued {
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some(b);
            }
            let mut out = Vec::new();
            self.inner.step(&mut out).await?;
            self.pending.extend(out);
        }
    }
}

impl EventStream for Queued {
    fn next_event(&mut self) -> Pin<Box<dyn Future<Output = Option<Bytes>> + '_>> {
        Box::pin(self.next())
    }
}
