//! One worker's sessions (`LocalSessions`): the sessions it holds, the directory of
//! the ids it is home to that another worker holds, and the routing of every session
//! command (`Cmd`) between them. Driven by `SessionHub` (local calls) and by the
//! worker's session mailbox (`SessionHub::serve`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::auth::Identity;
use crate::chat::Message;
use crate::clock;
use crate::config::SessionsConfig;
use crate::error::{ApiError, ErrorCode};
use crate::peers::Peers;

use super::id::owner_of;
use super::{
    BeginTurn, Cmd, Reply, Session, SessionAction, SessionInfo, SessionView, StoredMessage, TurnGrant, MAX_HOPS,
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
}

impl LocalSessions {
    pub fn new(limits: SessionsConfig, peers: Peers<Cmd>, count: Arc<AtomicUsize>) -> Self {
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
            Cmd::Begin { req, from, hops, reply } => {
                // `begin` always sets the id before sending.
                let id = req.id.clone().unwrap_or_default();
                match self.route(&id, hops) {
                    Ok(None) => self.begin(id, req, from, reply),
                    Ok(Some(w)) => self.post(w, Cmd::Begin { req, from, hops: hops + 1, reply }),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Cmd::Finish { id, token, user, assistant, model } => self.finish(&id, token, user, assistant, model),
            Cmd::Abort { id, token } => self.release(&id, token),
            Cmd::Get { id, who, limit, hops, reply } => match self.route(&id, hops) {
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
                Ok(None) => {
                    let _ = reply.send(self.act(&id, &who, action));
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
                    let then = Cmd::Begin { req, from, hops: 0, reply };
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

    pub(super) fn finish(&mut self, id: &str, token: u64, user: Vec<Message>, assistant: Message, model: String) {
        let now = clock::now_unix_ms();
        let limits = &self.limits;
        if let Some(s) = self.sessions.get_mut(id) {
            if s.busy == Some(token) {
                // Each message is stored within half of `max_bytes`, so the newest pair
                // (which the trim keeps) fits the bound too (hardening: session memory is
                // bounded by `max_bytes` whatever one message's size).
                for m in user.into_iter().chain([assistant]) {
                    let m = bounded(m, limits.max_bytes / 2);
                    s.bytes += m.size();
                    s.appended += 1;
                    s.messages.push_back(StoredMessage { role: m.role, content: m.content, extra: m.extra, at: now });
                }
                while s.messages.len() > limits.max_messages || (s.bytes > limits.max_bytes && s.messages.len() > 2) {
                    if let Some(old) = s.messages.pop_front() {
                        s.bytes -= stored_size(&old);
                    }
                }
                s.info.model = model;
                s.info.updated_at_ms = now;
                s.info.message_count = s.messages.len();
                s.created_by = None;
            }
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

    pub(super) fn act(&mut self, id: &str, who: &Identity, action: SessionAction) -> Result<SessionInfo, ApiError> {
        let s = self.sessions.get_mut(id).filter(|s| visible(&s.info, who)).ok_or_else(|| invalid_session(id))?;
        s.info.updated_at_ms = clock::now_unix_ms();
        match action {
            SessionAction::Reset => {
                s.messages.clear();
                s.bytes = 0;
                s.info.message_count = 0;
                Ok(s.info.clone())
            }
            SessionAction::SetModel(model) => {
                s.info.model = model;
                Ok(s.info.clone())
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
                Ok(info)
            }
        }
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
