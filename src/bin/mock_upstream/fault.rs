//! Fault injection, chosen per request so one mock serves many tests at once. A fault
//! spec is a comma-separated list of `name` or `name=value` items, given in the
//! `x-mock-fault` request header and/or as a `[fault:...]` directive inside the last
//! user message (for embeddings: the last text to embed; both are merged, the
//! message last). Items:
//!
//! | item | effect |
//! |---|---|
//! | `status=CODE` | answer CODE (400-599) with the provider's error body |
//! | `retry-after=S` | add `Retry-After: S` to that error |
//! | `reset-before-head` | read the request, then reset the connection (RST, no answer) |
//! | `reset-mid-stream=N` | reset after N content chunks (non-stream: after half the body) |
//! | `first-byte-ms=MS` | wait MS before the response head |
//! | `chunk-ms=MS` | wait MS before each content chunk of a stream |
//! | `chunks=N` | exactly N content chunks (words are repeated as needed) |
//! | `fail-times=K`, `fail-key=NAME` | only the first K requests with this key get the failures |
//! | `crlf`, `comments`, `multiline` | SSE wire variations (see `sse.rs`) |
//! | `reply=B1+B2..` | scripted blocks: `text`, `thinking`, `tool_call`, `tool_calls` (see `scenario.rs`) |
//! | `stop=R` | force the stop reason: `end`, `tool_use`, `length`, `content_filter`, `stop_sequence` |
//! | `cached=N` | N prompt tokens were read from the prompt cache (usage details) |
//! | `error=KIND` | answer the provider's documented error of that kind (see `scenario::ErrorKind`) |
//! | `stream-error=N` | after N stream steps, the provider's in-stream error event, then the end |
//! | `encoding=gzip` / `deflate` | compress the answer (JSON or SSE) with that `Content-Encoding` |
//!
//! "Failures" are `status`, `error`, `retry-after`, both resets, both delays and
//! `stream-error`; `chunks`, the SSE variations, the scripted answer and the encoding
//! always apply, so a test can say "fail twice, then succeed" and get the same answer
//! shape on the third try. The routes that answer one JSON body and never stream
//! (embeddings, `count_tokens`: `unary.rs`) apply the failures, `fail-times` and
//! `encoding`, and ignore the items that shape a chat answer. An unknown item is a 400, so a typo in a test is loud
//! rather than silently ignored.

use std::ops::Range;

use crate::scenario::{Encoding, ErrorKind, Scenario};
use crate::sse::Style;

/// The faults requested for one exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    pub status: Option<u16>,
    pub retry_after: Option<u64>,
    pub reset_before_head: bool,
    pub reset_mid_stream: Option<usize>,
    pub first_byte_ms: u64,
    pub chunk_ms: u64,
    pub chunks: Option<usize>,
    pub fail_times: Option<u64>,
    pub fail_key: Option<String>,
    pub style: Style,
    pub scenario: Scenario,
    pub error: Option<ErrorKind>,
    pub stream_error: Option<usize>,
    pub encoding: Option<Encoding>,
}

/// Upper bound on `chunks=N`, so a typo cannot make the mock build a gigabyte answer.
const MAX_CHUNKS: usize = 100_000;
/// Upper bound on the delays, in milliseconds (10 minutes).
const MAX_DELAY_MS: u64 = 600_000;

impl Faults {
    /// Merges the items of one spec into `self`.
    pub fn parse_into(&mut self, spec: &str) -> Result<(), String> {
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (item, None),
            };
            match (name, value) {
                ("status", Some(v)) => {
                    let code = number(name, v)?;
                    if !(400..=599).contains(&code) {
                        return Err(format!("fault status={code}: must be 400-599"));
                    }
                    self.status = Some(code as u16);
                }
                ("retry-after", Some(v)) => self.retry_after = Some(number(name, v)?),
                ("reset-before-head", None) => self.reset_before_head = true,
                ("reset-mid-stream", Some(v)) => self.reset_mid_stream = Some(number(name, v)? as usize),
                ("first-byte-ms", Some(v)) => self.first_byte_ms = number(name, v)?.min(MAX_DELAY_MS),
                ("chunk-ms", Some(v)) => self.chunk_ms = number(name, v)?.min(MAX_DELAY_MS),
                ("chunks", Some(v)) => self.chunks = Some((number(name, v)? as usize).min(MAX_CHUNKS)),
                ("fail-times", Some(v)) => self.fail_times = Some(number(name, v)?),
                ("fail-key", Some(v)) if !v.is_empty() => self.fail_key = Some(v.to_string()),
                ("crlf", None) => self.style.crlf = true,
                ("comments", None) => self.style.comments = true,
                ("multiline", None) => self.style.multiline = true,
                ("reply", Some(v)) => self.scenario.set_reply(v)?,
                ("stop", Some(v)) => self.scenario.set_stop(v)?,
                ("cached", Some(v)) => self.scenario.cached = number(name, v)?,
                ("error", Some(v)) => {
                    self.error = Some(ErrorKind::parse(v).ok_or_else(|| format!("fault error={v}: unknown kind"))?);
                }
                ("stream-error", Some(v)) => self.stream_error = Some(number(name, v)? as usize),
                ("encoding", Some(v)) => {
                    self.encoding =
                        Some(Encoding::parse(v).ok_or_else(|| format!("fault encoding={v}: want gzip or deflate"))?);
                }
                _ => return Err(format!("unknown fault item '{item}'")),
            }
        }
        Ok(())
    }

    /// Drops the failures, keeping the answer's shape (`chunks`, SSE style, the
    /// scripted answer, the encoding).
    pub fn disarm(&mut self) {
        *self = Faults {
            chunks: self.chunks,
            style: self.style,
            scenario: std::mem::take(&mut self.scenario),
            encoding: self.encoding,
            ..Faults::default()
        };
    }

    /// Whether any failure is requested (used to skip the fail-key bookkeeping).
    pub fn has_failures(&self) -> bool {
        self.status.is_some()
            || self.error.is_some()
            || self.stream_error.is_some()
            || self.retry_after.is_some()
            || self.reset_before_head
            || self.reset_mid_stream.is_some()
            || self.first_byte_ms > 0
            || self.chunk_ms > 0
    }
}

