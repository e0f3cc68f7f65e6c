//! The outbox sender (worker 0): sends due reply parts through each platform's send
//! API (`channel::build_send`) with the gateway's own upstream client (keep-alive
//! pool, TLS, timeouts), and records what became of each (`Store::outbox_result`).
//!
//! - Woken when a reply is queued (`Shared::kick_outbox`; then `GATHER` lets a burst
//!   gather, so one query serves it) and at least every `POLL` (parts backing off come
//!   due by time). Each pass asks the store for due parts; the
//!   store hands out only the next part of each reply, so parts go in order, while
//!   different replies are sent side by side (at most `MAX_SENDING`).
//! - A refused send is retried: after the platform's `Retry-After` / `retry_after`
//!   when it gave one (capped at `MAX_WAIT`), else with exponential backoff and jitter
//!   (1 s doubling to 5 minutes, each wait between half and all of it). After
//!   `MAX_ATTEMPTS` sends, or at once for a permanent refusal (bad token, unknown chat,
//!   expired Discord interaction), the part is dead-lettered: kept in the store, counted
//!   in `/api/channels` and logged.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use crate::channel::{build_send, classify, Verdict};
use crate::clock;
use crate::log;
use crate::stats::WorkerStats;
use crate::store::{self, OutboxEntry, SendOutcome};
use crate::upstream::{Endpoint, Outgoing, Timeouts};
use crate::worker::Worker;

/// Sends of one part before it is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 8;
/// Replies being sent at once.
const MAX_SENDING: usize = 256;
/// Longest wait between passes when nothing wakes the sender.
const POLL: Duration = Duration::from_millis(500);
/// After a wake-up, how long replies may gather before the query.
const GATHER: Duration = Duration::from_millis(10);
/// Parts asked for per pass.
const BATCH: usize = 512;
/// Backoff: the first wait and the longest.
const BACKOFF_FIRST_MS: u64 = 1_000;
const BACKOFF_MAX_MS: u64 = 300_000;
/// The longest `Retry-After` honoured.
const MAX_WAIT_MS: u64 = 3_600_000;
/// Most bytes of a platform's answer read (its verdict is in the first few hundred).
const MAX_ANSWER: usize = 64 * 1024;
const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    first_byte: Duration::from_secs(15),
    chunk: Duration::from_secs(15),
    total: Duration::from_secs(30),
};

/// Runs the sender on `worker` (worker 0) for the life of the process.
pub async fn send_loop(worker: Rc<Worker>) {
    let sending: Rc<RefCell<HashSet<u64>>> = Rc::default();
    let endpoints: Rc<RefCell<HashMap<String, Rc<Endpoint>>>> = Rc::default();
    let wake = worker.shared.outbox_kick.1.clone();
    let mut snapshot = worker.snapshot();
    loop {
        if monoio::time::timeout(POLL, wake.recv_async()).await.is_ok() {
            // Let a burst of replies gather: one query serves them all, and the
            // storage thread's write batches are not split by a read each time.
            monoio::time::sleep(GATHER).await;
        }
        // Endpoints follow the config: a reload may move a channel's `api_base`.
        let now_snap = worker.snapshot();
        if !std::sync::Arc::ptr_eq(&now_snap, &snapshot) {
            snapshot = now_snap;
            endpoints.borrow_mut().clear();
        }
        if sending.borrow().len() >= MAX_SENDING || snapshot.config.channels.is_empty() {
            continue;
        }
        let store = worker.turns.sessions.store().clone();
        let due = match store::ask(|done| store.outbox_due(clock::now_unix_ms(), BATCH, done)).await {
            Ok(due) => due,
            Err(e) => {
                log::warn(&format!("webhooks: cannot read the outbox: {e}"));
                continue;
            }
        };
        for entry in due {
            let mut s = sending.borrow_mut();
            if s.len() >= MAX_SENDING {
                break;
            }
            if !s.insert(entry.id) {
                continue;
            }
            let (worker, sending, endpoints) = (worker.clone(), sending.clone(), endpoints.clone());
            monoio::spawn(async move {
                let id = entry.id;
                let outcome = send(&worker, &endpoints, &entry).await;
                let sent = outcome == SendOutcome::Sent;
                let store = worker.turns.sessions.store().clone();
                if let Err(e) = store::ask(|done| store.outbox_result(id, outcome, Some(done))).await {
                    log::warn(&format!("webhooks: cannot record a send of outbox part {id}: {e}"));
                }
                sending.borrow_mut().remove(&id);
                if sent {
                    // The reply's next part, if any, is due now.
                    worker.shared.kick_outbox();
                }
            });
        }
    }
}

