//! Raw serde structs: the TOML file exactly as written, before `${ENV}` expansion,
//! defaults and validation.
//!
//! Every struct rejects unknown keys (`deny_unknown_fields`), so a typo is an error
//! that names the key. Every field is an `Option` (or an empty default) so that the
//! defaults live in one place, the validated types in `config.rs`, and so that a
//! missing required key is reported by `validate.rs` with its full key path. String
//! values that name a choice (`io`, `kind`, `role`, ...) stay `String` here so that
//! they can use `${ENV}` like any other string. Only read at start-up and on reload.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    /// `[server]`: listener, workers, limits and timeouts.
    #[serde(default)]
    pub server: RawServer,
    /// `[[keys]]`: client API keys; none = open mode (loopback only).
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// `[[providers]]`: upstream model providers.
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    /// `[[models]]`: model ids clients may ask for.
    #[serde(default)]
    pub models: Vec<RawModel>,
    /// `[[channels]]`: chat platform webhooks.
    #[serde(default)]
    pub channels: Vec<RawChannel>,
    /// `[sessions]`: conversation memory limits.
    #[serde(default)]
    pub sessions: RawSessions,
    /// `[limits]`: rate-limit defaults and per-client limits.
    #[serde(default)]
    pub limits: RawLimits,
    /// `[store]`: where sessions are kept.
    #[serde(default)]
    pub store: RawStore,
    /// `[log]`: the log level.
    #[serde(default)]
    pub log: RawLog,
    /// `[metrics]`: the Prometheus endpoint.
    #[serde(default)]
    pub metrics: RawMetrics,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    /// Count requests for `/metrics` (default true).
    pub enabled: Option<bool>,
    /// `""`: `/metrics` on the main listener (admin key); `IP:port`: a separate, open one.
    pub listen: Option<String>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    /// `error | warn | info | debug`.
    pub level: Option<String>,
}

/// `[store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    /// `sqlite | memory | redis`.
    pub backend: Option<String>,
    /// SQLite file.
    pub path: Option<String>,
    /// Redis URL.
    pub url: Option<String>,
    /// Redis key prefix.
    pub key_prefix: Option<String>,
    /// `ack | async`.
    pub durability: Option<String>,
    /// `open | closed`.
    pub redis_fail: Option<String>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    /// `IP:port` literal to listen on.
    pub listen: Option<String>,
    /// Worker threads; 0 = one per core.
    pub workers: Option<usize>,
    /// `auto | uring | epoll`.
    pub io: Option<String>,
    /// Pin each worker to a core.
    pub pin_workers: Option<bool>,
    /// Largest request body in bytes.
    pub max_body_bytes: Option<usize>,
    /// Largest request head in bytes.
    pub max_header_bytes: Option<usize>,
    /// Most header lines per request.
    pub max_headers: Option<usize>,
    /// Deadline for a complete request head, ms.
    pub header_timeout_ms: Option<u64>,
    /// Deadline for the request body, ms.
    pub body_timeout_ms: Option<u64>,
    /// Keep-alive idle limit, ms.
    pub idle_timeout_ms: Option<u64>,
    /// Deadline for writing to the client, ms.
    pub write_timeout_ms: Option<u64>,
    /// Open connections per worker.
    pub max_connections_per_worker: Option<usize>,
    /// Drain deadline on SIGTERM, ms.
    pub shutdown_timeout_ms: Option<u64>,
    /// On SIGTERM, 503 on the health probes this long before the listener closes, ms.
    pub drain_delay_ms: Option<u64>,
    /// `off | text | json`.
    pub access_log: Option<String>,
    /// Restrict `/health/detailed` to admin keys.
    pub health_detailed_admin_only: Option<bool>,
    /// A WebSocket must authenticate (header or first frame) within this many ms.
    pub ws_auth_timeout_ms: Option<u64>,
    /// A WebSocket silent this long is pinged by the server, in ms.
    pub ws_ping_interval_ms: Option<u64>,
    /// A pinged WebSocket that sends nothing for this long is closed, in ms.
    pub ws_pong_timeout_ms: Option<u64>,
    /// Largest WebSocket frame payload accepted; larger closes with 1009.
    pub ws_max_frame_bytes: Option<usize>,
    /// Largest WebSocket message (all fragments) accepted; larger closes with 1009.
    pub ws_max_message_bytes: Option<usize>,
    /// Largest WebSocket message accepted before the socket authenticated.
    pub ws_max_auth_frame_bytes: Option<usize>,
    /// Deepest JSON nesting accepted anywhere (bodies, frames, upstream answers).
    pub max_json_depth: Option<usize>,
    /// Frames queued for one WebSocket before its turns are cut and it closes with 1013.
    pub ws_send_buffer_bytes: Option<usize>,
    /// Turns in flight at once on one WebSocket.
    pub ws_max_turns_per_socket: Option<usize>,
    /// How often `status` subscribers are checked for a changed status, in ms.
    pub ws_status_interval_ms: Option<u64>,
    /// Bytes of events kept per streamed `/api/chat` turn for `Last-Event-ID` resumes.
    pub sse_resume_buffer_bytes: Option<usize>,
    /// How long a streamed turn runs on after its client left, and stays resumable after it ended, in ms.
    pub sse_resume_window_ms: Option<u64>,
    /// Streamed turns buffered for resumes per worker; beyond it streams are not resumable.
    pub sse_max_buffered_turns: Option<usize>,
    /// Longest lingering close after an early error response, ms (0 = none).
    pub lingering_close_ms: Option<u64>,
    /// Most bytes read and discarded in a lingering close.
    pub lingering_close_bytes: Option<usize>,
    /// Most bytes of one streamed reply.
    pub max_reply_bytes: Option<usize>,
    /// Memory watermark in MiB of RSS (0 = off).
    pub max_memory_mb: Option<u64>,
    /// Per-worker budget for answers read whole, MiB.
    pub upstream_body_budget_mb: Option<u64>,
    /// PROXY protocol v1/v2 on the listener.
    pub proxy_protocol: Option<bool>,
    /// CIDRs whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Option<Vec<String>>,
    /// `[server.cors]`: browser origins allowed to call the API.
    pub cors: Option<RawCors>,
    /// `[server.tls]`: TLS termination on the listener.
    pub tls: Option<RawTls>,
}

