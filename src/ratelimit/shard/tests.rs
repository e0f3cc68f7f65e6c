//! Shard tests on a manual clock: leases, expiry, reload, and the global error bound
//! (`lease x workers`) under every skew of traffic across shards, including real
//! threads racing on one budget.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::ratelimit::clock::{Clock, ManualClock};

const SEC: u64 = 1_000_000_000;

fn config(text: &str) -> Arc<Config> {
    Arc::new(Config::from_toml_str(text, None).unwrap())
}

fn key_config(rpm: u32) -> Arc<Config> {
    config(&format!("[[keys]]\nname = \"k\"\nkey = \"sk\"\nrpm = {rpm}\n"))
}

/// `workers` shards of one global budget set, on a manual clock.
fn shards(workers: usize, cfg: &Arc<Config>) -> (Arc<ManualClock>, Vec<Shard>) {
    let clock = ManualClock::new(Duration::from_secs(1_000), 1_700_000_000);
    let global = Arc::new(Global::new(workers, clock.clone()));
    let shards = (0..workers).map(|w| Shard::new(w, global.clone(), cfg)).collect();
    (clock, shards)
}

fn admitted(shard: &mut Shard, n: usize, now: u64) -> usize {
    (0..n).filter(|_| shard.acquire_request(0, now).unwrap().is_ok()).count()
}

#[test]
fn all_traffic_on_one_shard_admits_exactly_the_limit() {
    let (clock, mut s) = shards(2, &key_config(60));
    let now = clock.now_ns();
    assert_eq!(admitted(&mut s[0], 120, now), 60);
    let denied = s[0].acquire_request(0, now).unwrap().unwrap_err();
    assert_eq!(denied.retry_after_secs, 1);
    assert_eq!((denied.window.limit, denied.window.remaining), (60, 0));
}

#[test]
fn traffic_spread_evenly_over_two_shards_admits_exactly_the_limit() {
    let (clock, mut s) = shards(2, &key_config(60));
    let now = clock.now_ns();
    let mut total = 0;
    for i in 0..120 {
        total += usize::from(s[i % 2].acquire_request(0, now).unwrap().is_ok());
    }
    // Both shards keep asking, so both spend every token they leased.
    assert_eq!(total, 60);
}

#[test]
fn an_idle_shard_strands_at_most_its_lease_until_the_lease_expires() {
    let cfg = key_config(60);
    let (clock, mut s) = shards(2, &cfg);
    let now = clock.now_ns();
    let bound = s[0].table().settings.request_error_bound(60);
    assert_eq!(bound, 14, "lease 7 x 2 workers");
    // Shard 1 serves one request and goes quiet holding the rest of its lease.
    assert_eq!(admitted(&mut s[1], 1, now), 1);
    assert_eq!(s[1].held_requests(0), 6);
    let busy = admitted(&mut s[0], 120, now);
    assert_eq!(busy + 1, 60 - 6);
    assert!(busy + 1 >= 60 - usize::try_from(bound).unwrap());
    // One second later shard 1's sweep returns its 6 tokens; with 1 s of refill, 7.
    clock.advance(Duration::from_secs(1));
    s[1].sweep(clock.now_ns());
    assert_eq!(s[1].held_requests(0), 0);
    assert_eq!(admitted(&mut s[0], 120, clock.now_ns()), 7);
}

#[test]
fn leases_are_refilled_in_batches_not_per_request() {
    let (clock, mut s) = shards(2, &key_config(6000));
    let now = clock.now_ns();
    let budget = s[0].table().keys[0].requests.clone().unwrap();
    admitted(&mut s[0], 1, now);
    assert_eq!(budget.available(now), 6000 - 8, "a lease of lease_size = 8");
    admitted(&mut s[0], 7, now);
    assert_eq!(budget.available(now), 6000 - 8, "7 more requests did not touch it");
    admitted(&mut s[0], 1, now);
    assert_eq!(budget.available(now), 6000 - 16);
}

/// A deterministic random walk of traffic over two shards, with `skew` the share of
/// requests on shard 0 (1.0 = all of them), time moving in random steps and each shard
/// sweeping once a simulated second. Demand far exceeds the limit throughout.
fn simulate(skew: f64, seed: u64) {
    const LIMIT: u64 = 120;
    let cfg = key_config(LIMIT as u32);
    let (clock, mut s) = shards(2, &cfg);
    let bound = s[0].table().settings.request_error_bound(LIMIT);
    let mut rng = fastrand::Rng::with_seed(seed);
    let start = clock.now_ns();
    let mut admitted_at: Vec<u64> = Vec::new();
    let mut next_sweep = [start + SEC, start + SEC + SEC / 2];
    while clock.now_ns() < start + 180 * SEC {
        for _ in 0..rng.usize(1..20) {
            let i = usize::from(rng.f64() >= skew);
            if s[i].acquire_request(0, clock.now_ns()).unwrap().is_ok() {
                admitted_at.push(clock.now_ns());
            }
        }
        clock.advance(Duration::from_millis(rng.u64(1..120)));
        for (i, at) in next_sweep.iter_mut().enumerate() {
            if clock.now_ns() >= *at {
                s[i].sweep(clock.now_ns());
                *at += SEC;
            }
        }
    }
    // Never more than the bucket (a minute's quota plus refill) plus one lease per shard,
    // over any window of admissions.
    for (a, &t0) in admitted_at.iter().enumerate() {
        for (b, &t1) in admitted_at.iter().enumerate().skip(a) {
            let count = (b - a + 1) as u64;
            let allowed = LIMIT + (t1 - t0) * LIMIT / (60 * SEC) + bound;
            assert!(count <= allowed, "skew {skew}: {count} admitted in [{t0}, {t1}], allowed {allowed}");
        }
    }
    // ...and never less than that promise minus one lease per shard.
    let elapsed = clock.now_ns() - start;
    let ideal = LIMIT + elapsed * LIMIT / (60 * SEC);
    let total = admitted_at.len() as u64;
    assert!(total + bound >= ideal, "skew {skew}: admitted {total}, ideal {ideal}, bound {bound}");
    assert!(total <= ideal + bound, "skew {skew}: admitted {total}, ideal {ideal}, bound {bound}");
}

