//! Read-only views of the gateway: `/api/status` (version, uptime, io driver,
//! workers, totals, the models' front doors), `/api/models` (the catalogue, with the
//! front doors each model serves, `api::native::FrontDoors`) and `/api/channels`.

use serde::Serialize;

use crate::api::native::{front_doors, FrontDoors};
use crate::api::{ok, Ctx};
use crate::auth::Identity;
use crate::clock;
use crate::error::ApiError;
use crate::http::Response;
use crate::stats::ChannelCounters;
use crate::store::{self, QueueCounts};
use std::sync::atomic::AtomicU64;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status<'a> {
    version: &'static str,
    uptime_secs: u64,
    io_driver: &'static str,
    workers: usize,
    user: String,
    totals: Totals,
    /// The session store: backend, state, size, queue, commits (`store::StoreStatus`).
    store: crate::store::StoreStatus,
    /// Each model and the front doors it serves.
    models: Vec<ModelDoors<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelDoors<'a> {
    id: &'a str,
    front_doors: FrontDoors,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Totals {
    requests: u64,
    active_connections: u64,
    web_socket_clients: u64,
    sessions: usize,
    prompt_tokens: u64,
    completion_tokens: u64,
    tokens: u64,
}

pub fn status(ctx: &Ctx<'_>, who: &Identity) -> Result<Response, ApiError> {
    let s = &ctx.worker.shared;
    let prompt = s.total(|w| &w.prompt_tokens);
    let completion = s.total(|w| &w.completion_tokens);
    ok(&Status {
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: s.started.elapsed().as_secs(),
        io_driver: s.io_driver,
        workers: s.workers.len(),
        user: who.name.to_string(),
        totals: Totals {
            requests: s.total(|w| &w.requests),
            active_connections: s.total(|w| &w.connections),
            web_socket_clients: s.total(|w| &w.ws_clients),
            sessions: s.sessions(),
            prompt_tokens: prompt,
            completion_tokens: completion,
            tokens: prompt + completion,
        },
        store: {
            // Where the file is, for admins only.
            let mut st = ctx.worker.turns.sessions.store().status();
            if !who.is_admin() {
                st.path = None;
            }
            st
        },
        models: ctx
            .snap
            .config
            .models
            .iter()
            .map(|m| ModelDoors { id: &m.id, front_doors: front_doors(ctx, m) })
            .collect(),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelView<'a> {
    id: &'a str,
    provider: &'a str,
    upstream_model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    context_window: Option<u32>,
    default: bool,
    front_doors: FrontDoors,
}

pub fn models(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let cfg = &ctx.snap.config;
    let default_id = cfg.default_model().id.as_str();
    let list: Vec<_> = cfg
        .models
        .iter()
        .map(|m| ModelView {
            id: &m.id,
            provider: &m.provider,
            upstream_model: &m.upstream,
            context_window: m.context_window,
            default: m.id == default_id,
            front_doors: front_doors(ctx, m),
        })
        .collect();
    ok(&list)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChannelView<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    enabled: bool,
    webhook_path: Option<&'a str>,
    model: Option<&'a str>,
    stats: ChannelStats,
}

/// A channel's webhook counters (summed over the workers, since the start) and what
/// waits in its spool and outbox (from the store).
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct ChannelStats {
    /// Verified messages received.
    received: u64,
    /// Deliveries answered by a turn.
    processed: u64,
    /// Deliveries whose turn failed for good (answered with a notice).
    failed: u64,
    duplicates: u64,
    /// Refused signatures or secrets.
    rejected: u64,
    /// Verified but unreadable deliveries (acknowledged and dropped).
    dropped: u64,
    /// Chatter acknowledged and ignored (edits, statuses, bot messages).
    ignored: u64,
    replies_sent: u64,
    retries: u64,
    /// Reply parts given up on since the start (`queues.deadLetters`: all kept).
    dead_letters: u64,
    /// The last delivery, RFC 3339 (`null`: none since the start).
    last_event_at: Option<String>,
    /// Spooled deliveries not answered yet, reply parts waiting, dead letters kept.
    queues: QueueCounts,
}

pub async fn channels(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let cfg = &ctx.snap.config;
    let store = ctx.worker.turns.sessions.store().clone();
    let mut queues = if cfg.channels.is_empty() {
        Default::default()
    } else {
        store::ask(|done| store.queue_counts(done)).await.map_err(|e| e.to_api())?
    };
    let shared = &ctx.worker.shared;
    let mut stats_of = |name: &str| {
        let total = |pick: fn(&ChannelCounters) -> &AtomicU64| shared.channel_total(name, pick);
        let last = shared.channel_last_event_ms(name);
        ChannelStats {
            received: total(|c| &c.received),
            processed: total(|c| &c.turns),
            failed: total(|c| &c.turn_failures),
            duplicates: total(|c| &c.duplicates),
            rejected: total(|c| &c.rejected),
            dropped: total(|c| &c.dropped),
            ignored: total(|c| &c.ignored),
            replies_sent: total(|c| &c.replies_sent),
            retries: total(|c| &c.retries),
            dead_letters: total(|c| &c.dead_letters),
            last_event_at: (last > 0).then(|| clock::rfc3339(last / 1000)),
            queues: queues.remove(name).unwrap_or_default(),
        }
    };
    let api = ChannelView {
        name: "api",
        kind: "api",
        enabled: true,
        webhook_path: None,
        model: None,
        stats: ChannelStats::default(),
    };
    let mut list = vec![api];
    for c in &cfg.channels {
        list.push(ChannelView {
            name: &c.name,
            kind: c.kind.as_str(),
            enabled: c.enabled,
            webhook_path: Some(&c.webhook_path),
            model: c.model.as_deref(),
            stats: stats_of(&c.name),
        });
    }
    ok(&list)
}
