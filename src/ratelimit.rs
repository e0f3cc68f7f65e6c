//! Quotas: per-key requests and tokens per minute, per-client-IP limits, and the
//! per-socket message limit of `/ws`, sharded per core while holding a global limit.
//!
//! # Shape
//! Every limit has one global [`Budget`](budget::Budget) (a token bucket of a minute's
//! quota in one `AtomicU64`, see `budget.rs`), owned by the process-wide
//! [`Global`](registry::Global) in `worker::Shared`. Each worker owns a [`Limiter`]
//! (its [`Shard`](shard::Shard)) holding a [`Lease`](lease::Lease) per budget it
//! uses: tokens already taken from the budget. A request spends one token from its
//! lease with plain field arithmetic: no lock, no atomic, no shared cache line. Only
//! when the lease is dry does the core take another batch with one compare-and-swap.
//!
//! # The global error bound
//! With `W` workers and a limit of `L` per minute, a lease is
//! `q = min(lease_size, max(1, L / (4 W)))` tokens (a key with `rpm = 60` on 2
//! workers: `q = 7`, bound 14; the default `lease_size = 8` caps every request
//! limit's error at `8 W`). A core holds at most `q` unspent tokens of a budget, so:
//! - over any interval of length `t`, at most `L + L t / 60 s + q W` requests are
//!   admitted (the token bucket's promise plus the leases held when it began);
//! - a request is refused only when the budget cannot give even one token, while the
//!   other cores hold at most `q (W - 1)` unspent tokens, which they return within
//!   1 s ([`lease::LEASE_TTL_NS`]) when idle, or spend.
//!
//! So with all traffic on one core the limit is exact, and spread over `W` cores it
//! is within `q W`. `shard/tests.rs` checks both, and the bound across real threads;
//! `tests/it/ratelimit.rs` checks it end to end. Token limits work the same way with
//! leases of up to `256 lease_size` tokens, plus the overshoot of turns in flight
//! (settled from the provider's usage, possibly into debt; see `turn.rs`).
//!
//! # What is limited, and what the client sees
//! - Requests to authenticated routes: per key, `keys[].rpm`, else `limits.rpm`. In
//!   open mode (no keys) per client IP with `limits.ip_rpm`. A failed authentication
//!   counts against its IP's `limits.ip_rpm`, so a key-guessing flood gets `429`.
//!   Open routes (`/health`, `/metrics`, webhooks) are not limited: probes, scrapers
//!   and platforms must get through, and webhooks are verified by signature.
//! - Failed authentication, HTTP and WebSocket alike ([`Limiter::auth_failed`]):
//!   `limits.auth_failures_per_minute` refused keys from one client IP within a minute
//!   lock it out for `limits.auth_lockout_secs` (`lockout.rs`, global over the
//!   workers). While locked out, every request that carries a key gets `429
//!   RATE_LIMITED` with `Retry-After` (the seconds left) before the key is looked at
//!   ([`Limiter::check_lockout`]), a valid key included; `X-RateLimit-Limit` is then
//!   the failure limit and `X-RateLimit-Reset` the lockout's end. Failures and
//!   lockouts are counted in the worker's `WorkerStats` (`auth_failures`,
//!   `auth_lockouts`). A missing key is not a failure: it only counts against
//!   `limits.ip_rpm` ([`Limiter::check_unauthenticated`]).
//! - Tokens of chat turns: per key, `keys[].tpm`, else `limits.tpm` (`turn.rs`).
//! - Every response to an authenticated route whose caller has a request limit
//!   carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` (this core's estimate: the
//!   budget as of its last lease, refilled to now, plus its lease) and
//!   `X-RateLimit-Reset` (unix seconds when the budget is full again); with a token
//!   limit also `X-RateLimit-Limit-Tokens` and `X-RateLimit-Remaining-Tokens`. A
//!   caller with no limit gets none of them: a number would be a lie, and absence is
//!   what clients already read as "unlimited". A refusal is `429 RATE_LIMITED` with
//!   `Retry-After` (whole seconds until the request would succeed, >= 1).
//! - Client IPs are the socket peer (no proxy headers are trusted); IPv6 per /64.
//!
//! # WebSocket API (for `/ws`)
//! - [`Limiter::ws_connect`]`(peer_ip)` before accepting an upgrade: `Err` is a
//!   `429 RATE_LIMITED` `ApiError` with `retry_after` (`limits.ws_connects_per_minute_per_ip`);
//!   answer it with `api::error_response` instead of upgrading.
//! - [`Limiter::ws_socket`]`()` once per socket gives a [`SocketLimiter`]; call its
//!   `check()` for every frame received. `Err` is `RATE_LIMITED` with `retry_after`;
//!   send [`ws_error_frame`]`(&err)` (`{"type":"error","code":"RATE_LIMITED",
//!   "message","retryAfter":N}`), drop the frame and keep the socket open.
//! - A `message` frame is a turn: call [`Limiter::check_request`] with the socket's
//!   identity first (the key's `rpm`), then `start_turn` reserves its tokens as for
//!   REST, and a turn cut for tokens ends with `TurnEvent::Failed(RATE_LIMITED)`.
//! - Authentication: an `Authorization` header on the upgrade goes through
//!   `server::dispatch` like any request. For an `auth` frame with a token, call
//!   [`Limiter::check_lockout`]`(peer)` before checking the token (`Err`: send the
//!   429 and close, without looking at the token); when the token is refused, call
//!   [`Limiter::auth_failed`]`(peer)` (`Err`: answer its `RATE_LIMITED` instead of
//!   `UNAUTHORIZED`). A first frame that carries no token is not a failure:
//!   [`Limiter::check_unauthenticated`] as before.
//!
//! # Memory
//! Key state is bounded by the config. Per-client state is bounded by
//! `limits.max_tracked_clients` per limit in the registry and per worker in the
//! shards, whatever the traffic; idle clients are evicted (see `clients.rs`). The
//! lockout registry holds as many clients at most (`lockout.rs`).
//!
//! # Reload
//! [`Limiter::reload`] (from `Control::Reload`) moves the shard to the new config's
//! budgets; spent quota carries over by key name (`registry.rs`). [`sweep_loop`]
//! runs the once-a-second housekeeping of each worker.

