//! A started turn driven to its end (`LiveTurn`): the provider's deltas (each checked
//! against the key's token budget), then `Done` with the usage counted and the reply
//! recorded in the session, or `Failed`. Every front door renders these events.

use std::sync::Arc;

use crate::chat::{FinishReason, Message, Reasoning, ToolCall, Usage};
use crate::error::{ApiError, ErrorCode};
use crate::provider::StreamEvent;

use super::StartedTurn;

/// A started turn driven to its end: the one loop every front door runs. Yields the
/// provider's deltas, then `Done` (usage counted, reply recorded in the session) or
/// `Failed`, then `None`. Dropping it mid-way aborts the turn (the grant's `Drop`).
pub struct LiveTurn {
    started: Option<StartedTurn>,
    text: String,
    /// The tool calls so far (their pieces joined), stored with the reply.
    calls: Vec<ToolCall>,
    /// The reasoning so far, stored with the reply.
    reasoning: Reasoning,
    finish: FinishReason,
    /// The session the turn belongs to (empty for an explicit-context turn).
    pub session_id: String,
    /// The catalogue id of the model answering.
    pub model_id: String,
}

/// One step of a `LiveTurn`.
#[derive(Debug)]
pub enum TurnEvent {
    Delta(String),
    /// A piece of the model's reasoning (see `StreamEvent::Reasoning`): text to append
    /// and, for Anthropic, the block's signature.
    Reasoning {
        text: String,
        signature: Option<String>,
    },
    /// A piece of tool call `index` (see `StreamEvent::ToolCall`).
    ToolCall {
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    Done {
        usage: Usage,
        reply: Arc<str>,
        finish: FinishReason,
    },
    Failed(ApiError),
}

impl LiveTurn {
    pub fn new(started: StartedTurn) -> Self {
        let (session_id, model_id) = (started.session_id.clone(), started.model_id.clone());
        LiveTurn {
            started: Some(started),
            text: String::new(),
            calls: Vec::new(),
            reasoning: Reasoning::default(),
            finish: FinishReason::Stop,
            session_id,
            model_id,
        }
    }

    /// The next event; `None` once the turn is over.
    pub async fn next(&mut self) -> Option<TurnEvent> {
        loop {
            let started = self.started.as_mut()?;
            return match started.stream.next().await {
                Ok(Some(StreamEvent::Delta(d))) => {
                    // A reply that runs past the key's token quota ends here (RATE_LIMITED).
                    if let Err(e) = started.engine.limiter.turn_delta(&started.quota, &d) {
                        self.started = None;
                        return Some(TurnEvent::Failed(e));
                    }
                    self.text.push_str(&d);
                    Some(TurnEvent::Delta(d))
                }
                Ok(Some(StreamEvent::Reasoning { text, signature })) => {
                    // Thinking is billed as output: it counts against the quota too.
                    if let Err(e) = started.engine.limiter.turn_delta(&started.quota, &text) {
                        self.started = None;
                        return Some(TurnEvent::Failed(e));
                    }
                    self.reasoning.text.push_str(&text);
                    if signature.is_some() {
                        self.reasoning.signature.clone_from(&signature);
                    }
                    Some(TurnEvent::Reasoning { text, signature })
                }
                Ok(Some(StreamEvent::ToolCall { index, id, name, arguments })) => {
                    if let Err(e) = started.engine.limiter.turn_delta(&started.quota, &arguments) {
                        self.started = None;
                        return Some(TurnEvent::Failed(e));
                    }
                    super::start::add_tool_call_piece(&mut self.calls, index, id.clone(), name.clone(), &arguments);
                    Some(TurnEvent::ToolCall { index, id, name, arguments })
                }
                Ok(Some(StreamEvent::Finish(finish))) => {
                    // Nothing to show yet: the finish goes out with `Done`.
                    self.finish = finish;
                    continue;
                }
                Ok(Some(StreamEvent::Done(usage))) => {
                    let started = self.started.take()?;
                    started.account(usage);
                    let reply: Arc<str> = Arc::from(std::mem::take(&mut self.text));
                    let message = Message::assistant(reply.clone(), std::mem::take(&mut self.calls))
                        .with_reasoning(&std::mem::take(&mut self.reasoning));
                    started.finish(message);
                    Some(TurnEvent::Done { usage, reply, finish: self.finish })
                }
                Ok(None) => {
                    self.started = None;
                    Some(TurnEvent::Failed(ApiError::new(
                        ErrorCode::UpstreamError,
                        "provider ended the stream without usage",
                    )))
                }
                Err(e) => {
                    self.started = None;
                    Some(TurnEvent::Failed(e.to_api()))
                }
            };
        }
    }
}
