//! The OpenAI adapter: `POST {base_url}/chat/completions` with `Authorization: Bearer`.
//! Streams ask for `stream_options.include_usage` so usage comes from the provider.
//! Each SSE `data:` payload is parsed with sonic-rs into borrowed structs (`Cow`
//! content: no copy unless the provider escaped something); `[DONE]` ends the stream.
//! The wire types are private to this file; `openai_compat` and `azure` reuse its
//! functions. Reasoning: `reasoning_effort` goes out (a thinking budget mapped to
//! it), and the `reasoning_content` that OpenAI-compatible servers (DeepSeek, vLLM)
//! send comes back as reasoning.

use std::borrow::Cow;
use std::collections::VecDeque;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::chat::{ContentPart, FinishReason, Message, MessageRole, Reasoning, ToolCall, ToolChoice, Usage};
use crate::provider::stream;
use crate::provider::{
    Adapter, Answer, ChatRequest, ErrorInfo, FailureKind, KeyHeader, NativeApi, ProviderError, StreamEvent,
};

/// OpenAI's own API (`kind = "openai"`, https://platform.openai.com/docs/api-reference):
/// chat at `{base_url}/chat/completions` with `Authorization: Bearer`; Responses and
/// embeddings are taken as they are.
pub struct OpenAi;

/// The key header of OpenAI and the servers that copy its API.
pub const BEARER: KeyHeader = KeyHeader { name: "authorization", bearer: true };

impl Adapter for OpenAi {
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
        Cow::Borrowed("/chat/completions")
    }

    fn native_path(&self, api: NativeApi, _model: &str) -> Option<Cow<'static, str>> {
        match api {
            NativeApi::ChatCompletions => Some(Cow::Borrowed("/chat/completions")),
            NativeApi::Responses => Some(Cow::Borrowed("/responses")),
            NativeApi::Embeddings => Some(Cow::Borrowed("/embeddings")),
            NativeApi::Messages | NativeApi::CountTokens => None,
        }
    }

    fn encode(&self, req: &ChatRequest) -> Result<Bytes, ProviderError> {
        encode(req, true)
    }

    fn decode(&self, _req: &ChatRequest, body: &[u8]) -> Result<Answer, ProviderError> {
        decode_completion(body)
    }

    fn events(&self, _req: &ChatRequest) -> Box<dyn stream::Events> {
        Box::new(Events::default())
    }

    fn error_info(&self, body: &[u8]) -> Option<ErrorInfo> {
        error_info(body)
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<&'a sonic_rs::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<WireToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    /// A string, an array of parts, or null (an assistant message with tool calls).
    content: WireContent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum WireContent<'a> {
    Text(&'a str),
    Parts(Vec<WirePart<'a>>),
    Null(Option<()>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WirePart<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: WireImage<'a> },
    File { file: WireFile<'a> },
}

#[derive(Serialize)]
struct WireFile<'a> {
    file_data: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<&'a str>,
}

#[derive(Serialize)]
struct WireImage<'a> {
    url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

#[derive(Serialize)]
struct WireToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunctionCall<'a>,
}

#[derive(Serialize)]
struct WireFunctionCall<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a sonic_rs::Value>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum WireToolChoice<'a> {
    Mode(&'static str),
    Named {
        #[serde(rename = "type")]
        kind: &'static str,
        function: WireName<'a>,
    },
}

#[derive(Serialize)]
struct WireName<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// OpenAI's `usage` object (the counts clawgate reads), with its token details.
#[derive(Deserialize)]
pub struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_tokens: u.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0),
            reasoning_tokens: u.completion_tokens_details.and_then(|d| d.reasoning_tokens).unwrap_or(0),
        }
    }
}

#[derive(Deserialize)]
struct Completion<'a> {
    #[serde(borrow, default)]
    choices: Vec<Choice<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    /// Set when a stream reports a failure in-band (one parse serves both cases).
    #[serde(borrow, default)]
    error: Option<ErrorDetail<'a>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    message: Option<Content<'a>>,
    #[serde(borrow, default)]
    delta: Option<Content<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    /// DeepSeek's and vLLM's reasoning text (not OpenAI's own: it shows none).
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<InToolCall<'a>>>,
}

#[derive(Deserialize)]
struct InToolCall<'a> {
    /// Streams number their calls; whole answers list them in order.
    #[serde(default)]
    index: Option<u32>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    function: Option<InFunction<'a>>,
}

