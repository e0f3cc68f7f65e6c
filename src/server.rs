//! The server (layer 5): the one place that goes accept -> decode -> dispatch ->
//! encode. Each worker runs `accept_loop` on its own `SO_REUSEPORT` listener; every
//! accepted socket gets a task running `conn::serve`, the connection loop over the
//! `http` codec; each decoded request goes through `dispatch` (route, auth, limit,
//! handler) and its response is encoded back by the loop. A `101` hands the socket to
//! `ws` and the loop ends.
//!
//! The life of one request is listed step by step in the crate doc (`lib.rs`).

mod client_addr;
mod conn;
pub mod cors;
mod dispatch;

use std::rc::Rc;
use std::time::Duration;

use monoio::io::CancelHandle;
use monoio::net::TcpListener;

use crate::log;
use crate::worker::{Worker, WorkerStats};

pub use conn::{reject_overloaded, serve};
pub use dispatch::dispatch;

/// Which listener a connection came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// `server.listen`: every route.
    Main,
    /// `[metrics] listen`: `GET /metrics` open to whoever reaches it, the health
    /// probes, and 404 for anything else.
    Metrics,
}

/// Accepts connections until the worker drains (the listener's accept is cancelled by
/// `handle`). A connection over `server.max_connections_per_worker` is answered 503
/// `OVERLOADED` and closed; the others are served, each in its own task. Accept
/// errors (EMFILE and friends) back off for 50 ms instead of spinning.
pub async fn accept_loop(listener: &TcpListener, worker: &Rc<Worker>, handle: CancelHandle, door: Door) {
    loop {
        match listener.cancelable_accept(handle.clone()).await {
            Ok((stream, peer)) => {
                let max = worker.snapshot().config.server.max_connections_per_worker as u64;
                if WorkerStats::get(&worker.stats().connections) >= max {
                    WorkerStats::add(&worker.stats().rejected_connections, 1);
                    // A TLS client could not read a plain-text 503: it is just closed.
                    let tls = door == Door::Main && worker.snapshot().server_tls.is_some();
                    if !tls {
                        monoio::spawn(reject_overloaded(stream, worker.next_request_id()));
                    }
                } else {
                    monoio::spawn(serve(stream, peer, worker.clone(), handle.clone(), door));
                }
            }
            Err(_) if worker.shared.draining() => return,
            Err(e) => {
                log::warn(&format!("worker {}: accept failed: {e}", worker.id));
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