/// `[server.tls]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    /// PEM certificate chain, leaf first.
    pub cert: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<String>,
}

/// `[server.cors]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCors {
    /// Origins (`scheme://host[:port]`) or `"*"`; empty = CORS off.
    pub allow_origins: Option<Vec<String>>,
}

/// `[[keys]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    /// Unique name.
    pub name: Option<String>,
    /// The key itself (hashed at load); exclusive with `key_sha256`.
    pub key: Option<String>,
    /// SHA-256 of the key, 64 hex digits; exclusive with `key`.
    pub key_sha256: Option<String>,
    /// `admin | user`.
    pub role: Option<String>,
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
    /// Allowed model ids.
    pub models: Option<Vec<String>>,
}

/// `[[providers]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    /// Unique name.
    pub name: Option<String>,
    /// `openai | anthropic | openai_compat | gemini | azure_openai | mock`.
    pub kind: Option<String>,
    /// Base URL; defaulted per kind.
    pub base_url: Option<String>,
    /// One upstream API key.
    pub api_key: Option<String>,
    /// More upstream API keys (merged after `api_key`).
    pub api_keys: Option<Vec<String>>,
    /// Extra upstream headers, in file order.
    pub headers: Option<RawHeaders>,
    /// Connect deadline, ms.
    pub connect_timeout_ms: Option<u64>,
    /// First-byte deadline, ms.
    pub first_byte_timeout_ms: Option<u64>,
    /// Whole-request deadline, ms.
    pub request_timeout_ms: Option<u64>,
    /// Inter-chunk deadline, ms.
    pub chunk_timeout_ms: Option<u64>,
    /// Retries on retryable errors.
    pub max_retries: Option<u32>,
    /// Extra CA bundle path.
    pub ca_file: Option<String>,
    /// `anthropic-version` header.
    pub anthropic_version: Option<String>,
    /// Azure OpenAI `api-version` query parameter.
    pub api_version: Option<String>,
    /// Drop request settings the provider cannot carry instead of refusing them.
    pub drop_unsupported_params: Option<bool>,
    /// `[providers.mock]`: mock behaviour (kind `mock` only).
    pub mock: Option<RawMock>,
}

