//! Per-worker counters (`WorkerStats`): requests (by route and status, with latency
//! histograms), connections, WebSockets, tokens (by model and key), failed
//! authentications, lockouts and rate-limit refusals.
//! Each worker writes only its own (relaxed atomics, padded to a cache line so no two
//! workers share one); `/api/status`, `/health/detailed`, WebSocket `status` events
//! and a `/metrics` scrape sum them. Layer 0: anything may count, nothing here imports the gateway.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One worker's counters. Written only by that worker; padded to a cache line so
/// workers never share one.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct WorkerStats {
    pub requests: AtomicU64,
    pub connections: AtomicU64,
    pub in_flight: AtomicU64,
    pub ws_clients: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub rejected_connections: AtomicU64,
    /// Requests and WebSocket `auth` frames whose credentials were refused (counted by
    /// `ratelimit::Limiter::auth_failed`; a missing key is not a failure).
    pub auth_failures: AtomicU64,
    /// Lockouts begun: a client IP passed `limits.auth_failures_per_minute` (counted
    /// once per lockout, by the worker that saw the last failure).
    pub auth_lockouts: AtomicU64,
    pub sessions: Arc<AtomicUsize>,
    /// Requests refused by a request quota (a key's, an address's, WebSocket connects).
    pub ratelimited_requests: AtomicU64,
    /// Turns refused or cut by a token quota.
    pub ratelimited_tokens: AtomicU64,
    /// TLS handshakes on the listener by outcome (`TLS_OUTCOMES` order): completed,
    /// failed (a protocol or certificate error, the peer gone), timed out, plain HTTP
    /// sent to the TLS port.
    pub tls_handshakes: [AtomicU64; 4],
    /// Requests by route and status, latency by route (`/metrics`).
    pub http: HttpCells,
    /// Tokens by model and key (`/metrics`).
    pub tokens: TokenCells,
}

/// The outcomes of `WorkerStats::tls_handshakes`, as `/metrics` labels them.
pub const TLS_OUTCOMES: [&str; 4] = ["ok", "failed", "timeout", "plain_http"];

impl WorkerStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The process's resident set size in bytes, as last sampled (`set_rss_bytes`, by the
/// main thread every 100 ms from `/proc/self/statm`); 0 before the first sample.
static RSS_BYTES: AtomicU64 = AtomicU64::new(0);

/// Records a new RSS sample.
pub fn set_rss_bytes(bytes: u64) {
    RSS_BYTES.store(bytes, Ordering::Relaxed);
}

/// The last RSS sample, in bytes.
pub fn rss_bytes() -> u64 {
    RSS_BYTES.load(Ordering::Relaxed)
}

/// One channel's webhook counters on one worker (`/api/channels` sums the workers').
/// Written only by that worker, like `WorkerStats`.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct ChannelCounters {
    /// Verified deliveries (each message of a WhatsApp batch counts once).
    pub received: AtomicU64,
    /// Deliveries already spooled (platform retries, Slack's mention twins).
    pub duplicates: AtomicU64,
    /// Refused signatures or secrets (401, nothing stored).
    pub rejected: AtomicU64,
    /// Verified but unreadable deliveries (acknowledged, logged, dropped).
    pub dropped: AtomicU64,
    /// Platform chatter acknowledged and ignored (edits, statuses, bot messages).
    pub ignored: AtomicU64,
    /// Turns run for deliveries (answered by the model).
    pub turns: AtomicU64,
    /// Deliveries answered with an error notice after their turn failed for good.
    pub turn_failures: AtomicU64,
    /// Reply parts the platform accepted.
    pub replies_sent: AtomicU64,
    /// Sends that will be tried again (429, 5xx, transport errors).
    pub retries: AtomicU64,
    /// Reply parts given up on.
    pub dead_letters: AtomicU64,
    /// The last delivery received, in ms since the Unix epoch (0: none yet).
    pub last_event_ms: AtomicU64,
}

