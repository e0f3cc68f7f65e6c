//! The load itself. `Plan` is what every thread shares (read-only): the request, the
//! timeline and the window. `run_thread` builds one monoio runtime (io_uring, else
//! epoll) and runs one task per connection it owns; each task loops
//!
//! ```text
//! next start time (closed loop: now; open loop: start + phase + seq x interval,
//!   sleeping until then) -> connect if needed (+ upgrade and auth for ws)
//!   -> one exchange under the deadline -> record if inside the window
//! ```
//!
//! Window rules: in closed loop a result counts when it completes inside the window;
//! in open loop when it was *scheduled* inside the window, and its latency runs from
//! that scheduled time whenever the connection was still busy with the previous
//! answer at that time, so a stalled server is charged for every request it delayed
//! (coordinated omission). When the connection was idle the latency runs from the
//! actual send instead: the only delay then is our own timer's (monoio's wheel ticks
//! in milliseconds), which is not the server's doing. An open-loop connection that falls behind sends its backlog
//! back to back; whatever is still unsent `timeout` after the window is counted as
//! `unsent`. Each connection has at most one request in flight (HTTP/1.1 without
//! pipelining), so an open-loop rate needs enough connections to be reachable.
//!
//! With `--new-connection-per-request` every request goes out on a fresh connection
//! (with `Connection: close`) that is dropped after the answer, so the latency includes
//! the connect and, over TLS, the handshake. A connection is dropped, never reused,
//! after any failure: a `monoio-rustls` stream panics if used again after a dropped
//! read or write future (a timeout).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::args::{Args, Scenario};
use crate::http::{Conn, Discard, Failure, RequestTemplate, Template};
use crate::sse::{ChunkTimes, SseTracker};
use crate::stats::Recorder;
use crate::tls;
use crate::ws::{self, WsConn};

/// Pause after a failed connect, so a dead server is not hammered in a tight loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(20);

/// Everything the threads share.
pub struct Plan {
    pub args: Args,
    pub request: RequestTemplate,
    pub ws_content: Template,
    pub ws_session: Template,
    /// When connections start.
    pub start: Instant,
    pub window_start: Instant,
    pub window_end: Instant,
    /// Open loop: time between two requests of one connection.
    pub interval: Option<Duration>,
    /// https://: the client TLS settings.
    pub tls: Option<tls::Client>,
}

impl Plan {
    pub fn new(args: Args, start: Instant, tls: Option<tls::Client>) -> Plan {
        let mut headers = args.headers.clone();
        if args.new_connection_per_request && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("connection")) {
            headers.push(("Connection".into(), "close".into()));
        }
        let request =
            RequestTemplate::new(&args.method, &args.target.path, &args.target.host, &headers, args.body.as_deref());
        let window_start = start + args.warmup;
        let window_end = window_start + args.duration;
        let interval = args.rate.map(|r| Duration::from_secs_f64(args.connections as f64 / r));
        Plan {
            ws_content: Template::new(&args.ws_content),
            ws_session: Template::new(&args.ws_session),
            request,
            start,
            window_start,
            window_end,
            interval,
            tls,
            args,
        }
    }

    /// Open loop: when request `seq` of connection `idx` is due. Connections are
    /// phased evenly over one interval so the total rate is smooth.
    fn due(&self, interval: Duration, idx: usize, seq: u64) -> Instant {
        let iv = interval.as_nanos() as u64;
        let phase = iv * idx as u64 / self.args.connections as u64;
        self.start + Duration::from_nanos(phase.saturating_add(iv.saturating_mul(seq)))
    }

    /// Whether a result counts (see the module doc).
    fn counts(&self, scheduled: Instant, done: Instant) -> bool {
        if self.interval.is_some() {
            scheduled >= self.window_start && scheduled < self.window_end
        } else {
            done >= self.window_start && done <= self.window_end
        }
    }
}

/// Runs this thread's connections to the end and returns its measurements.
pub fn run_thread(plan: Arc<Plan>, conns: Vec<usize>) -> Result<Recorder, String> {
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .with_entries(1024)
        .build()
        .map_err(|e| format!("cannot start a monoio runtime: {e}"))?;
    let recorder = Rc::new(RefCell::new(Recorder::new()?));
    let rec = recorder.clone();
    runtime.block_on(async move {
        let mut tasks = Vec::with_capacity(conns.len());
        for idx in conns {
            tasks.push(monoio::spawn(connection(plan.clone(), idx, rec.clone())));
        }
        for t in tasks {
            t.await;
        }
    });
    match Rc::try_unwrap(recorder) {
        Ok(cell) => Ok(cell.into_inner()),
        Err(_) => Err("a connection task outlived its runtime".into()),
    }
}

