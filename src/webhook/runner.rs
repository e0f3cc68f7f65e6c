//! The turns that answer spooled deliveries. Every worker runs `run` on its mailbox
//! (`Worker::spool_jobs`): a delivery arrives there from the front door (or from the
//! sweep) on the worker that owns its session, so the turns of one conversation run
//! where the conversation lives, in order.
//!
//! One delivery: `/new` or `/reset` (optionally with text after it) resets the session
//! first; the turn runs (`turn::start_turn`, the channel's model or the default) with
//! retries for transient failures; the reply is split at the platform's limit
//! (`channel::split_reply`) and the turn, the delivery's "answered" mark and the parts
//! commit in one store transaction (`StartedTurn::finish_answering`). A turn that fails
//! for good is answered with a short notice (logged with its cause) so the user is not
//! left waiting and the delivery leaves the spool.
//!
//! `sweep_loop` (worker 0) finds what the spool still holds: at start-up (deliveries
//! acknowledged before a crash or restart) and every `SWEEP_EVERY` (deliveries a busy
//! runner could not take). A runner keeps the ids it is working on, and those it
//! answered lately, so a delivery swept while its turn runs is not run twice.

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Identity;
use crate::channel::{new_session_command, reply_limit, split_reply};
use crate::chat::{Message, MessageRole};
use crate::clock;
use crate::config::Role;
use crate::error::{ApiError, ErrorCode};
use crate::log;
use crate::session::{self, SessionAction};
use crate::stats::WorkerStats;
use crate::store::{self, OutboxPart, SpoolAnswer, SpoolEntry};
use crate::turn::{run_to_end, start_turn, TurnContext, TurnRequest};
use crate::worker::Worker;

/// Turns a runner runs at once.
const MAX_RUNNING: usize = 512;
/// Deliveries waiting in a runner's memory for a turn slot; beyond that they wait in
/// the spool only (stored: the sweep brings them back).
const MAX_QUEUED: usize = 16_384;
/// How often worker 0 looks for deliveries still unanswered.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// The sweep leaves alone deliveries younger than this (on their way to a runner).
const SWEEP_MIN_AGE_MS: u64 = 2_000;
/// Deliveries taken per sweep.
const SWEEP_BATCH: usize = 512;
/// Answered ids a runner remembers, so a sweep racing the commit cannot rerun them.
const RECENT: usize = 16_384;
/// Attempts of a turn that fails for a transient reason (overload, rate limit, the
/// provider down), and the waits between them.
const TURN_ATTEMPTS: usize = 3;
const TURN_BACKOFF: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(5)];
/// Sent when `/new` or `/reset` comes alone.
pub const NEW_SESSION_REPLY: &str = "Started a new conversation.";
/// Sent when a turn failed for good (the cause is in the log, with the request id).
pub const FAILED_REPLY: &str = "Sorry, something went wrong while answering this message. Please try again later.";

#[derive(Default)]
struct State {
    /// Ids queued or running here.
    known: HashSet<u64>,
    /// Deliveries waiting for a free turn slot, in arrival order.
    queue: VecDeque<SpoolEntry>,
    running: usize,
    recent: HashSet<u64>,
    recent_order: VecDeque<u64>,
}

impl State {
    /// The turn of `id` is over: `answered` (committed), or left in the spool for the
    /// sweep.
    fn done(&mut self, id: u64, answered: bool) {
        self.known.remove(&id);
        self.running -= 1;
        if answered && self.recent.insert(id) {
            self.recent_order.push_back(id);
            if self.recent_order.len() > RECENT {
                if let Some(old) = self.recent_order.pop_front() {
                    self.recent.remove(&old);
                }
            }
        }
    }
}

