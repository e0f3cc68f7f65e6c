//! Per-core state. A `Worker` is built on its own thread inside its monoio runtime and
//! shared by that core's tasks through `Rc`: the config snapshot new connections
//! start from, the provider instances (and later their pools), the session hub, and
//! this core's counters. `Shared` is the only process-wide part: counters each written
//! by one worker and read by `/api/status` (atomics, relaxed; a status read may be a
//! moment stale, which is fine), the drain flag and the RSS sampled off the workers.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use std::sync::Mutex;

use crate::auth::KeyStore;
use crate::config::Config;
use crate::peers::Peers;
use crate::provider::resilience::ProviderHealth;
use crate::provider::Providers;
use crate::session::SessionHub;
pub use crate::stats::{ChannelCounters, WorkerStats};
use crate::store::SpoolEntry;
use crate::turn::{Engine, TurnHub};
use crate::upstream::{tls, Client};

/// A config and what is derived from it, swapped as a whole on reload. Built on the
/// main thread (it reads CA files), never on a worker.
pub struct Snapshot {
    pub config: Arc<Config>,
    pub keys: KeyStore,
    /// TLS settings per provider (same order as `config.providers`); `None` for
    /// plain-HTTP and mock providers.
    pub tls: Vec<Option<tls::Connector>>,
    /// TLS settings per channel (same order as `config.channels`) whose replies go to
    /// an `https://` address (`api_base`, or `callback_url` for generic channels).
    pub channel_tls: Vec<Option<tls::Connector>>,
    /// `[server.tls]`: the listener's certificate and key, read from their files when
    /// this snapshot was built (start-up, SIGHUP); `None`: plain TCP.
    pub server_tls: Option<crate::tls::Acceptor>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("config", &self.config).finish()
    }
}

impl Snapshot {
    pub fn new(config: Arc<Config>) -> Result<Self, String> {
        crate::json::set_max_depth(config.server.max_json_depth);
        let keys = KeyStore::new(&config);
        let tls = config
            .providers
            .iter()
            .map(|p| {
                if p.base_url.starts_with("https://") {
                    tls::Connector::new(p.ca_file.as_deref())
                        .map(Some)
                        .map_err(|e| format!("providers.{}: {e}", p.name))
                } else {
                    Ok(None)
                }
            })
            .collect::<Result<_, _>>()?;
        let channel_tls = config
            .channels
            .iter()
            .map(|c| {
                let url = c.callback_url.as_deref().unwrap_or(&c.api_base);
                if url.starts_with("https://") {
                    tls::Connector::new(None).map(Some).map_err(|e| format!("channels.{}: {e}", c.name))
                } else {
                    Ok(None)
                }
            })
            .collect::<Result<_, _>>()?;
        let server_tls = config.server.tls.as_ref().map(crate::tls::Acceptor::load).transpose()?;
        Ok(Snapshot { config, keys, tls, channel_tls, server_tls })
    }
}

/// Process-wide facts and counters.
#[derive(Debug)]
pub struct Shared {
    pub started: Instant,
    /// The same moment in unix seconds (OpenAI's model `created`: one value for the
    /// life of the process, whatever the rounding of later clock reads).
    pub started_unix: u64,
    pub io_driver: &'static str,
    /// Each worker's counters (index = worker id); its turn engine holds its own.
    pub workers: Box<[Arc<WorkerStats>]>,
    /// SIGTERM came: the health probes answer 503, responses close their connections.
    pub draining: AtomicBool,
    /// The drain delay is over: the listener is closed and idle connections close.
    pub closing: AtomicBool,
    /// Resident set size in bytes, sampled once a second by the main thread.
    pub rss_bytes: AtomicU64,
    /// Each worker's health record per provider name. A mutex, not the hot path:
    /// touched when providers are built (start, reload) and by `/health/detailed`.
    pub provider_health: Mutex<Vec<(String, usize, Arc<ProviderHealth>)>>,
    /// Every global rate-limit budget; each worker's `limiter` leases from them.
    pub limits: Arc<crate::ratelimit::Global>,
    /// Webhook counters per (channel name, worker); a worker keeps its own handles
    /// (`Worker::channel_stats`), so the mutex is taken once per channel and worker.
    pub channel_stats: Mutex<Vec<(String, usize, Arc<ChannelCounters>)>>,
    /// Wakes the webhook outbox sender (worker 0) when a reply was queued; holds at
    /// most one wake-up (`try_send`), so a burst of replies costs one query.
    pub outbox_kick: (flume::Sender<()>, flume::Receiver<()>),
}

