//! `POST /api/chat`: one conversational turn. The body is parsed lazily with sonic-rs
//! (borrowed `Cow` strings: nothing is copied unless it had escapes); the channel and
//! model are resolved; the session's owner grants the turn with its history; the
//! provider is called with history + the new message; the reply is appended when the
//! turn completes. With `"stream": true` (or `Accept: text/event-stream`) the answer
//! streams as SSE, one event per provider chunk, each flushed as it arrives; a failure
//! after the stream began is an `error` event that ends it. Streamed turns are
//! resumable (`api::resume`): the turn runs in its own task and keeps going for a while
//! after its client left, so a reconnect with `Last-Event-ID` gets the rest of it.
//!
//! The turn itself is front-door neutral: `start_turn` (context -> session grant ->
//! provider) and `LiveTurn` (deltas, then usage, the reply recorded in the session) are
//! what `/api/chat`, `/v1/chat/completions` and `/ws` all run; each only renders.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::api::{json_error, ok, require_body, resume, Ctx, JsonKind};
use crate::auth::{check_model_access, Identity};
use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::http::response::EventStream;
use crate::http::sse;
use crate::http::Response;
use crate::provider::{ChatRequest, ChatStream, Message, MessageRole, StreamEvent, Usage};
use crate::session::{self, BeginTurn, TurnGrant};
use crate::worker::{Worker, WorkerStats};

#[derive(Deserialize)]
struct ChatBody<'a> {
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "sessionId")]
    session_id: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
}

const FIELDS: &[(&str, JsonKind)] = &[
    ("channel", JsonKind::String),
    ("message", JsonKind::String),
    ("sessionId", JsonKind::String),
    ("stream", JsonKind::Bool),
    ("model", JsonKind::String),
];

