//! Starting a turn: channel and model resolution, the session grant (history), the
//! token reservation, then the provider call down the model's fallback chain
//! (`start_turn`). What comes back is a `StartedTurn`: the grant, the provider's live
//! stream and the quota to settle. `run_to_end` drains one for non-streaming clients.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use crate::auth::{check_model_access, Identity};
use crate::chat::{Message, Params, ToolCall, Usage};
use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::log;
use crate::provider::{Answer, ChatRequest, ChatStream, FailureKind, ProviderError, StreamEvent};
use crate::session::{self, BeginTurn, TurnGrant};
use crate::stats::WorkerStats;
use crate::store::SpoolAnswer;

use super::Engine;

/// A validated turn request, independent of the front door it came through.
pub struct TurnRequest {
    pub channel: String,
    /// The new message: a user message (text, or parts such as images), or a tool
    /// result answering the previous turn's tool call.
    pub message: Message,
    /// Tools, tool choice and sampling settings (the default for front doors that
    /// have none).
    pub params: Arc<Params>,
    pub session_id: Option<String>,
    pub model: Option<String>,
    /// Where the conversation before `message` comes from.
    pub context: TurnContext,
    /// Messages that come after the history and before `message` and are stored with
    /// it (tool results and earlier items of a Responses API input). Usually empty.
    pub preamble: Vec<Message>,
    /// The history of a session this turn creates (see `BeginTurn::seed`).
    pub seed: Vec<Message>,
    /// Whether the client streams (the provider is then asked to stream too).
    pub stream: bool,
    /// The id of the request (or WebSocket message) that asks for the turn: every
    /// log line about the turn carries it.
    pub request_id: String,
}

/// The conversation a turn's provider request is built from.
#[derive(Debug, Clone, Default)]
pub enum TurnContext {
    /// The session's stored history (the session is created if new or absent); the
    /// user message and the reply are appended when the turn completes.
    #[default]
    Session,
    /// Like `Session`, with these messages (e.g. a client's system prompt) sent before
    /// the stored history. They are not stored.
    SessionWithPrefix(Vec<Message>),
    /// Exactly these messages, then `message`; no session is read, created or written
    /// (the OpenAI front door without `X-Session-Id`).
    Explicit(Vec<Message>),
}

/// A turn that has its session grant and a live provider stream.
pub struct StartedTurn {
    /// The engine of the worker the turn runs on (its session hub, limiter, counters).
    pub engine: Rc<Engine>,
    pub grant: Option<TurnGrant>,
    pub stream: ChatStream,
    pub session_id: String,
    pub model_id: String,
    /// The turn's new message (user text and parts, or a tool result), stored with
    /// the reply when the turn completes.
    pub user_message: Message,
    /// Messages stored before `user_message` (`TurnRequest::preamble`).
    pub preamble: Vec<Message>,
    /// The turn's token reservation (`ratelimit::turn`): settled in `account`,
    /// charged for what was streamed if the turn is dropped.
    pub quota: crate::ratelimit::TurnQuota,
    /// The request that started the turn, for log lines about it.
    pub request_id: String,
    /// Settings the provider could not carry, dropped (`drop_unsupported_params`):
    /// front doors name them in `X-Clawgate-Dropped-Params`.
    pub dropped: Vec<String>,
    /// `server.max_reply_bytes`: a streamed reply longer than this is cut (`LiveTurn`).
    pub reply_cap: usize,
    /// The name of the key the turn runs for (its tokens are counted under it).
    pub key_name: Arc<str>,
    /// Time from the first provider call to the head of the answer (retries and
    /// fallbacks included): the access log's `upstream`.
    pub upstream_head: std::time::Duration,
    /// The prompt's estimated tokens (about four bytes a token), counted for a turn
    /// that ends before the provider reports its usage (`LiveTurn`).
    pub prompt_estimate: u64,
}

/// The most tokens a turn may generate: the request's, capped by the model's.
fn effective_max_tokens(params: &Params, model: &crate::config::ModelConfig) -> Option<u32> {
    match (params.max_tokens, model.max_tokens) {
        (Some(asked), Some(cap)) => Some(asked.min(cap)),
        (asked, cap) => asked.or(cap),
    }
}

impl StartedTurn {
    /// Records the completed reply (an assistant message, tool calls included) in the
    /// session and releases it. Resolves once it is recorded (committed to the store
    /// with `durability = "ack"`): only then may the client see the end of the turn.
    /// Errors: 503 `OVERLOADED` when the store could not write it.
    pub async fn finish(self, reply: Message) -> Result<(), ApiError> {
        self.finish_answering(reply, None).await
    }

    /// `finish` for a turn that answers a spooled webhook delivery: `answer` (the
    /// reply's parts for the outbox) commits in the same store transaction as the turn.
    pub async fn finish_answering(mut self, reply: Message, answer: Option<SpoolAnswer>) -> Result<(), ApiError> {
        match self.grant.take() {
            Some(grant) => {
                let mut user = std::mem::take(&mut self.preamble);
                user.push(self.user_message.clone());
                self.engine.sessions.finish_answering(grant, user, reply, answer).await
            }
            None => Ok(()),
        }
    }

