//! OpenAI-compatible servers (Ollama, vLLM, OpenRouter, Groq, LM Studio, DeepSeek and
//! the like): OpenAI's wire format at any base URL, with an optional key (none sent
//! when none is configured) and extra headers from the config. Everything but what
//! differs is the OpenAI adapter's: they know `max_tokens` (not always
//! `max_completion_tokens`), and their embeddings and chat are taken as they are.

use std::borrow::Cow;

use bytes::Bytes;

use crate::provider::openai::{self, BEARER};
use crate::provider::{stream, Adapter, Answer, ChatRequest, ErrorInfo, KeyHeader, NativeApi, ProviderError};

/// An OpenAI-compatible server (`kind = "openai_compat"`).
pub struct OpenAiCompat;

/// The chat path below the base URL (`/chat/completions`, as OpenAI's).
pub const CHAT_PATH: &str = "/chat/completions";

impl Adapter for OpenAiCompat {
    fn key_header(&self) -> KeyHeader {
        BEARER
    }

    fn cannot_carry(&self) -> &'static [&'static str] {
        &["top_k"]
    }

    fn carries_openai_extras(&self) -> bool {
        true
    }

    fn chat_path(&self, _model: &str, _stream: bool) -> Cow<'static, str> {
        Cow::Borrowed(CHAT_PATH)
    }

    fn native_path(&self, api: NativeApi, _model: &str) -> Option<Cow<'static, str>> {
        match api {
            NativeApi::ChatCompletions => Some(Cow::Borrowed(CHAT_PATH)),
            NativeApi::Embeddings => Some(Cow::Borrowed("/embeddings")),
            NativeApi::Responses | NativeApi::Messages | NativeApi::CountTokens => None,
        }
    }

    fn encode(&self, req: &ChatRequest) -> Result<Bytes, ProviderError> {
        openai::encode(req, false)
    }

    fn decode(&self, _req: &ChatRequest, body: &[u8]) -> Result<Answer, ProviderError> {
        openai::decode_completion(body)
    }

    fn events(&self, _req: &ChatRequest) -> Box<dyn stream::Events> {
        Box::new(openai::Events::default())
    }

    fn error_info(&self, body: &[u8]) -> Option<ErrorInfo> {
        openai::error_info(body)
    }
}
