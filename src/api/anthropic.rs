//! The Anthropic-compatible front door (PROTOCOL.md "Anthropic-compatible front door"),
//! so the official `anthropic` SDK and Claude Code work unchanged:
//! `POST /v1/messages` (non-stream: one `message` object; stream: Anthropic's named
//! events `message_start`, `content_block_start`/`_delta`/`_stop`, `message_delta`,
//! `message_stop`) and `POST /v1/messages/count_tokens`. Auth by `x-api-key` or
//! `Authorization: Bearer` (`server::dispatch`); errors in Anthropic's shape
//! (`ApiError::render_anthropic`, chosen by the route).
//!
//! A model whose every candidate is served by an `anthropic` provider gets the body
//! untouched, only `model` spliced (`api::native`), with the client's
//! `anthropic-beta` header. Any other provider kind gets the request translated
//! through the canonical turn (`chat`): `system` (a string or text blocks) becomes
//! system messages; user blocks `text`, `image` (base64 or URL), `document` and
//! `tool_result` (each a `role:"tool"` message, before the user's own text);
//! assistant blocks `text`, `tool_use` and `thinking` (kept with its signature);
//! `tools` (custom tools with `input_schema`), `tool_choice` (`auto`, `any`, `tool`,
//! `none`, `disable_parallel_tool_use`), `max_tokens`, `temperature`, `top_p`,
//! `top_k`, `stop_sequences`, `metadata.user_id`, `thinking.budget_tokens`. Fields
//! the gateway does not model and Anthropic's server tools cannot be translated: they
//! are refused naming them (or dropped and named, `drop_unsupported_params`).
//! `cache_control` is a caching hint the other providers have no field for: it is
//! accepted and has no effect there. Like the OpenAI front door without
//! `X-Session-Id`, a request is the whole conversation: nothing is stored.

mod render;

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use crate::api::native::{self, Format, Seen, StreamWatch};
use crate::api::{require_body, unknown_fields, Ctx, StrOrList};
use crate::auth::Identity;
use crate::chat::{
    estimate_tokens, ContentPart, Message, MessageExtra, MessageRole, Params, Reasoning, Tool, ToolCall, ToolChoice,
    Usage,
};
use crate::error::ApiError;
use crate::http::Response;
use crate::provider::stream::Events;
use crate::provider::{anthropic, is_context_length, NativeApi, StreamEvent};
use crate::turn::{run_to_end, start_turn, LiveTurn, TurnContext, TurnRequest};

/// A `POST /v1/messages` body (https://docs.anthropic.com/en/api/messages).
#[derive(Deserialize)]
struct MessagesBody<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(borrow, default)]
    messages: Option<Vec<InMessage<'a>>>,
    #[serde(borrow, default)]
    system: Option<System<'a>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    top_k: Option<u32>,
    #[serde(borrow, default)]
    stop_sequences: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    metadata: Option<Metadata<'a>>,
    #[serde(borrow, default)]
    tools: Option<Vec<InTool<'a>>>,
    #[serde(borrow, default)]
    tool_choice: Option<InToolChoice<'a>>,
    #[serde(borrow, default)]
    thinking: Option<Thinking<'a>>,
}

/// The fields `MessagesBody` models; any other top-level field is foreign.
const KNOWN_FIELDS: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "tools",
    "tool_choice",
    "thinking",
];

/// `system`: a string or text blocks (the same two shapes as message content).
type System<'a> = Content<'a>;

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow, default)]
    user_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Thinking<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(default)]
    budget_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct InTool<'a> {
    /// Absent (or `custom`) for a client tool; a dated name for Anthropic's server
    /// tools (`web_search_20250305`, `bash_20250124`, ...).
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    description: Option<Cow<'a, str>>,
    #[serde(default)]
    input_schema: Option<sonic_rs::Value>,
}

#[derive(Deserialize)]
struct InToolChoice<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Deserialize)]
struct InMessage<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow)]
    content: Content<'a>,
}

/// Message content: a string or an array of blocks.
type Content<'a> = StrOrList<'a, InBlock<'a>>;

/// One content block; which fields are set depends on `type`.
#[derive(Deserialize)]
struct InBlock<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source: Option<Source<'a>>,
    #[serde(borrow, default)]
    title: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    input: Option<sonic_rs::Value>,
    #[serde(borrow, default)]
    tool_use_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<Box<Content<'a>>>,
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    signature: Option<Cow<'a, str>>,
}

