//! One core's shard of the limiter: its [`Lease`]s on the global budgets of the
//! current config's keys (a `Vec` indexed like `Config::keys`, so a request finds its
//! lease with one bounds check) and its per-client leases ([`LocalClients`]). Owned by
//! one worker, never shared, so nothing here is atomic or locked; the budgets behind
//! the leases are touched once per lease, not per request.
//!
//! Why the shard is not a `ratelimit::Ratelimiter`: that crate's limiter is a complete
//! token bucket that refills itself, with atomics for sharing between threads. A shard
//! must not refill by itself (refill is global, or every core would grant the whole
//! limit) and is never shared, so all it needs is a count of tokens in hand. The
//! global budget, in turn, needs partial takes (the last tokens of a limit go out one
//! by one), returns of unspent leases, charging usage that already happened (debt) and
//! a remaining count for the headers, none of which `try_wait_n` offers; it is one
//! `AtomicU64` ([`super::budget`]). The crate is used where a self-refilling bucket is
//! exactly right: the per-socket WebSocket message limit ([`super::socket`]).
//!
//! Every call takes `now` from the caller, so tests drive the shard with a manual
//! clock. Costs: a request on a fresh lease is a `Vec` index, a compare and a
//! subtraction, plus a few integer operations for the headers' remaining count:
//! ~13 ns per check with the clock read, against ~31 ns for one `Mutex<HashMap>` of
//! buckets on one thread (`benches/limiter.rs`).

#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::sync::Arc;

use super::budget::{Budget, Shortfall};
use super::clients::{LocalClients, REGISTRY_SHARDS};
use super::lease::Lease;
use super::lockout::LockoutRegistry;
use super::registry::{Global, Table};
use crate::config::Config;

/// What `X-RateLimit-*` shows for one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The limit, per minute.
    pub limit: u64,
    /// What is left (this core's estimate).
    pub remaining: u64,
    /// When the budget is full again, on the limiter clock.
    pub reset_ns: u64,
}

/// A refusal: the window (remaining 0) and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    pub window: Window,
    pub retry_after_secs: u64,
}

/// The outcome of a check.
pub type Verdict = Result<Window, Denied>;

/// The per-client limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientLimit {
    /// `limits.ip_rpm`: requests without a key (open mode, failed authentication).
    Http,
    /// `limits.ws_connects_per_minute_per_ip`: WebSocket upgrades.
    WsConnect,
}

/// A successful token reservation.
#[derive(Debug, Clone)]
pub struct Reserved {
    pub n: u64,
    pub budget: Arc<Budget>,
}

#[derive(Debug, Default)]
struct KeyLeases {
    requests: Option<Lease>,
    tokens: Option<Lease>,
}

/// See the module doc.
#[derive(Debug)]
pub struct Shard {
    worker: u64,
    global: Arc<Global>,
    config: Arc<Config>,
    table: Arc<Table>,
    keys: Vec<KeyLeases>,
    http_clients: Option<LocalClients>,
    ws_clients: Option<LocalClients>,
    /// The table's lockout registry, at hand for the per-request check.
    lockouts: Option<Arc<LockoutRegistry>>,
    ticks: u64,
}

impl Shard {
    /// Worker `worker`'s shard of `global`, for `config`.
    pub fn new(worker: usize, global: Arc<Global>, config: &Arc<Config>) -> Self {
        let table = global.table_for(config);
        let mut shard = Shard {
            worker: u64::try_from(worker).unwrap_or(0),
            global,
            config: config.clone(),
            table,
            keys: Vec::new(),
            http_clients: None,
            ws_clients: None,
            lockouts: None,
            ticks: 0,
        };
        shard.rebuild();
        shard
    }

    /// Switches to `config` (reload): leases on budgets that carry over are kept, the
    /// others are dropped, which returns their tokens.
    pub fn sync(&mut self, config: &Arc<Config>) {
        if Arc::ptr_eq(config, &self.config) {
            return;
        }
        self.table = self.global.table_for(config);
        self.config = config.clone();
        self.rebuild();
    }

