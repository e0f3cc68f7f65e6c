//! Logging to stderr: start-up and lifecycle lines, errors, and the optional access
//! log (one line per request, text or JSON, with the request id). Lines are formatted
//! into one `String` and written with a single `write_all`, so lines from different
//! workers never interleave. Keys and secrets are never passed here.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use crate::clock;
use crate::config::{AccessLog, LogConfig, LogLevel, LOG_TARGETS};

/// The most verbose level any module logs at (`set_filter`): the one check most
/// calls make.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);
/// Each module's level, in `LOG_TARGETS` order.
static LEVELS: [AtomicU8; LOG_TARGETS.len()] = [const { AtomicU8::new(LogLevel::Info as u8) }; LOG_TARGETS.len()];

/// Sets the filter (`[log] level`, `CLAWGATE_LOG`, `RUST_LOG`; again on every reload):
/// lines above their module's level are dropped.
pub fn set_filter(filter: &LogConfig) {
    let mut max = filter.level as u8;
    for (i, target) in LOG_TARGETS.iter().enumerate() {
        let level = filter.level_for(target) as u8;
        LEVELS[i].store(level, Ordering::Relaxed);
        max = max.max(level);
    }
    MAX_LEVEL.store(max, Ordering::Relaxed);
}

/// Sets one level for every module.
pub fn set_level(level: LogLevel) {
    set_filter(&LogConfig { level, targets: Vec::new() });
}

/// Whether a line of `level` written from `file` (a path such as
/// `src/server/conn.rs`, from `Location::caller`) passes the filter.
fn enabled_at(level: LogLevel, file: &str) -> bool {
    let level = level as u8;
    if level > MAX_LEVEL.load(Ordering::Relaxed) {
        return false;
    }
    match target_of(file).and_then(|t| LOG_TARGETS.iter().position(|x| *x == t)) {
        Some(i) => level <= LEVELS[i].load(Ordering::Relaxed),
        None => true,
    }
}

/// The top-level module a source file belongs to: `src/server/conn.rs` -> `server`,
/// `src/tls.rs` -> `tls`, `src/main.rs` -> `main`.
fn target_of(file: &str) -> Option<&str> {
    let rest = file.rsplit_once("src/").map(|(_, r)| r).unwrap_or(file);
    let top = rest.split('/').next()?;
    Some(top.strip_suffix(".rs").unwrap_or(top))
}

/// A line written whatever the level (start-up and shutdown: `listening on`).
pub fn always(msg: &str) {
    line(&format!("{} clawgate: {msg}\n", clock::now_rfc3339()));
}

/// A lifecycle line: `2026-03-10T08:30:00Z clawgate: <msg>` (level `info`).
#[track_caller]
pub fn info(msg: &str) {
    if enabled_at(LogLevel::Info, std::panic::Location::caller().file()) {
        always(msg);
    }
}

/// Something failed and was handled (a provider error, a failed reload): level `warn`,
/// `... clawgate: warn: <msg>`.
#[track_caller]
pub fn warn(msg: &str) {
    if enabled_at(LogLevel::Warn, std::panic::Location::caller().file()) {
        line(&format!("{} clawgate: warn: {msg}\n", clock::now_rfc3339()));
    }
}

/// Something is wrong with the gateway itself (the store cannot write): level `error`,
/// always written.
pub fn error(msg: &str) {
    line(&format!("{} clawgate: error: {msg}\n", clock::now_rfc3339()));
}

/// Detail for debugging (level `debug`), with the module it comes from:
/// `... clawgate: debug: tls: <msg>`.
#[track_caller]
pub fn debug(msg: &str) {
    let file = std::panic::Location::caller().file();
    if enabled_at(LogLevel::Debug, file) {
        let target = target_of(file).unwrap_or("clawgate");
        line(&format!("{} clawgate: debug: {target}: {msg}\n", clock::now_rfc3339()));
    }
}

/// The access log's fields that only the dispatcher and the handlers know: filled on
/// the response, written by the connection loop after the response went out.
#[derive(Debug, Clone, Default)]
pub struct LogFields {
    /// `router::Route::label`.
    pub route: &'static str,
    /// `router::Route::index` (the metrics slot), when a route was found.
    pub route_slot: Option<usize>,
    /// The caller's key name (never the key).
    pub key: Option<std::sync::Arc<str>>,
    /// The model that answered, and its provider.
    pub model: Option<String>,
    pub provider: Option<String>,
    /// Tokens of a turn answered whole (a stream's are in `/metrics`).
    pub tokens: Option<(u64, u64)>,
    /// Time from the turn's first provider call to the head of the answer that served
    /// it (a whole answer when the call was not streamed), retries and fallbacks
    /// included.
    pub upstream: Option<Duration>,
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
            if let Some(u) = fields.upstream {
                line.push_str(&format!(" upstream={}us", u.as_micros()));
            }
            line.push('\n');
            line
        }
        AccessLog::Json => {
            let q = |s: &str| sonic_rs::to_string(s).unwrap_or_default();
            let opt = |s: Option<&str>| s.map_or_else(|| "null".to_string(), q);
            let (tin, tout) =
                fields.tokens.map_or(("null".to_string(), "null".to_string()), |(i, o)| (i.to_string(), o.to_string()));
            let upstream = fields.upstream.map_or_else(|| "null".to_string(), |u| u.as_micros().to_string());
            format!(
                "{{\"ts\":\"{ts}\",\"worker\":{worker},\"peer\":\"{peer}\",\"method\":\"{method}\",\"path\":{},\"status\":{status},\"micros\":{micros},\"requestId\":{},\"route\":\"{route}\",\"key\":{},\"model\":{},\"provider\":{},\"tokensIn\":{tin},\"tokensOut\":{tout},\"upstreamMicros\":{upstream}}}\n",
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn a_source_file_names_its_top_level_module() {
        assert_eq!(target_of("src/server/conn.rs"), Some("server"));
        assert_eq!(target_of("src/tls.rs"), Some("tls"));
        assert_eq!(target_of("/build/clawgate/src/webhook/outbox.rs"), Some("webhook"));
        assert_eq!(target_of("src/main.rs"), Some("main"));
    }

    /// Every top-level module can be named in a filter (a new module needs its entry).
    #[test]
    fn every_top_level_module_is_a_log_target() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for entry in std::fs::read_dir(src).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if let Some(module) = name.strip_suffix(".rs").filter(|m| *m != "lib") {
                assert!(LOG_TARGETS.contains(&module), "{module} is missing from config::LOG_TARGETS");
            }
        }
    }
}
