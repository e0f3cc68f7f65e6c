//! One socket's state machine, run by `ws::serve` after the upgrade:
//!
//! ```text
//! unauthenticated --auth ok--> authenticated --close/fail--> closing --> gone
//!        |  anything else, bad token, deadline: error UNAUTHORIZED + close 1008
//! authenticated: message -> spawn a turn task (frames tagged with its sessionId)
//!                ping -> pong; subscribe -> set event streams (+ status task)
//!                bad JSON / unknown type -> error INVALID_REQUEST, stays open
//! ```
//!
//! The loop reads one message at a time from the codec; everything it sends goes
//! through the link's outbox (one writer: `WsIo`). Turn tasks run
//! `turn::start_turn` + `turn::LiveTurn`, the same turn as every front door, racing
//! each provider step against the link's failure so a closing socket aborts its
//! turns. Library errors map to close codes: size -> 1009, UTF-8 -> 1007, other
//! protocol violations -> 1002.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::io::AsyncWriteRent;
use monoio_tungstenite::error::Error as WsError;
use monoio_tungstenite::protocol::frame::coding::CloseCode;
use monoio_tungstenite::protocol::frame::Utf8Bytes;
use monoio_tungstenite::protocol::CloseFrame;
use monoio_tungstenite::{Message, WebSocket};

use crate::auth::Identity;
use crate::config::{Config, ServerConfig};
use crate::error::{ApiError, ErrorCode};
use crate::ratelimit::SocketLimiter;
use crate::turn::{start_turn, LiveTurn, TurnContext, TurnEvent, TurnRequest};
use crate::worker::Worker;
use crate::ws::io::WsIo;
use crate::ws::link::{Fail, Link};
use crate::ws::protocol::{ClientFrame, ServerFrame, StatusView};

/// How long we wait for the peer's close frame after sending ours.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The optional event streams a socket subscribed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Subs {
    message: bool,
    status: bool,
}

