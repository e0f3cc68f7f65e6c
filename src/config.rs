//! Configuration: one TOML file turned into an immutable, validated [`Config`].
//!
//! Data flows in one direction: the file text is parsed by `toml` into the raw serde
//! structs of `config/raw.rs` (every field optional, unknown keys rejected), then
//! `config/validate.rs` expands `${ENV_VAR}` references in every string value, applies
//! defaults, checks each key and the references between sections, and produces the
//! types below. Every error is a [`ConfigError`] whose message names the key (such as
//! `server.max_body_bytes` or `models[2].provider`) and the file. The result is shared
//! as `Arc<Config>` and swapped whole on reload; nothing here runs on the request path
//! except the small lookups ([`Config::model`], [`Config::provider`],
//! [`Config::channel`]), which scan a handful of entries without allocating.
//! Secrets are held in [`Secret`], which never prints.

#![forbid(unsafe_code)]

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use sha2::{Digest, Sha256};

mod expand;
mod raw;
#[cfg(test)]
mod tests;
mod validate;

/// Environment variable that overrides `server.io`.
pub const IO_ENV_VAR: &str = "CLAWGATE_IO";

/// The validated configuration. Immutable; shared as `Arc<Config>`.
///
/// Invariants established by validation: `models` is non-empty, every cross reference
/// (model -> provider, fallback -> model, key -> model, channel -> model) resolves, and
/// names and ids are unique within their section.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`: listener, workers, limits and timeouts.
    pub server: ServerConfig,
    /// `[[keys]]`: client API keys. Empty means open mode (loopback only).
    pub keys: Vec<KeyConfig>,
    /// `[[providers]]`: upstream model providers.
    pub providers: Vec<ProviderConfig>,
    /// `[[models]]`: model ids clients may ask for. Never empty.
    pub models: Vec<ModelConfig>,
    /// `[[channels]]`: chat platform webhooks.
    pub channels: Vec<ChannelConfig>,
    /// `[sessions]`: conversation memory limits.
    pub sessions: SessionsConfig,
    /// `[store]`: the session store.
    pub store: StoreConfig,
    /// `[log]`: the log level (`CLAWGATE_LOG` overrides it).
    pub log: LogConfig,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// `[limits]`: rate-limit defaults, per-client limits and limiter tuning.
    pub limits: LimitsConfig,
    /// The file this came from; `None` for built-in defaults or inline text.
    pub source: Option<PathBuf>,
}