/// `providers[].mock`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMock {
    /// Delay between chunks, ms.
    pub chunk_delay_ms: Option<u64>,
    /// Words per chunk.
    pub chunk_words: Option<usize>,
}

/// `[[models]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    /// Unique id clients send.
    pub id: Option<String>,
    /// Provider name.
    pub provider: Option<String>,
    /// Model name sent upstream; defaults to `id`.
    pub upstream: Option<String>,
    /// Fallback model ids, in order.
    pub fallbacks: Option<Vec<String>>,
    /// Model ids tried, in order, on a context-length refusal.
    pub context_window_fallbacks: Option<Vec<String>>,
    /// Drop request settings the provider cannot carry instead of refusing them.
    pub drop_unsupported_params: Option<bool>,
    /// The default model.
    pub default: Option<bool>,
    /// Context window in tokens.
    pub context_window: Option<u32>,
    /// Cap on generated tokens.
    pub max_tokens: Option<u32>,
}

/// `[[channels]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChannel {
    /// Unique name, `[a-z0-9_-]+`.
    pub name: Option<String>,
    /// `telegram | slack | discord | whatsapp | generic`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Whether the webhook is served.
    pub enabled: Option<bool>,
    /// Verification secret.
    pub secret: Option<String>,
    /// WhatsApp `hub.verify_token`.
    pub verify_token: Option<String>,
    /// Discord public key, 64 hex digits.
    pub public_key: Option<String>,
    /// Model for this channel.
    pub model: Option<String>,
    /// Credential for sending replies (telegram, slack, whatsapp).
    pub bot_token: Option<String>,
    /// Where replies go (default: the platform's public API).
    pub api_base: Option<String>,
    /// generic only: where replies are POSTed.
    pub callback_url: Option<String>,
    /// `chat | user`.
    pub session_scope: Option<String>,
}

/// `[sessions]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSessions {
    /// Messages kept per session.
    pub max_messages: Option<usize>,
    /// Bytes kept per session.
    pub max_bytes: Option<usize>,
    /// Idle time before a session is forgotten, seconds.
    pub idle_ttl_secs: Option<u64>,
    /// Sessions held in memory by the whole process.
    pub max_sessions: Option<usize>,
    /// Days without an update before a session is purged from the store; 0 = never.
    pub retention_days: Option<u32>,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    /// Requests per minute for keys without their own `rpm`.
    pub rpm: Option<u32>,
    /// Tokens per minute for keys without their own `tpm`.
    pub tpm: Option<u64>,
    /// Requests per minute per client IP without a valid key (open mode, failed auth).
    pub ip_rpm: Option<u32>,
    /// WebSocket upgrades per minute per client IP.
    pub ws_connects_per_minute_per_ip: Option<u32>,
    /// Messages per minute per WebSocket.
    pub ws_messages_per_minute: Option<u32>,
    /// Most requests a worker leases from a global budget at once.
    pub lease_size: Option<u32>,
    /// Most client IPs tracked per limit.
    pub max_tracked_clients: Option<usize>,
    /// Completion tokens reserved for a turn whose model sets no `max_tokens`.
    pub completion_reserve_tokens: Option<u32>,
    /// Failed authentications per client IP within a minute before a lockout (0 = none).
    pub auth_failures_per_minute: Option<u32>,
    /// Length of a lockout, seconds.
    pub auth_lockout_secs: Option<u64>,
}

/// `headers = { "X-Foo" = "bar" }`, kept in file order (a `HashMap` would shuffle it
/// and a `BTreeMap` would sort it).
#[derive(Debug, Default)]
pub(super) struct RawHeaders(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for RawHeaders {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor;

        impl<'de> Visitor<'de> for HeadersVisitor {
            type Value = RawHeaders;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of header names to string values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeaders, A::Error> {
                let mut headers = Vec::new();
                while let Some(entry) = map.next_entry::<String, String>()? {
                    headers.push(entry);
                }
                Ok(RawHeaders(headers))
            }
        }

        deserializer.deserialize_map(HeadersVisitor)
    }
}
