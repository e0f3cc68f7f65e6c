//! The provider-neutral part of a chat exchange: reading the fields the mock cares
//! about from an OpenAI Chat Completions, OpenAI Responses, Azure OpenAI, Anthropic or
//! Gemini request body, and the `Turn` every provider's encoder renders.
//!
//! Usage is counted in words: prompt = sum over messages (Gemini `contents`, and an
//! Anthropic `system` or Gemini `systemInstruction`) of words + 3; the answer's
//! counts are in `reply.rs`. A Responses `input` counts as the equivalent chat
//! messages would: a string or message item words + 3, `instructions` like a system
//! message, a `function_call` item 3 (an assistant message with a tool call and no
//! text), a `function_call_output` item its output's words + 3 (a tool message). Bodies are parsed with sonic-rs into borrowed fields;
//! OpenAI and Anthropic message content stays a `LazyValue` until it is needed,
//! because it may be a string or an array of content parts.

use std::borrow::Cow;

use serde::Deserialize;
use sonic_rs::LazyValue;

use crate::reply::{words, Reply};

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    messages: Option<Vec<Message<'a>>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(borrow, default)]
    system: Option<LazyValue<'a>>,
    #[serde(borrow, default)]
    tools: Option<Vec<Tool<'a>>>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<LazyValue<'a>>,
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

/// A declared tool in any of the three shapes: Anthropic `{name}`, OpenAI
/// `{function: {name}}`, Gemini `{functionDeclarations: [{name}]}`.
#[derive(Deserialize)]
struct Tool<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    function: Option<Named<'a>>,
    #[serde(borrow, default, rename = "functionDeclarations", alias = "function_declarations")]
    function_declarations: Option<Vec<Named<'a>>>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

/// OpenAI's Responses API request (`POST /v1/responses`).
#[derive(Deserialize)]
struct ResponsesBody<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    /// A string, or an array of input items.
    #[serde(borrow, default)]
    input: Option<LazyValue<'a>>,
    #[serde(borrow, default)]
    instructions: Option<Cow<'a, str>>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
    /// Kept raw: the Response object repeats it.
    #[serde(borrow, default)]
    tools: Option<LazyValue<'a>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    previous_response_id: Option<Cow<'a, str>>,
    #[serde(default)]
    reasoning: Option<Reasoning>,
}

/// One Responses input item: a message (`type` absent or `message`), a
/// `function_call`, a `function_call_output`, or another kind the mock skips.
#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    /// A string or `input_text` / `output_text` parts.
    #[serde(borrow, default)]
    content: Option<LazyValue<'a>>,
    /// A `function_call_output`'s result: a string or content parts.
    #[serde(borrow, default)]
    output: Option<LazyValue<'a>>,
}

#[derive(Deserialize)]
struct Reasoning {
    #[serde(default)]
    effort: Option<String>,
    #[serde(default)]
    summary: Option<String>,
}

/// Gemini's `GenerateContentRequest`.
#[derive(Deserialize)]
struct GeminiBody<'a> {
    #[serde(borrow, default)]
    contents: Option<Vec<Content<'a>>>,
    #[serde(borrow, default, rename = "systemInstruction", alias = "system_instruction")]
    system_instruction: Option<Content<'a>>,
    #[serde(borrow, default)]
    tools: Option<Vec<Tool<'a>>>,
    #[serde(default, rename = "generationConfig", alias = "generation_config")]
    generation_config: Option<GenerationConfig>,
}

/// Gemini's `Content`: a role and parts.
#[derive(Deserialize)]
pub struct Content<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    parts: Option<Vec<Part<'a>>>,
}

impl Content<'_> {
    /// The `text` of its parts joined by a space.
    pub fn text(&self) -> String {
        parts_text(self.parts.as_deref())
    }
}

