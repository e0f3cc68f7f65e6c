//! Channel webhooks (layer 4): the chat platforms' front door, the turns that answer
//! them and the replies' way back (PROTOCOL.md "Channel webhooks").
//!
//! ```text
//! platform --POST /webhooks/<name>--> receive: verify the raw body (channel::verify, 401)
//!   -> depth check, read it (channel::inbound) -> spool each message (store, unique
//!   (channel, key): a duplicate is acknowledged, not spooled) -> 200 once committed
//!   -> each new entry goes to the worker owning its session (Worker::spool_jobs)
//! runner (runner.rs, every worker): the turn (turn::start_turn) -> the reply split at the
//!   platform's limit -> turn + "answered" + outbox parts in one store transaction
//! sender (outbox.rs, worker 0): due outbox parts -> the platform's send API through the
//!   gateway's upstream client -> sent | retry at (backoff, Retry-After) | dead letter
//! after a restart: worker 0 sweeps the spool for unanswered deliveries; the sender
//!   finds the outbox where it was
//! ```
//!
//! Exactly once: a delivery is acknowledged only once stored; it is answered once
//! (the turn's commit marks it answered, and a replay adds nothing); a reply part is
//! sent until the platform accepted it. The one window: a crash after the platform
//! accepted a part and before its `sent` mark commits sends that part again on restart
//! (no send API takes an idempotency key).

mod outbox;
mod runner;

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Serialize;

use crate::api::{error_response, ok};
use crate::channel::{self, Inbound, Incoming};
use crate::clock;
use crate::config::{ChannelConfig, ChannelKind, SessionScope};
use crate::error::{ApiError, ErrorCode, ErrorShape};
use crate::http::{Request, Response};
use crate::log;
use crate::session;
use crate::stats::WorkerStats;
use crate::store::{self, Delivery, SpoolEntry, Spooled, StoreError};
use crate::worker::{Snapshot, Worker};

pub use outbox::send_loop;
pub use runner::{run as run_spool, sweep_loop};

/// What a verified delivery's `200` says (the gateway envelope; Discord gets its
/// interaction response instead).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Receipt {
    /// Messages spooled for a turn.
    accepted: usize,
    /// Messages already spooled before (not processed again).
    duplicates: usize,
    /// What the delivery was, when it carried no message to answer (chatter).
    #[serde(skip_serializing_if = "Option::is_none")]
    ignored: Option<&'static str>,
    /// Why a verified delivery could not be read (acknowledged all the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped: Option<String>,
}

/// `POST /webhooks/<name>`: verifies, spools and acknowledges one delivery. Never
/// fails without a response: errors are in the gateway envelope (401 for a refused
/// signature, 404 for an unknown or disabled channel, 400 for nesting past the limit,
/// 503 with `Retry-After` when the spool cannot be written: the platform retries).
pub async fn receive(worker: &Rc<Worker>, snap: &Arc<Snapshot>, req: &Request, name: &str) -> Response {
    match receive_inner(worker, snap, req, name).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e, ErrorShape::Gateway),
    }
}