impl Shared {
    pub fn new(workers: usize, io_driver: &'static str) -> Self {
        Shared {
            started: Instant::now(),
            started_unix: crate::clock::now_unix(),
            io_driver,
            workers: (0..workers).map(|_| Arc::new(WorkerStats::default())).collect(),
            draining: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            rss_bytes: AtomicU64::new(0),
            provider_health: Mutex::new(Vec::new()),
            limits: Arc::new(crate::ratelimit::Global::new(workers, crate::ratelimit::SystemClock::shared())),
            channel_stats: Mutex::new(Vec::new()),
            outbox_kick: flume::bounded(1),
        }
    }

    /// Worker `worker`'s counters for channel `name`, made on first use.
    pub fn channel_counters(&self, name: &str, worker: usize) -> Arc<ChannelCounters> {
        let Ok(mut list) = self.channel_stats.lock() else { return Arc::default() };
        if let Some((_, _, c)) = list.iter().find(|(n, w, _)| n == name && *w == worker) {
            return c.clone();
        }
        let c = Arc::new(ChannelCounters::default());
        list.push((name.to_string(), worker, c.clone()));
        c
    }

    /// The counter `pick` of channel `name`, summed over the workers.
    pub fn channel_total(&self, name: &str, pick: impl Fn(&ChannelCounters) -> &AtomicU64) -> u64 {
        let Ok(list) = self.channel_stats.lock() else { return 0 };
        list.iter().filter(|(n, _, _)| n == name).map(|(_, _, c)| WorkerStats::get(pick(c))).sum()
    }

    /// The latest `last_event_ms` of channel `name` over the workers.
    pub fn channel_last_event_ms(&self, name: &str) -> u64 {
        let Ok(list) = self.channel_stats.lock() else { return 0 };
        list.iter().filter(|(n, _, _)| n == name).map(|(_, _, c)| WorkerStats::get(&c.last_event_ms)).max().unwrap_or(0)
    }

    /// Wakes the outbox sender.
    pub fn kick_outbox(&self) {
        let _ = self.outbox_kick.0.try_send(());
    }

