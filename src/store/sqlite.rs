//! `[store] backend = "sqlite"`: the sessions in one SQLite file (WAL mode), written
//! by one storage thread that owns the connection.
//!
//! The thread takes every operation waiting in its queue (up to `MAX_BATCH`), applies
//! the writes among them in one transaction and commits once, then runs their
//! callbacks: turns arriving together share one fsync (group commit). When idle it
//! blocks on the queue, so a lone turn is committed at once; under load (the last
//! batch had `BUSY_BATCH` writes or more) it sleeps `COMMIT_INTERVAL` between batches
//! instead, so writers never pay a wake-up and each fsync serves more turns. A read waits for the writes queued before it to
//! be committed, so it never returns what might still be rolled back. A failed commit
//! fails every write of its batch (their turns get 503) and marks the store
//! `degraded` until a commit succeeds again. With `[sessions] retention_days`, old
//! sessions are purged `PURGE_BATCH` at a time, each batch its own short transaction,
//! with queued operations served in between.
//!
//! `durability = "ack"` runs SQLite with `synchronous = FULL` (the commit is on disk
//! when the callback runs); `"async"` with `NORMAL` (a commit survives a crash of the
//! process but not of the machine) and turns acknowledged before it.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::chat::{Message, MessageExtra, MessageRole};
use crate::config::{Durability, SessionsConfig, StoreConfig};
use crate::log;

use super::{
    Delivery, Done, ListQuery, LoadedSession, MessageRow, OutboxEntry, OutboxPart, QueueCounts, SendOutcome,
    SessionRow, SpoolEntry, Spooled, Store, StoreError, StoreStatus, Write,
};

/// Most operations taken from the queue for one transaction.
const MAX_BATCH: usize = 1024;
/// Most operations waiting; beyond it a write fails at once (`StoreError::Busy`).
const MAX_QUEUE: usize = 65_536;
/// Under load, the pause between batches (a turn waits at most this for its commit to
/// start).
const COMMIT_INTERVAL: Duration = Duration::from_millis(1);
/// A batch this large means load: the next one is taken after `COMMIT_INTERVAL`.
const BUSY_BATCH: usize = 8;
/// Most ids `StorageThread::known` holds; past it, it starts again empty.
const KNOWN_MAX: usize = 65_536;
/// Sessions looked at (and the old ones deleted) per retention transaction.
const PURGE_BATCH: usize = 256;
/// How long an answered delivery's key is kept against redeliveries: WhatsApp retries
/// for up to 7 days, Telegram for a day, Slack for minutes.
pub const SPOOL_KEEP_MS: u64 = 7 * 86_400_000;
/// Answered deliveries deleted per housekeeping step.
const SPOOL_PURGE_BATCH: usize = 1024;
/// How often retention looks for old sessions (and the spool for old deliveries).
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// How long an operation waits for a lock another process holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// An operation for the storage thread.
enum Op {
    /// Applied in the batch's transaction; answered after its commit.
    Write(Pending),
    /// Runs after the writes queued before it are committed (`Err` if it could not be
    /// queued at all).
    Read(Read),
}

/// A read run on the storage thread's connection.
type Read = Box<dyn FnOnce(Result<&Connection, StoreError>) + Send>;

/// A write waiting for its batch's commit, with where its result goes.
enum Pending {
    Session(Write, Option<Done<()>>),
    /// `outcome` is filled in by the transaction.
    Spool {
        delivery: Delivery,
        done: Done<Spooled>,
        outcome: Spooled,
    },
    Answer(u64, Vec<OutboxPart>, Done<()>),
    OutboxResult(u64, SendOutcome, Option<Done<()>>),
}

impl Pending {
    /// Answers with the batch's result (`Ok`: committed).
    fn finish(self, result: &Result<(), StoreError>) {
        match self {
            Pending::Session(_, done) | Pending::OutboxResult(_, _, done) => {
                if let Some(done) = done {
                    done(result.clone());
                }
            }
            Pending::Spool { done, outcome, .. } => done(result.clone().map(|()| outcome)),
            Pending::Answer(_, _, done) => done(result.clone()),
        }
    }

