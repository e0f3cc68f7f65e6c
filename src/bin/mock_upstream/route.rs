//! Routing and the chat exchange, top to bottom:
//!
//! ```text
//! route by path -> count in stats -> provider auth -> parse body -> faults
//!   (header + [fault:] directive, fail-key gate) -> first-byte delay
//!   -> reset-before-head | injected status | answer (JSON or SSE, with the
//!      chunk delay and mid-stream reset applied while streaming)
//! ```
//! Endpoints: `POST /v1/chat/completions` (and `/chat/completions`), `POST /v1/messages`
//! (and `/messages`), `GET /v1/models` (Anthropic's shape when `anthropic-version` is
//! sent), `GET /__mock/stats`, `POST /__mock/reset`, `GET /__mock/health`.
//! Unstreamed answers are appended to the connection's output buffer (pipelined
//! answers leave together); streams are written as they are produced, and without
//! delays or resets a whole stream still goes out in one write.

use std::time::Duration;

use clawgate::http::{Method, Request};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::chat::{self, random_id, unix_now, Dialect, Reply, Turn};
use crate::conn::{head, respond, Conn, Framing, Next};
use crate::fault::{find_directive, Faults};
use crate::sse::Emitter;
use crate::{anthropic, openai};

/// Pause before a deliberate reset, so the bytes already written reach the client
/// before the RST (which would otherwise discard data still in flight).
const BEFORE_RESET: Duration = Duration::from_millis(10);

/// Handles one request; the connection loop decides flushing and keep-alive.
pub async fn exchange<S: AsyncReadRent + AsyncWriteRent>(conn: &mut Conn<S>, req: &Request) -> Next {
    let keep = req.keep_alive;
    match (req.method, req.path()) {
        (Method::Post, "/v1/chat/completions" | "/chat/completions") => chat(conn, req, Dialect::OpenAi).await,
        (Method::Post, "/v1/messages" | "/messages") => chat(conn, req, Dialect::Anthropic).await,
        (Method::Get, "/v1/models" | "/models") => {
            conn.stats.record(req.path(), None);
            let dialect = dialect_of(req);
            if let Err((status, message)) = auth(req, dialect) {
                return error(conn, dialect, status, Some(message), None, None, keep);
            }
            let body = match dialect {
                Dialect::OpenAi => openai::models(),
                Dialect::Anthropic => anthropic::models(),
            };
            respond(&mut conn.wbuf, 200, "application/json", &[], &body, keep);
            Next::KeepAlive
        }
        (Method::Get, "/__mock/stats") => {
            let body = conn.stats.render();
            respond(&mut conn.wbuf, 200, "application/json", &[], &body, keep);
            Next::KeepAlive
        }
        (Method::Post, "/__mock/reset") => {
            conn.stats.clear();
            respond(&mut conn.wbuf, 200, "application/json", &[], b"{\"ok\":true}", keep);
            Next::KeepAlive
        }
        (Method::Get, "/__mock/health") => {
            respond(&mut conn.wbuf, 200, "application/json", &[], b"{\"status\":\"ok\"}", keep);
            Next::KeepAlive
        }
        (method, path) => {
            conn.stats.record(path, None);
            let message = format!("Invalid URL ({} {path})", method.as_str());
            error(conn, dialect_of(req), 404, Some(&message), None, None, keep)
        }
    }
}

/// Anthropic clients always send `anthropic-version`; everyone else gets OpenAI's shapes.
fn dialect_of(req: &Request) -> Dialect {
    if req.header_bytes("anthropic-version").is_some() {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    }
}

/// The provider's credential check. Any non-empty key is accepted except one that
/// contains `invalid`, so tests can provoke a 401 on purpose.
fn auth(req: &Request, dialect: Dialect) -> Result<(), (u16, &'static str)> {
    match dialect {
        Dialect::OpenAi => {
            let token = req
                .header("authorization")
                .and_then(|v| v.get(..7).filter(|p| p.eq_ignore_ascii_case("bearer ")).map(|_| v[7..].trim()))
                .unwrap_or("");
            if token.is_empty() {
                return Err((
                    401,
                    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                ));
            }
            if token.contains("invalid") {
                return Err((401, "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."));
            }
            Ok(())
        }
        Dialect::Anthropic => {
            let key = req.header("x-api-key").map(str::trim).unwrap_or("");
            if key.is_empty() || key.contains("invalid") {
                return Err((401, "invalid x-api-key"));
            }
            if req.header("anthropic-version").is_none_or(|v| v.trim().is_empty()) {
                return Err((400, "anthropic-version: header is required"));
            }
            Ok(())
        }
    }
}

/// Appends the provider's error envelope.
fn error<S>(
    conn: &mut Conn<S>,
    dialect: Dialect,
    status: u16,
    message: Option<&str>,
    param: Option<&str>,
    retry_after: Option<u64>,
    keep: bool,
) -> Next {
    let body = match dialect {
        Dialect::OpenAi => openai::error(status, message, param),
        Dialect::Anthropic => anthropic::error(status, message),
    };
    let retry = retry_after.map(|s| s.to_string());
    let headers: Vec<(&str, &str)> = retry.as_deref().map(|v| ("retry-after", v)).into_iter().collect();
    respond(&mut conn.wbuf, status, "application/json", &headers, &body, keep);
    Next::KeepAlive
}