/// Runs the deliveries sent to this worker until the mailbox closes: up to
/// `MAX_RUNNING` turns at once, then up to `MAX_QUEUED` waiting here in order; beyond
/// that a delivery stays in the spool only, for the sweep.
pub async fn run(worker: Rc<Worker>, inbox: flume::Receiver<SpoolEntry>) {
    let state = Rc::new(RefCell::new(State::default()));
    while let Ok(entry) = inbox.recv_async().await {
        {
            let mut s = state.borrow_mut();
            if s.known.contains(&entry.id) || s.recent.contains(&entry.id) || s.queue.len() >= MAX_QUEUED {
                continue;
            }
            s.known.insert(entry.id);
            s.queue.push_back(entry);
        }
        start_next(&worker, &state);
    }
}

/// Starts queued turns while there is room.
fn start_next(worker: &Rc<Worker>, state: &Rc<RefCell<State>>) {
    loop {
        let entry = {
            let mut s = state.borrow_mut();
            if s.running >= MAX_RUNNING {
                return;
            }
            let Some(entry) = s.queue.pop_front() else { return };
            s.running += 1;
            entry
        };
        let (worker, state) = (worker.clone(), state.clone());
        monoio::spawn(async move {
            let id = entry.id;
            let answered = answer(&worker, entry).await;
            state.borrow_mut().done(id, answered);
            start_next(&worker, &state);
        });
    }
}

/// Worker 0: hands unanswered deliveries to their runners, at start and every
/// `SWEEP_EVERY`.
pub async fn sweep_loop(worker: Rc<Worker>) {
    let mut first = true;
    loop {
        if worker.snapshot().config.channels.is_empty() {
            // Nothing to answer through (a reload may add channels).
            monoio::time::sleep(SWEEP_EVERY).await;
            continue;
        }
        let store = worker.turns.sessions.store().clone();
        match store::ask(|done| store.spooled(SWEEP_BATCH, done)).await {
            Ok(entries) => {
                let now = clock::now_unix_ms();
                let mut handed = 0;
                for e in entries {
                    // At start-up everything is left over from before; later, young
                    // entries are still on their way to a runner.
                    if !first && now.saturating_sub(e.delivery.received_at_ms) < SWEEP_MIN_AGE_MS {
                        continue;
                    }
                    let owner = session::owner_of(&e.delivery.session, worker.spool_jobs.workers());
                    let _ = worker.spool_jobs.send(owner, e);
                    handed += 1;
                }
                if first && handed > 0 {
                    log::info(&format!("webhooks: {handed} deliveries spooled before the restart are being answered"));
                }
                first = false;
            }
            Err(e) => log::warn(&format!("webhooks: cannot read the spool: {e}")),
        }
        monoio::time::sleep(SWEEP_EVERY).await;
    }
}

/// The identity a channel's turns run as: sessions made by channel `name` belong to it.
fn channel_identity(name: &str) -> Identity {
    Identity { name: Arc::from(format!("channel:{name}")), role: Role::User, key_index: None }
}