    fn apply(&mut self, conn: &Connection, known: &mut HashSet<String>) -> rusqlite::Result<()> {
        match self {
            Pending::Session(w, _) => apply(conn, w, known),
            Pending::Spool { delivery, outcome, .. } => {
                *outcome = spool(conn, delivery)?;
                Ok(())
            }
            Pending::Answer(id, parts, _) => answer(conn, *id, parts),
            Pending::OutboxResult(id, outcome, _) => outbox_result(conn, *id, outcome),
        }
    }
}

/// Counters the storage thread writes and `status` reads.
#[derive(Default)]
struct Metrics {
    commits: AtomicU64,
    writes: AtomicU64,
    write_errors: AtomicU64,
    /// Exponentially weighted commit time, microseconds.
    commit_us: AtomicU64,
    commit_us_max: AtomicU64,
    degraded: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// The SQLite store: the queue to its storage thread.
pub struct SqliteStore {
    tx: Option<flume::Sender<Op>>,
    metrics: Arc<Metrics>,
    path: PathBuf,
    durability: Durability,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Held for the store's life: a second clawgate on the same file is refused.
    _lock: File,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the file `[store] path` names, migrates its schema
    /// and starts the storage thread. Errors name the path and the cause: directory not
    /// writable, file locked by another process, not a database, schema too new.
    pub fn open(cfg: &StoreConfig, sessions: &SessionsConfig) -> Result<SqliteStore, String> {
        let path = std::path::absolute(&cfg.path).unwrap_or_else(|_| cfg.path.clone());
        let shown = path.display().to_string();
        probe_writable(&path)?;
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("cannot open the session store {shown}: {e}"))?;
        let lock = File::open(&path).map_err(|e| format!("cannot open the session store {shown}: {e}"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "session store {shown} is in use by another process (another clawgate?); each instance \
                     needs its own [store] path"
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(format!("cannot lock the session store {shown}: {e}")),
        }
        let fail = |what: &str, e: rusqlite::Error| format!("session store {shown}: {what}: {e}");
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| fail("cannot set the busy timeout", e))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| fail("cannot switch to WAL mode", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("session store {shown}: SQLite refused WAL mode (journal_mode is {mode})"));
        }
        let sync = match cfg.durability {
            Durability::Ack => "FULL",
            Durability::Async => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync).map_err(|e| fail("cannot set synchronous", e))?;
        // The WAL file is truncated back to this after a checkpoint (bytes).
        conn.pragma_update(None, "journal_size_limit", 64i64 << 20).map_err(|e| fail("cannot set the WAL limit", e))?;
        super::schema::migrate(&mut conn, &path)?;
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = flume::bounded(MAX_QUEUE);
        let retention_ms = u64::from(sessions.retention_days) * 86_400_000;
        let thread_metrics = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("clawgate-store".into())
            .spawn(move || {
                StorageThread {
                    conn,
                    metrics: thread_metrics,
                    retention_ms,
                    purge_cursor: String::new(),
                    known: HashSet::new(),
                }
                .run(&rx)
            })
            .map_err(|e| format!("cannot start the storage thread: {e}"))?;
        Ok(SqliteStore { tx: Some(tx), metrics, path, durability: cfg.durability, thread: Some(thread), _lock: lock })
    }

    fn queue(&self, op: Op) {
        let Some(tx) = &self.tx else {
            fail_op(op, StoreError::Closed);
            return;
        };
        match tx.try_send(op) {
            Ok(()) => {}
            Err(flume::TrySendError::Full(op)) => fail_op(op, StoreError::Busy(tx.len())),
            Err(flume::TrySendError::Disconnected(op)) => fail_op(op, StoreError::Closed),
        }
    }
}