#[derive(Deserialize)]
struct InFunction<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
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
    /// A string in OpenAI's answers; some compatible servers send a number.
    #[serde(default)]
    code: Option<sonic_rs::Value>,
}

fn role(r: MessageRole) -> &'static str {
    match r {
        MessageRole::System => "system",
        MessageRole::User => "user",
        MessageRole::Assistant => "assistant",
        MessageRole::Tool => "tool",
    }
}

fn wire_message(m: &Message) -> Result<WireMessage<'_>, ProviderError> {
    let extra = m.extra.as_deref();
    let parts = extra.map_or(&[][..], |e| &e.parts[..]);
    let tool_calls: Vec<WireToolCall<'_>> = m
        .tool_calls()
        .iter()
        .map(|c| WireToolCall {
            id: &c.id,
            kind: "function",
            function: WireFunctionCall { name: &c.name, arguments: &c.arguments },
        })
        .collect();
    let content = if !parts.is_empty() {
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            out.push(match p {
                ContentPart::Text(t) => WirePart::Text { text: t },
                ContentPart::Image { url, detail } => {
                    WirePart::ImageUrl { image_url: WireImage { url, detail: detail.as_deref() } }
                }
                ContentPart::Document { url, filename } if url.starts_with("data:") => {
                    WirePart::File { file: WireFile { file_data: url, filename: filename.as_deref() } }
                }
                ContentPart::Document { .. } => {
                    return Err(ProviderError::new(
                        FailureKind::BadRequest { status: 400, context_length: false },
                        "a document by URL cannot be sent to an OpenAI-format chat API (it takes `file_data`, \
                         base64 in a data: URL)",
                    ))
                }
            });
        }
        WireContent::Parts(out)
    } else if m.content.is_empty() && !tool_calls.is_empty() {
        WireContent::Null(None)
    } else {
        WireContent::Text(&m.content)
    };
    Ok(WireMessage {
        role: role(m.role),
        content,
        name: extra.and_then(|e| e.name.as_deref()),
        tool_calls,
        tool_call_id: extra.and_then(|e| e.tool_call_id.as_deref()),
    })
}

/// The request body for `req` (https://platform.openai.com/docs/api-reference/chat/create).
/// `max_completion_tokens` is OpenAI's current spelling (reasoning models accept no
/// other); OpenAI-compatible servers get `max_tokens`, the one they all know.
pub fn encode(req: &ChatRequest, completion_tokens_spelling: bool) -> Result<Bytes, ProviderError> {
    let p = &*req.params;
    let (max_tokens, max_completion_tokens) =
        if completion_tokens_spelling { (None, req.max_tokens) } else { (req.max_tokens, None) };
    let wire = WireRequest {
        model: &req.upstream_model,
        messages: req.messages.iter().map(wire_message).collect::<Result<_, _>>()?,
        stream: req.stream,
        stream_options: req.stream.then_some(StreamOptions { include_usage: true }),
        max_tokens,
        max_completion_tokens,
        temperature: p.temperature,
        top_p: p.top_p,
        stop: &p.stop,
        seed: p.seed,
        n: p.n,
        presence_penalty: p.presence_penalty,
        frequency_penalty: p.frequency_penalty,
        logprobs: p.logprobs,
        top_logprobs: p.top_logprobs,
        response_format: p.response_format.as_ref(),
        user: p.user.as_deref(),
        reasoning_effort: p.effort(),
        tools: p
            .tools
            .iter()
            .map(|t| WireTool {
                kind: "function",
                function: WireFunction {
                    name: &t.name,
                    description: t.description.as_deref(),
                    parameters: t.parameters.as_ref(),
                },
            })
            .collect(),
        tool_choice: p.tool_choice.as_ref().map(|c| match c {
            ToolChoice::Auto => WireToolChoice::Mode("auto"),
            ToolChoice::None => WireToolChoice::Mode("none"),
            ToolChoice::Required => WireToolChoice::Mode("required"),
            ToolChoice::Named(name) => WireToolChoice::Named { kind: "function", function: WireName { name } },
        }),
        parallel_tool_calls: p.parallel_tool_calls,
    };
    let mut body =
        sonic_rs::to_vec(&wire).map_err(|e| ProviderError::upstream(format!("cannot encode the request: {e}")))?;
    // Fields the client sent that clawgate does not model go on as they were sent.
    if !p.openai_extra.is_empty() && body.last() == Some(&b'}') {
        body.pop();
        for (name, raw) in &p.openai_extra {
            body.push(b',');
            body.extend_from_slice(sonic_rs::to_string(name).unwrap_or_default().as_bytes());
            body.push(b':');
            body.extend_from_slice(raw.as_bytes());
        }
        body.push(b'}');
    }
    Ok(Bytes::from(body))
}

