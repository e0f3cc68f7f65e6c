//! Providers reached over HTTP, whatever their API (the `Adapter` speaks it): the
//! policy around one call. Picks the API key with the fewest requests in flight on this
//! worker, asks the breaker, sends through the worker's upstream client, and on a
//! retryable failure (connect error, reset before the response, 429, 5xx, 529) backs
//! off and tries again, up to `max_retries` and within the request deadline. Once the
//! response head is 2xx the stream is handed to the caller and never retried: a
//! streamed answer that reached a client is not replayed. Provider error messages are
//! kept (they help users) with every configured secret scrubbed out.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::borrow::Cow;

use crate::chat::Params;
use crate::config::ProviderConfig;
use crate::provider::resilience::{backoff, Breaker, ProviderHealth};
use crate::provider::stream::SseStream;
use crate::provider::{
    is_context_length, Adapter, ChatRequest, ChatStream, EmbedRequest, ErrorInfo, FailureKind, NativeApi, ProviderError,
};
use crate::upstream::{tls, BodyReader, Client, Endpoint, Outgoing, Timeouts, UpstreamError};

/// Largest non-streamed answer read from a provider.
const MAX_COMPLETION: usize = 16 << 20;
/// Largest error body read from a provider.
const MAX_ERROR_BODY: usize = 64 << 10;

/// A provider's answer handed on untouched (`forward`).
#[derive(Debug)]
pub struct Forwarded {
    pub status: u16,
    pub body: bytes::Bytes,
}

/// What `forward_stream` got: the event stream (holding its key's in-flight count),
/// or a client-fault answer to hand back as is.
pub enum Streamed {
    Events(Box<BodyReader>, InFlight),
    Answer(Forwarded),
}

struct KeySlot {
    /// The header value as sent (`Bearer sk-...` or the raw Anthropic key).
    value: String,
    in_flight: Rc<Cell<u32>>,
}

/// Counts a request against its key until dropped (the stream holds it).
pub struct InFlight(Option<Rc<Cell<u32>>>);

impl InFlight {
    fn new(slot: Option<&KeySlot>) -> Self {
        InFlight(slot.map(|s| {
            s.in_flight.set(s.in_flight.get() + 1);
            s.in_flight.clone()
        }))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.set(c.get().saturating_sub(1));
        }
    }
}

/// One HTTP provider on one worker.
pub struct HttpProvider {
    name: String,
    /// The provider's API: paths, bodies, events, error shapes.
    adapter: Box<dyn Adapter>,
    endpoint: Endpoint,
    /// The header carrying the key (the adapter's).
    auth_header: &'static str,
    keys: Vec<KeySlot>,
    headers: Vec<(String, String)>,
    timeouts: Timeouts,
    max_retries: u32,
    client: Rc<Client>,
    breaker: RefCell<Breaker>,
    health: Arc<ProviderHealth>,
    secrets: Vec<String>,
}

impl HttpProvider {
    /// The provider of `cfg` speaking through `adapter`. Errors: a base URL that
    /// does not parse, named with the provider.
    pub fn new(
        cfg: &ProviderConfig,
        adapter: Box<dyn Adapter>,
        tls: Option<tls::Connector>,
        client: Rc<Client>,
        health: Arc<ProviderHealth>,
    ) -> Result<Self, String> {
        let endpoint = Endpoint::parse(&cfg.base_url, tls).map_err(|e| format!("providers.{}: {e}", cfg.name))?;
        let key = adapter.key_header();
        // A provider with no key configured (a local OpenAI-compatible server) sends none.
        let keys = cfg
            .api_keys
            .iter()
            .map(|k| KeySlot {
                value: if key.bearer { format!("Bearer {}", k.expose()) } else { k.expose().to_string() },
                in_flight: Rc::new(Cell::new(0)),
            })
            .collect();
        let mut secrets: Vec<String> =
            cfg.api_keys.iter().map(|k| k.expose().to_string()).filter(|k| k.len() >= 4).collect();
        secrets.extend(cfg.headers.iter().map(|(_, v)| v.clone()).filter(|v| v.len() >= 8));
        Ok(HttpProvider {
            name: cfg.name.clone(),
            adapter,
            endpoint,
            auth_header: key.name,
            keys,
            headers: cfg.headers.clone(),
            timeouts: Timeouts {
                connect: Duration::from_millis(cfg.connect_timeout_ms),
                first_byte: Duration::from_millis(cfg.first_byte_timeout_ms),
                chunk: Duration::from_millis(cfg.chunk_timeout_ms),
                total: Duration::from_millis(cfg.request_timeout_ms),
            },
            max_retries: cfg.max_retries,
            client,
            breaker: RefCell::new(Breaker::default()),
            health,
            secrets,
        })
    }

