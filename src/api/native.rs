//! The pass-through every front door shares when the provider speaks the client's
//! format (OpenAI chat completions, Anthropic messages, OpenAI Responses; embeddings
//! have their own chain, which may mix forwarded and translated models):
//! the request is forwarded as is, only `model` rewritten to each attempt's upstream
//! name by splicing the body, and the provider's answer is handed back untouched.
//! Nothing is re-encoded, so every field the client sent reaches the provider.
//!
//! Eligible when every model that may serve the request (the model, its fallbacks,
//! its context-window fallbacks) is served by a provider that takes the format
//! (`Adapter::native_path`). Failures follow PROTOCOL.md "Provider errors, by kind":
//! a request the provider refused comes back as the provider said it (no fallback,
//! except a context-length refusal, which moves on to the context-window fallbacks);
//! other failures try the next model, and the last one reaches the client by its kind.
//!
//! Non-streamed, the answer's usage is read for quotas and totals. Streamed, each
//! provider event is relayed as its own HTTP chunk (its `event:` name and `data:` as
//! received), and the format's `StreamWatch` reads only what it must: the usage, and,
//! for a key with a token limit, each delta's text, so that a reply running past the
//! budget is cut with the format's error event, as on the translated path; so is one
//! whose events pass `server.max_reply_bytes`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::api::Ctx;
use crate::auth::Identity;
use crate::chat::Usage;
use crate::config::ModelConfig;
use crate::error::ApiError;
use crate::http::response::EventStream;
use crate::http::Response;
use crate::log;
use crate::provider::policy::{Forwarded, InFlight, Streamed};
use crate::provider::{NativeApi, ProviderError, ProviderImpl};
use crate::ratelimit::TurnQuota;
use crate::upstream::{sse as upstream_sse, BodyReader};
use crate::worker::{Worker, WorkerStats};

/// What a front door's format needs of the pass-through.
pub trait Format {
    /// The per-stream reader of relayed events.
    type Watch: StreamWatch + 'static;

    /// The request format.
    fn api(&self) -> NativeApi;

    /// The reader for one relayed stream.
    fn watch(&self) -> Self::Watch;

    /// The usage a whole (non-streamed) 2xx answer reports.
    fn answer_usage(&self, body: &[u8]) -> Usage;

    /// Whether a 4xx answer says the prompt is longer than the model's context window.
    fn is_context_length(&self, body: &[u8]) -> bool;

    /// The in-stream error event that ends a relayed stream (the whole HTTP chunk).
    fn error_event(&self, e: &ApiError) -> Bytes;
}

/// What one relayed event says (`StreamWatch::on_event`).
#[derive(Debug, Default)]
pub struct Seen {
    /// The usage so far, when the event reports it (replaces the previous reading).
    pub usage: Option<Usage>,
    /// Generated text to count against the key's token budget.
    pub text: Option<String>,
    /// Keep the event from the client (usage the gateway asked for itself).
    pub hide: bool,
    /// The format's end of stream: relay this event and stop.
    pub end: bool,
}

/// Reads a relayed stream's events (see `Format`).
pub trait StreamWatch {
    /// The format's end-of-stream event, for the "ended early" error.
    fn end_event(&self) -> &'static str;

    /// Reads one event: `name` is its `event:` field, if any. `budget` is whether the
    /// key has a token limit (only then is the delta text wanted).
    fn on_event(&mut self, name: Option<&[u8]>, data: &[u8], budget: bool) -> Seen;

    /// The body ended without the end event: `true` when the format's end is the
    /// body's end (the stream is whole).
    fn on_body_end(&mut self) -> bool {
        false
    }
}

/// A request to pass through, once the front door found it eligible.
pub struct Pass<'a> {
    /// The catalogue model asked for.
    pub model: &'a ModelConfig,
    /// The body as the client sent it (plus what the front door added).
    pub body: Bytes,
    /// The prompt's token estimate reserved against the key's quota (about four bytes
    /// a token of the client's body).
    pub prompt_estimate: u64,
    /// The client asked for a stream.
    pub stream: bool,
    /// The client's headers to forward (`anthropic-beta`), as (name, value).
    pub headers: Vec<(&'static str, String)>,
}

