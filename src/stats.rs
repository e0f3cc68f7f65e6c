//! Per-worker counters (`WorkerStats`): requests, connections, WebSockets, tokens.
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
