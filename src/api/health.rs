//! `/health` (liveness for load balancers: `ok`, or 503 `draining` during shutdown) and
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
    state: &'static str,
    latency_ms_p50: Option<f64>,
    error_rate: f64,
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
            Some(w) if !w.is_admin() => {
                return Err(ApiError::new(ErrorCode::Forbidden, "an admin key is required"))
            }
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
    let providers = cfg
        .providers
        .iter()
        .map(|p| ProviderView { name: &p.name, kind: p.kind.as_str(), state: "up", latency_ms_p50: None, error_rate: 0.0 })
        .collect();
    let channels = cfg
        .channels
        .iter()
        .map(|c| ChannelView { name: &c.name, kind: c.kind.as_str(), enabled: c.enabled, last_event: None })
        .collect();
    let draining = shared.draining();
    let mut resp = ok(&Detailed {
        status: if draining { "draining" } else { "ok" },
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: shared.started.elapsed().as_secs(),
        io_driver: shared.io_driver,
        workers,
        providers,
        channels,
        memory: Memory { rss_bytes: shared.rss_bytes.load(std::sync::atomic::Ordering::Relaxed) },
    })?;
    if draining {
        resp.status = 503;
    }
    Ok(resp)
}
