//! One worker's keep-alive pool: idle connections per endpoint, most recently used
//! first (warm sockets, and stale ones age out at the back). Bounded per endpoint;
//! connections idle longer than `IDLE_EXPIRY` are dropped at checkout. Only a
//! connection whose last response was read to its end on a keep-alive exchange is
//! ever checked back in.

use std::cell::RefCell;
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

    /// Idle connections held for `key` (for tests and `/health/detailed`).
    pub fn idle_count(&self, key: &str) -> usize {
        self.idle.borrow().get(key).map_or(0, Vec::len)
    }
}
