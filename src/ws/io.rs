//! `WsIo`: the socket under a WebSocket, and its only owner. The codec reads through
//! it; while a read is parked, `WsIo` also writes whatever the session and its turn
//! tasks queued in the `Link`, sends server pings and enforces the socket's deadlines.
//! That gives one writer per socket without splitting the socket.
//!
//! The read is cancel-safe on io_uring: when the outbox or a timer needs the socket,
//! the pending read is cancelled through its `Canceller` and then awaited to
//! completion, so bytes the kernel already placed in the buffer are returned, never
//! dropped. A failure of the link (auth timeout, dead peer, overflow, drain) surfaces
//! as an I/O error from `read`; the session reads the reason from the link. Writes
//! from the codec itself (pong replies, close frames) go straight to the socket.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::tls::ClientStream;
use bytes::{Bytes, BytesMut};
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller};
use monoio::BufResult;
use monoio_codec::Encoder;
use monoio_tungstenite::protocol::frame::codec::FrameEncoder;
use monoio_tungstenite::protocol::frame::Frame;

use crate::ws::link::{Link, TimerAction};

/// The socket of one WebSocket, with its outbox and timers.
pub struct WsIo {
    stream: ClientStream,
    link: Rc<Link>,
    write_timeout: Duration,
}

impl WsIo {
    pub fn new(stream: ClientStream, link: Rc<Link>, write_timeout: Duration) -> Self {
        WsIo { stream, link, write_timeout }
    }

    /// Writes everything queued in the link, in order.
    async fn drain(&mut self) -> io::Result<()> {
        while let Some(batch) = self.link.take_batch() {
            self.write_all_timed(batch).await?;
        }
        Ok(())
    }

    async fn write_all_timed(&mut self, bytes: Bytes) -> io::Result<()> {
        match monoio::time::timeout(self.write_timeout, self.stream.write_all(bytes)).await {
            Ok((Ok(_), _)) => Ok(()),
            Ok((Err(e), _)) => Err(e),
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write to the WebSocket client timed out")),
        }
    }

    /// After our close frame: reads and discards until the peer closes or `limit`
    /// passes, so closing never resets a connection with unread data in flight.
    pub async fn linger(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match monoio::time::timeout(left, self.stream.read(buf)).await {
                Ok((Ok(n), b)) if n > 0 => buf = b,
                _ => return,
            }
        }
    }

    /// One read, multiplexed with the outbox and the timers.
    async fn read_multiplexed<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        loop {
            if let Some(why) = self.link.failure() {
                return (Err(io::Error::other(format!("websocket closing: {why:?}"))), buf);
            }
            // Boxed: the write path's state only exists while writing, so an idle
            // socket's parked read stays small.
            if self.link.queued() > 0 {
                if let Err(e) = Box::pin(self.drain()).await {
                    return (Err(e), buf);
                }
            }
            if self.link.wants_io() {
                continue;
            }
            let deadline = self.link.next_deadline();
            let canceller = Canceller::new();
            let (res, b) = {
                let WsIo { stream, link, .. } = &mut *self;
                let mut read = pin!(stream.cancelable_read(buf, canceller.handle()));
                let mut timer = pin!(monoio::time::sleep_until(deadline.into()));
                let done = poll_fn(|cx| {
                    if let Poll::Ready(r) = read.as_mut().poll(cx) {
                        return Poll::Ready(Some(r));
                    }
                    if link.wants_io() {
                        return Poll::Ready(None);
                    }
                    link.park_io(cx.waker());
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                    Poll::Pending
                })
                .await;
                match done {
                    Some(r) => r,
                    None => {
                        // Cancel, then wait for the kernel's answer: data that raced
                        // the cancel comes back in `b` and is returned below.
                        let _ = canceller.cancel();
                        read.await
                    }
                }
            };
            buf = b;
            match res {
                Ok(n) => {
                    if n > 0 {
                        self.link.saw_data(Instant::now());
                    }
                    return (Ok(n), buf);
                }
                Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => {
                    if self.link.on_timer(Instant::now()) == TimerAction::SendPing {
                        let mut out = BytesMut::with_capacity(2);
                        let _ = FrameEncoder.encode(Frame::ping(Bytes::new()), &mut out);
                        if let Err(e) = Box::pin(self.write_all_timed(out.freeze())).await {
                            return (Err(e), buf);
                        }
                    }
                }
                Err(e) => return (Err(e), buf),
            }
        }
    }
}

impl AsyncReadRent for WsIo {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        self.read_multiplexed(buf).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        // The codec only uses `read`; vectored reads bypass the multiplexing.
        self.stream.readv(buf).await
    }
}

impl AsyncWriteRent for WsIo {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        self.stream.write(buf).await
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        self.stream.writev(buf).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.stream.flush().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }
}
