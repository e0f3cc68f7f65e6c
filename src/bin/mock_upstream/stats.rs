//! What the mock has seen, shared by all worker threads and shown at
//! `GET /__mock/stats` (counters) and `GET /__mock/requests` (the recent requests
//! themselves, see `record.rs`); `POST /__mock/reset` zeroes both.
//!
//! This is the one place the mock breaks the project's no-locks rule, on purpose: the
//! mock is a test tool whose tests ask process-wide questions ("did the upstream see
//! the cancel?", "how many tries did the gateway make with fail-key k?"), and requests
//! for one test may land on any worker. Counters are atomics; the per-path map, the
//! last model request and the fail-key counters sit behind one `std::sync::Mutex`, held
//! for a map update and a ring push per request (tens of nanoseconds, no await inside). A poisoned
//! lock is taken over: the data is counters, never left half-written.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use clawgate::http::Request;

use crate::json::{push_num, push_raw, push_str};
use crate::record::{headers_object, is_json, Recorder};

/// Process-wide counters.
#[derive(Default)]
pub struct Stats {
    requests: AtomicU64,
    cancelled: AtomicU64,
    streams: AtomicU64,
    resets: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_path: HashMap<String, u64>,
    last_chat: Option<Request>,
    fail_counts: HashMap<String, u64>,
    recent: Recorder,
}

impl Stats {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a request and records it; a model request (`chat`: chat, Responses,
    /// embeddings, token count) is also kept as the last one.
    pub fn record(&self, req: &Request, chat: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let last = chat.then(|| req.clone());
        let mut inner = self.lock();
        match inner.by_path.get_mut(req.path()) {
            Some(n) => *n += 1,
            None => {
                inner.by_path.insert(req.path().to_string(), 1);
            }
        }
        inner.recent.push(req);
        if last.is_some() {
            inner.last_chat = last;
        }
    }

    /// `GET /__mock/requests` (see `record.rs`).
    pub fn render_requests(&self, path: Option<&str>) -> Vec<u8> {
        self.lock().recent.render(path)
    }

    /// A stream whose client went away before its end.
    pub fn cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    /// A streamed answer began.
    pub fn stream_started(&self) {
        self.streams.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was reset on purpose.
    pub fn reset(&self) {
        self.resets.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one request carrying `key`; true while it is among the first `times`.
    pub fn should_fail(&self, key: &str, times: u64) -> bool {
        let mut inner = self.lock();
        let seen = match inner.fail_counts.get_mut(key) {
            Some(n) => {
                *n += 1;
                *n
            }
            None => {
                inner.fail_counts.insert(key.to_string(), 1);
                1
            }
        };
        seen <= times
    }

    /// Forgets everything, fail-key counters included.
    pub fn clear(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.cancelled.store(0, Ordering::Relaxed);
        self.streams.store(0, Ordering::Relaxed);
        self.resets.store(0, Ordering::Relaxed);
        *self.lock() = Inner::default();
    }

    /// `{"requests","byPath","cancelled","streams","resets","lastRequest"}` as JSON.
    /// `lastRequest` is `{"method","path","headers":{lower-case name: value},"body"}`,
    /// the body embedded as JSON when it parses, else as a string; null before any
    /// model request (chat, Responses, embeddings, token count).
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        push_raw(&mut out, "{\"requests\":");
        push_num(&mut out, self.requests.load(Ordering::Relaxed));
        push_raw(&mut out, ",\"byPath\":{");
        let inner = self.lock();
        let mut paths: Vec<(&String, &u64)> = inner.by_path.iter().collect();
        paths.sort();
        for (i, (path, n)) in paths.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_str(&mut out, path);
            out.push(b':');
            push_num(&mut out, *n);
        }
        push_raw(&mut out, "},\"cancelled\":");
        push_num(&mut out, self.cancelled.load(Ordering::Relaxed));
        push_raw(&mut out, ",\"streams\":");
        push_num(&mut out, self.streams.load(Ordering::Relaxed));
        push_raw(&mut out, ",\"resets\":");
        push_num(&mut out, self.resets.load(Ordering::Relaxed));
        push_raw(&mut out, ",\"lastRequest\":");
        match &inner.last_chat {
            Some(req) => render_request(&mut out, req),
            None => push_raw(&mut out, "null"),
        }
        out.push(b'}');
        out
    }
}

fn render_request(out: &mut Vec<u8>, req: &Request) {
    push_raw(out, "{\"method\":");
    push_str(out, req.method.as_str());
    push_raw(out, ",\"path\":");
    push_str(out, req.path());
    push_raw(out, ",\"headers\":");
    headers_object(out, req);
    push_raw(out, ",\"body\":");
    if is_json(&req.body) {
        out.extend_from_slice(&req.body);
    } else {
        push_str(out, &String::from_utf8_lossy(&req.body));
    }
    out.push(b'}');
}
