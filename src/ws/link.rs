//! The state one WebSocket shares between its tasks: the outbox (frames queued by the
//! session and its turn tasks, written by `WsIo`), the send-buffer cap that gives
//! backpressure, the socket's deadlines (auth, ping, pong, close) and its failure
//! reason. Single-threaded (`Cell`/`RefCell` in an `Rc`); every operation is O(1)
//! apart from waking the few tasks that wait on it.
//!
//! Backpressure: `push` refuses a frame that would take the queued bytes over
//! `ws_send_buffer_bytes`; the link then fails with `Fail::Overflow`, which wakes the
//! socket (it answers `error OVERLOADED` and closes 1013) and every turn task (each
//! drops its provider stream, which aborts the turn). Nothing is queued after a
//! failure, so memory per socket stays under the cap plus one write in progress.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

/// Why a socket is going away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    /// No authentication within the deadline.
    AuthTimeout,
    /// A ping went unanswered.
    DeadPeer,
    /// The peer did not answer our close frame in time.
    CloseTimeout,
    /// The send buffer overflowed: the client reads too slowly.
    Overflow,
    /// The server is draining.
    Drain,
    /// The socket is closing or closed; nothing more is sent.
    Closed,
}

/// Per-socket limits, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub send_buffer: usize,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
}

/// What a timer expiry asks of the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    Nothing,
    SendPing,
}

/// One socket's shared state.
pub struct Link {
    limits: Limits,
    queue: RefCell<VecDeque<Bytes>>,
    queued: Cell<usize>,
    failed: Cell<Option<Fail>>,
    /// The socket's I/O task, parked in a read.
    io_waker: Cell<Option<Waker>>,
    /// Turn and status tasks waiting for the link to fail.
    closers: RefCell<Vec<Waker>>,
    last_rx: Cell<Instant>,
    ping_sent: Cell<Option<Instant>>,
    auth_deadline: Cell<Option<Instant>>,
    close_deadline: Cell<Option<Instant>>,
}

impl Link {
    pub fn new(limits: Limits) -> Self {
        Link {
            limits,
            queue: RefCell::new(VecDeque::new()),
            queued: Cell::new(0),
            failed: Cell::new(None),
            io_waker: Cell::new(None),
            closers: RefCell::new(Vec::new()),
            last_rx: Cell::new(Instant::now()),
            ping_sent: Cell::new(None),
            auth_deadline: Cell::new(None),
            close_deadline: Cell::new(None),
        }
    }

    /// Queues an encoded frame. `false` if the socket is failing or the frame would
    /// overflow the send buffer (which fails the link with `Overflow`).
    pub fn push(&self, frame: Bytes) -> bool {
        if self.failed.get().is_some() {
            return false;
        }
        let queued = self.queued.get() + frame.len();
        if queued > self.limits.send_buffer {
            self.fail(Fail::Overflow);
            return false;
        }
        self.queued.set(queued);
        self.queue.borrow_mut().push_back(frame);
        self.wake_io();
        true
    }

    /// Takes everything queued, as one buffer (frames concatenated when several).
    pub fn take_batch(&self) -> Option<Bytes> {
        let mut q = self.queue.borrow_mut();
        let first = q.pop_front()?;
        let batch = if q.is_empty() {
            first
        } else {
            let mut out = BytesMut::with_capacity(self.queued.get());
            out.extend_from_slice(&first);
            for f in q.drain(..) {
                out.extend_from_slice(&f);
            }
            out.freeze()
        };
        self.queued.set(0);
        Some(batch)
    }

    /// Bytes waiting in the outbox.
    pub fn queued(&self) -> usize {
        self.queued.get()
    }

    /// Marks the socket as going away (the first reason wins), drops queued frames and
    /// wakes everything that waits on the link.
    pub fn fail(&self, why: Fail) {
        if self.failed.get().is_none() {
            self.failed.set(Some(why));
        }
        self.queue.borrow_mut().clear();
        self.queued.set(0);
        self.wake_io();
        for w in self.closers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    pub fn failure(&self) -> Option<Fail> {
        self.failed.get()
    }

    /// Resolves once the link has failed (turn tasks race their provider against it).
    /// The waiter's waker is removed when the future is dropped, so the many short
    /// races of a long-lived socket leave nothing behind (each kept waker would keep
    /// its finished turn task alive).
    pub fn failed(&self) -> Failed<'_> {
        Failed { link: self, registered: None }
    }

    /// Whether the I/O task has something to do besides reading.
    pub fn wants_io(&self) -> bool {
        self.failed.get().is_some() || !self.queue.borrow().is_empty()
    }

    pub fn park_io(&self, waker: &Waker) {
        let old = self.io_waker.take();
        match old {
            Some(w) if w.will_wake(waker) => self.io_waker.set(Some(w)),
            _ => self.io_waker.set(Some(waker.clone())),
        }
    }

    fn wake_io(&self) {
        if let Some(w) = self.io_waker.take() {
            w.wake();
        }
    }

    pub fn set_auth_deadline(&self, at: Option<Instant>) {
        self.auth_deadline.set(at);
    }

