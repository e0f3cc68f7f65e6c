//! The OpenAI Responses API front door (`POST /v1/responses`,
//! https://platform.openai.com/docs/api-reference/responses), the default of
//! `openai-agents` and of LangChain's `use_responses_api`.
//!
//! A model whose every candidate is served by OpenAI itself gets the body untouched,
//! only `model` spliced (`api::native`): OpenAI keeps its own conversation state.
//! Every other provider kind gets the request translated to its chat API through the
//! canonical turn: `input` (a string, or items: messages with `input_text`,
//! `output_text`, `input_image` and `input_file` parts, `function_call` and
//! `function_call_output` items; `reasoning` items are the model's own and carry
//! nothing another provider can read), `instructions` (system, not stored, as OpenAI
//! does not carry them over), function `tools`, `tool_choice`, `parallel_tool_calls`,
//! `max_output_tokens`, `temperature`, `top_p`, `reasoning.effort`, `text.format`
//! (JSON mode or schema) and `user`; the answer is a Response object (a `message`
//! item, `function_call` items, a `reasoning` item when the provider shows its
//! reasoning) or the Responses event stream (`render`).
//!
//! Conversation state for translated providers lives in the session store: a stored
//! response (`store`, true by default) is a turn in a session, and its id
//! `resp_<n>_<session id>` names the conversation up to it (`n` messages recorded).
//! `previous_response_id` continues that conversation: the session itself when the
//! response is its latest, or a new session forked with the history up to the
//! response when it is older (OpenAI's semantics: any stored response can be
//! continued, and continuing an older one branches). `store: false` keeps nothing.

mod render;

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

use crate::api::native::{self, Format, Seen, StreamWatch};
use crate::api::{require_body, unknown_fields, Ctx, StrOrList};
use crate::auth::Identity;
use crate::chat::{ContentPart, Message, MessageExtra, MessageRole, Params, Tool, ToolCall, ToolChoice, Usage};
use crate::error::{ApiError, ProviderDetail};
use crate::http::Response;
use crate::provider::{is_context_length, NativeApi};
use crate::turn::{run_to_end, start_turn, LiveTurn, TurnContext, TurnRequest};

/// A `POST /v1/responses` body.
#[derive(Deserialize)]
struct ResponsesBody<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<StrOrList<'a, InItem<'a>>>,
    #[serde(borrow, default)]
    instructions: Option<Cow<'a, str>>,
    #[serde(default)]
    max_output_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(borrow, default)]
    tools: Option<Vec<InTool<'a>>>,
    #[serde(default)]
    tool_choice: Option<sonic_rs::Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(borrow, default)]
    reasoning: Option<InReasoning<'a>>,
    #[serde(default)]
    text: Option<InText>,
    #[serde(borrow, default)]
    user: Option<Cow<'a, str>>,
    #[serde(default)]
    metadata: Option<sonic_rs::Value>,
    #[serde(default)]
    store: Option<bool>,
    #[serde(borrow, default)]
    previous_response_id: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
}

/// Fields `ResponsesBody` models, and fields accepted with no effect on a translated
/// provider: `include` (extra output OpenAI can attach), `truncation` (the session's
/// own bounds apply), `service_tier`, `prompt_cache_key` and `safety_identifier`
/// (OpenAI's routing and caching hints), `stream_options`. Any other is foreign.
const KNOWN_FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "max_output_tokens",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning",
    "text",
    "user",
    "metadata",
    "store",
    "previous_response_id",
    "stream",
    "include",
    "truncation",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "stream_options",
];

#[derive(Deserialize)]
struct InReasoning<'a> {
    #[serde(borrow, default)]
    effort: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct InText {
    #[serde(default)]
    format: Option<sonic_rs::Value>,
}

#[derive(Deserialize)]
struct InTool<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    description: Option<Cow<'a, str>>,
    #[serde(default)]
    parameters: Option<sonic_rs::Value>,
    #[serde(default)]
    strict: Option<bool>,
}