impl Drop for SqliteStore {
    /// Lets the storage thread commit what is queued, then waits for it.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Fails `op` without running it.
fn fail_op(op: Op, e: StoreError) {
    match op {
        Op::Write(p) => p.finish(&Err(e)),
        Op::Read(f) => f(Err(e)),
    }
}

fn read_err(e: rusqlite::Error) -> StoreError {
    StoreError::Read(e.to_string())
}

/// Start-up check that the file's directory takes new files (SQLite needs its `-wal`
/// and `-shm` beside the database): the OS's own error, with the path, rather than
/// SQLite's "unable to open database file".
fn probe_writable(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "cannot open the session store {}: directory {} does not exist",
            path.display(),
            dir.display()
        ));
    }
    let probe = dir.join(format!(".clawgate-probe-{}", std::process::id()));
    match File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!(
            "cannot open the session store {}: directory {} is not writable ({e}); set [store] path to a \
             writable place",
            path.display(),
            dir.display()
        )),
    }
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn durable(&self) -> bool {
        true
    }

    fn acks_after_commit(&self) -> bool {
        self.durability == Durability::Ack
    }

    fn write(&self, write: Write, done: Option<Done<()>>) {
        self.queue(Op::Write(Pending::Session(write, done)));
    }

    fn load(&self, id: String, done: Done<Option<LoadedSession>>) {
        self.queue(Op::Read(Box::new(move |conn| done(conn.and_then(|c| load(c, &id).map_err(read_err))))));
    }

    fn list(&self, query: ListQuery, done: Done<Vec<SessionRow>>) {
        self.queue(Op::Read(Box::new(move |conn| done(conn.and_then(|c| list(c, &query).map_err(read_err))))));
    }

    fn status(&self) -> StoreStatus {
        let m = &self.metrics;
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        StoreStatus {
            backend: "sqlite",
            state: if m.degraded.load(Ordering::Relaxed) { "degraded" } else { "ok" },
            durability: self.durability.as_str(),
            path: Some(self.path.display().to_string()),
            size_bytes: size(&self.path) + size(Path::new(&wal)),
            queue_depth: self.tx.as_ref().map_or(0, flume::Sender::len),
            commits: m.commits.load(Ordering::Relaxed),
            writes: m.writes.load(Ordering::Relaxed),
            write_errors: m.write_errors.load(Ordering::Relaxed),
            commit_latency_ms: m.commit_us.load(Ordering::Relaxed) as f64 / 1000.0,
            commit_latency_max_ms: m.commit_us_max.load(Ordering::Relaxed) as f64 / 1000.0,
            last_error: m.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    fn spool(&self, delivery: Delivery, done: Done<Spooled>) {
        self.queue(Op::Write(Pending::Spool { delivery, done, outcome: Spooled::Duplicate }));
    }

    fn spooled(&self, limit: usize, done: Done<Vec<SpoolEntry>>) {
        self.queue(Op::Read(Box::new(move |conn| done(conn.and_then(|c| spooled(c, limit).map_err(read_err))))));
    }

    fn answer(&self, id: u64, parts: Vec<OutboxPart>, done: Done<()>) {
        self.queue(Op::Write(Pending::Answer(id, parts, done)));
    }

    fn outbox_due(&self, now_ms: u64, limit: usize, done: Done<Vec<OutboxEntry>>) {
        self.queue(Op::Read(Box::new(move |conn| {
            done(conn.and_then(|c| outbox_due(c, now_ms, limit).map_err(read_err)))
        })));
    }

    fn outbox_result(&self, id: u64, outcome: SendOutcome, done: Option<Done<()>>) {
        self.queue(Op::Write(Pending::OutboxResult(id, outcome, done)));
    }

    fn queue_counts(&self, done: Done<BTreeMap<String, QueueCounts>>) {
        self.queue(Op::Read(Box::new(move |conn| done(conn.and_then(|c| queue_counts(c).map_err(read_err))))));
    }
}

/// The thread that owns the connection.
struct StorageThread {
    conn: Connection,
    metrics: Arc<Metrics>,
    /// `retention_days` in ms; 0 = keep forever.
    retention_ms: u64,
    /// Where the retention pass goes on (the last session id looked at).
    purge_cursor: String,
    /// Ids whose `sessions` row this thread wrote or found since it started, and has not
    /// deleted since: their turns skip the `INSERT OR IGNORE` that only a session's
    /// first turn needs (one statement of three per turn). Filled as writes are applied,
    /// so it is cleared when a transaction fails (its inserts were rolled back), and
    /// when it passes `KNOWN_MAX` ids.
    known: HashSet<String>,
}

impl StorageThread {
    fn run(mut self, rx: &flume::Receiver<Op>) {
        let mut batch: Vec<Op> = Vec::with_capacity(MAX_BATCH);
        let mut next_purge = Instant::now();
        let mut purging = false;
        let mut busy = false;
        loop {
            // Housekeeping goes on under load too: one small step per pass.
            if purging || Instant::now() >= next_purge {
                if !purging {
                    next_purge = Instant::now() + PURGE_EVERY;
                }
                purging = self.purge_step();
            }
            let first = if busy {
                // Under load: let the next batch gather without anyone waking us.
                #[allow(clippy::disallowed_methods)] // the storage thread, not a worker
                std::thread::sleep(COMMIT_INTERVAL);
                match rx.try_recv() {
                    Ok(op) => Ok(op),
                    Err(flume::TryRecvError::Empty) => {
                        busy = false;
                        continue;
                    }
                    Err(flume::TryRecvError::Disconnected) => Err(flume::RecvTimeoutError::Disconnected),
                }
            } else {
                let wait = if purging { Duration::ZERO } else { next_purge.saturating_duration_since(Instant::now()) };
                rx.recv_timeout(wait)
            };
            match first {
                Ok(op) => {
                    batch.push(op);
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(op) => batch.push(op),
                            Err(_) => break,
                        }
                    }
                    busy = batch.len() >= BUSY_BATCH;
                    self.run_batch(&mut batch);
                }
                Err(flume::RecvTimeoutError::Timeout) => {}
                Err(flume::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Applies `batch` in order: runs of writes in one transaction each, reads after
    /// the writes before them are committed.
    fn run_batch(&mut self, batch: &mut Vec<Op>) {
        let mut writes: Vec<Pending> = Vec::new();
        for op in batch.drain(..) {
            match op {
                Op::Write(p) => writes.push(p),
                Op::Read(read) => {
                    self.commit(&mut writes);
                    read(Ok(&self.conn));
                }
            }
        }
        self.commit(&mut writes);
    }

    /// Commits `writes` in one transaction and runs their callbacks.
    fn commit(&mut self, writes: &mut Vec<Pending>) {
        if writes.is_empty() {
            return;
        }
        let start = Instant::now();
        let result = (|| -> rusqlite::Result<()> {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for w in writes.iter_mut() {
                w.apply(&tx, &mut self.known)?;
            }
            tx.commit()
        })();
        let m = &self.metrics;
        let result = match result {
            Ok(()) => {
                let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                let old = m.commit_us.load(Ordering::Relaxed);
                m.commit_us.store(if old == 0 { us } else { (old * 7 + us) / 8 }, Ordering::Relaxed);
                m.commit_us_max.fetch_max(us, Ordering::Relaxed);
                m.commits.fetch_add(1, Ordering::Relaxed);
                m.writes.fetch_add(writes.len() as u64, Ordering::Relaxed);
                if m.degraded.swap(false, Ordering::Relaxed) {
                    log::info("session store: writes succeed again (state ok)");
                }
                Ok(())
            }
            Err(e) => {
                self.known.clear();
                let text = e.to_string();
                m.write_errors.fetch_add(writes.len() as u64, Ordering::Relaxed);
                if !m.degraded.swap(true, Ordering::Relaxed) {
                    log::error(&format!("session store: a write failed, state degraded: {text}"));
                }
                if let Ok(mut last) = m.last_error.lock() {
                    *last = Some(text.clone());
                }
                Err(StoreError::Write(text))
            }
        };
        for w in writes.drain(..) {
            w.finish(&result);
        }
    }

    /// One step of housekeeping: sessions past their retention, answered deliveries
    /// past `SPOOL_KEEP_MS`. Returns whether either has more to do.
    fn purge_step(&mut self) -> bool {
        let sessions = self.retention_ms > 0 && self.purge_sessions_step();
        let spool = match purge_spool(&self.conn, crate::clock::now_unix_ms().saturating_sub(SPOOL_KEEP_MS)) {
            Ok(n) => n == SPOOL_PURGE_BATCH,
            Err(e) => {
                log::warn(&format!("session store: spool purge failed: {e}"));
                false
            }
        };
        sessions || spool
    }

    /// One step of a retention pass: looks at the next `PURGE_BATCH` sessions in id
    /// order and deletes those not updated within the retention period, in one
    /// transaction. Returns whether the pass goes on (more sessions after these).
    fn purge_sessions_step(&mut self) -> bool {
        let cutoff = sql_int(crate::clock::now_unix_ms().saturating_sub(self.retention_ms));
        let after = std::mem::take(&mut self.purge_cursor);
        let result = (|| -> rusqlite::Result<(usize, usize, Option<String>)> {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let rows: Vec<(String, i64)> = {
                let mut st = tx.prepare_cached(
                    "SELECT s.id, max(s.updated_at, coalesce(
                       (SELECT at FROM turns WHERE session = s.id ORDER BY seq DESC LIMIT 1), 0))
                     FROM sessions s WHERE s.id > ?1 ORDER BY s.id LIMIT ?2",
                )?;
                let rows = st.query_map(params![after, PURGE_BATCH as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut purged = 0;
            for (id, updated) in &rows {
                if *updated < cutoff {
                    delete(&tx, id, &mut self.known)?;
                    purged += 1;
                }
            }
            tx.commit()?;
            Ok((rows.len(), purged, rows.last().map(|r| r.0.clone())))
        })();
        match result {
            Ok((seen, purged, last)) => {
                if purged > 0 {
                    log::info(&format!("session store: retention purged {purged} sessions"));
                }
                match last {
                    Some(id) if seen == PURGE_BATCH => {
                        self.purge_cursor = id;
                        true
                    }
                    _ => false,
                }
            }
            Err(e) => {
                self.known.clear();
                log::warn(&format!("session store: retention purge failed: {e}"));
                false
            }
        }
    }
}

/// SQLite integers are `i64`; times and counters stay far below its limit.
fn sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A message inside a turn row's `messages` JSON array (its number is the row's `seq`
/// plus its index).
#[derive(serde::Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra: Option<&'a MessageExtra>,
    at: u64,
}

/// `MessageOut` read back.
#[derive(serde::Deserialize)]
struct MessageIn {
    role: String,
    content: String,
    #[serde(default)]
    extra: Option<MessageExtra>,
    #[serde(default)]
    at: u64,
}

/// One statement for what most turns write: the turn's messages as one row (two when
/// the trim drops older turn rows). `known`: see `StorageThread::known`.
fn apply(conn: &Connection, w: &Write, known: &mut HashSet<String>) -> rusqlite::Result<()> {
    match w {
        Write::Turn { row, messages, trim, answer: spool_answer } => {
            // The session's row is written once, when it is new; its changing metadata
            // lives in its latest turn row.
            if !known.contains(&row.id) {
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO sessions (id, channel, model, owner, created_at, updated_at, appended)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5, 0)",
                )?
                .execute(params![
                    row.id,
                    row.channel,
                    row.model,
                    row.owner,
                    sql_int(row.created_at_ms)
                ])?;
                if known.len() >= KNOWN_MAX {
                    known.clear();
                }
                known.insert(row.id.clone());
            }
            if let Some(first) = messages.first() {
                let out: Vec<MessageOut<'_>> = messages
                    .iter()
                    .map(|m| MessageOut {
                        role: role_name(m.message.role),
                        content: &m.message.content,
                        extra: m.message.extra.as_deref(),
                        at: m.at_ms,
                    })
                    .collect();
                let json = sonic_rs::to_string(&out).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO turns (session, seq, end_seq, kept_from, model, at, messages)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    row.id,
                    sql_int(first.seq),
                    sql_int(row.appended),
                    sql_int(row.appended.saturating_sub(row.message_count)),
                    row.model,
                    sql_int(row.updated_at_ms),
                    json,
                ])?;
            }
            if let Some(first_kept) = trim {
                // Turn rows whose messages all fall before the first kept one.
                conn.prepare_cached("DELETE FROM turns WHERE session = ?1 AND seq < ?2 AND end_seq <= ?2")?
                    .execute(params![row.id, sql_int(*first_kept)])?;
            }
            if let Some(a) = spool_answer {
                answer(conn, a.spool_id, &a.parts)?;
            }
        }
        Write::Reset { id, at_ms } => {
            // The numbering goes on after a reset: the row keeps where it was.
            conn.prepare_cached(
                "UPDATE sessions SET updated_at = ?2,
                   appended = max(appended, coalesce((SELECT max(end_seq) FROM turns WHERE session = ?1), 0))
                 WHERE id = ?1",
            )?
            .execute(params![id, sql_int(*at_ms)])?;
            conn.prepare_cached("DELETE FROM turns WHERE session = ?1")?.execute(params![id])?;
        }
        Write::SetModel { id, model, at_ms } => {
            conn.prepare_cached("UPDATE sessions SET model = ?2, updated_at = ?3 WHERE id = ?1")?.execute(params![
                id,
                model,
                sql_int(*at_ms)
            ])?;
        }
        Write::Delete { id } => delete(conn, id, known)?,
    }
    Ok(())
}

