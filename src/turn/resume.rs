//! Resumable streams (`/api/chat` SSE). A streamed turn does not run inside its HTTP
//! response: `TurnHub::start` registers a bounded event buffer under a fresh turn id,
//! spawns a producer task that drives the turn's framed events (any `EventStream`;
//! `/api/chat` gives its SSE rendering) into the buffer, and hands the client a reader
//! from event 0. Each event carries `id: <turnId>:<seq>`. A client
//! that reconnects with `Last-Event-ID: <turnId>:<seq>` gets a reader from `seq + 1`:
//! the rest of the same turn, exactly once, never a new turn.
//!
//! ```text
//! POST /api/chat (stream) -> start_turn -> TurnHub::start -> producer task -> Buffered
//!                                                   reader(s) <- events / wakers <-+
//! reconnect (any worker) -> TurnHub::resume -> owner worker (turn id names it; a
//!   `ResumeCmd` through the resume mailbox, `peers`) -> forwarder task -> flume
//!   channel -> this response
//! ```
//!
//! Turns live on the worker that started them; the turn id (`t<worker>-<64 random
//! bits>`) names that worker, so a reconnect that lands elsewhere (SO_REUSEPORT) asks
//! the owner by message, as sessions do, and streams through a bounded channel.
//!
//! Bounds: each buffer holds at most `server.sse_resume_buffer_bytes` (oldest events
//! dropped; a reader that falls behind them gets an error event); a turn whose last
//! reader left is cut `server.sse_resume_window_ms` later if it has not finished; a
//! finished turn stays resumable for the same window; at most
//! `server.sse_max_buffered_turns` turns per worker are buffered (beyond that a stream
//! is served unbuffered and dies with its client, as before). Cost on the hot path:
//! one `Bytes` clone per event per reader and a waker per wait.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::auth::Identity;
use crate::config::ServerConfig;
use crate::error::{ApiError, ErrorCode};
use crate::http::response::EventStream;
use crate::http::sse;
use crate::peers::{self, Peers};

/// Events queued between an owner's forwarder and a reader on another worker.
const FORWARD_QUEUE: usize = 64;

/// A request, from another worker, to read a buffered turn.
pub struct ResumeCmd {
    turn_id: String,
    from_seq: u64,
    who: Identity,
    reply: peers::Reply<Result<flume::Receiver<Bytes>, ApiError>>,
}

/// One worker's buffered turns and its doors to the other workers'.
pub struct TurnHub {
    me: usize,
    turns: RefCell<HashMap<String, Rc<Buffered>>>,
    peers: Peers<ResumeCmd>,
}

struct Buffered {
    owner: Arc<str>,
    window: Duration,
    max_bytes: usize,
    state: RefCell<BufState>,
}

#[derive(Default)]
struct BufState {
    events: VecDeque<Bytes>,
    first_seq: u64,
    bytes: usize,
    done_at: Option<Instant>,
    readers: usize,
    /// Bumped whenever the last reader leaves, so a stale cut timer does nothing.
    left_epoch: u64,
    wakers: Vec<Waker>,
    /// Dropping it cuts the producer.
    cut: Option<local_sync::oneshot::Sender<()>>,
}

/// A fresh turn id naming the worker that owns it: `t<worker>-<16 hex digits>`.
pub fn new_turn_id(worker: usize) -> String {
    format!("t{worker}-{:016x}", fastrand::u64(..))
}

fn owner_of(turn_id: &str) -> Option<usize> {
    let rest = turn_id.strip_prefix('t')?;
    let (worker, _) = rest.split_once('-')?;
    worker.parse().ok()
}

fn not_buffered(turn_id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidSession,
        format!("turn {turn_id} is no longer buffered; send the message again without Last-Event-ID"),
    )
}

