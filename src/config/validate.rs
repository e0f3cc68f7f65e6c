//! Raw structs -> validated [`Config`]: `${ENV}` expansion, defaults, checks.
//!
//! [`validate`] walks the sections in dependency order (server, providers, models,
//! keys, channels, sessions) so that each cross reference is checked against a list
//! that is already valid, then applies the whole-file rules (built-in mock defaults,
//! open mode only on loopback). A [`Ctx`] carries the file label and the environment
//! lookup, and builds every error as `<key>: <problem> (in <file>)`. Load time only.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::expand::{expand, ExpandError};
use super::raw::{RawChannel, RawFile, RawKey, RawModel, RawProvider, RawServer, RawSessions};
use super::{
    builtin_mock_model, builtin_mock_provider, hash_key, io_override, AccessLog, ChannelConfig,
    ChannelKind, Config, ConfigError, IoMode, KeyConfig, MockConfig, ModelConfig, ProviderConfig,
    ProviderKind, Role, Secret, ServerConfig, SessionsConfig, IO_ENV_VAR,
};

/// Most worker threads accepted (a typo guard; real machines have far fewer cores).
const MAX_WORKERS: usize = 1024;
/// Most header lines accepted per request.
const MAX_HEADERS: usize = 1024;
/// Bounds of `server.max_header_bytes`.
const HEADER_BYTES_RANGE: (usize, usize) = (1024, 1_048_576);
/// Most upstream retries per request.
const MAX_RETRIES: u32 = 10;
/// Upstream headers the HTTP client owns; setting them by config would corrupt framing.
const RESERVED_HEADERS: [&str; 4] = ["host", "content-length", "transfer-encoding", "connection"];

/// How `source` is shown in messages.
pub(super) fn file_label(source: Option<&Path>) -> String {
    match source {
        Some(path) => path.display().to_string(),
        None => "<inline config>".to_owned(),
    }
}

/// Defaults of a provider of `kind`, before the file's keys are applied.
pub(super) fn provider_defaults(name: String, kind: ProviderKind) -> ProviderConfig {
    let base_url = match kind {
        ProviderKind::OpenAi => "https://api.openai.com/v1",
        ProviderKind::Anthropic => "https://api.anthropic.com",
        ProviderKind::OpenAiCompat | ProviderKind::Mock => "",
    };
    ProviderConfig {
        name,
        kind,
        base_url: base_url.to_owned(),
        api_keys: Vec::new(),
        headers: Vec::new(),
        connect_timeout_ms: 5_000,
        first_byte_timeout_ms: 60_000,
        request_timeout_ms: 300_000,
        chunk_timeout_ms: 60_000,
        max_retries: 2,
        ca_file: None,
        anthropic_version: "2023-06-01".to_owned(),
        mock: MockConfig::default(),
    }
}

