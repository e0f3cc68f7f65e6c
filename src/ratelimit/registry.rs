//! The process-wide side of the limiter: [`Global`] owns every global [`Budget`] and
//! turns each config into a [`Table`], the immutable list of budgets that config's
//! keys and clients draw from. Shards fetch the table at start-up and on reload; its
//! mutex is never taken on the request path.
//!
//! Reload keeps state: a key keeps its budget (and so its spent quota) across a
//! reload by name; when its limit changes, the new budget starts with the tokens the
//! old one had left (clamped to the new capacity). Per-client registries are kept when
//! their limit and cap are unchanged and start empty otherwise; so is the lockout
//! registry (`lockout.rs`) with its limit and length. Keys removed from the
//! config are forgotten. The table is cached per config (`Arc` identity), so every
//! worker syncing to the same reloaded config gets the same budgets.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::budget::Budget;
use super::clients::ClientRegistry;
use super::clock::SharedClock;
use super::lockout::LockoutRegistry;
use crate::config::Config;

/// Token leases are `lease_size` times this many tokens at most: a lease of requests
/// covers `lease_size` requests, a lease of tokens about as many typical turns.
pub const TOKENS_PER_LEASE_UNIT: u64 = 256;

/// The limiter settings of one config, with the worker count folded in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub workers: u64,
    pub lease_size: u64,
    pub max_tracked_clients: usize,
    pub ws_messages_per_minute: Option<u64>,
    pub completion_reserve_tokens: u64,
}

impl Settings {
    /// The lease of a request budget of `per_minute`: `lease_size`, but never more
    /// than a quarter of the limit split over the workers (at least 1), so that
    /// leases held by idle cores never strand much of a small limit.
    pub fn request_lease(&self, per_minute: u64) -> u64 {
        (per_minute / (4 * self.workers)).clamp(1, self.lease_size)
    }

    /// The lease of a token budget of `per_minute`.
    pub fn token_lease(&self, per_minute: u64) -> u64 {
        (per_minute / (4 * self.workers)).clamp(1, self.lease_size * TOKENS_PER_LEASE_UNIT)
    }

    /// The most a request budget of `per_minute` can be off, in either direction:
    /// every worker holding a full lease. See the `ratelimit` module doc.
    pub fn request_error_bound(&self, per_minute: u64) -> u64 {
        self.request_lease(per_minute) * self.workers
    }
}

/// The budgets of one configured key.
#[derive(Debug, Clone)]
pub struct KeyQuota {
    pub name: Arc<str>,
    /// `None`: no request limit.
    pub requests: Option<Arc<Budget>>,
    /// `None`: no token limit.
    pub tokens: Option<Arc<Budget>>,
}

/// The budgets of one config. Immutable; shared by the workers.
#[derive(Debug)]
pub struct Table {
    pub settings: Settings,
    /// By `Config::keys` index.
    pub keys: Vec<KeyQuota>,
    /// `limits.ip_rpm`: unauthenticated requests and open mode.
    pub http_clients: Option<Arc<ClientRegistry>>,
    /// `limits.ws_connects_per_minute_per_ip`.
    pub ws_clients: Option<Arc<ClientRegistry>>,
    /// `limits.auth_failures_per_minute` and `auth_lockout_secs`; `None`: no lockout.
    pub lockouts: Option<Arc<LockoutRegistry>>,
}

#[derive(Default)]
struct State {
    current: Option<(Arc<Config>, Arc<Table>)>,
    keys: HashMap<Arc<str>, KeyQuota>,
    http_clients: Option<Arc<ClientRegistry>>,
    ws_clients: Option<Arc<ClientRegistry>>,
    lockouts: Option<Arc<LockoutRegistry>>,
}

/// Every global budget of the process. See the module doc.
pub struct Global {
    clock: SharedClock,
    workers: u64,
    state: Mutex<State>,
}

impl std::fmt::Debug for Global {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Global").field("workers", &self.workers).finish_non_exhaustive()
    }
}