impl TurnHub {
    /// `peers`: the resume mailboxes as seen from this worker.
    pub fn new(peers: Peers<ResumeCmd>) -> Self {
        TurnHub { me: peers.me(), turns: RefCell::new(HashMap::new()), peers }
    }

    /// Serves other workers' resume requests for this worker's turns.
    pub async fn serve(hub: Rc<TurnHub>, rx: flume::Receiver<ResumeCmd>) {
        while let Ok(cmd) = rx.recv_async().await {
            let answer = hub.local_reader(&cmd.turn_id, cmd.from_seq, &cmd.who).map(|mut reader| {
                let (tx, rx) = flume::bounded(FORWARD_QUEUE);
                monoio::spawn(async move {
                    while let Some(event) = reader.next().await {
                        if tx.send_async(event).await.is_err() {
                            break;
                        }
                    }
                });
                rx
            });
            let _ = cmd.reply.send(answer);
        }
    }

    fn sweep(&self, now: Instant) {
        self.turns.borrow_mut().retain(|_, b| {
            let st = b.state.borrow();
            st.readers > 0 || st.done_at.is_none_or(|t| now.saturating_duration_since(t) < b.window)
        });
    }

    fn local_reader(&self, turn_id: &str, from_seq: u64, who: &Identity) -> Result<Reader, ApiError> {
        self.sweep(Instant::now());
        let buf = self
            .turns
            .borrow()
            .get(turn_id)
            .filter(|b| who.is_admin() || b.owner == who.name)
            .cloned()
            .ok_or_else(|| not_buffered(turn_id))?;
        if from_seq < buf.state.borrow().first_seq {
            return Err(not_buffered(turn_id));
        }
        Ok(Reader::attach(buf, turn_id.to_string(), from_seq))
    }
}

impl TurnHub {
    /// Runs a streamed turn's events (`producer`) in their own task and returns the
    /// client's reader (from event 0). When the worker already buffers its maximum of
    /// turns, the producer is served directly (not resumable).
    pub fn start<S: EventStream + 'static>(
        &self,
        cfg: &ServerConfig,
        turn_id: String,
        owner: Arc<str>,
        producer: S,
    ) -> Result<Box<dyn EventStream>, ApiError> {
        self.sweep(Instant::now());
        if self.turns.borrow().len() >= cfg.sse_max_buffered_turns {
            return Ok(Box::new(producer));
        }
        let (cut_tx, cut_rx) = local_sync::oneshot::channel::<()>();
        let buf = Rc::new(Buffered {
            owner,
            window: Duration::from_millis(cfg.sse_resume_window_ms),
            max_bytes: cfg.sse_resume_buffer_bytes,
            state: RefCell::new(BufState { cut: Some(cut_tx), ..BufState::default() }),
        });
        self.turns.borrow_mut().insert(turn_id.clone(), buf.clone());
        let reader = Reader::attach(buf.clone(), turn_id, 0);
        monoio::spawn(produce(buf, producer, cut_rx));
        Ok(Box::new(reader))
    }

    /// Answers a reconnect: `last_event_id` is `<turnId>:<seq>`; the reader starts
    /// after it. Errors: `INVALID_REQUEST` for a malformed id, `INVALID_SESSION` for a
    /// turn no longer buffered (or not the caller's).
    pub async fn resume(&self, who: &Identity, last_event_id: &str) -> Result<Box<dyn EventStream>, ApiError> {
        let bad = || ApiError::invalid("Last-Event-ID must be <turnId>:<seq> as sent in an event's id");
        let (turn_id, seq) = last_event_id.trim().rsplit_once(':').ok_or_else(bad)?;
        let seq: u64 = seq.parse().map_err(|_| bad())?;
        let owner = owner_of(turn_id).ok_or_else(bad)?;
        let from_seq = seq.saturating_add(1);
        if owner == self.me {
            return Ok(Box::new(self.local_reader(turn_id, from_seq, who)?));
        }
        let (reply, answer) = peers::reply();
        let cmd = ResumeCmd { turn_id: turn_id.to_string(), from_seq, who: who.clone(), reply };
        self.peers.send(owner, cmd).map_err(|_| not_buffered(turn_id))?;
        let events = answer.recv().await.map_err(|_| not_buffered(turn_id))??;
        Ok(Box::new(Forwarded { rx: events }))
    }
}

