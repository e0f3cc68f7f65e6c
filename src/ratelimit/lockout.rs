//! Lockout after repeated failed authentication: a brute-force guard on top of the
//! per-IP request limit, as OpenClaw's gateway has one (10 failures a minute, then
//! 5 minutes).
//!
//! [`LockoutRegistry`] is process-wide (one per config, in the limiter's `Table`), so
//! failures seen by every worker, over HTTP and WebSocket, count together. It maps a
//! client (a [`client_key`]: IPv4, or IPv6 per /64) to an `Entry`: the failures of
//! its current window and, when locked out, the instant the lockout ends.
//!
//! - **A failure** ([`LockoutRegistry::record_failure`]) opens a one-minute window at
//!   the client's first failure; the `limit`-th failure inside it locks the client
//!   out for `lockout_ns`. A window anchored at its first failure (rather than a
//!   sliding log of every failure) keeps an entry at 24 bytes; the price is that a
//!   client may fail `2 (limit - 1)` times in a minute that straddles two windows
//!   without being locked out. A success does not clear the count: a caller holding
//!   one valid key could otherwise interleave it to guess others without end.
//! - **A check** ([`LockoutRegistry::locked_until`]) runs for every request that
//!   carries credentials, before its key is looked at. It reads one atomic, the
//!   latest end of any lockout ever begun: while no lockout is running (the normal
//!   state of a gateway) that is all it costs, no lock and no shared write. Only
//!   while some lockout runs does it lock the one registry shard of the client.
//!
//! Memory is bounded like the per-client limits' registries (`clients.rs`): at most
//! `ceil(max_tracked_clients / 16)` entries in each of [`REGISTRY_SHARDS`] maps. Entries
//! neither locked nor inside their window carry nothing and are dropped by the
//! workers' sweeps; a full map evicts an eighth of itself: unlocked entries with the
//! oldest window first, then the lockouts that end soonest. A reload that changes
//! `limits.auth_failures_per_minute`, `limits.auth_lockout_secs` or
//! `limits.max_tracked_clients` starts a new registry (running lockouts end).

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::clients::{client_key, shard_of, ClientRegistry, REGISTRY_SHARDS};

/// The window failures are counted in.
pub const WINDOW_NS: u64 = 60 * 1_000_000_000;

/// What the registry knows of one client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Entry {
    /// Start of the current window (the first failure in it).
    window_start_ns: u64,
    /// Failures in the current window.
    failures: u32,
    /// End of the lockout; in the past (or 0) when not locked out.
    locked_until_ns: u64,
}

impl Entry {
    fn locked(&self, now: u64) -> bool {
        self.locked_until_ns > now
    }

    /// Neither locked nor inside its window: identical to no entry at all.
    fn forgettable(&self, now: u64) -> bool {
        !self.locked(now) && (self.failures == 0 || now.saturating_sub(self.window_start_ns) >= WINDOW_NS)
    }
}

/// What [`LockoutRegistry::record_failure`] made of one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Counted; this many more failures in the window lock the client out.
    Counted { left: u32 },
    /// The client is locked out until `until_ns` (limiter clock). `began`: this
    /// failure started the lockout (count it once).
    LockedOut { until_ns: u64, began: bool },
}

/// Process-wide failure counts and lockouts. See the module doc.
#[derive(Debug)]
pub struct LockoutRegistry {
    limit: u32,
    lockout_ns: u64,
    shard_cap: usize,
    /// The latest `locked_until_ns` ever set: no client is locked out after it.
    horizon_ns: AtomicU64,
    shards: Box<[Mutex<HashMap<IpAddr, Entry>>]>,
}

