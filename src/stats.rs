//! Per-worker counters (`WorkerStats`): requests, connections, WebSockets, tokens,
//! failed authentications and lockouts.
//! Each worker writes only its own (relaxed atomics, padded to a cache line so no two
//! workers share one); `/api/status`, `/health/detailed` and WebSocket `status`
//! events sum them. Layer 0: anything may count, nothing here imports the gateway.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

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
}

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
