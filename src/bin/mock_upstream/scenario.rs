//! Scripted answers and named errors, chosen per request by fault items (see
//! `fault.rs`): what the answer contains (`reply=`), why it stopped (`stop=`), how
//! much of the prompt came from the cache (`cached=`), which documented error to
//! answer instead (`error=`) and how the body is compressed (`encoding=`).
//!
//! The answer is a list of blocks, in order: `thinking`, `text`, `tool_call` (one
//! call) and `tool_calls` (two parallel calls), joined with `+`, e.g.
//! `reply=thinking+text+tool_call`. Each provider renders them in its own shape
//! (`openai.rs`, `anthropic.rs`, `gemini.rs`); `reply.rs` builds their content.

/// One kind of block in a scripted answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Anthropic `thinking` block; OpenAI `completion_tokens_details.reasoning_tokens`;
    /// Gemini `thoughtsTokenCount` (and a `thought: true` part when asked for).
    Thinking,
    /// The echo text.
    Text,
    /// One tool call.
    ToolCall,
    /// Two tool calls side by side (parallel tool use).
    ToolCalls,
}

/// Why the answer stopped, when a test forces it (`stop=`); otherwise the natural
/// reason: tool use when the answer calls a tool, else the end of the turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// OpenAI `stop`, Anthropic `end_turn`, Gemini `STOP`.
    End,
    /// OpenAI `tool_calls`, Anthropic `tool_use`, Gemini `STOP`.
    ToolUse,
    /// OpenAI `length`, Anthropic `max_tokens`, Gemini `MAX_TOKENS`.
    Length,
    /// OpenAI `content_filter`, Anthropic `refusal`, Gemini `SAFETY`.
    ContentFilter,
    /// OpenAI `stop`, Anthropic `stop_sequence` (with the sequence), Gemini `STOP`.
    StopSequence,
}

/// A documented error body to answer with (`error=KIND`); the status depends on the
/// provider where the providers differ (`overloaded`, `quota`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    /// OpenAI `context_length_exceeded`, Anthropic "prompt is too long", Gemini's
    /// input token count message; all 400.
    ContextLength,
    Auth,
    Permission,
    NotFound,
    TooLarge,
    Unprocessable,
    /// 429 with `Retry-After: 1` unless `retry-after=S` says otherwise.
    RateLimit,
    /// Out of credit: OpenAI 429 `insufficient_quota`, Anthropic 400 (credit balance),
    /// Gemini 429 `RESOURCE_EXHAUSTED`.
    Quota,
    Server,
    Unavailable,
    /// Anthropic 529 `overloaded_error`; OpenAI and Gemini 503.
    Overloaded,
    Timeout,
}

/// `Content-Encoding` of the answer (`encoding=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// RFC 1952.
    Gzip,
    /// HTTP's `deflate`: the zlib format of RFC 1950.
    Deflate,
}

impl Encoding {
    pub fn parse(v: &str) -> Option<Encoding> {
        match v {
            "gzip" => Some(Encoding::Gzip),
            "deflate" => Some(Encoding::Deflate),
            _ => None,
        }
    }

    pub fn token(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
        }
    }
}

/// The scripted shape of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub blocks: Vec<BlockKind>,
    pub stop: Option<StopKind>,
    /// Prompt tokens read from the prompt cache.
    pub cached: u64,
}

impl Default for Scenario {
    fn default() -> Scenario {
        Scenario { blocks: vec![BlockKind::Text], stop: None, cached: 0 }
    }
}

impl Scenario {
    /// `reply=` value: `+`-joined block kinds (`length` and `content_filter` are
    /// accepted as shorthands for `text` with that stop reason).
    pub fn set_reply(&mut self, v: &str) -> Result<(), String> {
        let mut blocks = Vec::new();
        for part in v.split('+').map(str::trim) {
            let kind = match part {
                "text" => BlockKind::Text,
                "thinking" => BlockKind::Thinking,
                "tool_call" => BlockKind::ToolCall,
                "tool_calls" => BlockKind::ToolCalls,
                "length" | "content_filter" => {
                    self.set_stop(part)?;
                    BlockKind::Text
                }
                _ => {
                    return Err(format!(
                        "fault reply={v}: unknown block '{part}' (text, thinking, tool_call, tool_calls)"
                    ))
                }
            };
            blocks.push(kind);
        }
        self.blocks = blocks;
        Ok(())
    }