impl LockoutRegistry {
    /// A registry that locks a client out for `lockout_secs` after `limit` failures
    /// in a minute (`limit` at least 1), remembering about `max_clients` clients.
    pub fn new(limit: u32, lockout_secs: u64, max_clients: usize) -> Self {
        let shard_cap = ClientRegistry::capacity_for(max_clients) / REGISTRY_SHARDS;
        let shards = (0..REGISTRY_SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        LockoutRegistry {
            limit: limit.max(1),
            lockout_ns: lockout_secs.saturating_mul(1_000_000_000),
            shard_cap,
            horizon_ns: AtomicU64::new(0),
            shards,
        }
    }

    /// Failures in a minute that lock a client out.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Length of a lockout, in limiter-clock nanoseconds.
    pub fn lockout_ns(&self) -> u64 {
        self.lockout_ns
    }

    /// Most entries the registry can hold.
    pub fn capacity(&self) -> usize {
        self.shard_cap * REGISTRY_SHARDS
    }

    fn shard(&self, key: &IpAddr) -> Option<&Mutex<HashMap<IpAddr, Entry>>> {
        self.shards.get(shard_of(key))
    }

    /// No lockout was ever begun: nobody can be locked out (one atomic load).
    #[inline]
    pub fn never_locked(&self) -> bool {
        self.horizon_ns.load(Ordering::Relaxed) == 0
    }

    /// When `ip`'s lockout ends, if it is locked out at `now`. Lock-free unless some
    /// lockout is running (see the module doc).
    #[inline]
    pub fn locked_until(&self, ip: IpAddr, now: u64) -> Option<u64> {
        // Relaxed: a lockout begun on another core a moment ago may be seen one
        // request late, which no client can tell from arriving a moment earlier.
        if self.horizon_ns.load(Ordering::Relaxed) <= now {
            return None;
        }
        let key = client_key(ip);
        let map = self.shard(&key)?.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&key).filter(|e| e.locked(now)).map(|e| e.locked_until_ns)
    }

    /// Counts one failed authentication of `ip` at `now`. A client already locked out
    /// stays locked out until the lockout's end (failures do not extend it).
    pub fn record_failure(&self, ip: IpAddr, now: u64) -> Failure {
        let key = client_key(ip);
        let Some(shard) = self.shard(&key) else { return Failure::Counted { left: self.limit } };
        let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if !map.contains_key(&key) && map.len() >= self.shard_cap {
            evict(&mut map, self.shard_cap, now);
        }
        let entry = map.entry(key).or_default();
        if entry.locked(now) {
            return Failure::LockedOut { until_ns: entry.locked_until_ns, began: false };
        }
        if entry.forgettable(now) {
            *entry = Entry { window_start_ns: now, failures: 0, locked_until_ns: 0 };
        }
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures < self.limit {
            return Failure::Counted { left: self.limit - entry.failures };
        }
        let until_ns = now.saturating_add(self.lockout_ns.max(1));
        *entry = Entry { window_start_ns: now, failures: 0, locked_until_ns: until_ns };
        self.horizon_ns.fetch_max(until_ns, Ordering::Relaxed);
        Failure::LockedOut { until_ns, began: true }
    }

    /// Drops the entries of shard `i` that carry nothing (unlocked, window over).
    pub fn sweep_shard(&self, i: usize, now: u64) {
        if let Some(shard) = self.shards.get(i % REGISTRY_SHARDS) {
            let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
            map.retain(|_, e| !e.forgettable(now));
        }
    }

