//! The REST and OpenAI front doors (layer 4): one handler per route, reached through
//! `handle` once `server::dispatch` has routed, authenticated and limited the request.
//! Handlers are thin: parse the body, call the turn engine or a layer-2 service,
//! render the envelope. Every error of every route leaves through `error_response`, so
//! the envelope, the status and the extra headers (`Allow`, `Retry-After`) are decided
//! in one place. The server adds `X-Request-Id`, the rate-limit headers and framing.

pub mod anthropic;
mod catalog;
pub mod chat;
mod health;
pub mod native;
pub mod openai;
pub mod responses;
mod sessions;

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::auth::Identity;
use crate::clock;
use crate::error::{ApiError, ErrorShape};
use crate::http::{Request, Response};
use crate::router::Route;
use crate::worker::{Snapshot, Worker};

/// Everything a handler may need about the request it serves.
pub struct Ctx<'a> {
    pub worker: &'a Rc<Worker>,
    pub snap: &'a Arc<Snapshot>,
    pub req: &'a Request,
    pub request_id: &'a str,
}

/// Runs the handler of `route` for a caller who passed authentication and the request
/// quota (`server::dispatch` decided both). `who` is `None` only on open routes.
/// `/ws` is not served here (the upgrade belongs to `ws`), nor are the webhooks
/// (`webhook`).
pub async fn handle(ctx: &Ctx<'_>, route: Route<'_>, who: Option<Identity>) -> Result<Response, ApiError> {
    match (route, who) {
        (Route::Health, _) | (Route::HealthLive, _) => Ok(health::health(ctx)),
        (Route::HealthReady, _) => health::ready(ctx),
        (Route::HealthDetailed, who) => health::detailed(ctx, who.as_ref()),
        (Route::Status, Some(who)) => catalog::status(ctx, &who),
        (Route::Models, Some(_)) => catalog::models(ctx),
        (Route::Channels, Some(_)) => catalog::channels(ctx).await,
        (Route::Chat, Some(who)) => chat::chat(ctx, who).await,
        (Route::Sessions, Some(who)) => sessions::list(ctx, &who).await,
        (Route::SessionGet(id), Some(who)) => sessions::get(ctx, &who, id).await,
        (Route::SessionOp(id), Some(who)) => sessions::operate(ctx, &who, id).await,
        (Route::OpenAiChat, Some(who)) => openai::chat_completions(ctx, who).await,
        (Route::OpenAiModels, Some(_)) => openai::models(ctx),
        (Route::OpenAiModel(id), Some(_)) => openai::model(ctx, id),
        (Route::OpenAiEmbeddings, Some(who)) => openai::embeddings(ctx, who).await,
        (Route::OpenAiResponses, Some(who)) => responses::responses(ctx, who).await,
        (Route::AnthropicMessages, Some(who)) => anthropic::messages(ctx, who).await,
        (Route::AnthropicCountTokens, Some(who)) => anthropic::count_tokens(ctx, who).await,
        (Route::Webhook(_) | Route::WebhookVerify(_) | Route::WebSocket | Route::Metrics, _) => {
            Err(ApiError::internal(format!("{} is served by its own front door", route.label())))
        }
        (_, None) => Err(ApiError::internal("authentication skipped on a protected route")),
    }
}

/// Names the model (and its provider) that answered, the upstream time
/// (`StartedTurn::upstream_head`) and a whole turn's tokens, for the access log.
pub fn log_turn(
    resp: &mut Response,
    cfg: &crate::config::Config,
    model_id: &str,
    upstream: std::time::Duration,
    usage: Option<crate::chat::Usage>,
) {
    resp.log.upstream = Some(upstream);
    resp.log.model = Some(model_id.to_string());
    resp.log.provider = cfg.model(model_id).map(|m| m.provider.clone());
    resp.log.tokens = usage.map(|u| (u.prompt_tokens, u.completion_tokens));
}

/// Adds the limiter's `X-RateLimit-*` headers to a response.
pub fn add_quota_headers(resp: &mut Response, headers: crate::ratelimit::QuotaHeaders) {
    for (name, value) in headers.pairs() {
        resp.push_header(name, value);
    }
}

/// The one place an `ApiError` becomes a response, in the route's error `shape`.
pub fn error_response(e: &ApiError, shape: ErrorShape) -> Response {
    let body = e.render_as(shape);
    let mut resp = Response::json(e.status(), body);
    if let Some(allow) = e.allow {
        resp.push_header("allow", allow);
    }
    if let Some(secs) = e.retry_after {
        resp.push_header("retry-after", secs.to_string());
    }
    resp.close = e.close;
    resp
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    success: bool,
    data: &'a T,
    timestamp: clock::Stamp,
}

/// The contract's success envelope around `data`.
pub fn ok<T: Serialize>(data: &T) -> Result<Response, ApiError> {
    let body = Envelope { success: true, data, timestamp: clock::now_stamp() };
    let bytes = sonic_rs::to_vec(&body).map_err(|e| ApiError::internal(format!("rendering failed: {e}")))?;
    Ok(Response::json(200, Bytes::from(bytes)))
}

