//! The provider-neutral part of a chat exchange: reading the fields the mock cares
//! about from an OpenAI or Anthropic request body, and the deterministic answer.
//!
//! The answer is `Echo: <text of the last user message>` (with any `[fault:...]`
//! directive cut out), split into content chunks of three words, each chunk keeping
//! the whitespace before its first word, so the chunks concatenate to the text.
//! `chunks=N` forces exactly N chunks, repeating the words when the text is shorter.
//! Usage is counted in words: prompt = sum over messages (and an Anthropic `system`)
//! of words + 3, completion = words of the answer. Bodies are parsed with sonic-rs
//! into borrowed fields; message content stays a `LazyValue` until it is needed,
//! because it may be a string or an array of content parts.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use sonic_rs::LazyValue;

use crate::fault::find_directive;

/// Words per content chunk when `chunks=N` is not given.
const WORDS_PER_CHUNK: usize = 3;

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    messages: Option<Vec<Message<'a>>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(borrow, default)]
    system: Option<LazyValue<'a>>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<LazyValue<'a>>,
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

/// What the mock needs from a chat request.
#[derive(Debug)]
pub struct Chat {
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub prompt_tokens: u64,
    /// Text of the last `user` message, directive included.
    pub last_user: String,
}

/// Why a body was refused, phrased like the provider would; `param` names the field.
#[derive(Debug)]
pub struct Invalid {
    pub message: String,
    pub param: Option<&'static str>,
}

/// Which provider's required fields to enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
}

/// Parses and checks a chat body.
pub fn parse(body: &[u8], dialect: Dialect) -> Result<Chat, Invalid> {
    let parsed: Body<'_> = sonic_rs::from_slice(body).map_err(|e| Invalid {
        message: format!("We could not parse the JSON body of your request. ({e})"),
        param: None,
    })?;
    let missing = |field: &'static str| match dialect {
        Dialect::OpenAi => Invalid { message: format!("Missing required parameter: '{field}'."), param: Some(field) },
        Dialect::Anthropic => Invalid { message: format!("{field}: Field required"), param: Some(field) },
    };
    let model = parsed.model.filter(|m| !m.is_empty()).ok_or_else(|| missing("model"))?.into_owned();
    let messages = parsed.messages.ok_or_else(|| missing("messages"))?;
    if dialect == Dialect::Anthropic && parsed.max_tokens.is_none() {
        return Err(missing("max_tokens"));
    }
    if messages.is_empty() {
        return Err(Invalid { message: "messages: at least one message is required".into(), param: Some("messages") });
    }
    let mut prompt_tokens = 0u64;
    let mut last_user = None;
    for m in &messages {
        let text = content_text(m.content.as_ref());
        prompt_tokens += words(&text) + 3;
        if m.role.as_deref() == Some("user") {
            last_user = Some(text);
        }
    }
    if let Some(system) = parsed.system.as_ref() {
        prompt_tokens += words(&content_text(Some(system))) + 3;
    }
    Ok(Chat {
        model,
        stream: parsed.stream.unwrap_or(false),
        include_usage: parsed.stream_options.and_then(|o| o.include_usage).unwrap_or(false),
        prompt_tokens,
        last_user: last_user.map(Cow::into_owned).unwrap_or_default(),
    })
}

/// The text of a message's content: a string, or the `text` of its content parts
/// joined by a space; anything else (null, tool calls) has no text.
fn content_text<'a>(content: Option<&LazyValue<'a>>) -> Cow<'a, str> {
    let Some(raw) = content.map(|c| c.as_raw_str()) else { return Cow::Borrowed("") };
    match raw.as_bytes().first() {
        Some(b'"') => sonic_rs::from_str::<String>(raw).map(Cow::Owned).unwrap_or_default(),
        Some(b'[') => {
            let parts: Vec<Part<'_>> = sonic_rs::from_str(raw).unwrap_or_default();
            let texts: Vec<&str> = parts.iter().filter_map(|p| p.text.as_deref()).collect();
            Cow::Owned(texts.join(" "))
        }
        _ => Cow::Borrowed(""),
    }
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The answer text and its content chunks (byte ranges into `text`).
#[derive(Debug)]
pub struct Reply {
    pub text: String,
    pub chunks: Vec<Range<usize>>,
    pub words: u64,
}

