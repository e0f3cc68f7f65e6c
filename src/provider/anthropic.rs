//! The Anthropic adapter (https://docs.anthropic.com/en/api/messages):
//! `POST {base_url}/v1/messages` with `x-api-key` and `anthropic-version`. System
//! messages become the top-level `system` string; `max_tokens` (required by the API)
//! defaults to the model's or 4096. Streams are Anthropic's named events:
//! `message_start` (input tokens), `content_block_start`/`_delta` (`text_delta`,
//! `input_json_delta`, `thinking_delta`, `signature_delta`), `message_delta` (stop
//! reason, output tokens), `message_stop`, `error`, `ping`.
//!
//! What OpenAI says another way: `reasoning_effort` becomes a thinking budget
//! (`Params::thinking_budget_tokens`), and `max_tokens`, which Anthropic counts with
//! the thinking, is raised by the budget when it would not leave room for an answer;
//! thinking blocks come back as reasoning, with their signature, and go back in later
//! turns. `response_format` (JSON object or schema) becomes one forced tool whose
//! input is the answer, as LiteLLM does: its `tool_use` comes back as the text.

use std::borrow::Cow;
use std::collections::VecDeque;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::chat::{ContentPart, FinishReason, MessageRole, Params, Reasoning, ToolCall, ToolChoice, Usage};
use crate::config::ProviderConfig;
use crate::provider::stream;
use crate::provider::{
    Adapter, Answer, ChatRequest, ErrorInfo, FailureKind, KeyHeader, NativeApi, ProviderError, StreamEvent,
};

/// `max_tokens` when neither the request nor the model sets one.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// The tool that carries a `response_format` answer when the schema has no name.
const RESPONSE_TOOL: &str = "json_response";

/// Anthropic's Messages API (`kind = "anthropic"`).
pub struct Anthropic {
    /// The `anthropic-version` header (`providers[].anthropic_version`).
    version: String,
}

impl Anthropic {
    pub fn new(cfg: &ProviderConfig) -> Self {
        Anthropic::with_version(&cfg.anthropic_version)
    }

    /// The adapter sending `anthropic-version: <version>` (e.g. `2023-06-01`).
    pub fn with_version(version: &str) -> Self {
        Anthropic { version: version.to_string() }
    }
}

impl Adapter for Anthropic {
    fn key_header(&self) -> KeyHeader {
        KeyHeader { name: "x-api-key", bearer: false }
    }

    fn version_header(&self) -> Option<(&'static str, &str)> {
        Some(("anthropic-version", &self.version))
    }

    fn cannot_carry(&self) -> &'static [&'static str] {
        &["seed", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs"]
    }

    fn chat_path(&self, _model: &str, _stream: bool) -> Cow<'static, str> {
        Cow::Borrowed("/v1/messages")
    }

    fn native_path(&self, api: NativeApi, _model: &str) -> Option<Cow<'static, str>> {
        match api {
            NativeApi::Messages => Some(Cow::Borrowed("/v1/messages")),
            NativeApi::CountTokens => Some(Cow::Borrowed("/v1/messages/count_tokens")),
            NativeApi::ChatCompletions | NativeApi::Responses | NativeApi::Embeddings => None,
        }
    }

    fn encode(&self, req: &ChatRequest) -> Result<Bytes, ProviderError> {
        encode(req)
    }

    fn decode(&self, req: &ChatRequest, body: &[u8]) -> Result<Answer, ProviderError> {
        decode_message(body, response_tool(&req.params).as_deref())
    }

    fn events(&self, req: &ChatRequest) -> Box<dyn stream::Events> {
        Box::new(Events { response_tool: response_tool(&req.params), ..Events::default() })
    }

    fn error_info(&self, body: &[u8]) -> Option<ErrorInfo> {
        error_info(body)
    }
}

fn bad_request(message: String) -> ProviderError {
    let mut err = ProviderError::new(FailureKind::BadRequest { status: 400, context_length: false }, message);
    err.provider_type = Some("invalid_request_error".into());
    err
}

