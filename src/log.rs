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

/// An access-log line.
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
) {
    let ts = clock::now_rfc3339();
    let micros = took.as_micros();
    let text = match format {
        AccessLog::Off => return,
        AccessLog::Text => {
            format!("{ts} access worker={worker} peer={peer} {method} {path} {status} {micros}us id={request_id}\n")
        }
        AccessLog::Json => {
            let path = sonic_rs::to_string(path).unwrap_or_default();
            let id = sonic_rs::to_string(request_id).unwrap_or_default();
            format!(
                "{{\"ts\":\"{ts}\",\"worker\":{worker},\"peer\":\"{peer}\",\"method\":\"{method}\",\"path\":{path},\"status\":{status},\"micros\":{micros},\"requestId\":{id}}}\n"
            )
        }
    };
    line(&text);
}

fn line(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
