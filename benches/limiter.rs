//! The rate limiter's per-request check: clawgate's per-core shard (a lease of tokens
//! held by the core, refilled from the global budget with one CAS every `lease_size`
//! checks) against the naive alternative, one `Mutex<HashMap<key, bucket>>` shared by
//! every thread. Both read the same clock on every check (the limiter's
//! `SystemClock`, `CLOCK_MONOTONIC_COARSE`), both on one key with a limit that never
//! runs out during the bench. At 1 thread the difference is
//! the lock; at 2 threads it is the contention on the lock's cache line versus one
//! shared CAS per lease. Inputs are built outside the timed loops.
//!
//! Run: `cargo bench --bench limiter -- --quick` (or `--measurement-time 2`).

// A bench whose setup fails should stop loudly.
#![allow(clippy::panic)]

use std::collections::HashMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use clawgate::auth::Identity;
use clawgate::config::{Config, Role};
use clawgate::ratelimit::{Global, Limiter, Shard, SharedClock, SystemClock};
use criterion::{criterion_group, criterion_main, Criterion};

/// 4e9 requests a minute: never exhausted while the bench runs.
const RPM: u64 = 4_000_000_000;

fn config() -> Arc<Config> {
    let text = format!("[[keys]]\nname = \"k\"\nkey = \"sk\"\nrpm = {RPM}\n");
    Arc::new(Config::from_toml_str(&text, None).unwrap_or_else(|e| panic!("{e}")))
}

/// The naive limiter: a token bucket per key behind one global mutex.
struct MutexLimiter {
    clock: SharedClock,
    buckets: Mutex<HashMap<u64, Bucket>>,
}

struct Bucket {
    tokens: f64,
    last_ns: u64,
    per_ns: f64,
    cap: f64,
}

impl MutexLimiter {
    fn new(clock: SharedClock) -> Self {
        let cap = RPM as f64;
        let bucket = Bucket { tokens: cap, last_ns: clock.now_ns(), per_ns: cap / 60e9, cap };
        MutexLimiter { clock, buckets: Mutex::new(HashMap::from([(7, bucket)])) }
    }

    fn check(&self, key: u64) -> bool {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Some(b) = map.get_mut(&key) else { return true };
        let now = self.clock.now_ns();
        let elapsed = now.saturating_sub(b.last_ns) as f64;
        b.last_ns = now;
        b.tokens = (b.tokens + elapsed * b.per_ns).min(b.cap);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Runs `per_thread(thread)` on `threads` threads started together; returns the
/// slowest thread's time for `iters` checks (each thread does `iters`).
fn contended<F: Fn(usize) -> Box<dyn FnMut() + Send> + Sync>(threads: usize, iters: u64, per_thread: &F) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut check = per_thread(t);
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        check();
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).max().unwrap_or_default()
    })
}

fn bench(c: &mut Criterion) {
    let cfg = config();
    let mut group = c.benchmark_group("limiter_check");
    for threads in [1, 2] {
        let global = Arc::new(Global::new(threads, SystemClock::shared()));
        group.bench_function(format!("shard_lease/{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, &|t| {
                    let mut shard = Shard::new(t, global.clone(), &cfg);
                    let clock = global.clock().clone();
                    Box::new(move || {
                        black_box(shard.acquire_request(black_box(0), clock.now_ns()));
                    })
                })
            })
        });
        let naive = Arc::new(MutexLimiter::new(global.clock().clone()));
        group.bench_function(format!("mutex_hashmap/{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, &|_| {
                    let naive = naive.clone();
                    Box::new(move || {
                        black_box(naive.check(black_box(7)));
                    })
                })
            })
        });
    }
    group.finish();

    // The whole per-request call the dispatcher makes (shard + identity lookup +
    // RefCell + the header window), on one thread.
    let global = Arc::new(Global::new(1, SystemClock::shared()));
    let limiter = Limiter::new(0, global, &cfg);
    let who = Identity { name: Arc::from("k"), role: Role::User, key_index: Some(0) };
    let peer: Option<IpAddr> = None;
    c.bench_function("limiter_check_request/1_thread", |b| {
        b.iter(|| black_box(limiter.check_request(&cfg, black_box(&who), peer).is_ok()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