pub mod budget;
pub mod clients;
pub mod clock;
pub mod lease;
pub mod lockout;
pub mod registry;
pub mod shard;
pub mod socket;
pub mod turn;

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Identity;
use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::log;
use crate::stats::WorkerStats;
use lockout::Failure;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use registry::Global;
pub use shard::{ClientLimit, Denied, Shard, Verdict, Window};
pub use socket::{ws_error_frame, SocketLimiter};
pub use turn::TurnQuota;

/// How often each worker runs [`Limiter::sweep`].
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The rate-limit headers of one response, as values: `requests` is (limit,
/// remaining, reset in unix seconds), `tokens` is (limit, remaining).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaHeaders {
    pub requests: Option<(u64, u64, u64)>,
    pub tokens: Option<(u64, u64)>,
}

impl QuotaHeaders {
    /// The headers as (lower-case name, value) pairs, in a stable order:
    /// `x-ratelimit-limit`, `-remaining`, `-reset`, `-limit-tokens`, `-remaining-tokens`.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        let requests = self.requests.into_iter().flat_map(|(limit, remaining, reset)| {
            [
                ("x-ratelimit-limit", limit.to_string()),
                ("x-ratelimit-remaining", remaining.to_string()),
                ("x-ratelimit-reset", reset.to_string()),
            ]
        });
        let tokens = self.tokens.into_iter().flat_map(|(limit, remaining)| {
            [("x-ratelimit-limit-tokens", limit.to_string()), ("x-ratelimit-remaining-tokens", remaining.to_string())]
        });
        requests.chain(tokens)
    }
}

/// What a response to an admitted (or refused) request is told about its quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// The request limit's window; `None` = no request limit (no headers).
    requests: Option<Window>,
    /// The key whose token window goes in the token headers, if it has one.
    token_slot: Option<usize>,
}

/// A refused request: the `429` and the quota for its headers.
#[derive(Debug, Clone)]
pub struct Refused {
    pub error: ApiError,
    pub quota: Quota,
}

/// One worker's limiter: its shard, behind a `RefCell` (shared with the turns'
/// reservations, which settle through it when dropped), and the worker's counters
/// for failed authentications. No method awaits while the shard is borrowed.
#[derive(Debug)]
pub struct Limiter {
    clock: SharedClock,
    shard: Rc<RefCell<Shard>>,
    stats: Arc<WorkerStats>,
}

