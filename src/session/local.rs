//! One worker's sessions (`LocalSessions`): the sessions it holds, the directory of
//! the ids it is home to that another worker holds, and the routing of every session
//! command (`Cmd`) between them. Driven by `SessionHub` (local calls) and by the
//! worker's session mailbox (`SessionHub::serve`).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};

use crate::auth::Identity;
use crate::chat::Message;
use crate::clock;
use crate::config::SessionsConfig;
use crate::error::{ApiError, ErrorCode};
use crate::peers::Peers;
use crate::store::{LoadedSession, MessageRow, SessionRow, SpoolAnswer, Store, Write};

use super::id::owner_of;
use super::{
    BeginTurn, Cmd, CommitQueue, CommittedTurn, Reply, Session, SessionAction, SessionInfo, SessionView, StoredMessage,
    TurnGrant, MAX_HOPS,
};

/// The sessions held by one worker, and (as their home) where its other ids are.
///
/// Every id has a home worker (a hash of the id) that always knows where the session
/// is. The session itself follows the worker its turns come from: when an idle session
/// is asked for by another worker, its home hands it over (`Adopt`), and later turns
/// from that worker's connections find it locally with no message at all. A request
/// that lands elsewhere goes to the home, which forwards it to the holder; a holder
/// asked by a third worker returns the session home first, so it moves on from there.
/// Because each pair of workers' channel is FIFO and a moved entry is only ever set
/// together with the `Adopt` that creates the holder, a forwarded command always finds
/// the session, or finds it gone with its `Gone`/`Return` already at the home.
///
/// With a durable store, an id absent from memory (at its home, held by no one) is
/// looked up in the store first: the commands naming it wait in `loading` until the
/// store answers (`Cmd::Loaded`), then run in their order.
pub struct LocalSessions {
    pub(super) me: usize,
    pub(super) sessions: HashMap<String, Session>,
    /// Ids whose home is this worker and whose session another worker holds.
    pub(super) moved: HashMap<String, usize>,
    pub(super) limits: SessionsConfig,
    pub(super) next_token: u64,
    /// Every worker's session mailbox (index = worker id), this one's included.
    pub(super) peers: Peers<Cmd>,
    /// Published count for `/api/status` (written only by this worker).
    pub(super) count: Arc<AtomicUsize>,
    /// Most sessions this worker keeps (`sessions.max_sessions` / workers).
    pub(super) capacity: usize,
    pub(super) store: Arc<dyn Store>,
    /// Ids being read from the store, with the commands waiting for them, in order.
    pub(super) loading: HashMap<String, Vec<Cmd>>,
    /// Ids the store just said it does not have, while their waiting commands run.
    pub(super) absent: HashSet<String>,
    /// Turns the store committed for sessions held here (`Cmd::Committed`).
    pub(super) commits: Arc<CommitQueue>,
}

impl LocalSessions {
    pub fn new(limits: SessionsConfig, peers: Peers<Cmd>, count: Arc<AtomicUsize>, store: Arc<dyn Store>) -> Self {
        let me = peers.me();
        let capacity = (limits.max_sessions / peers.workers().max(1)).max(1);
        LocalSessions {
            me,
            sessions: HashMap::new(),
            moved: HashMap::new(),
            limits,
            next_token: 1,
            peers,
            count,
            capacity,
            store,
            loading: HashMap::new(),
            absent: HashSet::new(),
            commits: Arc::new(CommitQueue::default()),
        }
    }

    /// Whether a command for `id`, to be handled here, must first look in the store:
    /// the store is durable, the id is homed here, no worker holds it, and it is
    /// neither being loaded already nor just found absent.
    pub(super) fn must_load(&self, id: &str, fresh: bool) -> bool {
        !fresh
            && self.store.durable()
            && !self.sessions.contains_key(id)
            && !self.absent.contains(id)
            && self.home(id) == self.me
            && !self.moved.contains_key(id)
    }

    /// Parks `cmd` until `id` is read from the store (asking the store if this is the
    /// first command waiting for it).
    pub(super) fn defer(&mut self, id: String, cmd: Cmd) {
        match self.loading.entry(id) {
            Entry::Occupied(mut e) => e.get_mut().push(cmd),
            Entry::Vacant(e) => {
                let id = e.key().clone();
                e.insert(vec![cmd]);
                let (peers, me) = (self.peers.clone(), self.me);
                let key = id.clone();
                self.store.load(
                    key,
                    Box::new(move |result| {
                        let _ = peers.send(me, Cmd::Loaded { id, result });
                    }),
                );
            }
        }
    }