/// What the loop does after a frame.
enum Flow {
    Continue,
    /// Send this error (if any), then close with the code.
    Close(CloseCode, &'static str, Option<ApiError>),
}

struct Socket {
    worker: Rc<Worker>,
    link: Rc<Link>,
    who: Option<Identity>,
    /// The client's address, for the per-IP limit on failed authentication.
    peer: Option<std::net::IpAddr>,
    subs: Rc<Cell<Subs>>,
    status_task: bool,
    in_flight: Rc<Cell<usize>>,
    max_turns: usize,
    status_every: Duration,
    /// `limits.ws_messages_per_minute` for this socket.
    messages: SocketLimiter,
}

/// Runs the socket until it closes.
pub async fn run(
    mut ws: WebSocket<WsIo>,
    link: Rc<Link>,
    worker: Rc<Worker>,
    up: crate::ws::Upgrade,
    cfg: &ServerConfig,
) {
    let mut sock = Socket {
        link,
        who: up.who,
        peer: up.peer,
        subs: Rc::new(Cell::new(Subs { message: true, status: false })),
        status_task: false,
        in_flight: Rc::new(Cell::new(0)),
        max_turns: cfg.ws_max_turns_per_socket,
        status_every: Duration::from_millis(cfg.ws_status_interval_ms),
        messages: worker.limiter.ws_socket(),
        worker,
    };
    // Before authentication a message may only be as big as an `auth` frame needs:
    // nothing large is buffered or parsed for a caller we do not know.
    if sock.who.is_none() {
        let small = cfg.ws_max_auth_frame_bytes;
        ws.set_config(|c| {
            c.max_message_size = Some(small);
            c.max_frame_size = Some(small);
        });
    }
    let flow = loop {
        let flow = match ws.read().await {
            Ok(Message::Text(text)) => {
                let was_anonymous = sock.who.is_none();
                let flow = sock.on_text(&text);
                if was_anonymous && sock.who.is_some() {
                    let (frame, message) = (cfg.ws_max_frame_bytes, cfg.ws_max_message_bytes);
                    ws.set_config(|c| {
                        c.max_message_size = Some(message);
                        c.max_frame_size = Some(frame);
                    });
                }
                flow
            }
            Ok(Message::Binary(_)) => sock.on_unparsable("binary frames are not supported; send JSON text frames"),
            // The library already answered the close; the next read ends the loop.
            Ok(Message::Close(_)) => {
                sock.link.fail(Fail::Closed);
                Flow::Continue
            }
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => Flow::Continue,
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => return,
            Err(WsError::Capacity(_)) => Flow::Close(CloseCode::Size, "message too big", None),
            Err(WsError::Utf8(_)) => Flow::Close(CloseCode::Invalid, "invalid UTF-8 in a text message", None),
            Err(WsError::Protocol(_)) => Flow::Close(CloseCode::Protocol, "protocol error", None),
            Err(_) => match sock.link.failure() {
                Some(Fail::AuthTimeout) => Flow::Close(
                    CloseCode::Policy,
                    "authentication timeout",
                    Some(ApiError::new(ErrorCode::Unauthorized, "no auth frame within the deadline")),
                ),
                Some(Fail::Overflow) => Flow::Close(
                    CloseCode::Again,
                    "send buffer full",
                    Some(ApiError::new(
                        ErrorCode::Overloaded,
                        "the client reads too slowly: send buffer full, turns cut",
                    )),
                ),
                Some(Fail::Drain) => Flow::Close(CloseCode::Away, "server shutting down", None),
                Some(Fail::DeadPeer | Fail::CloseTimeout | Fail::Closed) | None => return,
            },
        };
        if let Flow::Close(..) = flow {
            break flow;
        }
    };
    if let Flow::Close(code, reason, error) = flow {
        close(&mut ws, &sock.link, code, reason, error).await;
    }
}

/// Sends an optional error frame and our close frame, then waits briefly for the peer
/// to finish the close handshake.
async fn close(ws: &mut WebSocket<WsIo>, link: &Link, code: CloseCode, reason: &'static str, error: Option<ApiError>) {
    link.fail(Fail::Closed);
    let limit = CLOSE_WAIT;
    let send = async {
        if let Some(e) = error {
            let frame = ServerFrame::error(&e, None);
            let text = String::from_utf8(frame.to_json()).unwrap_or_default();
            ws.write(Message::Text(Utf8Bytes::from(text))).await?;
        }
        ws.close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) })).await
    };
    let _ = monoio::time::timeout(limit, send).await;
    // Half-close after our close frame: the peer answers and closes its side, which
    // ends the linger at once; unread input is drained, never reset.
    let _ = ws.get_mut().shutdown().await;
    ws.get_mut().linger(limit).await;
}

impl Socket {
    fn push(&self, frame: &ServerFrame<'_>) {
        self.link.push(frame.encode());
    }

    fn send_error(&self, e: &ApiError, session_id: Option<&str>) {
        self.push(&ServerFrame::error(e, session_id));
    }

    /// A frame that is not JSON (or not text): before auth that is a policy violation.
    fn on_unparsable(&self, why: &str) -> Flow {
        if self.who.is_none() {
            return self.auth_failure(ApiError::new(ErrorCode::Unauthorized, AUTH_FIRST), "unauthorized");
        }
        self.send_error(&ApiError::invalid(why.to_string()), None);
        Flow::Continue
    }

