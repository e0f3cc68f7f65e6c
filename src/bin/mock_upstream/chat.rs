//! The provider-neutral part of a chat exchange: reading the fields the mock cares
//! about from an OpenAI, Azure OpenAI, Anthropic or Gemini request body, and the
//! `Turn` every provider's encoder renders.
//!
//! Usage is counted in words: prompt = sum over messages (Gemini `contents`, and an
//! Anthropic `system` or Gemini `systemInstruction`) of words + 3; the answer's
//! counts are in `reply.rs`. Bodies are parsed with sonic-rs into borrowed fields;
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

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    parts: Option<Vec<Part<'a>>>,
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
    /// Gemini `generationConfig.thinkingConfig.includeThoughts`.
    pub include_thoughts: bool,
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
    /// OpenAI's bodies under Azure's routes, auth and error envelopes.
    Azure,
    Anthropic,
    Gemini,
}

/// Parses and checks a chat body.
pub fn parse(body: &[u8], dialect: Dialect) -> Result<Chat, Invalid> {
    if dialect == Dialect::Gemini {
        return parse_gemini(body);
    }
    let parsed: Body<'_> = sonic_rs::from_slice(body).map_err(|e| Invalid {
        message: format!("We could not parse the JSON body of your request. ({e})"),
        param: None,
    })?;
    let missing = |field: &'static str| match dialect {
        Dialect::Anthropic => Invalid { message: format!("{field}: Field required"), param: Some(field) },
        _ => Invalid { message: format!("Missing required parameter: '{field}'."), param: Some(field) },
    };
    let model = match parsed.model.filter(|m| !m.is_empty()) {
        Some(m) => m.into_owned(),
        // Azure names the model by the deployment in the path.
        None if dialect == Dialect::Azure => String::new(),
        None => return Err(missing("model")),
    };
    let messages = parsed.messages.ok_or_else(|| missing("messages"))?;
    if dialect == Dialect::Anthropic && parsed.max_tokens.is_none() {
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
    /// `chatcmpl-...`, `msg_...` or Gemini's `responseId`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    pub model: &'a str,
    pub prompt_tokens: u64,
    pub include_usage: bool,
    /// Gemini: render thinking as `thought: true` parts.
    pub include_thoughts: bool,
    pub dialect: Dialect,
    pub reply: &'a Reply,
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