/// A chat request in either dialect.
async fn chat<S: AsyncReadRent + AsyncWriteRent>(conn: &mut Conn<S>, req: &Request, dialect: Dialect) -> Next {
    let keep = req.keep_alive;
    conn.stats.record(req.path(), Some(req));
    if let Err((status, message)) = auth(req, dialect) {
        return error(conn, dialect, status, Some(message), None, None, keep);
    }
    let chat = match chat::parse(&req.body, dialect) {
        Ok(c) => c,
        Err(invalid) => return error(conn, dialect, 400, Some(&invalid.message), invalid.param, None, keep),
    };
    let mut faults = Faults::default();
    let header = req.header("x-mock-fault").unwrap_or("");
    let directive = find_directive(&chat.last_user).map_or("", |(_, spec)| spec);
    for spec in [header, directive] {
        if let Err(message) = faults.parse_into(spec) {
            return error(conn, dialect, 400, Some(&format!("mock_upstream: {message}")), None, None, keep);
        }
    }
    if let Some(times) = faults.fail_times.filter(|_| faults.has_failures()) {
        if !conn.stats.should_fail(faults.fail_key.as_deref().unwrap_or(""), times) {
            faults.disarm();
        }
    }

    if faults.first_byte_ms > 0 {
        if conn.flush().await.is_err() {
            return Next::Close;
        }
        monoio::time::sleep(Duration::from_millis(faults.first_byte_ms)).await;
    }
    if faults.reset_before_head {
        let _ = conn.flush().await;
        return Next::Reset;
    }
    if let Some(status) = faults.status {
        return error(conn, dialect, status, None, None, faults.retry_after, keep);
    }

    let reply = Reply::echo(&chat.last_user, faults.chunks);
    let turn = Turn {
        id: match dialect {
            Dialect::OpenAi => random_id("chatcmpl-", 29),
            Dialect::Anthropic => random_id("msg_", 24),
        },
        created: unix_now(),
        model: &chat.model,
        prompt_tokens: chat.prompt_tokens,
        include_usage: chat.include_usage,
        reply: &reply,
    };
    let request_id = random_id("req_", 24);
    let id_header = match dialect {
        Dialect::OpenAi => "x-request-id",
        Dialect::Anthropic => "request-id",
    };
    let headers = [(id_header, request_id.as_str())];
    if chat.stream {
        return stream(conn, &turn, dialect, &faults, &headers, keep).await;
    }
    let body = match dialect {
        Dialect::OpenAi => openai::full(&turn),
        Dialect::Anthropic => anthropic::full(&turn),
    };
    if faults.reset_mid_stream.is_some() {
        // A body cut short: the head promises the whole length, half of it arrives.
        head(&mut conn.wbuf, 200, "application/json", &headers, Framing::Length(body.len()), keep);
        conn.wbuf.extend_from_slice(body.get(..body.len() / 2).unwrap_or_default());
        if conn.flush().await.is_err() {
            return Next::Close;
        }
        monoio::time::sleep(BEFORE_RESET).await;
        return Next::Reset;
    }
    respond(&mut conn.wbuf, 200, "application/json", &headers, &body, keep);
    Next::KeepAlive
}

/// Streams the answer as SSE. A failed write counts as a cancelled stream.
async fn stream<S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut Conn<S>,
    turn: &Turn<'_>,
    dialect: Dialect,
    faults: &Faults,
    headers: &[(&str, &str)],
    keep: bool,
) -> Next {
    conn.stats.stream_started();
    let (prelude, delta, finale): (Enc, EncAt, Enc) = match dialect {
        Dialect::OpenAi => (openai::prelude, openai::delta, openai::finale),
        Dialect::Anthropic => (anthropic::prelude, anthropic::delta, anthropic::finale),
    };
    let chunks = turn.reply.chunks.len();
    let mut em = Emitter::new(faults.style);
    head(&mut conn.wbuf, 200, "text/event-stream; charset=utf-8", headers, Framing::Chunked, keep);
    prelude(turn, &mut em);

    if faults.chunk_ms == 0 && faults.reset_mid_stream.is_none() {
        // Nothing to wait for: the whole stream in one write.
        for i in 0..chunks {
            delta(turn, i, &mut em);
        }
        finale(turn, &mut em);
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
    let reset_at = faults.reset_mid_stream.map(|n| n.min(chunks));
    for i in 0..chunks {
        if reset_at == Some(i) {
            break;
        }
        if faults.chunk_ms > 0 {
            monoio::time::sleep(Duration::from_millis(faults.chunk_ms)).await;
        }
        delta(turn, i, &mut em);
        let out = em.take().freeze();
        if conn.write(out).await.is_err() {
            conn.stats.cancelled();
            return Next::Close;
        }
    }
    if reset_at.is_some() {
        monoio::time::sleep(BEFORE_RESET).await;
        return Next::Reset;
    }
    finale(turn, &mut em);
    em.finish();
    let out = em.take().freeze();
    let result = conn.write(out).await;
    sent(conn, result)
}

type Enc = fn(&Turn<'_>, &mut Emitter);
type EncAt = fn(&Turn<'_>, usize, &mut Emitter);

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
