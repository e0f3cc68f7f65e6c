//! Conversations. A session (id, channel, model, owner key, ordered messages,
//! timestamps) is held by exactly one worker at a time, in a plain `RefCell<Shard>`
//! with no lock. Its home worker (a hash of its id) always knows which worker holds
//! it; other workers reach it by message over `flume` channels (the one cross-core
//! path, as DESIGN.md asks). An idle session moves to the worker its turns come from,
//! so a keep-alive client's turns after the first cost a hash-map lookup and no
//! message; see `Shard` for the routing rules.
//!
//! Turns of one session run one at a time, in arrival order: `begin` grants the turn
//! (with a snapshot of the history, `Arc<str>` contents so nothing is copied) or queues
//! the caller; `finish` appends the user message and the reply and hands the turn to
//! the next waiter. A busy session never moves. A `TurnGrant` dropped without `finish`
//! (client gone, error, task cancelled) aborts the turn from its `Drop`, so a session
//! can never stay locked. History is bounded by message count and bytes (oldest
//! dropped), and sessions idle longer than the TTL leave memory (they are not durable
//! yet).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Identity;
use crate::clock;
use crate::config::SessionsConfig;
use crate::error::{ApiError, ErrorCode};
use crate::provider::{Message, MessageRole};

/// Longest accepted session id.
pub const MAX_ID_LEN: usize = 128;

/// Checks a client-chosen session id: 1..=128 of `[A-Za-z0-9._:-]`.
pub fn validate_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid("sessionId must be 1-128 characters of A-Z a-z 0-9 . _ : -"))
    }
}

/// A fresh random session id (`s_` + 32 hex digits from the OS RNG).
pub fn new_id() -> String {
    let mut raw = [0u8; 16];
    if getrandom::getrandom(&mut raw).is_err() {
        // The OS RNG does not fail on Linux after boot; fall back to a seeded PRNG.
        raw = fastrand::u128(..).to_le_bytes();
    }
    let mut s = String::with_capacity(34);
    s.push_str("s_");
    for b in raw {
        s.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
        s.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
    }
    s
}

/// Which worker owns a session id.
pub fn owner_of(id: &str, workers: usize) -> usize {
    // A fixed-key hasher: every worker must compute the same owner.
    let mut h = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().build_hasher();
    h.write(id.as_bytes());
    (h.finish() % workers.max(1) as u64) as usize
}

/// A message as stored, with its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub role: MessageRole,
    pub content: Arc<str>,
    pub at: u64,
}

/// A session's metadata, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: String,
    pub channel: String,
    pub model: String,
    pub owner: Arc<str>,
    pub message_count: usize,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// A session with (the tail of) its messages.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub info: SessionInfo,
    pub messages: Vec<StoredMessage>,
}

/// What a chat turn asks of the session's owner.
#[derive(Debug, Clone)]
pub struct BeginTurn {
    /// `None` makes a new session with a fresh id.
    pub id: Option<String>,
    pub who: Identity,
    pub channel: String,
    /// The model asked for in the request, if any (already validated).
    pub requested_model: Option<String>,
    /// The model to use when neither the request nor the session names one.
    pub default_model: String,
}

/// Operations on one session (`POST /api/sessions/:id`).
#[derive(Debug, Clone)]
pub enum SessionAction {
    Reset,
    Delete,
    SetModel(String),
}

/// A page of sessions.
#[derive(Debug, Clone)]
pub struct Page {
    pub sessions: Vec<SessionInfo>,
    pub next_cursor: Option<String>,
}

/// The right to run one turn of a session. Dropping it without `finish` aborts the turn.
pub struct TurnGrant {
    pub session_id: String,
    pub model: String,
    pub history: Vec<Message>,
    pub created: bool,
    token: u64,
    /// The worker holding the session while the turn runs (a busy session never moves).
    holder: usize,
    holder_tx: flume::Sender<Cmd>,
    finished: bool,
}

