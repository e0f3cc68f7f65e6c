//! `POST /api/chat`: one conversational turn. The body is parsed lazily with sonic-rs
//! (borrowed `Cow` strings: nothing is copied unless it had escapes); the channel and
//! model are resolved; the session's owner grants the turn with its history; the
//! provider is called with history + the new message; the reply is appended when the
//! turn completes. With `"stream": true` (or `Accept: text/event-stream`) the answer
//! streams as SSE, one event per provider chunk, each flushed as it arrives; a failure
//! after the stream began is an `error` event that ends it. Streamed turns are
//! resumable (`turn::TurnHub`): the turn runs in its own task and keeps going for a while
//! after its client left, so a reconnect with `Last-Event-ID` gets the rest of it.
//!
//! The turn itself is front-door neutral (`turn`): `start_turn` (context -> session grant ->
//! provider) and `LiveTurn` (deltas, then usage, the reply recorded in the session) are
//! what `/api/chat`, `/v1/chat/completions` and `/ws` all run; each only renders.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::api::{json_error, ok, require_body, Ctx, JsonKind};
use crate::auth::Identity;
use crate::chat::{Message, MessageRole, UsageView};
use crate::error::ApiError;
use crate::http::response::EventStream;
use crate::http::sse;
use crate::http::Response;
use crate::turn::{new_turn_id, run_to_end, start_turn, LiveTurn, TurnContext, TurnEvent, TurnRequest};

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
        return ctx.worker.turns.resume.resume(&who, last).await.map(Response::sse);
    }
    let body = require_body(ctx.req)?;
    let parsed: ChatBody<'_> = sonic_rs::from_slice(body).map_err(|e| json_error(body, &e, FIELDS))?;
    let wants_sse = parsed.stream.unwrap_or(false) || ctx.req.header_has_token("accept", "text/event-stream");
    let turn = TurnRequest {
        channel: parsed.channel.map_or_else(|| "api".to_string(), Cow::into_owned),
        message: match parsed.message {
            Some(m) if !m.trim().is_empty() => Message::text(MessageRole::User, &*m),
            Some(_) => return Err(ApiError::invalid("field `message` must not be empty")),
            None => return Err(ApiError::invalid("missing field `message`")),
        },
        session_id: parsed.session_id.map(Cow::into_owned),
        model: parsed.model.map(Cow::into_owned),
        context: TurnContext::Session,
        preamble: Vec::new(),
        seed: Vec::new(),
        stream: wants_sse,
        request_id: ctx.request_id.to_string(),
        params: Arc::default(),
    };
    let started = start_turn(&ctx.worker.turns, &ctx.snap.config, &who, turn).await?;
    if wants_sse {
        let upstream = started.upstream_head;
        let turn_id = new_turn_id(ctx.worker.id);
        let sse = SseTurn { turn: LiveTurn::new(started), seq: 0, turn_id: turn_id.clone() };
        let model = sse.turn.model_id.clone();
        let events = ctx.worker.turns.resume.start(&ctx.snap.config.server, turn_id, who.name.clone(), sse)?;
        let mut resp = Response::sse(events);
        crate::api::log_turn(&mut resp, &ctx.snap.config, &model, upstream, None);
        return Ok(resp);
    }
    let (started, answer) = run_to_end(started).await?;
    let reply = ChatReply {
        message: &answer.text,
        session_id: &started.session_id,
        model: &started.model_id,
        usage: answer.usage.into(),
    };
    let mut resp = ok(&reply)?;
    crate::api::log_turn(&mut resp, &ctx.snap.config, &started.model_id, started.upstream_head, Some(answer.usage));
    started.finish(answer.to_message()).await?;
    Ok(resp)
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
        let mut event = self.turn.next().await?;
        // The gateway protocol carries no tools (none are offered on this route) and no
        // reasoning (it is kept in the session).
        while let TurnEvent::ToolCall { .. } | TurnEvent::Reasoning { .. } = event {
            event = self.turn.next().await?;
        }
        match event {
            TurnEvent::Delta(d) => Some(self.frame(&SseEvent::Chunk { content: &d })),
            TurnEvent::ToolCall { .. } | TurnEvent::Reasoning { .. } => None,
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
