//! Model providers behind two traits. `Provider` is what the turn engine calls: start a
//! chat (`ChatRequest`, the conversation and settings in the canonical shape of
//! `chat`) and read its answer as a `ChatStream` of canonical events (text, reasoning
//! and tool-call deltas, the finish reason, the usage); non-streaming clients drain
//! the stream. Two implementations: the built-in `mock`, and `policy::HttpProvider`,
//! which owns the retry/key/breaker policy of every provider reached over HTTP and
//! speaks through an `Adapter`. An `Adapter` is one provider API's wire format:
//! request encoding, answer decoding, stream events, error bodies, paths and key
//! header, with its wire types private to its file (`openai`, `openai_compat`,
//! `azure`, `anthropic`, `gemini`). Adding a provider API is one adapter file and one
//! arm in `adapter`.
//!
//! Stream dispatch is one `Box<dyn stream::Events>` call per SSE event (the event's
//! JSON parse costs far more), so a new adapter adds no `ChatStream` variant.

pub mod anthropic;
pub mod azure;
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

use std::borrow::Cow;

use bytes::Bytes;

use crate::chat::{FinishReason, Message, Params, Reasoning, ToolCall, Usage};
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
    /// A piece of the model's reasoning (Anthropic `thinking_delta`, Gemini thought
    /// parts, `reasoning_content` of OpenAI-compatible servers): `text` to append, and
    /// the block's `signature` when the provider sends it (Anthropic's, needed to send
    /// the thinking back in a later turn).
    Reasoning {
        text: String,
        signature: Option<String>,
    },
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
    /// The model's reasoning, when the provider shows it.
    pub reasoning: Reasoning,
    pub tool_calls: Vec<ToolCall>,
    pub finish: FinishReason,
    pub usage: Usage,
}

impl Answer {
    /// The assistant message this answer is, as a session stores it (its tool calls
    /// included, so a tool-call turn survives in the history).
    pub fn to_message(&self) -> Message {
        Message::assistant(self.text.as_str(), self.tool_calls.clone()).with_reasoning(&self.reasoning)
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

/// A request format a front door receives that some providers take as is: the
/// pass-through (model spliced, body untouched) needs no translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeApi {
    /// OpenAI `POST /chat/completions`.
    ChatCompletions,
    /// Anthropic `POST /v1/messages`.
    Messages,
    /// Anthropic `POST /v1/messages/count_tokens`.
    CountTokens,
    /// OpenAI `POST /responses`.
    Responses,
    /// OpenAI `POST /embeddings`.
    Embeddings,
}

/// An embeddings call in the canonical shape, for a provider whose API has its own
/// embeddings format (`Adapter::encode_embeddings`): OpenAI's `/embeddings` request
/// reduced to what every embeddings API takes.
#[derive(Debug, Clone, Copy)]
pub struct EmbedRequest<'a> {
    /// The model name the provider knows (`models[].upstream`).
    pub upstream_model: &'a str,
    /// The texts to embed, in order; one vector comes back per text.
    pub inputs: &'a [Cow<'a, str>],
    /// OpenAI's `dimensions`: the size of each vector, when the request sets it.
    pub dimensions: Option<u32>,
}

/// The header that carries a provider key: its name, and whether the value is
/// `Bearer <key>` (OpenAI) or the key alone (`x-api-key`, `api-key`, `x-goog-api-key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHeader {
    pub name: &'static str,
    pub bearer: bool,
}

/// One provider API's wire format (see the module doc). Implementations are plain
/// values built from the provider's config; every method is pure (no I/O): the
/// `policy::HttpProvider` around them sends, retries and reads.
pub trait Adapter {
    /// The header that carries the key.
    fn key_header(&self) -> KeyHeader;

    /// A header every call carries besides the key (Anthropic's `anthropic-version`).
    fn version_header(&self) -> Option<(&'static str, &str)> {
        None
    }