    /// The health record of provider `name` on worker `worker`, made on first use.
    pub fn health_of(&self, name: &str, worker: usize) -> Arc<ProviderHealth> {
        let Ok(mut list) = self.provider_health.lock() else { return Arc::default() };
        if let Some((_, _, h)) = list.iter().find(|(n, w, _)| n == name && *w == worker) {
            return h.clone();
        }
        let h = Arc::new(ProviderHealth::default());
        list.push((name.to_string(), worker, h.clone()));
        h
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Whether idle connections should close now (after `server.drain_delay_ms`).
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Sum of one counter over all workers.
    pub fn total(&self, pick: impl Fn(&WorkerStats) -> &AtomicU64) -> u64 {
        self.workers.iter().map(|w| WorkerStats::get(pick(w))).sum()
    }

    pub fn sessions(&self) -> usize {
        self.workers.iter().map(|w| w.sessions.load(Ordering::Relaxed)).sum()
    }
}

/// `server.upstream_body_budget_mb` in bytes.
fn budget_bytes(cfg: &Config) -> usize {
    usize::try_from(cfg.server.upstream_body_budget_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}

/// Appends the low `digits` hex digits of `v`, zero-padded.
fn push_hex(out: &mut String, v: u64, digits: u32) {
    for i in (0..digits).rev() {
        out.push(char::from(b"0123456789abcdef"[((v >> (i * 4)) & 15) as usize]));
    }
}

/// Long-lived tasks of a worker that must hear of a drain (a WebSocket closes with
/// 1001). Implemented by the front doors that hold such tasks.
pub trait OnDrain {
    fn drain(&self);
}

/// The worker's registry of `OnDrain` tasks, by key; entries are weak, so a task that
/// ended without removing itself costs nothing but its slot until the next drain.
#[derive(Default)]
pub struct DrainList {
    next: Cell<u64>,
    items: RefCell<HashMap<u64, Weak<dyn OnDrain>>>,
}

impl DrainList {
    /// Registers a task; the key removes it.
    pub fn register(&self, item: Weak<dyn OnDrain>) -> u64 {
        let key = self.next.get();
        self.next.set(key + 1);
        self.items.borrow_mut().insert(key, item);
        key
    }

    pub fn remove(&self, key: u64) {
        self.items.borrow_mut().remove(&key);
    }

    /// Tells every registered task that the worker drains.
    pub fn drain_all(&self) {
        let live: Vec<Rc<dyn OnDrain>> = self.items.borrow().values().filter_map(Weak::upgrade).collect();
        for item in live {
            item.drain();
        }
    }
}

/// One core's state.
pub struct Worker {
    pub id: usize,
    pub snapshot: RefCell<Arc<Snapshot>>,
    pub shared: Arc<Shared>,
    /// This core's turn engine: its session hub, providers, resume buffers.
    pub turns: Rc<Engine>,
    /// This core's upstream HTTP client and its keep-alive pools.
    pub client: Rc<Client>,
    /// This core's rate-limit shard (`ratelimit`): checked per request, no locks.
    pub limiter: Rc<crate::ratelimit::Limiter>,
    /// Tasks told when this worker drains (open WebSockets).
    pub on_drain: DrainList,
    /// The webhook runners' mailboxes: a spooled delivery goes to the worker owning its
    /// session (`webhook`).
    pub spool_jobs: Peers<SpoolEntry>,
    /// This worker's webhook counters per channel name (`Shared::channel_counters`).
    channel_stats: RefCell<HashMap<String, Arc<ChannelCounters>>>,
    request_seq: Cell<u64>,
    request_prefix: u32,
}

impl Worker {
    /// Builds worker `id`'s state on its own thread. `sessions`, `resume` and
    /// `spool_jobs` are this worker's doors to the session, resume and webhook-runner
    /// mailboxes (`peers`).
    pub fn new(
        id: usize,
        snapshot: Arc<Snapshot>,
        shared: Arc<Shared>,
        sessions: SessionHub,
        resume: TurnHub,
        spool_jobs: Peers<SpoolEntry>,
    ) -> Self {
        let client = Rc::new(Client::new());
        client.pool().set_budget(budget_bytes(&snapshot.config));
        let providers =
            Providers::new(&snapshot.config.providers, &snapshot.tls, &client, |name| shared.health_of(name, id));
        let stats = shared.workers.get(id).cloned().unwrap_or_default();
        let limiter = Rc::new(
            crate::ratelimit::Limiter::new(id, shared.limits.clone(), &snapshot.config).with_stats(stats.clone()),
        );
        let turns = Rc::new(Engine::new(sessions, limiter.clone(), stats, resume, providers));
        Worker {
            id,
            snapshot: RefCell::new(snapshot),
            shared,
            turns,
            client,
            limiter,
            on_drain: DrainList::default(),
            spool_jobs,
            channel_stats: RefCell::default(),
            request_seq: Cell::new(0),
            request_prefix: fastrand::u32(..),
        }
    }

    pub fn stats(&self) -> &WorkerStats {
        // `id` is always < workers.len(): both come from the same count.
        &self.shared.workers[self.id.min(self.shared.workers.len() - 1)]
    }

    /// This worker's counters for channel `name`.
    pub fn channel_stats(&self, name: &str) -> Arc<ChannelCounters> {
        if let Some(c) = self.channel_stats.borrow().get(name) {
            return c.clone();
        }
        let c = self.shared.channel_counters(name, self.id);
        self.channel_stats.borrow_mut().insert(name.to_string(), c.clone());
        c
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    pub fn providers(&self) -> Rc<Providers> {
        self.turns.providers()
    }

    /// Installs a reloaded config for new connections and rebuilds the providers
    /// (their pools live in `client` and survive).
    pub fn reload(&self, snap: Arc<Snapshot>) {
        let providers = Providers::new(&snap.config.providers, &snap.tls, &self.client, |name| {
            self.shared.health_of(name, self.id)
        });
        self.turns.set_providers(providers);
        // New limits apply before the first request on the new snapshot.
        self.limiter.reload(&snap.config);
        self.client.pool().set_budget(budget_bytes(&snap.config));
        *self.snapshot.borrow_mut() = snap;
    }

    /// A new request id: unique per process run (random worker prefix + counter).
    pub fn next_request_id(&self) -> String {
        let n = self.request_seq.get() + 1;
        self.request_seq.set(n);
        // `req_` + 8 + 2 + 10 hex digits, written by hand (this runs on every request).
        let mut id = String::with_capacity(24);
        id.push_str("req_");
        push_hex(&mut id, u64::from(self.request_prefix), 8);
        push_hex(&mut id, self.id as u64 & 0xff, 2);
        push_hex(&mut id, n, 10);
        id
    }
}
