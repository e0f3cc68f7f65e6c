//! Session routes: `GET /api/sessions` (paged, newest first, filter by channel),
//! `GET /api/sessions/:id` (with messages) and `POST /api/sessions/:id` with an
//! `action` of `reset`, `delete`, `setModel` or `history`. A user key sees only the
//! sessions it created; an admin key sees all.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::api::{json_error, ok, require_body, Ctx, JsonKind};
use crate::auth::{check_model_access, Identity};
use crate::clock;
use crate::error::{ApiError, ErrorCode};
use crate::http::Response;
use crate::session::{validate_id, SessionAction, SessionInfo, StoredMessage};

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InfoView<'a> {
    id: &'a str,
    channel: &'a str,
    model: &'a str,
    message_count: usize,
    created_at: String,
    updated_at: String,
}

impl<'a> From<&'a SessionInfo> for InfoView<'a> {
    fn from(i: &'a SessionInfo) -> Self {
        InfoView {
            id: &i.id,
            channel: &i.channel,
            model: &i.model,
            message_count: i.message_count,
            created_at: clock::rfc3339(i.created_at_ms / 1000),
            updated_at: clock::rfc3339(i.updated_at_ms / 1000),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageView<'a> {
    role: crate::chat::MessageRole,
    content: &'a str,
    created_at: String,
}

impl<'a> From<&'a StoredMessage> for MessageView<'a> {
    fn from(m: &'a StoredMessage) -> Self {
        MessageView { role: m.role, content: &m.content, created_at: clock::rfc3339(m.at / 1000) }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListView<'a> {
    sessions: Vec<InfoView<'a>>,
    next_cursor: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FullView<'a> {
    #[serde(flatten)]
    info: InfoView<'a>,
    messages: Vec<MessageView<'a>>,
}

fn parse_limit(raw: Option<String>, default: usize) -> Result<usize, ApiError> {
    match raw {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid(format!("limit must be an integer from 1 to {MAX_PAGE}"))),
        },
    }
}

pub async fn list(ctx: &Ctx<'_>, who: &Identity) -> Result<Response, ApiError> {
    let limit = parse_limit(ctx.req.query_param("limit"), DEFAULT_PAGE)?;
    let cursor = ctx.req.query_param("cursor").filter(|c| !c.is_empty());
    let channel = ctx.req.query_param("channel").filter(|c| !c.is_empty());
    let page = ctx.worker.turns.sessions.list(who, channel.as_deref(), cursor.as_deref(), limit).await?;
    ok(&ListView { sessions: page.sessions.iter().map(InfoView::from).collect(), next_cursor: page.next_cursor })
}

pub async fn get(ctx: &Ctx<'_>, who: &Identity, id: &str) -> Result<Response, ApiError> {
    validate_id(id).map_err(|_| unknown(id))?;
    let view = ctx.worker.turns.sessions.get(id, who, None).await?;
    ok(&FullView { info: (&view.info).into(), messages: view.messages.iter().map(MessageView::from).collect() })
}

#[derive(Deserialize)]
struct OpBody<'a> {
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    limit: Option<u64>,
}

const FIELDS: &[(&str, JsonKind)] =
    &[("action", JsonKind::String), ("model", JsonKind::String), ("limit", JsonKind::Integer)];

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Deleted<'a> {
    id: &'a str,
    deleted: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct History<'a> {
    id: &'a str,
    messages: Vec<MessageView<'a>>,
}

pub async fn operate(ctx: &Ctx<'_>, who: &Identity, id: &str) -> Result<Response, ApiError> {
    validate_id(id).map_err(|_| unknown(id))?;
    let body = require_body(ctx.req)?;
    let op: OpBody<'_> = sonic_rs::from_slice(body).map_err(|e| json_error(body, &e, FIELDS))?;
    let hub = &ctx.worker.turns.sessions;
    match op.action.as_deref() {
        Some("reset") => ok(&InfoView::from(&hub.act(id, who, SessionAction::Reset).await?)),
        Some("delete") => {
            let info = hub.act(id, who, SessionAction::Delete).await?;
            ok(&Deleted { id: &info.id, deleted: true })
        }
        Some("setModel") => {
            let model = op.model.ok_or_else(|| ApiError::invalid("missing field `model`"))?;
            let cfg = &ctx.snap.config;
            if cfg.model(&model).is_none() {
                return Err(ApiError::new(ErrorCode::ModelNotFound, format!("model {model} is not in the catalogue")));
            }
            check_model_access(cfg, who, &model)?;
            let info = hub.act(id, who, SessionAction::SetModel(model.into_owned())).await?;
            ok(&InfoView::from(&info))
        }
        Some("history") => {
            let limit = match op.limit {
                None => DEFAULT_PAGE,
                Some(n) if (1..=MAX_PAGE as u64).contains(&n) => n as usize,
                Some(_) => return Err(ApiError::invalid(format!("field `limit` must be from 1 to {MAX_PAGE}"))),
            };
            let view = hub.get(id, who, Some(limit)).await?;
            ok(&History { id: &view.info.id, messages: view.messages.iter().map(MessageView::from).collect() })
        }
        Some(other) => {
            Err(ApiError::invalid(format!("unknown action `{other}`; expected reset, delete, setModel or history")))
        }
        None => Err(ApiError::invalid("missing field `action`")),
    }
}

fn unknown(id: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidSession, format!("unknown session {id}"))
}