impl Global {
    /// The budgets of a process with `workers` shards, on `clock`.
    pub fn new(workers: usize, clock: SharedClock) -> Self {
        let workers = u64::try_from(workers.max(1)).unwrap_or(1);
        Global { clock, workers, state: Mutex::new(State::default()) }
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    pub fn workers(&self) -> u64 {
        self.workers
    }

    /// The table of `config`: the cached one if this config was seen last, else a new
    /// one carrying the previous state over. Start-up and reload only.
    pub fn table_for(&self, config: &Arc<Config>) -> Arc<Table> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((c, t)) = &state.current {
            if Arc::ptr_eq(c, config) {
                return t.clone();
            }
        }
        let table = Arc::new(self.build(config, &mut state));
        state.current = Some((config.clone(), table.clone()));
        table
    }

    fn build(&self, config: &Config, state: &mut State) -> Table {
        let now = self.clock.now_ns();
        let limits = &config.limits;
        let settings = Settings {
            workers: self.workers,
            lease_size: u64::from(limits.lease_size.max(1)),
            max_tracked_clients: limits.max_tracked_clients.max(1),
            ws_messages_per_minute: limits.ws_messages_per_minute.map(u64::from),
            completion_reserve_tokens: u64::from(limits.completion_reserve_tokens),
        };
        let mut keys = Vec::with_capacity(config.keys.len());
        let mut by_name = HashMap::with_capacity(config.keys.len());
        for k in &config.keys {
            let rpm = k.rpm.or(limits.rpm).map(u64::from);
            let tpm = k.tpm.or(limits.tpm);
            let old = state.keys.get(k.name.as_str());
            let quota = KeyQuota {
                name: Arc::from(k.name.as_str()),
                requests: rpm.map(|r| carry(old.and_then(|o| o.requests.as_ref()), r, now)),
                tokens: tpm.map(|t| carry(old.and_then(|o| o.tokens.as_ref()), t, now)),
            };
            by_name.insert(quota.name.clone(), quota.clone());
            keys.push(quota);
        }
        state.keys = by_name;
        let cap = settings.max_tracked_clients;
        state.http_clients = clients(state.http_clients.take(), limits.ip_rpm, cap);
        state.ws_clients = clients(state.ws_clients.take(), limits.ws_connects_per_minute_per_ip, cap);
        state.lockouts =
            lockouts(state.lockouts.take(), limits.auth_failures_per_minute, limits.auth_lockout_secs, cap);
        Table {
            settings,
            keys,
            http_clients: state.http_clients.clone(),
            ws_clients: state.ws_clients.clone(),
            lockouts: state.lockouts.clone(),
        }
    }
}

/// The budget for a limit of `per_minute`: the old one if the limit is unchanged,
/// else a new one with what the old one had left.
fn carry(old: Option<&Arc<Budget>>, per_minute: u64, now: u64) -> Arc<Budget> {
    match old {
        Some(b) if b.per_minute() == per_minute => b.clone(),
        Some(b) => Arc::new(Budget::with_available(per_minute, b.available(now), now)),
        None => Arc::new(Budget::new(per_minute)),
    }
}

fn clients(old: Option<Arc<ClientRegistry>>, per_minute: Option<u32>, cap: usize) -> Option<Arc<ClientRegistry>> {
    let per_minute = u64::from(per_minute?);
    match old {
        Some(r) if r.per_minute() == per_minute && r.capacity() == ClientRegistry::capacity_for(cap) => Some(r),
        _ => Some(Arc::new(ClientRegistry::new(per_minute, cap))),
    }
}

