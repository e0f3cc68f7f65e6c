//! The pass-through of `/v1/chat/completions` (`api::native` does the forwarding): a
//! request with no `X-Session-Id` for a model whose every candidate speaks OpenAI's
//! format is forwarded as is. What is OpenAI's own: a stream without
//! `stream_options` gets `stream_options.include_usage` so that the gateway learns the
//! usage, and that usage chunk, which the client did not ask for, is not relayed; a
//! stream ends at `data: [DONE]`; usage is found by a guarded scan of `"usage"`.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;

use crate::api::native::{self, splice_model, Format, Pass, Seen, StreamWatch};
use crate::api::Ctx;
use crate::auth::Identity;
use crate::chat::Usage;
use crate::error::ApiError;
use crate::http::sse;
use crate::http::Response;
use crate::provider::openai::{scan_usage, WireUsage};
use crate::provider::{is_context_length, NativeApi};

/// Just what the pass-through needs to know of a request; the rest is skipped.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<PeekStreamOptions>,
}

#[derive(Deserialize)]
struct PeekStreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// What the stream option asks of the upstream body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UsageOption {
    /// Not a stream, or the client asked for usage itself: relay everything.
    AsSent,
    /// A stream without `stream_options`: ask for usage and keep it to ourselves.
    Inject,
}

/// Serves the request by pass-through if it is eligible. `Ok(None)`: take the general
/// path (which also produces the precise validation errors).
pub async fn pass_through(ctx: &Ctx<'_>, who: &Identity) -> Result<Option<Response>, ApiError> {
    if ctx.req.header_bytes("x-session-id").is_some() {
        return Ok(None);
    }
    let body = &ctx.req.body;
    let Ok(peek) = sonic_rs::from_slice::<Peek<'_>>(body) else { return Ok(None) };
    let stream = peek.stream.unwrap_or(false);
    let usage_option = match (stream, &peek.stream_options) {
        (false, _) => UsageOption::AsSent,
        (true, None) => UsageOption::Inject,
        (true, Some(o)) if o.include_usage == Some(true) => UsageOption::AsSent,
        // Options we would have to merge ours into: the general path handles them.
        (true, Some(_)) => return Ok(None),
    };
    let cfg = &ctx.snap.config;
    let Some(model) = peek.model.as_deref().and_then(|id| cfg.model(id)) else { return Ok(None) };
    let Some(chain) = native::chain(ctx, cfg, model, NativeApi::ChatCompletions) else { return Ok(None) };
    let mut asked = body.clone();
    if usage_option == UsageOption::Inject {
        match ask_for_usage(&asked) {
            Some(b) => asked = b,
            None => return Ok(None),
        }
    }
    let format = ChatFormat { hide_usage: usage_option == UsageOption::Inject };
    let pass = Pass { model, prompt_estimate: native::estimate(body), body: asked, stream, headers: Vec::new() };
    native::forward(ctx, who, format, pass, chain).await.map(Some)
}

/// OpenAI's chat-completions format on the pass-through.
struct ChatFormat {
    /// The usage chunk was asked for by us, not the client: read it, do not relay it.
    hide_usage: bool,
}

impl Format for ChatFormat {
    type Watch = ChatWatch;

    fn api(&self) -> NativeApi {
        NativeApi::ChatCompletions
    }

    fn watch(&self) -> ChatWatch {
        ChatWatch { hide_usage: self.hide_usage }
    }

    fn answer_usage(&self, body: &[u8]) -> Usage {
        read_usage(body)
    }

    fn is_context_length(&self, body: &[u8]) -> bool {
        crate::provider::openai::error_info(body).is_some_and(|i| is_context_length(i.code.as_deref(), &i.message))
    }

    /// OpenAI's SDKs raise on a chunk carrying `error`.
    fn error_event(&self, e: &ApiError) -> Bytes {
        sse::chunked_data(&e.render_openai())
    }
}

/// Reads a relayed OpenAI stream: `data:` chunks, a usage chunk, `[DONE]`.
struct ChatWatch {
    hide_usage: bool,
}

impl StreamWatch for ChatWatch {
    fn end_event(&self) -> &'static str {
        "[DONE]"
    }

    fn on_event(&mut self, _name: Option<&[u8]>, data: &[u8], budget: bool) -> Seen {
        let mut seen = Seen::default();
        if data.trim_ascii() == b"[DONE]" {
            seen.end = true;
            return seen;
        }
        // A JSON string cannot hold an unescaped quote, so `"usage"` outside one is
        // the key: only chunks that name it are parsed for it.
        if memfind(data, b"\"usage\"") {
            let usage = read_usage(data);
            if usage != Usage::default() {
                seen.usage = Some(usage);
                let no_choices = crate::json::get(data, &["choices"]).is_ok_and(|c| c.as_raw_str() == "[]");
                seen.hide = self.hide_usage && no_choices;
            }
        }
        if budget {
            seen.text = crate::json::get(data, &sonic_rs::pointer!["choices", 0, "delta", "content"])
                .ok()
                .and_then(|v| sonic_rs::from_str::<Cow<'_, str>>(v.as_raw_str()).ok().map(Cow::into_owned));
        }
        seen
    }
}