    /// The settings of the canonical request this API cannot carry, by their OpenAI
    /// names (`Params::set_fields`): the turn engine refuses them (400 naming field and
    /// provider) or, with `drop_unsupported_params`, drops them and lists them.
    fn cannot_carry(&self) -> &'static [&'static str];

    /// Whether unknown OpenAI request fields (`Params::openai_extra`) can be sent as
    /// they came (OpenAI's own format); elsewhere they cannot be carried.
    fn carries_openai_extras(&self) -> bool {
        false
    }

    /// The path of a chat call for `model` below the base URL; `stream` when the
    /// answer is to be streamed (Gemini names another method).
    fn chat_path(&self, model: &str, stream: bool) -> Cow<'static, str>;

    /// The path where this API takes a request of format `api` as is (the
    /// pass-through), for `model` (Azure's path names the deployment); `None` when it
    /// does not speak that format.
    fn native_path(&self, _api: NativeApi, _model: &str) -> Option<Cow<'static, str>> {
        None
    }

    /// The path of an embeddings call in this API's own format, for a provider that
    /// does not take OpenAI's `/embeddings` as is (`native_path`) but can embed after
    /// translation (Gemini's `batchEmbedContents`); `None` when it has no such API.
    fn embeddings_path(&self, _model: &str) -> Option<Cow<'static, str>> {
        None
    }

    /// Most texts one embeddings call may carry (longer requests are split).
    fn embeddings_batch(&self) -> usize {
        2048
    }

    /// The body of an embeddings call (`embeddings_path`) for `req`.
    fn encode_embeddings(&self, _req: &EmbedRequest<'_>) -> Result<Bytes, ProviderError> {
        Err(ProviderError::upstream("this provider API has no embeddings call"))
    }

    /// The vectors of an answer to `encode_embeddings`, one per input, in input order.
    fn decode_embeddings(&self, _body: &[u8]) -> Result<Vec<Vec<f32>>, ProviderError> {
        Err(ProviderError::upstream("this provider API has no embeddings call"))
    }

    /// The request body of a chat call.
    fn encode(&self, req: &ChatRequest) -> Result<Bytes, ProviderError>;

    /// A whole (non-streamed) answer to `req`.
    fn decode(&self, req: &ChatRequest, body: &[u8]) -> Result<Answer, ProviderError>;

    /// The reader of a streamed answer to `req`, one SSE event at a time.
    fn events(&self, req: &ChatRequest) -> Box<dyn stream::Events>;

    /// The message, type and code of an error body in this API's shape, if it is one.
    fn error_info(&self, body: &[u8]) -> Option<ErrorInfo>;
}

/// The adapter of an HTTP provider's kind (one arm per provider API); `None` for the
/// built-in mock, which is not reached over HTTP.
pub fn adapter(cfg: &ProviderConfig) -> Option<Box<dyn Adapter>> {
    Some(match cfg.kind {
        ProviderKind::OpenAi => Box::new(openai::OpenAi),
        ProviderKind::OpenAiCompat => Box::new(openai_compat::OpenAiCompat),
        ProviderKind::AzureOpenAi => Box::new(azure::AzureOpenAi::new(cfg)),
        ProviderKind::Anthropic => Box::new(anthropic::Anthropic::new(cfg)),
        ProviderKind::Gemini => Box::new(gemini::Gemini),
        ProviderKind::Mock => return None,
    })
}

/// The settings of `params` that `cannot` names (an adapter's `cannot_carry`), plus
/// what no provider is sent by a translated turn: the unknown OpenAI fields when the
/// API is not OpenAI's (`extras` false), another format's unknown fields
/// (`Params::foreign`), and `n` > 1 (a canonical answer is one choice;
/// `n` is served by the pass-through only).
pub fn unsupported(cannot: &[&str], extras: bool, params: &Params) -> Vec<String> {
    let mut out: Vec<String> =
        params.set_fields().into_iter().filter(|f| *f == "n" || cannot.contains(f)).map(str::to_string).collect();
    if !extras {
        out.extend(params.openai_extra.iter().map(|(name, _)| name.clone()));
    }
    out.extend(params.foreign.iter().cloned());
    out
}

/// A provider's answer in progress.
// The SSE variant is large, but a turn holds one stream for its life and never moves
// it on the per-event path; boxing would add an allocation to every turn.
#[allow(clippy::large_enum_variant)]
pub enum ChatStream {
    Mock(mock::MockStream),
    /// A whole (non-streamed) answer, handed out as the events a stream would give.
    Complete(std::collections::VecDeque<StreamEvent>),
    /// A provider's event stream, read by its adapter, holding its key's in-flight count.
    Sse(stream::SseStream, policy::InFlight),
}

impl ChatStream {
    /// The events of a whole answer: its text, its tool calls, its finish, its usage.
    pub fn complete(answer: Answer) -> Self {
        let mut events = std::collections::VecDeque::with_capacity(4 + answer.tool_calls.len());
        if !answer.reasoning.is_empty() {
            events.push_back(StreamEvent::Reasoning {
                text: answer.reasoning.text,
                signature: answer.reasoning.signature,
            });
        }
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
            ChatStream::Sse(s, _) => s.next().await,
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
        let Some(adapter) = adapter(cfg) else { return ProviderImpl::Mock(mock::MockProvider::new(&cfg.mock)) };
        match policy::HttpProvider::new(cfg, adapter, tls, client.clone(), health) {
            Ok(p) => ProviderImpl::Http(Box::new(p)),
            Err(e) => ProviderImpl::Broken(e),
        }
    }

    /// The HTTP provider behind this one if it takes requests of format `api` as they
    /// are (the pass-through).
    pub fn native(&self, api: NativeApi) -> Option<&policy::HttpProvider> {
        match self {
            ProviderImpl::Http(p) if p.speaks(api) => Some(p),
            _ => None,
        }
    }

    /// The settings of `params` this provider cannot carry (see `unsupported`); the
    /// mock takes everything but `n` > 1.
    pub fn unsupported(&self, params: &Params) -> Vec<String> {
        match self {
            ProviderImpl::Http(p) => p.unsupported(params),
            ProviderImpl::Mock(_) | ProviderImpl::Broken(_) => unsupported(&[], true, params),
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