/// Answers one delivery: the turn and its reply parts, committed together; or a
/// notice if the turn cannot run. Returns whether the answer is recorded (else the
/// delivery stays in the spool for the sweep).
async fn answer(worker: &Rc<Worker>, entry: SpoolEntry) -> bool {
    let snap = worker.snapshot();
    let d = &entry.delivery;
    let request_id = worker.next_request_id();
    let store = worker.turns.sessions.store().clone();
    let Some(ch) = snap.config.channel(&d.channel).filter(|c| c.enabled) else {
        // The channel left the config since: nobody to answer through.
        log::warn(&format!(
            "webhooks: delivery {} of channel {} has no enabled channel to answer it",
            d.key, d.channel
        ));
        return store::ask(|done| store.answer(entry.id, Vec::new(), done)).await.is_ok();
    };
    let stats = worker.channel_stats(&ch.name);
    let limit = reply_limit(ch.kind).unwrap_or(usize::MAX);
    let parts_of = |text: &str| -> Vec<OutboxPart> {
        split_reply(text, limit)
            .into_iter()
            .enumerate()
            .map(|(i, p)| OutboxPart {
                channel: ch.name.clone(),
                part: u32::try_from(i).unwrap_or(u32::MAX),
                target: d.reply_to.clone(),
                text: p.to_string(),
            })
            .collect()
    };
    let who = channel_identity(&ch.name);
    let mut text = d.text.as_str();
    if let Some(rest) = new_session_command(text) {
        match worker.turns.sessions.act(&d.session, &who, SessionAction::Reset).await {
            Ok(_) => {}
            Err(e) if e.code == ErrorCode::InvalidSession => {}
            Err(e) => {
                log::warn(&format!("request {request_id}: webhook {}: reset of {} failed: {e}", ch.name, d.session))
            }
        }
        if rest.is_empty() {
            return notify(worker, &store, entry.id, parts_of(NEW_SESSION_REPLY)).await;
        }
        text = rest;
    }
    let mut attempt = 0;
    loop {
        match turn(worker, &who, &ch.name, &d.session, text, &request_id, entry.id, &parts_of).await {
            Ok(()) => {
                WorkerStats::add(&stats.turns, 1);
                worker.shared.kick_outbox();
                return true;
            }
            Err(e) if transient(&e) && attempt + 1 < TURN_ATTEMPTS => {
                log::warn(&format!(
                    "request {request_id}: webhook {} turn for {} failed ({}: {}), retrying",
                    ch.name,
                    d.key,
                    e.code.as_str(),
                    e.message
                ));
                monoio::time::sleep(TURN_BACKOFF[attempt.min(TURN_BACKOFF.len() - 1)]).await;
                attempt += 1;
            }
            Err(e) => {
                log::error(&format!(
                    "request {request_id}: webhook {} turn for {} failed for good ({}: {}); the user is told",
                    ch.name,
                    d.key,
                    e.code.as_str(),
                    e.message
                ));
                WorkerStats::add(&stats.turn_failures, 1);
                return notify(worker, &store, entry.id, parts_of(FAILED_REPLY)).await;
            }
        }
    }
}

/// One attempt at the turn; its reply's parts commit with it.
#[allow(clippy::too_many_arguments)]
async fn turn(
    worker: &Rc<Worker>,
    who: &Identity,
    channel: &str,
    session_id: &str,
    text: &str,
    request_id: &str,
    spool_id: u64,
    parts_of: &dyn Fn(&str) -> Vec<OutboxPart>,
) -> Result<(), ApiError> {
    let snap = worker.snapshot();
    let request = TurnRequest {
        channel: channel.to_string(),
        message: Message::text(MessageRole::User, text),
        params: Arc::default(),
        session_id: Some(session_id.to_string()),
        model: None,
        context: TurnContext::Session,
        preamble: Vec::new(),
        seed: Vec::new(),
        stream: false,
        request_id: request_id.to_string(),
    };
    let started = start_turn(&worker.turns, &snap.config, who, request).await?;
    let (started, answer) = run_to_end(started).await?;
    let parts = parts_of(&answer.text);
    started.finish_answering(answer.to_message(), Some(SpoolAnswer { spool_id, parts })).await
}

/// Whether a failed turn may succeed if tried again shortly.
fn transient(e: &ApiError) -> bool {
    matches!(
        e.code,
        ErrorCode::Overloaded
            | ErrorCode::RateLimited
            | ErrorCode::UpstreamError
            | ErrorCode::UpstreamTimeout
            | ErrorCode::Internal
    )
}

/// Answers a delivery without a turn (a notice), and wakes the sender. Returns
/// whether the answer is recorded.
async fn notify(worker: &Worker, store: &Arc<dyn store::Store>, spool_id: u64, parts: Vec<OutboxPart>) -> bool {
    match store::ask(|done| store.answer(spool_id, parts, done)).await {
        Ok(()) => {
            worker.shared.kick_outbox();
            true
        }
        // Left unanswered in the spool: the sweep tries again.
        Err(e) => {
            log::warn(&format!("webhooks: cannot record the answer to spooled delivery {spool_id}: {e}"));
            false
        }
    }
}
