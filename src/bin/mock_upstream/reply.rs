//! The deterministic answer, provider-neutral: its blocks and the order in which a
//! stream delivers their pieces.
//!
//! The text block is `Echo: <text of the last user message>` (any `[fault:...]`
//! directive cut out), split into content chunks of three words, each chunk keeping
//! the whitespace before its first word, so the chunks concatenate to the text;
//! `chunks=N` forces exactly N chunks, repeating the words when the text is shorter.
//! A thinking block is `Thinking about: <text>` in three-word chunks, then its
//! signature. A tool call names the request's tool (the k-th declared tool for the
//! k-th call, else the first, else `get_weather`) with fixed arguments
//! (`{"location":"San Francisco, CA","unit":"celsius"}`, then Tokyo for the second
//! parallel call), streamed in pieces of at most 12 bytes as the providers split
//! `arguments` / `partial_json`.
//!
//! A stream is a list of steps, one per piece: the faults `chunk-ms`,
//! `reset-mid-stream` and `stream-error` count steps. Token counts are words: the
//! text's, the thinking's, and a tool call's arguments split on whitespace.

use std::ops::Range;

use crate::fault::find_directive;
use crate::scenario::{BlockKind, Scenario, StopKind};

/// Words per content chunk when `chunks=N` is not given.
const WORDS_PER_CHUNK: usize = 3;
/// Largest piece of a tool call's arguments in one delta.
const ARG_PIECE: usize = 12;
/// The tool called when the request declares none.
pub const DEFAULT_TOOL: &str = "get_weather";
/// Arguments of the first and second call of an answer (then they alternate).
pub const TOOL_ARGS: [&str; 2] =
    [r#"{"location":"San Francisco, CA","unit":"celsius"}"#, r#"{"location":"Tokyo, Japan","unit":"celsius"}"#];
/// The signature of every thinking block (base64 of `mock-thinking-signature`).
pub const SIGNATURE: &str = "bW9jay10aGlua2luZy1zaWduYXR1cmU=";
/// The stop sequence reported when the request names none.
pub const DEFAULT_STOP_SEQUENCE: &str = "###";

/// One block of the answer.
#[derive(Debug)]
pub enum Block {
    Thinking {
        text: String,
        chunks: Vec<Range<usize>>,
    },
    Text {
        text: String,
        chunks: Vec<Range<usize>>,
    },
    /// The `ordinal`-th tool call of the answer (0-based): ids are derived from it.
    Tool {
        ordinal: usize,
        name: String,
        arguments: String,
        pieces: Vec<Range<usize>>,
    },
}

impl Block {
    /// Pieces a stream delivers for this block (a thinking block's last is its signature).
    fn steps(&self) -> usize {
        match self {
            Block::Thinking { chunks, .. } => chunks.len() + 1,
            Block::Text { chunks, .. } => chunks.len(),
            Block::Tool { pieces, .. } => pieces.len(),
        }
    }
}

/// One delta of a stream: piece `piece` of block `block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub block: usize,
    pub piece: usize,
}

/// The whole answer.
#[derive(Debug)]
pub struct Reply {
    pub blocks: Vec<Block>,
    pub steps: Vec<Step>,
    pub stop: StopKind,
    /// The sequence reported with `StopKind::StopSequence`.
    pub stop_sequence: String,
    /// Prompt tokens read from the cache (`cached=N`, at most the prompt).
    pub cached: u64,
}

/// What the request contributes to the answer.
#[derive(Debug, Default)]
pub struct Asked<'a> {
    pub last_user: &'a str,
    /// `chunks=N`.
    pub chunks: Option<usize>,
    /// Names of the declared tools, in order.
    pub tools: &'a [String],
    /// The first stop sequence of the request.
    pub stop_sequence: Option<&'a str>,
}

impl Reply {
    /// The plain echo answer (what every request gets without `reply=`).
    #[cfg(test)]
    pub fn echo(last_user: &str, chunks: Option<usize>) -> Reply {
        Reply::build(&Scenario::default(), &Asked { last_user, chunks, ..Asked::default() })
    }