    fn on_text(&mut self, text: &str) -> Flow {
        let frame: ClientFrame<'_> = match crate::json::from_str(text) {
            Ok(f) => f,
            Err(e) => return self.on_unparsable(&format!("malformed JSON frame: {}", e.first_line())),
        };
        match (&*frame.kind, &self.who) {
            ("auth", _) => return self.on_auth(&frame),
            (_, None) => return self.auth_failure(ApiError::new(ErrorCode::Unauthorized, AUTH_FIRST), "unauthorized"),
            (_, Some(_)) => {}
        }
        // The socket's message quota: a refused frame is dropped, the socket stays.
        if let Err(e) = self.messages.check() {
            self.send_error(&e, frame.session_id.as_deref());
            return Flow::Continue;
        }
        match &*frame.kind {
            "ping" => self.push(&ServerFrame::Pong),
            "message" => self.on_message(frame),
            "subscribe" => self.on_subscribe(&frame),
            other => self.send_error(&ApiError::invalid(format!("unknown frame type `{other}`")), None),
        }
        Flow::Continue
    }

    fn on_auth(&mut self, frame: &ClientFrame<'_>) -> Flow {
        let Some(token) = frame.token.as_deref() else {
            return self.auth_failure(ApiError::new(ErrorCode::Unauthorized, "auth needs a `token`"), "unauthorized");
        };
        // An address locked out after repeated failures is refused before its key is
        // looked at (`limits.auth_failures_per_minute`, `auth_lockout_secs`).
        if let Err(refused) = self.worker.limiter.check_lockout(self.peer) {
            return Flow::Close(CloseCode::Policy, "locked out", Some(refused.error));
        }
        match self.worker.snapshot().keys.authenticate_token(token.as_bytes()) {
            Ok(who) => {
                self.link.set_auth_deadline(None);
                self.push(&ServerFrame::AuthOk { user: &who.name });
                self.who = Some(who);
                Flow::Continue
            }
            // A refused key counts as on HTTP routes: against the IP's `ip_rpm` and
            // towards the lockout; past either the answer is RATE_LIMITED.
            Err(e) => {
                let e = match self.worker.limiter.auth_failed(self.peer) {
                    Ok(_) => e,
                    Err(refused) => refused.error,
                };
                Flow::Close(CloseCode::Policy, "authentication failed", Some(e))
            }
        }
    }

    /// Closes an unauthenticated socket with 1008. Every failure (bad token, no token,
    /// anything but `auth` first) counts against the client's IP (`limits.ip_rpm`), as
    /// failed keys do on HTTP routes: past the limit the error is RATE_LIMITED.
    fn auth_failure(&self, e: ApiError, reason: &'static str) -> Flow {
        let e = match self.worker.limiter.check_unauthenticated(self.peer) {
            Ok(_) => e,
            Err(refused) => refused.error,
        };
        Flow::Close(CloseCode::Policy, reason, Some(e))
    }

    fn on_subscribe(&mut self, frame: &ClientFrame<'_>) {
        let Some(events) = &frame.events else {
            return self.send_error(&ApiError::invalid("subscribe needs `events`: [\"message\", \"status\"]"), None);
        };
        let mut subs = Subs { message: false, status: false };
        for e in events {
            match &**e {
                "message" => subs.message = true,
                "status" => subs.status = true,
                other => {
                    return self.send_error(
                        &ApiError::invalid(format!("unknown event `{other}`; events are message and status")),
                        None,
                    )
                }
            }
        }
        self.subs.set(subs);
        if subs.status && !self.status_task {
            self.status_task = true;
            monoio::spawn(status_loop(self.worker.clone(), self.link.clone(), self.subs.clone(), self.status_every));
        }
    }

    fn on_message(&mut self, frame: ClientFrame<'_>) {
        let session_id = frame.session_id.as_deref().map(str::to_string);
        let content = match frame.content.as_deref() {
            Some(c) if !c.trim().is_empty() => c,
            Some(_) => {
                return self.send_error(&ApiError::invalid("field `content` must not be empty"), session_id.as_deref())
            }
            None => return self.send_error(&ApiError::invalid("missing field `content`"), session_id.as_deref()),
        };
        if self.in_flight.get() >= self.max_turns {
            let e =
                ApiError::new(ErrorCode::RateLimited, format!("at most {} turns in flight per socket", self.max_turns));
            return self.send_error(&e, session_id.as_deref());
        }
        let Some(who) = self.who.clone() else { return };
        if let Err(e) = admit_turn(&self.worker, &who) {
            return self.send_error(&e, session_id.as_deref());
        }
        let turn = TurnRequest {
            channel: frame.channel.as_deref().unwrap_or("api").to_string(),
            message: crate::chat::Message::text(crate::chat::MessageRole::User, content),
            params: Arc::default(),
            session_id: session_id.clone(),
            model: frame.model.as_deref().map(str::to_string),
            context: TurnContext::Session,
            preamble: Vec::new(),
            seed: Vec::new(),
            stream: true,
            request_id: self.worker.next_request_id(),
        };
        self.in_flight.set(self.in_flight.get() + 1);
        let task = TurnTask {
            worker: self.worker.clone(),
            config: self.worker.snapshot().config.clone(),
            who,
            link: self.link.clone(),
            subs: self.subs.clone(),
            in_flight: self.in_flight.clone(),
            requested: session_id,
        };
        monoio::spawn(task.run(turn));
    }
}