fn delete(conn: &Connection, id: &str, known: &mut HashSet<String>) -> rusqlite::Result<()> {
    known.remove(id);
    conn.prepare_cached("DELETE FROM turns WHERE session = ?1")?.execute(params![id])?;
    conn.prepare_cached("DELETE FROM sessions WHERE id = ?1")?.execute(params![id])?;
    Ok(())
}

/// A session's row joined with its latest turn row (`t.*` NULL when it has none).
const ROW_SELECT: &str = "SELECT s.id, s.channel, s.model, s.owner, s.created_at, s.updated_at, s.appended,
    t.model, t.at, t.end_seq, t.kept_from
  FROM sessions s LEFT JOIN turns t
    ON t.session = s.id AND t.seq = (SELECT max(seq) FROM turns WHERE session = s.id)";

/// A `ROW_SELECT` row as a `SessionRow`: the latest of the session row (reset,
/// set-model) and its latest turn row says the model, the time and the numbering.
fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    let n = |i: usize| -> rusqlite::Result<u64> { Ok(u64::try_from(r.get::<_, i64>(i)?).unwrap_or(0)) };
    let on = |i: usize| -> rusqlite::Result<Option<u64>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(|v| u64::try_from(v).unwrap_or(0)))
    };
    let (row_model, row_updated, row_appended): (String, u64, u64) = (r.get(2)?, n(5)?, n(6)?);
    let turn_model: Option<String> = r.get(7)?;
    let (model, updated_at_ms, appended, message_count) = match (turn_model, on(8)?, on(9)?, on(10)?) {
        (Some(tm), Some(at), Some(end), Some(kept)) => (
            if row_updated > at { row_model } else { tm },
            row_updated.max(at),
            row_appended.max(end),
            end.saturating_sub(kept),
        ),
        _ => (row_model, row_updated, row_appended, 0),
    };
    Ok(SessionRow {
        id: r.get(0)?,
        channel: r.get(1)?,
        model,
        owner: r.get(3)?,
        created_at_ms: n(4)?,
        updated_at_ms,
        appended,
        message_count,
    })
}