    /// Builds the answer that `scenario` scripts for a request.
    pub fn build(scenario: &Scenario, asked: &Asked<'_>) -> Reply {
        let content = strip_directive(asked.last_user);
        let mut blocks = Vec::with_capacity(scenario.blocks.len() + 1);
        let mut calls = 0;
        for kind in &scenario.blocks {
            match kind {
                BlockKind::Thinking => {
                    let mut text = format!("Thinking about: {content}").trim_end().to_string();
                    let chunks = split_words(&mut text, None);
                    blocks.push(Block::Thinking { text, chunks });
                }
                BlockKind::Text => {
                    let mut text = format!("Echo: {content}");
                    let chunks = split_words(&mut text, asked.chunks);
                    blocks.push(Block::Text { text, chunks });
                }
                BlockKind::ToolCall | BlockKind::ToolCalls => {
                    let n = if *kind == BlockKind::ToolCall { 1 } else { 2 };
                    for _ in 0..n {
                        let name = asked.tools.get(calls).or(asked.tools.first()).map_or(DEFAULT_TOOL, String::as_str);
                        let arguments = TOOL_ARGS[calls % TOOL_ARGS.len()].to_string();
                        let pieces = split_bytes(&arguments, ARG_PIECE);
                        blocks.push(Block::Tool { ordinal: calls, name: name.to_string(), arguments, pieces });
                        calls += 1;
                    }
                }
            }
        }
        // A block with nothing to stream (`chunks=0`) is dropped unless it is alone.
        if blocks.len() > 1 {
            blocks.retain(|b| b.steps() > 0);
        }
        let steps = blocks
            .iter()
            .enumerate()
            .flat_map(|(block, b)| (0..b.steps()).map(move |piece| Step { block, piece }))
            .collect();
        Reply {
            blocks,
            steps,
            stop: scenario.stop_reason(),
            stop_sequence: asked.stop_sequence.unwrap_or(DEFAULT_STOP_SEQUENCE).to_string(),
            cached: scenario.cached,
        }
    }

    /// The text of step `i` (a thinking block's signature step gives the signature).
    pub fn piece(&self, i: usize) -> &str {
        let Some(step) = self.steps.get(i) else { return "" };
        let (text, ranges) = match self.blocks.get(step.block) {
            Some(Block::Thinking { text, chunks }) => (text, chunks),
            Some(Block::Text { text, chunks }) => (text, chunks),
            Some(Block::Tool { arguments, pieces, .. }) => (arguments, pieces),
            None => return "",
        };
        match ranges.get(step.piece) {
            Some(r) => text.get(r.clone()).unwrap_or(""),
            None => SIGNATURE,
        }
    }

    /// The text of the answer: its text blocks, concatenated.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for b in &self.blocks {
            if let Block::Text { text, .. } = b {
                out.push_str(text);
            }
        }
        out
    }

    pub fn has_text(&self) -> bool {
        self.blocks.iter().any(|b| matches!(b, Block::Text { .. }))
    }

    pub fn has_thinking(&self) -> bool {
        self.blocks.iter().any(|b| matches!(b, Block::Thinking { .. }))
    }

    /// The tool calls, in order.
    pub fn tools(&self) -> impl Iterator<Item = &Block> {
        self.blocks.iter().filter(|b| matches!(b, Block::Tool { .. }))
    }

    /// Output tokens other than thinking: the text's words and the tool arguments'.
    pub fn visible_tokens(&self) -> u64 {
        self.blocks
            .iter()
            .map(|b| match b {
                Block::Text { text, .. } => words(text),
                Block::Tool { arguments, .. } => words(arguments),
                Block::Thinking { .. } => 0,
            })
            .sum()
    }

    /// Thinking (reasoning) tokens.
    pub fn thinking_tokens(&self) -> u64 {
        self.blocks.iter().map(|b| if let Block::Thinking { text, .. } = b { words(text) } else { 0 }).sum()
    }
}

/// Whitespace-separated words.
pub fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The message without its `[fault:...]` directive, trimmed.
fn strip_directive(last_user: &str) -> String {
    match find_directive(last_user) {
        Some((range, _)) => {
            let mut s = String::with_capacity(last_user.len());
            s.push_str(&last_user[..range.start]);
            s.push_str(&last_user[range.end..]);
            s.trim().to_string()
        }
        None => last_user.to_string(),
    }
}

/// Splits `text` into chunks of three words, or exactly `force` chunks (repeating
/// words onto the end of `text` when it has fewer; `Some(0)` empties it).
fn split_words(text: &mut String, force: Option<usize>) -> Vec<Range<usize>> {
    let mut starts = token_starts(text);
    match force {
        Some(0) => {
            text.clear();
            Vec::new()
        }
        Some(n) => {
            if starts.len() < n {
                let pool: Vec<String> = text.split_whitespace().map(str::to_string).collect();
                let mut k = 0;
                while starts.len() < n {
                    starts.push(text.len());
                    text.push(' ');
                    text.push_str(pool.get(k % pool.len().max(1)).map_or("Echo:", String::as_str));
                    k += 1;
                }
            }
            let t = starts.len();
            (0..n).map(|j| bound(&starts, text, j * t / n)..bound(&starts, text, (j + 1) * t / n)).collect()
        }
        None => {
            let t = starts.len();
            (0..t.div_ceil(WORDS_PER_CHUNK))
                .map(|j| bound(&starts, text, j * WORDS_PER_CHUNK)..bound(&starts, text, (j + 1) * WORDS_PER_CHUNK))
                .collect()
        }
    }
}