/// The `response_format` of `params` as Anthropic gets it: the forced tool's name and
/// input schema (`{"type":"object"}` for JSON mode), or `None` when the request asks
/// for text.
fn response_schema(params: &Params) -> Option<(String, sonic_rs::Value)> {
    use sonic_rs::JsonValueTrait;
    let format = params.response_format.as_ref()?;
    match format.get("type").and_then(|t| t.as_str()) {
        Some("json_schema") => {
            let spec = format.get("json_schema");
            let name = spec.and_then(|s| s.get("name")).and_then(|n| n.as_str()).unwrap_or(RESPONSE_TOOL);
            let schema =
                spec.and_then(|s| s.get("schema")).cloned().unwrap_or_else(|| sonic_rs::json!({"type": "object"}));
            Some((name.to_string(), schema))
        }
        Some("json_object") => Some((RESPONSE_TOOL.to_string(), sonic_rs::json!({"type": "object"}))),
        _ => None,
    }
}

/// The name of the tool that carries the answer, when the request set a JSON format.
fn response_tool(params: &Params) -> Option<String> {
    response_schema(params).map(|(name, _)| name)
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<WireMetadata<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<WireThinking>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<WireToolChoice<'a>>,
}

#[derive(Serialize)]
struct WireMetadata<'a> {
    user_id: &'a str,
}

#[derive(Serialize)]
struct WireThinking {
    #[serde(rename = "type")]
    kind: &'static str,
    budget_tokens: u32,
}

#[derive(Serialize)]
struct WireTool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: WireSchema<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum WireSchema<'a> {
    Given(&'a sonic_rs::Value),
    Owned(sonic_rs::Value),
    /// Anthropic requires a schema; a tool declared without one takes any object.
    Any {
        #[serde(rename = "type")]
        kind: &'static str,
    },
}

#[derive(Serialize)]
struct WireToolChoice<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: Vec<WireBlock<'a>>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock<'a> {
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    Text {
        text: &'a str,
    },
    Image {
        source: WireSource<'a>,
    },
    Document {
        source: WireSource<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        title: Option<&'a str>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: sonic_rs::Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: &'a str,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireSource<'a> {
    Url { url: &'a str },
    Base64 { media_type: &'a str, data: &'a str },
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

impl WireUsage {
    /// OpenAI counts cached prompt tokens inside `prompt_tokens`; Anthropic's
    /// `input_tokens` leaves out what was read from or written to the cache.
    fn prompt(&self) -> u64 {
        self.input_tokens
            .unwrap_or(0)
            .saturating_add(self.cache_read_input_tokens.unwrap_or(0))
            .saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
    }
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    content: Vec<Block<'a>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    signature: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    input: Option<sonic_rs::Value>,
}

#[derive(Deserialize)]
struct StreamPayload<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    message: Option<Message<'a>>,
    #[serde(default)]
    index: Option<u32>,
    #[serde(borrow, default)]
    content_block: Option<Block<'a>>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(borrow, default)]
    error: Option<ErrorDetail<'a>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    signature: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(borrow)]
    error: ErrorDetail<'a>,
}

#[derive(Deserialize)]
struct ErrorDetail<'a> {
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
}

/// `data:<media type>;base64,<data>` split into its media type and data.
fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (media, data) = rest.split_once(";base64,")?;
    Some((media, data))
}

/// An image or document source: base64 from a `data:` URL, else the URL.
fn source(url: &str) -> WireSource<'_> {
    match data_url(url) {
        Some((media_type, data)) => WireSource::Base64 { media_type, data },
        None => WireSource::Url { url },
    }
}

/// The content blocks of one canonical message.
fn blocks(m: &crate::chat::Message) -> Result<Vec<WireBlock<'_>>, ProviderError> {
    let extra = m.extra.as_deref();
    let mut out = Vec::new();
    if m.role == MessageRole::Tool {
        let id = extra.and_then(|e| e.tool_call_id.as_deref()).unwrap_or_default();
        out.push(WireBlock::ToolResult { tool_use_id: id, content: &m.content });
        return Ok(out);
    }
    // Thinking goes back only with its signature (Anthropic refuses unsigned thinking,
    // and another provider's reasoning has none).
    if let Some(Reasoning { text, signature: Some(signature) }) = m.reasoning() {
        out.push(WireBlock::Thinking { thinking: text, signature });
    }
    match extra.map(|e| &e.parts[..]).filter(|p| !p.is_empty()) {
        Some(parts) => {
            for p in parts {
                out.push(match p {
                    ContentPart::Text(t) => WireBlock::Text { text: t },
                    ContentPart::Image { url, .. } => WireBlock::Image { source: source(url) },
                    ContentPart::Document { url, filename } => {
                        WireBlock::Document { source: source(url), title: filename.as_deref() }
                    }
                });
            }
        }
        None if !m.content.is_empty() => out.push(WireBlock::Text { text: &m.content }),
        None => {}
    }
    for call in m.tool_calls() {
        let input: sonic_rs::Value = if call.arguments.trim().is_empty() {
            sonic_rs::json!({})
        } else {
            crate::json::from_slice(call.arguments.as_bytes()).map_err(|e| {
                bad_request(format!("tool call {}: `arguments` is not JSON: {}", call.id, e.first_line()))
            })?
        };
        out.push(WireBlock::ToolUse { id: &call.id, name: &call.name, input });
    }
    Ok(out)
}