    fn rebuild(&mut self) {
        let now = self.global.clock().now_ns();
        let settings = &self.table.settings;
        let mut old: Vec<Lease> =
            std::mem::take(&mut self.keys).into_iter().flat_map(|k| [k.requests, k.tokens]).flatten().collect();
        let mut lease = |budget: &Arc<Budget>, quantum: u64| {
            let kept = old
                .iter()
                .position(|l| Arc::ptr_eq(l.budget(), budget) && l.quantum() == quantum)
                .map(|i| old.swap_remove(i));
            kept.unwrap_or_else(|| Lease::new(budget.clone(), quantum, now))
        };
        self.keys = self
            .table
            .keys
            .iter()
            .map(|q| KeyLeases {
                requests: q.requests.as_ref().map(|b| lease(b, settings.request_lease(b.per_minute()))),
                tokens: q.tokens.as_ref().map(|b| lease(b, settings.token_lease(b.per_minute()))),
            })
            .collect();
        drop(old);
        let cap = settings.max_tracked_clients;
        let local = |current: Option<LocalClients>, registry: &Option<Arc<super::clients::ClientRegistry>>| {
            let registry = registry.as_ref()?;
            match current {
                Some(c) if Arc::ptr_eq(c.registry(), registry) => Some(c),
                _ => Some(LocalClients::new(registry.clone(), settings.request_lease(registry.per_minute()), cap)),
            }
        };
        self.http_clients = local(self.http_clients.take(), &self.table.http_clients);
        self.ws_clients = local(self.ws_clients.take(), &self.table.ws_clients);
        self.lockouts = self.table.lockouts.clone();
    }

    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    /// The lockout registry of the current config; `None`: no lockout configured.
    pub fn lockouts(&self) -> Option<&Arc<LockoutRegistry>> {
        self.lockouts.as_ref()
    }

    /// The slot of a key: its index when `config` is the one this shard is on (the
    /// common case), else found by name (a request that began before a reload).
    pub fn slot(&self, config: &Config, key_index: Option<usize>, name: &str) -> Option<usize> {
        if std::ptr::eq(config, Arc::as_ptr(&self.config)) {
            key_index.filter(|&i| i < self.keys.len())
        } else {
            key_index?;
            self.table.keys.iter().position(|k| &*k.name == name)
        }
    }

    /// Spends one request of key `slot`. `None`: the key has no request limit.
    #[inline]
    pub fn acquire_request(&mut self, slot: usize, now: u64) -> Option<Verdict> {
        let lease = self.keys.get_mut(slot)?.requests.as_mut()?;
        let result = lease.acquire(1, now);
        Some(verdict(result, lease, now))
    }

    /// Spends one request of `ip` under a per-client limit. `None`: not configured.
    pub fn acquire_client(&mut self, limit: ClientLimit, ip: IpAddr, now: u64) -> Option<Verdict> {
        let clients = match limit {
            ClientLimit::Http => self.http_clients.as_mut()?,
            ClientLimit::WsConnect => self.ws_clients.as_mut()?,
        };
        let (result, lease) = clients.acquire(ip, now);
        Some(verdict(result, lease, now))
    }

    /// The token window of key `slot`. `None`: no token limit.
    pub fn token_window(&self, slot: usize, now: u64) -> Option<Window> {
        let lease = self.keys.get(slot)?.tokens.as_ref()?;
        Some(window(lease, now))
    }

    /// Reserves between `min` and `want` tokens of key `slot` (both clamped to the
    /// limit, so that a turn larger than a whole minute's quota can still run on a
    /// full budget). `None`: no token limit.
    pub fn reserve_tokens(&mut self, slot: usize, min: u64, want: u64, now: u64) -> Option<Result<Reserved, Denied>> {
        let lease = self.keys.get_mut(slot)?.tokens.as_mut()?;
        let cap = lease.budget().per_minute();
        let (min, want) = (min.min(cap), want.min(cap));
        Some(match lease.reserve(min, want, now) {
            Ok(n) => Ok(Reserved { n, budget: lease.budget().clone() }),
            Err(short) => Err(denied(short, lease, now)),
        })
    }

