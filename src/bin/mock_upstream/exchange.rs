//! The chat exchange (Chat Completions, Responses, Messages, generateContent), top to
//! bottom:
//!
//! ```text
//! count + record -> provider auth -> parse body -> faults (header + [fault:]
//!   directive, fail-key gate) -> first-byte delay
//!   -> reset-before-head | injected error (status= / error=) | answer: the scripted
//!      reply (reply=, stop=, cached=) as JSON or a stream (SSE, or Gemini's JSON
//!      array), compressed if encoding= asks, with the chunk delay, mid-stream reset
//!      and in-stream error applied while streaming
//! ```
//! Without delays or resets a whole stream still goes out in one write. The fault
//! steps (`faults`, `fail_first`, `send_ok`) are shared with the one-answer exchanges
//! in `unary.rs`.

use std::time::Duration;

use clawgate::http::Request;
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::chat::{self, random_id, unix_now, Dialect, Turn};
use crate::conn::{head, Conn, Framing, Next};
use crate::fault::{find_directive, Faults};
use crate::gemini::Method;
use crate::reply::{Asked, Reply};
use crate::route::{auth, error_body, send_json};
use crate::scenario::ErrorKind;
use crate::sse::Emitter;
use crate::{anthropic, encoding, gemini, openai, responses};

/// Pause before a deliberate reset, so the bytes already written reach the client
/// before the RST (which would otherwise discard data still in flight).
const BEFORE_RESET: Duration = Duration::from_millis(10);

/// Where a chat request came in.
#[derive(Debug, Clone, Copy)]
pub struct ChatRoute<'a> {
    pub dialect: Dialect,
    /// The model named by the path (Azure's deployment, Gemini's model).
    pub model: Option<&'a str>,
    /// Gemini's method.
    pub gemini: Option<Method>,
}

impl ChatRoute<'_> {
    pub fn new(dialect: Dialect) -> ChatRoute<'static> {
        ChatRoute { dialect, model: None, gemini: None }
    }
}

/// A chat request in any dialect.
pub async fn chat<S: AsyncReadRent + AsyncWriteRent>(conn: &mut Conn<S>, req: &Request, route: ChatRoute<'_>) -> Next {
    let keep = req.keep_alive;
    let dialect = route.dialect;
    conn.stats.record(req, true);
    if let Err((status, body)) = auth(req, dialect) {
        return send_json(conn, status, &[], body, None, keep);
    }
    let mut chat = match chat::parse(&req.body, dialect) {
        Ok(c) => c,
        Err(invalid) => {
            let body = error_body(dialect, 400, None, Some(&invalid.message), invalid.param, None);
            return send_json(conn, 400, &[], body, None, keep);
        }
    };
    match (dialect, route.model) {
        (Dialect::Gemini, Some(model)) => chat.model = model.to_string(),
        (_, Some(model)) if chat.model.is_empty() => chat.model = model.to_string(),
        _ => {}
    }
    if let Some(method) = route.gemini {
        chat.stream = method == Method::Stream;
    }
    let faults = match faults(conn, req, dialect, &chat.last_user) {
        Ok(f) => f,
        Err(next) => return next,
    };
    if let Some(next) = fail_first(conn, &faults, dialect, keep).await {
        return next;
    }

    let asked = Asked {
        last_user: &chat.last_user,
        chunks: faults.chunks,
        tools: &chat.tools,
        stop_sequence: chat.stop_sequence.as_deref(),
    };
    let reply = Reply::build(&faults.scenario, &asked);
    let turn = Turn {
        id: match dialect {
            Dialect::OpenAi | Dialect::Azure => random_id("chatcmpl-", 29),
            Dialect::Responses => random_id("resp_", 48),
            Dialect::Anthropic => random_id("msg_", 24),
            Dialect::Gemini => random_id("", 22),
        },
        created: unix_now(),
        model: &chat.model,
        prompt_tokens: chat.prompt_tokens,
        include_usage: chat.include_usage,
        include_thoughts: chat.include_thoughts,
        dialect,
        reply: &reply,
        echo: chat.echo.as_ref(),
    };
    let request_id = random_id("req_", 24);
    let headers = request_id_header(dialect, &request_id);
    if chat.stream {
        let sse = dialect != Dialect::Gemini || req.query_param("alt").as_deref() == Some("sse");
        return stream(conn, &turn, &faults, &headers, sse, keep).await;
    }
    let body = match dialect {
        Dialect::OpenAi | Dialect::Azure => openai::full(&turn),
        Dialect::Responses => responses::full(&turn),
        Dialect::Anthropic => anthropic::full(&turn),
        Dialect::Gemini => gemini::full(&turn),
    };
    send_ok(conn, &headers, body, &faults, keep).await
}

