//! The Google Gemini adapter: `POST {base_url}/v1beta/models/{model}:generateContent`
//! (whole answers) or `:streamGenerateContent?alt=sse` (server-sent events), with the
//! key in `x-goog-api-key` (https://ai.google.dev/api/generate-content). The canonical
//! request maps to `contents` (roles `user` and `model`; system messages to
//! `systemInstruction`), `tools[].functionDeclarations`, `toolConfig` and
//! `generationConfig`; answers map back from `candidates[0].content.parts` (text,
//! `functionCall`), `finishReason` and `usageMetadata`.
//!
//! Reasoning: `reasoning_effort` or a thinking budget becomes
//! `thinkingConfig.thinkingBudget` with `includeThoughts`, and thought parts come back
//! as reasoning. `response_format` becomes `responseMimeType: application/json` (and
//! `responseJsonSchema` for a schema). Documents and images are `inlineData` (base64)
//! or `fileData` (a URI).
//!
//! Embeddings (https://ai.google.dev/api/embeddings): OpenAI's `/embeddings` request
//! becomes `:batchEmbedContents`, one `{"model":"models/{m}","content":{"parts":
//! [{"text"}]},"outputDimensionality"?}` per input (at most 100 a call), and the
//! answer's `embeddings[].values` are the vectors, in order.
//!
//! Gemini names no tool calls: a call gets the id `call_<n>` (its position in the
//! answer), and a tool result is sent back as a `functionResponse` under the name of
//! the call it answers (looked up by that id in the history). Gemini's stream has no
//! end event: the body's end after a `finishReason` ends the answer.

use std::borrow::Cow;
use std::collections::VecDeque;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::chat::{ContentPart, FinishReason, Message, MessageRole, Params, ToolCall, ToolChoice, Usage};
use crate::provider::stream;
use crate::provider::{
    Adapter, Answer, ChatRequest, EmbedRequest, ErrorInfo, FailureKind, KeyHeader, ProviderError, StreamEvent,
};

/// Google's Gemini API (`kind = "gemini"`).
pub struct Gemini;

impl Adapter for Gemini {
    fn key_header(&self) -> KeyHeader {
        KeyHeader { name: "x-goog-api-key", bearer: false }
    }

    fn cannot_carry(&self) -> &'static [&'static str] {
        &["logprobs", "top_logprobs", "user", "parallel_tool_calls"]
    }

    fn chat_path(&self, model: &str, stream: bool) -> Cow<'static, str> {
        Cow::Owned(path(model, stream))
    }

    fn embeddings_path(&self, model: &str) -> Option<Cow<'static, str>> {
        Some(Cow::Owned(format!("/v1beta/models/{model}:batchEmbedContents")))
    }

    fn embeddings_batch(&self) -> usize {
        EMBED_BATCH
    }

    fn encode_embeddings(&self, req: &EmbedRequest<'_>) -> Result<Bytes, ProviderError> {
        encode_embeddings(req)
    }

    fn decode_embeddings(&self, body: &[u8]) -> Result<Vec<Vec<f32>>, ProviderError> {
        decode_embeddings(body)
    }

    fn encode(&self, req: &ChatRequest) -> Result<Bytes, ProviderError> {
        encode(req)
    }

    fn decode(&self, _req: &ChatRequest, body: &[u8]) -> Result<Answer, ProviderError> {
        decode(body)
    }

    fn events(&self, _req: &ChatRequest) -> Box<dyn stream::Events> {
        Box::new(Events::default())
    }

    fn error_info(&self, body: &[u8]) -> Option<ErrorInfo> {
        error_info(body)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest<'a> {
    contents: Vec<WireContent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<WireSystem>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTools<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<WireToolConfig<'a>>,
    generation_config: WireGeneration<'a>,
}

#[derive(Serialize)]
struct WireSystem {
    parts: [WireText; 1],
}

#[derive(Serialize)]
struct WireText {
    text: String,
}

#[derive(Serialize)]
struct WireContent<'a> {
    role: &'static str,
    parts: Vec<WirePart<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
