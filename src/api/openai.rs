//! The OpenAI-compatible front door, so existing SDKs work unchanged:
//! `POST /v1/chat/completions` (non-stream: one `chat.completion` object; stream:
//! `chat.completion.chunk` events as bare `data: ...` lines, a final chunk with
//! `finish_reason`, a usage chunk when `stream_options.include_usage`, then
//! `data: [DONE]`), `GET /v1/models`, `GET /v1/models/{id}` and `POST /v1/embeddings`
//! (`embeddings`). Errors use OpenAI's shape and statuses
//! (`ApiError::render_openai`, chosen by the route in `server::dispatch`).
//!
//! Conversation rule (documented for users): without `X-Session-Id` a request is a
//! fresh conversation: every message of `messages` before the last goes to the
//! provider as is, and nothing is stored. With `X-Session-Id: <id>` the request joins
//! that clawgate session: the provider gets the request's leading `system`/`developer`
//! messages, then the session's stored history, then the request's last message; the
//! earlier user/assistant messages of the request are ignored (the session already
//! has them), and the turn is appended to the session. Either way the last message
//! must be a `user` message. Any configured provider answers in OpenAI's shape, since
//! the turn runs through the same `turn::start_turn`/`LiveTurn` as every front door.
//! Cost: the body is parsed once with borrowed strings; each chunk is one small JSON
//! render.
//!
//! Fast path (`pass`): without `X-Session-Id`, for a model with no fallbacks on a
//! provider that speaks OpenAI's format, the request goes upstream as sent (only the
//! model name rewritten) and the provider's answer or stream comes back as it sent it
//! (its `id`, its `model` name, its role chunk), event by event.

mod embeddings;
mod pass;

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::api::{require_body, Ctx};
use crate::auth::Identity;
use crate::chat::{ContentPart, Message, MessageExtra, MessageRole, Params, Tool, ToolCall, ToolChoice, Usage};
use crate::clock;
use crate::error::ApiError;
use crate::http::response::EventStream;
use crate::http::sse;
use crate::http::Response;
use crate::provider::Answer;
use crate::turn::{run_to_end, start_turn, LiveTurn, TurnContext, TurnEvent, TurnRequest};

pub use embeddings::embeddings;

#[derive(Deserialize)]
struct CompletionBody<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    messages: Option<Vec<InMessage<'a>>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(borrow, default)]
    stop: Option<Stop<'a>>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    presence_penalty: Option<f64>,
    #[serde(default)]
    frequency_penalty: Option<f64>,
    #[serde(default)]
    logprobs: Option<bool>,
    #[serde(default)]
    top_logprobs: Option<u32>,
    #[serde(default)]
    response_format: Option<sonic_rs::Value>,
    #[serde(borrow, default)]
    user: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning_effort: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tools: Option<Vec<InTool<'a>>>,
    #[serde(default)]
    tool_choice: Option<sonic_rs::Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// `stop`: one sequence or several.
#[derive(Deserialize)]
#[serde(untagged)]
enum Stop<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(#[serde(borrow)] Vec<Cow<'a, str>>),
}

#[derive(Deserialize)]
struct InTool<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    function: Option<InFunction<'a>>,
}

#[derive(Deserialize)]
struct InFunction<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    description: Option<Cow<'a, str>>,
    #[serde(default)]
    parameters: Option<sonic_rs::Value>,
}

#[derive(Deserialize)]
struct InMessage<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow, default)]
    content: Option<Content<'a>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<InToolCall<'a>>>,
    #[serde(borrow, default)]
    tool_call_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct InToolCall<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    function: InCall<'a>,
}

#[derive(Deserialize)]
struct InCall<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

/// OpenAI message content: a string or an array of parts.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Parts(#[serde(borrow)] Vec<Part<'a>>),
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    image_url: Option<ImageUrl<'a>>,
    #[serde(borrow, default)]
    file: Option<InFile<'a>>,
}

