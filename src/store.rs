//! Where sessions outlive memory (layer 2). `Store` is the only way the rest of the
//! gateway reaches storage; `open` picks the backend from `[store]` (DESIGN.md
//! "Sessions and durability"):
//!
//! - `sqlite` (default, `sqlite.rs`): one file (`[store] path`, `clawgate.db` in the
//!   working directory), SQLite in WAL mode through `rusqlite`. A storage thread owns
//!   the connection; workers never touch the database and never block: they queue an
//!   operation and get its result through a callback run on the storage thread (which
//!   only sends a message back). Writes are group-committed: every write waiting when
//!   the thread comes round goes into one transaction, so one fsync serves them all.
//! - `memory` (`memory.rs`): nothing is kept beyond the sessions in memory (tests,
//!   benchmarks); writes succeed at once and loads find nothing.
//! - `redis` (several instances sharing sessions): the trait is shaped for it (owned
//!   values, callbacks from another thread, no SQL in the interface), not built yet.
//!
//! What is stored: each session (`SessionRow`) and its messages, each with a sequence
//! number (`MessageRow::seq`: 0 for the first message the session ever recorded, so
//! trimmed messages leave a gap at the front and never a renumbering). The messages
//! kept are those the session keeps in memory (`[sessions] max_messages`, `max_bytes`):
//! a write says which sequence numbers the trim dropped. (SQLite keeps a turn's
//! messages in one row: see `schema.rs`.)
//!
//! ```text
//! worker (session holder) --Write::Turn + callback--> storage thread
//!   storage thread: BEGIN; every queued write; COMMIT (one fsync) -> each callback
//!   callback --session::CommitQueue, one Cmd::Committed per worker--> holder: the
//!   turn's messages enter memory, the client gets the end of the turn (durability = "ack")
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::chat::Message;
use crate::config::{Config, StoreBackend};
use crate::error::{ApiError, ErrorCode};

mod memory;
mod schema;
mod sqlite;

pub use memory::MemoryStore;
pub use schema::SCHEMA_VERSION;
pub use sqlite::{backup, BackupReport, SqliteStore};

/// A session as stored: its metadata (times in milliseconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub channel: String,
    pub model: String,
    /// The name of the key that made it (`auth::Identity::name`).
    pub owner: String,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Messages ever recorded: the next message's sequence number.
    pub appended: u64,
    /// Messages kept.
    pub message_count: u64,
}

/// One stored message: its sequence number in the session, the message, its time (ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub seq: u64,
    pub message: Message,
    pub at_ms: u64,
}

/// A session read back: its row and kept messages in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSession {
    pub row: SessionRow,
    pub messages: Vec<MessageRow>,
}

/// A change to the store. Each is applied whole or not at all.
#[derive(Debug, Clone)]
pub enum Write {
    /// A completed turn: the session's row after it (inserted or updated), the
    /// messages not stored yet (a new session's seed, the turn's user messages and
    /// reply), and `trim`: when the history bound dropped messages, the first sequence
    /// number still kept (older ones are deleted). Messages are keyed by (session,
    /// seq): writing one twice stores it once. `answer`: the turn answers a spooled
    /// webhook delivery; marking it answered and queueing the reply parts commit in
    /// the same transaction as the turn, so after a crash the turn and its reply are
    /// both there or neither is (exactly once).
    Turn {
        row: SessionRow,
        messages: Vec<MessageRow>,
        trim: Option<u64>,
        answer: Option<SpoolAnswer>,
    },
    /// Clears a session's messages, keeping its id and sequence numbering.
    Reset {
        id: String,
        at_ms: u64,
    },
    SetModel {
        id: String,
        model: String,
        at_ms: u64,
    },
    /// Removes a session and its messages.
    Delete {
        id: String,
    },
}

/// A page of `GET /api/sessions`, newest first (`created_at_ms`, then id, descending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this owner's sessions; `None` for everyone's (an admin key).
    pub owner: Option<String>,
    pub channel: Option<String>,
    /// The cursor: sessions strictly before this (created_at_ms, id) in the order.
    pub before: Option<(u64, String)>,
    pub limit: usize,
}