    /// `stop=` value.
    pub fn set_stop(&mut self, v: &str) -> Result<(), String> {
        self.stop = Some(match v {
            "end" => StopKind::End,
            "tool_use" => StopKind::ToolUse,
            "length" => StopKind::Length,
            "content_filter" => StopKind::ContentFilter,
            "stop_sequence" => StopKind::StopSequence,
            _ => return Err(format!("fault stop={v}: want end, tool_use, length, content_filter or stop_sequence")),
        });
        Ok(())
    }

    /// The stop reason: forced, else tool use when a tool is called, else the end.
    pub fn stop_reason(&self) -> StopKind {
        self.stop.unwrap_or_else(|| {
            if self.blocks.iter().any(|b| matches!(b, BlockKind::ToolCall | BlockKind::ToolCalls)) {
                StopKind::ToolUse
            } else {
                StopKind::End
            }
        })
    }
}

impl ErrorKind {
    pub fn parse(v: &str) -> Option<ErrorKind> {
        Some(match v {
            "invalid_request" => ErrorKind::InvalidRequest,
            "context_length" => ErrorKind::ContextLength,
            "auth" => ErrorKind::Auth,
            "permission" => ErrorKind::Permission,
            "not_found" => ErrorKind::NotFound,
            "too_large" => ErrorKind::TooLarge,
            "unprocessable" => ErrorKind::Unprocessable,
            "rate_limit" => ErrorKind::RateLimit,
            "quota" => ErrorKind::Quota,
            "server" => ErrorKind::Server,
            "unavailable" => ErrorKind::Unavailable,
            "overloaded" => ErrorKind::Overloaded,
            "timeout" => ErrorKind::Timeout,
            _ => return None,
        })
    }

    /// The HTTP status, `anthropic` telling Anthropic's statuses from the others'.
    pub fn status(self, anthropic: bool) -> u16 {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::ContextLength => 400,
            ErrorKind::Auth => 401,
            ErrorKind::Permission => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::TooLarge => 413,
            ErrorKind::Unprocessable => 422,
            ErrorKind::RateLimit => 429,
            ErrorKind::Quota if anthropic => 400,
            ErrorKind::Quota => 429,
            ErrorKind::Server => 500,
            ErrorKind::Unavailable => 503,
            ErrorKind::Overloaded if anthropic => 529,
            ErrorKind::Overloaded => 503,
            ErrorKind::Timeout => 504,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lists_blocks_and_picks_the_natural_stop() {
        let mut s = Scenario::default();
        assert_eq!(s.stop_reason(), StopKind::End);
        s.set_reply("thinking+text+tool_calls").unwrap();
        assert_eq!(s.blocks, [BlockKind::Thinking, BlockKind::Text, BlockKind::ToolCalls]);
        assert_eq!(s.stop_reason(), StopKind::ToolUse);
        s.set_stop("length").unwrap();
        assert_eq!(s.stop_reason(), StopKind::Length);
        let mut s = Scenario::default();
        s.set_reply("content_filter").unwrap();
        assert_eq!((s.blocks.as_slice(), s.stop), ([BlockKind::Text].as_slice(), Some(StopKind::ContentFilter)));
        assert!(s.set_reply("text+video").is_err());
        assert!(s.set_stop("later").is_err());
    }

    #[test]
    fn error_statuses_differ_where_the_providers_do() {
        assert_eq!(ErrorKind::Overloaded.status(true), 529);
        assert_eq!(ErrorKind::Overloaded.status(false), 503);
        assert_eq!(ErrorKind::Quota.status(true), 400);
        assert_eq!(ErrorKind::parse("context_length").map(|k| k.status(false)), Some(400));
        assert_eq!(ErrorKind::parse("teapot"), None);
    }
}
