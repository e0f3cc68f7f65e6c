//! The request path after decoding, top to bottom in one place:
//! route (404/405/version) -> authenticate (open routes skip it) -> limit (the caller's
//! request quota, `ratelimit`; a failed key counts against its IP) -> handler -> render
//! (with the `X-RateLimit-*` headers of the caller's quotas).
//! Handlers are thin: parse the body, call the library, render the envelope. Every
//! error of every route leaves through `error_response`, so the envelope, the status
//! and the extra headers (`Allow`, `Retry-After`) are decided in one place. The caller
//! (`http::conn`) adds `X-Request-Id` and framing.

mod catalog;
pub mod chat;
mod health;
mod openai;
pub mod resume;
mod sessions;

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::auth::{AuthMemo, Identity};
use crate::clock;
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::router::{self, Route};
use crate::worker::{Snapshot, Worker};

/// Everything a handler may need about the request it serves.
pub struct Ctx<'a> {
    pub worker: &'a Rc<Worker>,
    pub snap: &'a Arc<Snapshot>,
    pub req: &'a Request,
    pub request_id: &'a str,
}

/// Serves one decoded request. Never fails: errors become error responses.
pub async fn dispatch(
    worker: &Rc<Worker>,
    snap: &Arc<Snapshot>,
    req: &Request,
    request_id: &str,
    auth_memo: &mut AuthMemo,
) -> Response {
    let path = req.path();
    let route = match router::route(req.method, path) {
        Ok(r) => r,
        Err(e) => return error_response(&e, router::is_openai_path(path)),
    };
    let ctx = Ctx { worker, snap, req, request_id };
    let peer = req.peer.map(|p| p.ip());
    let who = if route.needs_auth() || route == Route::HealthDetailed {
        match snap.keys.authenticate_header_memo(req.header_bytes("authorization"), auth_memo) {
            Ok(id) => Some(id),
            // A WebSocket upgrade without `Authorization` authenticates by its first frame.
            Err(_) if route == Route::WebSocket && req.header_bytes("authorization").is_none() => None,
            Err(e) if route.needs_auth() => {
                // A failed key counts against its IP (`limits.ip_rpm`): guessing gets 429.
                let (e, quota) = match worker.limiter.check_unauthenticated(peer) {
                    Ok(quota) => (e, quota),
                    Err(refused) => (refused.error, refused.quota),
                };
                let mut resp = error_response(&e, route.openai_errors());
                worker.limiter.add_headers(&quota, &mut resp);
                return resp;
            }
            Err(_) => None,
        }
    } else {
        None
    };
    // The caller's request quota, before the handler runs. Open routes are not limited;
    // `/ws` limits its own connects and messages (`Limiter::ws_connect`, `ws_socket`).
    let quota = match &who {
        Some(id) if route.needs_auth() && route != Route::WebSocket => {
            match worker.limiter.check_request(&snap.config, id, peer) {
                Ok(quota) => Some(quota),
                Err(refused) => {
                    let mut resp = error_response(&refused.error, route.openai_errors());
                    worker.limiter.add_headers(&refused.quota, &mut resp);
                    return resp;
                }
            }
        }
        _ => None,
    };
    // No parser below sees a body nested past the limit (sonic-rs recurses).
    // Webhooks verify their signature over the raw bytes before anything parses them.
    let parses_later = matches!(route, Route::Webhook(_) | Route::WebhookVerify(_));
    if let Err(e) = check_body_depth(req).or_else(|e| if parses_later { Ok(()) } else { Err(e) }) {
        let mut resp = error_response(&e, route.openai_errors());
        if let Some(quota) = &quota {
            worker.limiter.add_headers(quota, &mut resp);
        }
        return resp;
    }
    let result = match (route, who) {
        (Route::Health, _) => Ok(health::health(&ctx)),
        (Route::HealthDetailed, who) => health::detailed(&ctx, who.as_ref()),
        (Route::Status, Some(who)) => catalog::status(&ctx, &who),
        (Route::Models, Some(_)) => catalog::models(&ctx),
        (Route::Channels, Some(_)) => catalog::channels(&ctx),
        (Route::Chat, Some(who)) => chat::chat(&ctx, who).await,
        (Route::Sessions, Some(who)) => sessions::list(&ctx, &who).await,
        (Route::SessionGet(id), Some(who)) => sessions::get(&ctx, &who, id).await,
        (Route::SessionOp(id), Some(who)) => sessions::operate(&ctx, &who, id).await,
        (Route::OpenAiChat, Some(who)) => openai::chat_completions(&ctx, who).await,
        (Route::OpenAiModels, Some(_)) => openai::models(&ctx),
        (Route::WebSocket, who) => crate::ws::upgrade(&ctx, who),
        (Route::Metrics | Route::Webhook(_) | Route::WebhookVerify(_), _) => Err(ApiError::new(
            crate::error::ErrorCode::NotImplemented,
            format!("{} is not implemented in this version", route.label()),
        )),
        (_, None) => Err(ApiError::internal("authentication skipped on a protected route")),
    };
    let mut resp = result.unwrap_or_else(|e| error_response(&e, route.openai_errors()));
    if let Some(quota) = &quota {
        worker.limiter.add_headers(quota, &mut resp);
    }
    resp
}

/// The one place an `ApiError` becomes a response.
pub fn error_response(e: &ApiError, openai: bool) -> Response {
    let body = if openai { e.render_openai() } else { e.render() };
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

/// Refuses a request body that nests deeper than `server.max_json_depth`, before any
/// handler parses it (`json`): every HTTP body passes here, whatever its route.
fn check_body_depth(req: &Request) -> Result<(), ApiError> {
    if req.body.is_empty() {
        return Ok(());
    }
    crate::json::check_depth(&req.body, crate::json::max_depth()).map_err(|e| ApiError::invalid(e.first_line()))
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

/// Caller identity for handlers that need it.
pub type Who = Identity;