#[derive(Deserialize)]
struct GenerationConfig {
    #[serde(default, rename = "thinkingConfig", alias = "thinking_config")]
    thinking_config: Option<ThinkingConfig>,
    #[serde(default, rename = "stopSequences", alias = "stop_sequences")]
    stop_sequences: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct ThinkingConfig {
    #[serde(default, rename = "includeThoughts", alias = "include_thoughts")]
    include_thoughts: Option<bool>,
}

/// What the mock needs from a chat request.
#[derive(Debug, Default)]
pub struct Chat {
    /// Empty for Gemini (the model is in the path) and for Azure without `model`.
    pub model: String,
    /// `stream: true` (Gemini: decided by the method in the path).
    pub stream: bool,
    pub include_usage: bool,
    pub prompt_tokens: u64,
    /// Text of the last `user` message, directive included.
    pub last_user: String,
    /// Names of the declared tools, in order.
    pub tools: Vec<String>,
    /// The first stop sequence asked for (Anthropic `stop_sequences`, Gemini
    /// `generationConfig.stopSequences`).
    pub stop_sequence: Option<String>,
    /// Show the thinking text: Gemini `generationConfig.thinkingConfig.includeThoughts`,
    /// Responses `reasoning.summary`.
    pub include_thoughts: bool,
    /// The request fields a Responses answer repeats (Responses only).
    pub echo: Option<Echo>,
}

/// The request fields OpenAI's Response object repeats.
#[derive(Debug, Default)]
pub struct Echo {
    pub instructions: Option<String>,
    pub max_output_tokens: Option<u64>,
    /// The `tools` array as sent (`[]` without one).
    pub tools: String,
    pub previous_response_id: Option<String>,
    pub reasoning_effort: Option<String>,
    pub reasoning_summary: Option<String>,
}

/// Why a body was refused, phrased like the provider would; `param` names the field.
#[derive(Debug)]
pub struct Invalid {
    pub message: String,
    pub param: Option<&'static str>,
}

/// Whose wire format a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    /// OpenAI's Responses API: OpenAI's auth and error envelope, its own bodies and
    /// stream (`responses.rs`).
    Responses,
    /// OpenAI's bodies under Azure's routes, auth and error envelopes.
    Azure,
    Anthropic,
    Gemini,
}

/// Parses and checks a chat body.
pub fn parse(body: &[u8], dialect: Dialect) -> Result<Chat, Invalid> {
    match dialect {
        Dialect::Gemini => parse_gemini(body),
        Dialect::Responses => parse_responses(body),
        Dialect::Anthropic => parse_messages(body, dialect, true),
        Dialect::OpenAi | Dialect::Azure => parse_messages(body, dialect, false),
    }
}

/// Parses an Anthropic `count_tokens` body: a Messages request without `max_tokens`.
pub fn parse_count_tokens(body: &[u8]) -> Result<Chat, Invalid> {
    parse_messages(body, Dialect::Anthropic, false)
}

/// `Missing required parameter` in the provider's words.
fn missing(dialect: Dialect, field: &'static str) -> Invalid {
    match dialect {
        Dialect::Anthropic => Invalid { message: format!("{field}: Field required"), param: Some(field) },
        _ => Invalid { message: format!("Missing required parameter: '{field}'."), param: Some(field) },
    }
}

