//! Routing, provider auth and error answers. The chat exchange itself is in
//! `exchange.rs`, the one-answer exchanges (embeddings, token counts) in `unary.rs`.
//!
//! Endpoints:
//!
//! | route | format |
//! |---|---|
//! | `POST /v1/chat/completions` (and `/chat/completions`) | OpenAI |
//! | `POST /v1/responses` (and `/responses`), JSON or SSE | OpenAI Responses (`responses.rs`) |
//! | `POST /v1/embeddings` (and `/embeddings`) | OpenAI embeddings (`embeddings.rs`) |
//! | `POST /openai/deployments/{deployment}/chat/completions?api-version=V` | Azure OpenAI |
//! | `POST /openai/deployments/{deployment}/embeddings?api-version=V` | Azure OpenAI embeddings |
//! | `POST /v1/messages` (and `/messages`) | Anthropic |
//! | `POST /v1/messages/count_tokens` (and `/messages/count_tokens`) | Anthropic token count |
//! | `POST /v1beta/models/{model}:generateContent` (and `/v1/models/...`) | Gemini |
//! | `POST /v1beta/models/{model}:streamGenerateContent[?alt=sse]` | Gemini (SSE, or a streamed JSON array) |
//! | `POST /v1beta/models/{model}:embedContent`, `:batchEmbedContents` | Gemini embeddings |
//! | `GET /v1/models` (and `/models`) | OpenAI's list, Anthropic's with `anthropic-version` |
//! | `GET /v1beta/models` | Gemini's list |
//! | `GET /__mock/stats`, `GET /__mock/requests[?path=P]`, `POST /__mock/reset`, `GET /__mock/health` | the mock's own |
//! | `POST /__mock/sink[/...]` | a chat platform accepting every reply (`{"ok":true}`), for webhook load tests |
//!
//! Every request but the `/__mock/*` ones is counted and recorded (`record.rs`). An
//! unknown route is a 404 in the format the request looks like (`dialect_of`).
//! Unstreamed answers are appended to the connection's output buffer (pipelined
//! answers leave together); streams are written as they are produced.

use clawgate::http::{Method, Request};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::chat::Dialect;
use crate::conn::{respond, Conn, Next};
use crate::exchange::{chat, ChatRoute};
use crate::gemini::Method as GeminiMethod;
use crate::scenario::{Encoding, ErrorKind};
use crate::unary::{count_tokens, embed, EmbedRoute};
use crate::{anthropic, azure, encoding, gemini, openai};

/// Handles one request; the connection loop decides flushing and keep-alive.
pub async fn exchange<S: AsyncReadRent + AsyncWriteRent>(conn: &mut Conn<S>, req: &Request) -> Next {
    let keep = req.keep_alive;
    let path = req.path();
    if req.method == Method::Post {
        let route = match path {
            "/v1/chat/completions" | "/chat/completions" => Some(ChatRoute::new(Dialect::OpenAi)),
            "/v1/responses" | "/responses" => Some(ChatRoute::new(Dialect::Responses)),
            "/v1/messages" | "/messages" => Some(ChatRoute::new(Dialect::Anthropic)),
            "/v1/embeddings" | "/embeddings" => return embed(conn, req, EmbedRoute::OpenAi).await,
            "/v1/messages/count_tokens" | "/messages/count_tokens" => return count_tokens(conn, req).await,
            _ => None,
        };
        let route = route
            .or_else(|| azure::deployment(path).map(|d| ChatRoute { model: Some(d), ..ChatRoute::new(Dialect::Azure) }))
            .or_else(|| match gemini::target(path) {
                Some((model, Some(method @ (GeminiMethod::Generate | GeminiMethod::Stream)))) => {
                    Some(ChatRoute { model: Some(model), gemini: Some(method), ..ChatRoute::new(Dialect::Gemini) })
                }
                _ => None,
            });
        if let Some(route) = route {
            return chat(conn, req, route).await;
        }
        if let Some(deployment) = azure::embeddings_deployment(path) {
            return embed(conn, req, EmbedRoute::Azure { deployment }).await;
        }
        if let Some((model, Some(method @ (GeminiMethod::Embed | GeminiMethod::BatchEmbed)))) = gemini::target(path) {
            return embed(conn, req, EmbedRoute::Gemini { model, batch: method == GeminiMethod::BatchEmbed }).await;
        }
    }
    match (req.method, path) {
        (Method::Get, "/v1/models" | "/models" | "/v1beta/models") => {
            conn.stats.record(req, false);
            let dialect = if path == "/v1beta/models" { Dialect::Gemini } else { dialect_of(req) };
            if let Err((status, body)) = auth(req, dialect) {
                return send_json(conn, status, &[], body, None, keep);
            }
            let body = match dialect {
                Dialect::OpenAi | Dialect::Responses | Dialect::Azure => openai::models(),
                Dialect::Anthropic => anthropic::models(),
                Dialect::Gemini => gemini::models(),
            };
            send_json(conn, 200, &[], body, None, keep)
        }
        (Method::Get, "/__mock/stats") => {
            let body = conn.stats.render();
            send_json(conn, 200, &[], body, None, keep)
        }
        (Method::Get, "/__mock/requests") => {
            let body = conn.stats.render_requests(req.query_param("path").as_deref());
            send_json(conn, 200, &[], body, None, keep)
        }
        (Method::Post, "/__mock/reset") => {
            conn.stats.clear();
            send_json(conn, 200, &[], b"{\"ok\":true}".to_vec(), None, keep)
        }
        (Method::Get, "/__mock/health") => send_json(conn, 200, &[], b"{\"status\":\"ok\"}".to_vec(), None, keep),
        // A chat platform that accepts every send (a generic channel's `callback_url`
        // in load tests): counted, answered at once.
        (Method::Post, p) if p.starts_with("/__mock/sink") => {
            conn.stats.record(req, false);
            send_json(conn, 200, &[], b"{\"ok\":true}".to_vec(), None, keep)
        }
        (method, path) => {
            conn.stats.record(req, false);
            let message = format!("Invalid URL ({} {path})", method.as_str());
            let body = match dialect_of(req) {
                Dialect::Azure => azure::not_found(),
                dialect => error_body(dialect, 404, None, Some(&message), None, None),
            };
            send_json(conn, 404, &[], body, None, keep)
        }
    }
}

