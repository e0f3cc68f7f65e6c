//! The SQLite schema and its migrations. The version is SQLite's `PRAGMA user_version`
//! (0 in a new file); `MIGRATIONS[n]` takes a database from version `n` to `n + 1`.
//! Migrations only go forward and run at start-up, all in one transaction with the
//! version bump, so a crash mid-way leaves the old version intact. A file whose version
//! is above `SCHEMA_VERSION` was written by a newer clawgate and is refused.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

/// `MIGRATIONS[n]`: version `n` to `n + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: sessions and their turns. Times are ms since the Unix epoch. A session's row
    // is written when it is made and by reset and set-model; each turn adds one `turns`
    // row (one insert per turn, the cheapest durable write): its messages as a JSON
    // array (numbered from `seq`; `{role, content, extra?, at}`, `extra` being
    // `chat::MessageExtra`), the session's numbering after it (`end_seq`), the first
    // message the history keeps (`kept_from`), and the turn's model and time, which
    // the latest turn row says for the session. No index on times: every turn would
    // move its entry; the retention pass walks the sessions by id instead.
    "CREATE TABLE sessions (
        id TEXT NOT NULL PRIMARY KEY,
        channel TEXT NOT NULL,
        model TEXT NOT NULL,
        owner TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        appended INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_created ON sessions (created_at, id);
    CREATE TABLE turns (
        session TEXT NOT NULL,
        seq INTEGER NOT NULL,
        end_seq INTEGER NOT NULL,
        kept_from INTEGER NOT NULL,
        model TEXT NOT NULL,
        at INTEGER NOT NULL,
        messages TEXT NOT NULL,
        PRIMARY KEY (session, seq)
    ) WITHOUT ROWID;",
    // 2: the webhook spool and outbox. A delivery is unique per (channel, key) (the
    // platform's id); `answered` once its turn's reply parts are in the outbox (one
    // transaction). An outbox part is `pending` (due at `next_at`), `sent` or `dead`;
    // parts of one reply go out in `part` order.
    "CREATE TABLE spool (
        id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        key TEXT NOT NULL,
        session TEXT NOT NULL,
        sender TEXT NOT NULL,
        text TEXT NOT NULL,
        reply_to TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        answered INTEGER NOT NULL DEFAULT 0,
        UNIQUE (channel, key)
    );
    CREATE INDEX spool_unanswered ON spool (id) WHERE answered = 0;
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        spool_id INTEGER NOT NULL,
        channel TEXT NOT NULL,
        part INTEGER NOT NULL,
        target TEXT NOT NULL,
        text TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        UNIQUE (spool_id, part)
    );
    CREATE INDEX outbox_pending ON outbox (next_at) WHERE state = 'pending';",
    // 3: dead letters counted per channel without a scan (`/api/channels`); answered
    // deliveries found by age for the purge (`sqlite::purge_spool`). Sent parts are
    // deleted from now on, so the outbox holds only what waits and the dead letters.
    "CREATE INDEX outbox_dead ON outbox (channel) WHERE state = 'dead';
    CREATE INDEX spool_received ON spool (received_at);
    DELETE FROM outbox WHERE state = 'sent';",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings `conn` to `SCHEMA_VERSION`. Errors name `path` and, for a newer file, both
/// versions.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), String> {
    let shown = path.display();
    let fail = |what: &str, e: rusqlite::Error| format!("session store {shown}: {what}: {e}");
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| fail("cannot start the schema check", e))?;
    let version: i64 =
        tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| fail("cannot read the schema", e))?;
    if version > SCHEMA_VERSION {
        return Err(format!(
            "session store {shown} has schema version {version}, written by a newer clawgate; this clawgate \
             ({}) knows versions up to {SCHEMA_VERSION}. Run the newer clawgate, or point [store] path at \
             another file",
            env!("CARGO_PKG_VERSION")
        ));
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let from = usize::try_from(version).map_err(|_| format!("session store {shown}: bad schema version {version}"))?;
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(from) {
        tx.execute_batch(sql).map_err(|e| fail(&format!("migration to version {} failed", n + 1), e))?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(|e| fail("cannot set the schema version", e))?;
    tx.commit().map_err(|e| fail("cannot commit the schema", e))
}
