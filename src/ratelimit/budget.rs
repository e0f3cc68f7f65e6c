//! The global budget of one limit (one key's requests, one key's tokens, one client
//! IP's requests): a token bucket of `per_minute` tokens refilled continuously at
//! `per_minute` per minute, kept in ONE `AtomicU64`, so that taking, returning and
//! charging are each a single compare-and-swap with no lock.
//!
//! The bucket is stored as GCRA's "theoretical arrival time" `tat` (nanoseconds on the
//! shared [`Clock`](super::clock::Clock)): the bucket is full when `tat <= now`, and
//! taking `n` tokens moves `tat` forward by `n * 60 s / per_minute`. The tokens
//! available at `now` are `(now + 60 s - max(tat, now)) * per_minute / 60 s`; a `tat`
//! beyond `now + 60 s` is debt (a turn used more tokens than it reserved), which later
//! takes must wait out. Costs round up and refunds round down, so rounding never
//! favours the client; the rounding is below one nanosecond per operation, whatever
//! the rate.
//!
//! Shards never call this per request: they take leases of several tokens
//! ([`super::lease`]). The struct is 128-byte aligned so that two budgets (or a budget
//! and its `Arc` counters) never share a cache line.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

/// The refill period of every budget: limits are per minute.
pub const MINUTE_NS: u64 = 60_000_000_000;

/// The most debt a budget can carry, in periods: a client that overshoots by more
/// than a whole minute's quota waits at most two minutes.
const MAX_DEBT_PERIODS: u64 = 1;

/// Not enough tokens: how long until `min` would be available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    /// Nanoseconds until the request could succeed (>= 1).
    pub retry_after_ns: u64,
    /// The budget's `tat` as seen by the failed attempt.
    pub tat: u64,
}

impl Shortfall {
    /// Whole seconds for `Retry-After` (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_ns.div_ceil(1_000_000_000).max(1)
    }
}

/// A successful take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Tokens taken: between the `min` and `max` asked for.
    pub n: u64,
    /// The budget's `tat` right after the take.
    pub tat: u64,
}

/// One limit's global token bucket. See the module doc.
#[derive(Debug)]
#[repr(align(128))]
pub struct Budget {
    tat: AtomicU64,
    per_minute: u64,
}

impl Budget {
    /// A full budget of `per_minute` tokens (at least 1).
    pub fn new(per_minute: u64) -> Self {
        Budget { tat: AtomicU64::new(0), per_minute: per_minute.max(1) }
    }

    /// A budget of `per_minute` holding `available` tokens at `now` (clamped to the
    /// capacity; negative = debt). Used to carry state over a config reload.
    pub fn with_available(per_minute: u64, available: i64, now: u64) -> Self {
        let b = Budget::new(per_minute);
        let cap = i64::try_from(b.per_minute).unwrap_or(i64::MAX);
        let available = available.min(cap);
        let tat = if available >= 0 {
            (now + MINUTE_NS).saturating_sub(b.cost_ns(available.unsigned_abs()))
        } else {
            let debt = b.cost_ns(available.unsigned_abs()).min(MAX_DEBT_PERIODS * MINUTE_NS);
            now + MINUTE_NS + debt
        };
        b.tat.store(tat, Ordering::Relaxed);
        b
    }

    /// Tokens per minute, which is also the capacity (one minute's worth may be spent
    /// at once).
    pub fn per_minute(&self) -> u64 {
        self.per_minute
    }

    /// The current `tat` (one atomic load; not for the per-request path).
    pub fn tat(&self) -> u64 {
        self.tat.load(Ordering::Acquire)
    }

    /// Tokens available at `now` (negative while in debt).
    pub fn available(&self, now: u64) -> i64 {
        available_at(self.per_minute, self.tat(), now)
    }

    /// Nanoseconds `n` tokens cost, rounded up.
    fn cost_ns(&self, n: u64) -> u64 {
        let ns = (u128::from(n) * u128::from(MINUTE_NS)).div_ceil(u128::from(self.per_minute));
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// Nanoseconds `n` returned tokens are worth, rounded down.
    fn refund_ns(&self, n: u64) -> u64 {
        let ns = u128::from(n) * u128::from(MINUTE_NS) / u128::from(self.per_minute);
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// Takes between `min` and `max` tokens (as many as are available), or none.
    /// `min` above the capacity can never succeed; callers clamp it.
    pub fn take(&self, max: u64, min: u64, now: u64) -> Result<Taken, Shortfall> {
        let limit = now.saturating_add(MINUTE_NS);
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let base = tat.max(now);
            let room = limit.saturating_sub(base);
            let avail = tokens_in(self.per_minute, room);
            if avail < min {
                let retry = base.saturating_add(self.cost_ns(min)).saturating_sub(limit);
                return Err(Shortfall { retry_after_ns: retry.max(1), tat });
            }
            let n = max.min(avail);
            if n == 0 {
                return Ok(Taken { n: 0, tat });
            }
            // `cost_ns(n) <= room` because n <= room * rate / minute, so new <= limit.
            let new = base + self.cost_ns(n);
            match self.tat.compare_exchange_weak(tat, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(Taken { n, tat: new }),
                Err(current) => tat = current,
            }
        }
    }

    /// Returns `n` unspent tokens. A bucket that refilled meanwhile keeps at most its
    /// capacity (the surplus is gone, as in any token bucket). Returns the new `tat`.
    pub fn give(&self, n: u64, now: u64) -> u64 {
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            if n == 0 || tat <= now {
                return tat;
            }
            let new = tat.saturating_sub(self.refund_ns(n)).max(now);
            match self.tat.compare_exchange_weak(tat, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return new,
                Err(current) => tat = current,
            }
        }
    }