/// One send of an outbox part, and what it means.
async fn send(worker: &Worker, endpoints: &RefCell<HashMap<String, Rc<Endpoint>>>, e: &OutboxEntry) -> SendOutcome {
    let snap = worker.snapshot();
    let name = &e.part.channel;
    let stats = worker.channel_stats(name);
    let dead = |error: String| {
        WorkerStats::add(&stats.dead_letters, 1);
        log::error(&format!(
            "webhooks: reply part {} to delivery {} on {name} dead-lettered: {error}",
            e.part.part, e.spool_id
        ));
        SendOutcome::Dead { error }
    };
    let Some((index, ch)) = snap.config.channels.iter().enumerate().find(|(_, c)| c.name == *name) else {
        return dead(format!("channel {name} is no longer configured"));
    };
    let req = match build_send(ch, &e.part.target, &e.part.text, e.part.part) {
        Ok(r) => r,
        Err(error) => return dead(error),
    };
    let endpoint = match endpoint_for(endpoints, &snap, index, &req.base) {
        Ok(ep) => ep,
        Err(error) => return dead(error),
    };
    let headers: Vec<(&str, &str)> = req.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    // A callback URL with no path is sent to `/`.
    let path = if endpoint.base_path.is_empty() && req.path.is_empty() { "/" } else { req.path.as_str() };
    let out = Outgoing { method: req.method, path, headers: &headers, body: Bytes::from(req.body) };
    let verdict = match worker.client.send(&endpoint, &out, TIMEOUTS).await {
        Ok(mut resp) => {
            let body = resp.body.collect(MAX_ANSWER).await.unwrap_or_default();
            let after = resp.retry_after.map(|d| d.as_secs_f64());
            classify(ch.kind, resp.status, after, &body)
        }
        Err(err) => Verdict::Retry { after: err.retry_after().map(|d| d.as_secs_f64()), error: err.to_string() },
    };
    match verdict {
        Verdict::Sent => {
            WorkerStats::add(&stats.replies_sent, 1);
            SendOutcome::Sent
        }
        Verdict::Dead { error } => dead(error),
        Verdict::Retry { error, .. } if e.attempts + 1 >= MAX_ATTEMPTS => {
            dead(format!("gave up after {} attempts: {error}", e.attempts + 1))
        }
        Verdict::Retry { after, error } => {
            WorkerStats::add(&stats.retries, 1);
            let wait_ms = retry_wait_ms(e.attempts + 1, after);
            log::warn(&format!(
                "webhooks: reply part {} to delivery {} on {name} not accepted ({error}); retry {} in {} ms",
                e.part.part,
                e.spool_id,
                e.attempts + 1,
                wait_ms
            ));
            SendOutcome::Retry { at_ms: clock::now_unix_ms() + wait_ms, error }
        }
    }
}

/// How long to wait before send number `attempt + 1`: the platform's `after` (seconds)
/// when given, else `BACKOFF_FIRST_MS * 2^(attempt-1)` capped at `BACKOFF_MAX_MS`,
/// with "equal jitter" (between half and all of it).
pub fn retry_wait_ms(attempt: u32, after: Option<f64>) -> u64 {
    if let Some(secs) = after.filter(|s| s.is_finite() && *s >= 0.0) {
        // Whole milliseconds, never below what the platform asked.
        return ((secs * 1000.0).ceil() as u64).min(MAX_WAIT_MS);
    }
    let exp = BACKOFF_FIRST_MS.saturating_mul(1u64 << attempt.saturating_sub(1).min(20)).min(BACKOFF_MAX_MS);
    exp / 2 + fastrand::u64(0..=exp / 2)
}

/// The endpoint of channel number `index` at `base` (its `api_base` or callback URL),
/// made once per config.
fn endpoint_for(
    cache: &RefCell<HashMap<String, Rc<Endpoint>>>,
    snap: &crate::worker::Snapshot,
    index: usize,
    base: &str,
) -> Result<Rc<Endpoint>, String> {
    if let Some(ep) = cache.borrow().get(base) {
        return Ok(ep.clone());
    }
    let tls = snap.channel_tls.get(index).cloned().flatten();
    let ep = Rc::new(Endpoint::parse(base, tls)?);
    cache.borrow_mut().insert(base.to_string(), ep.clone());
    Ok(ep)
}

#[cfg(test)]
mod tests {
    use super::retry_wait_ms;

    #[test]
    fn waits_follow_the_platform_or_back_off_with_jitter() {
        assert_eq!(retry_wait_ms(1, Some(5.0)), 5_000);
        assert_eq!(retry_wait_ms(3, Some(0.25)), 250);
        assert_eq!(retry_wait_ms(1, Some(1e9)), 3_600_000);
        for _ in 0..100 {
            let first = retry_wait_ms(1, None);
            assert!((500..=1_000).contains(&first), "{first}");
            let fourth = retry_wait_ms(4, None);
            assert!((4_000..=8_000).contains(&fourth), "{fourth}");
            let late = retry_wait_ms(30, None);
            assert!((150_000..=300_000).contains(&late), "{late}");
        }
    }
}
