//! The WebSocket frame path of `/ws`, set up as `ws::serve` and `ws/session.rs` set it
//! up: monoio-tungstenite's server-side `WebSocket` (masking, fragments, control
//! frames, UTF-8, frame and message limits) over the bytes a client sent, the
//! pre-authentication limit (`ws_max_auth_frame_bytes`) raised after an `auth` frame,
//! each text message parsed as a `ClientFrame`, and each reply rendered by
//! `ServerFrame::encode` and read back.
//!
//! The socket is an in-memory stream (reads hand out the input in fuzzer-chosen
//! pieces, writes are dropped); its futures are always ready, so a no-op waker drives
//! them without a runtime.
//!
//! Input: byte 0 the read size (0 = everything at once), byte 1 bit 0 whether the
//! upgrade was already authenticated, byte 2 how many bytes arrived with the upgrade
//! head (`leftover`), then the client's bytes.
//! Checked: no panic, no unbounded allocation; a rendered server frame decodes to the
//! same JSON.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use clawgate::ws::protocol::{ClientFrame, ServerFrame};
use libfuzzer_sys::fuzz_target;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::BufResult;
use monoio_codec::{Decoded, Decoder, FramedRead};
use monoio_tungstenite::protocol::frame::codec::FrameDecoder;
use monoio_tungstenite::protocol::{Role, WebSocketConfig};
use monoio_tungstenite::{Message, WebSocket};

/// The defaults of `server.ws_max_frame_bytes`, `ws_max_message_bytes` and
/// `ws_max_auth_frame_bytes`.
const MAX_FRAME: usize = 1_048_576;
const MAX_MESSAGE: usize = 1_048_576;
const MAX_AUTH_FRAME: usize = 4_096;
/// The codec's initial read buffer (`ws::READ_BUFFER`).
const READ_BUFFER: usize = 4096;

/// A client connection that has sent `data` and reads nothing back.
struct Peer {
    data: Bytes,
    at: usize,
    piece: usize,
}

impl AsyncReadRent for Peer {
    fn read<T: IoBufMut>(&mut self, mut buf: T) -> impl Future<Output = BufResult<usize, T>> {
        let n = (self.data.len() - self.at).min(self.piece).min(buf.bytes_total());
        let chunk = Bytes::slice(&self.data, self.at..self.at + n);
        self.at += n;
        async move {
            let mut src: &[u8] = &chunk;
            src.read(buf).await
        }
    }

    #[allow(clippy::manual_async_fn)]
    fn readv<T: IoVecBufMut>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        async move { (Err(std::io::ErrorKind::Unsupported.into()), buf) }
    }
}

impl AsyncWriteRent for Peer {
    #[allow(clippy::manual_async_fn)]
    fn write<T: IoBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        async move { (Ok(buf.bytes_init()), buf) }
    }

    #[allow(clippy::manual_async_fn)]
    fn writev<T: IoVecBuf>(&mut self, buf: T) -> impl Future<Output = BufResult<usize, T>> {
        async move { (Err(std::io::ErrorKind::Unsupported.into()), buf) }
    }

    #[allow(clippy::manual_async_fn)]
    fn flush(&mut self) -> impl Future<Output = std::io::Result<()>> {
        async { Ok(()) }
    }

    #[allow(clippy::manual_async_fn)]
    fn shutdown(&mut self) -> impl Future<Output = std::io::Result<()>> {
        async { Ok(()) }
    }
}

/// Polls a future that never waits (every I/O above is ready at once).
fn ready<F: Future>(f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// A reply as the session renders it, read back the way a client would.
fn round_trip(content: &str) {
    let frame = ServerFrame::Message { content, session_id: "s1" }.encode();
    let mut buf = BytesMut::from(&frame[..]);
    let mut dec = FrameDecoder::default();
    match dec.decode(&mut buf) {
        Ok(Decoded::Some(f)) => {
            assert!(buf.is_empty(), "trailing bytes after a rendered frame");
            let v: sonic_rs::Value = sonic_rs::from_slice(f.payload()).expect("a rendered frame is JSON");
            assert_eq!(sonic_rs::JsonValueTrait::as_str(&v["content"]), Some(content));
        }
        other => panic!("a rendered frame does not decode: {:?}", other.map(|d| matches!(d, Decoded::Some(_)))),
    }
}

/// What `Socket::on_text` does with a text message; whether it was an `auth` frame.
fn on_text(text: &str) -> bool {
    match clawgate::json::from_str::<ClientFrame<'_>>(text) {
        Ok(f) => {
            if let Some(content) = f.content.as_deref() {
                round_trip(content);
            }
            f.kind == "auth"
        }
        Err(e) => {
            let _ = e.first_line();
            false
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let piece = match usize::from(data[0]) {
        0 => usize::MAX,
        n => n,
    };
    let mut anonymous = data[1] & 1 == 0;
    let rest = &data[3..];
    let (leftover, stream) = rest.split_at(usize::from(data[2]) % (rest.len() + 1));

    let peer = Peer { data: Bytes::copy_from_slice(stream), at: 0, piece };
    let config = WebSocketConfig::default()
        .write_buffer_size(0)
        .max_frame_size(Some(MAX_FRAME))
        .max_message_size(Some(MAX_MESSAGE));
    let mut framed = FramedRead::with_capacity(peer, FrameDecoder::default(), READ_BUFFER.max(leftover.len()));
    framed.read_buffer_mut().extend_from_slice(leftover);
    let mut ws = WebSocket::from_framed_read(framed, Role::Server, Some(config));
    if anonymous {
        ws.set_config(|c| {
            c.max_message_size = Some(MAX_AUTH_FRAME);
            c.max_frame_size = Some(MAX_AUTH_FRAME);
        });
    }
    // Each message needs at least two bytes of frame header: this bounds the loop.
    for _ in 0..=data.len() / 2 {
        let Some(read) = ready(ws.read()) else { panic!("an in-memory read was left pending") };
        match read {
            Ok(Message::Text(text)) => {
                if on_text(&text) && anonymous {
                    anonymous = false;
                    ws.set_config(|c| {
                        c.max_message_size = Some(MAX_MESSAGE);
                        c.max_frame_size = Some(MAX_FRAME);
                    });
                }
            }
            Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
            Ok(Message::Close(_)) => {}
            Err(_) => break,
        }
    }
});