/// The request body for `req` (https://docs.anthropic.com/en/api/messages): system
/// messages joined into the top-level `system`; tool results (role `tool`) become
/// `tool_result` blocks of a user message, consecutive ones in one message as the API
/// wants; assistant tool calls become `tool_use` blocks; `max_tokens` (required) is the
/// request's, the model's, or 4096.
pub fn encode(req: &ChatRequest) -> Result<Bytes, ProviderError> {
    let p = &*req.params;
    let mut system: Option<String> = None;
    let mut messages: Vec<WireMessage<'_>> = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        let role = match m.role {
            MessageRole::System => {
                let s = system.get_or_insert_with(String::new);
                if !s.is_empty() {
                    s.push_str("\n\n");
                }
                s.push_str(&m.content);
                continue;
            }
            MessageRole::User | MessageRole::Tool => "user",
            MessageRole::Assistant => "assistant",
        };
        let content = blocks(m)?;
        match messages.last_mut() {
            // Anthropic wants user and assistant turns to alternate: a tool result
            // joins the user turn before it (results of parallel calls go together).
            Some(last) if last.role == role && m.role == MessageRole::Tool => last.content.extend(content),
            _ => messages.push(WireMessage { role, content }),
        }
    }
    let response = response_schema(p);
    if response.is_some() && !p.tools.is_empty() {
        return Err(bad_request(
            "`response_format` together with `tools` cannot be sent to the Anthropic API (clawgate carries a JSON \
             format as a forced tool); send one or the other"
                .to_string(),
        ));
    }
    let tool_choice = match (&p.tool_choice, p.parallel_tool_calls) {
        _ if response.is_some() => Some(WireToolChoice {
            kind: "tool",
            name: response.as_ref().map(|(n, _)| n.as_str()),
            disable_parallel_tool_use: None,
        }),
        (None, None) => None,
        (choice, parallel) => {
            let (kind, name) = match choice {
                None | Some(ToolChoice::Auto) => ("auto", None),
                Some(ToolChoice::None) => ("none", None),
                Some(ToolChoice::Required) => ("any", None),
                Some(ToolChoice::Named(n)) => ("tool", Some(n.as_str())),
            };
            let disable = parallel.filter(|p| !p && kind != "none").map(|_| true);
            Some(WireToolChoice { kind, name, disable_parallel_tool_use: disable })
        }
    };
    let budget = p.thinking_budget_tokens();
    let mut max_tokens = req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if let Some(b) = budget.filter(|&b| max_tokens <= b) {
        // Anthropic counts thinking inside `max_tokens` and wants it above the budget.
        max_tokens = max_tokens.saturating_add(b);
    }
    let mut tools: Vec<WireTool<'_>> = p
        .tools
        .iter()
        .map(|t| WireTool {
            name: &t.name,
            description: t.description.as_deref(),
            input_schema: t.parameters.as_ref().map_or(WireSchema::Any { kind: "object" }, WireSchema::Given),
        })
        .collect();
    if let Some((name, schema)) = &response {
        tools.push(WireTool {
            name,
            description: Some("Respond with the answer as this tool's input, which must match its schema."),
            input_schema: WireSchema::Owned(schema.clone()),
        });
    }
    let wire = WireRequest {
        model: &req.upstream_model,
        max_tokens,
        system,
        messages,
        stream: req.stream,
        temperature: p.temperature,
        top_p: p.top_p,
        top_k: p.top_k,
        stop_sequences: &p.stop,
        metadata: p.user.as_deref().map(|user_id| WireMetadata { user_id }),
        thinking: budget.map(|budget_tokens| WireThinking { kind: "enabled", budget_tokens }),
        tools,
        tool_choice,
    };
    sonic_rs::to_vec(&wire)
        .map(Bytes::from)
        .map_err(|e| ProviderError::upstream(format!("cannot encode the request: {e}")))
}

