//! Per-client-IP limits, with a hard cap on memory. Two levels, like the per-key limits:
//!
//! - [`ClientRegistry`] (process-wide, one per limit kind) maps a client to its global
//!   [`Budget`]. It is split into [`REGISTRY_SHARDS`] mutex-guarded maps, locked only
//!   when a core meets a client it holds no lease for or its lease runs dry, never
//!   per request. Each map holds at most `ceil(max_tracked_clients / shards)` entries.
//! - [`LocalClients`] (one per core and kind) maps a client to this core's [`Lease`] on
//!   that budget: the per-request path, no lock. It holds at most `max_tracked_clients`
//!   entries.
//!
//! Eviction keeps both bounded whatever the traffic. A local entry lives while its
//! lease does (1 s after it was last filled; the per-core sweep drops it and returns
//! its tokens). A registry entry whose bucket is full again and that no core leases
//! from carries no information (a new entry would be identical), so sweeps drop it.
//! When a map is full anyway (a flood of distinct clients), an insert first sweeps and,
//! if that frees too little, evicts the eighth of the map closest to a full bucket
//! (locally: the least recently used), so the cost is amortised over many inserts. A
//! client evicted while still limited starts over with a full bucket: under a flood
//! larger than `max_tracked_clients` the limit loosens for the quietest clients, and
//! memory stays bounded. IPv6 clients are limited per /64 (one subscriber's prefix),
//! so rotating addresses inside a prefix neither escapes the limit nor fills the map.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

use super::budget::{Budget, Shortfall};
use super::lease::Lease;

/// One registry shard: client -> budget.
type ClientMap = HashMap<IpAddr, Arc<Budget>>;

/// Mutex-guarded maps per registry; a power of two.
pub const REGISTRY_SHARDS: usize = 16;

/// The identity an IP is limited under: IPv4 as is (also when v4-mapped), IPv6 by /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        },
    }
}

/// The registry shard of a [`client_key`]: `0..REGISTRY_SHARDS`.
pub fn shard_of(key: &IpAddr) -> usize {
    let h = match key {
        IpAddr::V4(v4) => u64::from(u32::from(*v4)),
        IpAddr::V6(v6) => (u128::from(*v6) >> 64) as u64,
    };
    // Fibonacci hashing spreads neighbouring addresses over the shards.
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize & (REGISTRY_SHARDS - 1)
}

/// Process-wide budgets of one per-client limit. See the module doc.
#[derive(Debug)]
pub struct ClientRegistry {
    per_minute: u64,
    shard_cap: usize,
    shards: Box<[Mutex<ClientMap>]>,
}