/// An image or document source.
#[derive(Deserialize)]
struct Source<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    media_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    url: Option<Cow<'a, str>>,
}

/// A parsed request in the canonical shape.
struct Parsed {
    model: Option<String>,
    system: Vec<Message>,
    messages: Vec<Message>,
    params: Params,
    stream: bool,
}

fn invalid(at: &str, what: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("{at}: {what}"))
}

/// An image or document source as a URL (`data:` for base64, the URL itself, or the
/// text of a plain-text document as a `data:text/plain` URL).
fn source_url(source: Option<&Source<'_>>, at: &str) -> Result<String, ApiError> {
    let s = source.ok_or_else(|| invalid(at, "needs a `source`"))?;
    match (&*s.kind, &s.media_type, &s.data, &s.url) {
        ("base64", Some(media), Some(data), _) => Ok(format!("data:{media};base64,{data}")),
        ("url", _, _, Some(url)) => Ok(url.to_string()),
        ("text", media, Some(text), _) => {
            let media = media.as_deref().unwrap_or("text/plain");
            Ok(format!("data:{media},{}", percent_encode(text)))
        }
        (kind, ..) => Err(invalid(at, format!("source type `{kind}` is not supported here (base64, url, text)"))),
    }
}

/// `text` percent-encoded for a `data:` URL (RFC 2397): everything but unreserved
/// characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b' ') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text of a `tool_result`'s content (a string or text blocks).
fn tool_result_text(content: Option<&Content<'_>>, at: &str) -> Result<String, ApiError> {
    match content {
        None => Ok(String::new()),
        Some(StrOrList::Str(t)) => Ok(t.to_string()),
        Some(StrOrList::List(blocks)) => {
            let mut out = String::new();
            for (i, b) in blocks.iter().enumerate() {
                match (&*b.kind, &b.text) {
                    ("text", Some(t)) => {
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        out.push_str(t);
                    }
                    (kind, _) => {
                        return Err(invalid(
                            &format!("{at}.content[{i}]"),
                            format!("a `{kind}` block in a tool result cannot be translated (text only)"),
                        ))
                    }
                }
            }
            Ok(out)
        }
    }
}

/// The canonical messages of one Anthropic message (a user message with tool results
/// gives one `tool` message per result, then the user's own content).
fn read_message(m: &InMessage<'_>, at: &str, out: &mut Vec<Message>) -> Result<(), ApiError> {
    let role = match &*m.role {
        "user" => MessageRole::User,
        "assistant" => MessageRole::Assistant,
        other => return Err(invalid(at, format!("role `{other}` is not one of user, assistant"))),
    };
    let blocks = match &m.content {
        StrOrList::Str(t) => {
            out.push(Message::text(role, t.as_ref()));
            return Ok(());
        }
        StrOrList::List(b) => b,
    };
    let mut text = String::new();
    let mut parts = Vec::new();
    let mut rich = false;
    let mut calls = Vec::new();
    let mut reasoning = Reasoning::default();
    for (i, b) in blocks.iter().enumerate() {
        let at = format!("{at}.content[{i}]");
        match (&*b.kind, role) {
            ("text", _) => {
                let t = b.text.as_deref().ok_or_else(|| invalid(&at, "a text block needs `text`"))?;
                text.push_str(t);
                parts.push(ContentPart::Text(t.to_string()));
            }
            ("image", MessageRole::User) => {
                rich = true;
                parts.push(ContentPart::Image { url: source_url(b.source.as_ref(), &at)?, detail: None });
            }
            ("document", MessageRole::User) => {
                rich = true;
                let url = source_url(b.source.as_ref(), &at)?;
                parts.push(ContentPart::Document { url, filename: b.title.as_deref().map(str::to_string) });
            }
            ("tool_result", MessageRole::User) => {
                let id = b.tool_use_id.as_deref().ok_or_else(|| invalid(&at, "a tool_result needs `tool_use_id`"))?;
                let mut content = tool_result_text(b.content.as_deref(), &at)?;
                if b.is_error == Some(true) {
                    // The other APIs have no error flag on a tool result: the model
                    // reads it in the text.
                    content.insert_str(0, "Error: ");
                }
                out.push(Message {
                    role: MessageRole::Tool,
                    content: content.into(),
                    extra: Some(Arc::new(MessageExtra {
                        tool_call_id: Some(id.to_string()),
                        ..MessageExtra::default()
                    })),
                });
            }
            ("tool_use", MessageRole::Assistant) => {
                let id = b.id.as_deref().ok_or_else(|| invalid(&at, "a tool_use needs `id`"))?;
                let name = b.name.as_deref().ok_or_else(|| invalid(&at, "a tool_use needs `name`"))?;
                let arguments = b.input.as_ref().map_or_else(|| "{}".to_string(), |v| v.to_string());
                calls.push(ToolCall { id: id.to_string(), name: name.to_string(), arguments });
            }
            ("thinking", MessageRole::Assistant) => {
                reasoning.text.push_str(b.thinking.as_deref().unwrap_or_default());
                if let Some(sig) = &b.signature {
                    reasoning.signature = Some(sig.to_string());
                }
            }
            // Encrypted thinking only Anthropic can read: nothing to carry elsewhere.
            ("redacted_thinking", MessageRole::Assistant) => {}
            (kind, _) => {
                return Err(invalid(&at, format!("a `{kind}` block in a {} message is not supported", m.role)))
            }
        }
    }
    let has_own = !parts.is_empty() || !calls.is_empty() || !reasoning.is_empty();
    if !has_own {
        return Ok(());
    }
    let extra = MessageExtra {
        parts: if rich { parts } else { Vec::new() },
        tool_calls: calls,
        reasoning: (!reasoning.is_empty()).then_some(reasoning),
        ..MessageExtra::default()
    };
    let plain = extra.parts.is_empty() && extra.tool_calls.is_empty() && extra.reasoning.is_none();
    out.push(Message { role, content: text.into(), extra: (!plain).then(|| Arc::new(extra)) });
    Ok(())
}

