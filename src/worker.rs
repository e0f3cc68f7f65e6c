//! Per-core state. A `Worker` is built on its own thread inside its monoio runtime and
//! shared by that core's tasks through `Rc`: the config snapshot new connections
//! start from, the provider instances (and later their pools), the session hub, and
//! this core's counters. `Shared` is the only process-wide part: counters each written
//! by one worker and read by `/api/status` (atomics, relaxed; a status read may be a
//! moment stale, which is fine), the drain flag and the RSS sampled off the workers.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::auth::KeyStore;
use crate::config::Config;
use crate::provider::Providers;
use crate::session::SessionHub;

/// A config and what is derived from it, swapped as a whole on reload.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    pub keys: KeyStore,
}

impl Snapshot {
    pub fn new(config: Arc<Config>) -> Self {
        let keys = KeyStore::new(&config);
        Snapshot { config, keys }
    }
}

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

/// Process-wide facts and counters.
#[derive(Debug)]
pub struct Shared {
    pub started: Instant,
    pub io_driver: &'static str,
    pub workers: Box<[WorkerStats]>,
    pub draining: AtomicBool,
    /// Resident set size in bytes, sampled once a second by the main thread.
    pub rss_bytes: AtomicU64,
}

impl Shared {
    pub fn new(workers: usize, io_driver: &'static str) -> Self {
        Shared {
            started: Instant::now(),
            io_driver,
            workers: (0..workers).map(|_| WorkerStats::default()).collect(),
            draining: AtomicBool::new(false),
            rss_bytes: AtomicU64::new(0),
        }
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Sum of one counter over all workers.
    pub fn total(&self, pick: impl Fn(&WorkerStats) -> &AtomicU64) -> u64 {
        self.workers.iter().map(|w| WorkerStats::get(pick(w))).sum()
    }

    pub fn sessions(&self) -> usize {
        self.workers.iter().map(|w| w.sessions.load(Ordering::Relaxed)).sum()
    }
}

/// One core's state.
pub struct Worker {
    pub id: usize,
    pub snapshot: RefCell<Arc<Snapshot>>,
    pub shared: Arc<Shared>,
    pub sessions: SessionHub,
    pub providers: RefCell<Rc<Providers>>,
    request_seq: Cell<u64>,
    request_prefix: u32,
}

impl Worker {
    pub fn new(id: usize, snapshot: Arc<Snapshot>, shared: Arc<Shared>, sessions: SessionHub) -> Self {
        let providers = Rc::new(Providers::new(&snapshot.config));
        Worker {
            id,
            snapshot: RefCell::new(snapshot),
            shared,
            sessions,
            providers: RefCell::new(providers),
            request_seq: Cell::new(0),
            request_prefix: fastrand::u32(..),
        }
    }

    pub fn stats(&self) -> &WorkerStats {
        // `id` is always < workers.len(): both come from the same count.
        &self.shared.workers[self.id.min(self.shared.workers.len() - 1)]
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    pub fn providers(&self) -> Rc<Providers> {
        self.providers.borrow().clone()
    }

    /// A new request id: unique per process run (random worker prefix + counter).
    pub fn next_request_id(&self) -> String {
        let n = self.request_seq.get() + 1;
        self.request_seq.set(n);
        format!("req_{:08x}{:02x}{:010x}", self.request_prefix, self.id as u8, n)
    }
}