fn load(conn: &Connection, id: &str) -> rusqlite::Result<Option<LoadedSession>> {
    let row =
        conn.prepare_cached(&format!("{ROW_SELECT} WHERE s.id = ?1"))?.query_row(params![id], read_row).optional()?;
    let Some(row) = row else { return Ok(None) };
    let first_kept = row.appended.saturating_sub(row.message_count);
    let mut st = conn.prepare_cached("SELECT seq, messages FROM turns WHERE session = ?1 ORDER BY seq")?;
    let mut rows = st.query(params![id])?;
    let mut messages = Vec::new();
    while let Some(r) = rows.next()? {
        let seq = u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0);
        let text: String = r.get(1)?;
        // A turn row this build cannot read is skipped (and logged), not fatal.
        let stored: Vec<MessageIn> = match sonic_rs::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                log::info(&format!("session store: a turn of session {id} is unreadable: {e}"));
                continue;
            }
        };
        for (m, seq) in stored.into_iter().zip(seq..) {
            if seq < first_kept {
                continue;
            }
            messages.push(MessageRow {
                seq,
                message: Message { role: parse_role(&m.role), content: m.content.into(), extra: m.extra.map(Arc::new) },
                at_ms: m.at,
            });
        }
    }
    Ok(Some(LoadedSession { row, messages }))
}