/// Validates a parsed file. `env` serves `${VAR}` references and `CLAWGATE_IO`.
pub(super) fn validate(
    raw: RawFile,
    source: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let ctx = Ctx {
        file: file_label(source),
        env,
        base_dir: source.and_then(Path::parent),
    };
    let server = ctx.server(raw.server)?;

    let (providers, models) = if raw.providers.is_empty() && raw.models.is_empty() {
        (vec![builtin_mock_provider()], vec![builtin_mock_model()])
    } else {
        let providers = ctx.providers(raw.providers)?;
        if providers.is_empty() {
            return Err(ctx.err(
                "providers",
                "[[models]] are defined but no [[providers]] are",
            ));
        }
        if raw.models.is_empty() {
            return Err(ctx.err(
                "models",
                "[[providers]] are defined but no [[models]] use them",
            ));
        }
        let models = ctx.models(raw.models, &providers)?;
        (providers, models)
    };

    let keys = ctx.keys(raw.keys, &models)?;
    let channels = ctx.channels(raw.channels, &models)?;
    let sessions = ctx.sessions(raw.sessions)?;

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
            ExpandError::Unset(var) => {
                self.err(key, format!("environment variable {var} is not set"))
            }
            ExpandError::Unterminated => self.err(
                key,
                "unterminated ${ reference (write $${ for a literal ${)",
            ),
            ExpandError::BadName(name) => self.err(
                key,
                format!("${{{name}}} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"),
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
            Some(text) => parse(&text).ok_or_else(|| {
                self.err(key, format!("unknown value {text:?}, expected {choices}"))
            }),
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
            workers: self.ranged(
                "server.workers",
                raw.workers,
                d.workers,
                0,
                Some(MAX_WORKERS),
            )?,
            io,
            pin_workers: raw.pin_workers.unwrap_or(d.pin_workers),
            max_body_bytes: self.ranged(
                "server.max_body_bytes",
                raw.max_body_bytes,
                d.max_body_bytes,
                1,
                None,
            )?,
            max_header_bytes: self.ranged(
                "server.max_header_bytes",
                raw.max_header_bytes,
                d.max_header_bytes,
                hmin,
                Some(hmax),
            )?,
            max_headers: self.ranged(
                "server.max_headers",
                raw.max_headers,
                d.max_headers,
                1,
                Some(MAX_HEADERS),
            )?,
            header_timeout_ms: self.ranged(
                "server.header_timeout_ms",
                raw.header_timeout_ms,
                d.header_timeout_ms,
                1,
                None,
            )?,
            body_timeout_ms: self.ranged(
                "server.body_timeout_ms",
                raw.body_timeout_ms,
                d.body_timeout_ms,
                1,
                None,
            )?,
            idle_timeout_ms: self.ranged(
                "server.idle_timeout_ms",
                raw.idle_timeout_ms,
                d.idle_timeout_ms,
                1,
                None,
            )?,
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
            access_log: self.choice(
                "server.access_log",
                raw.access_log,
                AccessLog::parse,
                AccessLog::CHOICES,
                d.access_log,
            )?,
            health_detailed_admin_only: raw
                .health_detailed_admin_only
                .unwrap_or(d.health_detailed_admin_only),
        })
    }

    fn providers(&self, raws: Vec<RawProvider>) -> Result<Vec<ProviderConfig>, ConfigError> {
        let mut seen = HashMap::new();
        let mut out = Vec::with_capacity(raws.len());
        for (i, raw) in raws.into_iter().enumerate() {
            let p = format!("providers[{i}]");
            let provider = self.provider(&p, raw)?;
            if let Some(first) = seen.insert(provider.name.clone(), i) {
                return Err(self.err(
                    &format!("{p}.name"),
                    format!(
                        "duplicate provider name {:?} (also providers[{first}])",
                        provider.name
                    ),
                ));
            }
            out.push(provider);
        }
        Ok(out)
    }

    fn provider(&self, p: &str, raw: RawProvider) -> Result<ProviderConfig, ConfigError> {
        let key = |field: &str| format!("{p}.{field}");
        let name = self.required(&key("name"), raw.name)?;
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(self.err(&key("name"), format!("{name:?} must match [A-Za-z0-9_.-]+")));
        }
        let Some(kind_text) = self.opt_string(&key("kind"), raw.kind)? else {
            return Err(self.err(
                &key("kind"),
                format!("missing, expected {}", ProviderKind::CHOICES),
            ));
        };
        let kind = ProviderKind::parse(&kind_text).ok_or_else(|| {
            self.err(
                &key("kind"),
                format!(
                    "unknown value {kind_text:?}, expected {}",
                    ProviderKind::CHOICES
                ),
            )
        })?;
        let mut out = provider_defaults(name, kind);

        if let Some(url) = self.opt_string(&key("base_url"), raw.base_url)? {
            out.base_url = url.trim().trim_end_matches('/').to_owned();
        }
        if out.base_url.is_empty() && kind == ProviderKind::OpenAiCompat {
            return Err(self.err(&key("base_url"), "required for kind = \"openai_compat\""));
        }
        if !out.base_url.is_empty() && !is_http_url(&out.base_url) {
            return Err(self.err(
                &key("base_url"),
                format!(
                    "{:?} must be an http:// or https:// URL with a host",
                    out.base_url
                ),
            ));
        }

        if let Some(k) = self.non_empty(&key("api_key"), raw.api_key)? {
            out.api_keys.push(Secret::new(k));
        }
        for (j, k) in raw.api_keys.unwrap_or_default().into_iter().enumerate() {
            let k_key = format!("{p}.api_keys[{j}]");
            if let Some(k) = self.non_empty(&k_key, Some(k))? {
                out.api_keys.push(Secret::new(k));
            }
        }
        if out.api_keys.is_empty() && matches!(kind, ProviderKind::OpenAi | ProviderKind::Anthropic)
        {
            return Err(self.err(
                &key("api_key"),
                format!(
                    "required for kind = {:?} (api_key or api_keys)",
                    kind.as_str()
                ),
            ));
        }

        for (h_name, h_value) in raw.headers.map(|h| h.0).unwrap_or_default() {
            let h_key = format!("{p}.headers.{h_name}");
            let value = self.expand(&h_key, &h_value)?;
            self.check_header(&h_key, &h_name, &value, &out.headers)?;
            out.headers.push((h_name, value));
        }

        out.connect_timeout_ms = self.ranged(
            &key("connect_timeout_ms"),
            raw.connect_timeout_ms,
            out.connect_timeout_ms,
            1,
            None,
        )?;
        out.first_byte_timeout_ms = self.ranged(
            &key("first_byte_timeout_ms"),
            raw.first_byte_timeout_ms,
            out.first_byte_timeout_ms,
            1,
            None,
        )?;
        out.request_timeout_ms = self.ranged(
            &key("request_timeout_ms"),
            raw.request_timeout_ms,
            out.request_timeout_ms,
            1,
            None,
        )?;
        out.chunk_timeout_ms = self.ranged(
            &key("chunk_timeout_ms"),
            raw.chunk_timeout_ms,
            out.chunk_timeout_ms,
            1,
            None,
        )?;
        out.max_retries = self.ranged(
            &key("max_retries"),
            raw.max_retries,
            out.max_retries,
            0,
            Some(MAX_RETRIES),
        )?;

        if let Some(path) = self.non_empty(&key("ca_file"), raw.ca_file)? {
            let path = PathBuf::from(path.trim());
            out.ca_file = Some(match self.base_dir {
                Some(dir) if path.is_relative() => dir.join(path),
                _ => path,
            });
        }
        if let Some(version) = self.opt_string(&key("anthropic_version"), raw.anthropic_version)? {
            if version.trim().is_empty() {
                return Err(self.err(&key("anthropic_version"), "must not be empty"));
            }
            out.anthropic_version = version;
        }
        if let Some(mock) = raw.mock {
            if kind != ProviderKind::Mock {
                return Err(self.err(&key("mock"), "only valid with kind = \"mock\""));
            }
            let d = MockConfig::default();
            out.mock = MockConfig {
                chunk_delay_ms: mock.chunk_delay_ms.unwrap_or(d.chunk_delay_ms),
                chunk_words: self.ranged(
                    &key("mock.chunk_words"),
                    mock.chunk_words,
                    d.chunk_words,
                    1,
                    None,
                )?,
            };
        }
        Ok(out)
    }

    /// An upstream header: a token name, a value without control characters (no CR/LF
    /// injection, even through `${ENV}`), not one the HTTP client owns, no duplicates.
    fn check_header(
        &self,
        key: &str,
        name: &str,
        value: &str,
        earlier: &[(String, String)],
    ) -> Result<(), ConfigError> {
        let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(is_tchar) {
            return Err(self.err(key, format!("{name:?} is not a valid header name")));
        }
        if RESERVED_HEADERS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name))
        {
            return Err(self.err(
                key,
                format!("{name} is set by the HTTP client and cannot be configured"),
            ));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(self.err(key, "value contains a control character (CR, LF, NUL...)"));
        }
        if earlier.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(self.err(
                key,
                format!("duplicate header {name} (names are case-insensitive)"),
            ));
        }
        Ok(())
    }

    fn models(
        &self,
        raws: Vec<RawModel>,
        providers: &[ProviderConfig],
    ) -> Result<Vec<ModelConfig>, ConfigError> {
        let mut out: Vec<ModelConfig> = Vec::with_capacity(raws.len());
        for (i, raw) in raws.into_iter().enumerate() {
            let key = |field: &str| format!("models[{i}].{field}");
            let id = self.required(&key("id"), raw.id)?;
            if let Some(first) = out.iter().position(|m| m.id == id) {
                return Err(self.err(
                    &key("id"),
                    format!("duplicate model id {id:?} (also models[{first}])"),
                ));
            }
            let provider = self.required(&key("provider"), raw.provider)?;
            if !providers.iter().any(|p| p.name == provider) {
                return Err(self.err(
                    &key("provider"),
                    format!("unknown provider {provider:?}; not in [[providers]]"),
                ));
            }
            let upstream = match self.non_empty(&key("upstream"), raw.upstream)? {
                Some(u) => u,
                None => id.clone(),
            };
            let default = raw.default.unwrap_or(false);
            if default {
                if let Some(first) = out.iter().position(|m| m.default) {
                    return Err(self.err(
                        &key("default"),
                        format!("only one model may be default (models[{first}] already is)"),
                    ));
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
                    return Err(self.err(
                        &key("max_tokens"),
                        format!("{max} exceeds context_window ({window})"),
                    ));
                }
            }
            let mut fallbacks = Vec::new();
            for (j, f) in raw.fallbacks.unwrap_or_default().into_iter().enumerate() {
                fallbacks.push(self.expand(&format!("models[{i}].fallbacks[{j}]"), &f)?);
            }
            out.push(ModelConfig {
                id,
                provider,
                upstream,
                fallbacks,
                default,
                context_window: raw.context_window,
                max_tokens: raw.max_tokens,
            });
        }
        // Fallbacks may point forward, so they are checked once every id is known.
        for (i, model) in out.iter().enumerate() {
            let mut seen = HashSet::new();
            for (j, f) in model.fallbacks.iter().enumerate() {
                let key = format!("models[{i}].fallbacks[{j}]");
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
        Ok(out)
    }

    fn keys(
        &self,
        raws: Vec<RawKey>,
        models: &[ModelConfig],
    ) -> Result<Vec<KeyConfig>, ConfigError> {
        let mut out: Vec<KeyConfig> = Vec::with_capacity(raws.len());
        for (i, raw) in raws.into_iter().enumerate() {
            let key = |field: &str| format!("keys[{i}].{field}");
            let name = self.required(&key("name"), raw.name)?;
            if let Some(first) = out.iter().position(|k| k.name == name) {
                return Err(self.err(
                    &key("name"),
                    format!("duplicate key name {name:?} (also keys[{first}])"),
                ));
            }
            let (hash_field, key_sha256) = match (raw.key, raw.key_sha256) {
                (Some(_), Some(_)) => {
                    return Err(self.err(
                        &format!("keys[{i}]"),
                        "set either key or key_sha256, not both",
                    ));
                }
                (None, None) => {
                    return Err(self.err(&key("key"), "missing (set key or key_sha256)"))
                }
                (Some(k), None) => {
                    let k = self.required(&key("key"), Some(k))?;
                    ("key", hash_key(&k))
                }
                (None, Some(h)) => {
                    let h = self.required(&key("key_sha256"), Some(h))?;
                    let hash = decode_hex32(h.trim()).ok_or_else(|| {
                        self.err(&key("key_sha256"), "must be 64 hex digits (a SHA-256)")
                    })?;
                    ("key_sha256", hash)
                }
            };
            if let Some(first) = out.iter().position(|k| k.key_sha256 == key_sha256) {
                return Err(self.err(
                    &key(hash_field),
                    format!("same key as keys[{first}]; keys must be distinct"),
                ));
            }
            let role = self.choice(
                &key("role"),
                raw.role,
                Role::parse,
                Role::CHOICES,
                Role::User,
            )?;
            if raw.rpm == Some(0) {
                return Err(self.err(&key("rpm"), "must be at least 1 (omit it for no limit)"));
            }
            if raw.tpm == Some(0) {
                return Err(self.err(&key("tpm"), "must be at least 1 (omit it for no limit)"));
            }
            let allowed = match raw.models {
                None => None,
                Some(list) if list.is_empty() => {
                    return Err(self.err(
                        &key("models"),
                        "empty list allows no model; omit it to allow all",
                    ));
                }
                Some(list) => {
                    let mut ids = Vec::with_capacity(list.len());
                    for (j, id) in list.into_iter().enumerate() {
                        let m_key = format!("keys[{i}].models[{j}]");
                        let id = self.expand(&m_key, &id)?;
                        if !models.iter().any(|m| m.id == id) {
                            return Err(self
                                .err(&m_key, format!("unknown model {id:?}; not in [[models]]")));
                        }
                        ids.push(id);
                    }
                    Some(ids)
                }
            };
            out.push(KeyConfig {
                name,
                key_sha256,
                role,
                rpm: raw.rpm,
                tpm: raw.tpm,
                models: allowed,
            });
        }
        Ok(out)
    }

    fn channels(
        &self,
        raws: Vec<RawChannel>,
        models: &[ModelConfig],
    ) -> Result<Vec<ChannelConfig>, ConfigError> {
        let mut out: Vec<ChannelConfig> = Vec::with_capacity(raws.len());
        for (i, raw) in raws.into_iter().enumerate() {
            let key = |field: &str| format!("channels[{i}].{field}");
            let name = self.required(&key("name"), raw.name)?;
            if !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
            {
                return Err(self.err(&key("name"), format!("{name:?} must match [a-z0-9_-]+")));
            }
            if name == "api" {
                return Err(self.err(
                    &key("name"),
                    "\"api\" is reserved for the built-in API channel",
                ));
            }
            if let Some(first) = out.iter().position(|c| c.name == name) {
                return Err(self.err(
                    &key("name"),
                    format!("duplicate channel name {name:?} (also channels[{first}])"),
                ));
            }
            let Some(kind_text) = self.opt_string(&key("type"), raw.kind)? else {
                return Err(self.err(
                    &key("type"),
                    format!("missing, expected {}", ChannelKind::CHOICES),
                ));
            };
            let kind = ChannelKind::parse(&kind_text).ok_or_else(|| {
                self.err(
                    &key("type"),
                    format!(
                        "unknown value {kind_text:?}, expected {}",
                        ChannelKind::CHOICES
                    ),
                )
            })?;
            let enabled = raw.enabled.unwrap_or(true);
            let secret = self.non_empty(&key("secret"), raw.secret)?.map(Secret::new);
            let verify_token = self
                .non_empty(&key("verify_token"), raw.verify_token)?
                .map(Secret::new);
            let public_key = match self.non_empty(&key("public_key"), raw.public_key)? {
                None => None,
                Some(hex) => Some(decode_hex32(hex.trim()).ok_or_else(|| {
                    self.err(
                        &key("public_key"),
                        "must be 64 hex digits (an Ed25519 public key)",
                    )
                })?),
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
                    return Err(self.err(
                        &key("secret"),
                        "not used by discord, which verifies with public_key",
                    ));
                }
                if enabled && public_key.is_none() {
                    return Err(self.err(
                        &key("public_key"),
                        "required for an enabled discord channel",
                    ));
                }
            } else if enabled && secret.is_none() {
                return Err(self.err(
                    &key("secret"),
                    format!(
                        "required for an enabled {} channel (webhooks are verified with it)",
                        kind.as_str()
                    ),
                ));
            }
            let model = self.non_empty(&key("model"), raw.model)?;
            if let Some(id) = &model {
                if !models.iter().any(|m| m.id == *id) {
                    return Err(self.err(
                        &key("model"),
                        format!("unknown model {id:?}; not in [[models]]"),
                    ));
                }
            }
            let webhook_path = format!("/webhooks/{name}");
            out.push(ChannelConfig {
                name,
                kind,
                enabled,
                secret,
                verify_token,
                public_key,
                model,
                webhook_path,
            });
        }
        Ok(out)
    }

    fn sessions(&self, raw: RawSessions) -> Result<SessionsConfig, ConfigError> {
        let d = SessionsConfig::default();
        Ok(SessionsConfig {
            max_messages: self.ranged(
                "sessions.max_messages",
                raw.max_messages,
                d.max_messages,
                1,
                None,
            )?,
            max_bytes: self.ranged("sessions.max_bytes", raw.max_bytes, d.max_bytes, 1, None)?,
            idle_ttl_secs: self.ranged(
                "sessions.idle_ttl_secs",
                raw.idle_ttl_secs,
                d.idle_ttl_secs,
                1,
                None,
            )?,
        })
    }
}

/// `http://` or `https://` followed by a host, no whitespace or control characters.
fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    matches!(rest, Some(r) if !r.is_empty() && !r.starts_with('/'))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
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
