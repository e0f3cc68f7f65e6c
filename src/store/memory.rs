//! `[store] backend = "memory"`: the sessions in memory are all there is (lost at
//! exit). Session writes succeed at once, loads find nothing, listings come from the
//! workers' shards (`Store::durable` is `false`). The webhook spool and outbox are kept
//! here in memory (behind a mutex: webhooks are not the chat hot path), with the same
//! rules as SQLite's, so channels work on this backend too, without durability.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use super::{
    Delivery, Done, ListQuery, LoadedSession, OutboxEntry, OutboxPart, QueueCounts, SendOutcome, SessionRow,
    SpoolEntry, Spooled, Store, StoreError, StoreStatus, Write,
};

/// Most delivery keys remembered for deduplication (the oldest are forgotten first).
const MAX_KEYS: usize = 100_000;

/// The store that keeps nothing beyond the process (and the webhook queues in memory).
#[derive(Debug, Default)]
pub struct MemoryStore {
    queues: Mutex<Queues>,
}

#[derive(Debug, Default)]
struct Queues {
    next_id: u64,
    keys: HashMap<(String, String), u64>,
    key_order: VecDeque<(String, String)>,
    /// Spooled deliveries not answered yet.
    spool: BTreeMap<u64, Delivery>,
    answered: std::collections::HashSet<u64>,
    /// Outbox parts: (entry, state, next_at_ms).
    outbox: BTreeMap<u64, (OutboxEntry, &'static str, u64)>,
    /// Per channel: dead letters and the latest one's error.
    dead: HashMap<String, (u64, String)>,
}

impl MemoryStore {
    fn with<T>(&self, f: impl FnOnce(&mut Queues) -> T) -> Result<T, StoreError> {
        self.queues.lock().map(|mut q| f(&mut q)).map_err(|_| StoreError::Write("the memory store is poisoned".into()))
    }
}

impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn durable(&self) -> bool {
        false
    }

    fn acks_after_commit(&self) -> bool {
        false
    }

    fn write(&self, write: Write, done: Option<Done<()>>) {
        // Only a webhook turn's answer is kept here (the sessions are in memory).
        if let Write::Turn { answer: Some(a), .. } = write {
            self.answer(a.spool_id, a.parts, Box::new(|_| {}));
        }
        if let Some(done) = done {
            done(Ok(()));
        }
    }

    fn load(&self, _id: String, done: Done<Option<LoadedSession>>) {
        done(Ok(None));
    }

    fn list(&self, _query: ListQuery, done: Done<Vec<SessionRow>>) {
        done(Ok(Vec::new()));
    }

    fn status(&self) -> StoreStatus {
        StoreStatus { backend: "memory", state: "ok", durability: "none", ..StoreStatus::default() }
    }

    fn spool(&self, delivery: Delivery, done: Done<Spooled>) {
        done(self.with(|q| {
            let key = (delivery.channel.clone(), delivery.key.clone());
            if q.keys.contains_key(&key) {
                return Spooled::Duplicate;
            }
            q.next_id += 1;
            let id = q.next_id;
            q.keys.insert(key.clone(), id);
            q.key_order.push_back(key);
            if q.key_order.len() > MAX_KEYS {
                if let Some(old) = q.key_order.pop_front() {
                    q.keys.remove(&old);
                }
            }
            q.spool.insert(id, delivery);
            Spooled::New(id)
        }));
    }

    fn spooled(&self, limit: usize, done: Done<Vec<SpoolEntry>>) {
        done(
            self.with(|q| {
                q.spool.iter().take(limit).map(|(id, d)| SpoolEntry { id: *id, delivery: d.clone() }).collect()
            }),
        );
    }

    fn answer(&self, id: u64, parts: Vec<OutboxPart>, done: Done<()>) {
        done(self.with(|q| {
            if q.spool.remove(&id).is_none() || !q.answered.insert(id) {
                return;
            }
            for part in parts {
                q.next_id += 1;
                let entry = OutboxEntry { id: q.next_id, spool_id: id, part, attempts: 0 };
                q.outbox.insert(entry.id, (entry, "pending", 0));
            }
        }));
    }

    fn outbox_due(&self, now_ms: u64, limit: usize, done: Done<Vec<OutboxEntry>>) {
        done(self.with(|q| {
            let mut blocked = std::collections::HashSet::new();
            let mut out = Vec::new();
            let mut all: Vec<&(OutboxEntry, &'static str, u64)> = q.outbox.values().collect();
            all.sort_by_key(|(e, _, _)| (e.spool_id, e.part.part));
            for (e, state, next_at) in all {
                if *state == "sent" {
                    continue;
                }
                // A part goes only after every earlier part of its reply was sent.
                if blocked.contains(&e.spool_id) {
                    continue;
                }
                blocked.insert(e.spool_id);
                if *state == "pending" && *next_at <= now_ms && out.len() < limit {
                    out.push(e.clone());
                }
            }
            out
        }));
    }

    fn outbox_result(&self, id: u64, outcome: SendOutcome, done: Option<Done<()>>) {
        let r = self.with(|q| {
            let Some((e, state, next_at)) = q.outbox.get_mut(&id) else { return };
            if *state != "pending" {
                return;
            }
            e.attempts += 1;
            match outcome {
                SendOutcome::Sent => {
                    *state = "sent";
                    // A reply whose parts are all sent leaves memory.
                    let spool_id = e.spool_id;
                    if q.outbox.values().filter(|(o, _, _)| o.spool_id == spool_id).all(|(_, s, _)| *s == "sent") {
                        q.outbox.retain(|_, (o, _, _)| o.spool_id != spool_id);
                    }
                }
                SendOutcome::Retry { at_ms, .. } => *next_at = at_ms,
                SendOutcome::Dead { error } => {
                    *state = "dead";
                    let (spool_id, part) = (e.spool_id, e.part.part);
                    let channel = e.part.channel.clone();
                    let mut dead = 1;
                    // The later parts of the reply would arrive out of context.
                    for (o, s, _) in q.outbox.values_mut() {
                        if o.spool_id == spool_id && o.part.part > part && *s == "pending" {
                            *s = "dead";
                            dead += 1;
                        }
                    }
                    let entry = q.dead.entry(channel).or_default();
                    entry.0 += dead;
                    entry.1 = error;
                }
            }
        });
        if let Some(done) = done {
            done(r);
        }
    }

    fn queue_counts(&self, done: Done<std::collections::BTreeMap<String, QueueCounts>>) {
        done(self.with(|q| {
            let mut out: std::collections::BTreeMap<String, QueueCounts> = Default::default();
            for d in q.spool.values() {
                out.entry(d.channel.clone()).or_default().spooled += 1;
            }
            for (e, state, _) in q.outbox.values() {
                if *state == "pending" {
                    out.entry(e.part.channel.clone()).or_default().outbox += 1;
                }
            }
            for (channel, (n, last)) in &q.dead {
                let c = out.entry(channel.clone()).or_default();
                c.dead_letters = *n;
                c.last_dead_letter = Some(last.clone());
            }
            out
        }));
    }
}