/// A configuration error. The message names the key and the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Listen address: an IP:port literal (no DNS); port 0 picks a free port.
    pub listen: SocketAddr,
    /// Worker threads; 0 = one per core (resolved by the runtime).
    pub workers: usize,
    /// I/O driver; `CLAWGATE_IO` overrides the file.
    pub io: IoMode,
    /// Pin each worker to its core.
    pub pin_workers: bool,
    /// Largest accepted request body, in bytes (>= 1).
    pub max_body_bytes: usize,
    /// Largest accepted request head (request line + headers), in bytes.
    pub max_header_bytes: usize,
    /// Most header lines accepted in a request.
    pub max_headers: usize,
    /// Time allowed to receive a complete request head.
    pub header_timeout_ms: u64,
    /// Time allowed to receive the request body.
    pub body_timeout_ms: u64,
    /// Keep-alive idle time before the connection is closed.
    pub idle_timeout_ms: u64,
    /// Time allowed for writing a response chunk to the client.
    pub write_timeout_ms: u64,
    /// Open connections accepted per worker.
    pub max_connections_per_worker: usize,
    /// Drain deadline on SIGTERM; 0 closes at once.
    pub shutdown_timeout_ms: u64,
    /// On SIGTERM, how long `/health` and `/health/ready` answer 503 while the listener
    /// still accepts (so a load balancer sees the drain before connections are refused).
    pub drain_delay_ms: u64,
    /// Access log format.
    pub access_log: AccessLog,
    /// Restrict `/health/detailed` to admin keys.
    pub health_detailed_admin_only: bool,
    /// A WebSocket must authenticate (header or first frame) within this many ms.
    pub ws_auth_timeout_ms: u64,
    /// A WebSocket silent this long is pinged by the server, in ms.
    pub ws_ping_interval_ms: u64,
    /// A pinged WebSocket that sends nothing for this long is closed, in ms.
    pub ws_pong_timeout_ms: u64,
    /// Largest WebSocket frame payload accepted; larger closes with 1009.
    pub ws_max_frame_bytes: usize,
    /// Largest WebSocket message (all fragments) accepted; larger closes with 1009.
    pub ws_max_message_bytes: usize,
    /// Largest WebSocket message accepted before the socket authenticated (an `auth`
    /// frame needs a few hundred bytes); larger closes with 1009.
    pub ws_max_auth_frame_bytes: usize,
    /// Deepest nesting of arrays and objects accepted in any JSON the gateway parses
    /// (request bodies, WebSocket frames, upstream answers); deeper is refused with
    /// `INVALID_REQUEST` before parsing.
    pub max_json_depth: usize,
    /// Frames queued for one WebSocket before its turns are cut and it closes with 1013.
    pub ws_send_buffer_bytes: usize,
    /// Turns in flight at once on one WebSocket.
    pub ws_max_turns_per_socket: usize,
    /// How often `status` subscribers are checked for a changed status, in ms.
    pub ws_status_interval_ms: u64,
    /// Bytes of events kept per streamed `/api/chat` turn for `Last-Event-ID` resumes.
    pub sse_resume_buffer_bytes: usize,
    /// How long a streamed turn runs on after its client left, and stays resumable after it ended, in ms.
    pub sse_resume_window_ms: u64,
    /// Streamed turns buffered for resumes per worker; beyond it streams are not resumable.
    pub sse_max_buffered_turns: usize,
    /// After an error answered before the request was read whole (413, 431, a bad
    /// head or body), the connection is closed in stages (RFC 9112 section 9.6): the
    /// write side is shut and what the client still sends is read and discarded for
    /// at most this long, in ms; 0 closes at once.
    pub lingering_close_ms: u64,
    /// ... and at most this many bytes: about the largest over-limit body whose
    /// answer a client that writes before it reads still gets (the kernel's buffers
    /// absorb only a megabyte or two more).
    pub lingering_close_bytes: usize,
    /// Most bytes of one streamed reply (text, reasoning and tool-call arguments): a
    /// longer one is cut with an error event, its upstream call cancelled, and the part
    /// that came stored in the session marked cut.
    pub max_reply_bytes: usize,
    /// The process's memory watermark in MiB of RSS (0 = off): above it new turns get
    /// 503 `OVERLOADED` with `Retry-After` while the running ones finish.
    pub max_memory_mb: u64,
    /// Per worker, in MiB: the most that answers read whole from providers (non-stream
    /// turns, passed-through JSON) may hold at once while they are read; a read that
    /// would pass it ends with 503 `OVERLOADED` + `Retry-After` (0 = no budget; each
    /// answer is also capped at 16 MiB on its own).
    pub upstream_body_budget_mb: u64,
    /// Expect a PROXY protocol header (v1 text or v2 binary, from HAProxy, an AWS NLB,
    /// ...) at the start of every connection: its source address is the client's.
    /// A connection without one is closed.
    pub proxy_protocol: bool,
    /// Proxies whose `X-Forwarded-For` is believed (CIDRs): for a request from one of
    /// them, the client is the rightmost address of the header that is not itself a
    /// trusted proxy. Empty: the header is ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `[server.cors]`: the browser origins that may call `/api/*` and `/v1/*` and
    /// open `/ws`; `None` (no section, or an empty `allow_origins`) = CORS off.
    pub cors: Option<CorsConfig>,
    /// `[server.tls]`: TLS termination on `listen` (rustls); `None` = plain TCP.
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`: the listener's certificate chain and private key, PEM files read
/// at start-up and again on every SIGHUP (a reload that cannot read them is refused
/// and the running certificate stays). Relative paths are resolved against the
/// config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Certificate chain, leaf first (PEM `CERTIFICATE` blocks).
    pub cert: PathBuf,
    /// The leaf's private key (PEM PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[server.cors]` (PROTOCOL.md "Browsers (CORS)"): which browser origins may read