/// The models that would serve `model` for `api` (the model and its fallbacks, then
/// its context-window fallbacks), each with its provider, if every one takes `api`
/// as is; `None` when one does not (the front door translates instead).
pub type Chain<'c> = (Vec<(&'c ModelConfig, Rc<ProviderImpl>)>, Vec<(&'c ModelConfig, Rc<ProviderImpl>)>);

pub fn chain<'c>(
    ctx: &Ctx<'_>,
    cfg: &'c crate::config::Config,
    model: &'c ModelConfig,
    api: NativeApi,
) -> Option<Chain<'c>> {
    let providers = ctx.worker.providers();
    let serving = |ids: &mut dyn Iterator<Item = &String>| -> Option<Vec<(&'c ModelConfig, Rc<ProviderImpl>)>> {
        ids.map(|id| {
            let m = cfg.model(id)?;
            let p = providers.get(&m.provider)?;
            p.native(api)?;
            Some((m, p))
        })
        .collect()
    };
    let main = serving(&mut std::iter::once(&model.id).chain(&model.fallbacks))?;
    let on_context_length = serving(&mut model.context_window_fallbacks.iter())?;
    Some((main, on_context_length))
}

/// How a model serves each `/v1` front door: `passthrough` (the body forwarded
/// untouched, model spliced) or `translated` (through the canonical turn); embeddings
/// only where its provider has them. `/api/chat` and `/ws` serve every model,
/// translated. Listed by `/api/models`, `/v1/models` and `/api/status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FrontDoors {
    #[serde(rename = "/v1/chat/completions")]
    pub chat_completions: &'static str,
    #[serde(rename = "/v1/messages")]
    pub messages: &'static str,
    #[serde(rename = "/v1/responses")]
    pub responses: &'static str,
    #[serde(rename = "/v1/embeddings", skip_serializing_if = "Option::is_none")]
    pub embeddings: Option<&'static str>,
}

/// The front doors `model` serves (see `FrontDoors`).
pub fn front_doors(ctx: &Ctx<'_>, model: &ModelConfig) -> FrontDoors {
    let cfg = &ctx.snap.config;
    let how = |api| if chain(ctx, cfg, model, api).is_some() { "passthrough" } else { "translated" };
    let provider = ctx.worker.providers().get(&model.provider);
    let embeddings = provider.as_deref().and_then(|p| match p {
        _ if p.native(NativeApi::Embeddings).is_some() => Some("passthrough"),
        ProviderImpl::Http(h) if h.translates_embeddings() => Some("translated"),
        _ => None,
    });
    FrontDoors {
        chat_completions: how(NativeApi::ChatCompletions),
        messages: how(NativeApi::Messages),
        responses: how(NativeApi::Responses),
        embeddings,
    }
}

/// Just what a plain pass-through needs to know of a request: its model and whether
/// it streams; the rest is skipped.
#[derive(serde::Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
}

/// Serves the request by pass-through when its model's chain takes `format` as is
/// (`chain`), the body untouched but for the model, `headers` forwarded; `Ok(None)`
/// when it is not eligible (the front door translates instead, and reports the
/// precise validation errors).
pub async fn try_forward<F: Format + 'static>(
    ctx: &Ctx<'_>,
    who: &Identity,
    format: F,
    headers: Vec<(&'static str, String)>,
) -> Result<Option<Response>, ApiError> {
    let body = &ctx.req.body;
    let cfg = &ctx.snap.config;
    let Ok(peek) = sonic_rs::from_slice::<Peek<'_>>(body) else { return Ok(None) };
    let Some(model) = peek.model.as_deref().and_then(|id| cfg.model(id)) else { return Ok(None) };
    let Some(chain) = chain(ctx, cfg, model, format.api()) else { return Ok(None) };
    let pass = Pass {
        model,
        prompt_estimate: estimate(body),
        body: body.clone(),
        stream: peek.stream.unwrap_or(false),
        headers,
    };
    forward(ctx, who, format, pass, chain).await.map(Some)
}