/// Why a store operation failed. Every kind is temporary from the client's side: the
/// turn is answered 503 `OVERLOADED` with `Retry-After` (`to_api`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the session store is behind ({0} operations queued)")]
    Busy(usize),
    #[error("the session store cannot write: {0}")]
    Write(String),
    #[error("the session store cannot read: {0}")]
    Read(String),
    #[error("the session store has stopped")]
    Closed,
}

impl StoreError {
    /// 503 `OVERLOADED`, `Retry-After: 1`: nothing was acknowledged that is not stored.
    pub fn to_api(&self) -> ApiError {
        ApiError::new(ErrorCode::Overloaded, format!("{self}; retry shortly")).with_retry_after(1)
    }
}

/// Runs once with an operation's result, on the thread that completed it (the storage
/// thread): it must only hand the result on (a channel send), never block.
pub type Done<T> = Box<dyn FnOnce(Result<T, StoreError>) + Send>;

/// The gateway's storage. Every method returns at once; results come through `Done`.
/// Operations are applied in the order they were queued (from any thread), and a read
/// sees every write queued before it.
pub trait Store: Send + Sync {
    /// `sqlite` or `memory`.
    fn backend(&self) -> &'static str;
    /// Whether sessions outlive the process (`false`: nothing to load or list here).
    fn durable(&self) -> bool;
    /// Whether a turn is acknowledged only after its write is committed
    /// (`durability = "ack"` on a durable backend).
    fn acks_after_commit(&self) -> bool;
    /// Queues a write; `done` (if any) runs once it is committed or has failed. A full
    /// queue fails it at once (`StoreError::Busy`).
    fn write(&self, write: Write, done: Option<Done<()>>);
    /// Reads one session (`None`: not stored).
    fn load(&self, id: String, done: Done<Option<LoadedSession>>);
    /// Reads one page of sessions.
    fn list(&self, query: ListQuery, done: Done<Vec<SessionRow>>);
    /// Size, queue, commits and state, for `/api/status` and `/health/detailed`.
    fn status(&self) -> StoreStatus;

    // The webhook spool and outbox (channel webhooks): a verified delivery is spooled
    // before its `200`, its turn's reply parts enter the outbox in the same transaction
    // that marks the delivery answered, and each part leaves the outbox once the
    // platform accepted it (or is dead-lettered).

    /// Spools a verified delivery, unless one with the same (channel, key) is there:
    /// the unique key is the only deduplication (a platform's retry may arrive while
    /// the first delivery is still being answered).
    fn spool(&self, delivery: Delivery, done: Done<Spooled>);
    /// Up to `limit` spooled deliveries whose turn is not recorded yet, oldest first
    /// (after a restart, and as a sweep).
    fn spooled(&self, limit: usize, done: Done<Vec<SpoolEntry>>);
    /// Records the answer to spooled delivery `id`: marks it answered and puts `parts`
    /// in the outbox, in one transaction (exactly once: answering twice adds nothing).
    fn answer(&self, id: u64, parts: Vec<OutboxPart>, done: Done<()>);
    /// Up to `limit` outbox parts due at `now_ms` (pending, `next_at_ms` reached), in
    /// order of delivery and part.
    fn outbox_due(&self, now_ms: u64, limit: usize, done: Done<Vec<OutboxEntry>>);
    /// What became of one send of outbox part `id`. A dead part takes the later parts
    /// of its reply with it (they would arrive out of context).
    fn outbox_result(&self, id: u64, outcome: SendOutcome, done: Option<Done<()>>);
    /// What waits in the spool and outbox of each channel, for `/api/channels`
    /// (channels with nothing waiting and no dead letter are absent).
    fn queue_counts(&self, done: Done<BTreeMap<String, QueueCounts>>);
}

