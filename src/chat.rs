//! The canonical chat model every layer shares: what the OpenAI Chat Completions and
//! Anthropic Messages APIs can express, in one shape that front doors parse into and
//! provider adapters encode from (and back). A `Message` keeps its text in an
//! `Arc<str>` (a history moves between cores and into a provider request without
//! copying) and whatever a plain text message lacks (content parts such as images,
//! assistant tool calls, a tool result's call id) in an optional shared `MessageExtra`,
//! so a plain turn costs nothing more. `Params` holds the request's tools, tool choice
//! and sampling settings; `FinishReason` and `Usage` come back. They sit below the
//! providers (DESIGN.md "Layers", layer 1) so that sessions, quotas, front doors and
//! adapters share them without importing each other.
//!
//! Field names follow the providers' docs: OpenAI's
//! (https://platform.openai.com/docs/api-reference/chat/create) where both APIs have a
//! thing, Anthropic's (https://docs.anthropic.com/en/api/messages) for what only it has
//! (`top_k`, thinking budget).

use std::sync::Arc;

use serde::Serialize;

/// Who wrote a message. OpenAI's `developer` role is a `System` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    System,
    User,
    Assistant,
    /// The result of a tool call (OpenAI `role:"tool"`, Anthropic `tool_result` block).
    Tool,
}

/// One message of a conversation. `content` is its text (the text parts joined); a
/// message with more than text carries `extra`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: MessageRole,
    pub content: Arc<str>,
    pub extra: Option<Arc<MessageExtra>>,
}

impl Message {
    /// A plain text message.
    pub fn text(role: MessageRole, content: impl Into<Arc<str>>) -> Self {
        Message { role, content: content.into(), extra: None }
    }

    /// An assistant message with its tool calls (none: a plain text message).
    pub fn assistant(text: impl Into<Arc<str>>, tool_calls: Vec<ToolCall>) -> Self {
        let extra = (!tool_calls.is_empty()).then(|| Arc::new(MessageExtra { tool_calls, ..MessageExtra::default() }));
        Message { role: MessageRole::Assistant, content: text.into(), extra }
    }

    /// This message with the model's `reasoning` (kept when it is not empty).
    pub fn with_reasoning(mut self, reasoning: &Reasoning) -> Self {
        if reasoning.is_empty() {
            return self;
        }
        let mut extra = self.extra.as_deref().cloned().unwrap_or_default();
        extra.reasoning = Some(reasoning.clone());
        self.extra = Some(Arc::new(extra));
        self
    }

    /// The model's reasoning on an assistant message, if kept.
    pub fn reasoning(&self) -> Option<&Reasoning> {
        self.extra.as_deref().and_then(|e| e.reasoning.as_ref())
    }

    /// Bytes a message holds (text, parts, tool calls), for history bounds.
    pub fn size(&self) -> usize {
        let extra = self.extra.as_deref().map_or(0, |e| {
            let parts: usize = e
                .parts
                .iter()
                .map(|p| match p {
                    ContentPart::Text(t) => t.len(),
                    ContentPart::Image { url, .. } => url.len(),
                    ContentPart::Document { url, filename } => url.len() + filename.as_ref().map_or(0, String::len),
                })
                .sum();
            let calls: usize = e.tool_calls.iter().map(|c| c.id.len() + c.name.len() + c.arguments.len()).sum();
            let reasoning =
                e.reasoning.as_ref().map_or(0, |r| r.text.len() + r.signature.as_ref().map_or(0, String::len));
            parts + calls + reasoning + e.tool_call_id.as_ref().map_or(0, String::len)
        });
        self.content.len() + extra
    }

    /// The tool calls of an assistant message (empty for others).
    pub fn tool_calls(&self) -> &[ToolCall] {
        self.extra.as_deref().map_or(&[], |e| &e.tool_calls)
    }
}

/// What a message has besides its text. Serialised (JSON, the field names below, empty
/// fields left out) where the durable store keeps it (`store`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MessageExtra {
    /// The content in order, when it is more than text (text and images); empty when
    /// `Message::content` says it all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<ContentPart>,
    /// An assistant message's tool calls, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// A tool message: the id of the call it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// An optional participant name (OpenAI `name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An assistant message's reasoning, as the provider showed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Reasoning>,
}

