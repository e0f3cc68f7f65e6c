//! Raw structs -> validated [`Config`]: `${ENV}` expansion, defaults, checks.
//!
//! [`validate`] walks the sections in dependency order (server, providers, models,
//! keys, channels, sessions) so that each cross reference is checked against a list
//! that is already valid, then applies the whole-file rules (built-in mock defaults,
//! open mode only on loopback). A [`Ctx`] carries the file label and the environment
//! lookup, and builds every error as `<key>: <problem> (in <file>)`; the provider
//! checks live in `validate/providers.rs`. Load time only.

use std::collections::HashSet;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::expand::{expand, ExpandError};
use super::raw::{RawChannel, RawFile, RawKey, RawLimits, RawMetrics, RawModel, RawServer, RawSessions, RawStore};
use super::{
    builtin_mock_model, builtin_mock_provider, hash_key, io_override, AccessLog, ChannelConfig, ChannelKind, Config,
    ConfigError, Durability, IoMode, KeyConfig, LimitsConfig, ModelConfig, ProviderConfig, RedisFail, Role, Secret,
    ServerConfig, SessionScope, SessionsConfig, StoreBackend, StoreConfig, IO_ENV_VAR,
};
use super::{LogConfig, MetricsConfig};

mod cors;
mod providers;
mod tls;

pub(super) use providers::provider_defaults;

/// Most worker threads accepted (a typo guard; real machines have far fewer cores).
const MAX_WORKERS: usize = 1024;
/// Most header lines accepted per request.
const MAX_HEADERS: usize = 1024;
/// Largest `limits.lease_size` (a lease is also the per-worker error of a limit).
const MAX_LEASE_SIZE: u32 = 65_536;
/// Largest `limits.max_tracked_clients` (about 100 bytes each, per worker).
const MAX_TRACKED_CLIENTS: usize = 100_000_000;
/// Longest `server.lingering_close_ms`: a lingering socket holds a connection slot.
const MAX_LINGERING_CLOSE_MS: u64 = 60_000;
/// Longest `limits.auth_lockout_secs` (a week).
const MAX_AUTH_LOCKOUT_SECS: u64 = 604_800;
/// Bounds of `server.max_header_bytes`.
const HEADER_BYTES_RANGE: (usize, usize) = (1024, 1_048_576);

/// How `source` is shown in messages.
pub(super) fn file_label(source: Option<&Path>) -> String {
    match source {
        Some(path) => path.display().to_string(),
        None => "<inline config>".to_owned(),
    }
}

/// Validates a parsed file. `env` serves `${VAR}` references and `CLAWGATE_IO`.
pub(super) fn validate(
    raw: RawFile,
    source: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let ctx = Ctx { file: file_label(source), env, base_dir: source.and_then(Path::parent) };
    let server = ctx.server(raw.server)?;

    let (providers, models) = if raw.providers.is_empty() && raw.models.is_empty() {
        (vec![builtin_mock_provider()], vec![builtin_mock_model()])
    } else {
        let providers = ctx.providers(raw.providers)?;
        if providers.is_empty() {
            return Err(ctx.err("providers", "[[models]] are defined but no [[providers]] are"));
        }
        if raw.models.is_empty() {
            return Err(ctx.err("models", "[[providers]] are defined but no [[models]] use them"));
        }
        let models = ctx.models(raw.models, &providers)?;
        (providers, models)
    };

    let keys = ctx.keys(raw.keys, &models)?;
    let channels = ctx.channels(raw.channels, &models)?;
    let sessions = ctx.sessions(raw.sessions)?;
    let limits = ctx.limits(raw.limits)?;
    let store = ctx.store(raw.store)?;
    let log = match raw.log.level {
        None => LogConfig::default(),
        Some(spec) => LogConfig::parse(&spec, false).map_err(|e| ctx.err("log.level", e))?,
    };
    // The environment wins over the file, like CLAWGATE_IO.
    let log = super::log_from_env(ctx.env)?.unwrap_or(log);
    let metrics = ctx.metrics(raw.metrics)?;
    if let Some(addr) = metrics.listen {
        if addr == server.listen && addr.port() != 0 {
            return Err(ctx.err("metrics.listen", format!("{addr} is server.listen; give /metrics its own address")));
        }
    }

    if keys.is_empty() && !server.listen.ip().to_canonical().is_loopback() {
        return Err(ConfigError(format!(
            "no [[keys]] configured: open mode is only allowed on a loopback listen address \
             (server.listen = {}) (in {})",
            server.listen, ctx.file
        )));
    }

    Ok(Config {
        server,
        keys,
        providers,
        models,
        channels,
        sessions,
        store,
        log,
        metrics,
        limits,
        source: source.map(Path::to_path_buf),
    })
}