/// The format a request looks like: Anthropic clients always send
/// `anthropic-version`, Gemini's paths start `/v1beta/` (or the key is in
/// `x-goog-api-key`), Azure's `/openai/`; everyone else gets OpenAI's shapes.
fn dialect_of(req: &Request) -> Dialect {
    if req.header_bytes("anthropic-version").is_some() {
        Dialect::Anthropic
    } else if req.path().starts_with("/v1beta/") || req.header_bytes("x-goog-api-key").is_some() {
        Dialect::Gemini
    } else if req.path().starts_with("/openai/") {
        Dialect::Azure
    } else {
        Dialect::OpenAi
    }
}

/// The provider's credential check, with the provider's error body. Any non-empty
/// key is accepted except one that contains `invalid`, so tests can provoke a
/// refusal on purpose.
pub fn auth(req: &Request, dialect: Dialect) -> Result<(), (u16, Vec<u8>)> {
    match dialect {
        Dialect::OpenAi | Dialect::Responses => {
            let token = req
                .header("authorization")
                .and_then(|v| v.get(..7).filter(|p| p.eq_ignore_ascii_case("bearer ")).map(|_| v[7..].trim()))
                .unwrap_or("");
            if token.is_empty() {
                let message = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).";
                return Err((401, openai::error(401, None, Some(message), None)));
            }
            if token.contains("invalid") {
                return Err((401, openai::error(401, None, None, None)));
            }
            Ok(())
        }
        Dialect::Azure => azure::check(req),
        Dialect::Anthropic => {
            let key = req.header("x-api-key").map(str::trim).unwrap_or("");
            if key.is_empty() || key.contains("invalid") {
                return Err((401, anthropic::error(401, None, Some("invalid x-api-key"))));
            }
            if req.header("anthropic-version").is_none_or(|v| v.trim().is_empty()) {
                return Err((400, anthropic::error(400, None, Some("anthropic-version: header is required"))));
            }
            Ok(())
        }
        Dialect::Gemini => {
            let key = req.header("x-goog-api-key").map(str::trim).unwrap_or("");
            if key.is_empty() {
                return Err((401, gemini::error(401, None, None, None)));
            }
            if key.contains("invalid") {
                return Err((400, gemini::invalid_key()));
            }
            Ok(())
        }
    }
}

/// The provider's error body for `status` (`kind` for a documented special case).
pub fn error_body(
    dialect: Dialect,
    status: u16,
    kind: Option<ErrorKind>,
    message: Option<&str>,
    param: Option<&str>,
    retry_after: Option<u64>,
) -> Vec<u8> {
    match dialect {
        Dialect::OpenAi | Dialect::Responses => openai::error(status, kind, message, param),
        Dialect::Azure => azure::error(status, kind, message, param),
        Dialect::Anthropic => anthropic::error(status, kind, message),
        Dialect::Gemini => gemini::error(status, kind, message, retry_after),
    }
}

/// Appends a JSON answer, compressed with `encoding` if given.
pub fn send_json<S>(
    conn: &mut Conn<S>,
    status: u16,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    encoding: Option<Encoding>,
    keep: bool,
) -> Next {
    match encoding {
        Some(e) => {
            let mut all = headers.to_vec();
            all.push(("content-encoding", e.token()));
            respond(&mut conn.wbuf, status, "application/json", &all, &encoding::compress(e, &body), keep);
        }
        None => respond(&mut conn.wbuf, status, "application/json", headers, &body, keep),
    }
    Next::KeepAlive
}
