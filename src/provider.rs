//! Model providers behind one trait. A provider turns a `ChatRequest` (history plus
//! the new message, already in the gateway's neutral shape) into a `ChatStream` of text
//! deltas ending with the provider's usage. Non-streaming clients simply drain the
//! stream. Dispatch is by enum (`ProviderImpl`, `ChatStream`), not `dyn`, so the
//! per-chunk call is static and allocation-free. Wire types stay private to each
//! adapter file (`openai`, `anthropic`, `openai_compat`, `mock`); `policy` holds the
//! retry/key/breaker policy shared by the HTTP adapters, `resilience` its pieces.

pub mod anthropic;
mod error;
pub mod mock;
pub mod openai;
pub mod openai_compat;
pub mod policy;
pub mod resilience;
pub mod stream;

use std::rc::Rc;
use std::sync::Arc;

use crate::chat::{Message, Usage};
use crate::config::{ProviderConfig, ProviderKind};

use crate::upstream::{tls, Client};
pub use error::{is_context_length, ErrorInfo, FailureKind, ProviderError};

/// What a provider is asked for.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The model name the provider knows (`models[].upstream`).
    pub upstream_model: String,
    pub messages: Vec<Message>,
    pub max_tokens: Option<u32>,
    /// Ask the provider to stream (the client streams); otherwise one whole answer.
    pub stream: bool,
}

/// One step of a provider's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    Delta(String),
    Done(Usage),
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
    /// A whole (non-streamed) answer, handed out as one delta and its usage.
    Complete {
        text: Option<String>,
        usage: Usage,
        done: bool,
    },
    OpenAi(openai::Stream, policy::InFlight),
    Anthropic(anthropic::Stream, policy::InFlight),
}

impl ChatStream {
    pub fn complete(text: String, usage: Usage) -> Self {
        ChatStream::Complete { text: Some(text), usage, done: false }
    }

    /// The next delta, `Done` with usage at the end, then `None`.
    pub async fn next(&mut self) -> Result<Option<StreamEvent>, ProviderError> {
        match self {
            ChatStream::Mock(s) => s.next().await,
            ChatStream::Complete { text, usage, done } => Ok(match (text.take(), *done) {
                (Some(t), _) if !t.is_empty() => Some(StreamEvent::Delta(t)),
                (_, false) => {
                    *done = true;
                    Some(StreamEvent::Done(*usage))
                }
                (_, true) => None,
            }),
            ChatStream::OpenAi(s, _) => s.next().await,
            ChatStream::Anthropic(s, _) => s.next().await,
        }
    }
}

/// A configured provider instance owned by one worker.
pub enum ProviderImpl {
    Mock(mock::MockProvider),
    Http(Box<policy::HttpProvider>),
    /// Configured, but it could not be set up (the reason is the error every call gets).
    Broken(String),
}

impl ProviderImpl {
    pub fn new(
        cfg: &ProviderConfig,
        tls: Option<tls::Connector>,
        client: &Rc<Client>,
        health: Arc<resilience::ProviderHealth>,
    ) -> Self {
        match cfg.kind {
            ProviderKind::Mock => ProviderImpl::Mock(mock::MockProvider::new(&cfg.mock)),
            ProviderKind::OpenAi | ProviderKind::Anthropic | ProviderKind::OpenAiCompat => {
                match policy::HttpProvider::new(cfg, tls, client.clone(), health) {
                    Ok(p) => ProviderImpl::Http(Box::new(p)),
                    Err(e) => ProviderImpl::Broken(e),
                }
            }
        }
    }

    /// The HTTP provider behind this one if it speaks OpenAI's format.
    pub fn openai_http(&self) -> Option<&policy::HttpProvider> {
        match self {
            ProviderImpl::Http(p) if p.speaks_openai() => Some(p),
            _ => None,
        }
    }

    pub async fn chat(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        match self {
            ProviderImpl::Mock(p) => p.chat(req).await,
            ProviderImpl::Http(p) => p.chat(&req).await,
            ProviderImpl::Broken(msg) => Err(ProviderError::upstream(msg.clone())),
        }
    }
}

/// The providers of one worker, by config order.
pub struct Providers {
    list: Vec<(String, Rc<ProviderImpl>)>,
}

impl Providers {
    /// Builds this worker's providers from `providers` (config order); `health` gives
    /// each one its published health record, `tls[i]` the connector built for
    /// `providers[i]` at config load (`None`: plain HTTP or mock).
    pub fn new(
        providers: &[ProviderConfig],
        tls: &[Option<tls::Connector>],
        client: &Rc<Client>,
        mut health: impl FnMut(&str) -> Arc<resilience::ProviderHealth>,
    ) -> Self {
        let list = providers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let tls = tls.get(i).cloned().flatten();
                (p.name.clone(), Rc::new(ProviderImpl::new(p, tls, client, health(&p.name))))
            })
            .collect();
        Providers { list }
    }

    pub fn get(&self, name: &str) -> Option<Rc<ProviderImpl>> {
        self.list.iter().find(|(n, _)| n == name).map(|(_, p)| p.clone())
    }
}