/// One input item; which fields are set depends on `type` (absent: a message).
#[derive(Deserialize)]
struct InItem<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<StrOrList<'a, InPart<'a>>>,
    #[serde(borrow, default)]
    call_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    output: Option<StrOrList<'a, InPart<'a>>>,
}

/// One content part of a message item.
#[derive(Deserialize)]
struct InPart<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    image_url: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    detail: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    file_data: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    file_url: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    filename: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    file_id: Option<Cow<'a, str>>,
}

/// What the response object echoes of the request (OpenAI's Response fields).
#[derive(Debug, Clone, Default)]
pub struct Echo {
    pub instructions: Option<String>,
    pub max_output_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub parallel_tool_calls: Option<bool>,
    pub previous_response_id: Option<String>,
    pub effort: Option<String>,
    pub store: bool,
    pub text_format: Option<sonic_rs::Value>,
    pub tool_choice: Option<sonic_rs::Value>,
    pub tools: Vec<sonic_rs::Value>,
    pub user: Option<String>,
    pub metadata: Option<sonic_rs::Value>,
}

/// A parsed request in the canonical shape.
struct Parsed {
    model: Option<String>,
    /// `instructions` as a system message (sent, never stored).
    instructions: Option<Message>,
    /// The input items, in order.
    items: Vec<Message>,
    params: Params,
    stream: bool,
    previous: Option<String>,
    echo: Echo,
}

fn invalid(at: &str, what: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("{at}: {what}"))
}

/// The text of a `function_call_output`'s `output` (a string or text parts).
fn output_text(output: Option<&StrOrList<'_, InPart<'_>>>, at: &str) -> Result<String, ApiError> {
    match output {
        None => Ok(String::new()),
        Some(StrOrList::Str(s)) => Ok(s.to_string()),
        Some(StrOrList::List(parts)) => {
            let mut out = String::new();
            for (i, p) in parts.iter().enumerate() {
                match (&*p.kind, &p.text) {
                    ("input_text" | "output_text", Some(t)) => out.push_str(t),
                    (kind, _) => {
                        return Err(invalid(
                            &format!("{at}.output[{i}]"),
                            format!("`{kind}` output cannot be translated"),
                        ))
                    }
                }
            }
            Ok(out)
        }
    }
}

/// One content part as canonical.
fn part(p: &InPart<'_>, at: &str) -> Result<ContentPart, ApiError> {
    match &*p.kind {
        "input_text" | "output_text" | "text" => {
            Ok(ContentPart::Text(p.text.as_deref().unwrap_or_default().to_string()))
        }
        "input_image" => match (&p.image_url, &p.file_id) {
            (Some(url), _) => Ok(ContentPart::Image {
                url: url.to_string(),
                detail: p.detail.as_deref().filter(|d| *d != "auto").map(str::to_string),
            }),
            (None, Some(_)) => Err(invalid(at, "an uploaded file's `file_id` reaches only OpenAI; send `image_url`")),
            (None, None) => Err(invalid(at, "an `input_image` needs `image_url`")),
        },
        "input_file" => match (&p.file_data, &p.file_url) {
            (Some(data), _) => Ok(ContentPart::Document {
                url: if data.starts_with("data:") {
                    data.to_string()
                } else {
                    format!("data:application/pdf;base64,{data}")
                },
                filename: p.filename.as_deref().map(str::to_string),
            }),
            (None, Some(url)) => {
                Ok(ContentPart::Document { url: url.to_string(), filename: p.filename.as_deref().map(str::to_string) })
            }
            (None, None) => {
                Err(invalid(at, "an `input_file` needs `file_data` or `file_url` (a `file_id` reaches only OpenAI)"))
            }
        },
        other => Err(invalid(at, format!("content part type `{other}` is not supported"))),
    }
}