/// the gateway's answers. Checked only for requests that carry `Origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// Allowed origins, `scheme://host[:port]` in lowercase, as browsers send them.
    pub allow_origins: Vec<String>,
    /// `"*"` was listed: every origin is allowed (and echoed, never `*`).
    pub any_origin: bool,
}

impl CorsConfig {
    /// Whether a request's `Origin` value is allowed (compared ASCII
    /// case-insensitively).
    pub fn allows(&self, origin: &[u8]) -> bool {
        self.any_origin || self.allow_origins.iter().any(|o| o.as_bytes().eq_ignore_ascii_case(origin))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 0,
            io: IoMode::Auto,
            pin_workers: true,
            max_body_bytes: 1_048_576,
            max_header_bytes: 16_384,
            max_headers: 64,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            write_timeout_ms: 30_000,
            max_connections_per_worker: 10_000,
            shutdown_timeout_ms: 10_000,
            drain_delay_ms: 1000,
            upstream_body_budget_mb: 256,
            proxy_protocol: false,
            trusted_proxies: Vec::new(),
            access_log: AccessLog::Off,
            health_detailed_admin_only: false,
            ws_auth_timeout_ms: 10_000,
            ws_ping_interval_ms: 30_000,
            ws_pong_timeout_ms: 10_000,
            ws_max_frame_bytes: 1_048_576,
            ws_max_message_bytes: 1_048_576,
            ws_max_auth_frame_bytes: 4_096,
            max_json_depth: crate::json::DEFAULT_MAX_DEPTH,
            ws_send_buffer_bytes: 1_048_576,
            ws_max_turns_per_socket: 16,
            ws_status_interval_ms: 5_000,
            sse_resume_buffer_bytes: 262_144,
            sse_resume_window_ms: 15_000,
            sse_max_buffered_turns: 1_024,
            lingering_close_ms: 5_000,
            lingering_close_bytes: 16 * 1_048_576,
            max_reply_bytes: 16 * 1_048_576,
            max_memory_mb: 0,
            cors: None,
            tls: None,
        }
    }
}

/// Joins string literals with ` | ` at compile time.
macro_rules! concat_choices {
    ($first:literal $(, $rest:literal)*) => { concat!($first $(, " | ", $rest)*) };
}

/// Declares a config enum with its TOML spellings, `as_str`, `parse` and `CHOICES`.
macro_rules! config_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// The accepted spellings, for error messages: `a | b | c`.
            pub const CHOICES: &'static str = concat_choices!($($text),+);

            /// The TOML spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parses the TOML spelling (exact, lower case).
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

config_enum! {
    /// I/O driver: `auto` tries io_uring and falls back to epoll.
    IoMode { Auto = "auto", Uring = "uring", Epoll = "epoll" }
}

config_enum! {
    /// Where sessions are kept (`[store] backend`): `sqlite` (durable, the default),
    /// `memory` (lost at exit: tests, benchmarks), `redis` (several instances; not in
    /// this build).
    StoreBackend { Sqlite = "sqlite", Memory = "memory", Redis = "redis" }
}

config_enum! {
    /// When a turn is acknowledged (`[store] durability`): `ack` after its messages are
    /// committed (fsync), `async` before (a crash can lose turns the client saw end).
    Durability { Ack = "ack", Async = "async" }
}

config_enum! {
    /// What the Redis backend does when Redis is unreachable (`[store] redis_fail`).
    RedisFail { Open = "open", Closed = "closed" }
}

config_enum! {
    /// How much is logged (`[log] level`, `CLAWGATE_LOG`): each level includes those
    /// before it.
    LogLevel { Error = "error", Warn = "warn", Info = "info", Debug = "debug" }
}

