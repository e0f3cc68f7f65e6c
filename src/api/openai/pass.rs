//! The pass-through of `/v1/chat/completions`: a request with no `X-Session-Id` for a
//! model whose every candidate (the model, its fallbacks, its context-window
//! fallbacks) is served by a provider that speaks OpenAI's format, is forwarded as is
//! (only `model` is rewritten to each attempt's upstream name, by splicing the body)
//! and the provider's answer is handed back untouched. Nothing is re-encoded, and
//! every field the client sent (temperature, tools, response_format, ...) reaches the
//! provider. Failures follow PROTOCOL.md "Provider errors, by kind": a request the
//! provider refused comes back as the provider said it (no fallback, except a
//! context-length refusal); other failures try the next model, and the last one
//! reaches the client by its kind (429, 502, 504).
//!
//! Non-streamed, the answer's `usage` is read for quotas and totals. Streamed, each
//! provider event is relayed as its own HTTP chunk (`data: ...` exactly as received,
//! re-framed so no chunk ever carries two events), and the gateway reads only what it
//! must: the usage object (asked for with `stream_options.include_usage` when the
//! client did not ask, and then not relayed), and, for a key with a token limit, each
//! delta's text so that a reply running past the budget is cut with a RATE_LIMITED
//! error chunk, as on the general path.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use bytes::Bytes;
use serde::Deserialize;

use crate::api::Ctx;
use crate::auth::Identity;
use crate::chat::Usage;
use crate::config::ModelConfig;
use crate::error::ApiError;
use crate::http::response::EventStream;
use crate::http::sse;
use crate::http::Response;
use crate::log;
use crate::provider::openai::{scan_usage, WireUsage};
use crate::provider::policy::{Forwarded, InFlight, Streamed};
use crate::provider::{is_context_length, NativeApi, ProviderError, ProviderImpl};
use crate::ratelimit::TurnQuota;
use crate::upstream::{sse as upstream_sse, BodyReader};
use crate::worker::{Worker, WorkerStats};

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
    // Every model that may serve the request (the model, its fallbacks, its
    // context-window fallbacks) must speak OpenAI's format: each attempt then splices
    // its own upstream model name into the same body.
    let providers = ctx.worker.providers();
    let serving = |ids: &mut dyn Iterator<Item = &String>| -> Option<Vec<(&ModelConfig, Rc<ProviderImpl>)>> {
        ids.map(|id| {
            let m = cfg.model(id)?;
            let p = providers.get(&m.provider)?;
            p.native(NativeApi::ChatCompletions)?;
            Some((m, p))
        })
        .collect()
    };
    let Some(chain) = serving(&mut std::iter::once(&model.id).chain(&model.fallbacks)) else { return Ok(None) };
    let Some(on_context_length) = serving(&mut model.context_window_fallbacks.iter()) else { return Ok(None) };
    crate::auth::check_model_access(cfg, who, &model.id)?;
    let mut asked = body.clone();
    if usage_option == UsageOption::Inject {
        match ask_for_usage(&asked) {
            Some(b) => asked = b,
            None => return Ok(None),
        }
    }
    // Each attempt's body: the model name spliced, the rest as sent.
    let mut bodies = Vec::with_capacity(chain.len() + on_context_length.len());
    for (m, _) in chain.iter().chain(&on_context_length) {
        if peek.model.as_deref() == Some(m.upstream.as_str()) {
            bodies.push(asked.clone());
        } else {
            match splice_model(&asked, &m.upstream) {
                Some(b) => bodies.push(b),
                None => return Ok(None),
            }
        }
    }
    let worker = ctx.worker;
    let prompt_estimate = (body.len() as u64).div_ceil(4);
    let quota = worker.limiter.reserve_prompt(cfg, who, prompt_estimate, model.max_tokens)?;
    let mut failures: Vec<String> = Vec::new();
    let mut last: Option<ProviderError> = None;
    let mut attempts: VecDeque<usize> = (0..chain.len()).collect();
    let mut context_switch = (!on_context_length.is_empty()).then_some(chain.len());
    while let Some(i) = attempts.pop_front() {
        let Some(((m, provider), upstream_body)) = chain.iter().chain(&on_context_length).zip(&bodies).nth(i) else {
            break;
        };
        let Some(http) = provider.native(NativeApi::ChatCompletions) else { break };
        let outcome = if stream {
            http.forward_stream(NativeApi::ChatCompletions, &m.upstream, upstream_body.clone()).await
        } else {
            http.forward(NativeApi::ChatCompletions, &m.upstream, upstream_body.clone()).await.map(Streamed::Answer)
        };
        match outcome {
            Ok(Streamed::Answer(answer)) => {
                // A context-length refusal moves on to the context-window fallbacks.
                if let Some(first) = context_switch.filter(|_| is_context_length_answer(&answer)) {
                    context_switch = None;
                    failures.push(format!("{}: context length exceeded", m.id));
                    attempts = (first..first + on_context_length.len()).collect();
                    continue;
                }
                let ok = (200..300).contains(&answer.status);
                let usage = if ok && !stream { read_usage(&answer.body) } else { Usage::default() };
                account(worker, &quota, usage);
                return Ok(Some(Response::json(answer.status, answer.body)));
            }
            Ok(Streamed::Events(body, guard)) => {
                let relay = Relay {
                    body: Some(*body),
                    _guard: guard,
                    parser: upstream_sse::Parser::new(),
                    events: Vec::new(),
                    out: VecDeque::new(),
                    worker: worker.clone(),
                    quota,
                    hide_usage: usage_option == UsageOption::Inject,
                    usage: Usage::default(),
                    over: false,
                };
                return Ok(Some(Response::sse(Box::new(relay))));
            }
            Err(e) => {
                if !e.is_client_fault() {
                    log::info(&format!("request {}: model {} failed: {}", ctx.request_id, m.id, e.cause));
                }
                failures.push(format!("{}: {}", m.id, e.message));
                let falls_back = e.kind.falls_back();
                last = Some(e);
                if !falls_back {
                    break;
                }
            }
        }
    }
    account(worker, &quota, Usage::default());
    let mut err = last.unwrap_or_else(|| ProviderError::upstream("no model could serve the request")).to_api();
    if failures.len() > 1 {
        err.message = format!("every model failed: {}", failures.join("; ")).into();
    }
    Err(err)
}