/// A model's reasoning: Anthropic's `thinking` block (its text and `signature`, which
/// Anthropic needs back unchanged when the conversation continues with tool results),
/// Gemini's thought parts, or the `reasoning_content` of OpenAI-compatible servers.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reasoning {
    pub text: String,
    pub signature: Option<String>,
}

impl Reasoning {
    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.signature.is_none()
    }
}

/// One part of a message's content (stored as `{"text":".."}`, `{"image":{"url",..}}`,
/// `{"document":{"url",..}}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentPart {
    Text(String),
    /// An image by URL: `https://...` or a `data:<media type>;base64,<data>` URL (how
    /// OpenAI carries base64 images; Anthropic's `source.type:"base64"` maps to it).
    Image {
        url: String,
        detail: Option<String>,
    },
    /// A document (a PDF or plain text): a `data:<media type>;base64,<data>` URL or an
    /// `https://` URL, with its file name when given. OpenAI's `file` part
    /// (`file.file_data`, `file.filename`), Anthropic's `document` block, Gemini's
    /// `inlineData`/`fileData`.
    Document {
        url: String,
        filename: Option<String>,
    },
}

/// A tool the model called: `arguments` is the JSON text of its input, as OpenAI
/// carries it (Anthropic's `input` object is serialised into it and back).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A function tool the model may call. `parameters` is its JSON Schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Option<sonic_rs::Value>,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    /// Some tool (OpenAI `required`, Anthropic `any`).
    Required,
    /// This tool.
    Named(String),
}

/// A request's settings besides its messages. `None`/empty means "not sent": the
/// provider's default applies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    /// Most tokens to generate (OpenAI `max_tokens` or `max_completion_tokens`).
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// Anthropic and Gemini only.
    pub top_k: Option<u32>,
    /// Stop sequences (OpenAI `stop`, Anthropic `stop_sequences`).
    pub stop: Vec<String>,
    pub seed: Option<i64>,
    /// How many choices to generate (OpenAI `n`).
    pub n: Option<u32>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
    /// OpenAI `response_format` (JSON mode, structured output), as sent.
    pub response_format: Option<sonic_rs::Value>,
    /// The end user (OpenAI `user`, Anthropic `metadata.user_id`).
    pub user: Option<String>,
    /// OpenAI `reasoning_effort` (`minimal`, `low`, `medium`, `high`); providers that
    /// take a thinking budget instead get `Params::thinking_budget_tokens`'s.
    pub reasoning_effort: Option<String>,
    /// Anthropic extended thinking: `thinking.budget_tokens`; providers that take an
    /// effort instead get `Params::effort`'s.
    pub thinking_budget: Option<u32>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    /// Top-level fields of an OpenAI request that this model does not name
    /// (`logit_bias`, `store`, `metadata`, ...), as (name, raw JSON): carried through
    /// untouched to a provider of the same format; any other provider cannot carry
    /// them (refused or dropped, never silently).
    pub openai_extra: Vec<(String, String)>,
    /// Top-level fields of a request in another front door's format (Anthropic
    /// `service_tier`, `container`, ...) that this model does not name: only that
    /// format's own provider could take them, on the pass-through, so a translated
    /// turn cannot carry them (refused or dropped, never silently).
    pub foreign: Vec<String>,
}

impl Params {
    /// The thinking budget in tokens this request asks for: `thinking.budget_tokens`,
    /// or `reasoning_effort` mapped as LiteLLM and Google's OpenAI layer map it
    /// (`minimal`/`low` 1024, `medium` 2048, `high` 4096); `None` when it asks for no
    /// reasoning.
    pub fn thinking_budget_tokens(&self) -> Option<u32> {
        self.thinking_budget.or_else(|| match self.reasoning_effort.as_deref()? {
            "minimal" | "low" => Some(1024),
            "medium" => Some(2048),
            "high" => Some(4096),
            _ => None,
        })
    }

    /// The reasoning effort this request asks for: `reasoning_effort`, or a thinking
    /// budget mapped back (under 2048 `low`, under 4096 `medium`, else `high`).
    pub fn effort(&self) -> Option<&str> {
        self.reasoning_effort.as_deref().or(match self.thinking_budget? {
            0..2048 => Some("low"),
            2048..4096 => Some("medium"),
            _ => Some("high"),
        })
    }