fn parse(body: &[u8]) -> Result<Parsed, ApiError> {
    let b: MessagesBody<'_> = sonic_rs::from_slice(body).map_err(|e| {
        let first = e.to_string().lines().next().unwrap_or_default().to_string();
        ApiError::invalid(format!("invalid request body: {first}"))
    })?;
    let raw = b.messages.ok_or_else(|| ApiError::invalid("messages: field required"))?;
    let mut system = Vec::new();
    match &b.system {
        None => {}
        Some(StrOrList::Str(t)) => system.push(Message::text(MessageRole::System, t.as_ref())),
        Some(StrOrList::List(blocks)) => {
            for (i, blk) in blocks.iter().enumerate() {
                match (&*blk.kind, &blk.text) {
                    ("text", Some(t)) => system.push(Message::text(MessageRole::System, t.as_ref())),
                    (kind, _) => return Err(invalid(&format!("system[{i}]"), format!("`{kind}` is not a text block"))),
                }
            }
        }
    }
    let mut messages = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        read_message(m, &format!("messages[{i}]"), &mut messages)?;
    }
    let mut tools = Vec::new();
    for (i, t) in b.tools.into_iter().flatten().enumerate() {
        match t.kind.as_deref() {
            None | Some("custom") => tools.push(Tool {
                name: t.name.into_owned(),
                description: t.description.map(Cow::into_owned),
                parameters: t.input_schema,
            }),
            Some(kind) => {
                return Err(invalid(
                    &format!("tools[{i}]"),
                    format!("Anthropic's server tool `{kind}` runs only on Anthropic and cannot be translated"),
                ))
            }
        }
    }
    let (tool_choice, parallel_tool_calls) = match &b.tool_choice {
        None => (None, None),
        Some(c) => {
            let choice = match (&*c.kind, &c.name) {
                ("auto", _) => ToolChoice::Auto,
                ("any", _) => ToolChoice::Required,
                ("none", _) => ToolChoice::None,
                ("tool", Some(name)) => ToolChoice::Named(name.to_string()),
                ("tool", None) => return Err(ApiError::invalid("tool_choice: type `tool` needs `name`")),
                (other, _) => {
                    return Err(ApiError::invalid(format!(
                        "tool_choice: type `{other}` is not one of auto, any, tool, none"
                    )))
                }
            };
            (Some(choice), c.disable_parallel_tool_use.filter(|d| *d).map(|_| false))
        }
    };
    let thinking_budget = match &b.thinking {
        Some(t) if t.kind == "enabled" => {
            Some(t.budget_tokens.ok_or_else(|| ApiError::invalid("thinking: `budget_tokens` is required"))?)
        }
        _ => None,
    };
    let params = Params {
        max_tokens: Some(b.max_tokens.ok_or_else(|| ApiError::invalid("max_tokens: field required"))?),
        temperature: b.temperature,
        top_p: b.top_p,
        top_k: b.top_k,
        stop: b.stop_sequences.into_iter().flatten().map(Cow::into_owned).collect(),
        user: b.metadata.and_then(|m| m.user_id).map(Cow::into_owned),
        thinking_budget,
        tools,
        tool_choice,
        parallel_tool_calls,
        foreign: unknown_fields(body, KNOWN_FIELDS)?.into_iter().map(|(name, _)| name).collect(),
        ..Params::default()
    };
    Ok(Parsed { model: b.model.map(Cow::into_owned), system, messages, params, stream: b.stream.unwrap_or(false) })
}