impl Reply {
    /// Builds the answer to `last_user`; `force` is `chunks=N`.
    pub fn echo(last_user: &str, force: Option<usize>) -> Reply {
        let content = match find_directive(last_user) {
            Some((range, _)) => {
                let mut s = String::with_capacity(last_user.len());
                s.push_str(&last_user[..range.start]);
                s.push_str(&last_user[range.end..]);
                s.trim().to_string()
            }
            None => last_user.to_string(),
        };
        let mut text = format!("Echo: {content}");
        let mut starts = token_starts(&text);
        let chunks = match force {
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
                (0..n).map(|j| bound(&starts, &text, j * t / n)..bound(&starts, &text, (j + 1) * t / n)).collect()
            }
            None => {
                let t = starts.len();
                (0..t.div_ceil(WORDS_PER_CHUNK))
                    .map(|j| {
                        bound(&starts, &text, j * WORDS_PER_CHUNK)..bound(&starts, &text, (j + 1) * WORDS_PER_CHUNK)
                    })
                    .collect()
            }
        };
        let words = words(&text);
        Reply { text, chunks, words }
    }

    /// The text of content chunk `i`.
    pub fn chunk(&self, i: usize) -> &str {
        self.chunks.get(i).and_then(|r| self.text.get(r.clone())).unwrap_or("")
    }
}

/// One answer being rendered: everything a provider's encoder needs.
pub struct Turn<'a> {
    /// `chatcmpl-...` or `msg_...`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    pub model: &'a str,
    pub prompt_tokens: u64,
    pub include_usage: bool,
    pub reply: &'a Reply,
}

impl Turn<'_> {
    pub fn completion_tokens(&self) -> u64 {
        self.reply.words
    }
}

/// `prefix` followed by `len` random ASCII letters and digits.
pub fn random_id(prefix: &str, len: usize) -> String {
    let mut id = String::with_capacity(prefix.len() + len);
    id.push_str(prefix);
    id.extend(std::iter::repeat_with(fastrand::alphanumeric).take(len));
    id
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
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

    fn chunks(r: &Reply) -> Vec<&str> {
        (0..r.chunks.len()).map(|i| r.chunk(i)).collect()
    }

    #[test]
    fn echo_splits_into_three_word_chunks_that_concatenate() {
        let r = Reply::echo("one two  three four five", None);
        assert_eq!(r.text, "Echo: one two  three four five");
        assert_eq!(chunks(&r), ["Echo: one two", "  three four five"]);
        assert_eq!(r.words, 6);
    }

    #[test]
    fn forced_chunk_counts_repeat_or_merge_words() {
        let r = Reply::echo("hi [fault:chunks=5]", Some(5));
        assert_eq!(r.text, "Echo: hi Echo: hi Echo:");
        assert_eq!(chunks(&r), ["Echo:", " hi", " Echo:", " hi", " Echo:"]);
        let r = Reply::echo("a b c d e", Some(2));
        assert_eq!(chunks(&r).concat(), r.text);
        assert_eq!(r.chunks.len(), 2);
        assert!(Reply::echo("x", Some(0)).chunks.is_empty());
    }

    #[test]
    fn parses_openai_and_anthropic_bodies() {
        let body = br#"{"model":"gpt","stream":true,"stream_options":{"include_usage":true},
            "messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi \"there\""}]}]}"#;
        let c = parse(body, Dialect::OpenAi).unwrap();
        assert_eq!((c.model.as_str(), c.stream, c.include_usage), ("gpt", true, true));
        assert_eq!(c.last_user, "hi \"there\"");
        assert_eq!(c.prompt_tokens, (2 + 3) + (2 + 3));
        let body = br#"{"model":"claude","system":"sys","messages":[{"role":"user","content":"hello"}]}"#;
        assert_eq!(parse(body, Dialect::Anthropic).unwrap_err().param, Some("max_tokens"));
        let body =
            br#"{"model":"claude","max_tokens":5,"system":"sys","messages":[{"role":"user","content":"hello"}]}"#;
        assert_eq!(parse(body, Dialect::Anthropic).unwrap().prompt_tokens, 8);
        assert!(parse(b"{", Dialect::OpenAi).is_err());
    }
}