/// A `file` part (https://platform.openai.com/docs/guides/pdf-files): the document as
/// a base64 `data:` URL in `file_data`, or an uploaded file's `file_id`.
#[derive(Deserialize)]
struct InFile<'a> {
    #[serde(borrow, default)]
    file_data: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    filename: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    file_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ImageUrl<'a> {
    #[serde(borrow)]
    url: Cow<'a, str>,
    #[serde(borrow, default)]
    detail: Option<Cow<'a, str>>,
}

impl Content<'_> {
    /// The text (text parts joined) and, when there is more than text, every part in
    /// order. Errors name the part type clawgate cannot carry.
    fn read(&self, at: &str) -> Result<(String, Vec<ContentPart>), ApiError> {
        match self {
            Content::Text(t) => Ok((t.to_string(), Vec::new())),
            Content::Parts(parts) => {
                let mut text = String::new();
                let mut out = Vec::with_capacity(parts.len());
                let mut rich = false;
                for (i, p) in parts.iter().enumerate() {
                    match (&*p.kind, &p.text, &p.image_url) {
                        ("text", Some(t), _) => {
                            text.push_str(t);
                            out.push(ContentPart::Text(t.to_string()));
                        }
                        ("image_url", _, Some(img)) => {
                            rich = true;
                            out.push(ContentPart::Image {
                                url: img.url.to_string(),
                                detail: img.detail.as_deref().map(str::to_string),
                            });
                        }
                        ("file", _, _) => {
                            rich = true;
                            out.push(document(p.file.as_ref(), &format!("{at}.content[{i}]"))?);
                        }
                        (kind, _, _) => {
                            return Err(ApiError::invalid(format!(
                                "{at}.content[{i}]: content part type `{kind}` is not supported (text, image_url, \
                                 file)"
                            )))
                        }
                    }
                }
                Ok((text, if rich { out } else { Vec::new() }))
            }
        }
    }
}

/// A `file` part as a canonical document: `file_data` must be a base64 `data:` URL
/// (a bare base64 string is taken as a PDF, as OpenAI takes it). A `file_id` names a
/// file uploaded to OpenAI, which reaches only OpenAI itself: on the pass-through.
fn document(file: Option<&InFile<'_>>, at: &str) -> Result<ContentPart, ApiError> {
    let Some(f) = file else { return Err(ApiError::invalid(format!("{at}: a `file` part needs a `file` object"))) };
    match (&f.file_data, &f.file_id) {
        (Some(data), _) => Ok(ContentPart::Document {
            url: if data.starts_with("data:") {
                data.to_string()
            } else {
                format!("data:application/pdf;base64,{data}")
            },
            filename: f.filename.as_deref().map(str::to_string),
        }),
        (None, Some(_)) => Err(ApiError::invalid(format!(
            "{at}: `file.file_id` names a file uploaded to OpenAI and reaches only an OpenAI provider as sent; \
             this model's request is translated, so send the document as `file.file_data`"
        ))),
        (None, None) => Err(ApiError::invalid(format!("{at}: a `file` part needs `file.file_data` or `file.file_id`"))),
    }
}

fn role_of(role: &str) -> Result<MessageRole, ApiError> {
    match role {
        "system" | "developer" => Ok(MessageRole::System),
        "user" => Ok(MessageRole::User),
        "assistant" => Ok(MessageRole::Assistant),
        "tool" => Ok(MessageRole::Tool),
        other => Err(ApiError::invalid(format!("role `{other}` is not supported"))),
    }
}

fn tool_choice_of(v: &sonic_rs::Value) -> Result<ToolChoice, ApiError> {
    use sonic_rs::JsonValueTrait;
    if let Some(mode) = v.as_str() {
        return match mode {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(ApiError::invalid(format!("tool_choice `{other}` is not one of auto, none, required"))),
        };
    }
    match v.get("function").and_then(|f| f.get("name")).and_then(|n| n.as_str()) {
        Some(name) => Ok(ToolChoice::Named(name.to_string())),
        None => Err(ApiError::invalid(
            "tool_choice must be auto, none, required or {\"type\":\"function\",\"function\":{\"name\":...}}",
        )),
    }
}