/// The turn of a parsed request: every message before the last is the conversation,
/// the last (a user message or a tool result) is the new one.
fn into_turn(p: &mut Parsed, request_id: &str) -> Result<TurnRequest, ApiError> {
    let last = p.messages.pop().ok_or_else(|| ApiError::invalid("messages: at least one message is required"))?;
    match last.role {
        MessageRole::User | MessageRole::Tool => {}
        _ => {
            return Err(ApiError::invalid(
                "messages: the last message must be from the user (a final assistant message, a prefill, is taken \
                 only by Anthropic models)",
            ))
        }
    }
    let mut context = std::mem::take(&mut p.system);
    context.append(&mut p.messages);
    Ok(TurnRequest {
        channel: "api".into(),
        message: last,
        params: Arc::new(std::mem::take(&mut p.params)),
        session_id: None,
        model: p.model.take(),
        context: TurnContext::Explicit(context),
        preamble: Vec::new(),
        seed: Vec::new(),
        stream: p.stream,
        request_id: request_id.to_string(),
    })
}

/// The model of a `count_tokens` request.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
}

/// The client's `anthropic-beta` header, forwarded on the pass-through.
fn beta_header(ctx: &Ctx<'_>) -> Vec<(&'static str, String)> {
    ctx.req.header("anthropic-beta").map(|v| vec![("anthropic-beta", v.to_string())]).unwrap_or_default()
}

/// `POST /v1/messages`.
pub async fn messages(ctx: &Ctx<'_>, who: Identity) -> Result<Response, ApiError> {
    let body = require_body(ctx.req)?;
    let cfg = &ctx.snap.config;
    if let Some(resp) = native::try_forward(ctx, &who, MessagesFormat, beta_header(ctx)).await? {
        return Ok(resp);
    }
    let mut parsed = parse(body)?;
    let turn = into_turn(&mut parsed, ctx.request_id)?;
    let prompt_estimate = match &turn.context {
        TurnContext::Explicit(m) => m.iter().chain([&turn.message]).map(|m| estimate_tokens(&m.content)).sum(),
        _ => 0,
    };
    let started = start_turn(&ctx.worker.turns, cfg, &who, turn).await?;
    let id = format!("msg_{}", ctx.request_id.trim_start_matches("req_"));
    let dropped = started.dropped.clone();
    let (model, upstream) = (started.model_id.clone(), started.upstream_head);
    let mut usage = None;
    let mut resp = if parsed.stream {
        Response::sse(Box::new(render::MessageStream::new(LiveTurn::new(started), id, prompt_estimate).queued()))
    } else {
        let (started, answer) = run_to_end(started).await?;
        usage = Some(answer.usage);
        let bytes = render::message(&id, &started.model_id, &answer)?;
        started.finish(answer.to_message()).await?;
        Response::json(200, Bytes::from(bytes))
    };
    crate::api::log_turn(&mut resp, cfg, &model, upstream, usage);
    if !dropped.is_empty() {
        resp.push_header("x-clawgate-dropped-params", dropped.join(", "));
    }
    Ok(resp)
}