/// Appends the canonical message of one input item to `out` (a `function_call` joins
/// the assistant message before it, as parallel calls are one assistant turn).
fn read_item(item: &InItem<'_>, at: &str, out: &mut Vec<Message>) -> Result<(), ApiError> {
    match item.kind.as_deref().unwrap_or("message") {
        "message" => {
            let role = match item.role.as_deref() {
                Some("user") => MessageRole::User,
                Some("assistant") => MessageRole::Assistant,
                Some("system" | "developer") => MessageRole::System,
                other => {
                    return Err(invalid(at, format!("role {other:?} is not one of user, assistant, system, developer")))
                }
            };
            let (text, parts) = match &item.content {
                None => (String::new(), Vec::new()),
                Some(StrOrList::Str(s)) => (s.to_string(), Vec::new()),
                Some(StrOrList::List(list)) => {
                    let mut text = String::new();
                    let mut parts = Vec::with_capacity(list.len());
                    for (i, p) in list.iter().enumerate() {
                        let cp = part(p, &format!("{at}.content[{i}]"))?;
                        if let ContentPart::Text(t) = &cp {
                            text.push_str(t);
                        }
                        parts.push(cp);
                    }
                    let rich = parts.iter().any(|p| !matches!(p, ContentPart::Text(_)));
                    (text, if rich { parts } else { Vec::new() })
                }
            };
            let extra = (!parts.is_empty()).then(|| Arc::new(MessageExtra { parts, ..MessageExtra::default() }));
            out.push(Message { role, content: text.into(), extra });
        }
        "function_call" => {
            let call = ToolCall {
                id: item.call_id.as_deref().ok_or_else(|| invalid(at, "a function_call needs `call_id`"))?.to_string(),
                name: item.name.as_deref().ok_or_else(|| invalid(at, "a function_call needs `name`"))?.to_string(),
                arguments: item.arguments.as_deref().unwrap_or("{}").to_string(),
            };
            match out.last_mut() {
                Some(last) if last.role == MessageRole::Assistant => {
                    let mut extra = last.extra.as_deref().cloned().unwrap_or_default();
                    extra.tool_calls.push(call);
                    last.extra = Some(Arc::new(extra));
                }
                _ => out.push(Message::assistant("", vec![call])),
            }
        }
        "function_call_output" => {
            let id = item.call_id.as_deref().ok_or_else(|| invalid(at, "a function_call_output needs `call_id`"))?;
            out.push(Message {
                role: MessageRole::Tool,
                content: output_text(item.output.as_ref(), at)?.into(),
                extra: Some(Arc::new(MessageExtra { tool_call_id: Some(id.to_string()), ..MessageExtra::default() })),
            });
        }
        // A reasoning item of an earlier response: only its own model can read it.
        "reasoning" => {}
        other => {
            return Err(invalid(
                at,
                format!(
                "input item type `{other}` is not supported (message, function_call, function_call_output, reasoning)"
            ),
            ))
        }
    }
    Ok(())
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
    match (v.get("type").and_then(|t| t.as_str()), v.get("name").and_then(|n| n.as_str())) {
        (Some("function"), Some(name)) => Ok(ToolChoice::Named(name.to_string())),
        _ => Err(ApiError::invalid("tool_choice must be auto, none, required or {\"type\":\"function\",\"name\":...}")),
    }
}