fn list(conn: &Connection, q: &ListQuery) -> rusqlite::Result<Vec<SessionRow>> {
    let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
    let filters = "(?1 IS NULL OR s.owner = ?1) AND (?2 IS NULL OR s.channel = ?2)";
    let order = "ORDER BY s.created_at DESC, s.id DESC";
    let rows = match &q.before {
        None => conn
            .prepare_cached(&format!("{ROW_SELECT} WHERE {filters} {order} LIMIT ?3"))?
            .query_map(params![q.owner, q.channel, limit], read_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        Some((ms, id)) => conn
            .prepare_cached(&format!(
                "{ROW_SELECT} WHERE {filters} AND (s.created_at, s.id) < (?3, ?4) {order} LIMIT ?5"
            ))?
            .query_map(params![q.owner, q.channel, sql_int(*ms), id, limit], read_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    };
    Ok(rows)
}

fn spool(conn: &Connection, d: &Delivery) -> rusqlite::Result<Spooled> {
    let n = conn
        .prepare_cached(
            "INSERT INTO spool (channel, key, session, sender, text, reply_to, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (channel, key) DO NOTHING",
        )?
        .execute(params![d.channel, d.key, d.session, d.sender, d.text, d.reply_to, sql_int(d.received_at_ms)])?;
    Ok(if n == 1 { Spooled::New(u64::try_from(conn.last_insert_rowid()).unwrap_or(0)) } else { Spooled::Duplicate })
}

fn spooled(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<SpoolEntry>> {
    conn.prepare_cached(
        "SELECT id, channel, key, session, sender, text, reply_to, received_at FROM spool
         WHERE answered = 0 ORDER BY id LIMIT ?1",
    )?
    .query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
        Ok(SpoolEntry {
            id: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
            delivery: Delivery {
                channel: r.get(1)?,
                key: r.get(2)?,
                session: r.get(3)?,
                sender: r.get(4)?,
                text: r.get(5)?,
                reply_to: r.get(6)?,
                received_at_ms: u64::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
            },
        })
    })?
    .collect()
}

/// Marks delivery `id` answered and queues `parts`, unless it was answered already.
fn answer(conn: &Connection, id: u64, parts: &[OutboxPart]) -> rusqlite::Result<()> {
    let n = conn
        // The user's text is in the session now (or was answered with a notice): the
        // row keeps only what deduplication needs.
        .prepare_cached("UPDATE spool SET answered = 1, text = '' WHERE id = ?1 AND answered = 0")?
        .execute(params![sql_int(id)])?;
    if n == 0 {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO outbox (spool_id, channel, part, target, text) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for p in parts {
        insert.execute(params![sql_int(id), p.channel, p.part, p.target, p.text])?;
    }
    Ok(())
}

/// Deletes up to `SPOOL_PURGE_BATCH` answered deliveries received before `cutoff_ms`
/// (oldest first, through the `spool_received` index) whose reply parts are all gone
/// from the outbox (sent; a dead letter keeps its delivery). Returns how many.
pub(super) fn purge_spool(conn: &Connection, cutoff_ms: u64) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "DELETE FROM spool WHERE id IN (
           SELECT s.id FROM spool s WHERE s.received_at < ?1 AND s.answered = 1
             AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.spool_id = s.id)
           ORDER BY s.received_at LIMIT ?2)",
    )?
    .execute(params![sql_int(cutoff_ms), SPOOL_PURGE_BATCH as i64])
}