/// Drives the turn into its buffer until it ends or is cut.
async fn produce<S: EventStream>(buf: Rc<Buffered>, mut turn: S, mut cut: local_sync::oneshot::Receiver<()>) {
    loop {
        let event = monoio::select! {
            ev = turn.next_event() => ev,
            _ = &mut cut => None,
        };
        let Some(event) = event else { break };
        let mut st = buf.state.borrow_mut();
        st.bytes += event.len();
        st.events.push_back(event);
        while st.bytes > buf.max_bytes && st.events.len() > 1 {
            if let Some(old) = st.events.pop_front() {
                st.bytes -= old.len();
                st.first_seq += 1;
            }
        }
        for w in st.wakers.drain(..) {
            w.wake();
        }
    }
    drop(turn);
    let mut st = buf.state.borrow_mut();
    st.done_at = Some(Instant::now());
    st.cut = None;
    for w in st.wakers.drain(..) {
        w.wake();
    }
}

/// A reader of a buffered turn on its owner worker.
struct Reader {
    buf: Rc<Buffered>,
    turn_id: String,
    next: u64,
    lost: bool,
}

impl Reader {
    fn attach(buf: Rc<Buffered>, turn_id: String, next: u64) -> Self {
        buf.state.borrow_mut().readers += 1;
        Reader { buf, turn_id, next, lost: false }
    }

    async fn next(&mut self) -> Option<Bytes> {
        if self.lost {
            return None;
        }
        poll_fn(|cx| {
            let mut st = self.buf.state.borrow_mut();
            if self.next < st.first_seq {
                // This reader fell behind what the bounded buffer keeps.
                self.lost = true;
                let id = format!("{}:{}", self.turn_id, self.next);
                let data =
                    br#"{"type":"error","code":"OVERLOADED","message":"the client fell behind the stream buffer"}"#;
                return Poll::Ready(Some(sse::chunked_event("message", &id, data)));
            }
            let idx = (self.next - st.first_seq) as usize;
            if let Some(event) = st.events.get(idx) {
                self.next += 1;
                return Poll::Ready(Some(event.clone()));
            }
            if st.done_at.is_some() {
                return Poll::Ready(None);
            }
            if !st.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                st.wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut st = self.buf.state.borrow_mut();
        st.readers = st.readers.saturating_sub(1);
        if st.readers > 0 || st.done_at.is_some() {
            return;
        }
        // The last client left a running turn: it may come back within the window.
        st.left_epoch += 1;
        let epoch = st.left_epoch;
        let buf = self.buf.clone();
        monoio::spawn(async move {
            monoio::time::sleep(buf.window).await;
            let mut st = buf.state.borrow_mut();
            if st.readers == 0 && st.left_epoch == epoch {
                st.cut = None;
            }
        });
    }
}

impl EventStream for Reader {
    fn next_event(&mut self) -> Pin<Box<dyn Future<Output = Option<Bytes>> + '_>> {
        Box::pin(self.next())
    }
}

/// A reader on another worker: events arrive through a bounded channel.
struct Forwarded {
    rx: flume::Receiver<Bytes>,
}

impl EventStream for Forwarded {
    fn next_event(&mut self) -> Pin<Box<dyn Future<Output = Option<Bytes>> + '_>> {
        Box::pin(async move { self.rx.recv_async().await.ok() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_ids_name_their_worker() {
        let id = new_turn_id(3);
        assert_eq!(owner_of(&id), Some(3));
        assert!(!id.contains(':'));
        assert_eq!(owner_of("req_123"), None);
    }
}