/// A verified webhook delivery, as spooled before its `200`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The configured channel's name.
    pub channel: String,
    /// The platform's id of the delivery (Telegram `update_id`, Slack `event_id`,
    /// Discord interaction `id`, WhatsApp message `id`, generic `messageId`): unique
    /// per channel.
    pub key: String,
    /// The session its turn runs in (`<channel>:<chat id>`, or per user).
    pub session: String,
    /// The platform's id of the sender.
    pub sender: String,
    pub text: String,
    /// Where the reply goes, in the channel type's own terms (JSON: chat id, thread,
    /// interaction token, ...).
    pub reply_to: String,
    pub received_at_ms: u64,
}

/// A spooled delivery waiting for its turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolEntry {
    pub id: u64,
    pub delivery: Delivery,
}

/// What `spool` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spooled {
    /// Stored under this id.
    New(u64),
    /// The (channel, key) was already spooled: acknowledge, do nothing.
    Duplicate,
}

/// The reply to a spooled delivery, recorded with the turn that made it (`Write::Turn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolAnswer {
    pub spool_id: u64,
    pub parts: Vec<OutboxPart>,
}

/// One part of a reply (replies longer than the platform's limit are split).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxPart {
    pub channel: String,
    /// 0, 1, ...: sent in this order.
    pub part: u32,
    /// `Delivery::reply_to`.
    pub target: String,
    pub text: String,
}

/// An outbox part and its sending state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: u64,
    /// The spooled delivery it answers.
    pub spool_id: u64,
    pub part: OutboxPart,
    /// Sends tried so far.
    pub attempts: u32,
}

/// The result of one send of an outbox part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The platform accepted it: it leaves the outbox.
    Sent,
    /// Try again at `at_ms` (backoff, or the platform's `retry_after`).
    Retry { at_ms: u64, error: String },
    /// No more tries: kept as dead-lettered, with the last error.
    Dead { error: String },
}

/// One channel's queues.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueCounts {
    /// Deliveries spooled whose turn has not answered yet.
    pub spooled: u64,
    /// Reply parts waiting to be sent (due or backing off).
    pub outbox: u64,
    /// Reply parts given up on.
    pub dead_letters: u64,
    /// The error of the latest dead letter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_dead_letter: Option<String>,
}

/// Awaits a store operation from async code: `ask(|done| store.list(q, done)).await`.
pub async fn ask<T: Send + 'static>(start: impl FnOnce(Done<T>)) -> Result<T, StoreError> {
    let (tx, rx) = flume::bounded(1);
    start(Box::new(move |r| {
        let _ = tx.send(r);
    }));
    rx.recv_async().await.unwrap_or(Err(StoreError::Closed))
}

/// What `/api/status` and `/health/detailed` show of the store (JSON, camelCase).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreStatus {
    pub backend: &'static str,
    /// `ok`, or `degraded` since the last write failed (until one succeeds).
    pub state: &'static str,
    /// `ack` or `async`.
    pub durability: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The database file and its write-ahead log, in bytes.
    pub size_bytes: u64,
    /// Operations waiting for the storage thread.
    pub queue_depth: usize,
    /// Transactions committed (each one fsync with `durability = "ack"`).
    pub commits: u64,
    /// Writes committed (turns, resets, deletes): `writes / commits` is the group size.
    pub writes: u64,
    pub write_errors: u64,
    /// Recent commit time (exponentially weighted), and the longest seen, in ms.
    pub commit_latency_ms: f64,
    pub commit_latency_max_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Opens the store `[store]` names. Errors name the file and what is wrong with it
/// (unwritable directory, locked or corrupt file, schema from a newer clawgate).
pub fn open(cfg: &Config) -> Result<Arc<dyn Store>, String> {
    Ok(match cfg.store.backend {
        StoreBackend::Memory => Arc::new(MemoryStore::default()),
        StoreBackend::Sqlite => Arc::new(SqliteStore::open(&cfg.store, &cfg.sessions)?),
        StoreBackend::Redis => return Err("store.backend = \"redis\" is not available in this build".into()),
    })
}

#[cfg(test)]
mod tests;