/// What one connection holds between requests.
enum Link {
    Http(Conn),
    Ws(WsConn),
}

/// A successful exchange, as measured.
struct Done {
    body_bytes: u64,
    keep_alive: bool,
    /// First body chunk (SSE) or first chunk frame (ws).
    first_at: Option<Instant>,
    sse: Option<SseTracker>,
    ws: Option<(ChunkTimes, u32)>,
}

async fn connection(plan: Arc<Plan>, idx: usize, rec: Rc<RefCell<Recorder>>) {
    let args = &plan.args;
    let mut link: Option<Link> = None;
    let mut seq: u64 = 0;
    let mut req_buf: Vec<u8> = Vec::new();
    let mut connected_once = false;
    // When the previous exchange on this connection ended.
    let mut prev_done = plan.start;
    loop {
        let scheduled = match plan.interval {
            None => {
                let now = Instant::now();
                if now >= plan.window_end {
                    break;
                }
                now
            }
            Some(iv) => {
                let due = plan.due(iv, idx, seq);
                if due >= plan.window_end {
                    break;
                }
                let now = Instant::now();
                if due > now {
                    monoio::time::sleep(due - now).await;
                } else if now >= plan.window_end + args.timeout {
                    // Hopelessly behind: count what was due in the window and never went.
                    let mut unsent = 0u64;
                    let mut s = seq;
                    loop {
                        let d = plan.due(iv, idx, s);
                        if d >= plan.window_end {
                            break;
                        }
                        unsent += u64::from(d >= plan.window_start);
                        s += 1;
                    }
                    rec.borrow_mut().unsent += unsent;
                    break;
                }
                due
            }
        };
        let this_seq = seq;
        seq += 1;

        if link.is_none() {
            match monoio::time::timeout(args.timeout, open(&plan)).await {
                Ok(Ok(l)) => {
                    if connected_once && !args.new_connection_per_request {
                        rec.borrow_mut().reconnects += 1;
                    }
                    if plan.counts(scheduled, Instant::now()) {
                        rec.borrow_mut().connects += 1;
                    }
                    connected_once = true;
                    link = Some(l);
                }
                Ok(Err(f)) => {
                    fail(&plan, &rec, scheduled, f);
                    monoio::time::sleep(CONNECT_BACKOFF).await;
                    continue;
                }
                Err(_) => {
                    fail(&plan, &rec, scheduled, Failure::Timeout);
                    continue;
                }
            }
        }
        let Some(l) = link.as_mut() else { continue };

        let sent = Instant::now();
        let outcome = monoio::time::timeout(args.timeout, exchange(&plan, l, idx, this_seq, &mut req_buf)).await;
        let done_at = Instant::now();
        // The latency's origin (see the module doc).
        let origin = if plan.interval.is_some() && prev_done <= scheduled { sent } else { scheduled };
        prev_done = done_at;
        let result = match outcome {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout),
        };
        match result {
            Ok(done) => {
                let counts = plan.counts(scheduled, done_at);
                if !done.keep_alive || args.new_connection_per_request {
                    if let Some(Link::Http(c)) = link.take() {
                        let resumed = tls::resumed(c.close());
                        if counts && plan.tls.is_some() {
                            let mut r = rec.borrow_mut();
                            r.tls_full += u64::from(!resumed);
                            r.tls_resumed += u64::from(resumed);
                        }
                    }
                }
                if counts {
                    record(&plan, &rec, origin, sent, done_at, done);
                }
            }
            Err(f) => {
                // Never reused: see the module doc.
                link = None;
                req_buf.clear();
                fail(&plan, &rec, scheduled, f);
            }
        }
    }
}

fn fail(plan: &Plan, rec: &Rc<RefCell<Recorder>>, scheduled: Instant, f: Failure) {
    if plan.counts(scheduled, Instant::now()) {
        rec.borrow_mut().error(f.kind());
    }
}

fn nanos(from: Instant, to: Instant) -> u64 {
    (to.saturating_duration_since(from).as_nanos() as u64).max(1)
}