/// Whether a provider's 4xx answer (relayed as is otherwise) says the prompt is longer
/// than the model's context window.
fn is_context_length_answer(answer: &Forwarded) -> bool {
    matches!(answer.status, 400 | 413 | 422)
        && crate::provider::openai::error_info(&answer.body)
            .is_some_and(|i| is_context_length(i.code.as_deref(), &i.message))
}

/// Counts `usage` in the worker's token totals and settles the key's reservation.
pub(super) fn account(worker: &Rc<Worker>, quota: &TurnQuota, usage: Usage) {
    let stats = worker.stats();
    WorkerStats::add(&stats.prompt_tokens, usage.prompt_tokens);
    WorkerStats::add(&stats.completion_tokens, usage.completion_tokens);
    worker.limiter.settle_turn(quota, usage);
}

/// The top-level `usage` of an OpenAI answer or chunk (zeros if absent or null).
pub(super) fn read_usage(json: &[u8]) -> Usage {
    scan_usage(json).unwrap_or_else(|| parse_usage(json))
}

fn parse_usage(json: &[u8]) -> Usage {
    crate::json::get(json, &["usage"])
        .ok()
        .and_then(|v| sonic_rs::from_str::<WireUsage>(v.as_raw_str()).ok())
        .map(Usage::from)
        .unwrap_or_default()
}

/// What the pass-through does to a non-streamed request body (peek, splice), for the
/// benchmark (`api::openai::bench`).
pub(super) fn bench_forward_body(body: &Bytes, upstream: &str) -> Option<Bytes> {
    let peek = sonic_rs::from_slice::<Peek<'_>>(body).ok()?;
    if peek.model.as_deref() == Some(upstream) {
        return Some(body.clone());
    }
    splice_model(body, upstream)
}

/// The usage read of a forwarded answer, for the benchmark.
pub(super) fn bench_read_usage(json: &[u8]) -> Usage {
    read_usage(json)
}