/// Reads a non-streamed message: text blocks joined, thinking blocks as reasoning
/// (their text joined, the last signature kept), `tool_use` blocks as tool calls
/// (their `input` as JSON text), the stop reason and the usage. The `tool_use` of
/// `response_tool` (a JSON `response_format`) is the answer's text.
pub fn decode_message(body: &[u8], response_tool: Option<&str>) -> Result<Answer, ProviderError> {
    let m: Message<'_> = crate::json::from_slice(body)
        .map_err(|e| ProviderError::upstream(format!("provider sent an unreadable message: {e}")))?;
    let mut answer = Answer::default();
    let mut answered_by_tool = false;
    for b in m.content {
        match &*b.kind {
            "text" => answer.text.push_str(b.text.as_deref().unwrap_or_default()),
            "thinking" => {
                answer.reasoning.text.push_str(b.thinking.as_deref().unwrap_or_default());
                if let Some(sig) = b.signature {
                    answer.reasoning.signature = Some(sig.into_owned());
                }
            }
            "tool_use" if response_tool.is_some() && b.name.as_deref() == response_tool => {
                answered_by_tool = true;
                answer.text.push_str(&b.input.map_or_else(|| "{}".to_string(), |v| v.to_string()));
            }
            "tool_use" => answer.tool_calls.push(ToolCall {
                id: b.id.map(Cow::into_owned).unwrap_or_default(),
                name: b.name.map(Cow::into_owned).unwrap_or_default(),
                arguments: b.input.map_or_else(|| "{}".to_string(), |v| v.to_string()),
            }),
            _ => {}
        }
    }
    answer.finish = m.stop_reason.as_deref().map(FinishReason::from_anthropic).unwrap_or_default();
    if answered_by_tool && answer.finish == FinishReason::ToolCalls {
        answer.finish = FinishReason::Stop;
    }
    let u = m.usage.unwrap_or_default();
    answer.usage = Usage {
        prompt_tokens: u.prompt(),
        completion_tokens: u.output_tokens.unwrap_or(0),
        cached_tokens: u.cache_read_input_tokens.unwrap_or(0),
        reasoning_tokens: 0,
    };
    Ok(answer)
}

/// The `error.message` of an Anthropic error body, if it has one.
pub fn error_message(body: &[u8]) -> Option<String> {
    error_info(body).map(|i| i.message)
}

/// `error.message` and `error.type` of an Anthropic error body
/// (`{"type":"error","error":{"type":"invalid_request_error","message":...}}`,
/// https://docs.anthropic.com/en/api/errors), if it is one.
pub fn error_info(body: &[u8]) -> Option<ErrorInfo> {
    let e: ErrorBody<'_> = crate::json::from_slice(body).ok()?;
    Some(ErrorInfo {
        message: e.error.message.map(Cow::into_owned).unwrap_or_default(),
        kind: e.error.kind.map(Cow::into_owned),
        code: None,
    })
}

/// Anthropic's stream of named events (see the module doc).
#[derive(Default)]
pub struct Events {
    usage: Usage,
    finish: FinishReason,
    /// The Anthropic block index of each tool call so far (position = OpenAI index).
    tools: Vec<u32>,
    /// The tool whose input is the answer (a JSON `response_format`), and the block
    /// index it was given.
    response_tool: Option<String>,
    response_block: Option<u32>,
}