    fn pick_key(&self) -> Option<&KeySlot> {
        self.keys.iter().min_by_key(|k| k.in_flight.get())
    }

    fn scrub(&self, mut message: String) -> String {
        for s in &self.secrets {
            if message.contains(s.as_str()) {
                message = message.replace(s.as_str(), "[redacted]");
            }
        }
        message.truncate(message.floor_char_boundary(500));
        message
    }

    /// Starts a chat, retrying what may be retried. See the module doc.
    pub async fn chat(&self, req: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let body = self.adapter.encode(req)?;
        self.with_retries(async |slot, guard, timeouts| self.attempt(req, body.clone(), slot, guard, timeouts).await)
            .await
    }

    /// Whether this provider takes requests of format `api` as they are.
    pub fn speaks(&self, api: NativeApi) -> bool {
        self.adapter.native_path(api, "").is_some()
    }

    /// Whether this provider embeds through a translation (`embed`), its API having
    /// an embeddings call of its own format.
    pub fn translates_embeddings(&self) -> bool {
        self.adapter.embeddings_path("").is_some()
    }

    /// The provider's name (its `[[providers]]` entry).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Embeds `req.inputs` through the adapter's own embeddings call
    /// (`translates_embeddings`), in calls of at most `Adapter::embeddings_batch`
    /// texts, each with the same key choice, breaker and retries as `chat`. The
    /// vectors come back in input order; a failure of any call is the failure.
    pub async fn embed(&self, req: &EmbedRequest<'_>) -> Result<Vec<Vec<f32>>, ProviderError> {
        let path = self.adapter.embeddings_path(req.upstream_model).ok_or_else(|| {
            ProviderError::upstream(format!("provider {} has no embeddings call of its own", self.name))
        })?;
        let mut vectors = Vec::with_capacity(req.inputs.len());
        for inputs in req.inputs.chunks(self.adapter.embeddings_batch().max(1)) {
            let body = self.adapter.encode_embeddings(&EmbedRequest { inputs, ..*req })?;
            let got = self
                .with_retries(async |slot, _guard, timeouts| {
                    let headers = self.call_headers(slot, None, &[]);
                    let out = Outgoing { method: "POST", path: &path, headers: &headers, body: body.clone() };
                    let mut resp = self.client.send(&self.endpoint, &out, timeouts).await?;
                    if !(200..300).contains(&resp.status) {
                        let body = resp.body.collect(MAX_ERROR_BODY).await.unwrap_or_default();
                        return Err(self.status_error(resp.status, resp.retry_after, &body));
                    }
                    let body = resp.body.collect(MAX_COMPLETION).await?;
                    let got = self.adapter.decode_embeddings(&body).map_err(|e| UpstreamError::Protocol(e.message))?;
                    if got.len() != inputs.len() {
                        return Err(UpstreamError::Protocol(format!(
                            "provider answered {} embeddings for {} inputs",
                            got.len(),
                            inputs.len()
                        )));
                    }
                    Ok(got)
                })
                .await?;
            vectors.extend(got);
        }
        Ok(vectors)
    }

    /// A client-fault answer that `forward` handed back (400, 404, 409, 413, 422) as
    /// the failure it is, for a front door that answers provider errors by kind
    /// (PROTOCOL.md "Provider errors, by kind") instead of relaying them.
    pub fn refusal(&self, answer: &Forwarded) -> ProviderError {
        self.error(self.status_error(answer.status, None, &answer.body), 1)
    }

    /// The settings of `params` this provider cannot carry (`provider::unsupported`).
    pub fn unsupported(&self, params: &Params) -> Vec<String> {
        super::unsupported(self.adapter.cannot_carry(), self.adapter.carries_openai_extras(), params)
    }