    /// Counts the turn's tokens in this worker's totals.
    pub fn account(&self, usage: Usage) {
        let stats = &self.engine.stats;
        WorkerStats::add(&stats.prompt_tokens, usage.prompt_tokens);
        WorkerStats::add(&stats.completion_tokens, usage.completion_tokens);
        stats.tokens.add(&self.model_id, &self.key_name, usage.prompt_tokens, usage.completion_tokens);
        self.engine.limiter.settle_turn(&self.quota, usage);
    }
}

/// Refuses a new turn while the process is above `server.max_memory_mb` (503
/// `OVERLOADED`, `Retry-After: 1`): the turns already running finish and free memory.
pub fn check_memory(cfg: &Config) -> Result<(), ApiError> {
    let cap = cfg.server.max_memory_mb;
    let rss = crate::stats::rss_bytes();
    if cap == 0 || rss <= cap.saturating_mul(1 << 20) {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::Overloaded,
        format!("the gateway is above its memory watermark (server.max_memory_mb = {cap}); retry shortly"),
    )
    .with_retry_after(1))
}

/// Resolves channel and model, waits for the session's turn and starts the provider.
/// Errors: `INVALID_REQUEST` (unknown channel, bad session id), `FORBIDDEN` (disabled
/// channel, model not allowed), `MODEL_NOT_FOUND`, `INVALID_SESSION`, `RATE_LIMITED`
/// (token quota), and the provider's error once every model of the chain failed.
pub async fn start_turn(
    engine: &Rc<Engine>,
    cfg: &Config,
    who: &Identity,
    turn: TurnRequest,
) -> Result<StartedTurn, ApiError> {
    check_memory(cfg)?;
    let channel_default = if turn.channel == "api" {
        None
    } else {
        let ch =
            cfg.channel(&turn.channel).ok_or_else(|| ApiError::invalid(format!("unknown channel {}", turn.channel)))?;
        if !ch.enabled {
            return Err(ApiError::new(ErrorCode::Forbidden, format!("channel {} is disabled", ch.name)));
        }
        ch.model.clone()
    };
    if let Some(id) = &turn.session_id {
        session::validate_id(id)?;
    }
    if let Some(m) = &turn.model {
        resolve_model(cfg, who, m)?;
    }
    let default_model = channel_default.unwrap_or_else(|| cfg.default_model().id.clone());
    let mut seed = turn.seed;
    let (grant, model_id, prefix, history) = match turn.context {
        TurnContext::Explicit(messages) => (None, turn.model.unwrap_or(default_model), messages, Vec::new()),
        context => {
            let mut grant = engine
                .sessions
                .begin(BeginTurn {
                    id: turn.session_id,
                    who: who.clone(),
                    channel: turn.channel,
                    requested_model: turn.model,
                    default_model,
                    seed: std::mem::take(&mut seed),
                })
                .await?;
            let prefix = match context {
                TurnContext::SessionWithPrefix(p) => p,
                TurnContext::Session | TurnContext::Explicit(_) => Vec::new(),
            };
            // The snapshot is ours: move it out rather than copy it.
            let history = std::mem::take(&mut grant.history);
            (Some(grant), String::new(), prefix, history)
        }
    };
    let model_id = grant.as_ref().map_or(model_id, |g| g.model.clone());
    let model = resolve_model(cfg, who, &model_id)?;
    let mut messages = Vec::with_capacity(prefix.len() + history.len() + turn.preamble.len() + 1);
    messages.extend(prefix);
    messages.extend(history);
    messages.extend(turn.preamble.iter().cloned());
    messages.push(turn.message.clone());
    // The key's token quota: the estimate is reserved before any upstream call (429).
    let quota = engine.limiter.reserve_turn(cfg, who, &messages, effective_max_tokens(&turn.params, model))?;
    let prompt_estimate = crate::ratelimit::turn::estimate_prompt(&messages);
    // The model first, then its fallbacks in order; each provider retries on its own.
    // A request the provider refused itself ends the chain (the next model would be
    // sent the same request), except a context-length refusal, which moves on to the
    // model's `context_window_fallbacks` (PROTOCOL.md "Provider errors, by kind").
    let providers = engine.providers();
    let mut chain: VecDeque<&str> =
        std::iter::once(model.id.as_str()).chain(model.fallbacks.iter().map(String::as_str)).collect();
    let mut on_context_length = Some(&model.context_window_fallbacks).filter(|l| !l.is_empty());
    let mut failures: Vec<String> = Vec::new();
    let mut last: Option<ProviderError> = None;
    let upstream_started = std::time::Instant::now();
    while let Some(candidate) = chain.pop_front() {
        let Some(m) = cfg.model(candidate) else { continue };
        let Some(provider) = providers.get(&m.provider) else {
            last = Some(ProviderError::upstream(format!("provider {} is not running", m.provider)));
            continue;
        };
        // Settings this provider cannot carry: refused, or dropped when the model or
        // provider says so (PROTOCOL.md: nothing is ever dropped silently).
        let (params, dropped) = match cfg.provider(&m.provider) {
            Some(p) => {
                let cannot = provider.unsupported(&turn.params);
                if cannot.is_empty() {
                    (turn.params.clone(), Vec::new())
                } else if m.drop_unsupported_params || p.drop_unsupported_params {
                    let mut kept = (*turn.params).clone();
                    for field in &cannot {
                        kept.clear(field);
                    }
                    (Arc::new(kept), cannot)
                } else {
                    let list = cannot.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ");
                    return Err(ApiError::invalid(format!(
                        "{list} cannot be sent to provider {} ({} API) serving model {}; remove it, or set \
                         drop_unsupported_params = true on the model or provider to drop it",
                        p.name,
                        p.kind.as_str(),
                        m.id
                    )));
                }
            }
            None => (turn.params.clone(), Vec::new()),
        };
        // Only a turn with models still to try needs to keep its own copy.
        let final_try = chain.is_empty() && on_context_length.is_none();
        let messages = if final_try { std::mem::take(&mut messages) } else { messages.clone() };
        let request = ChatRequest {
            upstream_model: m.upstream.clone(),
            messages,
            max_tokens: effective_max_tokens(&params, m),
            params,
            stream: turn.stream,
        };
        match provider.chat(request).await {
            Ok(stream) => {
                return Ok(StartedTurn {
                    engine: engine.clone(),
                    session_id: grant.as_ref().map(|g| g.session_id.clone()).unwrap_or_default(),
                    model_id: m.id.clone(),
                    grant,
                    stream,
                    user_message: turn.message,
                    preamble: turn.preamble,
                    quota,
                    request_id: turn.request_id,
                    dropped,
                    reply_cap: cfg.server.max_reply_bytes,
                    key_name: who.name.clone(),
                    upstream_head: upstream_started.elapsed(),
                    prompt_estimate,
                })
            }
            Err(e) => {
                if !e.is_client_fault() {
                    log::warn(&format!("request {}: model {} failed: {}", turn.request_id, m.id, e.cause));
                }
                failures.push(format!("{}: {}", m.id, e.message));
                match e.kind {
                    FailureKind::BadRequest { context_length: true, .. } if on_context_length.is_some() => {
                        chain = on_context_length.take().into_iter().flatten().map(String::as_str).collect();
                    }
                    FailureKind::BadRequest { .. } => return Err(e.to_api()),
                    _ => {}
                }
                last = Some(e);
            }
        }
    }
    let last = last.unwrap_or_else(|| ProviderError::upstream("no model could serve the turn"));
    let mut err = last.to_api();
    if failures.len() > 1 {
        // A fallback chain reports every attempt, in order.
        err.message = format!("every model failed: {}", failures.join("; ")).into();
    }
    Err(err)
}

