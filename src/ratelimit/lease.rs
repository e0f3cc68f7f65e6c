//! One shard's lease on one global [`Budget`]: tokens this core has already taken from
//! the budget and not yet spent. The common path ([`Lease::acquire`] with tokens in
//! hand) is a compare and a subtraction on plain fields owned by this core: no atomic,
//! no lock, no shared cache line. Only when the lease runs dry does the shard take
//! another batch, at most `quantum` tokens, with one compare-and-swap on the budget.
//!
//! Unused tokens go back to the budget: when the lease holds more than `quantum`
//! (a turn settled below its reservation), when it expires ([`LEASE_TTL_NS`] after it
//! was last filled; stale tokens are returned and fresh ones taken, so a lease never
//! lets a client spend tokens from long ago), and when it is dropped (eviction,
//! reload). So at any instant a shard holds at most `quantum` unspent tokens of a
//! budget, which is what bounds the global error (see the `ratelimit` module doc).
//!
//! For `X-RateLimit-*` the lease keeps the budget's `tat` as of its own last
//! operation on it and estimates the remaining quota from that without reading the
//! budget; other cores' spending since then shows up at the next lease.

#![forbid(unsafe_code)]

use std::sync::Arc;

use super::budget::{available_at, Budget, Shortfall};

/// A lease's tokens are returned this long after it was last filled (1 s).
pub const LEASE_TTL_NS: u64 = 1_000_000_000;

/// See the module doc.
#[derive(Debug)]
pub struct Lease {
    budget: Arc<Budget>,
    /// Tokens taken from the budget and not yet spent.
    held: u64,
    /// Most tokens kept in hand; also the batch size of a refill.
    quantum: u64,
    /// When the held tokens go back.
    expires_ns: u64,
    /// The budget's `tat` after this lease's last operation on it.
    seen_tat: u64,
    /// Last use, for eviction.
    last_used_ns: u64,
}

impl Lease {
    /// An empty lease on `budget`; reads the budget once for the header estimate.
    pub fn new(budget: Arc<Budget>, quantum: u64, now: u64) -> Self {
        let seen_tat = budget.tat();
        Lease { budget, held: 0, quantum: quantum.max(1), expires_ns: 0, seen_tat, last_used_ns: now }
    }

    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    pub fn held(&self) -> u64 {
        self.held
    }

    pub fn quantum(&self) -> u64 {
        self.quantum
    }

    pub fn last_used_ns(&self) -> u64 {
        self.last_used_ns
    }

    /// Whether the held tokens are due back.
    pub fn expired(&self, now: u64) -> bool {
        now >= self.expires_ns
    }

    /// Spends `cost` tokens (a request: 1). Touches the budget only when the lease is
    /// dry or stale; then it takes up to `quantum` more than it needs.
    #[inline]
    pub fn acquire(&mut self, cost: u64, now: u64) -> Result<(), Shortfall> {
        self.last_used_ns = now;
        if self.held >= cost && now < self.expires_ns {
            self.held -= cost;
            return Ok(());
        }
        self.top_up(cost, cost + self.quantum - 1, now)?;
        self.held -= cost;
        Ok(())
    }

    /// Spends between `min` and `want` tokens, as many as it can get (a turn's
    /// reservation), and returns how many.
    pub fn reserve(&mut self, min: u64, want: u64, now: u64) -> Result<u64, Shortfall> {
        self.last_used_ns = now;
        let want = want.max(min);
        if !(self.held >= want && now < self.expires_ns) {
            self.top_up(min, want, now)?;
        }
        let got = self.held.min(want);
        self.held -= got;
        Ok(got)
    }

    /// Takes from the budget so that `min_total <= held <= max_total` (or fails and
    /// leaves `held` as it was). Stale tokens go back first.
    fn top_up(&mut self, min_total: u64, max_total: u64, now: u64) -> Result<(), Shortfall> {
        if now >= self.expires_ns {
            self.release(now);
        }
        let min = min_total.saturating_sub(self.held);
        let max = max_total.saturating_sub(self.held);
        match self.budget.take(max, min, now) {
            Ok(taken) => {
                self.seen_tat = taken.tat;
                if taken.n > 0 {
                    self.held += taken.n;
                    self.expires_ns = now + LEASE_TTL_NS;
                }
                Ok(())
            }
            Err(short) => {
                self.seen_tat = short.tat;
                Err(short)
            }
        }
    }

    /// Puts back `n` spent-but-unused tokens (a turn used less than it reserved).
    pub fn refund(&mut self, n: u64, now: u64) {
        self.held += n;
        self.trim(now);
    }

    /// Charges `n` tokens already used: from the lease first, the rest from the budget
    /// even if that puts it in debt.
    pub fn charge(&mut self, n: u64, now: u64) {
        let from_lease = self.held.min(n);
        self.held -= from_lease;
        if n > from_lease {
            self.seen_tat = self.budget.force(n - from_lease, now);
        }
    }

