//! The exchanges that answer one JSON body and never stream: embeddings (OpenAI,
//! Azure OpenAI, Gemini's `embedContent` and `batchEmbedContents`, in
//! `embeddings.rs`) and Anthropic's `count_tokens`. Each runs the chat exchange's
//! steps without the reply:
//!
//! ```text
//! count + record -> provider auth -> parse body (400 in the provider's shape)
//!   -> faults (header + [fault:] directive of the last text, fail-key gate)
//!   -> first-byte delay -> reset-before-head | injected error | the answer,
//!      compressed if encoding= asks, cut short by reset-mid-stream
//! ```
//! The scripted-answer items (`reply=`, `stop=`, `chunks=`, SSE variations,
//! `stream-error=`) parse but change nothing here.

use clawgate::http::Request;
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use crate::anthropic;
use crate::chat::{self, random_id, Dialect, Invalid};
use crate::conn::{Conn, Next};
use crate::embeddings::{self, Embed};
use crate::exchange::{fail_first, faults, request_id_header, send_ok};
use crate::route::{auth, error_body, send_json};

/// Where an embeddings request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedRoute<'a> {
    /// `POST /v1/embeddings` (and `/embeddings`).
    OpenAi,
    /// `POST /openai/deployments/{deployment}/embeddings?api-version=V`.
    Azure { deployment: &'a str },
    /// `POST /v1beta/models/{model}:embedContent` or `:batchEmbedContents` (`batch`).
    Gemini { model: &'a str, batch: bool },
}

impl EmbedRoute<'_> {
    fn dialect(self) -> Dialect {
        match self {
            EmbedRoute::OpenAi => Dialect::OpenAi,
            EmbedRoute::Azure { .. } => Dialect::Azure,
            EmbedRoute::Gemini { .. } => Dialect::Gemini,
        }
    }
}

/// An embeddings request in any of the three formats.
pub async fn embed<S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut Conn<S>,
    req: &Request,
    route: EmbedRoute<'_>,
) -> Next {
    let dialect = route.dialect();
    let parsed = |body: &[u8]| -> Result<Embed, Invalid> {
        match route {
            EmbedRoute::OpenAi => embeddings::parse_openai(body, false),
            EmbedRoute::Azure { deployment } => embeddings::parse_openai(body, true).map(|mut e| {
                if e.model.is_empty() {
                    e.model = deployment.to_string();
                }
                e
            }),
            EmbedRoute::Gemini { model, batch } => embeddings::parse_gemini(body, model, batch),
        }
    };
    let Some(embed) = admit(conn, req, dialect, parsed) else { return Next::KeepAlive };
    let body = match route {
        EmbedRoute::Gemini { batch, .. } => embeddings::gemini_body(&embed, batch),
        EmbedRoute::OpenAi | EmbedRoute::Azure { .. } => embeddings::openai_body(&embed),
    };
    answer(conn, req, dialect, embed.last_text(), body).await
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens":N}`, N the prompt tokens the
/// Messages route would report for the same body.
pub async fn count_tokens<S: AsyncReadRent + AsyncWriteRent>(conn: &mut Conn<S>, req: &Request) -> Next {
    let Some(chat) = admit(conn, req, Dialect::Anthropic, chat::parse_count_tokens) else { return Next::KeepAlive };
    answer(conn, req, Dialect::Anthropic, &chat.last_user, anthropic::token_count(chat.prompt_tokens)).await
}

/// Counts and records the request, checks its credentials and parses its body;
/// `None` when an error answer has been queued instead.
fn admit<S, T>(
    conn: &mut Conn<S>,
    req: &Request,
    dialect: Dialect,
    parse: impl FnOnce(&[u8]) -> Result<T, Invalid>,
) -> Option<T> {
    let keep = req.keep_alive;
    conn.stats.record(req, true);
    if let Err((status, body)) = auth(req, dialect) {
        send_json(conn, status, &[], body, None, keep);
        return None;
    }
    match parse(&req.body) {
        Ok(parsed) => Some(parsed),
        Err(invalid) => {
            let body = error_body(dialect, 400, None, Some(&invalid.message), invalid.param, None);
            send_json(conn, 400, &[], body, None, keep);
            None
        }
    }
}

/// Applies the faults asked for in the header and in `text`, then sends `body`.
async fn answer<S: AsyncReadRent + AsyncWriteRent>(
    conn: &mut Conn<S>,
    req: &Request,
    dialect: Dialect,
    text: &str,
    body: Vec<u8>,
) -> Next {
    let keep = req.keep_alive;
    let faults = match faults(conn, req, dialect, text) {
        Ok(f) => f,
        Err(next) => return next,
    };
    if let Some(next) = fail_first(conn, &faults, dialect, keep).await {
        return next;
    }
    let request_id = random_id("req_", 24);
    let headers = request_id_header(dialect, &request_id);
    send_ok(conn, &headers, body, &faults, keep).await
}
