// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::chat::{MessageExtra, MessageRole, ToolCall};
use crate::config::{SessionsConfig, StoreConfig};

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clawgate-store-{tag}-{}-{}", std::process::id(), fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn open_at(path: &std::path::Path) -> SqliteStore {
    let cfg = StoreConfig { path: path.to_path_buf(), ..StoreConfig::default() };
    SqliteStore::open(&cfg, &SessionsConfig::default()).unwrap()
}

fn wait<T: Send + 'static>(start: impl FnOnce(Done<T>)) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::channel();
    start(Box::new(move |r| {
        let _ = tx.send(r);
    }));
    rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap()
}

fn row(id: &str, appended: u64, count: u64) -> SessionRow {
    SessionRow {
        id: id.into(),
        channel: "api".into(),
        model: "mock".into(),
        owner: "alice".into(),
        created_at_ms: 1000 + appended,
        updated_at_ms: 2000 + appended,
        appended,
        message_count: count,
    }
}

fn msg(seq: u64, role: MessageRole, text: &str) -> MessageRow {
    MessageRow { seq, message: Message::text(role, text), at_ms: 5 + seq }
}

fn turn(store: &dyn Store, id: &str, first: u64, trim: Option<u64>, count: u64) {
    let messages =
        vec![msg(first, MessageRole::User, &format!("q{first}")), msg(first + 1, MessageRole::Assistant, "a")];
    let w = Write::Turn { row: row(id, first + 2, count), messages, trim, answer: None };
    wait(|d| store.write(w, Some(d))).unwrap();
}