/// `body` with the value of its top-level `model` replaced by `upstream` (a JSON
/// string), without re-encoding anything else. `None` if `model` is not a string.
pub(super) fn splice_model(body: &Bytes, upstream: &str) -> Option<Bytes> {
    let value = sonic_rs::get(&body[..], &["model"]).ok()?;
    let raw = value.as_raw_str();
    let start = (raw.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start + raw.len();
    if !raw.starts_with('"') || body.get(start..end) != Some(raw.as_bytes()) {
        return None;
    }
    let quoted = sonic_rs::to_string(upstream).ok()?;
    let mut out = Vec::with_capacity(body.len() + quoted.len());
    out.extend_from_slice(&body[..start]);
    out.extend_from_slice(quoted.as_bytes());
    out.extend_from_slice(&body[end..]);
    Some(Bytes::from(out))
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

/// A provider's OpenAI stream relayed event by event.
struct Relay {
    /// `None` once the stream is over (the rest of a finished body is drained by a
    /// small task so the connection goes back to the pool).
    body: Option<BodyReader>,
    /// Counts the request against its upstream key while the stream lasts.
    _guard: InFlight,
    parser: upstream_sse::Parser,
    events: Vec<upstream_sse::Event>,
    /// Framed chunks ready for the client.
    out: VecDeque<Bytes>,
    worker: Rc<Worker>,
    quota: TurnQuota,
    /// The usage chunk was asked for by us, not the client: read it, do not relay it.
    hide_usage: bool,
    usage: Usage,
    over: bool,
}

impl Relay {
    async fn step(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.out.pop_front() {
                return Some(chunk);
            }
            if self.over {
                return None;
            }
            let body = self.body.as_mut()?;
            match body.next().await {
                Ok(Some(piece)) => {
                    let mut events = std::mem::take(&mut self.events);
                    if self.parser.feed(&piece, &mut events).is_err() {
                        self.fail(ProviderError::upstream("provider sent an over-long SSE line"));
                        continue;
                    }
                    for event in events.drain(..) {
                        if !self.over {
                            self.on_event(event.data);
                        }
                    }
                    self.events = events;
                    if self.over {
                        if let Some(mut rest) = self.body.take() {
                            // Bounded by the body's own chunk and total deadlines.
                            monoio::spawn(async move { while let Ok(Some(_)) = rest.next().await {} });
                        }
                    }
                }
                Ok(None) => self.fail(ProviderError::upstream("provider stream ended before [DONE]")),
                Err(e) => self.fail(ProviderError::from_upstream(e)),
            }
        }
    }

    fn on_event(&mut self, data: Bytes) {
        if data.trim_ascii() == b"[DONE]" {
            account(&self.worker, &self.quota, self.usage);
            self.out.push_back(sse::chunked_data(b"[DONE]"));
            self.over = true;
            return;
        }
        // A JSON string cannot hold an unescaped quote, so `"usage"` outside one is
        // the key: only chunks that name it are parsed for it.
        if memfind(&data, b"\"usage\"") {
            let usage = read_usage(&data);
            if usage != Usage::default() {
                self.usage = usage;
                let no_choices = crate::json::get(&data[..], &["choices"]).is_ok_and(|c| c.as_raw_str() == "[]");
                if self.hide_usage && no_choices {
                    return;
                }
            }
        }
        if self.quota.reserved().is_some() {
            let text = crate::json::get(&data[..], &sonic_rs::pointer!["choices", 0, "delta", "content"])
                .ok()
                .and_then(|v| sonic_rs::from_str::<Cow<'_, str>>(v.as_raw_str()).ok().map(Cow::into_owned));
            if let Some(text) = text {
                if let Err(e) = self.worker.limiter.turn_delta(&self.quota, &text) {
                    self.cut(e);
                    return;
                }
            }
        }
        self.out.push_back(sse::chunked_data(&data));
    }

    fn fail(&mut self, e: ProviderError) {
        self.cut(e.to_api());
    }

    /// Ends the stream with an error chunk (OpenAI's SDKs raise on it). The tokens
    /// reserved stay spent, as on the general path: the provider did work for them.
    fn cut(&mut self, e: ApiError) {
        self.out.push_back(sse::chunked_data(&e.render_openai()));
        self.over = true;
        self.body = None;
    }
}

fn memfind(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

impl EventStream for Relay {
    fn next_event(&mut self) -> Pin<Box<dyn Future<Output = Option<Bytes>> + '_>> {
        Box::pin(self.step())
    }
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