/// `[metrics]`: `GET /metrics` (OpenMetrics text, `metrics.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Whether requests are counted for `/metrics` (default true; `false` answers
    /// `/metrics` with 404 and saves the per-request counting).
    pub enabled: bool,
    /// `None` (`listen = ""`, the default): `/metrics` on the main listener, for admin
    /// keys. `Some(addr)`: on this separate address, open to whoever reaches it (bind it
    /// to a private interface); the main listener then answers `/metrics` with 404.
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true, listen: None }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// The level of every module not named in `targets`.
    pub level: LogLevel,
    /// Per-module levels (`webhook=debug`): a top-level module of the gateway
    /// (`LOG_TARGETS`) and its level, in the order given (a later entry wins).
    pub targets: Vec<(&'static str, LogLevel)>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: LogLevel::Info, targets: Vec::new() }
    }
}

/// The modules a log filter can name: the gateway's top-level modules (`src/*.rs`),
/// where each log line is written from (`log` finds the caller's file), plus `main`.
pub const LOG_TARGETS: &[&str] = &[
    "api",
    "auth",
    "channel",
    "chat",
    "clock",
    "config",
    "error",
    "http",
    "json",
    "log",
    "main",
    "metrics",
    "peers",
    "provider",
    "ratelimit",
    "router",
    "runtime",
    "server",
    "session",
    "stats",
    "store",
    "tls",
    "turn",
    "upstream",
    "webhook",
    "worker",
    "ws",
];

impl LogConfig {
    /// Parses a log filter in the `RUST_LOG` (env_logger) directive syntax, one
    /// granularity coarser: comma-separated directives, each `LEVEL` (every module) or
    /// `TARGET=LEVEL`, where TARGET is one of `LOG_TARGETS`, optionally written with
    /// the crate prefix (`clawgate::webhook`) or a submodule (`server::conn`, which
    /// sets all of `server`); `clawgate=LEVEL` alone sets the default. Levels: `error`,
    /// `warn`, `info`, `debug`, and env_logger's `trace` (= `debug`, the finest here)
    /// and `off` (= `error`: errors are always written). Case-insensitive.
    /// `ignore_foreign`: skip directives for targets that are not clawgate's (a shared
    /// `RUST_LOG` naming other programs' crates) instead of refusing them. Errors say
    /// which directive is wrong and what was expected.
    pub fn parse(spec: &str, ignore_foreign: bool) -> Result<LogConfig, String> {
        let mut out = LogConfig::default();
        let level_of = |v: &str| -> Result<LogLevel, String> {
            let v = v.trim().to_ascii_lowercase();
            match v.as_str() {
                "trace" => Ok(LogLevel::Debug),
                "off" => Ok(LogLevel::Error),
                _ => LogLevel::parse(&v)
                    .ok_or_else(|| format!("{v:?} is not a level (expected {} | trace | off)", LogLevel::CHOICES)),
            }
        };
        for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let Some((target, level)) = directive.split_once('=') else {
                out.level = level_of(directive)?;
                continue;
            };
            let level = level_of(level)?;
            let target = target.trim().to_ascii_lowercase();
            let path = target.strip_prefix("clawgate").map(|r| r.trim_start_matches("::")).unwrap_or(&target);
            if path.is_empty() {
                out.level = level;
                continue;
            }
            let top = path.split("::").next().unwrap_or(path);
            match LOG_TARGETS.iter().find(|t| **t == top) {
                Some(t) => out.targets.push((t, level)),
                None if ignore_foreign => {}
                None => {
                    return Err(format!(
                        "{directive:?}: unknown module {top:?}; a target is one of {}",
                        LOG_TARGETS.join(", ")
                    ))
                }
            }
        }
        Ok(out)
    }

    /// The level in force for `target` (one of `LOG_TARGETS`).
    pub fn level_for(&self, target: &str) -> LogLevel {
        self.targets.iter().rev().find(|(t, _)| *t == target).map_or(self.level, |(_, l)| *l)
    }
}

