//! Time for the limiter, injectable so that tests never sleep. [`Clock`] gives
//! monotonic nanoseconds since an origin (budgets, leases and eviction all work in
//! these) and converts them to unix seconds for `X-RateLimit-Reset`. One clock is
//! shared (`Arc<dyn Clock>`) by every core, so every budget sees one time base.
//! [`SystemClock`] reads `CLOCK_MONOTONIC_COARSE`, the kernel's last tick (1-4 ms
//! resolution, plenty for limits per minute), which the vDSO serves without reading
//! the TSC: ~8 ns per read here against ~35 ns for `Instant::now()`, and the clock read
//! was most of a limiter check. [`ManualClock`] is moved by hand in tests.
//! [`CrateClock`] adapts either to the `ratelimit` crate's clock trait for the
//! per-socket limiter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A monotonic clock shared by all cores.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Nanoseconds since this clock's origin. Never decreases.
    fn now_ns(&self) -> u64;
    /// Unix time in whole seconds (rounded up) of the instant `ns` on this clock.
    fn unix_secs(&self, ns: u64) -> u64;
}

/// The clock every limiter uses.
pub type SharedClock = Arc<dyn Clock>;

/// Real time: the coarse monotonic clock for ordering (`Instant` if the kernel
/// refuses it), the unix time at start for display.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
    /// `CLOCK_MONOTONIC_COARSE` at `origin`; `None`: use `Instant`.
    coarse_origin: Option<u64>,
    origin_unix_ns: u64,
}

use crate::clock::coarse_ns;

impl SystemClock {
    pub fn new() -> Self {
        let origin_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        SystemClock { origin: Instant::now(), coarse_origin: coarse_ns(), origin_unix_ns }
    }

    /// A shared system clock.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock::new())
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        if let Some(origin) = self.coarse_origin {
            if let Some(now) = coarse_ns() {
                return now.saturating_sub(origin);
            }
        }
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn unix_secs(&self, ns: u64) -> u64 {
        self.origin_unix_ns.saturating_add(ns).div_ceil(1_000_000_000)
    }
}

/// A clock that only moves when told to. Starts at `start_ns` (so that budgets,
/// created full at time 0, begin the test full), with unix time `unix_origin` at 0.
#[derive(Debug)]
pub struct ManualClock {
    ns: AtomicU64,
    unix_origin: u64,
}

impl ManualClock {
    pub fn new(start: Duration, unix_origin: u64) -> Arc<Self> {
        let ns = u64::try_from(start.as_nanos()).unwrap_or(u64::MAX);
        Arc::new(ManualClock { ns: AtomicU64::new(ns), unix_origin })
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.ns.fetch_add(by, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.ns.load(Ordering::Relaxed)
    }

    fn unix_secs(&self, ns: u64) -> u64 {
        self.unix_origin + ns.div_ceil(1_000_000_000)
    }
}

/// Our clock as the `ratelimit` crate's clock.
pub struct CrateClock(pub SharedClock);

impl ::ratelimit::Clock for CrateClock {
    fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.0.now_ns())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = ManualClock::new(Duration::from_secs(10), 1_000);
        assert_eq!(c.now_ns(), 10_000_000_000);
        c.advance(Duration::from_millis(1500));
        assert_eq!(c.now_ns(), 11_500_000_000);
        assert_eq!(c.unix_secs(c.now_ns()), 1_012);
    }

    #[test]
    fn system_clock_is_monotonic_and_near_the_wall_clock() {
        let c = SystemClock::new();
        let a = c.now_ns();
        let b = c.now_ns();
        assert!(b >= a);
        assert!(c.coarse_origin.is_some(), "Linux serves CLOCK_MONOTONIC_COARSE");
        // The coarse clock follows real time to within a few ticks.
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(30) {}
        let moved = c.now_ns() - b;
        assert!((15_000_000..=60_000_000).contains(&moved), "moved {moved} ns in 30 ms");
        let wall = crate::clock::now_unix();
        assert!(c.unix_secs(b).abs_diff(wall) <= 2);
    }
}
