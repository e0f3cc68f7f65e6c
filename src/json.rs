//! JSON of untrusted bytes: every parse of a request body, a WebSocket frame or an
//! upstream answer goes through here, so none can nest deeper than the configured limit
//! (`server.max_json_depth`, default 128).
//!
//! Why: sonic-rs builds `Value`s and skips ignored fields recursively, with no depth
//! limit; 9,000 levels of `[` overflow a worker's stack and abort the whole process
//! (STACK.md, wave 2). The check runs before the parser sees the bytes:
//!
//! ```text
//! bytes -> count of `[` and `{` (SIMD via memchr) <= limit? -> parse   (the usual case)
//!                                  | more
//!                                  v
//!          string-aware scan of the nesting depth -> deeper than limit? -> TooDeep
//! ```
//!
//! Cost on the hot path: a body cannot nest deeper than it has openers, so the common
//! body (a chat request has a few dozen brackets) pays one vectorised byte count
//! (tens of nanoseconds per KiB); only bodies with more openers than the limit pay the
//! exact scan (about a byte per nanosecond). Malformed JSON is left to the parser to
//! report: the scan only answers "could this be too deep".
//!
//! The limit is process-wide (an atomic set from the config at start-up and on reload)
//! because parses happen in every layer, upstream answers included, and threading the
//! config into each would buy nothing: it changes only on reload, and a relaxed load is
//! a plain read.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;

/// The nesting limit when the config says nothing.
pub const DEFAULT_MAX_DEPTH: usize = 128;

static MAX_DEPTH: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_DEPTH);

/// Sets the process-wide nesting limit (config load and reload).
pub fn set_max_depth(depth: usize) {
    MAX_DEPTH.store(depth.max(1), Ordering::Relaxed);
}

/// The process-wide nesting limit: arrays and objects inside each other, the
/// outermost counting 1.
pub fn max_depth() -> usize {
    MAX_DEPTH.load(Ordering::Relaxed)
}

/// A parse refused or failed.
#[derive(Debug)]
pub enum JsonError {
    /// The input nests arrays/objects deeper than `limit` (checked before parsing).
    TooDeep { limit: usize },
    /// The parser's own error (syntax, types, missing fields).
    Parse(sonic_rs::Error),
}

impl JsonError {
    /// The first line of the message (sonic-rs appends a multi-line excerpt of the
    /// input, which clients need not see).
    pub fn first_line(&self) -> String {
        match self {
            JsonError::TooDeep { limit } => too_deep_message(*limit),
            JsonError::Parse(e) => e.to_string().lines().next().unwrap_or_default().trim_end().to_string(),
        }
    }
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.first_line())
    }
}

impl std::error::Error for JsonError {}

/// The contract's message for input that nests too deep (PROTOCOL.md, issue 16).
pub fn too_deep_message(limit: usize) -> String {
    format!("JSON nesting deeper than {limit} levels")
}

/// Refuses `bytes` if arrays and objects nest deeper than `limit`. Strings (with their
/// escapes) are skipped, so brackets inside them never count.
pub fn check_depth(bytes: &[u8], limit: usize) -> Result<(), JsonError> {
    // Fast accept: fewer openers than the limit cannot nest deeper than it.
    if memchr::memchr2_iter(b'[', b'{', bytes).count() <= limit {
        return Ok(());
    }
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip to the closing quote, stepping over escapes.
                i += 1;
                while i < bytes.len() {
                    match memchr::memchr2(b'"', b'\\', &bytes[i..]) {
                        Some(at) if bytes[i + at] == b'\\' => i += at + 2,
                        Some(at) => {
                            i += at;
                            break;
                        }
                        None => return Ok(()),
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Err(JsonError::TooDeep { limit });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Parses `bytes` into `T` after the depth check (process-wide limit).
pub fn from_slice<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, JsonError> {
    check_depth(bytes, max_depth())?;
    sonic_rs::from_slice(bytes).map_err(JsonError::Parse)
}

/// `from_slice` for text (WebSocket frames).
pub fn from_str<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, JsonError> {
    from_slice(text.as_bytes())
}

/// The value at `path` (sonic-rs lazy lookup) after the depth check.
pub fn get<'a, P>(bytes: &'a [u8], path: P) -> Result<sonic_rs::LazyValue<'a>, JsonError>
where
    P: IntoIterator,
    P::Item: sonic_rs::Index,
{
    check_depth(bytes, max_depth())?;
    sonic_rs::get(bytes, path).map_err(JsonError::Parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(n: usize) -> String {
        format!("{}{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn depth_at_the_limit_passes_and_one_more_is_refused() {
        assert!(check_depth(nested(128).as_bytes(), 128).is_ok());
        assert!(matches!(check_depth(nested(129).as_bytes(), 128), Err(JsonError::TooDeep { limit: 128 })));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let s = format!(r#"{{"a":"{}","b":"\"{}"}}"#, "[".repeat(1000), "{".repeat(1000));
        assert!(check_depth(s.as_bytes(), 4).is_ok());
        let escaped = format!(r#"["\\", {}]"#, nested(10));
        assert!(matches!(check_depth(escaped.as_bytes(), 5), Err(JsonError::TooDeep { .. })));
    }

    #[test]
    fn many_siblings_are_not_deep() {
        let s = format!("[{}]", vec!["{}"; 10_000].join(","));
        assert!(check_depth(s.as_bytes(), 2).is_ok());
    }

    #[test]
    fn the_probe_inputs_are_refused_without_a_crash() {
        let ws = format!(r#"{{"type":"auth","token":"x","x":{}}}"#, nested(20_000));
        let e = from_str::<sonic_rs::Value>(&ws).unwrap_err();
        assert_eq!(e.first_line(), "JSON nesting deeper than 128 levels");
        assert!(from_slice::<sonic_rs::Value>(nested(9_000).as_bytes()).is_err());
        let unknown = format!(r#"{{"message":"hi","x":{}}}"#, nested(100_000));
        assert!(get(unknown.as_bytes(), ["message"]).is_err());
    }

    #[test]
    fn an_unterminated_string_is_left_to_the_parser() {
        let s = format!("[\"{}", "[".repeat(500));
        assert!(check_depth(s.as_bytes(), 4).is_ok());
        assert!(from_slice::<sonic_rs::Value>(s.as_bytes()).is_err());
    }
}