/// Due parts whose earlier parts (of the same reply) were all sent, longest waiting
/// first. Read through the `outbox_pending` index (pending parts only), whatever the
/// table's size.
fn outbox_due(conn: &Connection, now_ms: u64, limit: usize) -> rusqlite::Result<Vec<OutboxEntry>> {
    conn.prepare_cached(
        "SELECT o.id, o.spool_id, o.channel, o.part, o.target, o.text, o.attempts FROM outbox o
         WHERE o.state = 'pending' AND o.next_at <= ?1
           AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.spool_id = o.spool_id AND e.part < o.part
                           AND e.state != 'sent')
         ORDER BY o.next_at, o.id LIMIT ?2",
    )?
    .query_map(params![sql_int(now_ms), i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
        Ok(OutboxEntry {
            id: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
            spool_id: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
            part: OutboxPart { channel: r.get(2)?, part: r.get(3)?, target: r.get(4)?, text: r.get(5)? },
            attempts: r.get(6)?,
        })
    })?
    .collect()
}

fn outbox_result(conn: &Connection, id: u64, outcome: &SendOutcome) -> rusqlite::Result<()> {
    let id = sql_int(id);
    match outcome {
        // A sent part has nothing more to do: it leaves the table (the counters keep
        // the tally), so the outbox holds only what waits and the dead letters.
        SendOutcome::Sent => {
            conn.prepare_cached("DELETE FROM outbox WHERE id = ?1 AND state = 'pending'")?.execute(params![id])
        }
        SendOutcome::Retry { at_ms, error } => conn
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3
                 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![id, sql_int(*at_ms), error]),
        SendOutcome::Dead { error } => {
            let n = conn
                .prepare_cached(
                    "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?2
                     WHERE id = ?1 AND state = 'pending'",
                )?
                .execute(params![id, error])?;
            // The later parts of the reply would arrive out of context: dead with it.
            conn.prepare_cached(
                "UPDATE outbox SET state = 'dead', last_error = 'an earlier part of the reply was dead-lettered'
                 WHERE state = 'pending' AND spool_id = (SELECT spool_id FROM outbox WHERE id = ?1)
                   AND part > (SELECT part FROM outbox WHERE id = ?1)",
            )?
            .execute(params![id])?;
            Ok(n)
        }
    }
    .map(drop)
}