impl Limiter {
    /// Worker `worker`'s limiter on `global`, for `config`.
    pub fn new(worker: usize, global: Arc<Global>, config: &Arc<Config>) -> Self {
        let clock = global.clock().clone();
        let shard = Rc::new(RefCell::new(Shard::new(worker, global, config)));
        Limiter { clock, shard, stats: Arc::default() }
    }

    /// This limiter counting failed authentications and lockouts into `stats` (the
    /// worker's counters; without it, into counters of its own).
    pub fn with_stats(mut self, stats: Arc<WorkerStats>) -> Self {
        self.stats = stats;
        self
    }

    /// The counters this limiter writes.
    pub fn stats(&self) -> &WorkerStats {
        &self.stats
    }

    /// Applies a reloaded config's limits (see `registry.rs` for what carries over).
    pub fn reload(&self, config: &Arc<Config>) {
        self.shard.borrow_mut().sync(config);
    }

    /// Once-a-second housekeeping: stale leases go back, idle clients are evicted.
    pub fn sweep(&self) {
        let now = self.clock.now_ns();
        self.shard.borrow_mut().sweep(now);
    }

    /// The shard, for tests and benches.
    pub fn with_shard<R>(&self, f: impl FnOnce(&mut Shard) -> R) -> R {
        f(&mut self.shard.borrow_mut())
    }

    /// Counts one request of an authenticated caller: its key's request limit, or in
    /// open mode its IP's `limits.ip_rpm`. Runs after authentication, before the
    /// handler. `config` is the snapshot the request was authenticated against.
    pub fn check_request(&self, config: &Config, who: &Identity, peer: Option<IpAddr>) -> Result<Quota, Refused> {
        let now = self.clock.now_ns();
        let mut shard = self.shard.borrow_mut();
        let Some(slot) = shard.slot(config, who.key_index, &who.name) else {
            if who.key_index.is_some() {
                // The key left the config in a reload while this request was on its way.
                return Ok(Quota::default());
            }
            return client_check(&mut shard, ClientLimit::Http, peer, now);
        };
        let token_slot = shard.token_window(slot, now).map(|_| slot);
        match shard.acquire_request(slot, now) {
            None => Ok(Quota { requests: None, token_slot }),
            Some(Ok(window)) => Ok(Quota { requests: Some(window), token_slot }),
            Some(Err(denied)) => Err(Refused {
                error: refusal(&denied, "requests per minute for this key"),
                quota: Quota { requests: Some(denied.window), token_slot },
            }),
        }
    }

    /// Counts a request that brought no credentials against its IP's `limits.ip_rpm`.
    /// `Err`: answer `429` instead of `401`.
    pub fn check_unauthenticated(&self, peer: Option<IpAddr>) -> Result<Quota, Refused> {
        let now = self.clock.now_ns();
        client_check(&mut self.shard.borrow_mut(), ClientLimit::Http, peer, now)
    }

    /// Refuses credentials from a locked-out address: call it for every request (or
    /// WebSocket `auth` frame) that carries a key, before the key is checked. `Err`:
    /// answer its `429` (with `Retry-After`, the seconds the lockout has left) and
    /// do not look at the key. Costs one atomic load while no lockout is running.
    pub fn check_lockout(&self, peer: Option<IpAddr>) -> Result<(), Refused> {
        let Some(ip) = peer else { return Ok(()) };
        let shard = self.shard.borrow();
        let Some(lockouts) = shard.lockouts().filter(|l| !l.never_locked()) else { return Ok(()) };
        let now = self.clock.now_ns();
        match lockouts.locked_until(ip, now) {
            None => Ok(()),
            Some(until_ns) => Err(lockout_refusal(lockouts.limit(), until_ns, now)),
        }
    }

