//! `/health` and `/health/live` (liveness for load balancers: `ok`, or 503 `draining`
//! during shutdown), `/health/ready` (readiness: store and providers) and
//! `/health/detailed` (workers, providers, channels, memory), which config can restrict
//! to admin keys.

use serde::Serialize;

use crate::api::{ok, Ctx};
use crate::auth::Identity;
use crate::error::{ApiError, ErrorCode};
use crate::http::Response;
use crate::worker::WorkerStats;

const OK: &[u8] = br#"{"status":"ok"}"#;
const DRAINING: &[u8] = br#"{"status":"draining"}"#;

/// `GET /health/ready` (PROTOCOL.md "Health"): 200 `{"status":"ready"}` when the
/// config is loaded (it is: this worker answers with it), the store takes writes (not
/// `degraded`) and at least one provider is not `down`; otherwise 503
/// `{"status":"not_ready","reasons":[..]}`; 503 `{"status":"draining"}` during a drain.
pub fn ready(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let shared = &ctx.worker.shared;
    if shared.draining() {
        return Ok(Response::json(503, DRAINING));
    }
    let mut reasons = Vec::new();
    let store = ctx.worker.turns.sessions.store().status();
    if store.state != "ok" {
        reasons.push(format!(
            "store {} is {}: {}",
            store.backend,
            store.state,
            store.last_error.as_deref().unwrap_or("writes fail")
        ));
    }
    let providers = &ctx.snap.config.providers;
    let down: Vec<&str> = providers
        .iter()
        .filter(|p| provider_view(shared, &p.name, p.kind.as_str()).state == "down")
        .map(|p| p.name.as_str())
        .collect();
    if !providers.is_empty() && down.len() == providers.len() {
        reasons.push(format!("every provider is down: {}", down.join(", ")));
    }
    #[derive(Serialize)]
    struct NotReady {
        status: &'static str,
        reasons: Vec<String>,
    }
    if reasons.is_empty() {
        return Ok(Response::json(200, &br#"{"status":"ready"}"#[..]));
    }
    let body = sonic_rs::to_vec(&NotReady { status: "not_ready", reasons })
        .map_err(|e| ApiError::internal(format!("cannot render readiness: {e}")))?;
    Ok(Response::json(503, body))
}

pub fn health(ctx: &Ctx<'_>) -> Response {
    if ctx.worker.shared.draining() {
        Response::json(503, DRAINING)
    } else {
        Response::json(200, OK)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Detailed<'a> {
    status: &'static str,
    version: &'static str,
    uptime_secs: u64,
    io_driver: &'static str,
    workers: Vec<WorkerView>,
    providers: Vec<ProviderView<'a>>,
    channels: Vec<ChannelView<'a>>,
    memory: Memory,
    /// The session store (`store::StoreStatus`); `degraded` also sets `status`.
    store: crate::store::StoreStatus,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WorkerView {
    id: usize,
    connections: u64,
    in_flight: u64,
    websockets: u64,
    sessions: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProviderView<'a> {
    name: &'a str,
    kind: &'static str,
    /// `down` when every worker's breaker is open, `degraded` when some are open or
    /// probing or errors are frequent, else `up`.
    state: &'static str,
    /// Recent (exponentially weighted) time to the response head, averaged over workers.
    latency_ms: Option<f64>,
    /// Recent (exponentially weighted) share of failed calls, averaged over workers.
    error_rate: f64,
    requests: u64,
    errors: u64,
}

fn provider_view<'a>(shared: &crate::worker::Shared, name: &'a str, kind: &'static str) -> ProviderView<'a> {
    use std::sync::atomic::Ordering::Relaxed;
    let records: Vec<_> = match shared.provider_health.lock() {
        Ok(list) => list.iter().filter(|(n, _, _)| n == name).map(|(_, _, h)| h.clone()).collect(),
        Err(_) => Vec::new(),
    };
    let n = records.len().max(1) as f64;
    let down = records.iter().filter(|h| h.state_code() == 2).count();
    let degraded = records.iter().filter(|h| h.state_code() == 1).count();
    let state = match (down, degraded) {
        (d, _) if d > 0 && d == records.len() => "down",
        (0, 0) => "up",
        _ => "degraded",
    };
    let latencies: Vec<f64> = records.iter().filter_map(|h| h.latency_ms()).collect();
    ProviderView {
        name,
        kind,
        state,
        latency_ms: (!latencies.is_empty()).then(|| latencies.iter().sum::<f64>() / latencies.len() as f64),
        error_rate: records.iter().map(|h| h.error_rate()).sum::<f64>() / n,
        requests: records.iter().map(|h| h.requests.load(Relaxed)).sum(),
        errors: records.iter().map(|h| h.errors.load(Relaxed)).sum(),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChannelView<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    enabled: bool,
    last_event: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Memory {
    rss_bytes: u64,
}

pub fn detailed(ctx: &Ctx<'_>, who: Option<&Identity>) -> Result<Response, ApiError> {
    let cfg = &ctx.snap.config;
    if cfg.server.health_detailed_admin_only {
        match who {
            None => return Err(ApiError::new(ErrorCode::Unauthorized, "an admin key is required")),
            Some(w) if !w.is_admin() => return Err(ApiError::new(ErrorCode::Forbidden, "an admin key is required")),
            Some(_) => {}
        }
    }
    let shared = &ctx.worker.shared;
    let workers = shared
        .workers
        .iter()
        .enumerate()
        .map(|(id, w)| WorkerView {
            id,
            connections: WorkerStats::get(&w.connections),
            in_flight: WorkerStats::get(&w.in_flight),
            websockets: WorkerStats::get(&w.ws_clients),
            sessions: w.sessions.load(std::sync::atomic::Ordering::Relaxed),
        })
        .collect();
    let providers = cfg.providers.iter().map(|p| provider_view(shared, &p.name, p.kind.as_str())).collect();
    let channels = cfg
        .channels
        .iter()
        .map(|c| ChannelView { name: &c.name, kind: c.kind.as_str(), enabled: c.enabled, last_event: None })
        .collect();
    let draining = shared.draining();
    let store = ctx.worker.turns.sessions.store().status();
    let mut resp = ok(&Detailed {
        status: if draining {
            "draining"
        } else if store.state == "degraded" {
            "degraded"
        } else {
            "ok"
        },
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: shared.started.elapsed().as_secs(),
        io_driver: shared.io_driver,
        workers,
        providers,
        channels,
        memory: Memory { rss_bytes: shared.rss_bytes.load(std::sync::atomic::Ordering::Relaxed) },
        store,
    })?;
    if draining {
        resp.status = 503;
    }
    Ok(resp)
}