enum WirePart<'a> {
    #[serde(rename = "text")]
    Text(&'a str),
    InlineData {
        mime_type: &'a str,
        data: &'a str,
    },
    FileData {
        file_uri: &'a str,
    },
    FunctionCall {
        name: &'a str,
        args: sonic_rs::Value,
    },
    FunctionResponse {
        name: &'a str,
        response: sonic_rs::Value,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireTools<'a> {
    function_declarations: Vec<WireFunction<'a>>,
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
#[serde(rename_all = "camelCase")]
struct WireToolConfig<'a> {
    function_calling_config: WireCallingConfig<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireCallingConfig<'a> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_function_names: Option<[&'a str; 1]>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireGeneration<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_json_schema: Option<&'a sonic_rs::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_config: Option<WireThinking>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireThinking {
    thinking_budget: u32,
    include_thoughts: bool,
}

/// `response_format` as Gemini's `responseMimeType` and `responseJsonSchema`.
fn response_format(p: &Params) -> Result<(Option<&'static str>, Option<&sonic_rs::Value>), ProviderError> {
    use sonic_rs::JsonValueTrait;
    let Some(format) = p.response_format.as_ref() else { return Ok((None, None)) };
    match format.get("type").and_then(|t| t.as_str()) {
        Some("text") => Ok((None, None)),
        Some("json_object") => Ok((Some("application/json"), None)),
        Some("json_schema") => Ok((Some("application/json"), format.get("json_schema").and_then(|s| s.get("schema")))),
        other => Err(bad_request(format!(
            "response_format type {} cannot be sent to Gemini (text, json_object, json_schema)",
            other.unwrap_or("(none)")
        ))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response<'a> {
    #[serde(borrow, default)]
    candidates: Vec<Candidate<'a>>,
    #[serde(default)]
    usage_metadata: Option<WireUsage>,
    #[serde(borrow, default)]
    error: Option<ErrorDetail<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate<'a> {
    #[serde(borrow, default)]
    content: Option<InContent<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct InContent<'a> {
    #[serde(borrow, default)]
    parts: Vec<InPart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InPart<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    /// A thought summary (`includeThoughts`): reasoning, not answer text.
    #[serde(default)]
    thought: Option<bool>,
    #[serde(borrow, default)]
    function_call: Option<InCall<'a>>,
}

#[derive(Deserialize)]
struct InCall<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default)]
    args: Option<sonic_rs::Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            prompt_tokens: u.prompt_token_count,
            // OpenAI counts reasoning inside the completion; Gemini apart from it.
            completion_tokens: u.candidates_token_count.saturating_add(u.thoughts_token_count),
            cached_tokens: u.cached_content_token_count,
            reasoning_tokens: u.thoughts_token_count,
        }
    }
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
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
}

/// The path below the base URL for `model`: the streaming method asks for SSE.
pub fn path(model: &str, stream: bool) -> String {
    if stream {
        format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/v1beta/models/{model}:generateContent")
    }
}

fn bad_request(message: String) -> ProviderError {
    ProviderError::new(FailureKind::BadRequest { status: 400, context_length: false }, message)
}

/// `arguments` JSON text as a value (`{}` when empty).
fn json_value(text: &str, what: &str) -> Result<sonic_rs::Value, ProviderError> {
    if text.trim().is_empty() {
        return Ok(sonic_rs::json!({}));
    }
    crate::json::from_slice(text.as_bytes()).map_err(|e| bad_request(format!("{what} is not JSON: {}", e.first_line())))
}

/// The name of the tool call `id` in `history` (for Gemini's `functionResponse`).
fn call_name<'m>(history: &'m [Message], id: &str) -> Option<&'m str> {
    history.iter().flat_map(Message::tool_calls).find(|c| c.id == id).map(|c| c.name.as_str())
}

fn parts<'m>(m: &'m Message, history: &'m [Message]) -> Result<Vec<WirePart<'m>>, ProviderError> {
    let extra = m.extra.as_deref();
    let mut out = Vec::new();
    if m.role == MessageRole::Tool {
        let id = extra.and_then(|e| e.tool_call_id.as_deref()).unwrap_or_default();
        let name = call_name(history, id)
            .ok_or_else(|| bad_request(format!("tool result {id:?} answers no tool call of this conversation")))?;
        let response = sonic_rs::json!({"content": &*m.content});
        out.push(WirePart::FunctionResponse { name, response });
        return Ok(out);
    }
    match extra.map(|e| &e.parts[..]).filter(|p| !p.is_empty()) {
        Some(list) => {
            for p in list {
                out.push(match p {
                    ContentPart::Text(t) => WirePart::Text(t),
                    ContentPart::Image { url, .. } | ContentPart::Document { url, .. } => {
                        match url.strip_prefix("data:").and_then(|r| r.split_once(";base64,")) {
                            Some((mime_type, data)) => WirePart::InlineData { mime_type, data },
                            None => WirePart::FileData { file_uri: url },
                        }
                    }
                });
            }
        }
        None if !m.content.is_empty() => out.push(WirePart::Text(&m.content)),
        None => {}
    }
    for call in m.tool_calls() {
        let args = json_value(&call.arguments, &format!("tool call {} `arguments`", call.id))?;
        out.push(WirePart::FunctionCall { name: &call.name, args });
    }
    Ok(out)
}