fn queue_counts(conn: &Connection) -> rusqlite::Result<BTreeMap<String, QueueCounts>> {
    let mut out: BTreeMap<String, QueueCounts> = BTreeMap::new();
    let count = |v: i64| u64::try_from(v).unwrap_or(0);
    let mut st = conn.prepare_cached("SELECT channel, count(*) FROM spool WHERE answered = 0 GROUP BY channel")?;
    for row in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (channel, n) = row?;
        out.entry(channel).or_default().spooled = count(n);
    }
    let mut st =
        conn.prepare_cached("SELECT channel, count(*) FROM outbox WHERE state = 'pending' GROUP BY channel")?;
    for row in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (channel, n) = row?;
        out.entry(channel).or_default().outbox = count(n);
    }
    let mut st = conn.prepare_cached(
        "SELECT channel, count(*), (SELECT last_error FROM outbox l WHERE l.channel = d.channel AND l.state = 'dead'
                                    ORDER BY l.id DESC LIMIT 1)
         FROM outbox d WHERE state = 'dead' GROUP BY channel",
    )?;
    for row in
        st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<String>>(2)?)))?
    {
        let (channel, n, last) = row?;
        let c = out.entry(channel).or_default();
        c.dead_letters = count(n);
        c.last_dead_letter = last;
    }
    Ok(out)
}

fn role_name(role: MessageRole) -> &'static str {
    match role {
        MessageRole::System => "system",
        MessageRole::User => "user",
        MessageRole::Assistant => "assistant",
        MessageRole::Tool => "tool",
    }
}

fn parse_role(name: &str) -> MessageRole {
    match name {
        "system" => MessageRole::System,
        "assistant" => MessageRole::Assistant,
        "tool" => MessageRole::Tool,
        _ => MessageRole::User,
    }
}

/// What `clawgate backup` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub sessions: u64,
    pub messages: u64,
    pub bytes: u64,
}

/// Copies the store at `source` into `dest` with SQLite's online backup API, in one
/// step (one read transaction: a consistent snapshot even while clawgate writes), into
/// `dest.partial` first and renamed when the copy passed `PRAGMA quick_check`, so a
/// file at `dest` is always a whole backup. Errors name the file at fault.
pub fn backup(source: &Path, dest: &Path) -> Result<BackupReport, String> {
    if !source.exists() {
        return Err(format!("no session store at {}", source.display()));
    }
    let src = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| format!("cannot open {}: {e}", source.display()))?;
    src.busy_timeout(Duration::from_secs(10)).map_err(|e| format!("{}: {e}", source.display()))?;
    let mut partial = dest.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    let mut dst = Connection::open(&partial).map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    {
        let copy = rusqlite::backup::Backup::new(&src, &mut dst)
            .map_err(|e| format!("cannot back up {} to {}: {e}", source.display(), partial.display()))?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            match copy.step(-1).map_err(|e| format!("backup of {} failed: {e}", source.display()))? {
                rusqlite::backup::StepResult::Done => break,
                _ if Instant::now() > deadline => {
                    return Err(format!("backup of {} did not finish within 10 minutes", source.display()))
                }
                // Busy or locked: another connection holds a lock for a moment. (The
                // `backup` command's own thread, never a worker.)
                #[allow(clippy::disallowed_methods)]
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
    let check: String = dst
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| format!("cannot check the backup {}: {e}", partial.display()))?;
    if check != "ok" {
        return Err(format!("the backup {} failed its check: {check}", partial.display()));
    }
    let count = |sql: &str| -> Result<u64, String> {
        dst.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(|e| format!("cannot read the backup {}: {e}", partial.display()))
    };
    let (sessions, messages) = (
        count("SELECT count(*) FROM sessions")?,
        count("SELECT coalesce(sum(json_array_length(messages)), 0) FROM turns")?,
    );
    drop(dst);
    std::fs::rename(&partial, dest).map_err(|e| format!("cannot move the backup to {}: {e}", dest.display()))?;
    let bytes = std::fs::metadata(dest).map_or(0, |m| m.len());
    Ok(BackupReport { sessions, messages, bytes })
}