#[test]
fn turns_round_trip_in_order_with_their_parts_and_trim() {
    let dir = temp_dir("round");
    let store = open_at(&dir.join("s.db"));
    turn(&store, "s1", 0, None, 2);
    turn(&store, "s1", 2, None, 4);
    // A tool call and reasoning survive the trip.
    let extra = MessageExtra {
        tool_calls: vec![ToolCall { id: "c1".into(), name: "f".into(), arguments: "{\"a\":1}".into() }],
        reasoning: Some(crate::chat::Reasoning { text: "hmm".into(), signature: Some("sig".into()) }),
        ..MessageExtra::default()
    };
    let rich = MessageRow {
        seq: 4,
        message: Message { role: MessageRole::Assistant, content: "x".into(), extra: Some(Arc::new(extra)) },
        at_ms: 9,
    };
    let w = Write::Turn { row: row("s1", 5, 3), messages: vec![rich.clone()], trim: Some(2), answer: None };
    wait(|d| store.write(w, Some(d))).unwrap();
    let loaded = wait(|d| store.load("s1".into(), d)).unwrap().unwrap();
    // `created_at` is the first write's; the rest is the latest.
    assert_eq!(loaded.row, SessionRow { created_at_ms: 1002, ..row("s1", 5, 3) });
    let seqs: Vec<u64> = loaded.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [2, 3, 4], "trimmed below 2, in order");
    assert_eq!(loaded.messages[0].message.content.as_ref(), "q2");
    assert_eq!(loaded.messages[2], rich);
    assert!(wait(|d| store.load("nope".into(), d)).unwrap().is_none());
    // Writing the same turn twice stores it once.
    turn(&store, "s1", 2, None, 3);
    let again = wait(|d| store.load("s1".into(), d)).unwrap().unwrap();
    assert_eq!(again.messages.len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_session_deleted_then_made_again_under_its_id_is_stored_again() {
    // The storage thread skips the session row's insert for ids it has written: a
    // delete must make it write the row again.
    let dir = temp_dir("again");
    let store = open_at(&dir.join("s.db"));
    turn(&store, "s1", 0, None, 2);
    turn(&store, "s1", 2, None, 4);
    wait(|d| store.write(Write::Delete { id: "s1".into() }, Some(d))).unwrap();
    assert!(wait(|d| store.load("s1".into(), d)).unwrap().is_none());
    turn(&store, "s1", 0, None, 2);
    let loaded = wait(|d| store.load("s1".into(), d)).unwrap().expect("the new session is on disk");
    assert_eq!(loaded.row, row("s1", 2, 2));
    assert_eq!(loaded.messages.len(), 2);
    drop(store);
    let reopened = open_at(&dir.join("s.db"));
    assert!(wait(|d| reopened.load("s1".into(), d)).unwrap().is_some());
    let listed = wait(|d| reopened.list(ListQuery { owner: None, channel: None, before: None, limit: 10 }, d)).unwrap();
    assert_eq!(listed.len(), 1);
}

#[test]
fn reset_set_model_delete_and_list_pages() {
    let dir = temp_dir("acts");
    let store = open_at(&dir.join("s.db"));
    for i in 0..5u64 {
        let mut r = row(&format!("s{i}"), 2, 2);
        r.created_at_ms = 100 + i;
        if i == 4 {
            r.owner = "bob".into();
        }
        let w = Write::Turn {
            row: r,
            messages: vec![msg(0, MessageRole::User, "q"), msg(1, MessageRole::Assistant, "a")],
            trim: None,
            answer: None,
        };
        wait(|d| store.write(w, Some(d))).unwrap();
    }
    let q = |owner: Option<&str>, before: Option<(u64, String)>, limit| ListQuery {
        owner: owner.map(str::to_string),
        channel: None,
        before,
        limit,
    };
    let all = wait(|d| store.list(q(None, None, 10), d)).unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["s4", "s3", "s2", "s1", "s0"]);
    let alice = wait(|d| store.list(q(Some("alice"), None, 2), d)).unwrap();
    assert_eq!(alice.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["s3", "s2"]);
    let next = wait(|d| store.list(q(Some("alice"), Some((102, "s2".into())), 10), d)).unwrap();
    assert_eq!(next.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["s1", "s0"]);

    wait(|d| store.write(Write::Reset { id: "s1".into(), at_ms: 7 }, Some(d))).unwrap();
    let s1 = wait(|d| store.load("s1".into(), d)).unwrap().unwrap();
    assert!(s1.messages.is_empty());
    assert_eq!((s1.row.message_count, s1.row.appended), (0, 2), "numbering goes on after a reset");
    wait(|d| store.write(Write::SetModel { id: "s1".into(), model: "m2".into(), at_ms: 8 }, Some(d))).unwrap();
    assert_eq!(wait(|d| store.load("s1".into(), d)).unwrap().unwrap().row.model, "m2");
    wait(|d| store.write(Write::Delete { id: "s1".into() }, Some(d))).unwrap();
    assert!(wait(|d| store.load("s1".into(), d)).unwrap().is_none());
    let st = store.status();
    assert_eq!(st.state, "ok");
    assert!(st.commits >= 1 && st.writes >= 8, "{st:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_opener_a_newer_schema_and_a_non_database_are_refused_naming_the_file() {
    let dir = temp_dir("refuse");
    let path = dir.join("s.db");
    let store = open_at(&path);
    let cfg = StoreConfig { path: path.clone(), ..StoreConfig::default() };
    let e = SqliteStore::open(&cfg, &SessionsConfig::default()).unwrap_err();
    assert!(e.contains("in use by another process") && e.contains("s.db"), "{e}");
    drop(store);

    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    drop(conn);
    let e = SqliteStore::open(&cfg, &SessionsConfig::default()).unwrap_err();
    assert!(e.contains("newer clawgate") && e.contains(&format!("version {}", SCHEMA_VERSION + 1)), "{e}");
    assert!(e.contains(&format!("up to {SCHEMA_VERSION}")) && e.contains("s.db"), "{e}");

    let junk = dir.join("junk.db");
    std::fs::write(&junk, vec![b'x'; 8192]).unwrap();
    let e = SqliteStore::open(&StoreConfig { path: junk, ..StoreConfig::default() }, &SessionsConfig::default())
        .unwrap_err();
    assert!(e.contains("junk.db") && e.contains("not a database"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn backup_copies_a_consistent_snapshot() {
    let dir = temp_dir("backup");
    let store = open_at(&dir.join("s.db"));
    for i in 0..20 {
        turn(&store, &format!("b{i}"), 0, None, 2);
    }
    let report = backup(&dir.join("s.db"), &dir.join("copy.db")).unwrap();
    assert_eq!((report.sessions, report.messages), (20, 40));
    drop(store);
    let copy = open_at(&dir.join("copy.db"));
    let loaded = wait(|d| copy.load("b7".into(), d)).unwrap().unwrap();
    assert_eq!(loaded.messages.len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn retention_purges_old_sessions_in_batches_and_keeps_recent_ones() {
    let dir = temp_dir("retention");
    let path = dir.join("s.db");
    let store = open_at(&path);
    // More old sessions than one purge batch, and one recent.
    for i in 0..300u64 {
        let mut r = row(&format!("old{i}"), 2, 2);
        r.updated_at_ms = 1_000 + i;
        let w = Write::Turn {
            row: r,
            messages: vec![msg(0, MessageRole::User, "q"), msg(1, MessageRole::Assistant, "a")],
            trim: None,
            answer: None,
        };
        store.write(w, None);
    }
    let mut fresh = row("fresh", 2, 2);
    fresh.updated_at_ms = crate::clock::now_unix_ms();
    let w = Write::Turn { row: fresh, messages: vec![msg(0, MessageRole::User, "q")], trim: None, answer: None };
    wait(|d| store.write(w, Some(d))).unwrap();
    drop(store);
    let cfg = StoreConfig { path: path.clone(), ..StoreConfig::default() };
    let store = SqliteStore::open(&cfg, &SessionsConfig { retention_days: 1, ..SessionsConfig::default() }).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let all = wait(|d| store.list(ListQuery { owner: None, channel: None, before: None, limit: 1000 }, d)).unwrap();
        if all.len() == 1 {
            assert_eq!(all[0].id, "fresh");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{} sessions left", all.len());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(wait(|d| store.load("old7".into(), d)).unwrap().is_none());
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = conn.query_row("SELECT count(*) FROM turns", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1, "their turns went too");
    let _ = std::fs::remove_dir_all(&dir);
}

fn delivery(channel: &str, key: &str, text: &str) -> Delivery {
    Delivery {
        channel: channel.into(),
        key: key.into(),
        session: format!("{channel}:chat-1"),
        sender: "user-1".into(),
        text: text.into(),
        reply_to: r#"{"chat_id":1}"#.into(),
        received_at_ms: 42,
    }
}

fn part(n: u32, text: &str) -> OutboxPart {
    OutboxPart { channel: "tg".into(), part: n, target: r#"{"chat_id":1}"#.into(), text: text.into() }
}

/// The spool and outbox rules, the same on every backend.
fn spool_and_outbox_rules(store: &dyn Store) {
    // A delivery is spooled once per (channel, key); another channel may reuse a key.
    let Spooled::New(a) = wait(|d| store.spool(delivery("tg", "100", "hello"), d)).unwrap() else { panic!("new") };
    assert_eq!(wait(|d| store.spool(delivery("tg", "100", "hello again"), d)).unwrap(), Spooled::Duplicate);
    let Spooled::New(b) = wait(|d| store.spool(delivery("slack", "100", "hi"), d)).unwrap() else { panic!("new") };
    let pending = wait(|d| store.spooled(10, d)).unwrap();
    assert_eq!(pending.iter().map(|e| e.id).collect::<Vec<_>>(), [a, b], "oldest first");
    assert_eq!(pending[0].delivery, delivery("tg", "100", "hello"));

    // Answering queues the parts once, however often it is repeated.
    wait(|d| store.answer(a, vec![part(0, "one"), part(1, "two")], d)).unwrap();
    wait(|d| store.answer(a, vec![part(0, "again")], d)).unwrap();
    assert_eq!(wait(|d| store.spooled(10, d)).unwrap().iter().map(|e| e.id).collect::<Vec<_>>(), [b]);
    // Parts go in order: the second is not due before the first is sent.
    let due = wait(|d| store.outbox_due(1_000, 10, d)).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].spool_id, due[0].part.part, due[0].part.text.as_str(), due[0].attempts), (a, 0, "one", 0));
    // A retry waits for its time.
    store.outbox_result(due[0].id, SendOutcome::Retry { at_ms: 5_000, error: "429".into() }, None);
    assert!(wait(|d| store.outbox_due(4_999, 10, d)).unwrap().is_empty());
    let due = wait(|d| store.outbox_due(5_000, 10, d)).unwrap();
    assert_eq!((due[0].part.part, due[0].attempts), (0, 1));
    wait(|d| store.outbox_result(due[0].id, SendOutcome::Sent, Some(d))).unwrap();
    let due = wait(|d| store.outbox_due(5_000, 10, d)).unwrap();
    assert_eq!((due.len(), due[0].part.text.as_str()), (1, "two"));
    let counts = wait(|d| store.queue_counts(d)).unwrap();
    assert_eq!(counts["tg"], QueueCounts { spooled: 0, outbox: 1, dead_letters: 0, last_dead_letter: None });
    assert_eq!(counts["slack"].spooled, 1);
    wait(|d| store.outbox_result(due[0].id, SendOutcome::Dead { error: "400 chat not found".into() }, Some(d)))
        .unwrap();
    assert!(wait(|d| store.outbox_due(u64::MAX / 2, 10, d)).unwrap().is_empty());
    // A dead part takes the rest of its reply with it.
    let Spooled::New(c) = wait(|d| store.spool(delivery("tg", "101", "long"), d)).unwrap() else { panic!("new") };
    wait(|d| store.answer(c, vec![part(0, "a"), part(1, "b"), part(2, "c")], d)).unwrap();
    let due = wait(|d| store.outbox_due(5_000, 10, d)).unwrap();
    assert_eq!(due.len(), 1);
    wait(|d| store.outbox_result(due[0].id, SendOutcome::Dead { error: "403 bot blocked".into() }, Some(d))).unwrap();
    assert!(wait(|d| store.outbox_due(u64::MAX / 2, 10, d)).unwrap().is_empty());
    let counts = wait(|d| store.queue_counts(d)).unwrap();
    assert_eq!(counts["tg"].outbox, 0);
    assert_eq!(counts["tg"].dead_letters, 4);
}

#[test]
fn spool_and_outbox_on_sqlite_and_in_memory() {
    spool_and_outbox_rules(&MemoryStore::default());
    let dir = temp_dir("spool");
    let path = dir.join("s.db");
    let store = open_at(&path);
    spool_and_outbox_rules(&store);
    // What was spooled and not answered is there after a restart; so is the dedup key.
    drop(store);
    let store = open_at(&path);
    let pending = wait(|d| store.spooled(10, d)).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].delivery.channel, "slack");
    assert_eq!(wait(|d| store.spool(delivery("tg", "100", "late retry"), d)).unwrap(), Spooled::Duplicate);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_version_1_database_is_migrated_to_the_current_schema() {
    let dir = temp_dir("migrate");
    let path = dir.join("s.db");
    // A file as version 1 left it: sessions and turns only.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    drop(conn);
    let store = open_at(&path);
    assert!(matches!(wait(|d| store.spool(delivery("tg", "1", "x"), d)).unwrap(), Spooled::New(_)));
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_webhook_turn_and_its_reply_commit_together_once() {
    let dir = temp_dir("answer");
    let sqlite = open_at(&dir.join("s.db"));
    let memory = MemoryStore::default();
    for store in [&sqlite as &dyn Store, &memory] {
        let Spooled::New(id) = wait(|d| store.spool(delivery("tg", "7", "hello"), d)).unwrap() else { panic!("new") };
        let turn = || Write::Turn {
            row: row("tg:chat-1", 2, 2),
            messages: vec![msg(0, MessageRole::User, "hello"), msg(1, MessageRole::Assistant, "hi there")],
            trim: None,
            answer: Some(SpoolAnswer { spool_id: id, parts: vec![part(0, "hi there")] }),
        };
        wait(|d| store.write(turn(), Some(d))).unwrap();
        // Replayed (a crash before the worker heard of the commit): nothing doubles.
        wait(|d| store.write(turn(), Some(d))).unwrap();
        assert!(wait(|d| store.spooled(10, d)).unwrap().is_empty(), "{}", store.backend());
        let due = wait(|d| store.outbox_due(1, 10, d)).unwrap();
        assert_eq!(due.len(), 1, "{}", store.backend());
        assert_eq!((due[0].spool_id, due[0].part.text.as_str()), (id, "hi there"));
    }
    let loaded = wait(|d| sqlite.load("tg:chat-1".into(), d)).unwrap().unwrap();
    assert_eq!(loaded.messages.len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn answered_deliveries_are_purged_after_their_keep_time_unless_a_dead_letter_holds_them() {
    let dir = temp_dir("purge-spool");
    let path = dir.join("s.db");
    let store = open_at(&path);
    let Spooled::New(sent) = wait(|d| store.spool(delivery("tg", "1", "a"), d)).unwrap() else { panic!("new") };
    let Spooled::New(dead) = wait(|d| store.spool(delivery("tg", "2", "b"), d)).unwrap() else { panic!("new") };
    let Spooled::New(waiting) = wait(|d| store.spool(delivery("tg", "3", "c"), d)).unwrap() else { panic!("new") };
    wait(|d| store.answer(sent, vec![part(0, "A")], d)).unwrap();
    wait(|d| store.answer(dead, vec![part(0, "B")], d)).unwrap();
    for e in wait(|d| store.outbox_due(u64::MAX / 2, 10, d)).unwrap() {
        let outcome = if e.spool_id == sent { SendOutcome::Sent } else { SendOutcome::Dead { error: "403".into() } };
        wait(|d| store.outbox_result(e.id, outcome, Some(d))).unwrap();
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count("SELECT count(*) FROM outbox"), 1, "the sent part left the table, the dead letter stays");
    assert_eq!(count("SELECT count(*) FROM spool WHERE text != ''"), 1, "answered rows keep no text");
    // Received at 42 ms: not yet past a cutoff of 42, past one of 43.
    assert_eq!(sqlite::purge_spool(&conn, 42).unwrap(), 0);
    assert_eq!(sqlite::purge_spool(&conn, 43).unwrap(), 1);
    let left: Vec<i64> = conn
        .prepare("SELECT id FROM spool ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(left, [dead as i64, waiting as i64]);
    drop(conn);
    // The purged key is forgotten: a (very late) redelivery is new again.
    assert!(matches!(wait(|d| store.spool(delivery("tg", "1", "a"), d)).unwrap(), Spooled::New(_)));
    assert_eq!(wait(|d| store.spool(delivery("tg", "2", "b"), d)).unwrap(), Spooled::Duplicate);
    let _ = std::fs::remove_dir_all(&dir);
}
