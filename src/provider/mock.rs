//! The built-in mock provider: deterministic, offline, and the embedded default, so
//! `cargo run --release` is a working demo with no keys and no network. The reply is
//! derived from the input (`You said "<last user message>". This is turn <n> of our
//! conversation.`), so a test can see that the history reached the provider. It is
//! streamed in chunks of `chunk_words` words with `chunk_delay_ms` between them, and
//! usage counts one token per word (plus 3 per message for the prompt).
//!
//! A user message starting with one of these markers picks a failure, for tests and
//! demos (TensorZero's dummy provider picks behaviour by model name the same way):
//! `[mock:error]` fails before the stream, `[mock:error-mid]` fails after the first chunk.

use std::collections::VecDeque;
use std::time::Duration;

use crate::chat::{FinishReason, MessageRole, Usage};
use crate::config::MockConfig;
use crate::provider::{ChatRequest, ChatStream, Provider, ProviderError, StreamEvent};

/// The mock provider's settings.
#[derive(Debug, Clone)]
pub struct MockProvider {
    chunk_delay: Duration,
    chunk_words: usize,
}

impl MockProvider {
    pub fn new(cfg: &MockConfig) -> Self {
        MockProvider { chunk_delay: Duration::from_millis(cfg.chunk_delay_ms), chunk_words: cfg.chunk_words.max(1) }
    }
}

/// The deterministic reply to a conversation.
pub fn reply_text(req: &ChatRequest) -> String {
    let last = req.messages.iter().rev().find(|m| m.role == MessageRole::User).map(|m| &*m.content).unwrap_or("");
    let turn = req.messages.iter().filter(|m| m.role == MessageRole::User).count();
    format!("You said \"{last}\". This is turn {turn} of our conversation.")
}

fn count_words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Splits `text` into chunks of `words` words, each keeping its leading space, so the
/// chunks concatenate back to the text exactly.
pub fn chunk_text(text: &str, words: usize) -> VecDeque<String> {
    let mut out = VecDeque::new();
    let mut start = 0;
    let mut seen = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        let ws = c.is_whitespace();
        if !ws && !in_word {
            if seen == words {
                out.push_back(text[start..i].trim_end().to_string());
                start = text[..i].trim_end().len();
                seen = 0;
            }
            seen += 1;
        }
        in_word = !ws;
    }
    if start < text.len() {
        out.push_back(text[start..].to_string());
    }
    out
}

impl Provider for MockProvider {
    async fn chat(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        let last_user = req.messages.iter().rev().find(|m| m.role == MessageRole::User);
        let marker = last_user.map(|m| &*m.content).unwrap_or("");
        if marker.starts_with("[mock:error]") {
            return Err(ProviderError::upstream("mock provider failed as asked"));
        }
        let text = reply_text(&req);
        let prompt_tokens: u64 = req.messages.iter().map(|m| count_words(&m.content) + 3).sum();
        let usage = Usage { prompt_tokens, completion_tokens: count_words(&text), ..Usage::default() };
        Ok(ChatStream::Mock(MockStream {
            chunks: chunk_text(&text, self.chunk_words),
            usage,
            delay: self.chunk_delay,
            fail_mid: marker.starts_with("[mock:error-mid]"),
            sent: 0,
            finished: false,
            done: false,
        }))
    }
}

/// The mock's answer in progress.
pub struct MockStream {
    chunks: VecDeque<String>,
    usage: Usage,
    delay: Duration,
    fail_mid: bool,
    sent: usize,
    finished: bool,
    done: bool,
}

impl MockStream {
    pub async fn next(&mut self) -> Result<Option<StreamEvent>, ProviderError> {
        if self.done {
            return Ok(None);
        }
        if self.fail_mid && self.sent == 1 {
            self.done = true;
            return Err(ProviderError::upstream("mock provider failed mid-stream as asked"));
        }
        if !self.delay.is_zero() && self.sent > 0 {
            monoio::time::sleep(self.delay).await;
        }
        match self.chunks.pop_front() {
            Some(chunk) => {
                self.sent += 1;
                Ok(Some(StreamEvent::Delta(chunk)))
            }
            None if !self.finished => {
                self.finished = true;
                Ok(Some(StreamEvent::Finish(FinishReason::Stop)))
            }
            None => {
                self.done = true;
                Ok(Some(StreamEvent::Done(self.usage)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_concatenate_back_to_the_text() {
        let text = "You said \"hi  there\". This is turn 1 of our conversation.";
        for words in 1..5 {
            let chunks = chunk_text(text, words);
            assert_eq!(chunks.iter().map(String::as_str).collect::<String>(), text);
            assert!(chunks.len() > 1);
        }
        assert_eq!(chunk_text("Roses are red", 1), ["Roses", " are", " red"]);
    }
}