/// The environment variable that overrides `[log] level`.
/// The environment variable that overrides `[log] level`.
pub const LOG_ENV_VAR: &str = "CLAWGATE_LOG";
/// Read when `CLAWGATE_LOG` is unset, as env_logger does; directives naming other
/// programs' crates are skipped.
pub const RUST_LOG_ENV_VAR: &str = "RUST_LOG";

/// The log filter from the environment: `CLAWGATE_LOG`, else `RUST_LOG`; `None` when
/// neither is set (or both are empty). `env` reads a variable.
pub fn log_from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<LogConfig>, ConfigError> {
    for (var, ignore_foreign) in [(LOG_ENV_VAR, false), (RUST_LOG_ENV_VAR, true)] {
        if let Some(v) = env(var).filter(|v| !v.trim().is_empty()) {
            return LogConfig::parse(&v, ignore_foreign)
                .map(Some)
                .map_err(|e| ConfigError(format!("{var}: invalid value {v:?} (environment): {e}")));
        }
    }
    Ok(None)
}

config_enum! {
    /// Access log format.
    AccessLog { Off = "off", Text = "text", Json = "json" }
}

config_enum! {
    /// What a key may do: admins reach the admin routes, users only the chat routes.
    Role { Admin = "admin", User = "user" }
}

config_enum! {
    /// Upstream wire protocol.
    ProviderKind {
        OpenAi = "openai",
        Anthropic = "anthropic",
        OpenAiCompat = "openai_compat",
        Gemini = "gemini",
        AzureOpenAi = "azure_openai",
        Mock = "mock",
    }
}

config_enum! {
    /// Chat platform of a channel.
    ChannelKind {
        Telegram = "telegram",
        Slack = "slack",
        Discord = "discord",
        WhatsApp = "whatsapp",
        Generic = "generic",
    }
}

/// `[[keys]]`: one client API key.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// Unique, non-empty name (shown in logs and metrics; the key itself never is).
    pub name: String,
    /// SHA-256 of the key; compare with [`hash_key`] of the presented bearer token.
    pub key_sha256: [u8; 32],
    /// Admin or user.
    pub role: Role,
    /// Requests per minute, if limited.
    pub rpm: Option<u32>,
    /// Tokens per minute, if limited.
    pub tpm: Option<u64>,
    /// Model ids this key may use; `None` = all.
    pub models: Option<Vec<String>>,
}

/// `[[providers]]`: one upstream.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Unique name, referenced by `models[].provider`.
    pub name: String,
    /// Wire protocol.
    pub kind: ProviderKind,
    /// Base URL without a trailing `/`; empty for `mock`.
    pub base_url: String,
    /// Upstream API keys (rotated or tried in turn by the adapter).
    pub api_keys: Vec<Secret>,
    /// Extra headers sent on every upstream request, in file order.
    pub headers: Vec<(String, String)>,
    /// TCP + TLS connect deadline.
    pub connect_timeout_ms: u64,
    /// Deadline for the first response byte.
    pub first_byte_timeout_ms: u64,
    /// Deadline for the whole upstream request.
    pub request_timeout_ms: u64,
    /// Longest gap between two streamed chunks.
    pub chunk_timeout_ms: u64,
    /// Retries on retryable upstream errors.
    pub max_retries: u32,
    /// Extra CA bundle (PEM) for the upstream TLS client; relative paths are resolved
    /// against the config file's directory.
    pub ca_file: Option<PathBuf>,
    /// `anthropic-version` header value.
    pub anthropic_version: String,
    /// Azure OpenAI's `api-version` query parameter.
    pub api_version: String,
    /// A request setting this provider cannot carry is dropped (and named in
    /// `X-Clawgate-Dropped-Params`) instead of refused with 400.
    pub drop_unsupported_params: bool,
    /// Behaviour of the built-in mock provider.
    pub mock: MockConfig,
}

