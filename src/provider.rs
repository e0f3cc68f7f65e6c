//! Model providers behind one trait. A provider turns a `ChatRequest` (history plus
//! the new message, already in the gateway's neutral shape) into a `ChatStream` of text
//! deltas ending with the provider's usage. Non-streaming clients simply drain the
//! stream. Dispatch is by enum (`ProviderImpl`), not `dyn`, so the per-chunk call is
//! static and allocation-free. Wire types stay private to each adapter file.

pub mod mock;

use std::rc::Rc;
use std::sync::Arc;

use crate::config::{Config, ProviderConfig, ProviderKind};
use crate::error::{ApiError, ErrorCode};

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
        self.prompt_tokens + self.completion_tokens
    }
}

/// What a provider is asked for.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The model name the provider knows (`models[].upstream`).
    pub upstream_model: String,
    pub messages: Vec<Message>,
    pub max_tokens: Option<u32>,
}

/// One step of a provider's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    Delta(String),
    Done(Usage),
}

/// A provider failure, before or during the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    pub timeout: bool,
    pub message: String,
}

impl ProviderError {
    pub fn upstream(message: impl Into<String>) -> Self {
        ProviderError { timeout: false, message: message.into() }
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        ProviderError { timeout: true, message: message.into() }
    }

    pub fn to_api(&self) -> ApiError {
        let code = if self.timeout { ErrorCode::UpstreamTimeout } else { ErrorCode::UpstreamError };
        ApiError::new(code, self.message.clone())
    }
}

/// The provider interface: start a chat and stream its answer.
// Futures run on one worker thread and are never sent, so no `Send` bound is wanted.
#[allow(async_fn_in_trait)]
pub trait Provider {
    /// Sends the request upstream. `Ok` means the provider accepted it and the stream
    /// is ready to read; errors before that point may be retried by the caller.
    async fn chat(&self, req: ChatRequest) -> Result<ChatStream, ProviderError>;
}

/// A provider's answer in progress.
pub enum ChatStream {
    Mock(mock::MockStream),
}

impl ChatStream {
    /// The next delta, `Done` with usage at the end, then `None`.
    pub async fn next(&mut self) -> Result<Option<StreamEvent>, ProviderError> {
        match self {
            ChatStream::Mock(s) => s.next().await,
        }
    }
}

/// A configured provider instance owned by one worker.
pub enum ProviderImpl {
    Mock(mock::MockProvider),
    /// Configured, but its adapter is not built into this version.
    Unavailable(String),
}

impl ProviderImpl {
    pub fn new(cfg: &ProviderConfig) -> Self {
        match cfg.kind {
            ProviderKind::Mock => ProviderImpl::Mock(mock::MockProvider::new(&cfg.mock)),
            ProviderKind::OpenAi | ProviderKind::Anthropic | ProviderKind::OpenAiCompat => {
                ProviderImpl::Unavailable(format!(
                    "provider {} ({}) has no adapter in this build",
                    cfg.name,
                    cfg.kind.as_str()
                ))
            }
        }
    }

    pub async fn chat(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        match self {
            ProviderImpl::Mock(p) => p.chat(req).await,
            ProviderImpl::Unavailable(msg) => Err(ProviderError::upstream(msg.clone())),
        }
    }
}

/// The providers of one worker, by config order.
pub struct Providers {
    list: Vec<(String, Rc<ProviderImpl>)>,
}

impl Providers {
    pub fn new(config: &Config) -> Self {
        let list = config
            .providers
            .iter()
            .map(|p| (p.name.clone(), Rc::new(ProviderImpl::new(p))))
            .collect();
        Providers { list }
    }

    pub fn get(&self, name: &str) -> Option<Rc<ProviderImpl>> {
        self.list.iter().find(|(n, _)| n == name).map(|(_, p)| p.clone())
    }
}

/// A rough token estimate (about four bytes a token) for quotas before the provider
/// reports real usage.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4).max(1)
}
