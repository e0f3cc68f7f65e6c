//! Logging to stderr: start-up and lifecycle lines, errors, and the optional access
//! log (one line per request, text or JSON, with the request id). Lines are formatted
//! into one `String` and written with a single `write_all`, so lines from different
//! workers never interleave. Keys and secrets are never passed here.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use crate::clock;
use crate::config::AccessLog;

/// A lifecycle or error line: `2026-03-10T08:30:00Z clawgate: <msg>`.
pub fn info(msg: &str) {
    line(&format!("{} clawgate: {msg}\n", clock::now_rfc3339()));
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
