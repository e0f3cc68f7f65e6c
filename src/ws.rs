//! WebSocket `/ws`: the OpenClaw Gateway protocol over RFC 6455 text frames of JSON.
//!
//! ```text
//! GET /ws (Upgrade) -> server::dispatch -> ws::upgrade (handshake checks, optional
//!   Authorization) -> Body::Upgrade -> the server's connection loop writes the 101 and hands over the
//!   the socket (TCP or TLS) + the bytes it already read -> ws::serve
//!     WsIo (io.rs): the one owner of the socket: reads for the codec, writes the
//!       outbox, pings, deadlines; cancel-safe on io_uring
//!     WebSocket (monoio-tungstenite): framing, masking, fragments, UTF-8, limits
//!     socket.rs: auth, message/ping/subscribe, one spawned task per turn
//!     link.rs: the per-socket outbox (capped: backpressure) and timers
//! ```
//!
//! Framing is the maintained library's (`monoio-tungstenite`, built on the raw socket
//! after our own 101); the socket is never split. Instead the socket's reads run
//! through `WsIo`, which also flushes frames queued by turn tasks and fires timers:
//! when it must write while a read is pending it cancels that read and waits for its
//! completion, so no byte the kernel already delivered is lost.
//!
//! Semantics decided here (PROTOCOL.md is silent):
//! - Auth: `Authorization: Bearer` on the upgrade authenticates the socket at once
//!   (no frame is sent); otherwise the first frame must be `auth` within
//!   `server.ws_auth_timeout_ms`. An `auth` frame is answered `auth_ok` with the key's
//!   name. Anything else before auth, a bad token or the deadline: `error UNAUTHORIZED`
//!   and close 1008.
//! - Turns: every frame of a turn (`chunk`, `message`, `done`, `error`) carries its
//!   `sessionId`; a message without `sessionId` starts a new session whose id the
//!   frames carry. Up to `server.ws_max_turns_per_socket` turns run at once.
//! - `subscribe` sets the socket's optional event streams to exactly `events`:
//!   `message` (on by default) adds the full reply `message` frame after a turn's
//!   chunks; `status` sends `{"type":"status","workers","connections",
//!   "webSocketClients","sessions","inFlight"}` at once and then whenever it changed,
//!   checked every `server.ws_status_interval_ms`. Unknown event names are
//!   `INVALID_REQUEST`. Chunks, `done`, `pong` and errors are always sent.
//! - Close codes: 1000 on a client close, 1001 on server drain, 1002 protocol error,
//!   1007 invalid UTF-8, 1008 auth failures, 1009 frame or message over the limits,
//!   1013 when a slow reader overflows the send buffer.
//!
//! - Quotas: the per-IP connect limit answers the upgrade with 429; the per-socket
//!   message limit answers `error RATE_LIMITED` (with `retryAfter`) and keeps the
//!   socket; token quotas apply inside the turn, as on every front door.
//!
//! Memory: an idle authenticated socket holds its own task (~4 KB; the HTTP task that
//! upgraded it has ended), the codec's 4 KiB read buffer (owned by the pending read),
//! its `Link`, one timer and a canceller: about 12 KB of RSS per socket, measured by
//! `loadtest/ws_idle.py` (results in `loadtest/ws_idle.md`).

pub mod handshake;
mod io;
mod link;
pub mod protocol;
mod socket;

use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use crate::tls::ClientStream;
use bytes::Bytes;
use monoio_tungstenite::protocol::frame::codec::FrameDecoder;
use monoio_tungstenite::protocol::{FramedRead, Role, WebSocketConfig};
use monoio_tungstenite::WebSocket;

use crate::auth::Identity;
use crate::error::ApiError;
use crate::http::{Body, Request, Response};
use crate::worker::{OnDrain, Worker, WorkerStats};

pub use io::WsIo;
pub use link::{Fail, Link};

/// Initial read buffer of a socket's codec (it grows for bigger frames).
const READ_BUFFER: usize = 4096;

/// What the upgrade decided, carried from `dispatch` to `serve`.
#[derive(Debug)]
pub struct Upgrade {
    /// Set when the upgrade request carried a valid `Authorization`.
    pub who: Option<Identity>,
    /// The client's address: failed `auth` frames count against its per-IP limit.
    pub peer: Option<std::net::IpAddr>,
}

/// Checks a `/ws` request and answers `101` with the accept key. `who` is the caller
/// if the request authenticated by header (or the gateway is in open mode). The
/// `Upgrade` rides in the response body to the server, which hands the socket back to
/// `serve`.
pub fn upgrade(req: &Request, worker: &Worker, who: Option<Identity>) -> Result<Response, ApiError> {
    let accept = handshake::accept_key(req)?;
    let peer = req.peer.map(|p| p.ip());
    // The per-IP connect quota (`limits.ws_connects_per_minute_per_ip`): a 429 instead
    // of the 101. Messages are limited per socket in `socket.rs`.
    if let Some(ip) = peer {
        worker.limiter.ws_connect(ip)?;
    }
    let mut resp = Response::new(101, Body::Upgrade(Box::new(Upgrade { who, peer })));
    resp.push_header("upgrade", "websocket");
    resp.push_header("connection", "Upgrade");
    resp.push_header("sec-websocket-accept", accept);
    Ok(resp)
}

impl OnDrain for Link {
    /// A drain closes the socket with 1001.
    fn drain(&self) {
        self.fail(Fail::Drain);
    }
}

/// Runs an upgraded socket until it closes. `leftover` is what the client sent after
/// the upgrade request's head (frames may already be there).
pub async fn serve(stream: ClientStream, leftover: Bytes, worker: Rc<Worker>, up: Upgrade) {
    let stats = worker.stats();
    WorkerStats::add(&stats.ws_clients, 1);
    let cfg = worker.snapshot().config.server.clone();
    let link = Rc::new(Link::new(link::Limits {
        send_buffer: cfg.ws_send_buffer_bytes,
        ping_interval: Duration::from_millis(cfg.ws_ping_interval_ms),
        pong_timeout: Duration::from_millis(cfg.ws_pong_timeout_ms),
    }));
    if up.who.is_none() {
        link.set_auth_deadline(Some(Instant::now() + Duration::from_millis(cfg.ws_auth_timeout_ms)));
    }
    if worker.shared.draining() {
        link.fail(Fail::Drain);
    }
    let drain_key = worker.on_drain.register(Rc::downgrade(&link) as Weak<dyn OnDrain>);

    let io = WsIo::new(stream, link.clone(), Duration::from_millis(cfg.write_timeout_ms));
    let config = WebSocketConfig::default()
        .write_buffer_size(0)
        .max_frame_size(Some(cfg.ws_max_frame_bytes))
        .max_message_size(Some(cfg.ws_max_message_bytes));
    let mut framed = FramedRead::with_capacity(io, FrameDecoder::default(), READ_BUFFER.max(leftover.len()));
    // Frames the client sent right behind the upgrade head are decoded first.
    framed.read_buffer_mut().extend_from_slice(&leftover);
    // `leftover` shares the connection's 16 KiB read buffer: let it go now.
    drop(leftover);
    let ws = WebSocket::from_framed_read(framed, Role::Server, Some(config));
    socket::run(ws, link.clone(), worker.clone(), up, &cfg).await;

    link.fail(Fail::Closed);
    worker.on_drain.remove(drain_key);
    WorkerStats::sub(&worker.stats().ws_clients, 1);
}