impl std::fmt::Debug for TurnGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnGrant").field("session_id", &self.session_id).field("token", &self.token).finish()
    }
}

impl Drop for TurnGrant {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.holder_tx.send(Cmd::Abort { id: std::mem::take(&mut self.session_id), token: self.token });
        }
    }
}

type Reply<T> = flume::Sender<Result<T, ApiError>>;

/// A command that names a session travels at most this many times between workers
/// (requester → home → holder → home → requester is four); more means a routing bug,
/// answered with an error rather than a loop.
const MAX_HOPS: u8 = 8;

/// Messages between workers' session shards.
pub enum Cmd {
    /// Asks for a turn of a session, for a task on worker `from`.
    Begin {
        req: BeginTurn,
        from: usize,
        hops: u8,
        reply: Reply<TurnGrant>,
    },
    /// Sent to the holder named in the grant (never forwarded).
    Finish {
        id: String,
        token: u64,
        user: Arc<str>,
        assistant: Arc<str>,
        model: String,
    },
    /// Sent to the holder named in the grant (never forwarded).
    Abort {
        id: String,
        token: u64,
    },
    Get {
        id: String,
        who: Identity,
        limit: Option<usize>,
        hops: u8,
        reply: Reply<SessionView>,
    },
    /// The sessions held by the receiving shard (not routed by id).
    List {
        who: Identity,
        channel: Option<String>,
        after: Option<(u64, String)>,
        limit: usize,
        reply: Reply<Vec<SessionInfo>>,
    },
    Act {
        id: String,
        who: Identity,
        action: SessionAction,
        hops: u8,
        reply: Reply<SessionInfo>,
    },
    /// Home → requester: hold this idle session from now on and grant `req` its turn.
    Adopt {
        session: Box<Session>,
        created: bool,
        req: BeginTurn,
        reply: Reply<TurnGrant>,
    },
    /// Guest → home: the session comes back; `then` is the command that made it move.
    Return {
        session: Box<Session>,
        then: Option<Box<Cmd>>,
    },
    /// Guest → home: the session the guest held is gone (deleted, evicted, or an
    /// empty one whose first turn failed).
    Gone {
        id: String,
        from: usize,
    },
}

/// One session's state; it moves between workers whole (`Adopt`/`Return`).
pub struct Session {
    info: SessionInfo,
    messages: VecDeque<StoredMessage>,
    bytes: usize,
    busy: Option<u64>,
    waiters: VecDeque<(BeginTurn, Reply<TurnGrant>)>,
    /// The turn that created this session: if it aborts before anything is recorded,
    /// the session goes too (no empty sessions left behind by failed turns).
    created_by: Option<u64>,
}

impl Session {
    fn idle(&self) -> bool {
        self.busy.is_none() && self.waiters.is_empty()
    }
}

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
pub struct Shard {
    me: usize,
    sessions: HashMap<String, Session>,
    /// Ids whose home is this worker and whose session another worker holds.
    moved: HashMap<String, usize>,
    limits: SessionsConfig,
    next_token: u64,
    /// Every worker's shard inbox (index = worker id), this one's included.
    peers: Arc<[flume::Sender<Cmd>]>,
    /// Published count for `/api/status` (written only by this shard).
    count: Arc<AtomicUsize>,
    /// Most sessions this shard keeps (`sessions.max_sessions` / workers).
    capacity: usize,
}

impl Shard {
    pub fn new(limits: SessionsConfig, me: usize, peers: Arc<[flume::Sender<Cmd>]>, count: Arc<AtomicUsize>) -> Self {
        let capacity = (limits.max_sessions / peers.len().max(1)).max(1);
        Shard { me, sessions: HashMap::new(), moved: HashMap::new(), limits, next_token: 1, peers, count, capacity }
    }

    fn home(&self, id: &str) -> usize {
        owner_of(id, self.peers.len())
    }