/// A parsed `/v1/chat/completions` request.
struct Parsed {
    model: Option<String>,
    messages: Vec<Message>,
    params: Params,
    stream: bool,
    include_usage: bool,
}

fn parse(body: &[u8]) -> Result<Parsed, ApiError> {
    let b: CompletionBody<'_> = sonic_rs::from_slice(body).map_err(|e| {
        let first = e.to_string().lines().next().unwrap_or_default().to_string();
        ApiError::invalid(format!("invalid request body: {first}"))
    })?;
    let raw = b.messages.ok_or_else(|| ApiError::invalid("missing field `messages`"))?;
    let mut messages = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = role_of(&m.role).map_err(|e| ApiError::invalid(format!("{at}: {}", e.message)))?;
        let (content, parts) = match &m.content {
            Some(c) => c.read(&at)?,
            None => (String::new(), Vec::new()),
        };
        let tool_calls: Vec<ToolCall> = m
            .tool_calls
            .iter()
            .flatten()
            .map(|c| ToolCall {
                id: c.id.to_string(),
                name: c.function.name.to_string(),
                arguments: c.function.arguments.as_deref().unwrap_or("{}").to_string(),
            })
            .collect();
        if role == MessageRole::Tool && m.tool_call_id.is_none() {
            return Err(ApiError::invalid(format!("{at}: a `tool` message needs `tool_call_id`")));
        }
        let extra =
            (!parts.is_empty() || !tool_calls.is_empty() || m.tool_call_id.is_some() || m.name.is_some()).then(|| {
                Arc::new(MessageExtra {
                    parts,
                    tool_calls,
                    tool_call_id: m.tool_call_id.as_deref().map(str::to_string),
                    name: m.name.as_deref().map(str::to_string),
                    reasoning: None,
                })
            });
        messages.push(Message { role, content: Arc::from(content), extra });
    }
    let mut tools = Vec::new();
    for (i, t) in b.tools.into_iter().flatten().enumerate() {
        match (&*t.kind, t.function) {
            ("function", Some(f)) => tools.push(Tool {
                name: f.name.into_owned(),
                description: f.description.map(Cow::into_owned),
                parameters: f.parameters,
            }),
            (kind, _) => {
                return Err(ApiError::invalid(format!(
                    "tools[{i}]: tool type `{kind}` is not supported (function, with a `function` object)"
                )))
            }
        }
    }
    let params = Params {
        openai_extra: crate::api::unknown_fields(body, KNOWN_FIELDS)?,
        max_tokens: b.max_completion_tokens.or(b.max_tokens),
        temperature: b.temperature,
        top_p: b.top_p,
        stop: match b.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.into_owned()],
            Some(Stop::Many(list)) => list.into_iter().map(Cow::into_owned).collect(),
        },
        seed: b.seed,
        n: b.n,
        presence_penalty: b.presence_penalty,
        frequency_penalty: b.frequency_penalty,
        logprobs: b.logprobs,
        top_logprobs: b.top_logprobs,
        response_format: b.response_format,
        user: b.user.map(Cow::into_owned),
        reasoning_effort: b.reasoning_effort.map(Cow::into_owned),
        tools,
        tool_choice: b.tool_choice.as_ref().map(tool_choice_of).transpose()?,
        parallel_tool_calls: b.parallel_tool_calls,
        ..Params::default()
    };
    Ok(Parsed {
        model: b.model.map(Cow::into_owned),
        messages,
        params,
        stream: b.stream.unwrap_or(false),
        include_usage: b.stream_options.and_then(|o| o.include_usage).unwrap_or(false),
    })
}

/// The request's top-level fields clawgate does not model, as (name, raw JSON), in
/// order: carried to OpenAI-format providers as sent (`Params::openai_extra`).
const KNOWN_FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "response_format",
    "user",
    "reasoning_effort",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
];

