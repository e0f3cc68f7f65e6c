//! The turn engine (layer 3): everything between a front door that parsed a request
//! and a provider that answers it, the same for `/api/chat`, `/v1/chat/completions`
//! and `/ws` (and the webhook spool to come).
//!
//! ```text
//! front door -> TurnRequest -> start_turn (start.rs): channel/model, session grant,
//!   token reservation, provider call down the fallback chain -> StartedTurn
//!   -> LiveTurn (live.rs): deltas (token budget per delta), Done (usage settled, reply
//!      recorded in the session) | Failed -> the front door renders each event
//!   -> streamed /api/chat only: TurnHub (resume.rs) buffers the rendered events so a
//!      reconnect with Last-Event-ID resumes the same turn, on any worker
//! ```
//!
//! Each worker has one `Engine`: the layer-2 handles a turn needs (its session hub,
//! rate limiter, providers, counters, resume buffers). Nothing here knows HTTP, the
//! WebSocket or how events are rendered.

mod live;
mod resume;
mod start;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::provider::Providers;
use crate::ratelimit::Limiter;
use crate::session::SessionHub;
use crate::stats::WorkerStats;

pub use live::{LiveTurn, TurnEvent};
pub use resume::{new_turn_id, ResumeCmd, TurnHub};
pub use start::{check_memory, run_to_end, start_turn, StartedTurn, TurnContext, TurnRequest};

/// One worker's turn engine: the per-core handles every turn of this worker uses.
pub struct Engine {
    /// This worker's door to every worker's sessions.
    pub sessions: SessionHub,
    /// This worker's rate-limit shard (token reservations, budgets per delta).
    pub limiter: Rc<Limiter>,
    /// This worker's counters (tokens in and out).
    pub stats: Arc<WorkerStats>,
    /// Streamed turns buffered for `Last-Event-ID` reconnects.
    pub resume: Rc<TurnHub>,
    /// The providers of the current config (replaced whole on reload).
    providers: RefCell<Rc<Providers>>,
}

impl Engine {
    pub fn new(
        sessions: SessionHub,
        limiter: Rc<Limiter>,
        stats: Arc<WorkerStats>,
        resume: TurnHub,
        providers: Providers,
    ) -> Self {
        Engine { sessions, limiter, stats, resume: Rc::new(resume), providers: RefCell::new(Rc::new(providers)) }
    }

    /// The providers a turn starting now uses (a turn keeps the ones it started with).
    pub fn providers(&self) -> Rc<Providers> {
        self.providers.borrow().clone()
    }

    /// Installs the providers of a reloaded config for turns that start from now on.
    pub fn set_providers(&self, providers: Providers) {
        *self.providers.borrow_mut() = Rc::new(providers);
    }
}