/// A Chat Completions or Messages body; `need_max_tokens` for Anthropic's Messages.
fn parse_messages(body: &[u8], dialect: Dialect, need_max_tokens: bool) -> Result<Chat, Invalid> {
    let parsed: Body<'_> = sonic_rs::from_slice(body).map_err(|e| Invalid {
        message: format!("We could not parse the JSON body of your request. ({e})"),
        param: None,
    })?;
    let missing = |field| missing(dialect, field);
    let model = match parsed.model.filter(|m| !m.is_empty()) {
        Some(m) => m.into_owned(),
        // Azure names the model by the deployment in the path.
        None if dialect == Dialect::Azure => String::new(),
        None => return Err(missing("model")),
    };
    let messages = parsed.messages.ok_or_else(|| missing("messages"))?;
    if need_max_tokens && parsed.max_tokens.is_none() {
        return Err(missing("max_tokens"));
    }
    if messages.is_empty() {
        return Err(Invalid { message: "messages: at least one message is required".into(), param: Some("messages") });
    }
    let mut prompt_tokens = 0u64;
    let mut last_user = None;
    for m in &messages {
        let text = content_text(m.content.as_ref());
        prompt_tokens += words(&text) + 3;
        if m.role.as_deref() == Some("user") {
            last_user = Some(text);
        }
    }
    if let Some(system) = parsed.system.as_ref() {
        prompt_tokens += words(&content_text(Some(system))) + 3;
    }
    Ok(Chat {
        model,
        stream: parsed.stream.unwrap_or(false),
        include_usage: parsed.stream_options.and_then(|o| o.include_usage).unwrap_or(false),
        prompt_tokens,
        last_user: last_user.map(Cow::into_owned).unwrap_or_default(),
        tools: tool_names(parsed.tools.as_deref()),
        stop_sequence: parsed.stop_sequences.and_then(|s| s.into_iter().next()),
        include_thoughts: false,
        echo: None,
    })
}

/// A Responses body: `model`, `input` (a string, or items: messages whose content is
/// a string or `input_text` / `output_text` parts, `function_call`,
/// `function_call_output`), `instructions`, `max_output_tokens`, `tools`, `stream`,
/// `previous_response_id`, `reasoning`. `input` may be left out only with a
/// `previous_response_id`.
fn parse_responses(body: &[u8]) -> Result<Chat, Invalid> {
    let parsed: ResponsesBody<'_> = sonic_rs::from_slice(body).map_err(|e| Invalid {
        message: format!("We could not parse the JSON body of your request. ({e})"),
        param: None,
    })?;
    let model = parsed.model.filter(|m| !m.is_empty()).ok_or_else(|| missing(Dialect::Responses, "model"))?;
    let mut prompt_tokens = 0u64;
    let mut last_user = None;
    let raw_input = parsed.input.as_ref().map(|i| i.as_raw_str()).filter(|r| *r != "null");
    match raw_input.map(|r| r.as_bytes().first()) {
        None if parsed.previous_response_id.is_some() => {}
        None => return Err(missing(Dialect::Responses, "input")),
        Some(Some(b'"')) => {
            let text = content_text(parsed.input.as_ref());
            prompt_tokens += words(&text) + 3;
            last_user = Some(text);
        }
        Some(Some(b'[')) => {
            let items: Vec<Item<'_>> = sonic_rs::from_str(raw_input.unwrap_or("[]")).map_err(|e| Invalid {
                message: format!("Invalid 'input': not a list of input items ({e})."),
                param: Some("input"),
            })?;
            for item in &items {
                match item.kind.as_deref() {
                    None | Some("message") => {
                        let text = content_text(item.content.as_ref());
                        prompt_tokens += words(&text) + 3;
                        if item.role.as_deref() == Some("user") {
                            last_user = Some(text);
                        }
                    }
                    Some("function_call") => prompt_tokens += 3,
                    Some("function_call_output") => prompt_tokens += words(&content_text(item.output.as_ref())) + 3,
                    Some(_) => {}
                }
            }
        }
        Some(_) => {
            return Err(Invalid {
                message: "Invalid type for 'input': expected a string or an array of input items.".into(),
                param: Some("input"),
            })
        }
    }
    if let Some(instructions) = parsed.instructions.as_deref() {
        prompt_tokens += words(instructions) + 3;
    }
    let tools_raw = parsed.tools.as_ref().map(|t| t.as_raw_str()).filter(|r| r.starts_with('['));
    let tools: Vec<Tool<'_>> = match tools_raw {
        Some(raw) => sonic_rs::from_str(raw)
            .map_err(|e| Invalid { message: format!("Invalid 'tools': {e}."), param: Some("tools") })?,
        None => Vec::new(),
    };
    let reasoning = parsed.reasoning.unwrap_or(Reasoning { effort: None, summary: None });
    Ok(Chat {
        model: model.into_owned(),
        stream: parsed.stream.unwrap_or(false),
        prompt_tokens,
        last_user: last_user.map(Cow::into_owned).unwrap_or_default(),
        tools: tool_names(Some(&tools)),
        include_thoughts: reasoning.summary.is_some(),
        echo: Some(Echo {
            instructions: parsed.instructions.map(Cow::into_owned),
            max_output_tokens: parsed.max_output_tokens,
            tools: tools_raw.unwrap_or("[]").to_string(),
            previous_response_id: parsed.previous_response_id.map(Cow::into_owned),
            reasoning_effort: reasoning.effort,
            reasoning_summary: reasoning.summary,
        }),
        ..Chat::default()
    })
}