fn number(name: &str, v: &str) -> Result<u64, String> {
    v.parse::<u64>().map_err(|_| format!("fault {name}={v}: not a whole number"))
}

/// Finds a `[fault:...]` directive in a message: the byte range of the whole directive
/// (to cut it from the echoed text) and the spec inside it.
pub fn find_directive(text: &str) -> Option<(Range<usize>, &str)> {
    let start = text.find("[fault:")?;
    let spec_start = start + "[fault:".len();
    let len = text.get(spec_start..)?.find(']')?;
    let spec = text.get(spec_start..spec_start + len)?;
    Some((start..spec_start + len + 1, spec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{BlockKind, StopKind};

    #[test]
    fn parses_every_item() {
        let mut f = Faults::default();
        f.parse_into(
            "status=429, retry-after=2,reset-before-head,reset-mid-stream=3,first-byte-ms=10,\
             chunk-ms=5,chunks=20,fail-times=2,fail-key=k1,crlf,comments,multiline",
        )
        .unwrap();
        assert_eq!(f.status, Some(429));
        assert_eq!(f.retry_after, Some(2));
        assert!(f.reset_before_head);
        assert_eq!(f.reset_mid_stream, Some(3));
        assert_eq!((f.first_byte_ms, f.chunk_ms, f.chunks), (10, 5, Some(20)));
        assert_eq!((f.fail_times, f.fail_key.as_deref()), (Some(2), Some("k1")));
        assert_eq!(f.style, Style { crlf: true, comments: true, multiline: true });
        f.disarm();
        assert!(!f.has_failures());
        assert_eq!(f.chunks, Some(20));
        assert!(f.style.crlf);
    }

    #[test]
    fn parses_the_scenario_items_and_keeps_them_when_disarmed() {
        let mut f = Faults::default();
        f.parse_into("reply=thinking+tool_call,stop=length,cached=7,encoding=gzip,error=overloaded,stream-error=2")
            .unwrap();
        assert_eq!(f.scenario.blocks, [BlockKind::Thinking, BlockKind::ToolCall]);
        assert_eq!((f.scenario.stop, f.scenario.cached), (Some(StopKind::Length), 7));
        assert_eq!((f.error, f.stream_error, f.encoding), (Some(ErrorKind::Overloaded), Some(2), Some(Encoding::Gzip)));
        assert!(f.has_failures());
        f.disarm();
        assert!(!f.has_failures());
        assert_eq!((f.scenario.cached, f.encoding), (7, Some(Encoding::Gzip)));
        assert!(Faults::default().parse_into("error=teapot").is_err());
        assert!(Faults::default().parse_into("encoding=br").is_err());
        assert!(Faults::default().parse_into("reply=poem").is_err());
    }

    #[test]
    fn rejects_unknown_items_and_bad_numbers() {
        assert!(Faults::default().parse_into("stauts=500").is_err());
        assert!(Faults::default().parse_into("status=abc").is_err());
        assert!(Faults::default().parse_into("status=200").is_err());
        assert!(Faults::default().parse_into("crlf=1").is_err());
        assert!(Faults::default().parse_into(" , ").is_ok());
    }

    #[test]
    fn finds_the_directive_in_a_message() {
        let text = "hello [fault:status=503,retry-after=1] world";
        let (range, spec) = find_directive(text).unwrap();
        assert_eq!(spec, "status=503,retry-after=1");
        assert_eq!(&text[range], "[fault:status=503,retry-after=1]");
        assert!(find_directive("no directive [fault: unterminated").is_none());
    }
}