    /// Entries held, over all shards.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes room in a full map: forgettable entries first, then an eighth of the map,
/// unlocked entries by oldest window before lockouts by soonest end.
fn evict(map: &mut HashMap<IpAddr, Entry>, cap: usize, now: u64) {
    map.retain(|_, e| !e.forgettable(now));
    let batch = (cap / 8).max(1);
    if map.len() + batch <= cap {
        return;
    }
    let mut ranked: Vec<((bool, u64), IpAddr)> = map
        .iter()
        .map(|(k, e)| {
            let locked = e.locked(now);
            ((locked, if locked { e.locked_until_ns } else { e.window_start_ns }), *k)
        })
        .collect();
    let n = (map.len() + batch).saturating_sub(cap).min(ranked.len());
    if n == 0 {
        return;
    }
    ranked.select_nth_unstable_by_key(n - 1, |(rank, _)| *rank);
    for (_, key) in ranked.iter().take(n) {
        map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const SEC: u64 = 1_000_000_000;
    const T0: u64 = 1_000 * SEC;

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn the_tenth_failure_in_a_minute_locks_the_client_out_for_the_lockout() {
        let r = LockoutRegistry::new(10, 300, 1_000);
        let ip = v4(1);
        for i in 0..9u32 {
            assert_eq!(r.record_failure(ip, T0 + u64::from(i) * SEC), Failure::Counted { left: 9 - i });
            assert_eq!(r.locked_until(ip, T0 + u64::from(i) * SEC), None);
        }
        let until = T0 + 9 * SEC + 300 * SEC;
        assert_eq!(r.record_failure(ip, T0 + 9 * SEC), Failure::LockedOut { until_ns: until, began: true });
        assert_eq!(r.locked_until(ip, T0 + 10 * SEC), Some(until));
        assert_eq!(r.locked_until(ip, until - 1), Some(until));
        assert_eq!(r.locked_until(ip, until), None, "over at its end");
        // Other clients are not affected.
        assert_eq!(r.locked_until(v4(2), T0 + 10 * SEC), None);
    }

    #[test]
    fn failures_during_a_lockout_neither_extend_it_nor_begin_another() {
        let r = LockoutRegistry::new(3, 60, 1_000);
        let ip = v4(1);
        r.record_failure(ip, T0);
        r.record_failure(ip, T0);
        let Failure::LockedOut { until_ns, began: true } = r.record_failure(ip, T0) else { panic!("not locked") };
        for s in 1..30 {
            assert_eq!(r.record_failure(ip, T0 + s * SEC), Failure::LockedOut { until_ns, began: false });
        }
        // After it, counting starts over.
        assert_eq!(r.record_failure(ip, until_ns), Failure::Counted { left: 2 });
        assert_eq!(r.locked_until(ip, until_ns), None);
    }

    #[test]
    fn failures_spread_over_more_than_a_minute_do_not_lock_out() {
        let r = LockoutRegistry::new(10, 300, 1_000);
        let ip = v4(1);
        // 9 failures, then the window closes; 9 more start a new window.
        for i in 0..9 {
            r.record_failure(ip, T0 + i * SEC);
        }
        for i in 0..9 {
            let verdict = r.record_failure(ip, T0 + 60 * SEC + i * SEC);
            assert!(matches!(verdict, Failure::Counted { .. }), "{i}: {verdict:?}");
        }
        assert_eq!(r.locked_until(ip, T0 + 70 * SEC), None);
    }

    #[test]
    fn ipv6_clients_are_locked_out_per_64() {
        let r = LockoutRegistry::new(2, 60, 1_000);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        r.record_failure(a, T0);
        assert!(matches!(r.record_failure(b, T0), Failure::LockedOut { began: true, .. }));
        assert!(r.locked_until(a, T0 + SEC).is_some());
        assert!(r.locked_until(c, T0 + SEC).is_none());
    }

    #[test]
    fn sweeps_forget_what_carries_nothing_and_keep_lockouts_and_open_windows() {
        let r = LockoutRegistry::new(2, 600, 1_000);
        r.record_failure(v4(1), T0);
        r.record_failure(v4(1), T0); // locked out
        r.record_failure(v4(2), T0); // one failure, window open until T0 + 60 s
        r.record_failure(v4(3), T0 - 61 * SEC); // window over
        for i in 0..REGISTRY_SHARDS {
            r.sweep_shard(i, T0 + SEC);
        }
        assert_eq!(r.len(), 2);
        for i in 0..REGISTRY_SHARDS {
            r.sweep_shard(i, T0 + 61 * SEC);
        }
        assert_eq!(r.len(), 1, "only the lockout is left");
        assert!(r.locked_until(v4(1), T0 + 61 * SEC).is_some());
    }

    #[test]
    fn a_flood_of_distinct_ips_cannot_grow_the_registry_past_its_cap() {
        let r = LockoutRegistry::new(1, 60, 1_000);
        for n in 0..50_000 {
            r.record_failure(v4(n), T0);
            assert!(r.len() <= r.capacity());
        }
        assert!(r.capacity() <= 1_000 + REGISTRY_SHARDS);
        // The lockouts kept are the latest ones.
        assert!(r.locked_until(v4(49_999), T0 + SEC).is_some());
    }

    #[test]
    fn a_full_map_evicts_unlocked_clients_before_lockouts() {
        let r = LockoutRegistry::new(2, 60, REGISTRY_SHARDS * 8);
        let keys: Vec<IpAddr> = (0..100_000).map(v4).filter(|k| shard_of(k) == 0).take(9).collect();
        // Four locked out, four with one failure each.
        for k in &keys[..4] {
            r.record_failure(*k, T0);
            r.record_failure(*k, T0);
        }
        for (i, k) in keys[4..8].iter().enumerate() {
            r.record_failure(*k, T0 + i as u64);
        }
        r.record_failure(keys[8], T0 + SEC);
        for k in &keys[..4] {
            assert!(r.locked_until(*k, T0 + SEC).is_some(), "lockouts are kept");
        }
        let map = r.shards[0].lock().unwrap();
        assert_eq!(map.len(), 8);
        assert!(!map.contains_key(&keys[4]), "the oldest unlocked window went");
    }
}