    fn post(&self, to: usize, cmd: Cmd) {
        if let Some(tx) = self.peers.get(to) {
            let _ = tx.send(cmd);
        }
    }

    /// Where a command for `id` that has already travelled `hops` times goes from
    /// here: `None` to be handled here (held here, or homed here and absent), or the
    /// worker to pass it to; an error past `MAX_HOPS` (a routing bug, not a loop).
    fn route(&self, id: &str, hops: u8) -> Result<Option<usize>, ApiError> {
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
    fn gone(&self, id: &str) {
        let home = self.home(id);
        if home != self.me {
            self.post(home, Cmd::Gone { id: id.to_string(), from: self.me });
        }
    }

    /// Makes room for one more session: forgets the least recently updated idle tenth
    /// of the shard at once (a cut-off time found with one selection over timestamps,
    /// then one `retain` pass), so a flood of new sessions costs one scan per many
    /// inserts and no per-session allocation.
    fn make_room(&mut self) -> bool {
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
    fn drop_where(&mut self, evict: impl Fn(&Session) -> bool) -> usize {
        let (me, workers, peers) = (self.me, self.peers.len(), self.peers.clone());
        let before = self.sessions.len();
        self.sessions.retain(|id, s| {
            if !evict(s) {
                return true;
            }
            let home = owner_of(id, workers);
            if home != me {
                if let Some(tx) = peers.get(home) {
                    let _ = tx.send(Cmd::Gone { id: id.clone(), from: me });
                }
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
    fn begin(&mut self, id: String, req: BeginTurn, from: usize, reply: Reply<TurnGrant>) {
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
    fn adopt(&mut self, session: Session, created: bool, req: BeginTurn, reply: Reply<TurnGrant>) {
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
    fn grant(&mut self, id: &str, req: BeginTurn, reply: Reply<TurnGrant>, created: bool) {
        let token = self.next_token;
        self.next_token += 1;
        let Some(holder_tx) = self.peers.get(self.me).cloned() else { return };
        let Some(s) = self.sessions.get_mut(id) else { return };
        s.busy = Some(token);
        if created {
            s.created_by = Some(token);
        }
        let model = req.requested_model.clone().unwrap_or_else(|| s.info.model.clone());
        let history = s.messages.iter().map(|m| Message { role: m.role, content: m.content.clone() }).collect();
        let grant = TurnGrant {
            session_id: id.to_string(),
            model,
            history,
            created,
            token,
            holder: self.me,
            holder_tx,
            finished: false,
        };
        // If the requester is gone the grant comes back inside the error and its Drop
        // sends Abort, which releases the session for the next waiter.
        let _ = reply.send(Ok(grant));
    }

    fn finish(&mut self, id: &str, token: u64, user: Arc<str>, assistant: Arc<str>, model: String) {
        let now = clock::now_unix_ms();
        let limits = &self.limits;
        if let Some(s) = self.sessions.get_mut(id) {
            if s.busy == Some(token) {
                for (role, content) in [(MessageRole::User, user), (MessageRole::Assistant, assistant)] {
                    s.bytes += content.len();
                    s.messages.push_back(StoredMessage { role, content, at: now });
                }
                while s.messages.len() > limits.max_messages || (s.bytes > limits.max_bytes && s.messages.len() > 2) {
                    if let Some(old) = s.messages.pop_front() {
                        s.bytes -= old.content.len();
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

    fn release(&mut self, id: &str, token: u64) {
        let Some(s) = self.sessions.get_mut(id) else { return };
        if s.busy != Some(token) {
            return;
        }
        s.busy = None;
        if let Some((req, reply)) = s.waiters.pop_front() {
            self.grant(id, req, reply, false);
        } else if s.created_by == Some(token) && s.messages.is_empty() {
            self.sessions.remove(id);
            self.gone(id);
        }
    }

    fn get(&self, id: &str, who: &Identity, limit: Option<usize>) -> Result<SessionView, ApiError> {
        let s = self.sessions.get(id).filter(|s| visible(&s.info, who)).ok_or_else(|| invalid_session(id))?;
        let skip = limit.map_or(0, |l| s.messages.len().saturating_sub(l));
        Ok(SessionView { info: s.info.clone(), messages: s.messages.iter().skip(skip).cloned().collect() })
    }

    fn list(
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

    fn act(&mut self, id: &str, who: &Identity, action: SessionAction) -> Result<SessionInfo, ApiError> {
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

fn new_session(id: &str, req: &BeginTurn) -> Session {
    let now = clock::now_unix_ms();
    let model = req.requested_model.clone().unwrap_or_else(|| req.default_model.clone());
    Session {
        info: SessionInfo {
            id: id.to_string(),
            channel: req.channel.clone(),
            model,
            owner: req.who.name.clone(),
            message_count: 0,
            created_at_ms: now,
            updated_at_ms: now,
        },
        messages: VecDeque::new(),
        bytes: 0,
        busy: None,
        waiters: VecDeque::new(),
        created_by: None,
    }
}

fn sort_key(i: &SessionInfo) -> (u64, &str) {
    (i.created_at_ms, i.id.as_str())
}

fn visible(info: &SessionInfo, who: &Identity) -> bool {
    who.is_admin() || info.owner == who.name
}

fn invalid_session(id: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidSession, format!("unknown session {id}"))
}

/// One worker's door to every shard: its own (`local`) and the others' (`senders`).
pub struct SessionHub {
    me: usize,
    local: Rc<RefCell<Shard>>,
    senders: Arc<[flume::Sender<Cmd>]>,
    /// This worker's own queue, only looked at (never received from) so that a local
    /// command never overtakes one sent earlier by another worker (e.g. the `Finish`
    /// of a turn whose reply a client has already read).
    inbox: flume::Receiver<Cmd>,
}

impl SessionHub {
    pub fn new(
        me: usize,
        local: Rc<RefCell<Shard>>,
        senders: Arc<[flume::Sender<Cmd>]>,
        inbox: flume::Receiver<Cmd>,
    ) -> Self {
        SessionHub { me, local, senders, inbox }
    }

    /// Runs this worker's shard: serves commands from every worker and evicts idle
    /// sessions once a minute. Returns when all senders are gone.
    pub async fn serve(local: Rc<RefCell<Shard>>, rx: flume::Receiver<Cmd>) {
        let mut last_sweep = clock::now_unix_ms();
        loop {
            match monoio::time::timeout(Duration::from_secs(60), rx.recv_async()).await {
                Ok(Ok(cmd)) => local.borrow_mut().handle(cmd),
                Ok(Err(_)) => return,
                Err(_) => {}
            }
            let now = clock::now_unix_ms();
            if now.saturating_sub(last_sweep) >= 60_000 {
                last_sweep = now;
                local.borrow_mut().evict_idle(now);
            }
        }
    }

    fn send(&self, owner: usize, cmd: Cmd) {
        if owner == self.me {
            // Commands from other workers are waiting: queue behind them (FIFO) rather
            // than overtake them. Only `serve` receives from the inbox: a second
            // receiver racing its pending `recv_async` makes flume re-register wakers
            // without bound.
            if !self.inbox.is_empty() {
                if let Some(tx) = self.senders.get(owner) {
                    let _ = tx.send(cmd);
                    return;
                }
            }
            self.local.borrow_mut().handle(cmd);
        } else if let Some(tx) = self.senders.get(owner) {
            let _ = tx.send(cmd);
        }
    }

    async fn ask<T>(&self, owner: usize, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, ApiError> {
        let (tx, rx) = flume::bounded(1);
        self.send(owner, make(tx));
        match rx.try_recv() {
            Ok(r) => r,
            Err(_) => rx.recv_async().await.map_err(|_| ApiError::internal("session owner is gone"))?,
        }
    }

    /// Waits for the turn of a session (creating it if needed). The local shard routes
    /// it: a session held here answers at once, with no message to another worker.
    pub async fn begin(&self, mut req: BeginTurn) -> Result<TurnGrant, ApiError> {
        if req.id.is_none() {
            // A new session may live anywhere: pick an id this worker is home to, so
            // no other worker keeps a directory entry for it.
            let workers = self.senders.len();
            let mut id = new_id();
            for _ in 0..64 {
                if owner_of(&id, workers) == self.me {
                    break;
                }
                id = new_id();
            }
            req.id = Some(id);
        }
        let from = self.me;
        self.ask(self.me, |reply| Cmd::Begin { req, from, hops: 0, reply }).await
    }

    /// Records a completed turn and releases the session (on the worker holding it).
    pub fn finish(&self, mut grant: TurnGrant, user: Arc<str>, assistant: Arc<str>) {
        grant.finished = true;
        let cmd = Cmd::Finish {
            id: std::mem::take(&mut grant.session_id),
            token: grant.token,
            user,
            assistant,
            model: std::mem::take(&mut grant.model),
        };
        self.send(grant.holder, cmd);
    }

    pub async fn get(&self, id: &str, who: &Identity, limit: Option<usize>) -> Result<SessionView, ApiError> {
        let (id, who) = (id.to_string(), who.clone());
        self.ask(self.me, |reply| Cmd::Get { id, who, limit, hops: 0, reply }).await
    }

    pub async fn act(&self, id: &str, who: &Identity, action: SessionAction) -> Result<SessionInfo, ApiError> {
        let (id, who) = (id.to_string(), who.clone());
        self.ask(self.me, |reply| Cmd::Act { id, who, action, hops: 0, reply }).await
    }

    /// Lists sessions newest first across all shards; `cursor` continues a listing.
    /// (A session moving between workers at that instant can be missed by one page.)
    pub async fn list(
        &self,
        who: &Identity,
        channel: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page, ApiError> {
        let after = cursor.map(parse_cursor).transpose()?;
        let mut all = Vec::new();
        for owner in 0..self.senders.len() {
            let (who, channel, after) = (who.clone(), channel.map(str::to_string), after.clone());
            let part = self.ask(owner, |reply| Cmd::List { who, channel, after, limit: limit + 1, reply }).await?;
            all.extend(part);
        }
        all.sort_unstable_by(|a, b| sort_key(b).cmp(&sort_key(a)));
        let more = all.len() > limit;
        all.truncate(limit);
        let next_cursor = more.then(|| all.last().map(|i| format!("{}.{}", i.created_at_ms, i.id))).flatten();
        Ok(Page { sessions: all, next_cursor })
    }
}

fn parse_cursor(c: &str) -> Result<(u64, String), ApiError> {
    let bad = || ApiError::invalid("cursor is not one this server issued");
    let (ms, id) = c.split_once('.').ok_or_else(bad)?;
    Ok((ms.parse().map_err(|_| bad())?, id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    fn who(name: &str, role: Role) -> Identity {
        Identity { name: Arc::from(name), role, key_index: Some(0) }
    }

    /// `n` workers' shards and hubs, driven by hand: `pump` delivers every queued
    /// command until all inboxes are empty (what each worker's `serve` does).
    struct Cluster {
        shards: Vec<Rc<RefCell<Shard>>>,
        hubs: Vec<SessionHub>,
        inboxes: Vec<flume::Receiver<Cmd>>,
    }

    impl Cluster {
        fn new(n: usize, max_sessions: usize) -> Self {
            let (txs, inboxes): (Vec<_>, Vec<_>) = (0..n).map(|_| flume::unbounded::<Cmd>()).unzip();
            let txs: Arc<[flume::Sender<Cmd>]> = Arc::from(txs);
            let limits = SessionsConfig { max_messages: 4, max_bytes: 1 << 20, idle_ttl_secs: 60, max_sessions };
            let shards: Vec<_> = (0..n)
                .map(|i| {
                    Rc::new(RefCell::new(Shard::new(limits.clone(), i, txs.clone(), Arc::new(AtomicUsize::new(0)))))
                })
                .collect();
            // Hubs look at an inbox nobody fills, so they always handle locally (the
            // FIFO rule is exercised by the integration tests).
            let hubs =
                (0..n).map(|i| SessionHub::new(i, shards[i].clone(), txs.clone(), flume::unbounded().1)).collect();
            Cluster { shards, hubs, inboxes }
        }

        /// Delivers queued commands; returns how many there were.
        fn pump(&self) -> usize {
            let mut n = 0;
            loop {
                let mut moved = false;
                for (i, rx) in self.inboxes.iter().enumerate() {
                    while let Ok(cmd) = rx.try_recv() {
                        self.shards[i].borrow_mut().handle(cmd);
                        n += 1;
                        moved = true;
                    }
                }
                if !moved {
                    return n;
                }
            }
        }

        fn begin(&self, on: usize, id: &str, w: &Identity) -> flume::Receiver<Result<TurnGrant, ApiError>> {
            let (tx, rx) = flume::bounded(1);
            let req = BeginTurn {
                id: Some(id.into()),
                who: w.clone(),
                channel: "api".into(),
                requested_model: None,
                default_model: "mock".into(),
            };
            self.hubs[on].send(on, Cmd::Begin { req, from: on, hops: 0, reply: tx });
            rx
        }

        fn turn(&self, on: usize, id: &str, w: &Identity, q: &str) -> (usize, usize) {
            let rx = self.begin(on, id, w);
            let msgs = self.pump();
            let g = rx.try_recv().unwrap().unwrap();
            let seen = g.history.len();
            self.hubs[on].finish(g, Arc::from(q), Arc::from(format!("re: {q}")));
            (msgs + self.pump(), seen)
        }

        fn holders(&self, id: &str) -> Vec<usize> {
            (0..self.shards.len()).filter(|&i| self.shards[i].borrow().sessions.contains_key(id)).collect()
        }
    }

    /// An id whose home is worker `home` of `n`.
    fn id_homed(home: usize, n: usize) -> String {
        (0..).map(|i| format!("s{i}")).find(|id| owner_of(id, n) == home).unwrap()
    }

    #[test]
    fn second_turn_waits_for_the_first_and_sees_its_reply() {
        let c = Cluster::new(1, 20);
        let u = who("app", Role::User);
        let first = c.begin(0, "s1", &u).try_recv().unwrap().unwrap();
        assert!(first.created && first.history.is_empty());
        let second = c.begin(0, "s1", &u);
        assert!(second.try_recv().is_err(), "second turn must wait");
        c.hubs[0].finish(first, Arc::from("hi"), Arc::from("hello"));
        let second = second.try_recv().unwrap().unwrap();
        assert_eq!(second.history.len(), 2);
        assert_eq!(&*second.history[1].content, "hello");
        drop(second);
        // The abort travels through the channel.
        assert_eq!(c.pump(), 1);
        assert!(c.begin(0, "s1", &u).try_recv().unwrap().is_ok());
    }

    #[test]
    fn history_is_bounded_and_other_keys_cannot_see_it() {
        let c = Cluster::new(1, 20);
        let u = who("app", Role::User);
        for i in 0..3 {
            c.turn(0, "s1", &u, &format!("q{i}"));
        }
        let sh = c.shards[0].borrow();
        let view = sh.get("s1", &u, None).unwrap();
        assert_eq!(view.messages.len(), 4);
        assert_eq!(&*view.messages[0].content, "q1");
        assert_eq!(sh.get("s1", &who("other", Role::User), None).unwrap_err().code, ErrorCode::InvalidSession);
        assert!(sh.get("s1", &who("ops", Role::Admin), Some(1)).unwrap().messages.len() == 1);
    }

    #[test]
    fn idle_sessions_are_evicted() {
        let c = Cluster::new(1, 20);
        c.turn(0, "s1", &who("a", Role::User), "q");
        let now = clock::now_unix_ms();
        assert_eq!(c.shards[0].borrow_mut().evict_idle(now), 0);
        assert_eq!(c.shards[0].borrow_mut().evict_idle(now + 61_000), 1);
    }

    #[test]
    fn a_session_created_by_a_failed_turn_is_removed() {
        let c = Cluster::new(1, 20);
        let g = c.begin(0, "s1", &who("a", Role::User)).try_recv().unwrap().unwrap();
        drop(g);
        c.pump();
        assert_eq!(
            c.shards[0].borrow().get("s1", &who("a", Role::User), None).unwrap_err().code,
            ErrorCode::InvalidSession
        );
    }

    #[test]
    fn a_flood_of_sessions_is_capped_by_forgetting_the_oldest() {
        let c = Cluster::new(1, 20);
        let u = who("a", Role::User);
        for i in 0..100 {
            c.turn(0, &format!("s{i}"), &u, "q");
        }
        assert!(c.shards[0].borrow().sessions.len() <= 20);
        assert!(c.shards[0].borrow().get("s99", &u, None).is_ok(), "the newest stays");
    }

    #[test]
    fn a_session_moves_to_the_worker_that_uses_it_and_then_costs_no_message() {
        let c = Cluster::new(2, 100);
        let u = who("app", Role::User);
        let id = id_homed(0, 2);
        // Created from worker 1: Begin to the home, Adopt back; then Finish is local.
        let (msgs, seen) = c.turn(1, &id, &u, "q0");
        assert_eq!((msgs, seen), (2, 0));
        assert_eq!(c.holders(&id), vec![1]);
        assert_eq!(c.shards[0].borrow().moved.get(&id), Some(&1));
        for i in 1..4 {
            let (msgs, seen) = c.turn(1, &id, &u, &format!("q{i}"));
            assert_eq!(msgs, 0, "turn {i} on the holder sends nothing");
            assert_eq!(seen, 2 * i.min(2));
        }
        // Worker 0 (the home) asks: it comes back with its history.
        let (msgs, seen) = c.turn(0, &id, &u, "q4");
        assert_eq!((msgs, seen), (2, 4));
        assert_eq!(c.holders(&id), vec![0]);
        assert!(c.shards[0].borrow().moved.is_empty());
        let view = c.shards[0].borrow().get(&id, &u, None).unwrap();
        assert_eq!(&*view.messages[3].content, "re: q4");
        assert_eq!(view.info.message_count, 4);
    }

    #[test]
    fn a_third_worker_reaches_a_moved_session_through_its_home() {
        let c = Cluster::new(3, 100);
        let u = who("app", Role::User);
        let id = id_homed(0, 3);
        c.turn(1, &id, &u, "q0");
        assert_eq!(c.holders(&id), vec![1]);
        // Reads from worker 2 are answered by the holder and do not move it.
        let (tx, rx) = flume::bounded(1);
        c.hubs[2].send(2, Cmd::Get { id: id.clone(), who: u.clone(), limit: None, hops: 0, reply: tx });
        assert_eq!(c.pump(), 2);
        assert_eq!(rx.try_recv().unwrap().unwrap().messages.len(), 2);
        assert_eq!(c.holders(&id), vec![1]);
        // A turn from worker 2: home → holder → home (Return) → worker 2 (Adopt).
        let (msgs, seen) = c.turn(2, &id, &u, "q1");
        assert_eq!((msgs, seen), (4, 2));
        assert_eq!(c.holders(&id), vec![2]);
        assert_eq!(c.shards[0].borrow().moved.get(&id), Some(&2));
        assert!(c.shards[1].borrow().moved.is_empty());
    }

    #[test]
    fn a_busy_session_stays_put_and_queues_turns_from_other_workers() {
        let c = Cluster::new(2, 100);
        let u = who("app", Role::User);
        let id = id_homed(0, 2);
        c.turn(1, &id, &u, "q0");
        let first = c.begin(1, &id, &u).try_recv().unwrap().unwrap();
        let second = c.begin(0, &id, &u);
        c.pump();
        assert!(second.try_recv().is_err(), "waits for the first turn");
        c.hubs[1].finish(first, Arc::from("q1"), Arc::from("a1"));
        c.pump();
        let second = second.try_recv().unwrap().unwrap();
        assert_eq!(second.history.len(), 4);
        assert_eq!(c.holders(&id), vec![1], "granted where it is held");
        c.hubs[0].finish(second, Arc::from("q2"), Arc::from("a2"));
        c.pump();
        assert_eq!(c.shards[1].borrow().get(&id, &u, None).unwrap().messages.len(), 4);
    }

    #[test]
    fn deleting_or_evicting_a_guest_clears_its_homes_entry() {
        let c = Cluster::new(2, 100);
        let u = who("app", Role::User);
        let id = id_homed(0, 2);
        c.turn(1, &id, &u, "q0");
        // Delete asked on the home: forwarded to the holder, which tells the home.
        let (tx, rx) = flume::bounded(1);
        c.hubs[0]
            .send(0, Cmd::Act { id: id.clone(), who: u.clone(), action: SessionAction::Delete, hops: 0, reply: tx });
        c.pump();
        assert!(rx.try_recv().unwrap().is_ok());
        assert!(c.holders(&id).is_empty() && c.shards[0].borrow().moved.is_empty());
        // A new turn starts afresh; eviction of the guest copy clears the entry too.
        let (_, seen) = c.turn(1, &id, &u, "again");
        assert_eq!(seen, 0);
        assert_eq!(c.shards[0].borrow().moved.get(&id), Some(&1));
        assert_eq!(c.shards[1].borrow_mut().evict_idle(clock::now_unix_ms() + 61_000), 1);
        c.pump();
        assert!(c.shards[0].borrow().moved.is_empty());
        let (tx, rx) = flume::bounded(1);
        c.hubs[1].send(1, Cmd::Get { id: id.clone(), who: u.clone(), limit: None, hops: 0, reply: tx });
        c.pump();
        assert_eq!(rx.try_recv().unwrap().unwrap_err().code, ErrorCode::InvalidSession);
    }

    #[test]
    fn a_failed_first_turn_on_a_guest_leaves_nothing_anywhere() {
        let c = Cluster::new(2, 100);
        let u = who("app", Role::User);
        let id = id_homed(0, 2);
        let rx = c.begin(1, &id, &u);
        c.pump();
        drop(rx.try_recv().unwrap().unwrap());
        c.pump();
        assert!(c.holders(&id).is_empty() && c.shards[0].borrow().moved.is_empty());
    }

    #[test]
    fn other_keys_cannot_move_a_session() {
        let c = Cluster::new(2, 100);
        let id = id_homed(0, 2);
        c.turn(0, &id, &who("a", Role::User), "q");
        let rx = c.begin(1, &id, &who("b", Role::User));
        c.pump();
        assert_eq!(rx.try_recv().unwrap().unwrap_err().code, ErrorCode::InvalidSession);
        assert_eq!(c.holders(&id), vec![0]);
    }

    #[test]
    fn ids_are_validated_and_owners_stable() {
        assert!(validate_id("session-123").is_ok());
        assert!(validate_id("").is_err());
        assert!(validate_id("a/b").is_err());
        assert!(validate_id(&"x".repeat(129)).is_err());
        assert_eq!(owner_of("abc", 2), owner_of("abc", 2));
        assert!(new_id().starts_with("s_") && new_id().len() == 34);
    }
}