impl stream::Events for Events {
    fn end_event(&self) -> &'static str {
        "message_stop"
    }

    fn on_event(
        &mut self,
        _name: Option<&[u8]>,
        data: &[u8],
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        let p: StreamPayload<'_> = crate::json::from_slice(data)
            .map_err(|e| ProviderError::upstream(format!("provider sent an unreadable event: {e}")))?;
        match &*p.kind {
            "message_start" => {
                if let Some(u) = p.message.and_then(|m| m.usage) {
                    self.usage.prompt_tokens = u.prompt();
                    self.usage.cached_tokens = u.cache_read_input_tokens.unwrap_or(0);
                    self.usage.completion_tokens = u.output_tokens.unwrap_or(0);
                }
            }
            "content_block_start" => {
                let response = self.response_tool.as_deref();
                let block = p.content_block.filter(|b| b.kind == "tool_use");
                if block.as_ref().is_some_and(|b| response.is_some() && b.name.as_deref() == response) {
                    self.response_block = p.index;
                } else if let Some(b) = block {
                    // Tool calls are numbered 0, 1, ... in the order they begin, as
                    // OpenAI numbers them; Anthropic's block index counts text too.
                    let index = self.tools.len() as u32;
                    self.tools.push(p.index.unwrap_or(u32::MAX));
                    out.push_back(StreamEvent::ToolCall {
                        index,
                        id: b.id.map(Cow::into_owned),
                        name: b.name.map(Cow::into_owned),
                        arguments: String::new(),
                    });
                }
            }
            "content_block_delta" => {
                let Some(d) = p.delta else { return Ok(false) };
                match d.kind.as_deref() {
                    Some("text_delta") => {
                        if let Some(t) = d.text.filter(|t| !t.is_empty()) {
                            out.push_back(StreamEvent::Delta(t.into_owned()));
                        }
                    }
                    Some("input_json_delta") if p.index.is_some() && p.index == self.response_block => {
                        if let Some(json) = d.partial_json.filter(|j| !j.is_empty()) {
                            out.push_back(StreamEvent::Delta(json.into_owned()));
                        }
                    }
                    Some("thinking_delta") => {
                        if let Some(t) = d.thinking.filter(|t| !t.is_empty()) {
                            out.push_back(StreamEvent::Reasoning { text: t.into_owned(), signature: None });
                        }
                    }
                    Some("signature_delta") => {
                        if let Some(sig) = d.signature {
                            out.push_back(StreamEvent::Reasoning {
                                text: String::new(),
                                signature: Some(sig.into_owned()),
                            });
                        }
                    }
                    Some("input_json_delta") => {
                        let block = p.index.unwrap_or(u32::MAX);
                        if let (Some(index), Some(json)) =
                            (self.tools.iter().position(|&b| b == block), d.partial_json.filter(|j| !j.is_empty()))
                        {
                            out.push_back(StreamEvent::ToolCall {
                                index: index as u32,
                                id: None,
                                name: None,
                                arguments: json.into_owned(),
                            });
                        }
                    }
                    _ => {} // citations and deltas of later kinds
                }
            }
            "message_delta" => {
                if let Some(reason) = p.delta.and_then(|d| d.stop_reason) {
                    self.finish = FinishReason::from_anthropic(&reason);
                    if self.response_block.is_some() && self.finish == FinishReason::ToolCalls {
                        self.finish = FinishReason::Stop;
                    }
                }
                if let Some(u) = p.usage {
                    if let Some(n) = u.output_tokens {
                        self.usage.completion_tokens = n;
                    }
                    if u.input_tokens.is_some() {
                        self.usage.prompt_tokens = u.prompt();
                    }
                }
            }
            "message_stop" => {
                out.push_back(StreamEvent::Finish(self.finish));
                out.push_back(StreamEvent::Done(self.usage));
                return Ok(true);
            }
            "error" => {
                let msg = p.error.and_then(|e| e.message).map(Cow::into_owned).unwrap_or_default();
                return Err(ProviderError::upstream(format!("provider stream failed: {msg}")));
            }
            _ => {} // ping, content_block_stop
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Message as Msg;

    #[test]
    fn system_messages_move_to_the_top_level() {
        let req = ChatRequest {
            upstream_model: "claude-x".into(),
            messages: vec![Msg::text(MessageRole::System, "be brief"), Msg::text(MessageRole::User, "hi")],
            params: Default::default(),
            max_tokens: None,
            stream: false,
        };
        assert_eq!(
            std::str::from_utf8(&encode(&req).unwrap()).unwrap(),
            r#"{"model":"claude-x","max_tokens":4096,"system":"be brief","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"stream":false}"#
        );
    }

    #[test]
    fn message_text_and_usage_are_read() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"Hello"},{"type":"text","text":" there"}],"stop_reason":"end_turn","usage":{"input_tokens":9,"output_tokens":2}}"#;
        let Answer { text, usage, finish, .. } = decode_message(body, None).unwrap();
        assert_eq!(text, "Hello there");
        assert_eq!(finish, FinishReason::Stop);
        assert_eq!(usage, Usage { prompt_tokens: 9, completion_tokens: 2, ..Usage::default() });
    }
}