/// `providers[].mock`: the deterministic built-in provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockConfig {
    /// Delay between streamed chunks.
    pub chunk_delay_ms: u64,
    /// Words per streamed chunk (>= 1).
    pub chunk_words: usize,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig { chunk_delay_ms: 0, chunk_words: 3 }
    }
}

/// `[[models]]`: one model id clients may ask for.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// Unique id clients send.
    pub id: String,
    /// Name of the provider serving it.
    pub provider: String,
    /// Model name sent to the provider.
    pub upstream: String,
    /// Other model ids tried in order when this one fails (not when the provider
    /// refused the request itself: PROTOCOL.md "Provider errors, by kind").
    pub fallbacks: Vec<String>,
    /// Model ids tried in order when the provider says the prompt is longer than the
    /// context window (and only then).
    pub context_window_fallbacks: Vec<String>,
    /// The model used when a request names none.
    pub default: bool,
    /// Context window in tokens, if known.
    pub context_window: Option<u32>,
    /// Cap on generated tokens per request, if any.
    pub max_tokens: Option<u32>,
    /// Like the provider's `drop_unsupported_params`, for this model (either one set
    /// drops).
    pub drop_unsupported_params: bool,
}

/// `[[channels]]`: one chat platform webhook.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Unique name, `[a-z0-9_-]+`, not `api`; the webhook path is `/webhooks/<name>`.
    pub name: String,
    /// Platform.
    pub kind: ChannelKind,
    /// Disabled channels answer 404.
    pub enabled: bool,
    /// Verification secret (Telegram secret token, Slack signing secret, WhatsApp app
    /// secret, generic bearer token).
    pub secret: Option<Secret>,
    /// WhatsApp `hub.verify_token` for the `GET` subscription handshake.
    pub verify_token: Option<Secret>,
    /// Discord application public key (Ed25519), decoded from 64 hex digits.
    pub public_key: Option<[u8; 32]>,
    /// Model used for this channel's turns; `None` = the config's default model.
    pub model: Option<String>,
    /// The credential for sending replies (Telegram bot token, Slack bot token,
    /// WhatsApp access token).
    pub bot_token: Option<Secret>,
    /// Where replies go: the platform's API (`ChannelKind::default_api_base` unless set;
    /// tests point it at a fake platform). No trailing `/`.
    pub api_base: String,
    /// `generic` only: where replies are POSTed.
    pub callback_url: Option<String>,
    /// One session per chat, or per user in group chats.
    pub session_scope: SessionScope,
    /// Derived: `/webhooks/<name>`.
    pub webhook_path: String,
}

config_enum! {
    /// Which conversation a channel message belongs to (`[[channels]] session_scope`):
    /// `chat` (`<channel>:<chat id>`) or `user` (`<channel>:<chat id>:<user id>`).
    SessionScope { Chat = "chat", User = "user" }
}

impl ChannelConfig {
    /// Channel `name` of type `kind` as a `[[channels]]` entry naming only those two
    /// would be: enabled, no secrets or tokens, the type's default `api_base`, one
    /// session per chat. (Tests and fuzz targets build on it; a config file goes
    /// through validation instead.)
    pub fn new(name: &str, kind: ChannelKind) -> Self {
        ChannelConfig {
            name: name.to_string(),
            kind,
            enabled: true,
            secret: None,
            verify_token: None,
            public_key: None,
            model: None,
            bot_token: None,
            api_base: kind.default_api_base().to_string(),
            callback_url: None,
            session_scope: SessionScope::Chat,
            webhook_path: format!("/webhooks/{name}"),
        }
    }
}

impl ChannelKind {
    /// The platform's public API, where replies go by default (`api_base`).
    pub fn default_api_base(self) -> &'static str {
        match self {
            ChannelKind::Telegram => "https://api.telegram.org",
            ChannelKind::Slack => "https://slack.com/api",
            ChannelKind::Discord => "https://discord.com/api/v10",
            // The Graph API version of Meta's current documentation (Meta retires a
            // version about two years after it ships); `api_base` pins another.
            ChannelKind::WhatsApp => "https://graph.facebook.com/v26.0",
            ChannelKind::Generic => "",
        }
    }
}

