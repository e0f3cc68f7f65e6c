//! A started turn driven to its end (`LiveTurn`): the provider's deltas (each checked
//! against the key's token budget and the reply against `server.max_reply_bytes`),
//! then `Done` with the usage counted and the reply recorded in the session (committed
//! to the store first with `durability = "ack"`), or `Failed`. Every front door renders these events. A reply cut for its size ends with
//! `Failed(UPSTREAM_ERROR)`; its upstream stream is dropped (the call cancelled) and
//! the part that came is stored in the session with `CUT_MARK` appended.

use std::sync::Arc;

use crate::chat::{FinishReason, Message, Reasoning, ToolCall, Usage};
use crate::error::{ApiError, ErrorCode};
use crate::provider::StreamEvent;

use super::StartedTurn;

/// Appended to a reply stored after it was cut at `server.max_reply_bytes`.
pub const CUT_MARK: &str = " [cut: reply over server.max_reply_bytes]";

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
    /// Bytes of the reply so far (text, reasoning, tool-call arguments).
    bytes: usize,
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
            bytes: 0,
            finish: FinishReason::Stop,
            session_id,
            model_id,
        }
    }

    /// Ends the turn because its reply passed `server.max_reply_bytes`: the stream
    /// (and with it the upstream call) is dropped, the part that came is stored marked
    /// cut, the tokens streamed are charged (the reservation's drop).
    async fn cut(&mut self) -> Option<TurnEvent> {
        let started = self.started.take()?;
        self.account_partial(&started);
        let cap = started.reply_cap;
        let mut text = std::mem::take(&mut self.text);
        text.push_str(CUT_MARK);
        let message = Message::assistant(text, std::mem::take(&mut self.calls))
            .with_reasoning(&std::mem::take(&mut self.reasoning));
        // The turn fails whether or not the cut part could be stored.
        let _ = started.finish(message).await;
        Some(TurnEvent::Failed(ApiError::new(
            ErrorCode::UpstreamError,
            format!("the reply passed server.max_reply_bytes ({cap} bytes) and was cut"),
        )))
    }

    /// A turn that ends without the provider's usage (cut, failed mid-stream, its
    /// client gone) still used tokens: the prompt's estimate and about four bytes a
    /// token of what came are counted (`/metrics`, `/api/status`) and settle the
    /// key's token quota.
    fn account_partial(&self, started: &StartedTurn) {
        if self.bytes == 0 {
            return;
        }
        started.account(Usage {
            prompt_tokens: started.prompt_estimate,
            completion_tokens: (self.bytes as u64).div_ceil(4),
            ..Usage::default()
        });
    }

    /// Ends the turn without its `Done`: the tokens that came are counted
    /// (`account_partial`), the grant is dropped (the turn aborts).
    fn abandon(&mut self) {
        if let Some(started) = self.started.take() {
            self.account_partial(&started);
        }
    }

    /// Counts `n` more bytes of reply; `true` when the reply is now over the cap.
    fn over_cap(&mut self, n: usize) -> bool {
        self.bytes = self.bytes.saturating_add(n);
        self.started.as_ref().is_some_and(|s| self.bytes > s.reply_cap)
    }

    /// The next event; `None` once the turn is over.
    pub async fn next(&mut self) -> Option<TurnEvent> {
        loop {
            let started = self.started.as_mut()?;
            let event = started.stream.next().await;
            let size = match &event {
                Ok(Some(StreamEvent::Delta(d))) => d.len(),
                Ok(Some(StreamEvent::Reasoning { text, .. })) => text.len(),
                Ok(Some(StreamEvent::ToolCall { arguments, .. })) => arguments.len(),
                _ => 0,
            };
            if size > 0 && self.over_cap(size) {
                return self.cut().await;
            }
            let started = self.started.as_mut()?;
            return match event {
                Ok(Some(StreamEvent::Delta(d))) => {
                    // A reply that runs past the key's token quota ends here (RATE_LIMITED).
                    if let Err(e) = started.engine.limiter.turn_delta(&started.quota, &d) {
                        self.abandon();
                        return Some(TurnEvent::Failed(e));
                    }
                    self.text.push_str(&d);
                    Some(TurnEvent::Delta(d))
                }
                Ok(Some(StreamEvent::Reasoning { text, signature })) => {
                    // Thinking is billed as output: it counts against the quota too.
                    if let Err(e) = started.engine.limiter.turn_delta(&started.quota, &text) {
                        self.abandon();
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
                        self.abandon();
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
                    // The end of the turn goes out only once it is recorded (durable).
                    if let Err(e) = started.finish(message).await {
                        return Some(TurnEvent::Failed(e));
                    }
                    Some(TurnEvent::Done { usage, reply, finish: self.finish })
                }
                Ok(None) => {
                    self.abandon();
                    Some(TurnEvent::Failed(ApiError::new(
                        ErrorCode::UpstreamError,
                        "provider ended the stream without usage",
                    )))
                }
                Err(e) => {
                    self.abandon();
                    Some(TurnEvent::Failed(e.to_api()))
                }
            };
        }
    }
}

impl Drop for LiveTurn {
    /// A turn dropped before its end (the client left) counts what it streamed.
    fn drop(&mut self) {
        self.abandon();
    }
}
