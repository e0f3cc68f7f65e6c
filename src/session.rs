//! Conversations. A session (id, channel, model, owner key, ordered messages,
//! timestamps) is owned by exactly one worker, picked by a hash of its id; the owner
//! keeps it in a plain `RefCell<Shard>` with no lock. Other workers reach it by message
//! over a `flume` channel (the one cross-core path, as DESIGN.md asks). A local session
//! costs a hash-map lookup; a remote one a channel round trip (~tens of microseconds).
//!
//! Turns of one session run one at a time, in arrival order: `begin` grants the turn
//! (with a snapshot of the history, `Arc<str>` contents so nothing is copied) or queues
//! the caller; `finish` appends the user message and the reply and hands the turn to
//! the next waiter. A `TurnGrant` dropped without `finish` (client gone, error, task
//! cancelled) aborts the turn from its `Drop`, so a session can never stay locked.
//! History is bounded by message count and bytes (oldest dropped), and sessions idle
//! longer than the TTL leave memory (they are not durable yet).

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
    owner: flume::Sender<Cmd>,
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
            let _ = self.owner.send(Cmd::Abort { id: std::mem::take(&mut self.session_id), token: self.token });
        }
    }
}

type Reply<T> = flume::Sender<Result<T, ApiError>>;

/// Messages to a session owner.
pub enum Cmd {
    Begin {
        req: BeginTurn,
        reply: Reply<TurnGrant>,
    },
    Finish {
        id: String,
        token: u64,
        user: Arc<str>,
        assistant: Arc<str>,
        model: String,
    },
    Abort {
        id: String,
        token: u64,
    },
    Get {
        id: String,
        who: Identity,
        limit: Option<usize>,
        reply: Reply<SessionView>,
    },
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
        reply: Reply<SessionInfo>,
    },
}

struct Session {
    info: SessionInfo,
    messages: VecDeque<StoredMessage>,
    bytes: usize,
    busy: Option<u64>,
    waiters: VecDeque<(BeginTurn, Reply<TurnGrant>)>,
    /// The turn that created this session: if it aborts before anything is recorded,
    /// the session goes too (no empty sessions left behind by failed turns).
    created_by: Option<u64>,
}

/// The sessions owned by one worker.
pub struct Shard {
    sessions: HashMap<String, Session>,
    limits: SessionsConfig,
    next_token: u64,
    /// This shard's sender, so grants can abort themselves.
    me: flume::Sender<Cmd>,
    /// Published count for `/api/status` (written only by this shard).
    count: Arc<AtomicUsize>,
    /// Most sessions this shard keeps (`sessions.max_sessions` / workers).
    capacity: usize,
}

impl Shard {
    pub fn new(limits: SessionsConfig, me: flume::Sender<Cmd>, count: Arc<AtomicUsize>, workers: usize) -> Self {
        let capacity = (limits.max_sessions / workers.max(1)).max(1);
        Shard { sessions: HashMap::new(), limits, next_token: 1, me, count, capacity }
    }

    /// Makes room for one more session: forgets the least recently updated idle tenth
    /// of the shard at once (a cut-off time found with one selection over timestamps,
    /// then one `retain` pass), so a flood of new sessions costs one scan per many
    /// inserts and no per-session allocation.
    fn make_room(&mut self) -> bool {
        if self.sessions.len() < self.capacity {
            return true;
        }
        let idle = |s: &Session| s.busy.is_none() && s.waiters.is_empty();
        let mut times: Vec<u64> = self.sessions.values().filter(|s| idle(s)).map(|s| s.info.updated_at_ms).collect();
        if times.is_empty() {
            return false;
        }
        let evict = (self.capacity / 10).clamp(1, times.len());
        let (_, cutoff, _) = times.select_nth_unstable(evict - 1);
        let cutoff = *cutoff;
        self.sessions.retain(|_, s| !idle(s) || s.info.updated_at_ms > cutoff);
        true
    }

