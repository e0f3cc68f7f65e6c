//! Failure policy for provider calls: exponential backoff with full jitter, bounded
//! honouring of `Retry-After`, and a per-worker circuit breaker. The breaker opens
//! after `FAIL_THRESHOLD` consecutive failures (connect errors, timeouts, 5xx/529; a
//! 429 is the provider saying "slow down", not "down"), refuses calls while open, and
//! after a cool-down lets one probe through (half-open): success closes it, failure
//! reopens it with a doubled cool-down. Time is passed in, so tests need no sleeping.
//! Its state, recent latency and error rate are published to `ProviderHealth` atomics
//! that `/health/detailed` reads from any core.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// Consecutive failures that open the breaker.
pub const FAIL_THRESHOLD: u32 = 5;
/// First cool-down; doubles on each failed probe up to `MAX_COOL_DOWN`.
pub const COOL_DOWN: Duration = Duration::from_secs(5);
pub const MAX_COOL_DOWN: Duration = Duration::from_secs(60);
/// Longest `Retry-After` the gateway waits out itself; longer ones fail the call.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(20);

/// Delay before retry `attempt` (0-based): `Retry-After` if the provider sent one
/// (capped: `None` means "too long, give up"), else 200 ms * 2^attempt, capped at 5 s,
/// with full jitter.
pub fn backoff(attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Option<Duration> {
    if let Some(ra) = retry_after {
        return (ra <= RETRY_AFTER_CAP).then_some(ra);
    }
    let base = Duration::from_millis(200).saturating_mul(1u32 << attempt.min(10));
    let capped = base.min(Duration::from_secs(5));
    Some(capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
}

/// Breaker states, as shown by `/health/detailed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open { until: Instant },
    HalfOpen,
}

/// One worker's breaker for one provider.
#[derive(Debug)]
pub struct Breaker {
    state: State,
    failures: u32,
    cool_down: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker { state: State::Closed, failures: 0, cool_down: COOL_DOWN }
    }
}

impl Breaker {
    /// Whether a call may go out now. While half-open only one probe is let through.
    pub fn admit(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed => true,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen;
                true
            }
            State::Open { .. } | State::HalfOpen => false,
        }
    }

    pub fn success(&mut self) {
        self.state = State::Closed;
        self.failures = 0;
        self.cool_down = COOL_DOWN;
    }

    pub fn failure(&mut self, now: Instant) {
        self.failures += 1;
        match self.state {
            State::HalfOpen => {
                self.cool_down = (self.cool_down * 2).min(MAX_COOL_DOWN);
                self.state = State::Open { until: now + self.cool_down };
            }
            State::Closed if self.failures >= FAIL_THRESHOLD => {
                self.state = State::Open { until: now + self.cool_down };
            }
            _ => {}
        }
    }

    pub fn state(&self) -> State {
        self.state
    }
}

/// A provider's health as seen by one worker, readable from any core.
#[derive(Debug, Default)]
pub struct ProviderHealth {
    /// 0 up, 1 degraded (half-open or recent errors), 2 down (open).
    state: AtomicU8,
    /// Exponentially weighted latency to the response head, microseconds.
    latency_us: AtomicU64,
    /// Exponentially weighted error rate, parts per million.
    error_ppm: AtomicU64,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    /// Time to the response head of successful calls (`/metrics`).
    pub latency: crate::stats::Histogram,
    /// Failed calls by kind, `UPSTREAM_ERROR_KINDS` order (`/metrics`).
    pub error_kinds: [AtomicU64; UPSTREAM_ERROR_KINDS.len()],
}

/// How an upstream call failed, as `/metrics` labels it.
pub const UPSTREAM_ERROR_KINDS: [&str; 7] =
    ["rate_limited", "refused", "server_error", "timeout", "connect", "io", "protocol"];

impl ProviderHealth {
    /// Counts a failed call by its kind.
    pub fn record_error_kind(&self, e: &crate::upstream::UpstreamError) {
        use crate::upstream::UpstreamError as E;
        let i = match e {
            E::Status { status: 429, .. } => 0,
            E::Status { status, .. } if *status < 500 => 1,
            E::Status { .. } => 2,
            E::Timeout(_) => 3,
            E::Connect(_) => 4,
            E::Io { .. } => 5,
            E::Protocol(_) => 6,
            // The gateway's own lack of room, not the provider's failure.
            E::Overloaded(_) => return,
        };
        self.error_kinds[i].fetch_add(1, Ordering::Relaxed);
    }
}

impl ProviderHealth {
    /// Records one call's outcome (written by one worker only, so plain load/store).
    pub fn record(&self, latency: Option<Duration>, failed: bool, breaker: State) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(l) = latency {
            let old = self.latency_us.load(Ordering::Relaxed);
            let new = l.as_micros() as u64;
            let v = if old == 0 { new } else { (old * 7 + new) / 8 };
            self.latency_us.store(v, Ordering::Relaxed);
        }
        let old = self.error_ppm.load(Ordering::Relaxed);
        let sample = if failed { 1_000_000 } else { 0 };
        let rate = (old * 9 + sample) / 10;
        self.error_ppm.store(rate, Ordering::Relaxed);
        let state = match breaker {
            State::Open { .. } => 2,
            State::HalfOpen => 1,
            State::Closed if rate > 200_000 => 1,
            State::Closed => 0,
        };
        self.state.store(state, Ordering::Relaxed);
    }

    pub fn state_code(&self) -> u8 {
        self.state.load(Ordering::Relaxed)
    }

    pub fn latency_ms(&self) -> Option<f64> {
        let us = self.latency_us.load(Ordering::Relaxed);
        (us > 0).then(|| us as f64 / 1000.0)
    }

    pub fn error_rate(&self) -> f64 {
        self.error_ppm.load(Ordering::Relaxed) as f64 / 1_000_000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        assert_eq!(backoff(0, None, 1.0), Some(Duration::from_millis(200)));
        assert_eq!(backoff(2, None, 1.0), Some(Duration::from_millis(800)));
        assert_eq!(backoff(9, None, 1.0), Some(Duration::from_secs(5)));
        assert_eq!(backoff(0, None, 0.0), Some(Duration::from_millis(100)));
        assert_eq!(backoff(0, Some(Duration::from_secs(2)), 0.3), Some(Duration::from_secs(2)));
        assert_eq!(backoff(0, Some(Duration::from_secs(600)), 0.3), None);
    }

    #[test]
    fn breaker_opens_after_threshold_and_probes_back() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..FAIL_THRESHOLD {
            assert!(b.admit(t0));
            b.failure(t0);
        }
        assert!(!b.admit(t0 + Duration::from_secs(1)));
        assert!(b.admit(t0 + COOL_DOWN), "one probe after the cool-down");
        assert!(!b.admit(t0 + COOL_DOWN), "only one probe at a time");
        b.failure(t0 + COOL_DOWN);
        assert!(!b.admit(t0 + COOL_DOWN * 2), "cool-down doubled");
        assert!(b.admit(t0 + COOL_DOWN * 3));
        b.success();
        assert_eq!(b.state(), State::Closed);
    }
}