/// The request body for `req` (the model travels in the path, see `path`).
pub fn encode(req: &ChatRequest) -> Result<Bytes, ProviderError> {
    let p = &*req.params;
    let mut system = String::new();
    let mut contents: Vec<WireContent<'_>> = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        let role = match m.role {
            MessageRole::System => {
                if !system.is_empty() {
                    system.push_str("\n\n");
                }
                system.push_str(&m.content);
                continue;
            }
            MessageRole::User | MessageRole::Tool => "user",
            MessageRole::Assistant => "model",
        };
        let list = parts(m, &req.messages)?;
        match contents.last_mut() {
            // Results of parallel calls go back together, in one user turn.
            Some(last) if last.role == role && m.role == MessageRole::Tool => last.parts.extend(list),
            _ => contents.push(WireContent { role, parts: list }),
        }
    }
    let tool_config = p.tool_choice.as_ref().map(|c| {
        let (mode, named) = match c {
            ToolChoice::Auto => ("AUTO", None),
            ToolChoice::None => ("NONE", None),
            ToolChoice::Required => ("ANY", None),
            ToolChoice::Named(n) => ("ANY", Some([n.as_str()])),
        };
        WireToolConfig { function_calling_config: WireCallingConfig { mode, allowed_function_names: named } }
    });
    let tools = if p.tools.is_empty() {
        Vec::new()
    } else {
        vec![WireTools {
            function_declarations: p
                .tools
                .iter()
                .map(|t| WireFunction {
                    name: &t.name,
                    description: t.description.as_deref(),
                    parameters: t.parameters.as_ref(),
                })
                .collect(),
        }]
    };
    let (response_mime_type, response_json_schema) = response_format(p)?;
    let wire = WireRequest {
        contents,
        system_instruction: (!system.is_empty()).then_some(WireSystem { parts: [WireText { text: system }] }),
        tools,
        tool_config,
        generation_config: WireGeneration {
            max_output_tokens: req.max_tokens,
            temperature: p.temperature,
            top_p: p.top_p,
            top_k: p.top_k,
            stop_sequences: &p.stop,
            seed: p.seed,
            candidate_count: p.n,
            presence_penalty: p.presence_penalty,
            frequency_penalty: p.frequency_penalty,
            response_mime_type,
            response_json_schema,
            thinking_config: p
                .thinking_budget_tokens()
                .map(|thinking_budget| WireThinking { thinking_budget, include_thoughts: true }),
        },
    };
    sonic_rs::to_vec(&wire)
        .map(Bytes::from)
        .map_err(|e| ProviderError::upstream(format!("cannot encode the request: {e}")))
}

/// Gemini's `finishReason` in the canonical words (a turn that called functions says
/// `STOP`: it is a tool-call finish).
fn finish_of(reason: &str, called: bool) -> FinishReason {
    match reason {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        _ if called => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// Reads a whole `generateContent` answer.
pub fn decode(body: &[u8]) -> Result<Answer, ProviderError> {
    let r: Response<'_> = crate::json::from_slice(body)
        .map_err(|e| ProviderError::upstream(format!("provider sent an unreadable answer: {e}")))?;
    let mut answer = Answer { usage: r.usage_metadata.map(Usage::from).unwrap_or_default(), ..Answer::default() };
    let Some(candidate) = r.candidates.into_iter().next() else { return Ok(answer) };
    for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
        if let Some(call) = part.function_call {
            answer.tool_calls.push(ToolCall {
                id: format!("call_{}", answer.tool_calls.len()),
                name: call.name.into_owned(),
                arguments: call.args.map_or_else(|| "{}".to_string(), |a| a.to_string()),
            });
        } else if let Some(text) = part.text {
            if part.thought == Some(true) {
                answer.reasoning.text.push_str(&text);
            } else {
                answer.text.push_str(&text);
            }
        }
    }
    let called = !answer.tool_calls.is_empty();
    answer.finish = candidate.finish_reason.as_deref().map_or(FinishReason::Stop, |f| finish_of(f, called));
    Ok(answer)
}

/// `error.message` and `error.status` of a Google error body
/// (`{"error":{"code","message","status"}}`), if it is one.
pub fn error_info(body: &[u8]) -> Option<ErrorInfo> {
    let e: ErrorBody<'_> = crate::json::from_slice(body).ok()?;
    Some(ErrorInfo {
        message: e.error.message.map(Cow::into_owned).unwrap_or_default(),
        kind: e.error.status.map(Cow::into_owned),
        code: None,
    })
}

/// Most requests Gemini takes in one `batchEmbedContents` call.
const EMBED_BATCH: usize = 100;

#[derive(Serialize)]
struct WireEmbedBatch<'a> {
    requests: Vec<WireEmbed<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireEmbed<'a> {
    model: &'a str,
    content: WireEmbedContent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u32>,
}