/// Gemini's body: `contents` (roles `user` and `model`; no role counts as the user),
/// `systemInstruction`, `tools`, `generationConfig`.
fn parse_gemini(body: &[u8]) -> Result<Chat, Invalid> {
    let parsed: GeminiBody<'_> = sonic_rs::from_slice(body)
        .map_err(|e| Invalid { message: format!("Invalid JSON payload received. {e}"), param: None })?;
    let contents = parsed.contents.filter(|c| !c.is_empty()).ok_or(Invalid {
        message: "* GenerateContentRequest.contents: contents is not specified\n".into(),
        param: Some("contents"),
    })?;
    let mut prompt_tokens = 0u64;
    let mut last_user = None;
    for c in &contents {
        let text = parts_text(c.parts.as_deref());
        prompt_tokens += words(&text) + 3;
        if c.role.as_deref().is_none_or(|r| r == "user") {
            last_user = Some(text);
        }
    }
    if let Some(system) = &parsed.system_instruction {
        prompt_tokens += words(&parts_text(system.parts.as_deref())) + 3;
    }
    let config = parsed.generation_config;
    Ok(Chat {
        prompt_tokens,
        last_user: last_user.unwrap_or_default(),
        tools: tool_names(parsed.tools.as_deref()),
        stop_sequence: config.as_ref().and_then(|c| c.stop_sequences.as_ref()).and_then(|s| s.first().cloned()),
        include_thoughts: config.and_then(|c| c.thinking_config).and_then(|t| t.include_thoughts).unwrap_or(false),
        ..Chat::default()
    })
}

/// The text of a message's content: a string, or the `text` of its content parts
/// joined by a space; anything else (null, tool calls) has no text.
fn content_text<'a>(content: Option<&LazyValue<'a>>) -> Cow<'a, str> {
    let Some(raw) = content.map(|c| c.as_raw_str()) else { return Cow::Borrowed("") };
    match raw.as_bytes().first() {
        Some(b'"') => sonic_rs::from_str::<String>(raw).map(Cow::Owned).unwrap_or_default(),
        Some(b'[') => {
            let parts: Vec<Part<'_>> = sonic_rs::from_str(raw).unwrap_or_default();
            Cow::Owned(parts_text(Some(&parts)))
        }
        _ => Cow::Borrowed(""),
    }
}

