//! Token quotas of chat turns: reserve before the provider is called, watch the
//! stream, settle with the provider's usage.
//!
//! 1. [`Limiter::reserve_turn`] (from `start_turn`, before the upstream call) estimates
//!    the prompt (`chat::estimate_tokens` of every message sent) plus the
//!    completion (the model's `max_tokens`, else `limits.completion_reserve_tokens`)
//!    and takes that much from the key's token lease. It needs at least the prompt
//!    plus one token; with less than the whole estimate left it takes what is left
//!    (the turn may still fit). Nothing left: `429 RATE_LIMITED` with `Retry-After`,
//!    and the provider is never called.
//! 2. [`Limiter::turn_delta`] (per chunk, from `LiveTurn::next`, the loop streamed
//!    turns of every front door run) adds the chunk's estimate; once prompt +
//!    completion so far pass the reservation it takes more (a lease's worth when it
//!    can). When the budget has no more, the turn ends with `RATE_LIMITED`: the stream
//!    gets an `error` event and the provider call is dropped. Non-streamed turns
//!    (`run_to_end`) are not cut: their client gets all or nothing, so they settle,
//!    possibly into debt.
//! 3. [`Limiter::settle_turn`] (from `StartedTurn::account`, with the provider's
//!    usage) gives back what the turn did not use, or charges what it used beyond the
//!    reservation, possibly leaving the key in debt for the next turns to wait out.
//!
//! A [`TurnQuota`] dropped unsettled (provider error, client gone, stream cut) charges
//! what was seen: nothing if no chunk arrived, else the prompt estimate plus the
//! chunks' estimates. A turn costs three lease operations; the budget is touched only
//! when the lease cannot cover them.

#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;

use super::budget::Budget;
use super::clock::SharedClock;
use super::shard::{Denied, Shard};
use super::Limiter;
use crate::auth::Identity;
use crate::chat::{estimate_tokens, Message, Usage};
use crate::config::Config;
use crate::error::{ApiError, ErrorCode};

/// A turn's token reservation; `TurnQuota::unlimited()` when the key has no token
/// limit. See the module doc.
#[derive(Debug, Default)]
pub struct TurnQuota(Option<Reservation>);

#[derive(Debug)]
struct Reservation {
    /// The shard that reserved, to give unused tokens back to its lease.
    shard: Weak<RefCell<Shard>>,
    slot: usize,
    budget: Arc<Budget>,
    clock: SharedClock,
    prompt: u64,
    reserved: Cell<u64>,
    streamed: Cell<u64>,
    settled: Cell<bool>,
}

impl TurnQuota {
    /// No token limit applies.
    pub fn unlimited() -> Self {
        TurnQuota(None)
    }

    /// Tokens reserved so far; `None` when unlimited.
    pub fn reserved(&self) -> Option<u64> {
        self.0.as_ref().map(|r| r.reserved.get())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.settled.get() {
            return;
        }
        let streamed = self.streamed.get();
        let used = if streamed > 0 { self.prompt + streamed } else { 0 };
        let reserved = self.reserved.get();
        let now = self.clock.now_ns();
        let shard = self.shard.upgrade();
        match shard.as_ref().and_then(|s| s.try_borrow_mut().ok()) {
            Some(mut shard) if used < reserved => shard.refund_tokens(self.slot, &self.budget, reserved - used, now),
            Some(mut shard) => shard.charge_tokens(self.slot, &self.budget, used - reserved, now),
            // The worker is gone (or busy, which no code path does): settle globally.
            None if used < reserved => {
                self.budget.give(reserved - used, now);
            }
            None => {
                self.budget.force(used - reserved, now);
            }
        };
    }
}

/// The estimated prompt tokens of `messages`.
pub fn estimate_prompt(messages: &[Message]) -> u64 {
    messages.iter().map(|m| estimate_tokens(&m.content)).sum()
}

fn exhausted(d: &Denied, what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::RateLimited,
        format!("token quota exhausted{what}: {} tokens per minute; retry in {} s", d.window.limit, d.retry_after_secs),
    )
    .with_retry_after(d.retry_after_secs)
}

impl Limiter {
    /// Reserves a turn's tokens before the provider is called (see the module doc).
    /// `messages` is everything sent upstream; `max_tokens` the model's cap.
    pub fn reserve_turn(
        &self,
        config: &Config,
        who: &Identity,
        messages: &[Message],
        max_tokens: Option<u32>,
    ) -> Result<TurnQuota, ApiError> {
        self.reserve_prompt(config, who, estimate_prompt(messages), max_tokens)
    }

    /// As `reserve_turn`, with the prompt's token estimate already made (the OpenAI
    /// pass-through estimates from the raw request body without parsing messages).
    pub fn reserve_prompt(
        &self,
        config: &Config,
        who: &Identity,
        prompt: u64,
        max_tokens: Option<u32>,
    ) -> Result<TurnQuota, ApiError> {
        let now = self.clock.now_ns();
        let mut shard = self.shard.borrow_mut();
        let Some(slot) = shard.slot(config, who.key_index, &who.name) else {
            return Ok(TurnQuota::unlimited());
        };
        let completion = max_tokens.map_or(shard.table().settings.completion_reserve_tokens, u64::from);
        match shard.reserve_tokens(slot, prompt + 1, prompt + completion, now) {
            None => Ok(TurnQuota::unlimited()),
            Some(Ok(r)) => Ok(TurnQuota(Some(Reservation {
                shard: Rc::downgrade(&self.shard),
                slot,
                budget: r.budget,
                clock: self.clock.clone(),
                prompt,
                reserved: Cell::new(r.n),
                streamed: Cell::new(0),
                settled: Cell::new(false),
            }))),
            Some(Err(d)) => {
                crate::stats::WorkerStats::add(&self.stats.ratelimited_tokens, 1);
                Err(exhausted(&d, ""))
            }
        }
    }

    /// Counts a streamed chunk against the reservation, taking more when it runs
    /// out. `Err(RATE_LIMITED)`: the budget is spent; end the turn.
    pub fn turn_delta(&self, quota: &TurnQuota, delta: &str) -> Result<(), ApiError> {
        let Some(r) = &quota.0 else { return Ok(()) };
        r.streamed.set(r.streamed.get() + estimate_tokens(delta));
        let used = r.prompt + r.streamed.get();
        let reserved = r.reserved.get();
        if used <= reserved {
            return Ok(());
        }
        let now = self.clock.now_ns();
        match self.shard.borrow_mut().extend_tokens(r.slot, &r.budget, used - reserved, now) {
            Ok(n) => {
                r.reserved.set(reserved + n);
                Ok(())
            }
            Err(d) => {
                crate::stats::WorkerStats::add(&self.stats.ratelimited_tokens, 1);
                Err(exhausted(&d, " during the reply"))
            }
        }
    }

    /// Settles a finished turn with the provider's usage.
    pub fn settle_turn(&self, quota: &TurnQuota, usage: Usage) {
        let Some(r) = &quota.0 else { return };
        if r.settled.replace(true) {
            return;
        }
        let (used, reserved) = (usage.total(), r.reserved.get());
        let now = self.clock.now_ns();
        let mut shard = self.shard.borrow_mut();
        if used < reserved {
            shard.refund_tokens(r.slot, &r.budget, reserved - used, now);
        } else if used > reserved {
            shard.charge_tokens(r.slot, &r.budget, used - reserved, now);
        }
    }
}