    pub fn set_close_deadline(&self, at: Option<Instant>) {
        self.close_deadline.set(at);
    }

    /// Bytes arrived from the peer: it is alive.
    pub fn saw_data(&self, now: Instant) {
        self.last_rx.set(now);
        self.ping_sent.set(None);
    }

    /// The earliest instant a timer needs attention.
    pub fn next_deadline(&self) -> Instant {
        let keepalive = match self.ping_sent.get() {
            Some(at) => at + self.limits.pong_timeout,
            None => self.last_rx.get() + self.limits.ping_interval,
        };
        [self.auth_deadline.get(), self.close_deadline.get()].into_iter().flatten().fold(keepalive, Instant::min)
    }

    /// Handles expired timers at `now`: fails the link or asks for a ping.
    pub fn on_timer(&self, now: Instant) -> TimerAction {
        if self.auth_deadline.get().is_some_and(|t| t <= now) {
            self.fail(Fail::AuthTimeout);
        } else if self.close_deadline.get().is_some_and(|t| t <= now) {
            self.fail(Fail::CloseTimeout);
        } else if let Some(sent) = self.ping_sent.get() {
            if sent + self.limits.pong_timeout <= now {
                self.fail(Fail::DeadPeer);
            }
        } else if self.last_rx.get() + self.limits.ping_interval <= now {
            self.ping_sent.set(Some(now));
            return TimerAction::SendPing;
        }
        TimerAction::Nothing
    }
}

/// The future of `Link::failed`.
pub struct Failed<'a> {
    link: &'a Link,
    registered: Option<Waker>,
}

impl Future for Failed<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.link.failed.get().is_some() {
            return Poll::Ready(());
        }
        if self.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let mut closers = self.link.closers.borrow_mut();
        if let Some(old) = &self.registered {
            closers.retain(|w| !w.will_wake(old));
        }
        closers.push(cx.waker().clone());
        drop(closers);
        self.registered = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Failed<'_> {
    fn drop(&mut self) {
        if let Some(mine) = &self.registered {
            if let Ok(mut closers) = self.link.closers.try_borrow_mut() {
                if let Some(i) = closers.iter().position(|w| w.will_wake(mine)) {
                    closers.swap_remove(i);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(cap: usize) -> Link {
        Link::new(Limits {
            send_buffer: cap,
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(10),
        })
    }

    #[test]
    fn finished_races_leave_no_waker_behind() {
        let l = link(1024);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..1000 {
            let mut f = std::pin::pin!(l.failed());
            assert!(f.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(l.closers.borrow().len(), 0);
    }

    #[test]
    fn push_over_the_cap_fails_the_link_and_drops_the_queue() {
        let l = link(10);
        assert!(l.push(Bytes::from_static(b"123456")));
        assert_eq!(l.queued(), 6);
        assert!(!l.push(Bytes::from_static(b"123456")));
        assert_eq!(l.failure(), Some(Fail::Overflow));
        assert_eq!(l.queued(), 0);
        assert!(l.take_batch().is_none());
        assert!(!l.push(Bytes::from_static(b"1")), "nothing is queued after a failure");
    }

    #[test]
    fn queued_frames_leave_as_one_batch_in_order() {
        let l = link(100);
        for f in [&b"ab"[..], b"cd", b"e"] {
            assert!(l.push(Bytes::from_static(f)));
        }
        assert_eq!(&l.take_batch().unwrap()[..], b"abcde");
        assert_eq!(l.queued(), 0);
    }

    #[test]
    fn silence_brings_a_ping_then_a_dead_peer() {
        let l = link(100);
        let t0 = Instant::now();
        l.saw_data(t0);
        assert_eq!(l.next_deadline(), t0 + Duration::from_secs(30));
        assert_eq!(l.on_timer(t0 + Duration::from_secs(1)), TimerAction::Nothing);
        assert_eq!(l.on_timer(t0 + Duration::from_secs(30)), TimerAction::SendPing);
        assert_eq!(l.next_deadline(), t0 + Duration::from_secs(40));
        l.on_timer(t0 + Duration::from_secs(40));
        assert_eq!(l.failure(), Some(Fail::DeadPeer));
    }

    #[test]
    fn data_from_the_peer_cancels_the_pending_ping() {
        let l = link(100);
        let t0 = Instant::now();
        l.saw_data(t0);
        assert_eq!(l.on_timer(t0 + Duration::from_secs(30)), TimerAction::SendPing);
        l.saw_data(t0 + Duration::from_secs(31));
        assert_eq!(l.on_timer(t0 + Duration::from_secs(45)), TimerAction::Nothing);
        assert_eq!(l.failure(), None);
    }

    #[test]
    fn the_auth_deadline_comes_first() {
        let l = link(100);
        let t0 = Instant::now();
        l.saw_data(t0);
        l.set_auth_deadline(Some(t0 + Duration::from_secs(10)));
        assert_eq!(l.next_deadline(), t0 + Duration::from_secs(10));
        l.on_timer(t0 + Duration::from_secs(10));
        assert_eq!(l.failure(), Some(Fail::AuthTimeout));
    }
}