    /// Gives back what is stale or above `quantum`.
    pub fn trim(&mut self, now: u64) {
        if now >= self.expires_ns {
            self.release(now);
        } else if self.held > self.quantum {
            self.seen_tat = self.budget.give(self.held - self.quantum, now);
            self.held = self.quantum;
        }
    }

    /// Gives every held token back.
    pub fn release(&mut self, now: u64) {
        if self.held > 0 {
            self.seen_tat = self.budget.give(self.held, now);
            self.held = 0;
        }
    }

    /// The quota left as far as this core knows: the budget as of this lease's last
    /// operation, refilled to `now`, plus what the lease holds. In `0..=capacity`.
    pub fn remaining(&self, now: u64) -> u64 {
        let cap = self.budget.per_minute();
        let global = available_at(cap, self.seen_tat, now);
        let total = global.saturating_add(i64::try_from(self.held).unwrap_or(i64::MAX));
        u64::try_from(total.max(0)).unwrap_or(0).min(cap)
    }

    /// When the budget is full again (as far as this core knows), on the limiter clock.
    pub fn full_at_ns(&self, now: u64) -> u64 {
        self.seen_tat.max(now)
    }
}

impl Drop for Lease {
    /// Held tokens go back. `last_used_ns` stands in for "now": giving back at an
    /// earlier instant can never overfill the bucket (see `Budget::give`).
    fn drop(&mut self) {
        if self.held > 0 {
            self.budget.give(self.held, self.last_used_ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    const T0: u64 = 1_000 * SEC;

    #[test]
    fn requests_are_served_from_the_lease_and_refilled_in_batches() {
        let budget = Arc::new(Budget::new(60));
        let mut lease = Lease::new(budget.clone(), 8, T0);
        lease.acquire(1, T0).unwrap();
        assert_eq!((lease.held(), budget.available(T0)), (7, 52));
        for _ in 0..7 {
            lease.acquire(1, T0).unwrap();
        }
        assert_eq!((lease.held(), budget.available(T0)), (0, 52), "the budget was not touched");
        lease.acquire(1, T0).unwrap();
        assert_eq!((lease.held(), budget.available(T0)), (7, 44));
        assert_eq!(lease.remaining(T0), 51);
    }

    #[test]
    fn the_last_tokens_are_leased_one_by_one() {
        let budget = Arc::new(Budget::new(10));
        let mut lease = Lease::new(budget.clone(), 8, T0);
        let admitted = (0..20).filter(|_| lease.acquire(1, T0).is_ok()).count();
        assert_eq!(admitted, 10);
        let short = lease.acquire(1, T0).unwrap_err();
        assert_eq!(short.retry_after_secs(), 6);
        assert_eq!(lease.remaining(T0), 0);
    }

    #[test]
    fn an_expired_lease_gives_its_tokens_back_before_refilling() {
        let budget = Arc::new(Budget::new(60));
        let mut lease = Lease::new(budget.clone(), 8, T0);
        lease.acquire(1, T0).unwrap();
        assert_eq!(budget.available(T0), 52);
        lease.trim(T0 + LEASE_TTL_NS / 2);
        assert_eq!(lease.held(), 7, "still fresh");
        lease.trim(T0 + LEASE_TTL_NS);
        assert_eq!(lease.held(), 0);
        assert_eq!(budget.available(T0 + LEASE_TTL_NS), 60, "59 + 1 s of refill");
    }

    #[test]
    fn a_stale_lease_is_not_spent() {
        let budget = Arc::new(Budget::new(60));
        let mut lease = Lease::new(budget.clone(), 8, T0);
        lease.acquire(1, T0).unwrap();
        // Two seconds later the 7 held tokens are stale: returned, then a fresh batch.
        lease.acquire(1, T0 + 2 * SEC).unwrap();
        assert_eq!(lease.held(), 7);
        assert_eq!(budget.available(T0 + 2 * SEC), 52);
    }

    #[test]
    fn dropping_a_lease_returns_its_tokens() {
        let budget = Arc::new(Budget::new(60));
        let mut lease = Lease::new(budget.clone(), 8, T0);
        lease.acquire(1, T0).unwrap();
        drop(lease);
        assert_eq!(budget.available(T0), 59);
    }

    #[test]
    fn reservations_settle_by_refund_or_charge() {
        let budget = Arc::new(Budget::new(100));
        let mut lease = Lease::new(budget.clone(), 12, T0);
        let r = lease.reserve(7, 262, T0).unwrap();
        assert_eq!(r, 100, "clipped to what the budget has");
        // The turn used 22: 78 come back, 12 stay in hand, 66 return to the budget.
        lease.refund(78, T0);
        assert_eq!((lease.held(), budget.available(T0)), (12, 66));
        assert_eq!(lease.remaining(T0), 78);
        // A turn that used 30 more than it reserved: 12 from the lease, 18 as debt.
        lease.charge(30, T0);
        assert_eq!((lease.held(), budget.available(T0)), (0, 48));
        assert!(lease.reserve(60, 60, T0).is_err());
    }
}