/// Splits the request's messages into the turn (see the module doc for the rule).
fn into_turn(p: &mut Parsed, session_id: Option<String>) -> Result<TurnRequest, ApiError> {
    let last = p.messages.pop().ok_or_else(|| ApiError::invalid("messages must not be empty"))?;
    match last.role {
        MessageRole::User if last.content.trim().is_empty() && last.extra.is_none() => {
            return Err(ApiError::invalid("the last message must not be empty"))
        }
        MessageRole::User | MessageRole::Tool => {}
        _ => return Err(ApiError::invalid("the last message must have role `user` or `tool`")),
    }
    let earlier = std::mem::take(&mut p.messages);
    let context = match &session_id {
        None => TurnContext::Explicit(earlier),
        Some(_) => {
            TurnContext::SessionWithPrefix(earlier.into_iter().take_while(|m| m.role == MessageRole::System).collect())
        }
    };
    Ok(TurnRequest {
        channel: "api".into(),
        message: last,
        params: Arc::new(std::mem::take(&mut p.params)),
        session_id,
        model: p.model.take(),
        context,
        preamble: Vec::new(),
        seed: Vec::new(),
        stream: p.stream,
        request_id: String::new(),
    })
}

#[derive(Serialize)]
struct OpenAiUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<CachedTokens>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_tokens_details: Option<ReasoningTokens>,
}

#[derive(Serialize)]
struct CachedTokens {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct ReasoningTokens {
    reasoning_tokens: u64,
}

impl From<Usage> for OpenAiUsage {
    fn from(u: Usage) -> Self {
        OpenAiUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total(),
            prompt_tokens_details: (u.cached_tokens > 0).then_some(CachedTokens { cached_tokens: u.cached_tokens }),
            completion_tokens_details: (u.reasoning_tokens > 0)
                .then_some(ReasoningTokens { reasoning_tokens: u.reasoning_tokens }),
        }
    }
}

#[derive(Serialize)]
struct OutToolCall<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: OutFunction<'a>,
}

#[derive(Serialize)]
struct OutFunction<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: OpenAiUsage,
    system_fingerprint: Option<&'a str>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: OutMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    /// `null` when the model only called tools (OpenAI's shape).
    content: Option<&'a str>,
    /// The model's reasoning when the provider shows it (DeepSeek's field).
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: Option<&'a str>,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "UsageField::is_absent")]
    usage: UsageField,
}

/// `usage` on a chunk: absent without `include_usage`, `null` on content chunks with
/// it, the totals on the last chunk (OpenAI's exact behaviour).
enum UsageField {
    Absent,
    Null,
    Totals(OpenAiUsage),
}

impl UsageField {
    fn is_absent(&self) -> bool {
        matches!(self, UsageField::Absent)
    }
}

impl Serialize for UsageField {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            UsageField::Absent | UsageField::Null => s.serialize_none(),
            UsageField::Totals(u) => u.serialize(s),
        }
    }
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(ctx: &Ctx<'_>, who: Identity) -> Result<Response, ApiError> {
    let body = require_body(ctx.req)?;
    if let Some(resp) = pass::pass_through(ctx, &who).await? {
        return Ok(resp);
    }
    let mut parsed = parse(body)?;
    let session_id = ctx.req.header("x-session-id").map(str::to_string);
    let mut turn = into_turn(&mut parsed, session_id.clone())?;
    turn.request_id = ctx.request_id.to_string();
    let started = start_turn(&ctx.worker.turns, &ctx.snap.config, &who, turn).await?;
    let id = format!("chatcmpl-{}", ctx.request_id.trim_start_matches("req_"));
    let created = clock::now_unix();
    if parsed.stream {
        let dropped = started.dropped.clone();
        let (model, upstream) = (started.model_id.clone(), started.upstream_head);
        let stream = OpenAiStream {
            turn: LiveTurn::new(started),
            id,
            created,
            include_usage: parsed.include_usage,
            state: StreamState::Start,
        };
        let mut resp = Response::sse(Box::new(stream));
        if let Some(sid) = session_id {
            resp.push_header("x-session-id", sid);
        }
        add_dropped_header(&mut resp, &dropped);
        crate::api::log_turn(&mut resp, &ctx.snap.config, &model, upstream, None);
        return Ok(resp);
    }
    let (started, answer) = run_to_end(started).await?;
    let bytes = render_completion(&id, created, &started.model_id, &answer)?;
    let mut resp = Response::json(200, Bytes::from(bytes));
    if let Some(sid) = session_id {
        resp.push_header("x-session-id", sid);
    }
    add_dropped_header(&mut resp, &started.dropped);
    crate::api::log_turn(&mut resp, &ctx.snap.config, &started.model_id, started.upstream_head, Some(answer.usage));
    started.finish(answer.to_message()).await?;
    Ok(resp)
}