/// What the pass-through does to a non-streamed request body (peek, splice), for the
/// benchmark (`api::openai::bench`).
pub(super) fn bench_forward_body(body: &Bytes, upstream: &str) -> Option<Bytes> {
    let _peek = sonic_rs::from_slice::<Peek<'_>>(body).ok()?;
    splice_model(body, upstream)
}

/// The usage read of a forwarded answer, for the benchmark.
pub(super) fn bench_read_usage(json: &[u8]) -> Usage {
    read_usage(json)
}

/// The top-level `usage` of an OpenAI answer or chunk (zeros if absent or null).
fn read_usage(json: &[u8]) -> Usage {
    scan_usage(json).unwrap_or_else(|| parse_usage(json))
}

fn parse_usage(json: &[u8]) -> Usage {
    crate::json::get(json, &["usage"])
        .ok()
        .and_then(|v| sonic_rs::from_str::<WireUsage>(v.as_raw_str()).ok())
        .map(Usage::from)
        .unwrap_or_default()
}

/// `body` (an object with at least one member, and no `stream_options`) with
/// `"stream_options":{"include_usage":true}` as its first member.
fn ask_for_usage(body: &Bytes) -> Option<Bytes> {
    const MEMBER: &[u8] = br#""stream_options":{"include_usage":true},"#;
    let open = body.iter().position(|b| !b.is_ascii_whitespace()).filter(|&i| body[i] == b'{')?;
    let mut out = Vec::with_capacity(body.len() + MEMBER.len());
    out.extend_from_slice(&body[..=open]);
    out.extend_from_slice(MEMBER);
    out.extend_from_slice(&body[open + 1..]);
    Some(Bytes::from(out))
}

fn memfind(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonic_rs::JsonValueTrait;

    #[test]
    fn model_is_spliced_and_usage_asked_for_without_touching_the_rest() {
        let body =
            Bytes::from_static(br#" {"model":"alias","stream":true,"messages":[{"role":"user","content":"hi"}]}"#);
        let spliced = splice_model(&body, "gpt-4o-mini").unwrap();
        assert_eq!(
            &spliced[..],
            br#" {"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#
        );
        let asked = ask_for_usage(&spliced).unwrap();
        let v: sonic_rs::Value = sonic_rs::from_slice(&asked).unwrap();
        assert_eq!(sonic_rs::to_string(&v["stream_options"]).unwrap(), r#"{"include_usage":true}"#);
        assert_eq!(v["model"].as_str(), Some("gpt-4o-mini"));
        assert!(ask_for_usage(&Bytes::from_static(b"[1]")).is_none());
        assert!(splice_model(&Bytes::from_static(br#"{"model":7}"#), "x").is_none());
    }

    #[test]
    fn usage_is_read_only_where_the_key_is() {
        assert_eq!(
            read_usage(br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#),
            Usage { prompt_tokens: 3, completion_tokens: 5, ..Usage::default() }
        );
        assert_eq!(read_usage(br#"{"choices":[],"usage":null}"#), Usage::default());
        // Scanned and parsed agree, whatever the shape.
        for json in [
            &br#"{"id":"x","choices":[{"message":{"content":"a \"usage\": 9"}}],"usage":{"prompt_tokens":11,"completion_tokens":4,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":2}}}"#[..],
            br#"{"usage" : { "completion_tokens" : 7 , "prompt_tokens" : 2 } , "choices":[]}"#,
            br#"{"usage":{"prompt_tokens":1,"completion_tokens":2},"x":{"usage":{"prompt_tokens":5,"completion_tokens":5}}}"#,
            br#"{"usage":{"prompt_tokens":1.5,"completion_tokens":2}}"#,
            br#"{"usage":{"prompt_tokens":3}}"#,
            br#"{"choices":[]}"#,
            br#"{"usage":null,"choices":[]}"#,
        ] {
            assert_eq!(read_usage(json), parse_usage(json), "{}", String::from_utf8_lossy(json));
        }
        let scanned = scan_usage(br#"{"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":4}}"#);
        assert_eq!(scanned, Some(Usage { prompt_tokens: 11, completion_tokens: 4, ..Usage::default() }));
        assert_eq!(scan_usage(br#"{"usage":{"prompt_tokens":1,"completion_tokens":2},"x":{"usage":{}}}"#), None);
        let quoted = br#"{"choices":[{"delta":{"content":"say \"usage\": {"}}]}"#;
        assert!(!memfind(quoted, b"\"usage\":"));
        assert_eq!(read_usage(quoted), Usage::default());
    }
}
