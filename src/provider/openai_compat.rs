//! OpenAI-compatible servers (Ollama, vLLM, OpenRouter, Groq, LM Studio and the like):
//! OpenAI's wire format at any base URL, with an optional key and extra headers from
//! the config. Everything but the settings is the OpenAI adapter's; this file only
//! says how such a provider differs.

use crate::config::ProviderConfig;

/// Whether calls carry `Authorization`: only when a key is configured.
pub fn sends_auth(cfg: &ProviderConfig) -> bool {
    !cfg.api_keys.is_empty()
}

/// The chat path below the base URL (`/chat/completions`, as OpenAI's).
pub const CHAT_PATH: &str = "/chat/completions";