/// Checks that a body is present, for routes that need one.
pub fn require_body(req: &Request) -> Result<&[u8], ApiError> {
    let body = &req.body[..];
    // serde's derived structs also accept arrays; the contract takes objects only.
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(body),
        None => Err(ApiError::invalid("request body must be a JSON object")),
        Some(_) => match crate::json::from_slice::<sonic_rs::Value>(body) {
            Ok(_) => Err(ApiError::invalid("request body must be a JSON object")),
            Err(e) => Err(ApiError::invalid(format!("malformed JSON: {}", e.first_line()))),
        },
    }
}

/// sonic-rs errors carry a multi-line excerpt of the input; the first line says it all.
fn first_line(e: &sonic_rs::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().trim_end().to_string()
}

/// Turns a JSON parse failure into a message that names the offending field when it
/// is one of `fields` with the wrong type, else describes the syntax error.
pub fn json_error(body: &[u8], err: &sonic_rs::Error, fields: &[(&str, JsonKind)]) -> ApiError {
    use sonic_rs::JsonValueTrait;
    let Ok(value) = sonic_rs::from_slice::<sonic_rs::Value>(body) else {
        return ApiError::invalid(format!("malformed JSON: {}", first_line(err)));
    };
    if !value.is_object() {
        return ApiError::invalid("request body must be a JSON object");
    }
    for (name, kind) in fields {
        if let Some(v) = value.get(*name) {
            let fits = match kind {
                JsonKind::String => v.is_str() || v.is_null(),
                JsonKind::Bool => v.is_boolean() || v.is_null(),
                JsonKind::Integer => v.is_u64() || v.is_null(),
            };
            if !fits {
                return ApiError::invalid(format!("field `{name}` must be {}", kind.describe()));
            }
        }
    }
    ApiError::invalid(format!("invalid request: {}", first_line(err)))
}

/// The JSON types request fields are checked against.
#[derive(Debug, Clone, Copy)]
pub enum JsonKind {
    String,
    Bool,
    Integer,
}

impl JsonKind {
    fn describe(self) -> &'static str {
        match self {
            JsonKind::String => "a string",
            JsonKind::Bool => "a boolean",
            JsonKind::Integer => "a non-negative integer",
        }
    }
}

/// A string, or an array of `T`: the "string or list" fields of OpenAI's and
/// Anthropic's request bodies (`content`, `system`, `input`, `output`). Read by a
/// visitor: `#[serde(untagged)]` would buffer the value and lose what only sonic-rs's
/// own deserializer builds (`sonic_rs::Value` fields such as a tool's `input`).
pub enum StrOrList<'a, T> {
    Str(std::borrow::Cow<'a, str>),
    List(Vec<T>),
}

impl<'de: 'a, 'a, T: serde::Deserialize<'de>> serde::Deserialize<'de> for StrOrList<'a, T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use std::borrow::Cow;
        use std::marker::PhantomData;
        struct Visit<'a, T>(PhantomData<(&'a (), T)>);
        impl<'de: 'a, 'a, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<'a, T> {
            type Value = StrOrList<'a, T>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an array")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(StrOrList::Str(Cow::Borrowed(v)))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StrOrList::Str(Cow::Owned(v.to_string())))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(StrOrList::Str(Cow::Owned(v)))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(item) = seq.next_element::<T>()? {
                    out.push(item);
                }
                Ok(StrOrList::List(out))
            }
        }
        d.deserialize_any(Visit(PhantomData))
    }
}

/// The top-level fields of a JSON object body that are not in `known`, in order, as
/// (name, raw JSON): what a front door does not model. Errors: a body that is not a
/// JSON object (`INVALID_REQUEST`).
pub fn unknown_fields(body: &[u8], known: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for item in sonic_rs::to_object_iter(body) {
        let (name, value) = item.map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))?;
        if !known.contains(&&*name) {
            out.push((name.into_owned(), value.as_raw_str().to_string()));
        }
    }
    Ok(out)
}

/// The request-body parsers of the `/v1` front doors, callable on arbitrary bytes for
/// the fuzz target `fuzz/fuzz_targets/front_doors.rs` (the parse each handler runs after
/// the depth check of `server::dispatch`). Each returns whether the body parsed into a
/// turn's request. Not an API.
#[doc(hidden)]
pub mod fuzz {
    /// `POST /v1/chat/completions`.
    pub fn chat_completions(body: &[u8]) -> bool {
        super::openai::fuzz_parse(body)
    }

    /// `POST /v1/messages` (and `count_tokens`).
    pub fn messages(body: &[u8]) -> bool {
        super::anthropic::fuzz_parse(body)
    }

    /// `POST /v1/responses`.
    pub fn responses(body: &[u8]) -> bool {
        super::responses::fuzz_parse(body)
    }
}

/// Caller identity for handlers that need it.
pub type Who = Identity;