/// A whole answer as OpenAI's `chat.completion` object.
fn render_completion(id: &str, created: u64, model: &str, answer: &Answer) -> Result<Vec<u8>, ApiError> {
    let tool_calls = answer
        .tool_calls
        .iter()
        .map(|c| OutToolCall {
            index: None,
            id: Some(&c.id),
            kind: Some("function"),
            function: OutFunction { name: Some(&c.name), arguments: &c.arguments },
        })
        .collect::<Vec<_>>();
    let content = (!answer.text.is_empty() || tool_calls.is_empty()).then_some(answer.text.as_str());
    let body = Completion {
        id,
        object: "chat.completion",
        created,
        model,
        choices: [Choice {
            index: 0,
            message: OutMessage {
                role: "assistant",
                content,
                reasoning_content: Some(answer.reasoning.text.as_str()).filter(|t| !t.is_empty()),
                refusal: None,
                tool_calls,
            },
            logprobs: None,
            finish_reason: answer.finish.openai(),
        }],
        usage: answer.usage.into(),
        system_fingerprint: None,
    };
    sonic_rs::to_vec(&body).map_err(|e| ApiError::internal(format!("rendering failed: {e}")))
}

/// The per-request work of `/v1/chat/completions` without sockets, for
/// `benches/translation.rs`: the pass-through (peek, splice the model, read the
/// answer's usage) beside the translated path (parse into the canonical turn, encode
/// for the provider, decode its answer, render OpenAI's completion). Not an API.
#[doc(hidden)]
pub mod bench {
    use std::sync::Arc;

    use bytes::Bytes;

    use crate::provider::{Adapter, ChatRequest};

    /// The pass-through's work for one non-streamed request: the bytes relayed.
    pub fn pass_through(body: &Bytes, upstream_model: &str, answer: &[u8]) -> usize {
        let Some(sent) = super::pass::bench_forward_body(body, upstream_model) else { return 0 };
        sent.len() + super::pass::bench_read_usage(answer).total() as usize
    }

    /// The translated path's work for one non-streamed request through `adapter`: the
    /// bytes of the upstream body and of the rendered completion.
    pub fn translated(body: &[u8], upstream_model: &str, adapter: &dyn Adapter, answer: &[u8]) -> usize {
        let Ok(mut parsed) = super::parse(body) else { return 0 };
        let Ok(turn) = super::into_turn(&mut parsed, None) else { return 0 };
        let crate::turn::TurnContext::Explicit(mut messages) = turn.context else { return 0 };
        messages.push(turn.message);
        let req = ChatRequest {
            upstream_model: upstream_model.to_string(),
            messages,
            max_tokens: turn.params.max_tokens,
            params: Arc::clone(&turn.params),
            stream: false,
        };
        let Ok(sent) = adapter.encode(&req) else { return 0 };
        let Ok(decoded) = adapter.decode(&req, answer) else { return 0 };
        let rendered = super::render_completion("chatcmpl-bench", 0, "bench", &decoded).unwrap_or_default();
        sent.len() + rendered.len()
    }
}

