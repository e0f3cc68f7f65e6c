//! `[store] backend = "memory"`: the sessions in memory are all there is (lost at
//! exit). Writes succeed at once, loads find nothing, listings come from the workers'
//! shards (`Store::durable` is `false`).

use super::{Done, ListQuery, LoadedSession, SessionRow, Store, StoreStatus, Write};

/// The store that keeps nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryStore;

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

    fn write(&self, _write: Write, done: Option<Done<()>>) {
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
}