fn resolve_model<'c>(cfg: &'c Config, who: &Identity, id: &str) -> Result<&'c crate::config::ModelConfig, ApiError> {
    let model = cfg
        .model(id)
        .ok_or_else(|| ApiError::new(ErrorCode::ModelNotFound, format!("model {id} is not in the catalogue")))?;
    check_model_access(cfg, who, id)?;
    Ok(model)
}

/// Drains a turn's stream into the whole reply (non-streaming clients).
/// The whole answer: text, tool calls (their argument pieces joined), finish reason
/// and usage (counted in the totals and settled against the key's quota).
pub async fn run_to_end(mut started: StartedTurn) -> Result<(StartedTurn, Answer), ApiError> {
    let mut answer = Answer::default();
    loop {
        match started.stream.next().await.map_err(|e| e.to_api())? {
            Some(StreamEvent::Delta(d)) => answer.text.push_str(&d),
            Some(StreamEvent::Reasoning { text, signature }) => {
                answer.reasoning.text.push_str(&text);
                if signature.is_some() {
                    answer.reasoning.signature = signature;
                }
            }
            Some(StreamEvent::ToolCall { index, id, name, arguments }) => {
                add_tool_call_piece(&mut answer.tool_calls, index, id, name, &arguments)
            }
            Some(StreamEvent::Finish(f)) => answer.finish = f,
            Some(StreamEvent::Done(usage)) => {
                started.account(usage);
                answer.usage = usage;
                return Ok((started, answer));
            }
            None => return Err(ApiError::new(ErrorCode::UpstreamError, "provider ended the stream without usage")),
        }
    }
}

/// Joins a streamed piece of tool call `index` into `calls`.
pub fn add_tool_call_piece(
    calls: &mut Vec<ToolCall>,
    index: u32,
    id: Option<String>,
    name: Option<String>,
    arguments: &str,
) {
    let i = index as usize;
    // Indexes come from the provider: a gap is filled, an absurd one is capped.
    if i >= calls.len() && i < 1024 {
        calls.resize_with(i + 1, || ToolCall { id: String::new(), name: String::new(), arguments: String::new() });
    }
    let Some(call) = calls.get_mut(i) else { return };
    if let Some(id) = id {
        call.id = id;
    }
    if let Some(name) = name {
        call.name = name;
    }
    call.arguments.push_str(arguments);
}