/// `text.format` as Chat Completions' `response_format`.
fn response_format(format: &sonic_rs::Value) -> Result<Option<sonic_rs::Value>, ApiError> {
    use sonic_rs::JsonValueTrait;
    match format.get("type").and_then(|t| t.as_str()) {
        None | Some("text") => Ok(None),
        Some("json_object") => Ok(Some(sonic_rs::json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut spec = sonic_rs::json!({"name": format.get("name").and_then(|n| n.as_str()).unwrap_or("response")});
            if let Some(obj) = sonic_rs::JsonValueMutTrait::as_object_mut(&mut spec) {
                for key in ["schema", "strict", "description"] {
                    if let Some(v) = format.get(key) {
                        obj.insert(key, v.clone());
                    }
                }
            }
            Ok(Some(sonic_rs::json!({"type": "json_schema", "json_schema": spec})))
        }
        Some(other) => {
            Err(ApiError::invalid(format!("text.format type `{other}` is not one of text, json_object, json_schema")))
        }
    }
}

fn parse(body: &[u8]) -> Result<Parsed, ApiError> {
    let b: ResponsesBody<'_> = sonic_rs::from_slice(body).map_err(|e| {
        let first = e.to_string().lines().next().unwrap_or_default().to_string();
        ApiError::invalid(format!("invalid request body: {first}"))
    })?;
    let mut items = Vec::new();
    match &b.input {
        None => {}
        Some(StrOrList::Str(s)) => items.push(Message::text(MessageRole::User, s.as_ref())),
        Some(StrOrList::List(list)) => {
            for (i, item) in list.iter().enumerate() {
                read_item(item, &format!("input[{i}]"), &mut items)?;
            }
        }
    }
    let mut tools = Vec::new();
    let mut echo_tools = Vec::new();
    for (i, t) in b.tools.into_iter().flatten().enumerate() {
        match (&*t.kind, &t.name) {
            ("function", Some(name)) => {
                let mut echoed = sonic_rs::json!({"type": "function", "name": name.as_ref(),
                    "description": t.description.as_deref(), "strict": t.strict.unwrap_or(true)});
                if let (Some(p), Some(obj)) = (&t.parameters, sonic_rs::JsonValueMutTrait::as_object_mut(&mut echoed)) {
                    obj.insert("parameters", p.clone());
                }
                echo_tools.push(echoed);
                tools.push(Tool {
                    name: name.to_string(),
                    description: t.description.map(Cow::into_owned),
                    parameters: t.parameters,
                });
            }
            (kind, _) => {
                return Err(invalid(
                    &format!("tools[{i}]"),
                    format!("tool type `{kind}` runs only on OpenAI and cannot be translated (function tools only)"),
                ))
            }
        }
    }
    let text_format = b.text.and_then(|t| t.format);
    let effort = b.reasoning.and_then(|r| r.effort).map(Cow::into_owned);
    let params = Params {
        max_tokens: b.max_output_tokens,
        temperature: b.temperature,
        top_p: b.top_p,
        response_format: text_format.as_ref().map(response_format).transpose()?.flatten(),
        user: b.user.as_deref().map(str::to_string),
        reasoning_effort: effort.clone(),
        tools,
        tool_choice: b.tool_choice.as_ref().map(tool_choice_of).transpose()?,
        parallel_tool_calls: b.parallel_tool_calls,
        foreign: unknown_fields(body, KNOWN_FIELDS)?.into_iter().map(|(name, _)| name).collect(),
        ..Params::default()
    };
    let echo = Echo {
        instructions: b.instructions.as_deref().map(str::to_string),
        max_output_tokens: b.max_output_tokens,
        temperature: b.temperature,
        top_p: b.top_p,
        parallel_tool_calls: b.parallel_tool_calls,
        previous_response_id: b.previous_response_id.as_deref().map(str::to_string),
        effort,
        store: b.store.unwrap_or(true),
        text_format,
        tool_choice: b.tool_choice,
        tools: echo_tools,
        user: b.user.map(Cow::into_owned),
        metadata: b.metadata,
    };
    Ok(Parsed {
        model: b.model.map(Cow::into_owned),
        instructions: echo.instructions.as_deref().map(|i| Message::text(MessageRole::System, i)),
        items,
        params,
        stream: b.stream.unwrap_or(false),
        previous: echo.previous_response_id.clone(),
        echo,
    })
}

/// A response id of a stored turn: `resp_<n>_<session id>`.
fn response_id(session_id: &str, appended: u64) -> String {
    format!("resp_{appended}_{session_id}")
}

/// The session and position a stored response id names.
fn parse_response_id(id: &str) -> Option<(&str, u64)> {
    let (n, session) = id.strip_prefix("resp_")?.split_once('_')?;
    Some((session, n.parse().ok()?))
}