#[derive(Serialize)]
struct WireEmbedContent<'a> {
    parts: [WireEmbedText<'a>; 1],
}

#[derive(Serialize)]
struct WireEmbedText<'a> {
    text: &'a str,
}

#[derive(Deserialize)]
struct EmbedAnswer {
    #[serde(default)]
    embeddings: Vec<EmbedValues>,
}

#[derive(Deserialize)]
struct EmbedValues {
    #[serde(default)]
    values: Vec<f32>,
}

/// The `batchEmbedContents` body for `req` (see the module doc).
pub fn encode_embeddings(req: &EmbedRequest<'_>) -> Result<Bytes, ProviderError> {
    let model = format!("models/{}", req.upstream_model);
    let wire = WireEmbedBatch {
        requests: req
            .inputs
            .iter()
            .map(|text| WireEmbed {
                model: &model,
                content: WireEmbedContent { parts: [WireEmbedText { text }] },
                output_dimensionality: req.dimensions,
            })
            .collect(),
    };
    sonic_rs::to_vec(&wire)
        .map(Bytes::from)
        .map_err(|e| ProviderError::upstream(format!("cannot encode the request: {e}")))
}

/// The vectors of a `batchEmbedContents` answer, in order.
pub fn decode_embeddings(body: &[u8]) -> Result<Vec<Vec<f32>>, ProviderError> {
    let answer: EmbedAnswer = crate::json::from_slice(body)
        .map_err(|e| ProviderError::upstream(format!("provider sent an unreadable answer: {e}")))?;
    Ok(answer.embeddings.into_iter().map(|e| e.values).collect())
}

/// Gemini's stream: each `data:` is a partial `GenerateContentResponse`; usage is
/// cumulative; the body's end after a finish reason is the end.
#[derive(Default)]
pub struct Events {
    usage: Usage,
    finish: Option<String>,
    calls: u32,
}