impl ClientRegistry {
    pub fn new(per_minute: u64, max_clients: usize) -> Self {
        let shard_cap = Self::capacity_for(max_clients) / REGISTRY_SHARDS;
        let shards = (0..REGISTRY_SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        ClientRegistry { per_minute, shard_cap, shards }
    }

    pub fn per_minute(&self) -> u64 {
        self.per_minute
    }

    /// Most entries the registry can hold.
    pub fn capacity(&self) -> usize {
        self.shard_cap * REGISTRY_SHARDS
    }

    /// The capacity of a registry asked to track `max_clients`: rounded up to whole
    /// shards, so at most `max_clients + REGISTRY_SHARDS - 1`.
    pub fn capacity_for(max_clients: usize) -> usize {
        max_clients.div_ceil(REGISTRY_SHARDS).max(1) * REGISTRY_SHARDS
    }

    fn shard_of(&self, key: &IpAddr) -> usize {
        shard_of(key)
    }

    /// The budget of `key` (a [`client_key`]), created full if unknown.
    pub fn budget(&self, key: IpAddr, now: u64) -> Arc<Budget> {
        let Some(shard) = self.shards.get(self.shard_of(&key)) else {
            return Arc::new(Budget::new(self.per_minute));
        };
        let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = map.get(&key) {
            return b.clone();
        }
        if map.len() >= self.shard_cap {
            evict(&mut map, self.shard_cap, now);
        }
        let b = Arc::new(Budget::new(self.per_minute));
        map.insert(key, b.clone());
        b
    }

    /// Drops the entries of shard `i` that carry no information (full, unleased).
    pub fn sweep_shard(&self, i: usize, now: u64) {
        if let Some(shard) = self.shards.get(i % REGISTRY_SHARDS) {
            let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
            map.retain(|_, b| !forgettable(b, now));
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

/// A budget nobody leases and that is full again: identical to a new one.
fn forgettable(b: &Arc<Budget>, now: u64) -> bool {
    Arc::strong_count(b) == 1 && b.tat() <= now
}

/// Makes room in a full registry map: forgettable entries first, then the eighth of
/// the map closest to a full bucket.
fn evict(map: &mut ClientMap, cap: usize, now: u64) {
    map.retain(|_, b| !forgettable(b, now));
    let batch = (cap / 8).max(1);
    if map.len() + batch <= cap {
        return;
    }
    let mut by_tat: Vec<(u64, IpAddr)> = map.iter().map(|(k, b)| (b.tat(), *k)).collect();
    let n = (map.len() + batch).saturating_sub(cap).min(by_tat.len());
    if n == 0 {
        return;
    }
    by_tat.select_nth_unstable_by_key(n - 1, |(tat, _)| *tat);
    for (_, key) in by_tat.iter().take(n) {
        map.remove(key);
    }
}

/// This core's leases on per-client budgets. See the module doc.
#[derive(Debug)]
pub struct LocalClients {
    registry: Arc<ClientRegistry>,
    quantum: u64,
    cap: usize,
    leases: HashMap<IpAddr, Lease>,
}

impl LocalClients {
    pub fn new(registry: Arc<ClientRegistry>, quantum: u64, cap: usize) -> Self {
        LocalClients { registry, quantum, cap: cap.max(1), leases: HashMap::new() }
    }

    pub fn registry(&self) -> &Arc<ClientRegistry> {
        &self.registry
    }

    /// Spends one token of `ip`'s budget; returns the lease for the headers.
    pub fn acquire(&mut self, ip: IpAddr, now: u64) -> (Result<(), Shortfall>, &Lease) {
        let key = client_key(ip);
        if !self.leases.contains_key(&key) && self.leases.len() >= self.cap {
            self.make_room(now);
        }
        let registry = &self.registry;
        let quantum = self.quantum;
        let lease = self.leases.entry(key).or_insert_with(|| Lease::new(registry.budget(key, now), quantum, now));
        (lease.acquire(1, now), lease)
    }

    /// Drops entries whose lease has expired (returning their tokens).
    pub fn sweep(&mut self, now: u64) {
        self.leases.retain(|_, lease| !lease.expired(now));
    }

    /// A full map: expired leases first, then the least recently used eighth.
    fn make_room(&mut self, now: u64) {
        self.sweep(now);
        let batch = (self.cap / 8).max(1);
        if self.leases.len() + batch <= self.cap {
            return;
        }
        let mut by_use: Vec<(u64, IpAddr)> = self.leases.iter().map(|(k, l)| (l.last_used_ns(), *k)).collect();
        let n = (self.leases.len() + batch).saturating_sub(self.cap).min(by_use.len());
        if n == 0 {
            return;
        }
        by_use.select_nth_unstable_by_key(n - 1, |(used, _)| *used);
        for (_, key) in by_use.iter().take(n) {
            self.leases.remove(key);
        }
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::ratelimit::lease::LEASE_TTL_NS;

    const SEC: u64 = 1_000_000_000;
    const T0: u64 = 1_000 * SEC;

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn ipv6_clients_are_limited_per_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), v4(1));
    }

    #[test]
    fn a_flood_of_distinct_ips_cannot_grow_the_tables_past_their_cap() {
        let registry = Arc::new(ClientRegistry::new(60, 1_000));
        let mut local = LocalClients::new(registry.clone(), 4, 1_000);
        for n in 0..50_000 {
            let (verdict, _) = local.acquire(v4(n), T0);
            assert!(verdict.is_ok());
            assert!(local.len() <= 1_000);
        }
        assert!(registry.len() <= registry.capacity());
        assert!(registry.capacity() <= 1_000 + REGISTRY_SHARDS);
    }

    #[test]
    fn idle_clients_are_evicted_and_limited_ones_are_kept() {
        let registry = Arc::new(ClientRegistry::new(60, 1_000));
        let mut local = LocalClients::new(registry.clone(), 4, 1_000);
        // A client at its limit, and 100 that made one request.
        let hot = v4(999_999);
        while local.acquire(hot, T0).0.is_ok() {}
        for n in 0..100 {
            assert!(local.acquire(v4(n), T0).0.is_ok());
        }
        assert_eq!((local.len(), registry.len()), (101, 101));
        // After the lease TTL the local leases are gone and their tokens returned.
        local.sweep(T0 + LEASE_TTL_NS);
        assert_eq!(local.len(), 0);
        // A few seconds on, the one-request clients' buckets are full again: forgotten.
        for i in 0..REGISTRY_SHARDS {
            registry.sweep_shard(i, T0 + 5 * SEC);
        }
        assert_eq!(registry.len(), 1, "only the limited client is remembered");
        // ...and it is still limited when it comes back.
        let mut other_core = LocalClients::new(registry.clone(), 4, 1_000);
        let admitted = (0..60).filter(|_| other_core.acquire(hot, T0 + 5 * SEC).0.is_ok()).count();
        assert_eq!(admitted, 5, "5 s of refill at 60/min");
    }

    #[test]
    fn a_full_registry_evicts_the_clients_closest_to_a_full_bucket() {
        let registry = ClientRegistry::new(60, 16 * 8);
        // Fill one shard's worth of keys in shard 0's map by brute force on the hash.
        let keys: Vec<IpAddr> = (0..100_000).map(v4).filter(|k| registry.shard_of(k) == 0).take(9).collect();
        let cap = registry.shard_cap;
        assert_eq!(cap, 8);
        let held: Vec<Arc<Budget>> = keys[..8]
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let b = registry.budget(*k, T0);
                // Key i has spent 10 + i tokens.
                b.take(10 + i as u64, 10 + i as u64, T0).unwrap();
                b
            })
            .collect();
        // All leased (strong count 2), none forgettable: the least used one goes.
        registry.budget(keys[8], T0);
        let map = registry.shards[0].lock().unwrap();
        assert_eq!(map.len(), 8);
        assert!(!map.contains_key(&keys[0]), "the fullest bucket was evicted");
        assert!(map.contains_key(&keys[7]));
        drop(held);
    }
}