/// Upper bounds, in seconds, of the latency histograms' buckets (`+Inf` follows).
pub const LATENCY_BUCKETS: [f64; 15] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Adds `n` to a counter only its own worker writes: a relaxed load and store, no
/// locked read-modify-write (a scrape on another thread only reads).
fn bump(cell: &AtomicU64, n: u64) {
    cell.store(cell.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// A latency histogram written by one worker (relaxed atomics; a scrape reads them).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per-bucket (not cumulative) counts, `LATENCY_BUCKETS` then `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// A histogram's counts as read at one moment; `merge` adds another worker's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Per-bucket counts, `LATENCY_BUCKETS` then `+Inf`.
    pub buckets: Vec<u64>,
    pub sum_secs: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&self, took: std::time::Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let secs = us as f64 / 1e6;
        let i = LATENCY_BUCKETS.iter().position(|b| secs <= *b).unwrap_or(LATENCY_BUCKETS.len());
        bump(&self.buckets[i], 1);
        bump(&self.sum_us, us);
        bump(&self.count, 1);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect(),
            sum_secs: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

impl HistogramSnapshot {
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum_secs += other.sum_secs;
        self.count += other.count;
    }
}

/// The HTTP statuses counted apart in `clawgate_http_requests_total`; any other is
/// counted under its class (`2xx`, `4xx`, ...).
pub const STATUSES: [u16; 20] =
    [101, 200, 201, 204, 304, 400, 401, 403, 404, 405, 408, 413, 422, 429, 431, 500, 501, 502, 503, 504];
/// Status label slots: `STATUSES`, then the classes 1xx..5xx.
pub const STATUS_SLOTS: usize = STATUSES.len() + 5;

/// The label of status slot `i`.
pub fn status_label(i: usize) -> String {
    match STATUSES.get(i) {
        Some(s) => s.to_string(),
        None => format!("{}xx", i - STATUSES.len() + 1),
    }
}

fn status_slot(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|s| *s == status)
        .unwrap_or_else(|| STATUSES.len() + usize::from(status / 100).clamp(1, 5) - 1)
}

/// One worker's request counters and latency histograms by route (`route` is an index
/// into the router's `ROUTE_LABELS`) and status.
#[derive(Debug)]
pub struct HttpCells {
    requests: Box<[[AtomicU64; STATUS_SLOTS]]>,
    latency: Box<[Histogram]>,
}

impl HttpCells {
    /// Cells for `routes` route labels.
    pub fn new(routes: usize) -> Self {
        HttpCells {
            requests: (0..routes).map(|_| std::array::from_fn(|_| AtomicU64::new(0))).collect(),
            latency: (0..routes).map(|_| Histogram::default()).collect(),
        }
    }

    /// Counts one answered request.
    pub fn observe(&self, route: usize, status: u16, took: std::time::Duration) {
        if let (Some(row), Some(h)) = (self.requests.get(route), self.latency.get(route)) {
            bump(&row[status_slot(status)], 1);
            h.observe(took);
        }
    }

    /// (route, status slot, count) of every non-zero counter.
    pub fn requests(&self) -> Vec<(usize, usize, u64)> {
        let mut out = Vec::new();
        for (r, row) in self.requests.iter().enumerate() {
            for (s, c) in row.iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n > 0 {
                    out.push((r, s, n));
                }
            }
        }
        out
    }

    /// The latency histogram of each route that saw a request.
    pub fn latency(&self) -> Vec<(usize, HistogramSnapshot)> {
        self.latency.iter().enumerate().map(|(r, h)| (r, h.snapshot())).filter(|(_, s)| s.count > 0).collect()
    }
}

/// Tokens counted per model and key name on one worker: (prompt, completion). Written
/// by its worker once per turn (an uncontended lock, no allocation once both names were
/// seen), read by a scrape.
#[derive(Debug, Default)]
pub struct TokenCells(Mutex<HashMap<String, KeyTokens>>);

/// One model's (prompt, completion) tokens by key name.
type KeyTokens = HashMap<String, (u64, u64)>;

impl TokenCells {
    pub fn add(&self, model: &str, key: &str, prompt: u64, completion: u64) {
        if prompt == 0 && completion == 0 {
            return;
        }
        let Ok(mut map) = self.0.lock() else { return };
        if !map.contains_key(model) {
            map.insert(model.to_string(), HashMap::new());
        }
        let Some(keys) = map.get_mut(model) else { return };
        match keys.get_mut(key) {
            Some(e) => {
                e.0 += prompt;
                e.1 += completion;
            }
            None => {
                keys.insert(key.to_string(), (prompt, completion));
            }
        }
    }

    /// ((model, key), (prompt, completion)) of every pair seen.
    pub fn snapshot(&self) -> Vec<((String, String), (u64, u64))> {
        let Ok(map) = self.0.lock() else { return Vec::new() };
        map.iter().flat_map(|(m, keys)| keys.iter().map(move |(k, v)| ((m.clone(), k.clone()), *v))).collect()
    }
}

/// Route label slots of `HttpCells` in `WorkerStats` (the router's `ROUTE_LABELS` fit).
pub const MAX_ROUTES: usize = 32;

impl Default for HttpCells {
    fn default() -> Self {
        HttpCells::new(MAX_ROUTES)
    }
}
