//! The mailbox between cores: the one way workers talk to each other (DESIGN.md:
//! "cores talk only through channels"). Each kind of cross-core conversation (session
//! commands, resume requests) has a message type `M`; every worker owns the receiving
//! end of its own mailbox for `M` and a `Peers<M>`, the sending ends of everyone's
//! (index = worker id, its own included). A question that wants an answer carries a
//! `Reply<T>`; the asker awaits the matching `Answer<T>`.
//!
//! ```text
//! runtime: mailboxes::<M>(workers) -> (Peers<M> shared by all, one Receiver<M> each)
//! asker:   let (reply, answer) = peers::reply(); peers.send(to, M::Ask { .., reply }); answer.await
//! owner:   while let Ok(m) = inbox.recv_async().await { .. reply.send(result) }
//! ```
//!
//! Channels are `flume` (with monoio's `sync` feature a wake from another thread
//! reaches the runtime; STACK.md). Cost: one channel send per message; an answer that
//! is already there (the owner was this worker) is taken without awaiting.

use std::sync::Arc;

/// The sending ends of every worker's mailbox for `M`, index = worker id.
pub struct Peers<M> {
    me: usize,
    senders: Arc<[flume::Sender<M>]>,
}

impl<M> Clone for Peers<M> {
    fn clone(&self) -> Self {
        Peers { me: self.me, senders: self.senders.clone() }
    }
}

impl<M> std::fmt::Debug for Peers<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers").field("me", &self.me).field("workers", &self.senders.len()).finish()
    }
}

/// The peer a message was meant for is gone (its worker stopped) or does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

/// Makes one mailbox per worker for messages of type `M`: the senders every worker
/// shares (re-addressed per worker with `Peers::for_worker`) and each worker's
/// receiver, in worker order.
pub fn mailboxes<M>(workers: usize) -> (Peers<M>, Vec<flume::Receiver<M>>) {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..workers).map(|_| flume::unbounded::<M>()).unzip();
    (Peers { me: 0, senders: Arc::from(senders) }, receivers)
}

impl<M> Peers<M> {
    /// The same mailboxes as seen from worker `me`.
    pub fn for_worker(&self, me: usize) -> Self {
        Peers { me, senders: self.senders.clone() }
    }

    /// This worker's id.
    pub fn me(&self) -> usize {
        self.me
    }

    /// How many workers there are.
    pub fn workers(&self) -> usize {
        self.senders.len()
    }

    /// Queues `msg` in worker `to`'s mailbox (this worker's own included).
    pub fn send(&self, to: usize, msg: M) -> Result<(), Gone> {
        let tx = self.senders.get(to).ok_or(Gone)?;
        tx.send(msg).map_err(|_| Gone)
    }
}

/// Where the owner sends its answer (exactly one).
pub type Reply<T> = flume::Sender<T>;

/// The asker's end of a question: resolves to the owner's answer.
pub struct Answer<T>(flume::Receiver<T>);

/// A fresh reply slot and its answer.
pub fn reply<T>() -> (Reply<T>, Answer<T>) {
    let (tx, rx) = flume::bounded(1);
    (tx, Answer(rx))
}

impl<T> Answer<T> {
    /// The owner's answer; `Gone` if it dropped the reply without answering.
    pub async fn recv(self) -> Result<T, Gone> {
        match self.0.try_recv() {
            Ok(v) => Ok(v),
            Err(_) => self.0.recv_async().await.map_err(|_| Gone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_question_is_answered_through_the_mailbox() {
        let (peers, inboxes) = mailboxes::<(u32, Reply<u32>)>(2);
        let from_zero = peers.for_worker(0);
        assert_eq!((from_zero.me(), from_zero.workers()), (0, 2));
        let (reply, answer) = reply();
        from_zero.send(1, (20, reply)).unwrap();
        let (n, reply) = inboxes[1].try_recv().unwrap();
        reply.send(n + 1).unwrap();
        let got = futures_lite_block_on(answer.recv());
        assert_eq!(got, Ok(21));
        assert_eq!(from_zero.send(7, (0, flume::bounded(1).0)), Err(Gone));
    }

    #[test]
    fn a_dropped_reply_is_gone() {
        let (reply, answer) = reply::<u8>();
        drop(reply);
        assert_eq!(futures_lite_block_on(answer.recv()), Err(Gone));
    }

    /// Polls a future that is ready at once (the answers above are already sent).
    fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the answer was not ready"),
        }
    }
}