/// The provider's request-id header (OpenAI `x-request-id`, Anthropic `request-id`,
/// none for Gemini), with `id` as its value.
pub fn request_id_header(dialect: Dialect, id: &str) -> Vec<(&'static str, &str)> {
    match dialect {
        Dialect::OpenAi | Dialect::Responses | Dialect::Azure => vec![("x-request-id", id)],
        Dialect::Anthropic => vec![("request-id", id)],
        Dialect::Gemini => Vec::new(),
    }
}

/// The faults a request asks for: the `x-mock-fault` header, then the `[fault:...]`
/// directive in `text` (the last user message, the last input to embed), with the
/// failures dropped once a `fail-times` key has failed often enough. `Err` carries
/// the end of the exchange when a spec does not parse (a 400 in the provider's
/// shape is queued).
pub fn faults<S>(conn: &mut Conn<S>, req: &Request, dialect: Dialect, text: &str) -> Result<Faults, Next> {
    let mut faults = Faults::default();
    let header = req.header("x-mock-fault").unwrap_or("");
    let directive = find_directive(text).map_or("", |(_, spec)| spec);
    for spec in [header, directive] {
        if let Err(message) = faults.parse_into(spec) {
            let body = error_body(dialect, 400, None, Some(&format!("mock_upstream: {message}")), None, None);
            return Err(send_json(conn, 400, &[], body, None, req.keep_alive));
        }
    }
    if let Some(times) = faults.fail_times.filter(|_| faults.has_failures()) {
        if !conn.stats.should_fail(faults.fail_key.as_deref().unwrap_or(""), times) {
            faults.disarm();
        }
    }
    Ok(faults)
}

/// The failures that come before any answer, in order: the first-byte delay, a reset
/// before the head, an injected error (`status=` / `error=`, with `Retry-After`).
/// `Some` when the exchange ends here, `None` when the answer should follow.
pub async fn fail_first<S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut Conn<S>,
    faults: &Faults,
    dialect: Dialect,
    keep: bool,
) -> Option<Next> {
    if faults.first_byte_ms > 0 {
        if conn.flush().await.is_err() {
            return Some(Next::Close);
        }
        monoio::time::sleep(Duration::from_millis(faults.first_byte_ms)).await;
    }
    if faults.reset_before_head {
        let _ = conn.flush().await;
        return Some(Next::Reset);
    }
    if faults.status.is_some() || faults.error.is_some() {
        let status = faults.status.or(faults.error.map(|k| k.status(dialect == Dialect::Anthropic))).unwrap_or(500);
        let retry_after = faults.retry_after.or((faults.error == Some(ErrorKind::RateLimit)).then_some(1));
        let body = error_body(dialect, status, faults.error, None, None, retry_after);
        let retry = retry_after.map(|s| s.to_string());
        let headers: Vec<(&str, &str)> = retry.as_deref().map(|v| ("retry-after", v)).into_iter().collect();
        return Some(send_json(conn, status, &headers, body, faults.encoding, keep));
    }
    None
}

/// A 200 JSON answer: compressed if `encoding=` asks, and with `reset-mid-stream` the
/// head promises the whole length, half the body arrives, then the connection resets.
pub async fn send_ok<S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut Conn<S>,
    headers: &[(&str, &str)],
    mut body: Vec<u8>,
    faults: &Faults,
    keep: bool,
) -> Next {
    let mut headers = headers.to_vec();
    if let Some(e) = faults.encoding {
        body = encoding::compress(e, &body);
        headers.push(("content-encoding", e.token()));
    }
    if faults.reset_mid_stream.is_some() {
        head(&mut conn.wbuf, 200, "application/json", &headers, Framing::Length(body.len()), keep);
        conn.wbuf.extend_from_slice(body.get(..body.len() / 2).unwrap_or_default());
        if conn.flush().await.is_err() {
            return Next::Close;
        }
        monoio::time::sleep(BEFORE_RESET).await;
        return Next::Reset;
    }
    crate::conn::respond(&mut conn.wbuf, 200, "application/json", &headers, &body, keep);
    Next::KeepAlive
}

