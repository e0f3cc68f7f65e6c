//! `SessionHub`: one worker's API to every worker's sessions, what the turn engine and
//! the sessions front door call. A command for a session this worker holds is handled
//! at once (no message); anything else goes through the session mailboxes (`peers`)
//! and is answered on a `peers::Reply`. `serve` runs the worker's own mailbox.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Identity;
use crate::chat::Message;
use crate::clock;
use crate::error::ApiError;
use crate::peers::{self, Peers};
use crate::store::{self, ListQuery, SpoolAnswer, Store};

use super::id::{new_id, owner_of};
use super::local::{sort_key, LocalSessions};
use super::{BeginTurn, Cmd, Page, Reply, SessionAction, SessionInfo, SessionView, TurnGrant};

/// One worker's door to every worker's sessions: its own (`local`) and the others'
/// (through the session mailboxes, `peers`).
pub struct SessionHub {
    me: usize,
    local: Rc<RefCell<LocalSessions>>,
    peers: Peers<Cmd>,
    /// This worker's own queue, only looked at (never received from) so that a local
    /// command never overtakes one sent earlier by another worker (e.g. the `Finish`
    /// of a turn whose reply a client has already read).
    inbox: flume::Receiver<Cmd>,
    store: Arc<dyn Store>,
}

impl SessionHub {
    /// `peers` is the session mailboxes as seen from this worker; `inbox` this worker's
    /// own receiver (only looked at, see the field).
    pub fn new(local: Rc<RefCell<LocalSessions>>, peers: Peers<Cmd>, inbox: flume::Receiver<Cmd>) -> Self {
        let store = local.borrow().store.clone();
        SessionHub { me: peers.me(), local, peers, inbox, store }
    }

    /// The store behind the sessions.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Runs this worker's shard: serves commands from every worker and evicts idle
    /// sessions once a minute. Returns when all senders are gone.
    pub async fn serve(local: Rc<RefCell<LocalSessions>>, rx: flume::Receiver<Cmd>) {
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

    pub(super) fn send(&self, owner: usize, cmd: Cmd) {
        if owner == self.me {
            // Commands from other workers are waiting: queue behind them (FIFO) rather
            // than overtake them. Only `serve` receives from the inbox: a second
            // receiver racing its pending `recv_async` makes flume re-register wakers
            // without bound.
            if !self.inbox.is_empty() {
                let _ = self.peers.send(owner, cmd);
                return;
            }
            self.local.borrow_mut().handle(cmd);
        } else {
            let _ = self.peers.send(owner, cmd);
        }
    }

    async fn ask<T>(&self, owner: usize, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, ApiError> {
        let (reply, answer) = peers::reply();
        self.send(owner, make(reply));
        answer.recv().await.map_err(|_| ApiError::internal("session owner is gone"))?
    }

    /// Waits for the turn of a session (creating it if needed). The local shard routes
    /// it: a session held here answers at once, with no message to another worker.
    pub async fn begin(&self, mut req: BeginTurn) -> Result<TurnGrant, ApiError> {
        let fresh = req.id.is_none();
        if fresh {
            // A new session may live anywhere: pick an id this worker is home to, so
            // no other worker keeps a directory entry for it.
            let workers = self.peers.workers();
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
        self.ask(self.me, |reply| Cmd::Begin { req, from, hops: 0, fresh, reply }).await
    }

    /// Records a completed turn and releases the session (on the worker holding it).
    /// Resolves once the turn is recorded: with `durability = "ack"` after the store
    /// committed it, else at once. Errors: 503 `OVERLOADED` when the store could not
    /// write it (the turn is then not in the history either).
    pub fn finish(
        &self,
        grant: TurnGrant,
        user: Message,
        assistant: Message,
    ) -> impl Future<Output = Result<(), ApiError>> {
        self.finish_turn(grant, vec![user], assistant)
    }

    /// `finish` for a turn that brought several messages before the reply (tool
    /// results and a user message, in order).
    pub fn finish_turn(
        &self,
        grant: TurnGrant,
        user: Vec<Message>,
        assistant: Message,
    ) -> impl Future<Output = Result<(), ApiError>> {
        self.finish_answering(grant, user, assistant, None)
    }

    /// `finish_turn` for a turn that answers a spooled webhook delivery: the answer is
    /// recorded in the same store transaction as the turn (`store::Write::Turn`).
    pub fn finish_answering(
        &self,
        mut grant: TurnGrant,
        user: Vec<Message>,
        assistant: Message,
        spool_answer: Option<SpoolAnswer>,
    ) -> impl Future<Output = Result<(), ApiError>> {
        grant.finished = true;
        let (ack, answer) = if self.store.acks_after_commit() {
            let (reply, answer) = peers::reply();
            (Some(reply), Some(answer))
        } else {
            (None, None)
        };
        let cmd = Cmd::Finish {
            id: std::mem::take(&mut grant.session_id),
            token: grant.token,
            user,
            assistant,
            model: std::mem::take(&mut grant.model),
            ack,
            answer: spool_answer,
        };
        self.send(grant.holder, cmd);
        async move {
            match answer {
                None => Ok(()),
                Some(answer) => answer.recv().await.map_err(|_| ApiError::internal("session owner is gone"))?,
            }
        }
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
        if self.store.durable() {
            // The store has every session (memory only some): one query, in order.
            let query = ListQuery {
                owner: (!who.is_admin()).then(|| who.name.to_string()),
                channel: channel.map(str::to_string),
                before: after,
                limit: limit + 1,
            };
            let rows = store::ask(|done| self.store.list(query, done)).await.map_err(|e| e.to_api())?;
            let mut all: Vec<SessionInfo> = rows
                .into_iter()
                .map(|r| SessionInfo {
                    id: r.id,
                    channel: r.channel,
                    model: r.model,
                    owner: Arc::from(r.owner),
                    message_count: usize::try_from(r.message_count).unwrap_or(usize::MAX),
                    created_at_ms: r.created_at_ms,
                    updated_at_ms: r.updated_at_ms,
                })
                .collect();
            let more = all.len() > limit;
            all.truncate(limit);
            let next_cursor = more.then(|| all.last().map(|i| format!("{}.{}", i.created_at_ms, i.id))).flatten();
            return Ok(Page { sessions: all, next_cursor });
        }
        let mut all = Vec::new();
        for owner in 0..self.peers.workers() {
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