/// OpenAI's refusal of a `previous_response_id` it does not know (400,
/// `previous_response_not_found`).
fn previous_not_found(id: &str, why: &str) -> ApiError {
    let mut e = ApiError::invalid(format!("previous_response_id {id}: {why}"));
    e.provider = Some(Box::new(ProviderDetail {
        kind: Some("invalid_request_error".into()),
        code: Some("previous_response_not_found".into()),
    }));
    e
}

/// The turn of a parsed request: where its conversation comes from (nothing stored,
/// a new session, a stored response's session, or a fork of it) and its new messages.
async fn into_turn(ctx: &Ctx<'_>, who: &Identity, p: &mut Parsed) -> Result<TurnRequest, ApiError> {
    let last = p.items.pop().ok_or_else(|| ApiError::invalid("input: at least one input item is required"))?;
    if !matches!(last.role, MessageRole::User | MessageRole::Tool) {
        return Err(ApiError::invalid("input: the last item must be a user message or a function_call_output"));
    }
    let prefix: Vec<Message> = p.instructions.take().into_iter().collect();
    let mut items = std::mem::take(&mut p.items);
    let (session_id, context, seed) = match (&p.previous, p.echo.store) {
        (None, false) => {
            let mut context = prefix;
            context.append(&mut items);
            (None, TurnContext::Explicit(context), Vec::new())
        }
        (None, true) => (None, TurnContext::SessionWithPrefix(prefix), Vec::new()),
        (Some(prev), _) => {
            let (sid, n) =
                parse_response_id(prev).ok_or_else(|| previous_not_found(prev, "not a response of this gateway"))?;
            let view = ctx
                .worker
                .turns
                .sessions
                .get(sid, who, None)
                .await
                .map_err(|_| previous_not_found(prev, "unknown (never stored, or deleted)"))?;
            let first_kept = view.appended - view.messages.len() as u64;
            if n == view.appended {
                (Some(sid.to_string()), TurnContext::SessionWithPrefix(prefix), Vec::new())
            } else if n < first_kept || n > view.appended {
                return Err(previous_not_found(prev, "older than the conversation's kept history, or unknown"));
            } else {
                // An earlier response: the conversation up to it, in a new session.
                let upto = (n - first_kept) as usize;
                let seed = view.messages[..upto]
                    .iter()
                    .map(|m| Message { role: m.role, content: m.content.clone(), extra: m.extra.clone() })
                    .collect();
                (None, TurnContext::SessionWithPrefix(prefix), seed)
            }
        }
    };
    let preamble = if matches!(context, TurnContext::Explicit(_)) { Vec::new() } else { items };
    Ok(TurnRequest {
        channel: "api".into(),
        message: last,
        params: Arc::new(std::mem::take(&mut p.params)),
        session_id,
        model: p.model.take(),
        context,
        preamble,
        seed,
        stream: p.stream,
        request_id: ctx.request_id.to_string(),
    })
}

/// `POST /v1/responses`.
pub async fn responses(ctx: &Ctx<'_>, who: Identity) -> Result<Response, ApiError> {
    let body = require_body(ctx.req)?;
    let cfg = &ctx.snap.config;
    if let Some(resp) = native::try_forward(ctx, &who, ResponsesFormat, Vec::new()).await? {
        return Ok(resp);
    }
    let mut parsed = parse(body)?;
    if parsed.model.is_none() {
        return Err(ApiError::invalid("model: field required"));
    }
    let turn = into_turn(ctx, &who, &mut parsed).await?;
    let stored_now = turn.preamble.len() as u64 + 2;
    let started = start_turn(&ctx.worker.turns, cfg, &who, turn).await?;
    let id = match &started.grant {
        Some(g) => response_id(&g.session_id, g.appended + stored_now),
        None => format!("resp_{}", ctx.request_id.trim_start_matches("req_")),
    };
    let dropped = started.dropped.clone();
    let (model, upstream) = (started.model_id.clone(), started.upstream_head);
    let mut usage = None;
    let head =
        render::Head { id, model: started.model_id.clone(), created_at: crate::clock::now_unix(), echo: parsed.echo };
    let mut resp = if parsed.stream {
        Response::sse(Box::new(render::ResponseStream::new(LiveTurn::new(started), head)))
    } else {
        let (started, answer) = run_to_end(started).await?;
        usage = Some(answer.usage);
        let bytes = render::response(&head, &answer)?;
        started.finish(answer.to_message()).await?;
        Response::json(200, Bytes::from(bytes))
    };
    crate::api::log_turn(&mut resp, cfg, &model, upstream, usage);
    if !dropped.is_empty() {
        resp.push_header("x-clawgate-dropped-params", dropped.join(", "));
    }
    Ok(resp)
}

