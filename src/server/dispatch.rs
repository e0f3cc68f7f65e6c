//! The request path after decoding, top to bottom in one place (a function per step
//! in `server`'s index): CORS preflight (`cors::preflight`, answered before anything
//! else, auth included, for a listed origin) -> route (404/405/version) -> the
//! `Origin` of a `/ws` upgrade (`cors::check_ws_origin`) -> lockout (a key from an address
//! locked out after repeated failures is refused unread) -> authenticate (open routes
//! skip it; a refused key counts towards its IP's lockout and `limits.ip_rpm`) -> limit (the caller's request quota) -> depth
//! guard (no parser sees a body nested past `server.max_json_depth`) -> handler (`ws`
//! for the upgrade, `webhook` for the channels' deliveries, `api::handle` for
//! everything else) -> the `X-RateLimit-*` headers
//! of the caller's quotas. Never fails: every error becomes a response here.

use std::rc::Rc;
use std::sync::Arc;

use super::cors;
use crate::api::{self, add_quota_headers, error_response, Ctx};
use crate::auth::AuthMemo;
use crate::error::{ApiError, ErrorShape};
use crate::http::{Request, Response};
use crate::ratelimit::Refused;
use crate::router::{self, Route};
use crate::worker::{Snapshot, Worker};

/// Serves one decoded request: the whole path between the codec and the handler.
pub async fn dispatch(
    worker: &Rc<Worker>,
    snap: &Arc<Snapshot>,
    req: &Request,
    request_id: &str,
    auth_memo: &mut AuthMemo,
) -> Response {
    // A browser's preflight carries no credentials: it is answered before auth.
    if let Some(resp) = cors::preflight(&snap.config.server, req) {
        return resp;
    }
    let path = req.path();
    let route = match router::route(req.method, path) {
        Ok(r) => r,
        Err(e) => return error_response(&e, router::error_shape(path)),
    };
    // A page of an origin not listed may not open a WebSocket (its first frame could
    // carry a key the page got hold of); refused before the upgrade.
    if route == Route::WebSocket {
        if let Err(e) = cors::check_ws_origin(&snap.config.server, req) {
            return error_response(&e, ErrorShape::Gateway);
        }
    }
    let peer = req.peer.map(|p| p.ip());
    let who = if route.needs_auth() || route == Route::HealthDetailed || route == Route::Metrics {
        // `/v1/*` also takes the Anthropic SDK's `x-api-key` (the raw key) when there is
        // no `Authorization` header.
        let api_key = if route.takes_api_key_header() { req.header_bytes("x-api-key") } else { None };
        let bearer = req.header_bytes("authorization");
        let credentials = bearer.or(api_key);
        // An address locked out after repeated failures gets 429 for any key, valid or
        // not, and the key is not even looked at (`limits.auth_lockout_secs`).
        if credentials.is_some() && route.needs_auth() {
            if let Err(refused) = worker.limiter.check_lockout(peer) {
                return refusal_response(worker, &refused, route);
            }
        }
        let authenticated = match (bearer, api_key) {
            (None, Some(key)) => snap.keys.authenticate_api_key_memo(key, auth_memo),
            _ => snap.keys.authenticate_header_memo(bearer, auth_memo),
        };
        match authenticated {
            Ok(id) => Some(id),
            // A WebSocket upgrade without `Authorization` authenticates by its first frame.
            Err(_) if route == Route::WebSocket && credentials.is_none() => None,
            Err(e) if route.needs_auth() => {
                // A refused key counts towards its IP's lockout and `limits.ip_rpm`; a
                // missing one only against `ip_rpm`. Guessing gets 429.
                let counted = match credentials {
                    Some(_) => worker.limiter.auth_failed(peer),
                    None => worker.limiter.check_unauthenticated(peer),
                };
                return match counted {
                    Ok(quota) => {
                        let mut resp = error_response(&e, route.error_shape());
                        add_quota_headers(&mut resp, worker.limiter.headers(&quota));
                        resp
                    }
                    Err(refused) => refusal_response(worker, &refused, route),
                };
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
                Err(refused) => return refusal_response(worker, &refused, route),
            }
        }
        _ => None,
    };
    // Webhooks answer in their own way (platform shapes), and check nesting after
    // their signature.
    match route {
        Route::Webhook(name) => return crate::webhook::receive(worker, snap, req, name).await,
        Route::WebhookVerify(name) => return crate::webhook::subscribe(worker, snap, req, name),
        // On the main listener unless `[metrics] listen` gives it its own.
        Route::Metrics if snap.config.metrics.enabled && snap.config.metrics.listen.is_none() => {
            return crate::metrics::serve(worker, who.as_ref(), false, req.header("accept"))
                .await
                .unwrap_or_else(|e| error_response(&e, ErrorShape::Gateway));
        }
        Route::Metrics => return error_response(&ApiError::not_found(), ErrorShape::Gateway),
        _ => {}
    }
    let key_name = who.as_ref().map(|w| w.name.clone());
    let result = match check_body_depth(route, req) {
        Err(e) => Err(e),
        Ok(()) if route == Route::WebSocket => crate::ws::upgrade(req, worker, who),
        Ok(()) => api::handle(&Ctx { worker, snap, req, request_id }, route, who).await,
    };
    let mut resp = result.unwrap_or_else(|e| error_response(&e, route.error_shape()));
    resp.log.route = route.label();
    resp.log.route_slot = Some(route.index());
    resp.log.key = key_name;
    if let Some(quota) = &quota {
        add_quota_headers(&mut resp, worker.limiter.headers(quota));
    }
    resp
}

/// Serves a request on the `[metrics] listen` address: `GET /metrics` (open), the
/// health probes, 404 for the rest.
pub async fn metrics_door(worker: &Rc<Worker>, snap: &Arc<Snapshot>, req: &Request) -> Response {
    let path = req.path();
    let result = match router::route(req.method, path) {
        Ok(Route::Metrics) if snap.config.metrics.enabled => {
            crate::metrics::serve(worker, None, true, req.header("accept")).await
        }
        Ok(route @ (Route::Health | Route::HealthLive | Route::HealthReady)) => {
            let ctx = Ctx { worker, snap, req, request_id: "" };
            api::handle(&ctx, route, None).await
        }
        Ok(_) => Err(ApiError::not_found()),
        Err(e) => Err(e),
    };
    result.unwrap_or_else(|e| error_response(&e, ErrorShape::Gateway))
}

/// A limiter's `429`, with the refusing limit's `X-RateLimit-*` headers.
fn refusal_response(worker: &Worker, refused: &Refused, route: Route<'_>) -> Response {
    crate::stats::WorkerStats::add(&worker.stats().ratelimited_requests, 1);
    let mut resp = error_response(&refused.error, route.error_shape());
    add_quota_headers(&mut resp, worker.limiter.headers(&refused.quota));
    resp
}

/// Refuses a request body that nests deeper than `server.max_json_depth` before any
/// handler parses it (`json`; sonic-rs recurses): every HTTP body passes here,
/// whatever its route. Webhooks are the exception: they verify their signature over
/// the raw bytes first, and parse through `json` after.
fn check_body_depth(route: Route<'_>, req: &Request) -> Result<(), ApiError> {
    if req.body.is_empty() || matches!(route, Route::Webhook(_) | Route::WebhookVerify(_)) {
        return Ok(());
    }
    crate::json::check_depth(&req.body, crate::json::max_depth()).map_err(|e| ApiError::invalid(e.first_line()))
}