#[test]
fn the_global_bound_holds_with_all_traffic_on_one_shard() {
    simulate(1.0, 1);
}

#[test]
fn the_global_bound_holds_with_traffic_spread_over_two_shards() {
    simulate(0.5, 2);
}

#[test]
fn the_global_bound_holds_under_heavy_skew() {
    for seed in 3..8 {
        simulate(0.95, seed);
    }
}

#[test]
fn two_threads_racing_on_one_key_admit_exactly_the_limit() {
    const LIMIT: u32 = 2_000_000;
    let cfg = key_config(LIMIT);
    let clock = ManualClock::new(Duration::from_secs(1_000), 0);
    let global = Arc::new(Global::new(2, clock.clone()));
    let both_leased = std::sync::Barrier::new(2);
    let counts: Vec<usize> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|w| {
                let (global, cfg, now, both_leased) = (global.clone(), cfg.clone(), clock.now_ns(), &both_leased);
                scope.spawn(move || {
                    let mut shard = Shard::new(w, global, &cfg);
                    // Each thread holds a lease before the race starts.
                    assert!(shard.acquire_request(0, now).unwrap().is_ok());
                    both_leased.wait();
                    let mut n = 1;
                    while shard.acquire_request(0, now).unwrap().is_ok() {
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(counts.iter().sum::<usize>(), LIMIT as usize, "{counts:?}");
}

#[test]
fn a_reload_changes_limits_and_keeps_spent_quota() {
    let first = key_config(60);
    let clock = ManualClock::new(Duration::from_secs(1_000), 0);
    let global = Arc::new(Global::new(1, clock.clone()));
    let mut shard = Shard::new(0, global, &first);
    let now = clock.now_ns();
    assert_eq!(admitted(&mut shard, 50, now), 50);
    // Same limit, new config object: same budget, nothing refilled.
    shard.sync(&key_config(60));
    assert_eq!(admitted(&mut shard, 50, now), 10);
    // Raised to 600: the new budget starts with what was left (0) and refills at 600/min.
    shard.sync(&key_config(600));
    assert_eq!(admitted(&mut shard, 50, now), 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(admitted(&mut shard, 50, clock.now_ns()), 10);
    // Removed: unlimited.
    shard.sync(&config("[[keys]]\nname = \"k\"\nkey = \"sk\"\n"));
    assert!(shard.acquire_request(0, clock.now_ns()).is_none());
}

#[test]
fn a_request_from_before_a_reload_finds_its_key_by_name() {
    let old = config("[[keys]]\nname = \"a\"\nkey = \"ka\"\nrpm = 5\n[[keys]]\nname = \"b\"\nkey = \"kb\"\nrpm = 7\n");
    let new = config("[[keys]]\nname = \"b\"\nkey = \"kb\"\nrpm = 7\n");
    let (_clock, mut s) = shards(1, &old);
    s[0].sync(&new);
    // Key "b" was index 1 in the old config and is index 0 now.
    assert_eq!(s[0].slot(&old, Some(1), "b"), Some(0));
    assert_eq!(s[0].slot(&old, Some(0), "a"), None);
    assert_eq!(s[0].slot(&new, Some(0), "b"), Some(0));
}

#[test]
fn client_limits_are_per_ip_and_their_memory_is_capped() {
    let cfg = config("[limits]\nip_rpm = 3\nmax_tracked_clients = 64\n");
    let (clock, mut s) = shards(2, &cfg);
    let now = clock.now_ns();
    let ip = |n: u32| IpAddr::from([10, 0, (n >> 8) as u8, n as u8]);
    let ok = |s: &mut Shard, n| s.acquire_client(ClientLimit::Http, ip(n), now).unwrap().is_ok();
    assert!((0..3).all(|_| ok(&mut s[0], 1)));
    assert!(!ok(&mut s[0], 1));
    assert!(!ok(&mut s[1], 1), "the limit is global across shards");
    assert!(ok(&mut s[1], 2), "another client is not affected");
    for n in 0..10_000 {
        ok(&mut s[0], n);
    }
    assert!(s[0].tracked_clients().0 <= 64);
    assert!(s[0].table().http_clients.as_ref().unwrap().len() <= 64 + 15);
    assert!(s[0].acquire_client(ClientLimit::WsConnect, ip(1), now).is_none(), "not configured");
}

#[test]
fn token_reservations_settle_through_the_lease() {
    let cfg = config("[[keys]]\nname = \"k\"\nkey = \"sk\"\ntpm = 100\n");
    let (clock, mut s) = shards(2, &cfg);
    let now = clock.now_ns();
    let r = s[0].reserve_tokens(0, 7, 262, now).unwrap().unwrap();
    assert_eq!(r.n, 100);
    s[0].refund_tokens(0, &r.budget, 78, now);
    assert_eq!(s[0].token_window(0, now).unwrap().remaining, 78);
    let denied = s[0].reserve_tokens(0, 90, 300, now).unwrap().unwrap_err();
    assert_eq!(denied.window.remaining, 0);
    assert!(s[0].acquire_request(0, now).is_none(), "no request limit on this key");
}