/// `[sessions]`: conversation memory limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionsConfig {
    /// Messages kept per session; the oldest are dropped beyond this.
    pub max_messages: usize,
    /// Bytes kept per session.
    pub max_bytes: usize,
    /// A session idle this long is forgotten.
    pub idle_ttl_secs: u64,
    /// Sessions held in memory by the whole process; beyond it the least recently
    /// used idle ones are forgotten first (a flood of new sessions cannot exhaust memory).
    /// With a durable store this bounds memory only: forgotten sessions load again.
    pub max_sessions: usize,
    /// Sessions not updated for this many days are purged from the store (0 = kept
    /// forever).
    pub retention_days: u32,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            max_messages: 200,
            max_bytes: 262_144,
            idle_ttl_secs: 86_400,
            max_sessions: 100_000,
            retention_days: 0,
        }
    }
}

/// `[store]`: where sessions are kept (`store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// The SQLite file (relative paths are resolved against the working directory).
    pub path: PathBuf,
    /// Redis only: `redis://host:port/db`.
    pub url: Option<String>,
    /// Redis only: the prefix of every key.
    pub key_prefix: String,
    pub durability: Durability,
    pub redis_fail: RedisFail,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Sqlite,
            path: PathBuf::from("clawgate.db"),
            url: None,
            key_prefix: "clawgate:".into(),
            durability: Durability::Ack,
            redis_fail: RedisFail::Open,
        }
    }
}

/// `[limits]`: quotas. Every limit is per minute and optional (`None` = no limit);
/// a limit's whole minute may be spent in one burst.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Requests per minute for keys that set no `rpm` of their own.
    pub rpm: Option<u32>,
    /// Tokens per minute for keys that set no `tpm` of their own.
    pub tpm: Option<u64>,
    /// Requests per minute per client IP (IPv6: per /64) for requests without a valid
    /// key: every request in open mode, and failed authentication attempts.
    pub ip_rpm: Option<u32>,
    /// WebSocket upgrades per minute per client IP.
    pub ws_connects_per_minute_per_ip: Option<u32>,
    /// Messages per minute on one WebSocket.
    pub ws_messages_per_minute: Option<u32>,
    /// Most requests a worker takes from a global budget at once (token leases are
    /// 256 times as many tokens). The global error of a limit is at most
    /// `lease_size x workers`.
    pub lease_size: u32,
    /// Most client IPs remembered per per-client limit (and per worker); beyond it
    /// the quietest are forgotten.
    pub max_tracked_clients: usize,
    /// Completion tokens a turn reserves when its model sets no `max_tokens`.
    pub completion_reserve_tokens: u32,
    /// Failed authentications (credentials presented and refused, over HTTP and
    /// WebSocket) from one client IP within a minute that lock it out; 0 = no lockout.
    pub auth_failures_per_minute: u32,
    /// How long a locked-out client IP is refused (`429` before its key is checked),
    /// in seconds.
    pub auth_lockout_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            rpm: None,
            tpm: None,
            ip_rpm: None,
            ws_connects_per_minute_per_ip: None,
            ws_messages_per_minute: None,
            lease_size: 8,
            max_tracked_clients: 100_000,
            completion_reserve_tokens: 256,
            auth_failures_per_minute: 10,
            auth_lockout_secs: 300,
        }
    }
}

/// A secret string that never prints: Debug/Display show "[redacted]".
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: String) -> Self {
        Secret(s)
    }

    /// The secret itself, for the one place that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// SHA-256 of a client API key, as stored in [`KeyConfig::key_sha256`].
pub fn hash_key(raw: &str) -> [u8; 32] {
    Sha256::digest(raw.as_bytes()).into()
}