/// Reads a non-streamed completion: text, tool calls, finish reason and usage. The
/// common shape (the first choice's `message.content` a string, `usage` found by
/// `scan_usage`, `finish_reason` `stop`) is read with lazy lookups and a scan; anything
/// else is parsed whole.
pub fn decode_completion(body: &[u8]) -> Result<Answer, ProviderError> {
    let plain = memchr::memmem::find(body, b"\"reasoning_content\"").is_none();
    if let Some(usage) = scan_usage(body).filter(|_| plain) {
        let content = crate::json::get(body, &sonic_rs::pointer!["choices", 0, "message", "content"]);
        let finish = crate::json::get(body, &sonic_rs::pointer!["choices", 0, "finish_reason"]);
        if let (Ok(v), Ok(f)) = (content, finish) {
            if f.as_raw_str() == "\"stop\"" {
                if let Ok(text) = sonic_rs::from_str::<String>(v.as_raw_str()) {
                    return Ok(Answer { text, finish: FinishReason::Stop, usage, ..Answer::default() });
                }
            }
        }
    }
    let c: Completion<'_> = crate::json::from_slice(body)
        .map_err(|e| ProviderError::upstream(format!("provider sent an unreadable completion: {e}")))?;
    let usage = c.usage.map(Usage::from).unwrap_or_default();
    let Some(choice) = c.choices.into_iter().next() else {
        return Ok(Answer { usage, ..Answer::default() });
    };
    let finish = choice.finish_reason.as_deref().map(FinishReason::from_openai).unwrap_or_default();
    let message = choice.message;
    let text = message.as_ref().and_then(|m| m.content.as_deref()).unwrap_or_default().to_string();
    let reasoning = Reasoning {
        text: message.as_ref().and_then(|m| m.reasoning_content.as_deref()).unwrap_or_default().to_string(),
        signature: None,
    };
    let tool_calls = message
        .and_then(|m| m.tool_calls)
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            let f = c.function.unwrap_or(InFunction { name: None, arguments: None });
            ToolCall {
                id: c.id.map(Cow::into_owned).unwrap_or_default(),
                name: f.name.map(Cow::into_owned).unwrap_or_default(),
                arguments: f.arguments.map(Cow::into_owned).unwrap_or_default(),
            }
        })
        .collect();
    Ok(Answer { text, reasoning, tool_calls, finish, usage })
}

/// `read_usage` by scanning instead of parsing, for the common shape: the document
/// names `"usage"` exactly once (an unescaped quote cannot occur inside a JSON
/// string, so `"usage"` followed by `:` is a key), with `null` or an object whose
/// `prompt_tokens` and `completion_tokens` are plain integers. Anything else: `None`,
/// and the caller parses. A completion's `usage` comes last, after the content, so
/// this skips the whole answer with two SIMD searches instead of a JSON walk.
pub fn scan_usage(json: &[u8]) -> Option<Usage> {
    const KEY: &[u8] = b"\"usage\"";
    let at = memchr::memmem::rfind(json, KEY)?;
    if memchr::memmem::find(json, KEY)? != at {
        return None;
    }
    let rest = skip_ws(&json[at + KEY.len()..]);
    let rest = skip_ws(rest.strip_prefix(b":")?);
    if rest.starts_with(b"null") {
        return Some(Usage::default());
    }
    let object = rest.strip_prefix(b"{")?;
    // Token details (cached, reasoning) are read by the parse.
    if memchr::memmem::find(object, b"_details").is_some() {
        return None;
    }
    Some(Usage {
        prompt_tokens: scan_count(object, b"\"prompt_tokens\"")?,
        completion_tokens: scan_count(object, b"\"completion_tokens\"")?,
        ..Usage::default()
    })
}

