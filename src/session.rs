//! Conversations. A session (id, channel, model, owner key, ordered messages,
//! timestamps) is held by exactly one worker at a time, in that worker's
//! `LocalSessions` (a plain `RefCell`, no lock). Its home worker (a hash of its id,
//! `id::owner_of`) always knows which worker holds it; other workers reach it by
//! message (`Cmd`) through the cores' mailbox (`peers`). An idle session moves to the
//! worker its turns come from, so a keep-alive client's turns after the first cost a
//! hash-map lookup and no message; see `LocalSessions` for the routing rules.
//!
//! Files: `id` (ids: validation, generation, home worker), `local` (one worker's
//! sessions and the routing of commands), `hub` (`SessionHub`, the API the rest of the
//! gateway calls: begin/finish a turn, get, act, list), and here the types they share
//! (the commands, a session, a turn grant).
//!
//! Turns of one session run one at a time, in arrival order: `begin` grants the turn
//! (with a snapshot of the history, `Arc<str>` contents so nothing is copied) or queues
//! the caller; `finish` appends the user message and the reply and hands the turn to
//! the next waiter. A busy session never moves. A `TurnGrant` dropped without `finish`
//! (client gone, error, task cancelled) aborts the turn from its `Drop`, so a session
//! can never stay locked. History is bounded by message count and bytes (oldest
//! dropped), and sessions idle longer than the TTL leave memory.
//!
//! Durability (`store`): memory is a cache of the store. A session absent from memory
//! is loaded by its home worker on first use (commands for it wait meanwhile, in
//! order); a turn's messages are written when it finishes and, with `durability =
//! "ack"`, enter memory and release the session only once committed (`Cmd::Committed`),
//! so the client's end of turn always follows the commit and a failed write leaves
//! memory and disk alike. Reset, set-model and delete reach the store too.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::auth::Identity;
use crate::chat::{Message, MessageExtra, MessageRole};
use crate::error::ApiError;
use crate::peers::Peers;
use crate::store::{LoadedSession, SpoolAnswer, StoreError};

mod hub;
mod id;
mod local;
#[cfg(test)]
mod tests;

pub use hub::SessionHub;
pub use id::{new_id, owner_of, validate_id, MAX_ID_LEN};
pub use local::LocalSessions;

/// A message as stored, with its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub role: MessageRole,
    pub content: Arc<str>,
    /// Parts, tool calls, a tool result's call id (`chat::MessageExtra`).
    pub extra: Option<Arc<MessageExtra>>,
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
    /// Messages ever recorded (`TurnGrant::appended`): the last of `messages` is
    /// number `appended - 1`.
    pub appended: u64,
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
    /// The history a session created by this turn starts with (a conversation forked
    /// from another one: the Responses API's `previous_response_id` naming an earlier
    /// response). Ignored when the session exists.
    pub seed: Vec<Message>,
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
    /// How many messages the session has ever recorded (trimmed ones included): the
    /// position just after `history`, which stays valid as the history is trimmed.
    pub appended: u64,
    pub created: bool,
    token: u64,
    /// The worker holding the session while the turn runs (a busy session never moves).
    holder: usize,
    peers: Peers<Cmd>,
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
            let _ = self
                .peers
                .send(self.holder, Cmd::Abort { id: std::mem::take(&mut self.session_id), token: self.token });
        }
    }
}

/// Where a session command's answer goes (`peers`).
pub type Reply<T> = crate::peers::Reply<Result<T, ApiError>>;

/// A command that names a session travels at most this many times between workers
/// (requester → home → holder → home → requester is four); more means a routing bug,
/// answered with an error rather than a loop.
pub(crate) const MAX_HOPS: u8 = 8;

/// Messages between workers' session shards.
pub enum Cmd {
    /// Asks for a turn of a session, for a task on worker `from`.
    Begin {
        req: BeginTurn,
        from: usize,
        hops: u8,
        /// The id was just made by the hub: nothing to look for in the store.
        fresh: bool,
        reply: Reply<TurnGrant>,
    },
    /// Sent to the holder named in the grant (never forwarded).
    Finish {
        id: String,
        token: u64,
        /// The turn's new messages before the reply (a user message, tool results).
        user: Vec<Message>,
        assistant: Message,
        model: String,
        /// Answered once the turn is recorded (committed, with `durability = "ack"`).
        ack: Option<Reply<()>>,
        /// The reply to a spooled webhook delivery, recorded with the turn.
        answer: Option<SpoolAnswer>,
    },
    /// Storage thread → holder: finished turns' writes are committed (or failed); they
    /// wait in the holder's `CommitQueue`. One message wakes the holder for every turn
    /// a commit finished there, however many (a group commit of 60 turns on two workers
    /// costs two wake-ups, not 60).
    Committed,
    /// Storage thread → home: a session absent from memory, read from the store.
    Loaded {
        id: String,
        result: Result<Option<LoadedSession>, StoreError>,
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

/// A finished turn whose write the store has committed (or failed), waiting in its
/// holder's `CommitQueue` for `Cmd::Committed`.
#[derive(Debug)]
pub struct CommittedTurn {
    pub id: String,
    pub token: u64,
    /// The session's reset count when the turn finished: a reset since then keeps the
    /// turn out of the history.
    pub epoch: u64,
    pub messages: Vec<StoredMessage>,
    pub model: String,
    pub result: Result<(), StoreError>,
    pub ack: Option<Reply<()>>,
}

/// Where the storage thread leaves a worker's committed turns. The callback that
/// makes it non-empty sends the one `Cmd::Committed` that drains it; the lock is held
/// for a push or a swap, never across other work.
pub type CommitQueue = std::sync::Mutex<Vec<CommittedTurn>>;

/// One session's state; it moves between workers whole (`Adopt`/`Return`).
pub struct Session {
    info: SessionInfo,
    messages: VecDeque<StoredMessage>,
    /// Messages ever recorded, trimmed ones included (`TurnGrant::appended`).
    appended: u64,
    /// Messages numbered below this are in the store (a new session's seed is not yet).
    stored: u64,
    /// Messages numbered below this are deleted from the store (trimmed ones above it
    /// may still be there, unread: `TRIM_SLACK`).
    disk_from: u64,
    /// Resets so far: a turn committed after a reset is kept out of the history.
    epoch: u64,
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