/// Validation context: file label for messages, environment lookup, base directory.
struct Ctx<'a> {
    file: String,
    env: &'a dyn Fn(&str) -> Option<String>,
    base_dir: Option<&'a Path>,
}

impl Ctx<'_> {
    fn err(&self, key: &str, problem: impl Display) -> ConfigError {
        ConfigError(format!("{key}: {problem} (in {})", self.file))
    }

    /// Expands `${VAR}` references in the value of `key`.
    fn expand(&self, key: &str, value: &str) -> Result<String, ConfigError> {
        expand(value, self.env).map_err(|e| match e {
            ExpandError::Unset(var) => self.err(key, format!("environment variable {var} is not set")),
            ExpandError::Unterminated => self.err(key, "unterminated ${ reference (write $${ for a literal ${)"),
            ExpandError::BadName(name) => {
                self.err(key, format!("${{{name}}} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"))
            }
            ExpandError::BareName(name) => self.err(
                key,
                format!("\"${name}\" is not expanded: write \"${{{name}}}\" to read the environment variable {name}"),
            ),
        })
    }

    fn opt_string(&self, key: &str, value: Option<String>) -> Result<Option<String>, ConfigError> {
        value.map(|v| self.expand(key, &v)).transpose()
    }

    /// A required string: present and non-empty after expansion.
    fn required(&self, key: &str, value: Option<String>) -> Result<String, ConfigError> {
        match self.opt_string(key, value)? {
            None => Err(self.err(key, "missing")),
            Some(v) if v.trim().is_empty() => Err(self.err(key, "must not be empty")),
            Some(v) => Ok(v),
        }
    }

    /// An optional string that, when present, must be non-empty after expansion.
    fn non_empty(&self, key: &str, value: Option<String>) -> Result<Option<String>, ConfigError> {
        match self.opt_string(key, value)? {
            Some(v) if v.trim().is_empty() => Err(self.err(key, "must not be empty")),
            other => Ok(other),
        }
    }

    /// One of a fixed set of spellings, with a default when absent.
    fn choice<T>(
        &self,
        key: &str,
        value: Option<String>,
        parse: fn(&str) -> Option<T>,
        choices: &str,
        default: T,
    ) -> Result<T, ConfigError> {
        match self.opt_string(key, value)? {
            None => Ok(default),
            Some(text) => {
                parse(&text).ok_or_else(|| self.err(key, format!("unknown value {text:?}, expected {choices}")))
            }
        }
    }

    /// A number within `min..=max`, with a default when absent.
    fn ranged<T: PartialOrd + Display + Copy>(
        &self,
        key: &str,
        value: Option<T>,
        default: T,
        min: T,
        max: Option<T>,
    ) -> Result<T, ConfigError> {
        let v = value.unwrap_or(default);
        if v < min {
            return Err(self.err(key, format!("must be at least {min} (got {v})")));
        }
        match max {
            Some(max) if v > max => Err(self.err(key, format!("must be at most {max} (got {v})"))),
            _ => Ok(v),
        }
    }

    fn server(&self, raw: RawServer) -> Result<ServerConfig, ConfigError> {
        let d = ServerConfig::default();
        let listen = match self.opt_string("server.listen", raw.listen)? {
            None => d.listen,
            Some(text) => text.trim().parse::<SocketAddr>().map_err(|_| {
                self.err(
                    "server.listen",
                    format!(
                        "invalid address {text:?}: expected an IP:port literal such as \
                         127.0.0.1:8080 or [::1]:8080 (host names are not resolved)"
                    ),
                )
            })?,
        };
        let io = self.choice("server.io", raw.io, IoMode::parse, IoMode::CHOICES, d.io)?;
        let env_io = (self.env)(IO_ENV_VAR);
        let io = io_override(io, env_io.as_deref())?;
        let (hmin, hmax) = HEADER_BYTES_RANGE;
        Ok(ServerConfig {
            listen,
            workers: self.ranged("server.workers", raw.workers, d.workers, 0, Some(MAX_WORKERS))?,
            io,
            pin_workers: raw.pin_workers.unwrap_or(d.pin_workers),
            max_body_bytes: self.ranged("server.max_body_bytes", raw.max_body_bytes, d.max_body_bytes, 1, None)?,
            max_header_bytes: self.ranged(
                "server.max_header_bytes",
                raw.max_header_bytes,
                d.max_header_bytes,
                hmin,
                Some(hmax),
            )?,
            max_headers: self.ranged("server.max_headers", raw.max_headers, d.max_headers, 1, Some(MAX_HEADERS))?,
            header_timeout_ms: self.ranged(
                "server.header_timeout_ms",
                raw.header_timeout_ms,
                d.header_timeout_ms,
                1,
                None,
            )?,
            body_timeout_ms: self.ranged("server.body_timeout_ms", raw.body_timeout_ms, d.body_timeout_ms, 1, None)?,
            idle_timeout_ms: self.ranged("server.idle_timeout_ms", raw.idle_timeout_ms, d.idle_timeout_ms, 1, None)?,
            write_timeout_ms: self.ranged(
                "server.write_timeout_ms",
                raw.write_timeout_ms,
                d.write_timeout_ms,
                1,
                None,
            )?,
            max_connections_per_worker: self.ranged(
                "server.max_connections_per_worker",
                raw.max_connections_per_worker,
                d.max_connections_per_worker,
                1,
                None,
            )?,
            shutdown_timeout_ms: raw.shutdown_timeout_ms.unwrap_or(d.shutdown_timeout_ms),
            drain_delay_ms: self.ranged(
                "server.drain_delay_ms",
                raw.drain_delay_ms,
                d.drain_delay_ms,
                0,
                Some(600_000),
            )?,
            access_log: self.choice(
                "server.access_log",
                raw.access_log,
                AccessLog::parse,
                AccessLog::CHOICES,
                d.access_log,
            )?,
            health_detailed_admin_only: raw.health_detailed_admin_only.unwrap_or(d.health_detailed_admin_only),
            ws_auth_timeout_ms: self.ranged(
                "server.ws_auth_timeout_ms",
                raw.ws_auth_timeout_ms,
                d.ws_auth_timeout_ms,
                1,
                None,
            )?,
            ws_ping_interval_ms: self.ranged(
                "server.ws_ping_interval_ms",
                raw.ws_ping_interval_ms,
                d.ws_ping_interval_ms,
                1,
                None,
            )?,
            ws_pong_timeout_ms: self.ranged(
                "server.ws_pong_timeout_ms",
                raw.ws_pong_timeout_ms,
                d.ws_pong_timeout_ms,
                1,
                None,
            )?,
            ws_max_frame_bytes: self.ranged(
                "server.ws_max_frame_bytes",
                raw.ws_max_frame_bytes,
                d.ws_max_frame_bytes,
                16,
                None,
            )?,
            ws_max_message_bytes: self.ranged(
                "server.ws_max_message_bytes",
                raw.ws_max_message_bytes,
                d.ws_max_message_bytes,
                16,
                None,
            )?,
            ws_max_auth_frame_bytes: self.ranged(
                "server.ws_max_auth_frame_bytes",
                raw.ws_max_auth_frame_bytes,
                d.ws_max_auth_frame_bytes,
                256,
                None,
            )?,
            max_json_depth: self.ranged(
                "server.max_json_depth",
                raw.max_json_depth,
                d.max_json_depth,
                8,
                Some(4096),
            )?,
            ws_send_buffer_bytes: self.ranged(
                "server.ws_send_buffer_bytes",
                raw.ws_send_buffer_bytes,
                d.ws_send_buffer_bytes,
                1024,
                None,
            )?,
            ws_max_turns_per_socket: self.ranged(
                "server.ws_max_turns_per_socket",
                raw.ws_max_turns_per_socket,
                d.ws_max_turns_per_socket,
                1,
                None,
            )?,
            ws_status_interval_ms: self.ranged(
                "server.ws_status_interval_ms",
                raw.ws_status_interval_ms,
                d.ws_status_interval_ms,
                100,
                None,
            )?,
            sse_resume_buffer_bytes: self.ranged(
                "server.sse_resume_buffer_bytes",
                raw.sse_resume_buffer_bytes,
                d.sse_resume_buffer_bytes,
                1024,
                None,
            )?,
            sse_resume_window_ms: self.ranged(
                "server.sse_resume_window_ms",
                raw.sse_resume_window_ms,
                d.sse_resume_window_ms,
                1,
                None,
            )?,
            sse_max_buffered_turns: self.ranged(
                "server.sse_max_buffered_turns",
                raw.sse_max_buffered_turns,
                d.sse_max_buffered_turns,
                1,
                None,
            )?,
            lingering_close_ms: self.ranged(
                "server.lingering_close_ms",
                raw.lingering_close_ms,
                d.lingering_close_ms,
                0,
                Some(MAX_LINGERING_CLOSE_MS),
            )?,
            lingering_close_bytes: self.ranged(
                "server.lingering_close_bytes",
                raw.lingering_close_bytes,
                d.lingering_close_bytes,
                0,
                None,
            )?,
            max_reply_bytes: self.ranged(
                "server.max_reply_bytes",
                raw.max_reply_bytes,
                d.max_reply_bytes,
                1024,
                None,
            )?,
            max_memory_mb: self.ranged("server.max_memory_mb", raw.max_memory_mb, d.max_memory_mb, 0, None)?,
            upstream_body_budget_mb: self.ranged(
                "server.upstream_body_budget_mb",
                raw.upstream_body_budget_mb,
                d.upstream_body_budget_mb,
                0,
                Some(1 << 20),
            )?,
            proxy_protocol: raw.proxy_protocol.unwrap_or(d.proxy_protocol),
            trusted_proxies: self.cidrs("server.trusted_proxies", raw.trusted_proxies.unwrap_or_default())?,
            cors: self.cors(raw.cors)?,
            tls: self.tls(raw.tls)?,
        })
    }

    fn models(&self, raws: Vec<RawModel>, providers: &[ProviderConfig]) -> Result<Vec<ModelConfig>, ConfigError> {
        let mut out: Vec<ModelConfig> = Vec::with_capacity(raws.len());
        for (i, raw) in raws.into_iter().enumerate() {
            let key = |field: &str| format!("models[{i}].{field}");
            let id = self.required(&key("id"), raw.id)?;
            if let Some(first) = out.iter().position(|m| m.id == id) {
                return Err(self.err(&key("id"), format!("duplicate model id {id:?} (also models[{first}])")));
            }
            let provider = self.required(&key("provider"), raw.provider)?;
            if !providers.iter().any(|p| p.name == provider) {
                return Err(self.err(&key("provider"), format!("unknown provider {provider:?}; not in [[providers]]")));
            }
            let upstream = match self.non_empty(&key("upstream"), raw.upstream)? {
                Some(u) => u,
                None => id.clone(),
            };
            let default = raw.default.unwrap_or(false);
            if default {
                if let Some(first) = out.iter().position(|m| m.default) {
                    return Err(self
                        .err(&key("default"), format!("only one model may be default (models[{first}] already is)")));
                }
            }
            if raw.context_window == Some(0) {
                return Err(self.err(&key("context_window"), "must be at least 1"));
            }
            if raw.max_tokens == Some(0) {
                return Err(self.err(&key("max_tokens"), "must be at least 1"));
            }
            if let (Some(window), Some(max)) = (raw.context_window, raw.max_tokens) {
                if max > window {
                    return Err(self.err(&key("max_tokens"), format!("{max} exceeds context_window ({window})")));
                }
            }
            let mut fallbacks = Vec::new();
            for (j, f) in raw.fallbacks.unwrap_or_default().into_iter().enumerate() {
                fallbacks.push(self.expand(&format!("models[{i}].fallbacks[{j}]"), &f)?);
            }
            let mut context_window_fallbacks = Vec::new();
            for (j, f) in raw.context_window_fallbacks.unwrap_or_default().into_iter().enumerate() {
                context_window_fallbacks.push(self.expand(&format!("models[{i}].context_window_fallbacks[{j}]"), &f)?);
            }
            out.push(ModelConfig {
                id,
                provider,
                upstream,
                fallbacks,
                context_window_fallbacks,
                default,
                context_window: raw.context_window,
                max_tokens: raw.max_tokens,
                drop_unsupported_params: raw.drop_unsupported_params.unwrap_or(false),
            });
        }
        // Fallbacks may point forward, so they are checked once every id is known.
        for (i, model) in out.iter().enumerate() {
            let lists =
                [("fallbacks", &model.fallbacks), ("context_window_fallbacks", &model.context_window_fallbacks)];
            for (list, ids) in lists {
                let mut seen = HashSet::new();
                for (j, f) in ids.iter().enumerate() {
                    let key = format!("models[{i}].{list}[{j}]");
                    if *f == model.id {
                        return Err(self.err(&key, format!("model {f:?} cannot fall back to itself")));
                    }
                    if !out.iter().any(|m| m.id == *f) {
                        return Err(self.err(&key, format!("unknown model {f:?}; not in [[models]]")));
                    }
                    if !seen.insert(f.as_str()) {
                        return Err(self.err(&key, format!("model {f:?} is listed twice")));
                    }
                }
            }
        }
        Ok(out)
    }

    fn keys(&self, raws: Vec<RawKey>, models: &[ModelConfig]) -> Result<Vec<KeyConfig>, ConfigError> {
        let mut out: Vec<KeyConfig> = Vec::with_capacity(raws.len());
        for (i, raw) in raws.into_iter().enumerate() {
            let key = |field: &str| format!("keys[{i}].{field}");
            let name = self.required(&key("name"), raw.name)?;
            if let Some(first) = out.iter().position(|k| k.name == name) {
                return Err(self.err(&key("name"), format!("duplicate key name {name:?} (also keys[{first}])")));
            }
            let (hash_field, key_sha256) = match (raw.key, raw.key_sha256) {
                (Some(_), Some(_)) => {
                    return Err(self.err(&format!("keys[{i}]"), "set either key or key_sha256, not both"));
                }
                (None, None) => return Err(self.err(&key("key"), "missing (set key or key_sha256)")),
                (Some(k), None) => {
                    let k = self.required(&key("key"), Some(k))?;
                    ("key", hash_key(&k))
                }
                (None, Some(h)) => {
                    let h = self.required(&key("key_sha256"), Some(h))?;
                    let hash = decode_hex32(h.trim())
                        .ok_or_else(|| self.err(&key("key_sha256"), "must be 64 hex digits (a SHA-256)"))?;
                    ("key_sha256", hash)
                }
            };
            if let Some(first) = out.iter().position(|k| k.key_sha256 == key_sha256) {
                return Err(self.err(&key(hash_field), format!("same key as keys[{first}]; keys must be distinct")));
            }
            let role = self.choice(&key("role"), raw.role, Role::parse, Role::CHOICES, Role::User)?;
            if raw.rpm == Some(0) {
                return Err(self.err(&key("rpm"), "must be at least 1 (omit it for no limit)"));
            }
            if raw.tpm == Some(0) {
                return Err(self.err(&key("tpm"), "must be at least 1 (omit it for no limit)"));
            }
            let allowed = match raw.models {
                None => None,
                Some(list) if list.is_empty() => {
                    return Err(self.err(&key("models"), "empty list allows no model; omit it to allow all"));
                }
                Some(list) => {
                    let mut ids = Vec::with_capacity(list.len());
                    for (j, id) in list.into_iter().enumerate() {
                        let m_key = format!("keys[{i}].models[{j}]");
                        let id = self.expand(&m_key, &id)?;
                        if !models.iter().any(|m| m.id == id) {
                            return Err(self.err(&m_key, format!("unknown model {id:?}; not in [[models]]")));
                        }
                        ids.push(id);
                    }
                    Some(ids)
                }
            };
            out.push(KeyConfig { name, key_sha256, role, rpm: raw.rpm, tpm: raw.tpm, models: allowed });
        }
        Ok(out)
    }

    fn channels(&self, raws: Vec<RawChannel>, models: &[ModelConfig]) -> Result<Vec<ChannelConfig>, ConfigError> {
        let mut out: Vec<ChannelConfig> = Vec::with_capacity(raws.len());
        for (i, raw) in raws.into_iter().enumerate() {
            let key = |field: &str| format!("channels[{i}].{field}");
            let name = self.required(&key("name"), raw.name)?;
            if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
                return Err(self.err(&key("name"), format!("{name:?} must match [a-z0-9_-]+")));
            }
            if name == "api" {
                return Err(self.err(&key("name"), "\"api\" is reserved for the built-in API channel"));
            }
            if let Some(first) = out.iter().position(|c| c.name == name) {
                return Err(self.err(&key("name"), format!("duplicate channel name {name:?} (also channels[{first}])")));
            }
            let Some(kind_text) = self.opt_string(&key("type"), raw.kind)? else {
                return Err(self.err(&key("type"), format!("missing, expected {}", ChannelKind::CHOICES)));
            };
            let kind = ChannelKind::parse(&kind_text).ok_or_else(|| {
                self.err(&key("type"), format!("unknown value {kind_text:?}, expected {}", ChannelKind::CHOICES))
            })?;
            let enabled = raw.enabled.unwrap_or(true);
            let secret = self.non_empty(&key("secret"), raw.secret)?.map(Secret::new);
            let verify_token = self.non_empty(&key("verify_token"), raw.verify_token)?.map(Secret::new);
            let public_key = match self.non_empty(&key("public_key"), raw.public_key)? {
                None => None,
                Some(hex) => Some(
                    decode_hex32(hex.trim())
                        .ok_or_else(|| self.err(&key("public_key"), "must be 64 hex digits (an Ed25519 public key)"))?,
                ),
            };
            let type_is = |what: &str| format!("only valid with type = {what:?}");
            if verify_token.is_some() && kind != ChannelKind::WhatsApp {
                return Err(self.err(&key("verify_token"), type_is("whatsapp")));
            }
            if public_key.is_some() && kind != ChannelKind::Discord {
                return Err(self.err(&key("public_key"), type_is("discord")));
            }
            if kind == ChannelKind::Discord {
                if secret.is_some() {
                    return Err(self.err(&key("secret"), "not used by discord, which verifies with public_key"));
                }
                if enabled && public_key.is_none() {
                    return Err(self.err(&key("public_key"), "required for an enabled discord channel"));
                }
            } else if enabled && secret.is_none() {
                return Err(self.err(
                    &key("secret"),
                    format!("required for an enabled {} channel (webhooks are verified with it)", kind.as_str()),
                ));
            }
            let model = self.non_empty(&key("model"), raw.model)?;
            if let Some(id) = &model {
                if !models.iter().any(|m| m.id == *id) {
                    return Err(self.err(&key("model"), format!("unknown model {id:?}; not in [[models]]")));
                }
            }
            let bot_token = self.non_empty(&key("bot_token"), raw.bot_token)?.map(Secret::new);
            if bot_token.is_some() && matches!(kind, ChannelKind::Discord | ChannelKind::Generic) {
                return Err(self.err(
                    &key("bot_token"),
                    "only valid with type = \"telegram\", \"slack\" or \"whatsapp\" (discord replies with the \
                     interaction's own token; generic signs with its secret)",
                ));
            }
            let api_base = match self.non_empty(&key("api_base"), raw.api_base)? {
                Some(url) if !providers::is_http_url(&url) => {
                    return Err(self.err(&key("api_base"), format!("{url:?} must be an http:// or https:// URL")))
                }
                Some(url) => url.trim_end_matches('/').to_string(),
                None => kind.default_api_base().to_string(),
            };
            let callback_url = self.non_empty(&key("callback_url"), raw.callback_url)?;
            if let Some(url) = &callback_url {
                if kind != ChannelKind::Generic {
                    return Err(self.err(&key("callback_url"), type_is("generic")));
                }
                if !providers::is_http_url(url) {
                    return Err(self.err(&key("callback_url"), format!("{url:?} must be an http:// or https:// URL")));
                }
            }
            let session_scope = self.choice(
                &key("session_scope"),
                raw.session_scope,
                SessionScope::parse,
                SessionScope::CHOICES,
                SessionScope::Chat,
            )?;
            let webhook_path = format!("/webhooks/{name}");
            out.push(ChannelConfig {
                name,
                kind,
                enabled,
                secret,
                verify_token,
                public_key,
                model,
                bot_token,
                api_base,
                callback_url,
                session_scope,
                webhook_path,
            });
        }
        Ok(out)
    }

    fn sessions(&self, raw: RawSessions) -> Result<SessionsConfig, ConfigError> {
        let d = SessionsConfig::default();
        Ok(SessionsConfig {
            max_messages: self.ranged("sessions.max_messages", raw.max_messages, d.max_messages, 1, None)?,
            max_bytes: self.ranged("sessions.max_bytes", raw.max_bytes, d.max_bytes, 1, None)?,
            idle_ttl_secs: self.ranged("sessions.idle_ttl_secs", raw.idle_ttl_secs, d.idle_ttl_secs, 1, None)?,
            max_sessions: self.ranged("sessions.max_sessions", raw.max_sessions, d.max_sessions, 1, None)?,
            retention_days: self.ranged("sessions.retention_days", raw.retention_days, d.retention_days, 0, None)?,
        })
    }

    /// CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single addresses (`192.0.2.7`).
    fn cidrs(&self, key: &str, list: Vec<String>) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        list.iter()
            .map(|text| {
                let t = text.trim();
                t.parse::<ipnet::IpNet>()
                    .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| self.err(key, format!("{text:?} is not a CIDR (10.0.0.0/8) or an IP address")))
            })
            .collect()
    }

    fn metrics(&self, raw: RawMetrics) -> Result<MetricsConfig, ConfigError> {
        let listen = match self.opt_string("metrics.listen", raw.listen)?.filter(|s| !s.trim().is_empty()) {
            None => None,
            Some(text) => Some(text.trim().parse::<SocketAddr>().map_err(|_| {
                self.err("metrics.listen", format!("invalid address {text:?}: expected \"\" or an IP:port literal"))
            })?),
        };
        Ok(MetricsConfig { enabled: raw.enabled.unwrap_or(true), listen })
    }

    fn store(&self, raw: RawStore) -> Result<StoreConfig, ConfigError> {
        let d = StoreConfig::default();
        let backend =
            self.choice("store.backend", raw.backend, StoreBackend::parse, StoreBackend::CHOICES, d.backend)?;
        if backend == StoreBackend::Redis {
            return Err(self.err(
                "store.backend",
                "\"redis\" is not available in this build yet (several instances sharing sessions come with \
                 the scale-out work); use \"sqlite\" or \"memory\"",
            ));
        }
        let path = self.non_empty("store.path", raw.path)?.map_or(d.path, PathBuf::from);
        let url = self.non_empty("store.url", raw.url)?;
        if let Some(u) = &url {
            if !u.starts_with("redis://") && !u.starts_with("rediss://") {
                return Err(self.err("store.url", format!("{u:?} is not a redis:// or rediss:// URL")));
            }
        }
        Ok(StoreConfig {
            backend,
            path,
            url,
            key_prefix: self.opt_string("store.key_prefix", raw.key_prefix)?.unwrap_or(d.key_prefix),
            durability: self.choice(
                "store.durability",
                raw.durability,
                Durability::parse,
                Durability::CHOICES,
                d.durability,
            )?,
            redis_fail: self.choice(
                "store.redis_fail",
                raw.redis_fail,
                RedisFail::parse,
                RedisFail::CHOICES,
                d.redis_fail,
            )?,
        })
    }
}