/// A validated turn request, independent of the front door it came through.
pub struct TurnRequest {
    pub channel: String,
    pub message: Arc<str>,
    pub session_id: Option<String>,
    pub model: Option<String>,
    /// Where the conversation before `message` comes from.
    pub context: TurnContext,
    /// Whether the client streams (the provider is then asked to stream too).
    pub stream: bool,
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

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl From<Usage> for UsageView {
    fn from(u: Usage) -> Self {
        UsageView { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, total_tokens: u.total() }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChatReply<'a> {
    message: &'a str,
    session_id: &'a str,
    model: &'a str,
    usage: UsageView,
}

pub async fn chat(ctx: &Ctx<'_>, who: Identity) -> Result<Response, ApiError> {
    if let Some(last) = ctx.req.header("last-event-id") {
        // A reconnect: the rest of a buffered turn, never a new turn (body ignored).
        return resume::resume(ctx.worker, &who, last).await.map(Response::sse);
    }
    let body = require_body(ctx.req)?;
    let parsed: ChatBody<'_> = sonic_rs::from_slice(body).map_err(|e| json_error(body, &e, FIELDS))?;
    let wants_sse = parsed.stream.unwrap_or(false) || ctx.req.header_has_token("accept", "text/event-stream");
    let turn = TurnRequest {
        channel: parsed.channel.map_or_else(|| "api".to_string(), Cow::into_owned),
        message: match parsed.message {
            Some(m) if !m.trim().is_empty() => Arc::from(&*m),
            Some(_) => return Err(ApiError::invalid("field `message` must not be empty")),
            None => return Err(ApiError::invalid("missing field `message`")),
        },
        session_id: parsed.session_id.map(Cow::into_owned),
        model: parsed.model.map(Cow::into_owned),
        context: TurnContext::Session,
        stream: wants_sse,
    };
    let started = start_turn(ctx.worker, &ctx.snap.config, &who, turn).await?;
    if wants_sse {
        let turn_id = resume::new_turn_id(ctx.worker.id);
        let sse = SseTurn { turn: LiveTurn::new(started), seq: 0, turn_id: turn_id.clone() };
        let events = resume::start(ctx.worker, &ctx.snap.config.server, turn_id, who.name.clone(), sse)?;
        return Ok(Response::sse(events));
    }
    let (started, text, usage) = run_to_end(started).await?;
    let reply =
        ChatReply { message: &text, session_id: &started.session_id, model: &started.model_id, usage: usage.into() };
    let resp = ok(&reply);
    started.finish(text.into());
    resp
}

/// A turn that has its session grant and a live provider stream.
pub struct StartedTurn {
    pub worker: Rc<Worker>,
    pub grant: Option<TurnGrant>,
    pub stream: ChatStream,
    pub session_id: String,
    pub model_id: String,
    pub user_message: Arc<str>,
    /// The turn's token reservation (`ratelimit::turn`): settled in `account`,
    /// charged for what was streamed if the turn is dropped.
    pub quota: crate::ratelimit::TurnQuota,
}

impl StartedTurn {
    /// Records the completed reply in the session and releases it.
    pub fn finish(mut self, reply: Arc<str>) {
        if let Some(grant) = self.grant.take() {
            self.worker.sessions.finish(grant, self.user_message.clone(), reply);
        }
    }

    /// Counts the turn's tokens in this worker's totals.
    pub fn account(&self, usage: Usage) {
        let stats = self.worker.stats();
        WorkerStats::add(&stats.prompt_tokens, usage.prompt_tokens);
        WorkerStats::add(&stats.completion_tokens, usage.completion_tokens);
        self.worker.limiter.settle_turn(&self.quota, usage);
    }
}

/// Resolves channel and model, waits for the session's turn and starts the provider.
pub async fn start_turn(
    worker: &Rc<Worker>,
    cfg: &Config,
    who: &Identity,
    turn: TurnRequest,
) -> Result<StartedTurn, ApiError> {
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
    let (grant, model_id, prefix, history) = match turn.context {
        TurnContext::Explicit(messages) => (None, turn.model.unwrap_or(default_model), messages, Vec::new()),
        context => {
            let mut grant = worker
                .sessions
                .begin(BeginTurn {
                    id: turn.session_id,
                    who: who.clone(),
                    channel: turn.channel,
                    requested_model: turn.model,
                    default_model,
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
    let mut messages = Vec::with_capacity(prefix.len() + history.len() + 1);
    messages.extend(prefix);
    messages.extend(history);
    messages.push(Message { role: MessageRole::User, content: turn.message.clone() });
    // The key's token quota: the estimate is reserved before any upstream call (429).
    let quota = worker.limiter.reserve_turn(cfg, who, &messages, model.max_tokens)?;
    // The model first, then its fallbacks in order; each provider retries on its own.
    let providers = worker.providers();
    let chain = std::iter::once(model.id.as_str()).chain(model.fallbacks.iter().map(String::as_str));
    let last = model.fallbacks.len();
    let mut last_err: Option<ApiError> = None;
    for (i, candidate) in chain.enumerate() {
        let Some(m) = cfg.model(candidate) else { continue };
        let Some(provider) = providers.get(&m.provider) else {
            last_err = Some(ApiError::internal(format!("provider {} is not running", m.provider)));
            continue;
        };
        // Only a turn with fallbacks still to try needs to keep its own copy.
        let messages = if i == last { std::mem::take(&mut messages) } else { messages.clone() };
        let request =
            ChatRequest { upstream_model: m.upstream.clone(), messages, max_tokens: m.max_tokens, stream: turn.stream };
        match provider.chat(request).await {
            Ok(stream) => {
                return Ok(StartedTurn {
                    worker: worker.clone(),
                    session_id: grant.as_ref().map(|g| g.session_id.clone()).unwrap_or_default(),
                    model_id: m.id.clone(),
                    grant,
                    stream,
                    user_message: turn.message,
                    quota,
                })
            }
            Err(e) => last_err = Some(e.to_api()),
        }
    }
    Err(last_err.unwrap_or_else(|| ApiError::internal("no model could serve the turn")))
}

fn resolve_model<'c>(cfg: &'c Config, who: &Identity, id: &str) -> Result<&'c crate::config::ModelConfig, ApiError> {
    let model = cfg
        .model(id)
        .ok_or_else(|| ApiError::new(ErrorCode::ModelNotFound, format!("model {id} is not in the catalogue")))?;
    check_model_access(cfg, who, id)?;
    Ok(model)
}

/// Drains a turn's stream into the whole reply (non-streaming clients).
pub async fn run_to_end(mut started: StartedTurn) -> Result<(StartedTurn, String, Usage), ApiError> {
    let mut text = String::new();
    loop {
        match started.stream.next().await.map_err(|e| e.to_api())? {
            Some(StreamEvent::Delta(d)) => text.push_str(&d),
            Some(StreamEvent::Done(usage)) => {
                started.account(usage);
                return Ok((started, text, usage));
            }
            None => return Err(ApiError::new(ErrorCode::UpstreamError, "provider ended the stream without usage")),
        }
    }
}

/// A started turn driven to its end: the one loop every front door runs. Yields the
/// provider's deltas, then `Done` (usage counted, reply recorded in the session) or
/// `Failed`, then `None`. Dropping it mid-way aborts the turn (the grant's `Drop`).
pub struct LiveTurn {
    started: Option<StartedTurn>,
    text: String,
    /// The session the turn belongs to (empty for an explicit-context turn).
    pub session_id: String,
    /// The catalogue id of the model answering.
    pub model_id: String,
}

/// One step of a `LiveTurn`.
#[derive(Debug)]
pub enum TurnEvent {
    Delta(String),
    Done { usage: Usage, reply: Arc<str> },
    Failed(ApiError),
}

impl LiveTurn {
    pub fn new(started: StartedTurn) -> Self {
        let (session_id, model_id) = (started.session_id.clone(), started.model_id.clone());
        LiveTurn { started: Some(started), text: String::new(), session_id, model_id }
    }

    /// The next event; `None` once the turn is over.
    pub async fn next(&mut self) -> Option<TurnEvent> {
        let started = self.started.as_mut()?;
        match started.stream.next().await {
            Ok(Some(StreamEvent::Delta(d))) => {
                // A reply that runs past the key's token quota ends here (RATE_LIMITED).
                if let Err(e) = started.worker.limiter.turn_delta(&started.quota, &d) {
                    self.started = None;
                    return Some(TurnEvent::Failed(e));
                }
                self.text.push_str(&d);
                Some(TurnEvent::Delta(d))
            }
            Ok(Some(StreamEvent::Done(usage))) => {
                let started = self.started.take()?;
                started.account(usage);
                let reply: Arc<str> = Arc::from(std::mem::take(&mut self.text));
                started.finish(reply.clone());
                Some(TurnEvent::Done { usage, reply })
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
        }
    }
}

/// The gateway SSE rendering of a streamed turn: each event framed with
/// `id: <turnId>:<seq>`.
pub struct SseTurn {
    turn: LiveTurn,
    seq: u64,
    turn_id: String,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum SseEvent<'a> {
    Chunk {
        content: &'a str,
    },
    #[serde(rename_all = "camelCase")]
    Done {
        session_id: &'a str,
        model: &'a str,
        usage: UsageView,
    },
    Error {
        code: &'a str,
        message: &'a str,
    },
}

impl SseTurn {
    fn frame(&mut self, event: &SseEvent<'_>) -> Bytes {
        let id = format!("{}:{}", self.turn_id, self.seq);
        self.seq += 1;
        let data = sonic_rs::to_vec(event).unwrap_or_default();
        sse::chunked_event("message", &id, &data)
    }

    /// The next framed event; `None` after the last.
    pub async fn step(&mut self) -> Option<Bytes> {
        match self.turn.next().await? {
            TurnEvent::Delta(d) => Some(self.frame(&SseEvent::Chunk { content: &d })),
            TurnEvent::Done { usage, .. } => {
                let (sid, model) = (self.turn.session_id.clone(), self.turn.model_id.clone());
                Some(self.frame(&SseEvent::Done { session_id: &sid, model: &model, usage: usage.into() }))
            }
            TurnEvent::Failed(api) => {
                Some(self.frame(&SseEvent::Error { code: api.code.as_str(), message: &api.message }))
            }
        }
    }
}

impl EventStream for SseTurn {
    fn next_event(&mut self) -> Pin<Box<dyn Future<Output = Option<Bytes>> + '_>> {
        Box::pin(self.step())
    }
}
