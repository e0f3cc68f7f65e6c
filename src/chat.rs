//! The chat types every layer shares: who wrote a message (`MessageRole`), a message
//! (`Message`, its text in an `Arc<str>` so a history moves between cores and into a
//! provider request without copying), the provider's token accounting (`Usage`) and
//! its rendering in the gateway protocol (`UsageView`, camelCase as PROTOCOL.md fixes
//! it). They sit below the providers (DESIGN.md "Layers", layer 1) so that sessions,
//! quotas and front doors share them without importing an adapter.

use std::sync::Arc;

use serde::Serialize;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    System,
    User,
    Assistant,
}

/// One message of a conversation. Content is shared (`Arc<str>`) so a history can be
/// handed to another core or a provider without copying text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: MessageRole,
    pub content: Arc<str>,
}

/// Token accounting reported by the provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        // Counts come from providers: a hostile one must not overflow the sum.
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// `usage` as the gateway protocol renders it (`/api/chat`, SSE `done`, WebSocket `done`):
/// `{"promptTokens","completionTokens","totalTokens"}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl From<Usage> for UsageView {
    fn from(u: Usage) -> Self {
        UsageView { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, total_tokens: u.total() }
    }
}

/// A rough token estimate (about four bytes a token) for quotas before the provider
/// reports real usage.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4).max(1)
}