    /// Charges `n` tokens whether or not they are available: usage that already
    /// happened (a turn that used more than it reserved). May leave the budget in
    /// debt, capped at one minute's quota. Returns the new `tat`.
    pub fn force(&self, n: u64, now: u64) -> u64 {
        let cap = now.saturating_add((1 + MAX_DEBT_PERIODS) * MINUTE_NS);
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            if n == 0 {
                return tat;
            }
            let new = tat.max(now).saturating_add(self.cost_ns(n)).min(cap.max(tat));
            match self.tat.compare_exchange_weak(tat, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return new,
                Err(current) => tat = current,
            }
        }
    }
}

/// Whole tokens `ns` nanoseconds of refill are worth at `per_minute`.
fn tokens_in(per_minute: u64, ns: u64) -> u64 {
    // The common case fits in 64 bits (a minute is 2^36 ns): no 128-bit division.
    if let Some(product) = ns.checked_mul(per_minute) {
        return product / MINUTE_NS;
    }
    let t = u128::from(ns) * u128::from(per_minute) / u128::from(MINUTE_NS);
    u64::try_from(t).unwrap_or(u64::MAX)
}

/// Tokens available at `now` in a bucket of `per_minute` whose `tat` is `tat`
/// (negative while in debt). Pure: shards use it on the `tat` they last saw.
pub fn available_at(per_minute: u64, tat: u64, now: u64) -> i64 {
    let limit = now.saturating_add(MINUTE_NS);
    if tat <= limit {
        let t = tokens_in(per_minute, limit - tat.max(now));
        i64::try_from(t).unwrap_or(i64::MAX)
    } else {
        let debt = u128::from(tat - limit) * u128::from(per_minute);
        let debt = debt.div_ceil(u128::from(MINUTE_NS));
        -i64::try_from(debt).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    /// A time well after the clock's origin, like any real moment.
    const T0: u64 = 1_000 * SEC;

    #[test]
    fn a_new_budget_is_full_and_drains_to_zero() {
        let b = Budget::new(60);
        assert_eq!(b.available(T0), 60);
        assert_eq!(b.take(8, 1, T0).unwrap().n, 8);
        assert_eq!(b.take(100, 1, T0).unwrap().n, 52);
        assert_eq!(b.available(T0), 0);
        let short = b.take(1, 1, T0).unwrap_err();
        assert_eq!(short.retry_after_ns, SEC);
        assert_eq!(short.retry_after_secs(), 1);
    }

    #[test]
    fn refill_is_continuous_at_the_per_minute_rate() {
        let b = Budget::new(60);
        b.take(60, 60, T0).unwrap();
        assert_eq!(b.available(T0 + SEC / 2), 0);
        assert_eq!(b.available(T0 + SEC), 1);
        assert_eq!(b.available(T0 + 30 * SEC), 30);
        assert_eq!(b.available(T0 + 600 * SEC), 60, "never above capacity");
        assert_eq!(b.take(5, 5, T0 + 5 * SEC).unwrap().n, 5);
        assert!(b.take(1, 1, T0 + 5 * SEC).is_err());
    }

    #[test]
    fn a_take_gets_what_is_there_between_min_and_max() {
        let b = Budget::new(10);
        b.take(7, 7, T0).unwrap();
        assert_eq!(b.take(8, 1, T0).unwrap().n, 3);
        let short = b.take(8, 2, T0).unwrap_err();
        assert_eq!(short.retry_after_ns, 12 * SEC, "two tokens at 10/min");
    }

    #[test]
    fn returned_tokens_can_be_taken_again_but_never_overfill() {
        let b = Budget::new(60);
        b.take(60, 60, T0).unwrap();
        b.give(10, T0);
        assert_eq!(b.available(T0), 10);
        // A minute later the bucket is full again: a late return adds nothing.
        b.give(10, T0 + 60 * SEC);
        assert_eq!(b.available(T0 + 60 * SEC), 60);
    }

    #[test]
    fn forced_usage_creates_debt_that_must_be_waited_out() {
        let b = Budget::new(60);
        b.take(60, 60, T0).unwrap();
        b.force(30, T0);
        assert_eq!(b.available(T0), -30);
        let short = b.take(1, 1, T0).unwrap_err();
        assert_eq!(short.retry_after_ns, 31 * SEC);
        assert_eq!(b.available(T0 + 31 * SEC), 1);
        // Debt is capped at one minute's quota.
        b.force(1_000_000, T0);
        assert_eq!(b.available(T0), -60);
    }

    #[test]
    fn state_carries_over_to_a_new_rate() {
        let b = Budget::with_available(100, 40, T0);
        assert_eq!(b.available(T0), 40);
        let b = Budget::with_available(100, 500, T0);
        assert_eq!(b.available(T0), 100);
        let b = Budget::with_available(60, -6, T0);
        assert_eq!(b.available(T0), -6);
    }

    #[test]
    fn huge_and_tiny_rates_keep_their_counts_within_one_token() {
        let b = Budget::new(7_000_000_000);
        assert_eq!(b.take(1_000_000, 1, T0).unwrap().n, 1_000_000);
        // The cost rounds up by under a nanosecond: at most one token of the rest.
        assert!((6_998_999_999..=6_999_000_000).contains(&b.available(T0)));
        let b = Budget::new(1);
        assert_eq!(b.take(5, 1, T0).unwrap().n, 1);
        assert_eq!(b.take(1, 1, T0).unwrap_err().retry_after_secs(), 60);
    }
}