impl Ctx<'_> {
    fn limits(&self, raw: RawLimits) -> Result<LimitsConfig, ConfigError> {
        let d = LimitsConfig::default();
        let limit = |key: &str, v: Option<u32>| match v {
            Some(0) => Err(self.err(key, "must be at least 1 (omit it for no limit)")),
            other => Ok(other),
        };
        Ok(LimitsConfig {
            rpm: limit("limits.rpm", raw.rpm)?,
            tpm: match raw.tpm {
                Some(0) => return Err(self.err("limits.tpm", "must be at least 1 (omit it for no limit)")),
                other => other,
            },
            ip_rpm: limit("limits.ip_rpm", raw.ip_rpm)?,
            ws_connects_per_minute_per_ip: limit(
                "limits.ws_connects_per_minute_per_ip",
                raw.ws_connects_per_minute_per_ip,
            )?,
            ws_messages_per_minute: limit("limits.ws_messages_per_minute", raw.ws_messages_per_minute)?,
            lease_size: self.ranged("limits.lease_size", raw.lease_size, d.lease_size, 1, Some(MAX_LEASE_SIZE))?,
            max_tracked_clients: self.ranged(
                "limits.max_tracked_clients",
                raw.max_tracked_clients,
                d.max_tracked_clients,
                1,
                Some(MAX_TRACKED_CLIENTS),
            )?,
            completion_reserve_tokens: self.ranged(
                "limits.completion_reserve_tokens",
                raw.completion_reserve_tokens,
                d.completion_reserve_tokens,
                1,
                None,
            )?,
            auth_failures_per_minute: raw.auth_failures_per_minute.unwrap_or(d.auth_failures_per_minute),
            auth_lockout_secs: self.ranged(
                "limits.auth_lockout_secs",
                raw.auth_lockout_secs,
                d.auth_lockout_secs,
                1,
                Some(MAX_AUTH_LOCKOUT_SECS),
            )?,
        })
    }
}

/// Decodes exactly 64 hex digits (either case) into 32 bytes.
fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let hi = char::from(*pair.first()?).to_digit(16)?;
        let lo = char::from(*pair.get(1)?).to_digit(16)?;
        *byte = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}