    /// Applies one command. Replies go out on their channels (local or remote alike).
    pub fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Begin { req, reply } => self.begin(req, reply),
            Cmd::Finish { id, token, user, assistant, model } => self.finish(&id, token, user, assistant, model),
            Cmd::Abort { id, token } => self.release(&id, token),
            Cmd::Get { id, who, limit, reply } => {
                let _ = reply.send(self.get(&id, &who, limit));
            }
            Cmd::List { who, channel, after, limit, reply } => {
                let _ = reply.send(Ok(self.list(&who, channel.as_deref(), after.as_ref(), limit)));
            }
            Cmd::Act { id, who, action, reply } => {
                let _ = reply.send(self.act(&id, &who, action));
            }
        }
        self.count.store(self.sessions.len(), Ordering::Relaxed);
    }

    fn begin(&mut self, req: BeginTurn, reply: Reply<TurnGrant>) {
        let now = clock::now_unix_ms();
        let (id, created) = match &req.id {
            Some(id) => (id.clone(), !self.sessions.contains_key(id)),
            None => (new_id(), true),
        };
        if created {
            if !self.make_room() {
                let _ = reply
                    .send(Err(ApiError::new(ErrorCode::Overloaded, "too many sessions in flight").with_retry_after(1)));
                return;
            }
            let model = req.requested_model.clone().unwrap_or_else(|| req.default_model.clone());
            let info = SessionInfo {
                id: id.clone(),
                channel: req.channel.clone(),
                model,
                owner: req.who.name.clone(),
                message_count: 0,
                created_at_ms: now,
                updated_at_ms: now,
            };
            let s = Session {
                info,
                messages: VecDeque::new(),
                bytes: 0,
                busy: None,
                waiters: VecDeque::new(),
                created_by: None,
            };
            self.sessions.insert(id.clone(), s);
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

    /// Gives the turn of an idle session to `req`; if its requester is gone, tries the
    /// next waiter (the grant aborts itself on drop, which lands back here).
    fn grant(&mut self, id: &str, req: BeginTurn, reply: Reply<TurnGrant>, created: bool) {
        let token = self.next_token;
        self.next_token += 1;
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
            owner: self.me.clone(),
            finished: false,
        };
        // If the requester is gone the grant comes back inside the error and its Drop
        // sends Abort, which releases the session for the next waiter.
        let _ = reply.send(Ok(grant));
    }

    fn finish(&mut self, id: &str, token: u64, user: Arc<str>, assistant: Arc<str>, model: String) {
        let now = clock::now_unix_ms();
        let limits = self.limits.clone();
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
                Ok(info)
            }
        }
    }

    /// Drops sessions idle longer than the TTL that have no turn in flight.
    pub fn evict_idle(&mut self, now_ms: u64) -> usize {
        let ttl_ms = self.limits.idle_ttl_secs.saturating_mul(1000);
        let before = self.sessions.len();
        self.sessions.retain(|_, s| s.busy.is_some() || now_ms.saturating_sub(s.info.updated_at_ms) < ttl_ms);
        self.count.store(self.sessions.len(), Ordering::Relaxed);
        before - self.sessions.len()
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

    fn owner(&self, id: &str) -> usize {
        owner_of(id, self.senders.len())
    }

    /// Waits for the turn of a session (creating it if needed).
    pub async fn begin(&self, mut req: BeginTurn) -> Result<TurnGrant, ApiError> {
        let id = match &req.id {
            Some(id) => id.clone(),
            None => {
                // A new session may live anywhere: pick an id this worker owns, so the
                // turn (and later turns on this keep-alive connection) stay local.
                let mut id = new_id();
                for _ in 0..64 {
                    if self.owner(&id) == self.me {
                        break;
                    }
                    id = new_id();
                }
                req.id = Some(id.clone());
                id
            }
        };
        self.ask(self.owner(&id), |reply| Cmd::Begin { req, reply }).await
    }

    /// Records a completed turn and releases the session.
    pub fn finish(&self, mut grant: TurnGrant, user: Arc<str>, assistant: Arc<str>) {
        grant.finished = true;
        let cmd = Cmd::Finish {
            id: std::mem::take(&mut grant.session_id),
            token: grant.token,
            user,
            assistant,
            model: std::mem::take(&mut grant.model),
        };
        let owner = self.owner(match &cmd {
            Cmd::Finish { id, .. } => id,
            _ => "",
        });
        self.send(owner, cmd);
    }

    pub async fn get(&self, id: &str, who: &Identity, limit: Option<usize>) -> Result<SessionView, ApiError> {
        let (id, who) = (id.to_string(), who.clone());
        self.ask(self.owner(&id), |reply| Cmd::Get { id, who, limit, reply }).await
    }

    pub async fn act(&self, id: &str, who: &Identity, action: SessionAction) -> Result<SessionInfo, ApiError> {
        let (id, who) = (id.to_string(), who.clone());
        self.ask(self.owner(&id), |reply| Cmd::Act { id, who, action, reply }).await
    }

    /// Lists sessions newest first across all shards; `cursor` continues a listing.
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

    fn shard() -> (Rc<RefCell<Shard>>, flume::Receiver<Cmd>) {
        let (tx, rx) = flume::unbounded();
        let limits = SessionsConfig { max_messages: 4, max_bytes: 1 << 20, idle_ttl_secs: 60, max_sessions: 20 };
        (Rc::new(RefCell::new(Shard::new(limits, tx, Arc::new(AtomicUsize::new(0)), 1))), rx)
    }

    fn begin(sh: &Rc<RefCell<Shard>>, id: &str, w: &Identity) -> flume::Receiver<Result<TurnGrant, ApiError>> {
        let (tx, rx) = flume::bounded(1);
        let req = BeginTurn {
            id: Some(id.into()),
            who: w.clone(),
            channel: "api".into(),
            requested_model: None,
            default_model: "mock".into(),
        };
        sh.borrow_mut().handle(Cmd::Begin { req, reply: tx });
        rx
    }

    #[test]
    fn second_turn_waits_for_the_first_and_sees_its_reply() {
        let (sh, rx) = shard();
        let hub = SessionHub::new(0, sh.clone(), Arc::from(vec![sh.borrow().me.clone()]), flume::unbounded().1);
        let u = who("app", Role::User);
        let first = begin(&sh, "s1", &u).try_recv().unwrap().unwrap();
        assert!(first.created && first.history.is_empty());
        let second = begin(&sh, "s1", &u);
        assert!(second.try_recv().is_err(), "second turn must wait");
        hub.finish(first, Arc::from("hi"), Arc::from("hello"));
        let second = second.try_recv().unwrap().unwrap();
        assert_eq!(second.history.len(), 2);
        assert_eq!(&*second.history[1].content, "hello");
        drop(second);
        // The abort travels through the channel.
        let cmd = rx.try_recv().unwrap();
        sh.borrow_mut().handle(cmd);
        assert!(begin(&sh, "s1", &u).try_recv().unwrap().is_ok());
    }

    #[test]
    fn history_is_bounded_and_other_keys_cannot_see_it() {
        let (sh, _rx) = shard();
        let hub = SessionHub::new(0, sh.clone(), Arc::from(vec![sh.borrow().me.clone()]), flume::unbounded().1);
        let u = who("app", Role::User);
        for i in 0..3 {
            let g = begin(&sh, "s1", &u).try_recv().unwrap().unwrap();
            hub.finish(g, Arc::from(format!("q{i}")), Arc::from(format!("a{i}")));
        }
        let view = sh.borrow().get("s1", &u, None).unwrap();
        assert_eq!(view.messages.len(), 4);
        assert_eq!(&*view.messages[0].content, "q1");
        assert_eq!(sh.borrow().get("s1", &who("other", Role::User), None).unwrap_err().code, ErrorCode::InvalidSession);
        assert!(sh.borrow().get("s1", &who("ops", Role::Admin), Some(1)).unwrap().messages.len() == 1);
    }

    #[test]
    fn idle_sessions_are_evicted() {
        let (sh, _rx) = shard();
        let hub = SessionHub::new(0, sh.clone(), Arc::from(vec![sh.borrow().me.clone()]), flume::unbounded().1);
        let g = begin(&sh, "s1", &who("a", Role::User)).try_recv().unwrap().unwrap();
        hub.finish(g, Arc::from("q"), Arc::from("a"));
        let now = clock::now_unix_ms();
        assert_eq!(sh.borrow_mut().evict_idle(now), 0);
        assert_eq!(sh.borrow_mut().evict_idle(now + 61_000), 1);
    }

    #[test]
    fn a_session_created_by_a_failed_turn_is_removed() {
        let (sh, rx) = shard();
        let g = begin(&sh, "s1", &who("a", Role::User)).try_recv().unwrap().unwrap();
        drop(g);
        let cmd = rx.try_recv().unwrap();
        sh.borrow_mut().handle(cmd);
        assert_eq!(sh.borrow().get("s1", &who("a", Role::User), None).unwrap_err().code, ErrorCode::InvalidSession);
    }

    #[test]
    fn a_flood_of_sessions_is_capped_by_forgetting_the_oldest() {
        let (sh, _rx) = shard();
        let hub = SessionHub::new(0, sh.clone(), Arc::from(vec![sh.borrow().me.clone()]), flume::unbounded().1);
        let u = who("a", Role::User);
        for i in 0..100 {
            let g = begin(&sh, &format!("s{i}"), &u).try_recv().unwrap().unwrap();
            hub.finish(g, Arc::from("q"), Arc::from("a"));
        }
        assert!(sh.borrow().sessions.len() <= 20);
        assert!(sh.borrow().get("s99", &u, None).is_ok(), "the newest stays");
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