fn record(plan: &Plan, rec: &Rc<RefCell<Recorder>>, origin: Instant, sent: Instant, done_at: Instant, done: Done) {
    let mut r = rec.borrow_mut();
    r.ok += 1;
    r.body_bytes += done.body_bytes;
    r.latency.saturating_record(nanos(origin, done_at));
    r.service.saturating_record(nanos(sent, done_at));
    if let Some(first) = done.first_at {
        r.ttfb.saturating_record(nanos(origin, first));
    }
    let expect = plan.args.expect_events;
    if let Some(t) = &done.sse {
        r.sse(t, expect);
    }
    if let Some((t, events)) = &done.ws {
        r.chunk_times(t, *events, expect);
    }
}

/// Opens a connection; for WebSocket also upgrades it and authenticates.
async fn open(plan: &Plan) -> Result<Link, Failure> {
    let args = &plan.args;
    let conn = Conn::connect(args.target.addr, plan.tls.as_ref()).await?;
    if args.scenario != Scenario::Ws {
        return Ok(Link::Http(conn));
    }
    let mut wsc = WsConn::upgrade(conn, &args.target.host, &args.target.path, &args.headers).await?;
    if let Some(token) = &args.ws_token {
        let frame = format!("{{\"type\":\"auth\",\"token\":{}}}", ws::json_string(token));
        wsc.send_text(frame.as_bytes()).await?;
        loop {
            let m = wsc.recv().await?;
            match ws::frame_type(&m.text) {
                b"auth_ok" => break,
                b"error" => return Err(ws_error("auth", &m.text)),
                _ => {} // e.g. a status event
            }
        }
    }
    Ok(Link::Ws(wsc))
}

fn ws_error(during: &str, frame: &[u8]) -> Failure {
    let code = ws::string_field(frame, b"\"code\":\"").map(String::from_utf8_lossy).unwrap_or_default();
    Failure::Ws(format!("error frame {code} ({during})"))
}

/// One request/response (or one WebSocket turn) on an open link.
async fn exchange(plan: &Plan, link: &mut Link, idx: usize, seq: u64, req_buf: &mut Vec<u8>) -> Result<Done, Failure> {
    let args = &plan.args;
    match link {
        Link::Http(conn) => {
            if req_buf.is_empty() || !plan.request.is_fixed_per_conn() {
                plan.request.render(idx, seq, req_buf);
            }
            let (res, buf) = conn.write(std::mem::take(req_buf)).await;
            *req_buf = buf;
            res?;
            match args.scenario {
                Scenario::Sse => {
                    let mut t = SseTracker::default();
                    let info = conn.read_response(&mut t).await?;
                    if info.status != args.expect_status {
                        return Err(Failure::Status(info.status));
                    }
                    Ok(Done {
                        body_bytes: info.body_bytes,
                        keep_alive: info.keep_alive,
                        first_at: t.times.first_at,
                        sse: Some(t),
                        ws: None,
                    })
                }
                _ => {
                    let info = conn.read_response(&mut Discard).await?;
                    if info.status != args.expect_status {
                        return Err(Failure::Status(info.status));
                    }
                    Ok(Done {
                        body_bytes: info.body_bytes,
                        keep_alive: info.keep_alive,
                        first_at: None,
                        sse: None,
                        ws: None,
                    })
                }
            }
        }
        Link::Ws(wsc) => {
            let session = plan.ws_session.render(idx, seq);
            let content = plan.ws_content.render(idx, seq);
            let frame = format!(
                "{{\"type\":\"message\",\"content\":{},\"sessionId\":{}}}",
                ws::json_string(&content),
                ws::json_string(&session)
            );
            wsc.send_text(frame.as_bytes()).await?;
            let mut times = ChunkTimes::default();
            let mut bytes = 0u64;
            loop {
                let m = wsc.recv().await?;
                bytes += m.text.len() as u64;
                match ws::frame_type(&m.text) {
                    b"chunk" => times.arrive(m.at, m.read_no),
                    b"done" => break,
                    b"error" => return Err(ws_error("turn", &m.text)),
                    _ => {} // the full `message`, pongs, status events
                }
            }
            let events = times.chunks;
            Ok(Done {
                body_bytes: bytes,
                keep_alive: true,
                first_at: times.first_at,
                sse: None,
                ws: Some((times, events)),
            })
        }
    }
}