/// The `text` of parts joined by a space.
fn parts_text(parts: Option<&[Part<'_>]>) -> String {
    let texts: Vec<&str> = parts.unwrap_or_default().iter().filter_map(|p| p.text.as_deref()).collect();
    texts.join(" ")
}

fn tool_names(tools: Option<&[Tool<'_>]>) -> Vec<String> {
    let mut names = Vec::new();
    for t in tools.unwrap_or_default() {
        if let Some(n) = t.name.as_deref().or_else(|| t.function.as_ref().and_then(|f| f.name.as_deref())) {
            names.push(n.to_string());
        }
        for d in t.function_declarations.as_deref().unwrap_or_default() {
            names.extend(d.name.as_deref().map(str::to_string));
        }
    }
    names
}

/// One answer being rendered: everything a provider's encoder needs.
pub struct Turn<'a> {
    /// `chatcmpl-...`, `resp_...`, `msg_...` or Gemini's `responseId`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    pub model: &'a str,
    pub prompt_tokens: u64,
    pub include_usage: bool,
    /// Show the thinking text (Gemini `thought: true` parts, a Responses reasoning
    /// summary).
    pub include_thoughts: bool,
    pub dialect: Dialect,
    pub reply: &'a Reply,
    /// What a Responses answer repeats from its request.
    pub echo: Option<&'a Echo>,
}

impl Turn<'_> {
    /// Every output token, thinking included (OpenAI `completion_tokens`, Anthropic
    /// `output_tokens`).
    pub fn completion_tokens(&self) -> u64 {
        self.reply.visible_tokens() + self.reply.thinking_tokens()
    }

    /// Prompt tokens read from the cache.
    pub fn cached_tokens(&self) -> u64 {
        self.reply.cached.min(self.prompt_tokens)
    }
}