/// Per-key quotas of a WebSocket turn beyond the socket's message limit: each turn
/// counts against the key's `rpm` like a REST request (the token quota is enforced
/// inside `start_turn`/`LiveTurn` for every front door). A refusal is an `error`
/// frame `RATE_LIMITED`; the socket stays open.
fn admit_turn(worker: &Worker, who: &Identity) -> Result<(), ApiError> {
    let config = worker.snapshot().config.clone();
    worker.limiter.check_request(&config, who, None).map(|_| ()).map_err(|r| r.error)
}

/// What an unauthenticated socket is told when it sends anything but `auth`.
const AUTH_FIRST: &str = "authenticate first: send {\"type\":\"auth\",\"token\":\"<key>\"}";

/// One turn on a socket.
struct TurnTask {
    worker: Rc<Worker>,
    config: Arc<Config>,
    who: Identity,
    link: Rc<Link>,
    subs: Rc<Cell<Subs>>,
    in_flight: Rc<Cell<usize>>,
    requested: Option<String>,
}

impl TurnTask {
    async fn run(self, turn: TurnRequest) {
        let link = self.link.clone();
        let started = monoio::select! {
            s = start_turn(&self.worker.turns, &self.config, &self.who, turn) => s,
            _ = link.failed() => return self.done(),
        };
        let mut live = match started {
            Ok(s) => LiveTurn::new(s),
            Err(e) => {
                self.error(&e, self.requested.as_deref());
                return self.done();
            }
        };
        let sid = live.session_id.clone();
        loop {
            let event = monoio::select! {
                ev = live.next() => ev,
                // The socket is going away: dropping `live` aborts the turn.
                _ = link.failed() => None,
            };
            match event {
                Some(TurnEvent::Delta(d)) => {
                    if !link.push(ServerFrame::Chunk { content: &d, session_id: &sid }.encode()) {
                        break;
                    }
                }
                // The gateway protocol carries no tools (none are offered on `/ws`) and
                // no reasoning (it is kept in the session).
                Some(TurnEvent::ToolCall { .. } | TurnEvent::Reasoning { .. }) => {}
                Some(TurnEvent::Done { usage, reply, .. }) => {
                    if self.subs.get().message {
                        link.push(ServerFrame::Message { content: &reply, session_id: &sid }.encode());
                    }
                    link.push(ServerFrame::Done { session_id: &sid, usage: usage.into() }.encode());
                    break;
                }
                Some(TurnEvent::Failed(e)) => {
                    self.error(&e, Some(&sid));
                    break;
                }
                None => break,
            }
        }
        drop(live);
        self.done()
    }

    fn error(&self, e: &ApiError, session_id: Option<&str>) {
        self.link.push(ServerFrame::error(e, session_id).encode());
    }

    fn done(&self) {
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
    }
}

/// Sends `status` to a subscribed socket at once and then whenever it changed.
async fn status_loop(worker: Rc<Worker>, link: Rc<Link>, subs: Rc<Cell<Subs>>, every: Duration) {
    let mut last: Option<StatusView> = None;
    loop {
        if subs.get().status {
            let now = status_view(&worker);
            if last.as_ref() != Some(&now) {
                if !link.push(ServerFrame::Status(now.clone()).encode()) {
                    return;
                }
                last = Some(now);
            }
        } else {
            last = None;
        }
        let wake = Instant::now() + every;
        monoio::select! {
            _ = monoio::time::sleep_until(wake.into()) => {},
            _ = link.failed() => return,
        }
    }
}

fn status_view(worker: &Worker) -> StatusView {
    let s = &worker.shared;
    StatusView {
        workers: s.workers.len(),
        connections: s.total(|w| &w.connections),
        web_socket_clients: s.total(|w| &w.ws_clients),
        sessions: s.sessions(),
        in_flight: s.total(|w| &w.in_flight),
    }
}