/// Consecutive pieces of at most `max` bytes, cut at character boundaries.
fn split_bytes(text: &str, max: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + max).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if end == start {
            end = text[start..].chars().next().map_or(text.len(), |c| start + c.len_utf8());
        }
        out.push(start..end);
        start = end;
    }
    out
}

/// Byte offsets where tokens start: the first token starts at 0, every later one at
/// the whitespace before its word, so each token carries its leading space.
fn token_starts(text: &str) -> Vec<usize> {
    let mut starts = vec![0];
    let mut prev_ws = true;
    let mut seen_word = false;
    let mut ws_start = 0;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if !prev_ws {
                ws_start = i;
            }
            prev_ws = true;
        } else {
            if prev_ws && seen_word {
                starts.push(ws_start);
            }
            prev_ws = false;
            seen_word = true;
        }
    }
    starts
}

/// Start of token `i`, or the end of the text past the last token.
fn bound(starts: &[usize], text: &str, i: usize) -> usize {
    starts.get(i).copied().unwrap_or(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(r: &Reply) -> Vec<&str> {
        (0..r.steps.len()).map(|i| r.piece(i)).collect()
    }

    #[test]
    fn echo_splits_into_three_word_chunks_that_concatenate() {
        let r = Reply::echo("one two  three four five", None);
        assert_eq!(r.text(), "Echo: one two  three four five");
        assert_eq!(pieces(&r), ["Echo: one two", "  three four five"]);
        assert_eq!(r.visible_tokens(), 6);
        assert_eq!(r.stop, StopKind::End);
    }

    #[test]
    fn forced_chunk_counts_repeat_or_merge_words() {
        let r = Reply::echo("hi [fault:chunks=5]", Some(5));
        assert_eq!(r.text(), "Echo: hi Echo: hi Echo:");
        assert_eq!(pieces(&r), ["Echo:", " hi", " Echo:", " hi", " Echo:"]);
        let r = Reply::echo("a b c d e", Some(2));
        assert_eq!(pieces(&r).concat(), r.text());
        assert_eq!(r.steps.len(), 2);
        let r = Reply::echo("x", Some(0));
        assert!(r.steps.is_empty());
        assert_eq!(r.blocks.len(), 1, "a lone empty text block stays");
    }

    #[test]
    fn scripted_blocks_stream_in_order() {
        let mut s = Scenario::default();
        s.set_reply("thinking+text+tool_calls").unwrap();
        let tools = vec!["lookup".to_string()];
        let r = Reply::build(&s, &Asked { last_user: "hi there", tools: &tools, ..Asked::default() });
        assert_eq!(r.blocks.len(), 4);
        assert_eq!(r.stop, StopKind::ToolUse);
        let all = pieces(&r);
        assert_eq!(&all[..3], ["Thinking about: hi", " there", SIGNATURE]);
        assert_eq!(all[3], "Echo: hi there");
        assert_eq!(all[4..].concat(), [TOOL_ARGS[0], TOOL_ARGS[1]].concat());
        assert!(all[4..].iter().all(|p| p.len() <= ARG_PIECE));
        let names: Vec<&str> =
            r.tools().map(|b| if let Block::Tool { name, .. } = b { name.as_str() } else { "" }).collect();
        assert_eq!(names, ["lookup", "lookup"]);
        assert_eq!(r.thinking_tokens(), 4);
        assert_eq!(r.visible_tokens(), 3 + 3 + 2, "text, then the two calls' arguments");
        // `chunks=0` drops the text block when other blocks carry the answer.
        let r = Reply::build(&s, &Asked { last_user: "hi", chunks: Some(0), ..Asked::default() });
        assert!(!r.has_text());
    }

    #[test]
    fn splits_arguments_at_char_boundaries() {
        let ranges = split_bytes("ééééééé", 3);
        assert!(ranges.iter().all(|r| r.len() == 2));
        assert_eq!(ranges.len(), 7);
    }
}