    /// Counts credentials that were presented and refused (a wrong key, a malformed
    /// `Authorization`): one failure towards the lockout of `peer`
    /// (`limits.auth_failures_per_minute`) and one request against its
    /// `limits.ip_rpm`, both counted in the worker's stats. `Ok`: answer `401` with
    /// the quota's headers. `Err`: answer this `429` instead: the lockout's, when this
    /// failure began it or one is running, else the exhausted `ip_rpm`'s.
    pub fn auth_failed(&self, peer: Option<IpAddr>) -> Result<Quota, Refused> {
        WorkerStats::add(&self.stats.auth_failures, 1);
        let now = self.clock.now_ns();
        let mut shard = self.shard.borrow_mut();
        let locked = match (peer, shard.lockouts()) {
            (Some(ip), Some(lockouts)) => match lockouts.record_failure(ip, now) {
                Failure::Counted { .. } => None,
                Failure::LockedOut { until_ns, began } => {
                    if began {
                        WorkerStats::add(&self.stats.auth_lockouts, 1);
                        let secs = lockouts.lockout_ns() / 1_000_000_000;
                        log::info(&format!(
                            "client {} locked out for {secs} s after {} failed authentications in a minute",
                            clients::client_key(ip),
                            lockouts.limit()
                        ));
                    }
                    Some(lockout_refusal(lockouts.limit(), until_ns, now))
                }
            },
            _ => None,
        };
        let per_ip = client_check(&mut shard, ClientLimit::Http, peer, now);
        match locked {
            Some(refused) => Err(refused),
            None => per_ip,
        }
    }

    /// The `X-RateLimit-*` headers of `quota` (PROTOCOL.md "Conventions"), for the
    /// caller to add to its response. The token headers are read now, so a
    /// non-streamed turn shows its settled usage.
    pub fn headers(&self, quota: &Quota) -> QuotaHeaders {
        let requests = quota.requests.map(|w| (w.limit, w.remaining, self.clock.unix_secs(w.reset_ns)));
        let tokens = quota.token_slot.and_then(|slot| self.shard.borrow().token_window(slot, self.clock.now_ns()));
        QuotaHeaders { requests, tokens: tokens.map(|t| (t.limit, t.remaining)) }
    }

    /// Counts a WebSocket upgrade from `peer` (`limits.ws_connects_per_minute_per_ip`).
    /// `Err`: refuse the upgrade with this `429`.
    pub fn ws_connect(&self, peer: IpAddr) -> Result<(), ApiError> {
        let now = self.clock.now_ns();
        match self.shard.borrow_mut().acquire_client(ClientLimit::WsConnect, peer, now) {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(denied)) => Err(refusal(&denied, "WebSocket connects per minute from this address")),
        }
    }

    /// A message limiter for a new WebSocket (`limits.ws_messages_per_minute`).
    pub fn ws_socket(&self) -> SocketLimiter {
        let per_minute = self.shard.borrow().table().settings.ws_messages_per_minute;
        SocketLimiter::new(per_minute, self.clock.clone())
    }
}

fn client_check(shard: &mut Shard, limit: ClientLimit, peer: Option<IpAddr>, now: u64) -> Result<Quota, Refused> {
    let Some(ip) = peer else { return Ok(Quota::default()) };
    match shard.acquire_client(limit, ip, now) {
        None => Ok(Quota::default()),
        Some(Ok(window)) => Ok(Quota { requests: Some(window), token_slot: None }),
        Some(Err(denied)) => Err(Refused {
            error: refusal(&denied, "requests per minute from this address"),
            quota: Quota { requests: Some(denied.window), token_slot: None },
        }),
    }
}

/// The `429` of a locked-out address: its `Retry-After` is the time the lockout has
/// left, its headers show the failure limit with nothing remaining until the end.
fn lockout_refusal(limit: u32, until_ns: u64, now: u64) -> Refused {
    let secs = until_ns.saturating_sub(now).div_ceil(1_000_000_000).max(1);
    let error = ApiError::new(
        ErrorCode::RateLimited,
        format!("too many failed authentications from this address; locked out, retry in {secs} s"),
    )
    .with_retry_after(secs);
    let window = Window { limit: u64::from(limit), remaining: 0, reset_ns: until_ns };
    Refused { error, quota: Quota { requests: Some(window), token_slot: None } }
}

fn refusal(denied: &Denied, what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::RateLimited,
        format!("rate limit exceeded: {} {what}; retry in {} s", denied.window.limit, denied.retry_after_secs),
    )
    .with_retry_after(denied.retry_after_secs)
}

/// Runs `limiter.sweep()` every [`SWEEP_INTERVAL`], forever (spawned per worker; it
/// ends with the worker's runtime).
pub async fn sweep_loop(limiter: Rc<Limiter>) {
    loop {
        monoio::time::sleep(SWEEP_INTERVAL).await;
        limiter.sweep();
    }
}

#[cfg(test)]
mod tests;