/// The integer after `key` and a colon, where `key` occurs once in `object`.
fn scan_count(object: &[u8], key: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(object, key)?;
    if memchr::memmem::find(&object[at + 1..], key).is_some() {
        return None;
    }
    let rest = skip_ws(&object[at + key.len()..]);
    let rest = skip_ws(rest.strip_prefix(b":")?);
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let after = skip_ws(&rest[digits..]);
    if digits == 0 || digits > 18 || !matches!(after.first(), Some(b',' | b'}')) {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

fn skip_ws(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r')).count();
    &b[n..]
}

/// The `error.message` of an OpenAI-shaped error body, if it has one.
pub fn error_message(body: &[u8]) -> Option<String> {
    error_info(body).map(|i| i.message)
}

/// `error.message`, `error.type` and `error.code` of an OpenAI-shaped error body
/// (https://platform.openai.com/docs/guides/error-codes), if it is one.
pub fn error_info(body: &[u8]) -> Option<ErrorInfo> {
    use sonic_rs::JsonValueTrait;
    let e: ErrorBody<'_> = crate::json::from_slice(body).ok()?;
    let code = e.error.code.and_then(|c| c.as_str().map(str::to_string).or_else(|| c.as_i64().map(|n| n.to_string())));
    Some(ErrorInfo {
        message: e.error.message.map(Cow::into_owned).unwrap_or_default(),
        kind: e.error.kind.map(Cow::into_owned),
        code,
    })
}

/// OpenAI's stream: `data:` chunks with `choices[].delta.content`, a usage chunk
/// (asked for with `include_usage`), then `data: [DONE]`.
#[derive(Default)]
pub struct Events {
    usage: Option<Usage>,
    finish: Option<FinishReason>,
}

impl stream::Events for Events {
    fn end_event(&self) -> &'static str {
        "[DONE]"
    }

    fn on_event(
        &mut self,
        _name: Option<&[u8]>,
        data: &[u8],
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        if data == b"[DONE]" {
            out.push_back(StreamEvent::Finish(self.finish.unwrap_or_default()));
            out.push_back(StreamEvent::Done(self.usage.unwrap_or_default()));
            return Ok(true);
        }
        let chunk: Completion<'_> = crate::json::from_slice(data)
            .map_err(|e| ProviderError::upstream(format!("provider sent an unreadable chunk: {e}")))?;
        if let Some(e) = chunk.error {
            let msg = e.message.map(Cow::into_owned).unwrap_or_default();
            return Err(ProviderError::upstream(format!("provider stream failed: {msg}")));
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u.into());
        }
        for choice in chunk.choices {
            if let Some(f) = choice.finish_reason.as_deref() {
                self.finish = Some(FinishReason::from_openai(f));
            }
            let Some(delta) = choice.delta else { continue };
            if let Some(text) = delta.reasoning_content.filter(|t| !t.is_empty()) {
                out.push_back(StreamEvent::Reasoning { text: text.into_owned(), signature: None });
            }
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                out.push_back(StreamEvent::Delta(text.into_owned()));
            }
            for (i, call) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
                let f = call.function.unwrap_or(InFunction { name: None, arguments: None });
                out.push_back(StreamEvent::ToolCall {
                    index: call.index.unwrap_or(i as u32),
                    id: call.id.map(Cow::into_owned),
                    name: f.name.map(Cow::into_owned),
                    arguments: f.arguments.map(Cow::into_owned).unwrap_or_default(),
                });
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_asks_for_usage_when_streaming() {
        let req = ChatRequest {
            upstream_model: "gpt-4o".into(),
            messages: vec![Message::text(MessageRole::User, "hi \"you\"")],
            params: Default::default(),
            max_tokens: None,
            stream: true,
        };
        let body = encode(&req, true).unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi \"you\""}],"stream":true,"stream_options":{"include_usage":true}}"#
        );
    }

    #[test]
    fn completion_text_and_usage_are_read() {
        let body = br#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi \u00e9"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        let Answer { text, usage, .. } = decode_completion(body).unwrap();
        assert_eq!(text, "Hi é");
        assert_eq!(usage, Usage { prompt_tokens: 5, completion_tokens: 2, ..Usage::default() });
        // Shapes off the fast path give what the whole parse gives.
        let cases: [(&[u8], &str, u64); 4] = [
            (br#"{"choices":[{"message":{"content":null,"tool_calls":[]}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#, "", 3),
            (br#"{"choices":[{"message":{"content":"a \"usage\": {"}}],"usage":{"prompt_tokens":4,"completion_tokens":1}}"#, "a \"usage\": {", 4),
            (br#"{"choices":[{"message":{"content":"no usage"}}]}"#, "no usage", 0),
            (br#"{"choices":[],"usage":{"prompt_tokens":6,"completion_tokens":0}}"#, "", 6),
        ];
        for (body, want, prompt) in cases {
            let Answer { text, usage, .. } = decode_completion(body).unwrap();
            assert_eq!((text.as_str(), usage.prompt_tokens), (want, prompt), "{}", String::from_utf8_lossy(body));
        }
        assert!(decode_completion(b"{not json").is_err());
    }
}