    /// At least `need` more tokens for a running turn (a quantum when it can, so the
    /// next chunks are covered locally).
    pub fn extend_tokens(&mut self, slot: usize, budget: &Arc<Budget>, need: u64, now: u64) -> Result<u64, Denied> {
        match self.token_lease(slot, budget) {
            Some(lease) => {
                let want = need.max(lease.quantum());
                lease.reserve(need, want, now).map_err(|short| denied(short, lease, now))
            }
            None => budget.take(need, need, now).map(|t| t.n).map_err(|short| Denied {
                window: Window { limit: budget.per_minute(), remaining: 0, reset_ns: short.tat.max(now) },
                retry_after_secs: short.retry_after_secs(),
            }),
        }
    }

    /// Gives back `n` reserved tokens a turn did not use.
    pub fn refund_tokens(&mut self, slot: usize, budget: &Arc<Budget>, n: u64, now: u64) {
        match self.token_lease(slot, budget) {
            Some(lease) => lease.refund(n, now),
            None => {
                budget.give(n, now);
            }
        }
    }

    /// Charges `n` tokens a turn used beyond its reservation.
    pub fn charge_tokens(&mut self, slot: usize, budget: &Arc<Budget>, n: u64, now: u64) {
        match self.token_lease(slot, budget) {
            Some(lease) => lease.charge(n, now),
            None => {
                budget.force(n, now);
            }
        }
    }

    /// The token lease of `slot` if it still leases `budget` (a reload may have
    /// replaced it; then the turn settles with the budget directly).
    fn token_lease(&mut self, slot: usize, budget: &Arc<Budget>) -> Option<&mut Lease> {
        self.keys.get_mut(slot)?.tokens.as_mut().filter(|l| Arc::ptr_eq(l.budget(), budget))
    }

    /// Housekeeping, about once a second: stale leases go back, idle clients are
    /// dropped, and one shard of each client registry and of the lockout registry is
    /// swept (the workers take turns, so each registry shard is swept every
    /// `16 / workers` ticks).
    pub fn sweep(&mut self, now: u64) {
        for k in &mut self.keys {
            for lease in [k.requests.as_mut(), k.tokens.as_mut()].into_iter().flatten() {
                lease.trim(now);
            }
        }
        let workers = self.global.workers();
        let index = usize::try_from((self.ticks * workers + self.worker) % REGISTRY_SHARDS as u64).unwrap_or(0);
        self.ticks += 1;
        for clients in [self.http_clients.as_mut(), self.ws_clients.as_mut()].into_iter().flatten() {
            clients.sweep(now);
            clients.registry().sweep_shard(index, now);
        }
        if let Some(lockouts) = &self.lockouts {
            lockouts.sweep_shard(index, now);
        }
    }

    /// Tokens held by this shard's key leases (tests and the bound check).
    pub fn held_requests(&self, slot: usize) -> u64 {
        self.keys.get(slot).and_then(|k| k.requests.as_ref()).map_or(0, Lease::held)
    }

    /// Per-client entries tracked by this shard: (ip_rpm, ws connects).
    pub fn tracked_clients(&self) -> (usize, usize) {
        (self.http_clients.as_ref().map_or(0, LocalClients::len), self.ws_clients.as_ref().map_or(0, LocalClients::len))
    }
}

fn window(lease: &Lease, now: u64) -> Window {
    Window { limit: lease.budget().per_minute(), remaining: lease.remaining(now), reset_ns: lease.full_at_ns(now) }
}

fn denied(short: Shortfall, lease: &Lease, now: u64) -> Denied {
    let window = Window { remaining: 0, ..window(lease, now) };
    Denied { window, retry_after_secs: short.retry_after_secs() }
}

fn verdict(result: Result<(), Shortfall>, lease: &Lease, now: u64) -> Verdict {
    match result {
        Ok(()) => Ok(window(lease, now)),
        Err(short) => Err(denied(short, lease, now)),
    }
}

#[cfg(test)]
mod tests;