async fn receive_inner(
    worker: &Rc<Worker>,
    snap: &Arc<Snapshot>,
    req: &Request,
    name: &str,
) -> Result<Response, ApiError> {
    let ch = enabled_channel(snap, name)?;
    let stats = worker.channel_stats(&ch.name);
    let body = &req.body[..];
    if let Err(refusal) = channel::verify(ch, &|h| req.header_bytes(h), body, clock::now_unix()) {
        WorkerStats::add(&stats.rejected, 1);
        log::warn(&format!(
            "webhook {}: refused a delivery from {}: {refusal}",
            ch.name,
            req.peer.map_or_else(|| "?".to_string(), |p| p.ip().to_string())
        ));
        return Err(ApiError::new(ErrorCode::Unauthorized, format!("webhook verification failed: {refusal}")));
    }
    stats.last_event_ms.store(clock::now_unix_ms(), Ordering::Relaxed);
    crate::json::check_depth(body, crate::json::max_depth()).map_err(|e| ApiError::invalid(e.first_line()))?;
    let messages = match channel::inbound::parse(ch, body) {
        Ok(Inbound::Answer(json)) => return Ok(Response::json(200, json)),
        Ok(Inbound::Ignored(what)) => {
            WorkerStats::add(&stats.ignored, 1);
            log::debug(&format!("webhook {}: ignored {what}", ch.name));
            return ok(&Receipt { accepted: 0, duplicates: 0, ignored: Some(what), dropped: None });
        }
        Err(unreadable) => {
            // A genuine sender retries anything but a 2xx forever: acknowledge, count, log.
            WorkerStats::add(&stats.dropped, 1);
            log::warn(&format!("webhook {}: dropped a verified delivery: {unreadable}", ch.name));
            return ok(&Receipt { accepted: 0, duplicates: 0, ignored: None, dropped: Some(unreadable.to_string()) });
        }
        Ok(Inbound::Messages(m)) => m,
    };
    WorkerStats::add(&stats.received, messages.len() as u64);
    let now = clock::now_unix_ms();
    let deliveries: Vec<Delivery> = messages.into_iter().map(|m| delivery(ch, m, now)).collect();
    let results = spool_all(worker, &deliveries).await;
    let (mut accepted, mut duplicates) = (0, 0);
    let mut failure: Option<StoreError> = None;
    for (d, r) in deliveries.into_iter().zip(results) {
        match r {
            Ok(Spooled::New(id)) => {
                accepted += 1;
                let owner = session::owner_of(&d.session, worker.spool_jobs.workers());
                let _ = worker.spool_jobs.send(owner, SpoolEntry { id, delivery: d });
            }
            Ok(Spooled::Duplicate) => duplicates += 1,
            Err(e) => failure = Some(e),
        }
    }
    WorkerStats::add(&stats.duplicates, duplicates as u64);
    if let Some(e) = failure {
        // Not stored, so not acknowledged: the platform delivers it again.
        log::error(&format!("webhook {}: cannot spool a delivery: {e}", ch.name));
        return Err(e.to_api());
    }
    if ch.kind == ChannelKind::Discord {
        // Deferred channel message: the user sees "thinking..." until the reply.
        return Ok(Response::json(200, r#"{"type":5}"#));
    }
    ok(&Receipt { accepted, duplicates, ignored: None, dropped: None })
}

/// `GET /webhooks/<name>`: WhatsApp's subscription handshake. With
/// `hub.mode=subscribe` and the channel's `verify_token`, answers `hub.challenge` as
/// text; a wrong token is 403, another channel type 405.
pub fn subscribe(worker: &Worker, snap: &Arc<Snapshot>, req: &Request, name: &str) -> Response {
    let result = (|| -> Result<Response, ApiError> {
        let ch = enabled_channel(snap, name)?;
        if ch.kind != ChannelKind::WhatsApp {
            return Err(ApiError::method_not_allowed("POST"));
        }
        let (Some(mode), Some(token), Some(challenge)) =
            (req.query_param("hub.mode"), req.query_param("hub.verify_token"), req.query_param("hub.challenge"))
        else {
            return Err(ApiError::invalid("hub.mode, hub.verify_token and hub.challenge are required"));
        };
        let expected = ch.verify_token.as_ref().map(|t| t.expose().as_bytes()).unwrap_or_default();
        let matches = !expected.is_empty() && bool::from(subtle::ConstantTimeEq::ct_eq(token.as_bytes(), expected));
        if mode != "subscribe" || !matches {
            WorkerStats::add(&worker.channel_stats(&ch.name).rejected, 1);
            return Err(ApiError::new(ErrorCode::Forbidden, "hub.verify_token does not match"));
        }
        let mut resp = Response::new(200, crate::http::response::Body::Full(challenge.into_bytes().into()));
        resp.push_header("content-type", "text/plain; charset=utf-8");
        Ok(resp)
    })();
    result.unwrap_or_else(|e| error_response(&e, ErrorShape::Gateway))
}

/// The enabled channel `name`; 404 `NOT_FOUND` otherwise (a disabled channel is not
/// there for the platforms).
fn enabled_channel<'s>(snap: &'s Snapshot, name: &str) -> Result<&'s ChannelConfig, ApiError> {
    snap.config
        .channel(name)
        .filter(|c| c.enabled)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no enabled channel named {name}")))
}

/// Spools every delivery (one store write each, committed together when the store
/// groups them); the results in order.
async fn spool_all(worker: &Worker, deliveries: &[Delivery]) -> Vec<Result<Spooled, StoreError>> {
    let store = worker.turns.sessions.store();
    if let [one] = deliveries {
        return vec![store::ask(|done| store.spool(one.clone(), done)).await];
    }
    let (tx, rx) = flume::bounded(deliveries.len());
    for (i, d) in deliveries.iter().enumerate() {
        let tx = tx.clone();
        store.spool(
            d.clone(),
            Box::new(move |r| {
                let _ = tx.send((i, r));
            }),
        );
    }
    drop(tx);
    let mut out: Vec<Result<Spooled, StoreError>> = (0..deliveries.len()).map(|_| Err(StoreError::Closed)).collect();
    while let Ok((i, r)) = rx.recv_async().await {
        if let Some(slot) = out.get_mut(i) {
            *slot = r;
        }
    }
    out
}

/// The spool record of a message of channel `ch`.
fn delivery(ch: &ChannelConfig, m: Incoming, now_ms: u64) -> Delivery {
    let session = session_id(ch, &m);
    Delivery {
        channel: ch.name.clone(),
        key: m.key,
        session,
        sender: m.user,
        text: m.text,
        reply_to: m.target,
        received_at_ms: now_ms,
    }
}

/// The session of a conversation: `<channel>:<chat id>`, or `<channel>:<chat id>:<user
/// id>` in a group with `session_scope = "user"`. Ids that are not valid session id
/// characters, or too long, are replaced by a hash (`h` + 16 hex digits).
pub fn session_id(ch: &ChannelConfig, m: &Incoming) -> String {
    let per_user = ch.session_scope == SessionScope::User && m.group;
    let conversation = if per_user { format!("{}:{}", m.chat, m.user) } else { m.chat.clone() };
    let id = format!("{}:{conversation}", ch.name);
    if session::validate_id(&id).is_ok() {
        return id;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(conversation.as_bytes());
    let mut hex = String::with_capacity(16);
    for b in &digest[..8] {
        hex.push_str(&format!("{b:02x}"));
    }
    format!("{}:h{hex}", ch.name)
}

#[cfg(test)]
mod tests;