/// `POST /v1/messages/count_tokens`: the provider's count when the model's provider
/// is Anthropic (the body forwarded, model spliced), else the gateway's estimate of
/// the translated request (about four bytes a token of system, messages and tools).
pub async fn count_tokens(ctx: &Ctx<'_>, who: Identity) -> Result<Response, ApiError> {
    let body = require_body(ctx.req)?;
    let cfg = &ctx.snap.config;
    let peek: Peek<'_> =
        sonic_rs::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))?;
    let model_id = peek.model.as_deref().ok_or_else(|| ApiError::invalid("model: field required"))?;
    let model = cfg.model(model_id).ok_or_else(|| {
        ApiError::new(crate::error::ErrorCode::ModelNotFound, format!("model {model_id} is not in the catalogue"))
    })?;
    crate::auth::check_model_access(cfg, &who, &model.id)?;
    let provider = ctx.worker.providers().get(&model.provider);
    if let Some(http) = provider.as_ref().and_then(|p| p.native(NativeApi::CountTokens)) {
        let spliced = native::splice_model(&ctx.req.body, &model.upstream)
            .ok_or_else(|| ApiError::invalid("model: must be a string"))?;
        let headers = beta_header(ctx);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let answer =
            http.forward(NativeApi::CountTokens, &model.upstream, spliced, &headers).await.map_err(|e| e.to_api())?;
        return Ok(Response::json(answer.status, answer.body));
    }
    // Counting needs no `max_tokens`: parse with a placeholder when it is absent.
    let parsed = match parse(body) {
        Err(e) if e.message.starts_with("max_tokens") => {
            let mut v: sonic_rs::Value =
                crate::json::from_slice(body).map_err(|e| ApiError::invalid(e.first_line()))?;
            if let Some(obj) = sonic_rs::JsonValueMutTrait::as_object_mut(&mut v) {
                obj.insert("max_tokens", sonic_rs::json!(1));
            }
            parse(&sonic_rs::to_vec(&v).map_err(|e| ApiError::internal(e.to_string()))?)?
        }
        other => other?,
    };
    let text: u64 = parsed.system.iter().chain(&parsed.messages).map(|m| estimate_tokens(&m.content) + 3).sum();
    let tools: u64 = parsed
        .params
        .tools
        .iter()
        .map(|t| {
            let schema = t.parameters.as_ref().map_or(0, |p| p.to_string().len());
            estimate_tokens(&t.name) + t.description.as_deref().map_or(0, estimate_tokens) + (schema as u64).div_ceil(4)
        })
        .sum();
    let body = format!("{{\"input_tokens\":{}}}", text + tools);
    Ok(Response::json(200, Bytes::from(body)))
}

/// Anthropic's messages format on the pass-through.
struct MessagesFormat;

impl Format for MessagesFormat {
    type Watch = MessagesWatch;

    fn api(&self) -> NativeApi {
        NativeApi::Messages
    }

    fn watch(&self) -> MessagesWatch {
        MessagesWatch { events: anthropic::Events::default(), usage: None }
    }

    fn answer_usage(&self, body: &[u8]) -> Usage {
        anthropic::decode_message(body, None).map(|a| a.usage).unwrap_or_default()
    }

    fn is_context_length(&self, body: &[u8]) -> bool {
        anthropic::error_info(body).is_some_and(|i| is_context_length(i.code.as_deref(), &i.message))
    }

    fn error_event(&self, e: &ApiError) -> Bytes {
        native::chunked_event(Some(b"error"), &e.render_anthropic())
    }
}

/// Reads a relayed Anthropic stream through the adapter's own event reader (the same
/// parse the translated path does): the text deltas for budgets, the usage at the end.
struct MessagesWatch {
    events: anthropic::Events,
    usage: Option<Usage>,
}

impl StreamWatch for MessagesWatch {
    fn end_event(&self) -> &'static str {
        "message_stop"
    }

    fn on_event(&mut self, name: Option<&[u8]>, data: &[u8], _budget: bool) -> Seen {
        let mut seen = Seen::default();
        let mut out = std::collections::VecDeque::new();
        match self.events.on_event(name, data, &mut out) {
            Ok(end) => seen.end = end,
            // The provider's own `error` event goes to the client as it came; it ends
            // the stream.
            Err(_) => seen.end = true,
        }
        let mut text = String::new();
        for ev in out {
            match ev {
                StreamEvent::Delta(t) | StreamEvent::Reasoning { text: t, .. } => text.push_str(&t),
                StreamEvent::ToolCall { arguments, .. } => text.push_str(&arguments),
                StreamEvent::Done(u) => self.usage = Some(u),
                StreamEvent::Finish(_) => {}
            }
        }
        seen.usage = self.usage;
        seen.text = (!text.is_empty()).then_some(text);
        seen
    }
}

/// The body parse and turn split of `messages`, for `api::fuzz`.
pub(crate) fn fuzz_parse(body: &[u8]) -> bool {
    parse(body).and_then(|mut p| into_turn(&mut p, "fuzz")).is_ok()
}
