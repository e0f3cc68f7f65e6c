//! The storage thread alone (issue 13): how many turns per second the SQLite store
//! commits, and how many share one commit (fsync), with no HTTP in the way.
//!
//! ```text
//! cargo bench --bench store
//! ```
//!
//! - `store/turns_queued/{ack,async}`: bursts of up to 4,096 turn writes (a new session each: its
//!   row, a user message and a reply of ~100 bytes) queued at once, as many workers'
//!   finished turns arrive together; time until the last is committed. Group commit
//!   puts many in each transaction.
//! - `store/turns_one_by_one/ack`: one turn, wait for its commit, the next: one
//!   transaction and one fsync per turn, the floor group commit improves on.
//! - `store/lockstep_64_sessions/{ack,async}`: the load test's `/api/chat` pattern. 64
//!   sessions each finish a turn (a question and a reply, the older turn trimmed, as
//!   with `[sessions] max_messages = 2`), all queued at once, then the next 64. The time
//!   reported is the **storage thread's CPU time** (its `schedstat`), not wall time: the
//!   store's cost per turn, without the waits between batches.
//! - `store/lockstep_64_sessions_200_messages/async`: the same with the default history
//!   (`max_messages = 200`: 100 turn rows a session once full, the oldest trimmed each
//!   turn), after a first pass that fills it.
//!
//! Each run prints the store's own count of commits and writes (turns per commit).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::mpsc;
use std::time::{Duration, Instant};

use clawgate::chat::{Message, MessageRole};
use clawgate::config::{Durability, SessionsConfig, StoreConfig};
use clawgate::store::{MessageRow, SessionRow, SqliteStore, Store, Write};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Most writes queued at once: as many turns as 4,096 connections finishing together.
const BURST: u64 = 4096;

fn turn(n: u64) -> Write {
    let id = format!("bench-{n}");
    let text = |role, t: &str| Message::text(role, t);
    Write::Turn {
        row: SessionRow {
            id,
            channel: "api".into(),
            model: "gpt-4o-mini".into(),
            owner: "bench".into(),
            created_at_ms: 1_700_000_000_000 + n,
            updated_at_ms: 1_700_000_000_000 + n,
            appended: 2,
            message_count: 2,
        },
        messages: vec![
            MessageRow {
                seq: 0,
                message: text(MessageRole::User, "Hello from the load test, a question of about a hundred bytes?"),
                at_ms: 1,
            },
            MessageRow {
                seq: 1,
                message: text(MessageRole::Assistant, "A reply of about the same size, as the mock upstream gives."),
                at_ms: 2,
            },
        ],
        trim: None,
        answer: None,
    }
}

/// A turn of session `s` (of 64), its `k`-th: messages `2k` and `2k + 1`, with the
/// history kept to `keep` messages (the trim drops the older ones).
fn lockstep_turn(s: u64, k: u64, keep: u64) -> Write {
    let Write::Turn { mut row, mut messages, .. } = turn(s) else { unreachable!() };
    row.appended = 2 * k + 2;
    row.message_count = row.appended.min(keep);
    row.updated_at_ms += k;
    for (i, m) in messages.iter_mut().enumerate() {
        m.seq = 2 * k + i as u64;
    }
    let first_kept = row.appended - row.message_count;
    Write::Turn { row, messages, trim: (first_kept > 0).then_some(first_kept), answer: None }
}

/// Queues one turn for each of sessions `0..n` (`k`-th turn, `keep` messages kept) and
/// waits for all.
fn lockstep_round(store: &SqliteStore, n: u64, k: u64, keep: u64) {
    let (tx, rx) = mpsc::channel();
    for s in 0..n {
        let tx = tx.clone();
        store.write(
            lockstep_turn(s, k, keep),
            Some(Box::new(move |r| {
                let _ = tx.send(r.is_ok());
            })),
        );
    }
    for _ in 0..n {
        assert!(rx.recv().unwrap(), "a write failed");
    }
}

/// CPU time the storage thread (`clawgate-store`) has used, from
/// `/proc/self/task/*/schedstat` (nanoseconds on the CPU).
fn store_thread_cpu() -> Duration {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == "clawgate-store" {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            ns += stat.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

fn open(durability: Durability) -> (SqliteStore, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("clawgate-bench-store-{}-{}", std::process::id(), durability));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = StoreConfig { path: dir.join("bench.db"), durability, ..StoreConfig::default() };
    (SqliteStore::open(&cfg, &SessionsConfig::default()).unwrap(), dir)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("store");
    g.sample_size(10).measurement_time(Duration::from_secs(8)).throughput(Throughput::Elements(1));
    let mut next = 0u64;
    for durability in [Durability::Ack, Durability::Async] {
        let (store, dir) = open(durability);
        g.bench_function(format!("turns_queued/{durability}"), |b| {
            b.iter_custom(|iters| {
                let (tx, rx) = mpsc::channel();
                let start = Instant::now();
                // Bursts of at most BURST: the store's queue is bounded (a write past
                // it fails at once, as a turn would get 503).
                let mut left = iters;
                while left > 0 {
                    let burst = left.min(BURST);
                    for _ in 0..burst {
                        next += 1;
                        let tx = tx.clone();
                        store.write(
                            turn(next),
                            Some(Box::new(move |r| {
                                let _ = tx.send(r.is_ok());
                            })),
                        );
                    }
                    for _ in 0..burst {
                        assert!(rx.recv().unwrap(), "a write failed");
                    }
                    left -= burst;
                }
                start.elapsed()
            })
        });
        let st = store.status();
        eprintln!(
            "store ({durability}): {} writes in {} commits: {:.1} turns per commit, commit {:.2} ms (recent), {:.2} ms (max)",
            st.writes,
            st.commits,
            st.writes as f64 / st.commits.max(1) as f64,
            st.commit_latency_ms,
            st.commit_latency_max_ms
        );
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
    for (durability, keep, name) in [
        (Durability::Ack, 2, "lockstep_64_sessions/ack"),
        (Durability::Async, 2, "lockstep_64_sessions/async"),
        (Durability::Async, 200, "lockstep_64_sessions_200_messages/async"),
    ] {
        let (store, dir) = open(durability);
        let mut k = 0u64;
        // Histories full before the measurement.
        while 2 * k < keep {
            lockstep_round(&store, 64, k, keep);
            k += 1;
        }
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let before = store_thread_cpu();
                let mut left = iters;
                while left > 0 {
                    let n = left.min(64);
                    lockstep_round(&store, n, k, keep);
                    k += 1;
                    left -= n;
                }
                store_thread_cpu() - before
            })
        });
        let st = store.status();
        eprintln!(
            "store lockstep ({durability}): {:.1} turns per commit, commit {:.2} ms (recent)",
            st.writes as f64 / st.commits.max(1) as f64,
            st.commit_latency_ms
        );
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
    let (store, dir) = open(Durability::Ack);
    g.bench_function("turns_one_by_one/ack", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                next += 1;
                let (tx, rx) = mpsc::channel();
                store.write(
                    turn(next),
                    Some(Box::new(move |r| {
                        let _ = tx.send(r.is_ok());
                    })),
                );
                assert!(rx.recv().unwrap());
            }
            start.elapsed()
        })
    });
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