type Enc = fn(&Turn<'_>, &mut Emitter);
type EncAt = fn(&Turn<'_>, usize, &mut Emitter);

/// The provider's stream encoder: prelude, step, finale, in-stream error.
fn encoder(dialect: Dialect) -> (Enc, EncAt, Enc, fn(&mut Emitter)) {
    match dialect {
        Dialect::OpenAi | Dialect::Azure => (openai::prelude, openai::delta, openai::finale, openai::stream_error),
        Dialect::Responses => (responses::prelude, responses::delta, responses::finale, responses::stream_error),
        Dialect::Anthropic => (anthropic::prelude, anthropic::delta, anthropic::finale, anthropic::stream_error),
        Dialect::Gemini => (gemini::prelude, gemini::delta, gemini::finale, gemini::stream_error),
    }
}

/// Streams the answer, as SSE or (Gemini without `alt=sse`) one JSON array. A failed
/// write counts as a cancelled stream.
async fn stream<S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut Conn<S>,
    turn: &Turn<'_>,
    faults: &Faults,
    headers: &[(&str, &str)],
    sse: bool,
    keep: bool,
) -> Next {
    conn.stats.stream_started();
    let (prelude, delta, finale, stream_error) = encoder(turn.dialect);
    let steps = turn.reply.steps.len();
    let mut em = Emitter::new(faults.style).encoded(faults.encoding);
    let mut headers = headers.to_vec();
    if let Some(e) = faults.encoding {
        headers.push(("content-encoding", e.token()));
    }
    let content_type = if sse { "text/event-stream; charset=utf-8" } else { "application/json" };
    if !sse {
        em = em.json_array();
    }
    let reset_at = faults.reset_mid_stream.map(|n| n.min(steps));
    let cut_at = faults.stream_error.map(|n| n.min(steps));
    let end = [reset_at, cut_at].into_iter().flatten().min().unwrap_or(steps);
    let reset = reset_at == Some(end);
    head(&mut conn.wbuf, 200, content_type, &headers, Framing::Chunked, keep);
    prelude(turn, &mut em);

    if faults.chunk_ms == 0 && !reset {
        // Nothing to wait for: the whole stream in one write.
        for i in 0..end {
            delta(turn, i, &mut em);
        }
        if cut_at.is_some() {
            stream_error(&mut em);
        } else {
            finale(turn, &mut em);
        }
        em.finish();
        conn.wbuf.extend_from_slice(&em.take());
        let result = conn.flush().await;
        return sent(conn, result);
    }

    conn.wbuf.extend_from_slice(&em.take());
    if conn.flush().await.is_err() {
        conn.stats.cancelled();
        return Next::Close;
    }
    for i in 0..end {
        if faults.chunk_ms > 0 {
            monoio::time::sleep(Duration::from_millis(faults.chunk_ms)).await;
        }
        delta(turn, i, &mut em);
        let out = em.take().freeze();
        if !out.is_empty() && conn.write(out).await.is_err() {
            conn.stats.cancelled();
            return Next::Close;
        }
    }
    if reset {
        monoio::time::sleep(BEFORE_RESET).await;
        return Next::Reset;
    }
    if cut_at.is_some() {
        stream_error(&mut em);
    } else {
        finale(turn, &mut em);
    }
    em.finish();
    let out = em.take().freeze();
    let result = conn.write(out).await;
    sent(conn, result)
}

/// Maps the last write of a stream to the connection's fate.
fn sent<S>(conn: &Conn<S>, result: Result<(), ()>) -> Next {
    match result {
        Ok(()) => Next::KeepAlive,
        Err(()) => {
            conn.stats.cancelled();
            Next::Close
        }
    }
}