/// Forwards `pass` down its model's chain (`chain` said it is eligible) and hands
/// the provider's answer back (see the module doc). Errors: the model not allowed for
/// the key, the token quota, a body whose `model` is not a string (`INVALID_REQUEST`),
/// and the last provider failure by its kind.
pub async fn forward<F: Format + 'static>(
    ctx: &Ctx<'_>,
    who: &Identity,
    format: F,
    pass: Pass<'_>,
    (chain, on_context_length): Chain<'_>,
) -> Result<Response, ApiError> {
    let cfg = &ctx.snap.config;
    crate::turn::check_memory(cfg)?;
    crate::auth::check_model_access(cfg, who, &pass.model.id)?;
    // Each attempt's body: the model name spliced, the rest as sent.
    let mut bodies = Vec::with_capacity(chain.len() + on_context_length.len());
    for (m, _) in chain.iter().chain(&on_context_length) {
        match splice_model(&pass.body, &m.upstream) {
            Some(b) => bodies.push(b),
            None => return Err(ApiError::invalid("field `model` must be a string")),
        }
    }
    let worker = ctx.worker;
    let quota = worker.limiter.reserve_prompt(cfg, who, pass.prompt_estimate, pass.model.max_tokens)?;
    let headers: Vec<(&str, &str)> = pass.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let api = format.api();
    let mut failures: Vec<String> = Vec::new();
    let mut last: Option<ProviderError> = None;
    let mut attempts: VecDeque<usize> = (0..chain.len()).collect();
    let mut context_switch = (!on_context_length.is_empty()).then_some(chain.len());
    while let Some(i) = attempts.pop_front() {
        let Some(((m, provider), body)) = chain.iter().chain(&on_context_length).zip(&bodies).nth(i) else {
            break;
        };
        let Some(http) = provider.native(api) else { break };
        let outcome = if pass.stream {
            http.forward_stream(api, &m.upstream, body.clone(), &headers).await
        } else {
            http.forward(api, &m.upstream, body.clone(), &headers).await.map(Streamed::Answer)
        };
        match outcome {
            Ok(Streamed::Answer(answer)) => {
                // A context-length refusal moves on to the context-window fallbacks.
                if let Some(first) =
                    context_switch.filter(|_| is_refusal(&answer) && format.is_context_length(&answer.body))
                {
                    context_switch = None;
                    failures.push(format!("{}: context length exceeded", m.id));
                    attempts = (first..first + on_context_length.len()).collect();
                    continue;
                }
                let ok = (200..300).contains(&answer.status);
                let usage = if ok && !pass.stream { format.answer_usage(&answer.body) } else { Usage::default() };
                account(worker, &quota, usage, &m.id, &who.name);
                return Ok(Response::json(answer.status, answer.body));
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
                    watch: format.watch(),
                    format,
                    usage: Usage::default(),
                    model: m.id.clone(),
                    key: who.name.clone(),
                    over: false,
                    relayed: 0,
                    reply_cap: cfg.server.max_reply_bytes,
                };
                return Ok(Response::sse(Box::new(relay)));
            }
            Err(e) => {
                if !e.is_client_fault() {
                    log::warn(&format!("request {}: model {} failed: {}", ctx.request_id, m.id, e.cause));
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
    account(worker, &quota, Usage::default(), &pass.model.id, &who.name);
    let mut err = last.unwrap_or_else(|| ProviderError::upstream("no model could serve the request")).to_api();
    if failures.len() > 1 {
        err.message = format!("every model failed: {}", failures.join("; ")).into();
    }
    Err(err)
}

/// A 4xx the client's request caused (relayed as is unless it is a context-length one).
fn is_refusal(answer: &Forwarded) -> bool {
    matches!(answer.status, 400 | 413 | 422)
}

/// Counts a passed-through request's tokens in this worker's totals and settles the
/// key's reservation.
pub fn account(worker: &Rc<Worker>, quota: &TurnQuota, usage: Usage, model: &str, key: &str) {
    let stats = worker.stats();
    WorkerStats::add(&stats.prompt_tokens, usage.prompt_tokens);
    WorkerStats::add(&stats.completion_tokens, usage.completion_tokens);
    stats.tokens.add(model, key, usage.prompt_tokens, usage.completion_tokens);
    worker.limiter.settle_turn(quota, usage);
}

/// The token estimate of a client's body: about four bytes a token.
pub fn estimate(body: &[u8]) -> u64 {
    (body.len() as u64).div_ceil(4)
}

/// `body` with the value of its top-level `model` replaced by `upstream` (a JSON
/// string), without re-encoding anything else; `body` itself when it already names
/// `upstream`. `None` if `model` is absent or not a string.
pub fn splice_model(body: &Bytes, upstream: &str) -> Option<Bytes> {
    let value = sonic_rs::get(&body[..], &["model"]).ok()?;
    let raw = value.as_raw_str();
    let start = (raw.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start + raw.len();
    if !raw.starts_with('"') || body.get(start..end) != Some(raw.as_bytes()) {
        return None;
    }
    let quoted = sonic_rs::to_string(upstream).ok()?;
    if raw == quoted {
        return Some(body.clone());
    }
    let mut out = Vec::with_capacity(body.len() + quoted.len());
    out.extend_from_slice(&body[..start]);
    out.extend_from_slice(quoted.as_bytes());
    out.extend_from_slice(&body[end..]);
    Some(Bytes::from(out))
}

/// One relayed SSE event as its own HTTP chunk: `event: <name>` when it has one, then
/// `data: <data>`.
pub fn chunked_event(name: Option<&[u8]>, data: &[u8]) -> Bytes {
    let Some(name) = name else { return crate::http::sse::chunked_data(data) };
    let payload_len = "event: ".len() + name.len() + 1 + "data: ".len() + data.len() + 2;
    let mut out = BytesMut::with_capacity(payload_len + 16);
    out.put_slice(format!("{payload_len:x}\r\nevent: ").as_bytes());
    out.put_slice(name);
    out.put_slice(b"\ndata: ");
    out.put_slice(data);
    out.put_slice(b"\n\n\r\n");
    out.freeze()
}

/// A provider's stream relayed event by event.
struct Relay<F: Format> {
    body: Option<BodyReader>,
    /// Counts the request against its upstream key while the stream lasts.
    _guard: InFlight,
    parser: upstream_sse::Parser,
    events: Vec<upstream_sse::Event>,
    /// Framed chunks ready for the client.
    out: VecDeque<Bytes>,
    worker: Rc<Worker>,
    quota: TurnQuota,
    format: F,
    watch: F::Watch,
    usage: Usage,
    /// The model and key the tokens are counted for (`/metrics`).
    model: String,
    key: std::sync::Arc<str>,
    over: bool,
    /// Bytes of event data relayed so far, and `server.max_reply_bytes`.
    relayed: usize,
    reply_cap: usize,
}

impl<F: Format> Relay<F> {
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
                            self.on_event(event.name.as_deref(), &event.data);
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
                Ok(None) => {
                    self.parser.finish();
                    if self.watch.on_body_end() {
                        self.end();
                    } else {
                        let end = self.watch.end_event();
                        self.fail(ProviderError::upstream(format!("provider stream ended before {end}")));
                    }
                }
                Err(e) => self.fail(ProviderError::from_upstream(e)),
            }
        }
    }

    fn on_event(&mut self, name: Option<&[u8]>, data: &[u8]) {
        self.relayed = self.relayed.saturating_add(data.len());
        if self.relayed > self.reply_cap {
            // Dropping the body (in `cut`) cancels the upstream call.
            let cap = self.reply_cap;
            self.cut(ApiError::new(
                crate::error::ErrorCode::UpstreamError,
                format!("the reply passed server.max_reply_bytes ({cap} bytes) and was cut"),
            ));
            return;
        }
        let budget = self.quota.reserved().is_some();
        let seen = self.watch.on_event(name, data, budget);
        if let Some(usage) = seen.usage {
            self.usage = usage;
        }
        if let Some(text) = seen.text.filter(|_| budget) {
            if let Err(e) = self.worker.limiter.turn_delta(&self.quota, &text) {
                self.cut(e);
                return;
            }
        }
        if !seen.hide {
            self.out.push_back(chunked_event(name, data));
        }
        if seen.end {
            self.end();
        }
    }

    /// The stream is whole: its usage is counted.
    fn end(&mut self) {
        account(&self.worker, &self.quota, self.usage, &self.model, &self.key);
        self.over = true;
    }

    fn fail(&mut self, e: ProviderError) {
        self.cut(e.to_api());
    }

    /// Ends the stream with the format's error event. The tokens reserved stay spent,
    /// as on the translated path: the provider did work for them.
    fn cut(&mut self, e: ApiError) {
        self.out.push_back(self.format.error_event(&e));
        self.over = true;
        self.body = None;
    }
}

impl<F: Format + 'static> EventStream for Relay<F> {
    fn next_event(&mut self) -> Pin<Box<dyn Future<Output = Option<Bytes>> + '_>> {
        Box::pin(self.step())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_is_spliced_without_touching_the_rest() {
        let body =
            Bytes::from_static(br#" {"model":"alias","stream":true,"messages":[{"role":"user","content":"hi"}]}"#);
        let spliced = splice_model(&body, "gpt-4o-mini").unwrap();
        assert_eq!(
            &spliced[..],
            br#" {"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#
        );
        assert!(splice_model(&Bytes::from_static(br#"{"model":7}"#), "x").is_none());
        assert!(splice_model(&Bytes::from_static(br#"{"input":"x"}"#), "x").is_none());
    }

    #[test]
    fn named_events_keep_their_name() {
        let chunk = chunked_event(Some(b"message_stop"), br#"{"type":"message_stop"}"#);
        let text = std::str::from_utf8(&chunk).unwrap();
        let (len, rest) = text.split_once("\r\n").unwrap();
        assert_eq!(rest, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n\r\n");
        assert_eq!(usize::from_str_radix(len, 16).unwrap(), rest.len() - 2);
    }
}