    /// The key and fixed headers of a call, then `accept` when given, then `extra`
    /// (a client's headers a pass-through forwards).
    fn call_headers<'a>(
        &'a self,
        slot: Option<&'a KeySlot>,
        accept: Option<&'static str>,
        extra: &[(&'a str, &'a str)],
    ) -> Vec<(&'a str, &'a str)> {
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(3 + self.headers.len() + extra.len());
        if let Some(k) = slot {
            headers.push((self.auth_header, &k.value));
        }
        if let Some(h) = self.adapter.version_header() {
            headers.push(h);
        }
        if let Some(a) = accept {
            headers.push(("accept", a));
        }
        headers.extend(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        headers.extend_from_slice(extra);
        headers
    }

    /// The pass-through path of `api` for `model`; an error when this provider does
    /// not speak it (callers check `speaks` first).
    fn native_path(&self, api: NativeApi, model: &str) -> Result<Cow<'static, str>, ProviderError> {
        self.adapter
            .native_path(api, model)
            .ok_or_else(|| ProviderError::upstream(format!("provider {} does not take {api:?} requests", self.name)))
    }

    /// Forwards a body of format `api` as is (non-streaming) for `model` and returns
    /// the provider's answer untouched: the pass-through of a front door whose format
    /// the provider speaks (`speaks`); `extra` are client headers to forward. Same key
    /// choice, breaker and retries as `chat`. A 4xx that is the client's doing (400,
    /// 404, 409, 413, 422) comes back as `Ok` so the caller can hand it on; everything
    /// else that is not 2xx is an error.
    pub async fn forward(
        &self,
        api: NativeApi,
        model: &str,
        body: bytes::Bytes,
        extra: &[(&str, &str)],
    ) -> Result<Forwarded, ProviderError> {
        let path = self.native_path(api, model)?;
        self.with_retries(async |slot, _guard, timeouts| {
            let headers = self.call_headers(slot, None, extra);
            let out = Outgoing { method: "POST", path: &path, headers: &headers, body: body.clone() };
            let mut resp = self.client.send(&self.endpoint, &out, timeouts).await?;
            let client_fault = matches!(resp.status, 400 | 404 | 409 | 413 | 422);
            if (200..300).contains(&resp.status) || client_fault {
                let body = resp.body.collect(MAX_COMPLETION).await?;
                return Ok(Forwarded { status: resp.status, body });
            }
            let body = resp.body.collect(MAX_ERROR_BODY).await.unwrap_or_default();
            Err(self.status_error(resp.status, resp.retry_after, &body))
        })
        .await
    }

    /// `forward` for a streamed request: the provider's SSE body is handed back as it
    /// arrives (a 2xx SSE head ends the retries); a client fault comes back as an
    /// answer, untouched.
    pub async fn forward_stream(
        &self,
        api: NativeApi,
        model: &str,
        body: bytes::Bytes,
        extra: &[(&str, &str)],
    ) -> Result<Streamed, ProviderError> {
        let path = self.native_path(api, model)?;
        self.with_retries(async |slot, guard, timeouts| {
            let headers = self.call_headers(slot, Some("text/event-stream"), extra);
            let out = Outgoing { method: "POST", path: &path, headers: &headers, body: body.clone() };
            let mut resp = self.client.send(&self.endpoint, &out, timeouts).await?;
            if (200..300).contains(&resp.status) {
                if resp.content_type.starts_with("text/event-stream") {
                    return Ok(Streamed::Events(Box::new(resp.body), guard));
                }
                return Err(UpstreamError::Protocol("provider answered a stream request without a stream".into()));
            }
            if matches!(resp.status, 400 | 404 | 409 | 413 | 422) {
                let body = resp.body.collect(MAX_ERROR_BODY).await?;
                return Ok(Streamed::Answer(Forwarded { status: resp.status, body }));
            }
            let body = resp.body.collect(MAX_ERROR_BODY).await.unwrap_or_default();
            Err(self.status_error(resp.status, resp.retry_after, &body))
        })
        .await
    }

    /// The policy around one call (see the module doc): breaker, key choice, attempt,
    /// backoff, until success, a non-retryable error, `max_retries` or the deadline.
    async fn with_retries<T>(
        &self,
        attempt_once: impl AsyncFn(Option<&KeySlot>, InFlight, Timeouts) -> Result<T, UpstreamError>,
    ) -> Result<T, ProviderError> {
        // One clock read per attempt start (the deadline, the breaker and the latency
        // all use it) and one at its end.
        let mut now = Instant::now();
        let deadline = now + self.timeouts.total;
        let mut attempt = 0u32;
        // The failure that led to the current retry: if the breaker then refuses, the
        // client learns what actually went wrong (a timeout stays a 504).
        let mut previous: Option<UpstreamError> = None;
        loop {
            if !self.breaker.borrow_mut().admit(now) {
                if let Some(e) = previous {
                    return Err(self.error(e, attempt));
                }
                return Err(ProviderError::upstream(format!(
                    "provider {} is marked down after repeated failures; it is probed again shortly",
                    self.name
                )));
            }
            let slot = self.pick_key();
            let guard = InFlight::new(slot);
            let started = now;
            let left = deadline.saturating_duration_since(started);
            let timeouts = Timeouts { total: left, ..self.timeouts };
            let outcome = attempt_once(slot, guard, timeouts).await;
            now = Instant::now();
            let latency = now.saturating_duration_since(started);
            match outcome {
                Ok(value) => {
                    let mut b = self.breaker.borrow_mut();
                    b.success();
                    self.health.record(Some(latency), false, b.state());
                    self.health.latency.observe(latency);
                    return Ok(value);
                }
                Err(e) => {
                    // A refusal of the request, or the gateway's own lack of room, says
                    // nothing against the provider.
                    let provider_fault = !matches!(
                        e,
                        UpstreamError::Status { status, .. } if status < 500
                    ) && !matches!(e, UpstreamError::Overloaded(_));
                    {
                        let mut b = self.breaker.borrow_mut();
                        if provider_fault {
                            b.failure(now);
                        }
                        self.health.record(None, provider_fault, b.state());
                        self.health.record_error_kind(&e);
                    }
                    let give_up = |e: UpstreamError| Err(self.error(e, attempt + 1));
                    if !e.retryable() || attempt >= self.max_retries {
                        return give_up(e);
                    }
                    let Some(delay) = backoff(attempt, e.retry_after(), fastrand::f64()) else { return give_up(e) };
                    if now + delay >= deadline {
                        return give_up(e);
                    }
                    monoio::time::sleep(delay).await;
                    now = Instant::now();
                    attempt += 1;
                    previous = Some(e);
                }
            }
        }
    }

    /// A non-2xx answer as an error: the provider's message, `type` and `code` read
    /// from its error body in this provider's shape (the first 200 bytes of text when
    /// it is not one), and whether it is a context-length refusal.
    fn status_error(&self, status: u16, retry_after: Option<Duration>, body: &[u8]) -> UpstreamError {
        let info = self.adapter.error_info(body).unwrap_or_else(|| ErrorInfo {
            message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            ..ErrorInfo::default()
        });
        let context_length =
            matches!(status, 400 | 413 | 422) && is_context_length(info.code.as_deref(), &info.message);
        UpstreamError::Status {
            status,
            retry_after,
            message: info.message,
            error_type: info.kind,
            error_code: info.code,
            context_length,
        }
    }

    /// The failure a call ended with, by kind (`provider::error`): the client's
    /// message names this provider and never an address; the cause (for the log)
    /// keeps everything but secrets.
    fn error(&self, e: UpstreamError, attempts: u32) -> ProviderError {
        let name = &self.name;
        let retry_after = e.retry_after().map(|d| d.as_secs().max(1));
        let mut err = ProviderError::from_upstream(e.clone());
        err.message = match (&e, err.kind) {
            (UpstreamError::Status { status, .. }, FailureKind::Credentials) => {
                format!("provider {name} refused the gateway's credentials (HTTP {status}); check its api_key")
            }
            (UpstreamError::Status { status, message, .. }, FailureKind::RateLimited) => {
                format!("provider {name} rate limit reached (HTTP {status}): {message}")
            }
            (UpstreamError::Status { message, .. }, FailureKind::BadRequest { .. }) if !message.is_empty() => {
                format!("provider {name}: {message}")
            }
            _ => format!("provider {name}: {}", e.client_message()),
        };
        err.message = self.scrub(err.message);
        err.cause = self.scrub(format!("provider {name}, attempt {attempts}: {e}"));
        if let UpstreamError::Status { error_type, error_code, .. } = e {
            err.provider_type = error_type;
            err.provider_code = error_code;
        }
        err.retry_after = retry_after;
        err
    }

    async fn attempt(
        &self,
        req: &ChatRequest,
        body: bytes::Bytes,
        slot: Option<&KeySlot>,
        guard: InFlight,
        timeouts: Timeouts,
    ) -> Result<ChatStream, UpstreamError> {
        let headers = self.call_headers(slot, req.stream.then_some("text/event-stream"), &[]);
        let path = self.adapter.chat_path(&req.upstream_model, req.stream);
        let out = Outgoing { method: "POST", path: &path, headers: &headers, body };
        let mut resp = self.client.send(&self.endpoint, &out, timeouts).await?;
        if !(200..300).contains(&resp.status) {
            let body = resp.body.collect(MAX_ERROR_BODY).await.unwrap_or_default();
            return Err(self.status_error(resp.status, resp.retry_after, &body));
        }
        let sse = resp.content_type.starts_with("text/event-stream");
        if req.stream && sse {
            return Ok(ChatStream::Sse(SseStream::new(resp.body, self.adapter.events(req)), guard));
        }
        let body = resp.body.collect(MAX_COMPLETION).await?;
        let answer = self.adapter.decode(req, &body).map_err(|e| UpstreamError::Protocol(e.message))?;
        Ok(ChatStream::complete(answer))
    }
}
