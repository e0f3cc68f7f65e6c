//! One worker's keep-alive pool: idle connections per endpoint, most recently used
//! first (warm sockets, and stale ones age out at the back). Bounded per endpoint;
//! connections idle longer than `IDLE_EXPIRY` are dropped at checkout. Only a
//! connection whose last response was read to its end on a keep-alive exchange is
//! ever checked back in.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use crate::upstream::io::UpConn;

/// Idle connections older than this are not reused (providers close theirs at ~60-90 s).
pub const IDLE_EXPIRY: Duration = Duration::from_secs(50);
/// Most idle connections kept per endpoint per worker.
pub const MAX_IDLE: usize = 256;

#[derive(Default)]
pub struct Pool {
    idle: RefCell<HashMap<Rc<str>, Vec<UpConn>>>,
    /// Bytes of whole answers being read on this worker (`BodyReader::collect`), and
    /// the most they may add up to (0 = no budget): `server.upstream_body_budget_mb`.
    buffered: Cell<usize>,
    budget: Cell<usize>,
}

impl Pool {
    /// The freshest idle connection to `key`, if any is young enough.
    pub fn checkout(&self, key: &Rc<str>) -> Option<UpConn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(key)?;
        let now = crate::clock::coarse_ms();
        while let Some(conn) = list.pop() {
            if u128::from(now.saturating_sub(conn.idle_since)) < IDLE_EXPIRY.as_millis() {
                return Some(conn);
            }
        }
        None
    }

    /// Returns a healthy connection for reuse.
    pub fn checkin(&self, key: &Rc<str>, mut conn: UpConn) {
        conn.idle_since = crate::clock::coarse_ms();
        conn.uses += 1;
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(key.clone()).or_default();
        if list.len() >= MAX_IDLE {
            list.remove(0);
        }
        list.push(conn);
    }

    /// Sets the worker's budget for answers being read whole, in bytes (0 = none).
    pub fn set_budget(&self, bytes: usize) {
        self.budget.set(bytes);
    }

    /// Takes `n` bytes of the budget; `false` (nothing taken) when they do not fit.
    pub fn charge(&self, n: usize) -> bool {
        let now = self.buffered.get().saturating_add(n);
        let budget = self.budget.get();
        if budget > 0 && now > budget {
            return false;
        }
        self.buffered.set(now);
        true
    }

    /// Gives `n` bytes back.
    pub fn release(&self, n: usize) {
        self.buffered.set(self.buffered.get().saturating_sub(n));
    }

    /// Bytes of answers being read whole right now.
    pub fn buffered(&self) -> usize {
        self.buffered.get()
    }

    /// Idle connections held for `key` (for tests and `/health/detailed`).
    pub fn idle_count(&self, key: &str) -> usize {
        self.idle.borrow().get(key).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::Pool;

    #[test]
    fn the_answer_budget_is_taken_and_given_back() {
        let pool = Pool::default();
        assert!(pool.charge(usize::MAX / 2), "no budget: anything fits");
        pool.release(usize::MAX / 2);
        pool.set_budget(100);
        assert!(pool.charge(60));
        assert!(!pool.charge(50), "60 + 50 passes 100");
        assert_eq!(pool.buffered(), 60, "a refused charge takes nothing");
        assert!(pool.charge(40));
        pool.release(60);
        assert!(pool.charge(50));
        pool.release(1000);
        assert_eq!(pool.buffered(), 0);
    }
}