/// `prefix` followed by `len` random ASCII letters and digits.
pub fn random_id(prefix: &str, len: usize) -> String {
    let mut id = String::with_capacity(prefix.len() + len);
    id.push_str(prefix);
    id.extend(std::iter::repeat_with(fastrand::alphanumeric).take(len));
    id
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openai_and_anthropic_bodies() {
        let body = br#"{"model":"gpt","stream":true,"stream_options":{"include_usage":true},
            "tools":[{"type":"function","function":{"name":"lookup","parameters":{}}}],
            "messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi \"there\""}]}]}"#;
        let c = parse(body, Dialect::OpenAi).unwrap();
        assert_eq!((c.model.as_str(), c.stream, c.include_usage), ("gpt", true, true));
        assert_eq!(c.last_user, "hi \"there\"");
        assert_eq!(c.prompt_tokens, (2 + 3) + (2 + 3));
        assert_eq!(c.tools, ["lookup"]);
        let body = br#"{"model":"claude","system":"sys","messages":[{"role":"user","content":"hello"}]}"#;
        assert_eq!(parse(body, Dialect::Anthropic).unwrap_err().param, Some("max_tokens"));
        let body = br#"{"model":"claude","max_tokens":5,"system":"sys","stop_sequences":["END"],
            "tools":[{"name":"get_time","input_schema":{}}],"messages":[{"role":"user","content":"hello"}]}"#;
        let c = parse(body, Dialect::Anthropic).unwrap();
        assert_eq!(
            (c.prompt_tokens, c.stop_sequence.as_deref(), c.tools.as_slice()),
            (8, Some("END"), &["get_time".to_string()][..])
        );
        assert!(parse(b"{", Dialect::OpenAi).is_err());
    }

    #[test]
    fn azure_bodies_may_leave_out_the_model() {
        let body = br#"{"messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(parse(body, Dialect::Azure).unwrap().model, "");
        assert_eq!(parse(body, Dialect::OpenAi).unwrap_err().param, Some("model"));
    }

    #[test]
    fn responses_input_counts_like_the_equivalent_chat_messages() {
        let c =
            parse(br#"{"model":"gpt-4.1","input":"hi there [fault:reply=tool_call]"}"#, Dialect::Responses).unwrap();
        assert_eq!(
            (c.model.as_str(), c.prompt_tokens, c.last_user.as_str()),
            ("gpt-4.1", 3 + 3, "hi there [fault:reply=tool_call]")
        );
        let echo = c.echo.unwrap();
        assert_eq!((echo.tools.as_str(), echo.instructions, echo.max_output_tokens), ("[]", None, None));
        let body = br#"{"model":"m","instructions":"be brief","max_output_tokens":9,"stream":true,
            "reasoning":{"effort":"low","summary":"auto"},"previous_response_id":"resp_1",
            "tools":[{"type":"function","name":"get_weather","parameters":{"type":"object"}}],
            "input":[{"role":"user","content":"first question"},
                {"type":"message","role":"assistant","content":[{"type":"output_text","text":"ok"}]},
                {"type":"function_call","call_id":"call_1","name":"get_weather","arguments":"{}"},
                {"type":"function_call_output","call_id":"call_1","output":"18C and sunny"},
                {"type":"reasoning","id":"rs_1","summary":[]},
                {"role":"user","content":[{"type":"input_text","text":"and"},{"type":"input_text","text":"now?"}]}]}"#;
        let c = parse(body, Dialect::Responses).unwrap();
        assert_eq!(c.prompt_tokens, (2 + 3) + (1 + 3) + 3 + (3 + 3) + (2 + 3) + (2 + 3));
        assert_eq!((c.last_user.as_str(), c.stream, c.include_thoughts), ("and now?", true, true));
        assert_eq!(c.tools, ["get_weather"]);
        let echo = c.echo.unwrap();
        assert_eq!((echo.instructions.as_deref(), echo.max_output_tokens), (Some("be brief"), Some(9)));
        assert_eq!(
            (echo.previous_response_id.as_deref(), echo.reasoning_effort.as_deref()),
            (Some("resp_1"), Some("low"))
        );
        assert!(echo.tools.starts_with("[{\"type\":\"function\""));
        let param = |body: &str| parse(body.as_bytes(), Dialect::Responses).unwrap_err().param;
        assert_eq!(param(r#"{"input":"x"}"#), Some("model"));
        assert_eq!(param(r#"{"model":"m"}"#), Some("input"));
        assert_eq!(param(r#"{"model":"m","input":5}"#), Some("input"));
        assert!(parse(br#"{"model":"m","previous_response_id":"resp_1"}"#, Dialect::Responses).is_ok());
    }

    #[test]
    fn count_tokens_bodies_need_no_max_tokens_and_count_like_messages() {
        let body = br#"{"model":"claude","system":"be brief","messages":[{"role":"user","content":"hello there"}]}"#;
        let counted = parse_count_tokens(body).unwrap();
        assert_eq!(counted.prompt_tokens, (2 + 3) + (2 + 3));
        let with_max = br#"{"model":"claude","max_tokens":5,"system":"be brief","messages":[{"role":"user","content":"hello there"}]}"#;
        assert_eq!(parse(with_max, Dialect::Anthropic).unwrap().prompt_tokens, counted.prompt_tokens);
        assert_eq!(parse_count_tokens(br#"{"model":"claude"}"#).unwrap_err().param, Some("messages"));
    }

    #[test]
    fn parses_gemini_bodies() {
        let body = br#"{"systemInstruction":{"parts":[{"text":"be brief"}]},
            "contents":[{"role":"user","parts":[{"text":"one"},{"text":"two"}]},{"role":"model","parts":[{"text":"x"}]},{"parts":[{"text":"last one"}]}],
            "tools":[{"functionDeclarations":[{"name":"f1"},{"name":"f2"}]}],
            "generationConfig":{"stopSequences":["STOP!"],"thinkingConfig":{"includeThoughts":true}}}"#;
        let c = parse(body, Dialect::Gemini).unwrap();
        assert_eq!(c.last_user, "last one");
        assert_eq!(c.prompt_tokens, (2 + 3) + (1 + 3) + (2 + 3) + (2 + 3));
        assert_eq!(c.tools, ["f1", "f2"]);
        assert_eq!((c.stop_sequence.as_deref(), c.include_thoughts), (Some("STOP!"), true));
        assert_eq!(parse(b"{}", Dialect::Gemini).unwrap_err().param, Some("contents"));
    }
}
