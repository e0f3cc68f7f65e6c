//! Logging to stderr: start-up and lifecycle lines, errors, and the optional access
//! log (one line per request, text or JSON, with the request id). Lines are formatted
//! into one `String` and written with a single `write_all`, so lines from different
//! workers never interleave. Keys and secrets are never passed here.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use crate::clock;
use crate::config::{AccessLog, LogLevel};

/// The level in force (`set_level`; `Info` until then), as `LogLevel as u8`.
static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);

/// Sets the level (`[log] level`, `CLAWGATE_LOG`): lines above it are dropped.
pub fn set_level(level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether lines of `level` are written.
pub fn enabled(level: LogLevel) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// A line written whatever the level (start-up and shutdown: `listening on`).
pub fn always(msg: &str) {
    line(&format!("{} clawgate: {msg}\n", clock::now_rfc3339()));
}

/// A lifecycle line: `2026-03-10T08:30:00Z clawgate: <msg>` (level `info`).
pub fn info(msg: &str) {
    if enabled(LogLevel::Info) {
        always(msg);
    }
}

/// Something failed and was handled (a provider error, a failed reload): level `warn`,
/// `... clawgate: warn: <msg>`.
pub fn warn(msg: &str) {
    if enabled(LogLevel::Warn) {
        line(&format!("{} clawgate: warn: {msg}\n", clock::now_rfc3339()));
    }
}

/// Something is wrong with the gateway itself (the store cannot write): level `error`.
pub fn error(msg: &str) {
    line(&format!("{} clawgate: error: {msg}\n", clock::now_rfc3339()));
}

/// Detail for debugging (level `debug`).
pub fn debug(msg: &str) {
    if enabled(LogLevel::Debug) {
        line(&format!("{} clawgate: debug: {msg}\n", clock::now_rfc3339()));
    }
}

/// The access log's fields that only the dispatcher and the handlers know: filled on
/// the response, written by the connection loop after the response went out.
#[derive(Debug, Clone, Default)]
pub struct LogFields {
    /// `router::Route::label`.
    pub route: &'static str,
    /// The caller's key name (never the key).
    pub key: Option<std::sync::Arc<str>>,
    /// The model that answered, and its provider.
    pub model: Option<String>,
    pub provider: Option<String>,
    /// Tokens of a turn answered whole (a stream's are in `/metrics`).
    pub tokens: Option<(u64, u64)>,
}

/// An access-log line: the exchange (worker, client address, method, path, status,
/// duration in microseconds, request id) and what dispatch and the handler knew
/// (`fields`: route, key name, model, provider, tokens in/out), as text `k=v` pairs or
/// one JSON object.
#[allow(clippy::too_many_arguments)]
pub fn access(
    format: AccessLog,
    worker: usize,
    peer: &SocketAddr,
    method: &str,
    path: &str,
    status: u16,
    took: Duration,
    request_id: &str,
    fields: &LogFields,
) {
    let ts = clock::now_rfc3339();
    let micros = took.as_micros();
    let route = if fields.route.is_empty() { "unmatched" } else { fields.route };
    let text = match format {
        AccessLog::Off => return,
        AccessLog::Text => {
            let mut line = format!(
                "{ts} access worker={worker} peer={peer} {method} {path} {status} {micros}us id={request_id} route={route}"
            );
            if let Some(k) = &fields.key {
                line.push_str(&format!(" key={k}"));
            }
            if let Some(m) = &fields.model {
                line.push_str(&format!(" model={m}"));
            }
            if let Some(p) = &fields.provider {
                line.push_str(&format!(" provider={p}"));
            }
            if let Some((i, o)) = fields.tokens {
                line.push_str(&format!(" tokens_in={i} tokens_out={o}"));
            }
            line.push('\n');
            line
        }
        AccessLog::Json => {
            let q = |s: &str| sonic_rs::to_string(s).unwrap_or_default();
            let opt = |s: Option<&str>| s.map_or_else(|| "null".to_string(), q);
            let (tin, tout) =
                fields.tokens.map_or(("null".to_string(), "null".to_string()), |(i, o)| (i.to_string(), o.to_string()));
            format!(
                "{{\"ts\":\"{ts}\",\"worker\":{worker},\"peer\":\"{peer}\",\"method\":\"{method}\",\"path\":{},\"status\":{status},\"micros\":{micros},\"requestId\":{},\"route\":\"{route}\",\"key\":{},\"model\":{},\"provider\":{},\"tokensIn\":{tin},\"tokensOut\":{tout}}}\n",
                q(path),
                q(request_id),
                opt(fields.key.as_deref()),
                opt(fields.model.as_deref()),
                opt(fields.provider.as_deref()),
            )
        }
    };
    line(&text);
}

fn line(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