    /// The store answered for `id`: the session joins memory (or is known absent) and
    /// the commands that waited run in order; a failed read fails them (503).
    pub(super) fn loaded(&mut self, id: String, result: Result<Option<LoadedSession>, crate::store::StoreError>) {
        let waiting = self.loading.remove(&id).unwrap_or_default();
        match result {
            Ok(Some(found)) => {
                // Kept even over capacity: commands are waiting for it.
                self.make_room();
                self.sessions.insert(id, from_store(found, &self.limits));
                for cmd in waiting {
                    self.handle(cmd);
                }
            }
            Ok(None) => {
                self.absent.insert(id.clone());
                for cmd in waiting {
                    self.handle(cmd);
                }
                self.absent.remove(&id);
            }
            Err(e) => {
                let err = e.to_api();
                for cmd in waiting {
                    match cmd {
                        Cmd::Begin { reply, .. } => {
                            let _ = reply.send(Err(err.clone()));
                        }
                        Cmd::Get { reply, .. } => {
                            let _ = reply.send(Err(err.clone()));
                        }
                        Cmd::Act { reply, .. } => {
                            let _ = reply.send(Err(err.clone()));
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    pub(super) fn home(&self, id: &str) -> usize {
        owner_of(id, self.peers.workers())
    }

    pub(super) fn post(&self, to: usize, cmd: Cmd) {
        let _ = self.peers.send(to, cmd);
    }

    /// Where a command for `id` that has already travelled `hops` times goes from
    /// here: `None` to be handled here (held here, or homed here and absent), or the
    /// worker to pass it to; an error past `MAX_HOPS` (a routing bug, not a loop).
    pub(super) fn route(&self, id: &str, hops: u8) -> Result<Option<usize>, ApiError> {
        let next = if self.sessions.contains_key(id) {
            None
        } else if self.home(id) != self.me {
            Some(self.home(id))
        } else {
            self.moved.get(id).copied()
        };
        if next.is_some() && hops >= MAX_HOPS {
            return Err(ApiError::internal("session routing loop"));
        }
        Ok(next)
    }

    /// Tells the home of a session this guest held that it is gone.
    pub(super) fn gone(&self, id: &str) {
        let home = self.home(id);
        if home != self.me {
            self.post(home, Cmd::Gone { id: id.to_string(), from: self.me });
        }
    }

    /// Makes room for one more session: forgets the least recently updated idle tenth
    /// of the shard at once (a cut-off time found with one selection over timestamps,
    /// then one `retain` pass), so a flood of new sessions costs one scan per many
    /// inserts and no per-session allocation.
    pub(super) fn make_room(&mut self) -> bool {
        if self.sessions.len() < self.capacity {
            return true;
        }
        let mut times: Vec<u64> = self.sessions.values().filter(|s| s.idle()).map(|s| s.info.updated_at_ms).collect();
        if times.is_empty() {
            return false;
        }
        let evict = (self.capacity / 10).clamp(1, times.len());
        let (_, cutoff, _) = times.select_nth_unstable(evict - 1);
        let cutoff = *cutoff;
        self.drop_where(|s| s.idle() && s.info.updated_at_ms <= cutoff);
        true
    }

    /// Forgets the sessions `evict` picks, telling the homes of guests.
    pub(super) fn drop_where(&mut self, evict: impl Fn(&Session) -> bool) -> usize {
        let (me, workers, peers) = (self.me, self.peers.workers(), self.peers.clone());
        let before = self.sessions.len();
        self.sessions.retain(|id, s| {
            if !evict(s) {
                return true;
            }
            let home = owner_of(id, workers);
            if home != me {
                let _ = peers.send(home, Cmd::Gone { id: id.clone(), from: me });
            }
            false
        });
        before - self.sessions.len()
    }

    /// Applies one command: here, or passed on to the worker that can.
    pub fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Begin { req, from, hops, fresh, reply } => {
                // `begin` always sets the id before sending.
                let id = req.id.clone().unwrap_or_default();
                match self.route(&id, hops) {
                    Ok(None) if self.must_load(&id, fresh) => {
                        self.defer(id, Cmd::Begin { req, from, hops, fresh, reply });
                    }
                    Ok(None) => self.begin(id, req, from, reply),
                    Ok(Some(w)) => self.post(w, Cmd::Begin { req, from, hops: hops + 1, fresh, reply }),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Cmd::Finish { id, token, user, assistant, model, ack, answer } => {
                self.finish(&id, token, user, assistant, model, ack, answer)
            }
            Cmd::Committed => {
                // Nothing panics while holding the lock; a poisoned one is still whole.
                let turns = std::mem::take(&mut *self.commits.lock().unwrap_or_else(PoisonError::into_inner));
                for t in turns {
                    self.committed(&t.id, t.token, t.epoch, t.messages, t.model, t.result, t.ack);
                }
            }
            Cmd::Loaded { id, result } => self.loaded(id, result),
            Cmd::Abort { id, token } => self.release(&id, token),
            Cmd::Get { id, who, limit, hops, reply } => match self.route(&id, hops) {
                Ok(None) if self.must_load(&id, false) => {
                    self.defer(id.clone(), Cmd::Get { id, who, limit, hops, reply })
                }
                Ok(None) => {
                    let _ = reply.send(self.get(&id, &who, limit));
                }
                Ok(Some(w)) => self.post(w, Cmd::Get { id, who, limit, hops: hops + 1, reply }),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Cmd::List { who, channel, after, limit, reply } => {
                let _ = reply.send(Ok(self.list(&who, channel.as_deref(), after.as_ref(), limit)));
            }
            Cmd::Act { id, who, action, hops, reply } => match self.route(&id, hops) {
                Ok(None) if self.must_load(&id, false) => {
                    self.defer(id.clone(), Cmd::Act { id, who, action, hops, reply })
                }
                Ok(None) => {
                    let (result, write) = self.act(&id, &who, action);
                    match write {
                        Some(w) if self.store.acks_after_commit() => self.store.write(
                            w,
                            Some(Box::new(move |stored| {
                                let _ = reply.send(stored.map_err(|e| e.to_api()).and(result));
                            })),
                        ),
                        Some(w) => {
                            self.store.write(w, None);
                            let _ = reply.send(result);
                        }
                        None => {
                            let _ = reply.send(result);
                        }
                    }
                }
                Ok(Some(w)) => self.post(w, Cmd::Act { id, who, action, hops: hops + 1, reply }),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Cmd::Adopt { session, created, req, reply } => self.adopt(*session, created, req, reply),
            Cmd::Return { session, then } => {
                let id = session.info.id.clone();
                self.moved.remove(&id);
                self.sessions.insert(id, *session);
                if let Some(cmd) = then {
                    self.handle(*cmd);
                }
            }
            Cmd::Gone { id, from } => {
                if self.moved.get(&id) == Some(&from) {
                    self.moved.remove(&id);
                }
            }
        }
        self.count.store(self.sessions.len(), Ordering::Relaxed);
    }

    /// A turn for a session this shard holds, or that is absent and homed here.
    pub(super) fn begin(&mut self, id: String, req: BeginTurn, from: usize, reply: Reply<TurnGrant>) {
        let idle_here = self.sessions.get(&id).map(Session::idle);
        if from != self.me && idle_here != Some(false) {
            // Idle or absent, asked for from another worker: the session moves there.
            let home = self.home(&id);
            if let Some(s) = self.sessions.remove(&id) {
                if !visible(&s.info, &req.who) {
                    self.sessions.insert(id.clone(), s);
                    let _ = reply.send(Err(invalid_session(&id)));
                    return;
                }
                if home == self.me {
                    self.moved.insert(id, from);
                    self.post(from, Cmd::Adopt { session: Box::new(s), created: false, req, reply });
                } else {
                    // A guest hands it back to its home, which moves it on.
                    let then = Cmd::Begin { req, from, hops: 0, fresh: false, reply };
                    self.post(home, Cmd::Return { session: Box::new(s), then: Some(Box::new(then)) });
                }
            } else {
                // Absent (this is its home): it is created where it is wanted.
                let s = new_session(&id, &req);
                self.moved.insert(id, from);
                self.post(from, Cmd::Adopt { session: Box::new(s), created: true, req, reply });
            }
            return;
        }
        let created = idle_here.is_none();
        if created {
            if !self.make_room() {
                let _ = reply
                    .send(Err(ApiError::new(ErrorCode::Overloaded, "too many sessions in flight").with_retry_after(1)));
                return;
            }
            self.sessions.insert(id.clone(), new_session(&id, &req));
        }
        let Some(s) = self.sessions.get_mut(&id) else {
            let _ = reply.send(Err(ApiError::internal("session vanished")));
            return;
        };
        if !visible(&s.info, &req.who) {
            let _ = reply.send(Err(invalid_session(&id)));
            return;
        }
        if s.busy.is_some() {
            s.waiters.push_back((req, reply));
            return;
        }
        self.grant(&id, req, reply, created);
    }

    /// Takes a session handed over by its home and grants the turn that asked for it.
    pub(super) fn adopt(&mut self, session: Session, created: bool, req: BeginTurn, reply: Reply<TurnGrant>) {
        let id = session.info.id.clone();
        // A moved session is kept even over capacity (its history must not be lost);
        // a new one is refused if nothing idle can make room.
        if !self.make_room() && created {
            let _ = reply
                .send(Err(ApiError::new(ErrorCode::Overloaded, "too many sessions in flight").with_retry_after(1)));
            self.gone(&id);
            return;
        }
        self.sessions.insert(id.clone(), session);
        self.grant(&id, req, reply, created);
    }

    /// Gives the turn of an idle session to `req`; if its requester is gone, tries the
    /// next waiter (the grant aborts itself on drop, which lands back here).
    pub(super) fn grant(&mut self, id: &str, req: BeginTurn, reply: Reply<TurnGrant>, created: bool) {
        let token = self.next_token;
        self.next_token += 1;
        let Some(s) = self.sessions.get_mut(id) else { return };
        s.busy = Some(token);
        if created {
            s.created_by = Some(token);
        }
        let model = req.requested_model.clone().unwrap_or_else(|| s.info.model.clone());
        let history = s
            .messages
            .iter()
            .map(|m| Message { role: m.role, content: m.content.clone(), extra: m.extra.clone() })
            .collect();
        let grant = TurnGrant {
            session_id: id.to_string(),
            model,
            history,
            appended: s.appended,
            created,
            token,
            holder: self.me,
            peers: self.peers.clone(),
            finished: false,
        };
        // If the requester is gone the grant comes back inside the error and its Drop
        // sends Abort, which releases the session for the next waiter.
        let _ = reply.send(Ok(grant));
    }

    /// A turn ended: its messages (each bounded to half of `max_bytes`, so the newest
    /// pair the trim keeps fits the bound too) are written to the store and recorded.
    /// With `durability = "ack"` they enter memory, and the session is released, only
    /// once committed (`committed`); otherwise at once.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish(
        &mut self,
        id: &str,
        token: u64,
        user: Vec<Message>,
        assistant: Message,
        model: String,
        ack: Option<Reply<()>>,
        answer: Option<SpoolAnswer>,
    ) {
        let now = clock::now_unix_ms();
        let limits = &self.limits;
        let Some(s) = self.sessions.get_mut(id).filter(|s| s.busy == Some(token)) else {
            // Deleted while the turn ran: nothing to record but a webhook's reply.
            if let Some(a) = answer {
                let done: crate::store::Done<()> = match ack {
                    Some(ack) => Box::new(move |r| {
                        let _ = ack.send(r.map_err(|e| e.to_api()));
                    }),
                    None => Box::new(|_| {}),
                };
                self.store.answer(a.spool_id, a.parts, done);
            } else if let Some(ack) = ack {
                let _ = ack.send(Ok(()));
            }
            return;
        };
        let new: Vec<StoredMessage> = user
            .into_iter()
            .chain([assistant])
            .map(|m| {
                let m = bounded(m, limits.max_bytes / 2);
                StoredMessage { role: m.role, content: m.content, extra: m.extra, at: now }
            })
            .collect();
        if !self.store.durable() {
            if let Some(a) = answer {
                self.store.answer(a.spool_id, a.parts, Box::new(|_| {}));
            }
        } else {
            let mut write = turn_write(s, &new, &model, now, limits);
            if let Write::Turn { answer: slot, .. } = &mut write {
                *slot = answer;
            }
            if let Write::Turn { trim: Some(from), .. } = &write {
                s.disk_from = *from;
            }
            if self.store.acks_after_commit() {
                let (peers, me, commits) = (self.peers.clone(), self.me, self.commits.clone());
                let turn = CommittedTurn {
                    id: id.to_string(),
                    token,
                    epoch: s.epoch,
                    messages: new,
                    model,
                    result: Ok(()),
                    ack,
                };
                self.store.write(
                    write,
                    Some(Box::new(move |result| {
                        let turn = CommittedTurn { result, ..turn };
                        let first = {
                            let mut q = commits.lock().unwrap_or_else(PoisonError::into_inner);
                            q.push(turn);
                            q.len() == 1
                        };
                        if first {
                            let _ = peers.send(me, Cmd::Committed);
                        }
                    })),
                );
                return;
            }
            self.store.write(write, None);
        }
        record(s, new, model, now, limits);
        if let Some(ack) = ack {
            let _ = ack.send(Ok(()));
        }
        self.release(id, token);
    }

    /// The store committed (or failed) a finished turn's write: on success the
    /// messages enter the history (unless a reset came in between); either way the
    /// client's turn gets its answer and the session its next turn.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn committed(
        &mut self,
        id: &str,
        token: u64,
        epoch: u64,
        messages: Vec<StoredMessage>,
        model: String,
        result: Result<(), crate::store::StoreError>,
        ack: Option<Reply<()>>,
    ) {
        let now = clock::now_unix_ms();
        if let (Ok(()), Some(s)) = (&result, self.sessions.get_mut(id).filter(|s| s.busy == Some(token))) {
            if s.epoch == epoch {
                record(s, messages, model, now, &self.limits);
            } else {
                s.appended += messages.len() as u64;
                s.stored = s.appended;
                s.created_by = None;
            }
        }
        if let Some(ack) = ack {
            let _ = ack.send(result.map_err(|e| e.to_api()));
        }
        self.release(id, token);
    }

    pub(super) fn release(&mut self, id: &str, token: u64) {
        let Some(s) = self.sessions.get_mut(id) else { return };
        if s.busy != Some(token) {
            return;
        }
        s.busy = None;
        if let Some((req, reply)) = s.waiters.pop_front() {
            self.grant(id, req, reply, false);
        } else if s.created_by == Some(token) {
            // The turn that created it ended without recording anything (`finish`
            // clears `created_by`): no session is left behind by a failed turn.
            self.sessions.remove(id);
            self.gone(id);
        }
    }

    pub(super) fn get(&self, id: &str, who: &Identity, limit: Option<usize>) -> Result<SessionView, ApiError> {
        let s = self.sessions.get(id).filter(|s| visible(&s.info, who)).ok_or_else(|| invalid_session(id))?;
        let skip = limit.map_or(0, |l| s.messages.len().saturating_sub(l));
        Ok(SessionView {
            info: s.info.clone(),
            messages: s.messages.iter().skip(skip).cloned().collect(),
            appended: s.appended,
        })
    }

    pub(super) fn list(
        &self,
        who: &Identity,
        channel: Option<&str>,
        after: Option<&(u64, String)>,
        limit: usize,
    ) -> Vec<SessionInfo> {
        let mut out: Vec<&SessionInfo> = self
            .sessions
            .values()
            .map(|s| &s.info)
            .filter(|i| visible(i, who))
            .filter(|i| channel.is_none_or(|c| i.channel == c))
            .filter(|i| after.is_none_or(|a| sort_key(i) < (a.0, a.1.as_str())))
            .collect();
        out.sort_unstable_by(|a, b| sort_key(b).cmp(&sort_key(a)));
        out.into_iter().take(limit).cloned().collect()
    }

    /// Applies `action` in memory; returns its answer and the store write that makes
    /// it last (none for the memory store or a refused action).
    pub(super) fn act(
        &mut self,
        id: &str,
        who: &Identity,
        action: SessionAction,
    ) -> (Result<SessionInfo, ApiError>, Option<Write>) {
        let durable = self.store.durable();
        let Some(s) = self.sessions.get_mut(id).filter(|s| visible(&s.info, who)) else {
            return (Err(invalid_session(id)), None);
        };
        let now = clock::now_unix_ms();
        s.info.updated_at_ms = now;
        let (result, write) = match action {
            SessionAction::Reset => {
                s.messages.clear();
                s.bytes = 0;
                s.info.message_count = 0;
                s.epoch += 1;
                (Ok(s.info.clone()), Write::Reset { id: id.to_string(), at_ms: now })
            }
            SessionAction::SetModel(model) => {
                s.info.model = model.clone();
                (Ok(s.info.clone()), Write::SetModel { id: id.to_string(), model, at_ms: now })
            }
            SessionAction::Delete => {
                let info = s.info.clone();
                // A turn in flight finishes against nothing; its waiters are refused.
                if let Some(s) = self.sessions.remove(id) {
                    for (_, reply) in s.waiters {
                        let _ = reply.send(Err(invalid_session(id)));
                    }
                }
                self.gone(id);
                (Ok(info), Write::Delete { id: id.to_string() })
            }
        };
        (result, durable.then_some(write))
    }

    /// Drops sessions idle longer than the TTL that have no turn in flight.
    pub fn evict_idle(&mut self, now_ms: u64) -> usize {
        let ttl_ms = self.limits.idle_ttl_secs.saturating_mul(1000);
        let n = self.drop_where(|s| s.busy.is_none() && now_ms.saturating_sub(s.info.updated_at_ms) >= ttl_ms);
        self.count.store(self.sessions.len(), Ordering::Relaxed);
        n
    }
}

pub(super) fn new_session(id: &str, req: &BeginTurn) -> Session {
    let now = clock::now_unix_ms();
    let model = req.requested_model.clone().unwrap_or_else(|| req.default_model.clone());
    let messages: VecDeque<StoredMessage> = req
        .seed
        .iter()
        .map(|m| StoredMessage { role: m.role, content: m.content.clone(), extra: m.extra.clone(), at: now })
        .collect();
    let bytes = req.seed.iter().map(Message::size).sum();
    Session {
        info: SessionInfo {
            id: id.to_string(),
            channel: req.channel.clone(),
            model,
            owner: req.who.name.clone(),
            message_count: messages.len(),
            created_at_ms: now,
            updated_at_ms: now,
        },
        appended: messages.len() as u64,
        stored: 0,
        disk_from: 0,
        epoch: 0,
        messages,
        bytes,
        busy: None,
        waiters: VecDeque::new(),
        created_by: None,
    }
}

pub(super) fn sort_key(i: &SessionInfo) -> (u64, &str) {
    (i.created_at_ms, i.id.as_str())
}

pub(super) fn visible(info: &SessionInfo, who: &Identity) -> bool {
    who.is_admin() || info.owner == who.name
}

pub(super) fn invalid_session(id: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidSession, format!("unknown session {id}"))
}

/// The marker ending a message cut for storage.
pub const TRUNCATED: &str = " [truncated for storage]";

/// `m` as stored: a message over `max` bytes keeps its first `max` bytes of text (at
/// a character boundary) and the `TRUNCATED` marker, and drops parts and tool calls
/// past the bound. The client got the whole message; the history keeps what fits.
pub(super) fn bounded(m: Message, max: usize) -> Message {
    if m.size() <= max {
        return m;
    }
    let keep = m.content.floor_char_boundary(max.saturating_sub(TRUNCATED.len()));
    let content: Arc<str> = Arc::from(format!("{}{TRUNCATED}", &m.content[..keep]));
    // A tool result keeps the id of the call it answers; the rest goes.
    let extra = m.extra.and_then(|e| {
        e.tool_call_id
            .clone()
            .map(|id| Arc::new(crate::chat::MessageExtra { tool_call_id: Some(id), ..Default::default() }))
    });
    Message { role: m.role, content, extra }
}

/// The bytes a stored message counts for (`Message::size`).
pub(super) fn stored_size(m: &StoredMessage) -> usize {
    Message { role: m.role, content: m.content.clone(), extra: m.extra.clone() }.size()
}

/// The history bound: over `max_messages`, or over `max_bytes` with more than the
/// newest pair (which is always kept).
fn over_bounds(count: usize, bytes: usize, limits: &SessionsConfig) -> bool {
    count > limits.max_messages || (bytes > limits.max_bytes && count > 2)
}

/// Drops the oldest messages while the history is `over_bounds`; `bytes` follows.
fn trim_front(messages: &mut VecDeque<StoredMessage>, bytes: &mut usize, limits: &SessionsConfig) {
    while over_bounds(messages.len(), *bytes, limits) {
        match messages.pop_front() {
            Some(old) => *bytes -= stored_size(&old),
            None => break,
        }
    }
}

/// Appends a turn's messages to the history, trims it to the bounds (oldest first;
/// the newest pair always stays) and updates the metadata.
pub(super) fn record(s: &mut Session, new: Vec<StoredMessage>, model: String, now: u64, limits: &SessionsConfig) {
    for m in new {
        s.bytes += stored_size(&m);
        s.appended += 1;
        s.messages.push_back(m);
    }
    trim_front(&mut s.messages, &mut s.bytes, limits);
    s.stored = s.appended;
    s.info.model = model;
    s.info.updated_at_ms = now;
    s.info.message_count = s.messages.len();
    s.created_by = None;
}

/// Trimmed messages are deleted from the store once this many have gathered (one range
/// delete then, instead of one per turn); until then they stay on disk unread (a load
/// starts at the kept ones).
pub(super) const TRIM_SLACK: u64 = 16;

/// The store write for a turn adding `new` to `s` (not applied yet): the messages not
/// stored yet that the trim keeps, the row after the turn, and, once `TRIM_SLACK`
/// trimmed messages have gathered, where the store deletes up to.
pub(super) fn turn_write(s: &Session, new: &[StoredMessage], model: &str, now: u64, limits: &SessionsConfig) -> Write {
    let first_in_memory = s.appended.saturating_sub(s.messages.len() as u64);
    let appended = s.appended + new.len() as u64;
    // The trim `record` will do: the oldest go while over either bound.
    let mut kept = s.messages.len() + new.len();
    let mut bytes = s.bytes + new.iter().map(stored_size).sum::<usize>();
    let mut sizes = s.messages.iter().chain(new).map(stored_size);
    while over_bounds(kept, bytes, limits) {
        bytes -= sizes.next().unwrap_or(0);
        kept -= 1;
    }
    let first_kept = appended.saturating_sub(kept as u64);
    let messages = s
        .messages
        .iter()
        .chain(new)
        .zip(first_in_memory..)
        .filter(|(_, seq)| *seq >= s.stored.max(first_kept))
        .map(|(m, seq)| MessageRow {
            seq,
            message: Message { role: m.role, content: m.content.clone(), extra: m.extra.clone() },
            at_ms: m.at,
        })
        .collect();
    let info = &s.info;
    Write::Turn {
        row: SessionRow {
            id: info.id.clone(),
            channel: info.channel.clone(),
            model: model.to_string(),
            owner: info.owner.to_string(),
            created_at_ms: info.created_at_ms,
            updated_at_ms: now,
            appended,
            message_count: kept as u64,
        },
        messages,
        trim: (first_kept >= s.disk_from + TRIM_SLACK).then_some(first_kept),
        answer: None,
    }
}

/// A session read from the store, as memory holds it (trimmed to the current bounds
/// should they have shrunk since it was written).
pub(super) fn from_store(found: LoadedSession, limits: &SessionsConfig) -> Session {
    let row = found.row;
    // The numbering goes on after the last stored message, whatever the row says.
    let appended = found.messages.last().map_or(row.appended, |m| row.appended.max(m.seq + 1));
    let mut messages: VecDeque<StoredMessage> = found
        .messages
        .into_iter()
        .map(|m| StoredMessage {
            role: m.message.role,
            content: m.message.content,
            extra: m.message.extra,
            at: m.at_ms,
        })
        .collect();
    let mut bytes: usize = messages.iter().map(stored_size).sum();
    trim_front(&mut messages, &mut bytes, limits);
    Session {
        info: SessionInfo {
            id: row.id,
            channel: row.channel,
            model: row.model,
            owner: Arc::from(row.owner),
            message_count: messages.len(),
            created_at_ms: row.created_at_ms,
            updated_at_ms: row.updated_at_ms,
        },
        messages,
        appended,
        stored: appended,
        // What lies below the kept messages on disk is not known: the first trim
        // deletes all of it.
        disk_from: 0,
        epoch: 0,
        bytes,
        busy: None,
        waiters: VecDeque::new(),
        created_by: None,
    }
}
