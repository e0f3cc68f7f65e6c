//! Sessions across simulated workers: shards and hubs driven by hand.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;

use super::*;
use crate::chat::MessageRole;
use crate::clock;
use crate::config::Role;
use crate::config::SessionsConfig;
use crate::error::ErrorCode;
use crate::peers::mailboxes;

fn user(text: impl Into<Arc<str>>) -> Message {
    Message::text(MessageRole::User, text)
}

fn reply(text: impl Into<Arc<str>>) -> Message {
    Message::text(MessageRole::Assistant, text)
}

fn who(name: &str, role: Role) -> Identity {
    Identity { name: Arc::from(name), role, key_index: Some(0) }
}

/// `n` workers' shards and hubs, driven by hand: `pump` delivers every queued
/// command until all inboxes are empty (what each worker's `serve` does).
struct Cluster {
    shards: Vec<Rc<RefCell<LocalSessions>>>,
    hubs: Vec<SessionHub>,
    inboxes: Vec<flume::Receiver<Cmd>>,
}

impl Cluster {
    fn new(n: usize, max_sessions: usize) -> Self {
        let (peers, inboxes) = mailboxes::<Cmd>(n);
        let limits =
            SessionsConfig { max_messages: 4, max_bytes: 1 << 20, idle_ttl_secs: 60, max_sessions, retention_days: 0 };
        let shards: Vec<_> = (0..n)
            .map(|i| {
                Rc::new(RefCell::new(LocalSessions::new(
                    limits.clone(),
                    peers.for_worker(i),
                    Arc::new(AtomicUsize::new(0)),
                    Arc::new(crate::store::MemoryStore::default()),
                )))
            })
            .collect();
        // Hubs look at an inbox nobody fills, so they always handle locally (the
        // FIFO rule is exercised by the integration tests).
        let hubs =
            (0..n).map(|i| SessionHub::new(shards[i].clone(), peers.for_worker(i), flume::unbounded().1)).collect();
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
            seed: Vec::new(),
        };
        self.hubs[on].send(on, Cmd::Begin { req, from: on, hops: 0, fresh: false, reply: tx });
        rx
    }

    fn turn(&self, on: usize, id: &str, w: &Identity, q: &str) -> (usize, usize) {
        let rx = self.begin(on, id, w);
        let msgs = self.pump();
        let g = rx.try_recv().unwrap().unwrap();
        let seen = g.history.len();
        drop(self.hubs[on].finish(g, user(q), reply(format!("re: {q}"))));
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
    drop(c.hubs[0].finish(first, user("hi"), reply("hello")));
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
    drop(c.hubs[1].finish(first, user("q1"), reply("a1")));
    c.pump();
    let second = second.try_recv().unwrap().unwrap();
    assert_eq!(second.history.len(), 4);
    assert_eq!(c.holders(&id), vec![1], "granted where it is held");
    drop(c.hubs[0].finish(second, user("q2"), reply("a2")));
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
    c.hubs[0].send(0, Cmd::Act { id: id.clone(), who: u.clone(), action: SessionAction::Delete, hops: 0, reply: tx });
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

#[test]
fn the_store_write_trims_exactly_as_memory_does() {
    // Whatever the sizes, the write made before a turn is recorded says what memory
    // keeps after it: the same count, the new messages (and a seed not stored yet)
    // with consecutive numbers, and a delete of the trimmed ones once enough gathered.
    let limits = SessionsConfig { max_messages: 7, max_bytes: 400, ..SessionsConfig::default() };
    let req = BeginTurn {
        id: Some("s".into()),
        who: who("a", Role::User),
        channel: "api".into(),
        requested_model: None,
        default_model: "m".into(),
        seed: vec![user("seed one"), reply("seed two")],
    };
    let mut s = local::new_session("s", &req);
    let mut rng = fastrand::Rng::with_seed(7);
    for turn in 0..200u64 {
        let text = |rng: &mut fastrand::Rng| "x".repeat(rng.usize(1..180));
        let new: Vec<StoredMessage> = [user(text(&mut rng)), reply(text(&mut rng))]
            .into_iter()
            .map(|m| StoredMessage { role: m.role, content: m.content, extra: None, at: turn })
            .collect();
        let stored_before = s.stored;
        let disk_before = s.disk_from;
        let crate::store::Write::Turn { row, messages, trim, .. } = local::turn_write(&s, &new, "m", turn, &limits)
        else {
            panic!("a turn write")
        };
        local::record(&mut s, new, "m".into(), turn, &limits);
        let first_after = s.appended - s.messages.len() as u64;
        assert_eq!(row.message_count, s.messages.len() as u64, "turn {turn}");
        assert_eq!(row.appended, s.appended);
        // Trimmed messages are deleted in ranges of at least TRIM_SLACK.
        assert_eq!(trim, (first_after >= disk_before + local::TRIM_SLACK).then_some(first_after), "turn {turn}");
        if let Some(t) = trim {
            s.disk_from = t;
        }
        assert!(first_after < s.disk_from + local::TRIM_SLACK, "turn {turn}: stale rows stay bounded");
        let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
        let expected: Vec<u64> = (stored_before.max(first_after)..s.appended).collect();
        assert_eq!(seqs, expected, "turn {turn}");
        assert!(s.bytes <= limits.max_bytes || s.messages.len() <= 2);
    }
}
