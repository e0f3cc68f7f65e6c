//! Model providers behind one trait. A provider turns a `ChatRequest` (history plus
//! the new message, already in the gateway's neutral shape) into a `ChatStream` of text
//! deltas ending with the provider's usage. Non-streaming clients simply drain the
//! stream. Dispatch is by enum (`ProviderImpl`, `ChatStream`), not `dyn`, so the
//! per-chunk call is static and allocation-free. Wire types stay private to each
//! adapter file (`openai`, `anthropic`, `openai_compat`, `mock`); `policy` holds the
//! retry/key/breaker policy shared by the HTTP adapters, `resilience` its pieces.

pub mod anthropic;
mod error;
pub mod gemini;
pub mod mock;
pub mod openai;
pub mod openai_compat;
pub mod policy;
pub mod resilience;
pub mod stream;

use std::rc::Rc;
use std::sync::Arc;

use crate::chat::{FinishReason, Message, Params, ToolCall, Usage};
use crate::config::{ProviderConfig, ProviderKind};

use crate::upstream::{tls, Client};
pub use error::{is_context_length, ErrorInfo, FailureKind, ProviderError};

/// What a provider is asked for: the conversation and the request's settings in the
/// canonical shape (`chat`); each adapter encodes what its API can carry (the turn
/// engine refused or dropped the rest before, `unsupported`).
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The model name the provider knows (`models[].upstream`).
    pub upstream_model: String,
    pub messages: Vec<Message>,
    /// Tools, tool choice, sampling settings (shared by the attempts of a chain).
    pub params: Arc<Params>,
    /// Most tokens to generate: the request's, capped by the model's `max_tokens`.
    pub max_tokens: Option<u32>,
    /// Ask the provider to stream (the client streams); otherwise one whole answer.
    pub stream: bool,
}

/// One step of a provider's answer, in order: text deltas and tool-call pieces as
/// they come, then `Finish`, then `Done` with the usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    Delta(String),
    /// A piece of tool call `index` (0, 1, ... in the order the calls began): the
    /// first piece of a call has its `id` and `name`; `arguments` are JSON text
    /// fragments to append.
    ToolCall {
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    Finish(FinishReason),
    Done(Usage),
}

/// A whole (non-streamed) answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish: FinishReason,
    pub usage: Usage,
}

impl Answer {
    /// The assistant message this answer is, as a session stores it (its tool calls
    /// included, so a tool-call turn survives in the history).
    pub fn to_message(&self) -> Message {
        Message::assistant(self.text.as_str(), self.tool_calls.clone())
    }
}

/// The settings of `params` a provider of `kind` cannot carry, by their OpenAI names.
/// The turn engine refuses them (400 naming field and provider) or, with
/// `drop_unsupported_params`, drops them and says so in `X-Clawgate-Dropped-Params`.
/// Unknown OpenAI fields (`Params::openai_extra`) travel only to OpenAI-format kinds.
pub fn unsupported(kind: ProviderKind, params: &Params) -> Vec<String> {
    let same_format = matches!(kind, ProviderKind::OpenAi | ProviderKind::OpenAiCompat | ProviderKind::AzureOpenAi);
    let mut out: Vec<String> = known_unsupported(kind, params).into_iter().map(str::to_string).collect();
    if !same_format && kind != ProviderKind::Mock {
        out.extend(params.openai_extra.iter().map(|(name, _)| name.clone()));
    }
    out
}

fn known_unsupported(kind: ProviderKind, params: &Params) -> Vec<&'static str> {
    let cannot: &[&str] = match kind {
        ProviderKind::Anthropic => &[
            "seed",
            "n",
            "presence_penalty",
            "frequency_penalty",
            "logprobs",
            "top_logprobs",
            "response_format",
            "reasoning_effort",
        ],
        ProviderKind::OpenAi | ProviderKind::OpenAiCompat | ProviderKind::AzureOpenAi => &["top_k", "thinking"],
        ProviderKind::Gemini => &[
            "logprobs",
            "top_logprobs",
            "response_format",
            "user",
            "reasoning_effort",
            "thinking",
            "parallel_tool_calls",
        ],
        ProviderKind::Mock => &[],
    };
    params.set_fields().into_iter().filter(|f| cannot.contains(f)).collect()
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
    /// A whole (non-streamed) answer, handed out as the events a stream would give.
    Complete(std::collections::VecDeque<StreamEvent>),
    OpenAi(openai::Stream, policy::InFlight),
    Anthropic(anthropic::Stream, policy::InFlight),
    Gemini(gemini::Stream, policy::InFlight),
}

impl ChatStream {
    /// The events of a whole answer: its text, its tool calls, its finish, its usage.
    pub fn complete(answer: Answer) -> Self {
        let mut events = std::collections::VecDeque::with_capacity(3 + answer.tool_calls.len());
        if !answer.text.is_empty() {
            events.push_back(StreamEvent::Delta(answer.text));
        }
        for (i, call) in answer.tool_calls.into_iter().enumerate() {
            events.push_back(StreamEvent::ToolCall {
                index: i as u32,
                id: Some(call.id),
                name: Some(call.name),
                arguments: call.arguments,
            });
        }
        events.push_back(StreamEvent::Finish(answer.finish));
        events.push_back(StreamEvent::Done(answer.usage));
        ChatStream::Complete(events)
    }

    /// The next event; `None` after `Done`.
    pub async fn next(&mut self) -> Result<Option<StreamEvent>, ProviderError> {
        match self {
            ChatStream::Mock(s) => s.next().await,
            ChatStream::Complete(events) => Ok(events.pop_front()),
            ChatStream::OpenAi(s, _) => s.next().await,
            ChatStream::Anthropic(s, _) => s.next().await,
            ChatStream::Gemini(s, _) => s.next().await,
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
            ProviderKind::OpenAi
            | ProviderKind::Anthropic
            | ProviderKind::OpenAiCompat
            | ProviderKind::Gemini
            | ProviderKind::AzureOpenAi => match policy::HttpProvider::new(cfg, tls, client.clone(), health) {
                Ok(p) => ProviderImpl::Http(Box::new(p)),
                Err(e) => ProviderImpl::Broken(e),
            },
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