/// `X-Clawgate-Dropped-Params: a, b` when settings the provider cannot carry were
/// dropped (`drop_unsupported_params`; PROTOCOL.md "Provider errors, by kind").
fn add_dropped_header(resp: &mut Response, dropped: &[String]) {
    if !dropped.is_empty() {
        resp.push_header("x-clawgate-dropped-params", dropped.join(", "));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    Start,
    Streaming,
    Usage(Usage),
    Done,
    Over,
}

/// OpenAI's stream rendering of a `LiveTurn`.
struct OpenAiStream {
    turn: LiveTurn,
    id: String,
    created: u64,
    include_usage: bool,
    state: StreamState,
}

impl OpenAiStream {
    fn chunk(&self, delta: Delta<'_>, finish: Option<&'static str>) -> Bytes {
        let usage = if self.include_usage { UsageField::Null } else { UsageField::Absent };
        self.render(vec![ChunkChoice { index: 0, delta, logprobs: None, finish_reason: finish }], usage)
    }

    fn render(&self, choices: Vec<ChunkChoice<'_>>, usage: UsageField) -> Bytes {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.turn.model_id,
            system_fingerprint: None,
            choices,
            usage,
        };
        sse::chunked_data(&sonic_rs::to_vec(&chunk).unwrap_or_default())
    }

    /// The turn's next event that shows in a chunk (a reasoning signature alone does not).
    async fn next_shown(&mut self) -> Option<TurnEvent> {
        loop {
            match self.turn.next().await {
                Some(TurnEvent::Reasoning { text, .. }) if text.is_empty() => continue,
                other => return other,
            }
        }
    }

    async fn step(&mut self) -> Option<Bytes> {
        match self.state {
            StreamState::Start => {
                self.state = StreamState::Streaming;
                Some(self.chunk(Delta { role: Some("assistant"), content: Some(""), ..Delta::default() }, None))
            }
            StreamState::Streaming => match self.next_shown().await {
                Some(TurnEvent::Delta(d)) => Some(self.chunk(Delta { content: Some(&d), ..Delta::default() }, None)),
                // Reasoning as `reasoning_content` (DeepSeek's field, which LiteLLM and
                // OpenAI-compatible clients read); a signature alone shows nothing.
                Some(TurnEvent::Reasoning { text, .. }) => {
                    Some(self.chunk(Delta { reasoning_content: Some(&text), ..Delta::default() }, None))
                }
                // OpenAI's shape: the first piece of a call has its index, id, type and
                // name; the rest carry the index and argument fragments.
                Some(TurnEvent::ToolCall { index, id, name, arguments }) => {
                    let first = id.is_some() || name.is_some();
                    let call = OutToolCall {
                        index: Some(index),
                        id: id.as_deref(),
                        kind: first.then_some("function"),
                        function: OutFunction { name: name.as_deref(), arguments: &arguments },
                    };
                    Some(self.chunk(Delta { tool_calls: vec![call], ..Delta::default() }, None))
                }
                Some(TurnEvent::Done { usage, finish, .. }) => {
                    self.state = if self.include_usage { StreamState::Usage(usage) } else { StreamState::Done };
                    Some(self.chunk(Delta::default(), Some(finish.openai())))
                }
                Some(TurnEvent::Failed(e)) => {
                    // OpenAI's SDKs raise on a chunk carrying `error`; the stream ends.
                    self.state = StreamState::Over;
                    Some(sse::chunked_data(&e.render_openai()))
                }
                None => {
                    self.state = StreamState::Done;
                    self.step_done()
                }
            },
            StreamState::Usage(usage) => {
                self.state = StreamState::Done;
                Some(self.render(Vec::new(), UsageField::Totals(usage.into())))
            }
            StreamState::Done => self.step_done(),
            StreamState::Over => None,
        }
    }

    fn step_done(&mut self) -> Option<Bytes> {
        self.state = StreamState::Over;
        Some(sse::chunked_data(b"[DONE]"))
    }
}

impl EventStream for OpenAiStream {
    fn next_event(&mut self) -> Pin<Box<dyn Future<Output = Option<Bytes>> + '_>> {
        Box::pin(self.step())
    }
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelEntry<'a>>,
}

#[derive(Serialize)]
struct ModelEntry<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'a str,
    /// clawgate's addition: the front doors the model serves (`api::native::FrontDoors`).
    front_doors: crate::api::native::FrontDoors,
}