impl stream::Events for Events {
    fn end_event(&self) -> &'static str {
        "a finishReason"
    }

    fn on_event(
        &mut self,
        _name: Option<&[u8]>,
        data: &[u8],
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        let r: Response<'_> = crate::json::from_slice(data)
            .map_err(|e| ProviderError::upstream(format!("provider sent an unreadable event: {e}")))?;
        if let Some(e) = r.error {
            let msg = e.message.map(Cow::into_owned).unwrap_or_default();
            return Err(ProviderError::upstream(format!("provider stream failed: {msg}")));
        }
        if let Some(u) = r.usage_metadata {
            self.usage = u.into();
        }
        for candidate in r.candidates.into_iter().take(1) {
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                if let Some(call) = part.function_call {
                    out.push_back(StreamEvent::ToolCall {
                        index: self.calls,
                        id: Some(format!("call_{}", self.calls)),
                        name: Some(call.name.into_owned()),
                        arguments: call.args.map_or_else(|| "{}".to_string(), |a| a.to_string()),
                    });
                    self.calls += 1;
                } else if let Some(text) = part.text.filter(|t| !t.is_empty()) {
                    out.push_back(if part.thought == Some(true) {
                        StreamEvent::Reasoning { text: text.into_owned(), signature: None }
                    } else {
                        StreamEvent::Delta(text.into_owned())
                    });
                }
            }
            if let Some(f) = candidate.finish_reason {
                self.finish = Some(f.into_owned());
            }
        }
        Ok(false)
    }

    fn on_end(&mut self, out: &mut VecDeque<StreamEvent>) -> bool {
        let Some(reason) = self.finish.take() else { return false };
        out.push_back(StreamEvent::Finish(finish_of(&reason, self.calls > 0)));
        out.push_back(StreamEvent::Done(self.usage));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{MessageExtra, Params, Tool};
    use std::sync::Arc;

    #[test]
    fn a_conversation_with_a_tool_round_trip_becomes_gemini_contents() {
        let call = ToolCall { id: "call_0".into(), name: "get_weather".into(), arguments: "{\"city\":\"SF\"}".into() };
        let assistant = Message {
            role: MessageRole::Assistant,
            content: "".into(),
            extra: Some(Arc::new(MessageExtra { tool_calls: vec![call], ..MessageExtra::default() })),
        };
        let result = Message {
            role: MessageRole::Tool,
            content: "18C".into(),
            extra: Some(Arc::new(MessageExtra { tool_call_id: Some("call_0".into()), ..MessageExtra::default() })),
        };
        let params = Params {
            tools: vec![Tool { name: "get_weather".into(), description: None, parameters: None }],
            tool_choice: Some(ToolChoice::Named("get_weather".into())),
            temperature: Some(0.5),
            ..Params::default()
        };
        let req = ChatRequest {
            upstream_model: "gemini-2.5-flash".into(),
            messages: vec![
                Message::text(MessageRole::System, "be brief"),
                Message::text(MessageRole::User, "weather?"),
                assistant,
                result,
            ],
            params: Arc::new(params),
            max_tokens: Some(64),
            stream: false,
        };
        let body: sonic_rs::Value = sonic_rs::from_slice(&encode(&req).unwrap()).unwrap();
        let want = sonic_rs::json!({
            "contents": [
                {"role": "user", "parts": [{"text": "weather?"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "SF"}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": "18C"}}}]}
            ],
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "tools": [{"functionDeclarations": [{"name": "get_weather"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
            "generationConfig": {"maxOutputTokens": 64, "temperature": 0.5}
        });
        assert_eq!(body, want);
    }

    #[test]
    fn embeddings_become_one_batch_request_per_input_and_come_back_in_order() {
        let inputs = [Cow::Borrowed("hello"), Cow::Borrowed("world")];
        let req = EmbedRequest { upstream_model: "text-embedding-004", inputs: &inputs, dimensions: Some(4) };
        let body: sonic_rs::Value = sonic_rs::from_slice(&encode_embeddings(&req).unwrap()).unwrap();
        let want = sonic_rs::json!({"requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 4},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "world"}]}, "outputDimensionality": 4}
        ]});
        assert_eq!(body, want);
        let plain = EmbedRequest { dimensions: None, ..req };
        assert!(!String::from_utf8(encode_embeddings(&plain).unwrap().to_vec())
            .unwrap()
            .contains("outputDimensionality"));
        let got = decode_embeddings(br#"{"embeddings":[{"values":[0.5,-0.25]},{"values":[1e-3,0]}]}"#).unwrap();
        assert_eq!(got, vec![vec![0.5, -0.25], vec![0.001, 0.0]]);
        assert!(decode_embeddings(b"[1,2]").is_err());
        assert_eq!(
            Gemini.embeddings_path("text-embedding-004").as_deref(),
            Some("/v1beta/models/text-embedding-004:batchEmbedContents")
        );
    }

    #[test]
    fn answers_map_text_calls_finish_and_usage() {
        let body = br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hi"},{"functionCall":{"name":"f","args":{"a":1}}}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":7,"candidatesTokenCount":3,"thoughtsTokenCount":2,"cachedContentTokenCount":4}}"#;
        let a = decode(body).unwrap();
        assert_eq!(a.text, "Hi");
        assert_eq!(a.tool_calls, [ToolCall { id: "call_0".into(), name: "f".into(), arguments: "{\"a\":1}".into() }]);
        assert_eq!(a.finish, FinishReason::ToolCalls);
        assert_eq!(a.usage, Usage { prompt_tokens: 7, completion_tokens: 5, cached_tokens: 4, reasoning_tokens: 2 });
        let length = br#"{"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"MAX_TOKENS"}]}"#;
        assert_eq!(decode(length).unwrap().finish, FinishReason::Length);
    }
}