/// Applies the `CLAWGATE_IO` override: `env_value` (the variable's value, if set)
/// wins over `file_value`. An empty value counts as unset; anything other than
/// `auto | uring | epoll` is an error naming `CLAWGATE_IO`.
pub fn io_override(file_value: IoMode, env_value: Option<&str>) -> Result<IoMode, ConfigError> {
    match env_value {
        None | Some("") => Ok(file_value),
        Some(text) => IoMode::parse(text).ok_or_else(|| {
            ConfigError(format!("{IO_ENV_VAR}: invalid value {text:?} (environment), expected {}", IoMode::CHOICES))
        }),
    }
}

/// Model returned by [`Config::default_model`] if a hand-built `Config` has no models;
/// validated configs always have at least one.
static FALLBACK_MODEL: LazyLock<ModelConfig> = LazyLock::new(builtin_mock_model);

fn builtin_mock_provider() -> ProviderConfig {
    validate::provider_defaults("mock".to_owned(), ProviderKind::Mock)
}

fn builtin_mock_model() -> ModelConfig {
    ModelConfig {
        id: "mock".to_owned(),
        provider: "mock".to_owned(),
        upstream: "mock".to_owned(),
        fallbacks: Vec::new(),
        context_window_fallbacks: Vec::new(),
        default: true,
        context_window: None,
        max_tokens: None,
        drop_unsupported_params: false,
    }
}

/// Reads an environment variable through `std::env`; non-UTF-8 values count as unset.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// Reads, parses, expands `${ENV}` references (from the process environment) and
    /// validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read config file: {e}", path.display())))?;
        Config::from_toml_str(&text, Some(path))
    }

    /// Same as [`Config::load`] from text; `source` is used in messages and kept in
    /// [`Config::source`]. Environment variables are read with `std::env::var`.
    pub fn from_toml_str(text: &str, source: Option<&Path>) -> Result<Config, ConfigError> {
        Config::from_toml_str_with_env(text, source, &process_env)
    }

    /// Same as [`Config::from_toml_str`], with every environment lookup (`${VAR}`
    /// references and `CLAWGATE_IO`) going through `env`. Tests use this to avoid
    /// touching the process environment.
    pub fn from_toml_str_with_env(
        text: &str,
        source: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file = validate::file_label(source);
        let raw: raw::RawFile =
            toml::from_str(text).map_err(|e| ConfigError(format!("{file}: {}", e.to_string().trim_end())))?;
        validate::validate(raw, source, env)
    }

    /// Built-in defaults, used when no file is given: listen on 127.0.0.1:8080 in open
    /// mode, one `mock` provider and one default `mock` model, no keys, no channels.
    /// `CLAWGATE_IO` is not consulted; see [`Config::builtin_from_env`].
    pub fn builtin_default() -> Config {
        Config {
            server: ServerConfig::default(),
            keys: Vec::new(),
            providers: vec![builtin_mock_provider()],
            models: vec![builtin_mock_model()],
            channels: Vec::new(),
            sessions: SessionsConfig::default(),
            store: StoreConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            limits: LimitsConfig::default(),
            source: None,
        }
    }

    /// [`Config::builtin_default`] with the `CLAWGATE_IO` override applied from the
    /// process environment.
    pub fn builtin_from_env() -> Result<Config, ConfigError> {
        let mut config = Config::builtin_default();
        config.server.io = io_override(config.server.io, process_env(IO_ENV_VAR).as_deref())?;
        if let Some(log) = log_from_env(&process_env)? {
            config.log = log;
        }
        Ok(config)
    }

    /// The model flagged `default = true`, else the first model.
    pub fn default_model(&self) -> &ModelConfig {
        self.models.iter().find(|m| m.default).or_else(|| self.models.first()).unwrap_or(&FALLBACK_MODEL)
    }

    /// The model with this id.
    pub fn model(&self, id: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.id == id)
    }

    /// The provider with this name.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The channel with this name (enabled or not).
    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// True when no keys are configured: every request is let in (loopback only).
    pub fn open_mode(&self) -> bool {
        self.keys.is_empty()
    }
}