/// `GET /v1/models`: the catalogue in OpenAI's list shape; `created` is the time the
/// gateway started, `owned_by` the provider's name.
pub fn models(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let created = ctx.worker.shared.started_unix;
    let list = ModelList {
        object: "list",
        data: ctx
            .snap
            .config
            .models
            .iter()
            .map(|m| ModelEntry {
                id: &m.id,
                object: "model",
                created,
                owned_by: &m.provider,
                front_doors: crate::api::native::front_doors(ctx, m),
            })
            .collect(),
    };
    let bytes = sonic_rs::to_vec(&list).map_err(|e| ApiError::internal(format!("rendering failed: {e}")))?;
    Ok(Response::json(200, Bytes::from(bytes)))
}

/// `GET /v1/models/{id}`: one model in the shape `/v1/models` lists it. `raw_id` is
/// the rest of the path: ids may contain `/`, sent literally or percent-encoded
/// (`org%2Fembed-small`, as the openai SDK sends it). Unknown: 404 `model_not_found`.
pub fn model(ctx: &Ctx<'_>, raw_id: &str) -> Result<Response, ApiError> {
    let decoded;
    let id = if raw_id.contains('%') {
        decoded = crate::http::request::percent_decode_path(raw_id)
            .ok_or_else(|| ApiError::invalid("the model id in the path is not valid UTF-8 once decoded"))?;
        decoded.as_str()
    } else {
        raw_id
    };
    let m = ctx.snap.config.model(id).ok_or_else(|| {
        ApiError::new(crate::error::ErrorCode::ModelNotFound, format!("model {id} is not in the catalogue"))
    })?;
    let entry = ModelEntry {
        id: &m.id,
        object: "model",
        created: ctx.worker.shared.started_unix,
        owned_by: &m.provider,
        front_doors: crate::api::native::front_doors(ctx, m),
    };
    let bytes = sonic_rs::to_vec(&entry).map_err(|e| ApiError::internal(format!("rendering failed: {e}")))?;
    Ok(Response::json(200, Bytes::from(bytes)))
}

/// The body parse and turn split of `chat_completions`, for `api::fuzz`.
pub(crate) fn fuzz_parse(body: &[u8]) -> bool {
    parse(body).and_then(|mut p| into_turn(&mut p, None)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: &str) -> Parsed {
        parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn without_a_session_the_request_messages_are_the_history() {
        let mut p = parsed(
            r#"{"model":"mock","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":[{"type":"text","text":"again"}]}]}"#,
        );
        let t = into_turn(&mut p, None).unwrap();
        assert_eq!(&*t.message.content, "again");
        let TurnContext::Explicit(h) = t.context else { panic!("explicit context expected") };
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].role, MessageRole::System);
    }

    #[test]
    fn with_a_session_only_leading_system_messages_are_kept() {
        let mut p = parsed(
            r#"{"messages":[{"role":"developer","content":"rules"},{"role":"user","content":"old"},{"role":"user","content":"new"}]}"#,
        );
        let t = into_turn(&mut p, Some("s1".into())).unwrap();
        assert_eq!(&*t.message.content, "new");
        let TurnContext::SessionWithPrefix(h) = t.context else { panic!("session context expected") };
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn the_last_message_must_be_from_the_user() {
        let mut p = parsed(r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}"#);
        assert!(into_turn(&mut p, None).is_err());
        assert!(parse(br#"{"messages":[{"role":"tool","content":"x"}]}"#).is_err());
        assert!(parse(br#"{"model":"m"}"#).is_err());
    }

    #[test]
    fn content_chunks_carry_null_usage_only_when_asked() {
        let with = serde_json::to_value(Chunk {
            id: "c",
            object: "chat.completion.chunk",
            created: 1,
            model: "m",
            system_fingerprint: None,
            choices: Vec::new(),
            usage: UsageField::Null,
        })
        .unwrap();
        assert!(with.get("usage").unwrap().is_null());
        let without = serde_json::to_value(Chunk {
            id: "c",
            object: "chat.completion.chunk",
            created: 1,
            model: "m",
            system_fingerprint: None,
            choices: Vec::new(),
            usage: UsageField::Absent,
        })
        .unwrap();
        assert!(without.get("usage").is_none());
    }
}