fn lockouts(old: Option<Arc<LockoutRegistry>>, limit: u32, secs: u64, cap: usize) -> Option<Arc<LockoutRegistry>> {
    if limit == 0 {
        return None;
    }
    let new = LockoutRegistry::new(limit, secs, cap);
    match old {
        Some(r) if r.limit() == new.limit() && r.lockout_ns() == new.lockout_ns() && r.capacity() == new.capacity() => {
            Some(r)
        }
        _ => Some(Arc::new(new)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ratelimit::clock::{Clock, ManualClock};

    fn config(text: &str) -> Arc<Config> {
        Arc::new(Config::from_toml_str(text, None).unwrap())
    }

    const KEYS: &str = r#"
[limits]
rpm = 100
[[keys]]
name = "a"
key = "ka"
rpm = 60
tpm = 1000
[[keys]]
name = "b"
key = "kb"
"#;

    #[test]
    fn keys_get_their_own_limits_or_the_defaults() {
        let g = Global::new(2, ManualClock::new(Duration::from_secs(100), 0));
        let t = g.table_for(&config(KEYS));
        assert_eq!(t.keys[0].requests.as_ref().unwrap().per_minute(), 60);
        assert_eq!(t.keys[0].tokens.as_ref().unwrap().per_minute(), 1000);
        assert_eq!(t.keys[1].requests.as_ref().unwrap().per_minute(), 100);
        assert!(t.keys[1].tokens.is_none(), "no tpm anywhere: unlimited");
        assert!(t.http_clients.is_none() && t.ws_clients.is_none());
        let lockouts = t.lockouts.as_ref().unwrap();
        assert_eq!((lockouts.limit(), lockouts.lockout_ns()), (10, 300_000_000_000), "on by default");
    }

    #[test]
    fn a_reload_keeps_running_lockouts_unless_their_settings_change() {
        let clock = ManualClock::new(Duration::from_secs(100), 0);
        let g = Global::new(2, clock.clone());
        let now = clock.now_ns();
        let ip = "10.0.0.1".parse().unwrap();
        let t1 = g.table_for(&config(KEYS));
        for _ in 0..10 {
            t1.lockouts.as_ref().unwrap().record_failure(ip, now);
        }
        let t2 = g.table_for(&config(&KEYS.replace("rpm = 60", "rpm = 61")));
        assert!(t2.lockouts.as_ref().unwrap().locked_until(ip, now).is_some(), "kept");
        let t3 = g.table_for(&config(&KEYS.replace("rpm = 100", "rpm = 100\nauth_lockout_secs = 60")));
        assert!(t3.lockouts.as_ref().unwrap().locked_until(ip, now).is_none(), "a new registry");
        let t4 = g.table_for(&config(&KEYS.replace("rpm = 100", "rpm = 100\nauth_failures_per_minute = 0")));
        assert!(t4.lockouts.is_none(), "0 turns the lockout off");
    }

    #[test]
    fn the_same_config_gets_the_same_table() {
        let g = Global::new(2, ManualClock::new(Duration::from_secs(100), 0));
        let c = config(KEYS);
        assert!(Arc::ptr_eq(&g.table_for(&c), &g.table_for(&c)));
    }

    #[test]
    fn a_reload_keeps_spent_quota_and_carries_it_into_a_new_limit() {
        let clock = ManualClock::new(Duration::from_secs(100), 0);
        let g = Global::new(2, clock.clone());
        let now = clock.now_ns();
        let t1 = g.table_for(&config(KEYS));
        t1.keys[0].requests.as_ref().unwrap().take(50, 50, now).unwrap();
        // Same limits: the very same budget.
        let t2 = g.table_for(&config(KEYS));
        assert!(Arc::ptr_eq(t1.keys[0].requests.as_ref().unwrap(), t2.keys[0].requests.as_ref().unwrap()));
        // rpm 60 -> 30: 10 left of 60 becomes 10 left of 30.
        let t3 = g.table_for(&config(&KEYS.replace("rpm = 60", "rpm = 30")));
        let b = t3.keys[0].requests.as_ref().unwrap();
        assert_eq!((b.per_minute(), b.available(now)), (30, 10));
    }

    #[test]
    fn leases_are_a_small_share_of_the_limit() {
        let s = Settings {
            workers: 2,
            lease_size: 8,
            max_tracked_clients: 10,
            ws_messages_per_minute: None,
            completion_reserve_tokens: 256,
        };
        assert_eq!(s.request_lease(60), 7);
        assert_eq!(s.request_error_bound(60), 14);
        assert_eq!(s.request_lease(6000), 8);
        assert_eq!(s.request_lease(3), 1);
        assert_eq!(s.token_lease(100), 12);
        assert_eq!(s.token_lease(1_000_000), 2048);
    }
}