    /// The names (OpenAI's spelling) of the settings this request sets, in a stable
    /// order: what adapters check against what their provider can carry. Fields
    /// carried as `openai_extra` are not listed (see `unsupported`).
    pub fn set_fields(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut add = |set: bool, name| {
            if set {
                out.push(name);
            }
        };
        add(self.max_tokens.is_some(), "max_tokens");
        add(self.temperature.is_some(), "temperature");
        add(self.top_p.is_some(), "top_p");
        add(self.top_k.is_some(), "top_k");
        add(!self.stop.is_empty(), "stop");
        add(self.seed.is_some(), "seed");
        add(self.n.is_some_and(|n| n != 1), "n");
        add(self.presence_penalty.is_some(), "presence_penalty");
        add(self.frequency_penalty.is_some(), "frequency_penalty");
        add(self.logprobs == Some(true), "logprobs");
        add(self.top_logprobs.is_some(), "top_logprobs");
        add(self.response_format.is_some(), "response_format");
        add(self.user.is_some(), "user");
        add(self.reasoning_effort.is_some(), "reasoning_effort");
        add(self.thinking_budget.is_some(), "thinking");
        add(!self.tools.is_empty(), "tools");
        add(self.tool_choice.is_some(), "tool_choice");
        add(self.parallel_tool_calls.is_some(), "parallel_tool_calls");
        out
    }

    /// Clears the named settings (a provider that cannot carry them, with
    /// `drop_unsupported_params`).
    pub fn clear(&mut self, field: &str) {
        match field {
            "max_tokens" => self.max_tokens = None,
            "temperature" => self.temperature = None,
            "top_p" => self.top_p = None,
            "top_k" => self.top_k = None,
            "stop" => self.stop.clear(),
            "seed" => self.seed = None,
            "n" => self.n = None,
            "presence_penalty" => self.presence_penalty = None,
            "frequency_penalty" => self.frequency_penalty = None,
            "logprobs" => self.logprobs = None,
            "top_logprobs" => self.top_logprobs = None,
            "response_format" => self.response_format = None,
            "user" => self.user = None,
            "reasoning_effort" => self.reasoning_effort = None,
            "thinking" => self.thinking_budget = None,
            "tools" => self.tools.clear(),
            "tool_choice" => self.tool_choice = None,
            "parallel_tool_calls" => self.parallel_tool_calls = None,
            other => {
                self.openai_extra.retain(|(name, _)| name != other);
                self.foreign.retain(|name| name != other);
            }
        }
    }
}

/// Why the model stopped, mapped between the providers' words both ways.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FinishReason {
    /// A natural end (OpenAI `stop`, Anthropic `end_turn`, Gemini `STOP`).
    #[default]
    Stop,
    /// The token limit (`length`, `max_tokens`, `MAX_TOKENS`).
    Length,
    /// The model called tools (`tool_calls`, `tool_use`).
    ToolCalls,
    /// Refused or filtered (`content_filter`, `refusal`, `SAFETY`).
    ContentFilter,
    /// A stop sequence matched (OpenAI says `stop`; Anthropic `stop_sequence`).
    StopSequence,
}

impl FinishReason {
    /// OpenAI's `finish_reason`.
    pub fn openai(self) -> &'static str {
        match self {
            FinishReason::Stop | FinishReason::StopSequence => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
        }
    }

    /// Anthropic's `stop_reason`.
    pub fn anthropic(self) -> &'static str {
        match self {
            FinishReason::Stop => "end_turn",
            FinishReason::Length => "max_tokens",
            FinishReason::ToolCalls => "tool_use",
            FinishReason::ContentFilter => "refusal",
            FinishReason::StopSequence => "stop_sequence",
        }
    }

    /// From OpenAI's `finish_reason` (`function_call`, the old name, is a tool call).
    pub fn from_openai(s: &str) -> Self {
        match s {
            "length" => FinishReason::Length,
            "tool_calls" | "function_call" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            _ => FinishReason::Stop,
        }
    }

    /// From Anthropic's `stop_reason`.
    pub fn from_anthropic(s: &str) -> Self {
        match s {
            "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
            "tool_use" => FinishReason::ToolCalls,
            "refusal" => FinishReason::ContentFilter,
            "stop_sequence" => FinishReason::StopSequence,
            _ => FinishReason::Stop,
        }
    }
}

/// Token accounting reported by the provider. `cached_tokens` (of the prompt, read
/// from a cache) and `reasoning_tokens` (of the completion, spent thinking) are parts
/// of the two counts, reported where the provider says them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
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
