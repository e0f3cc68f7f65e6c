//! Azure OpenAI (`kind = "azure_openai"`,
//! https://learn.microsoft.com/azure/ai-services/openai/reference): OpenAI's wire
//! format, with the deployment in the path
//! (`{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...`, the
//! deployment being the model's `upstream` name), the key in `api-key`, and the API
//! version from `api_version` (never parsed out of `base_url`). Bodies, answers,
//! events and errors are the OpenAI adapter's.

use std::borrow::Cow;

use bytes::Bytes;

use crate::config::ProviderConfig;
use crate::provider::openai;
use crate::provider::{stream, Adapter, Answer, ChatRequest, ErrorInfo, KeyHeader, NativeApi, ProviderError};

/// An Azure OpenAI resource.
pub struct AzureOpenAi {
    api_version: String,
}

impl AzureOpenAi {
    pub fn new(cfg: &ProviderConfig) -> Self {
        AzureOpenAi { api_version: cfg.api_version.clone() }
    }

    fn deployment_path(&self, deployment: &str, operation: &str) -> Cow<'static, str> {
        Cow::Owned(format!("/openai/deployments/{deployment}/{operation}?api-version={}", self.api_version))
    }
}

impl Adapter for AzureOpenAi {
    fn key_header(&self) -> KeyHeader {
        KeyHeader { name: "api-key", bearer: false }
    }

    fn cannot_carry(&self) -> &'static [&'static str] {
        &["top_k"]
    }

    fn carries_openai_extras(&self) -> bool {
        true
    }

    fn chat_path(&self, model: &str, _stream: bool) -> Cow<'static, str> {
        self.deployment_path(model, "chat/completions")
    }

    fn native_path(&self, api: NativeApi, model: &str) -> Option<Cow<'static, str>> {
        match api {
            NativeApi::ChatCompletions => Some(self.deployment_path(model, "chat/completions")),
            NativeApi::Embeddings => Some(self.deployment_path(model, "embeddings")),
            NativeApi::Responses | NativeApi::Messages | NativeApi::CountTokens => None,
        }
    }

    fn encode(&self, req: &ChatRequest) -> Result<Bytes, ProviderError> {
        // `max_tokens`: the spelling every api-version knows.
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