/// OpenAI's Responses format on the pass-through.
struct ResponsesFormat;

impl Format for ResponsesFormat {
    type Watch = ResponsesWatch;

    fn api(&self) -> NativeApi {
        NativeApi::Responses
    }

    fn watch(&self) -> ResponsesWatch {
        ResponsesWatch
    }

    fn answer_usage(&self, body: &[u8]) -> Usage {
        crate::json::get(body, &["usage"]).ok().map(|v| usage_of(v.as_raw_str().as_bytes())).unwrap_or_default()
    }

    fn is_context_length(&self, body: &[u8]) -> bool {
        crate::provider::openai::error_info(body).is_some_and(|i| is_context_length(i.code.as_deref(), &i.message))
    }

    fn error_event(&self, e: &ApiError) -> Bytes {
        native::chunked_event(Some(b"error"), &render::error_event(e, 0))
    }
}

/// A Responses `usage` object (`input_tokens`, `output_tokens` and their details).
fn usage_of(json: &[u8]) -> Usage {
    #[derive(Deserialize, Default)]
    struct Details {
        #[serde(default)]
        cached_tokens: u64,
        #[serde(default)]
        reasoning_tokens: u64,
    }
    #[derive(Deserialize)]
    struct Wire {
        #[serde(default)]
        input_tokens: u64,
        #[serde(default)]
        output_tokens: u64,
        #[serde(default)]
        input_tokens_details: Option<Details>,
        #[serde(default)]
        output_tokens_details: Option<Details>,
    }
    let Ok(w) = sonic_rs::from_slice::<Wire>(json) else { return Usage::default() };
    Usage {
        prompt_tokens: w.input_tokens,
        completion_tokens: w.output_tokens,
        cached_tokens: w.input_tokens_details.unwrap_or_default().cached_tokens,
        reasoning_tokens: w.output_tokens_details.unwrap_or_default().reasoning_tokens,
    }
}

/// Reads a relayed Responses stream: the text deltas for budgets, the usage of the
/// final `response.completed` (or `.incomplete`, `.failed`), which ends it.
struct ResponsesWatch;

impl StreamWatch for ResponsesWatch {
    fn end_event(&self) -> &'static str {
        "response.completed"
    }

    fn on_event(&mut self, name: Option<&[u8]>, data: &[u8], budget: bool) -> Seen {
        let mut seen = Seen::default();
        match name.unwrap_or_default() {
            b"response.completed" | b"response.incomplete" | b"response.failed" => {
                seen.end = true;
                seen.usage = crate::json::get(data, &sonic_rs::pointer!["response", "usage"])
                    .ok()
                    .map(|v| usage_of(v.as_raw_str().as_bytes()));
            }
            b"response.output_text.delta" | b"response.function_call_arguments.delta" if budget => {
                seen.text = crate::json::get(data, &["delta"])
                    .ok()
                    .and_then(|v| sonic_rs::from_str::<String>(v.as_raw_str()).ok());
            }
            _ => {}
        }
        seen
    }
}

/// The body parse of `responses` (the turn split needs the session store), for
/// `api::fuzz`.
pub(crate) fn fuzz_parse(body: &[u8]) -> bool {
    parse(body).is_ok()
}
