//! `[[providers]]` validation: kind defaults, base URL, upstream API keys, extra
//! headers (checked against header injection even after `${ENV}` expansion),
//! timeouts, CA file and the mock table. Load time only.

use std::collections::HashMap;
use std::path::PathBuf;

use super::Ctx;
use crate::config::raw::RawProvider;
use crate::config::{ConfigError, MockConfig, ProviderConfig, ProviderKind, Secret};

/// Most upstream retries per request.
const MAX_RETRIES: u32 = 10;
/// Upstream headers the HTTP client owns; setting them by config would corrupt framing.
const RESERVED_HEADERS: [&str; 4] = ["host", "content-length", "transfer-encoding", "connection"];

/// Defaults of a provider of `kind`, before the file's keys are applied.
pub(in crate::config) fn provider_defaults(name: String, kind: ProviderKind) -> ProviderConfig {
    let base_url = match kind {
        ProviderKind::OpenAi => "https://api.openai.com/v1",
        ProviderKind::Anthropic => "https://api.anthropic.com",
        ProviderKind::Gemini => "https://generativelanguage.googleapis.com",
        ProviderKind::OpenAiCompat | ProviderKind::AzureOpenAi | ProviderKind::Mock => "",
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
        api_version: "2024-10-21".to_owned(),
        drop_unsupported_params: false,
        mock: MockConfig::default(),
    }
}

impl Ctx<'_> {
    pub(super) fn providers(&self, raws: Vec<RawProvider>) -> Result<Vec<ProviderConfig>, ConfigError> {
        let mut seen = HashMap::new();
        let mut out = Vec::with_capacity(raws.len());
        for (i, raw) in raws.into_iter().enumerate() {
            let p = format!("providers[{i}]");
            let provider = self.provider(&p, raw)?;
            if let Some(first) = seen.insert(provider.name.clone(), i) {
                return Err(self.err(
                    &format!("{p}.name"),
                    format!("duplicate provider name {:?} (also providers[{first}])", provider.name),
                ));
            }
            out.push(provider);
        }
        Ok(out)
    }

    fn provider(&self, p: &str, raw: RawProvider) -> Result<ProviderConfig, ConfigError> {
        let key = |field: &str| format!("{p}.{field}");
        let name = self.required(&key("name"), raw.name)?;
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
            return Err(self.err(&key("name"), format!("{name:?} must match [A-Za-z0-9_.-]+")));
        }
        let Some(kind_text) = self.opt_string(&key("kind"), raw.kind)? else {
            return Err(self.err(&key("kind"), format!("missing, expected {}", ProviderKind::CHOICES)));
        };
        let kind = ProviderKind::parse(&kind_text).ok_or_else(|| {
            self.err(&key("kind"), format!("unknown value {kind_text:?}, expected {}", ProviderKind::CHOICES))
        })?;
        let mut out = provider_defaults(name, kind);

        if let Some(url) = self.opt_string(&key("base_url"), raw.base_url)? {
            out.base_url = url.trim().trim_end_matches('/').to_owned();
        }
        if out.base_url.is_empty() && matches!(kind, ProviderKind::OpenAiCompat | ProviderKind::AzureOpenAi) {
            return Err(self.err(&key("base_url"), format!("required for kind = {:?}", kind.as_str())));
        }
        if let Some(v) = self.non_empty(&key("api_version"), raw.api_version)? {
            if !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(self.err(&key("api_version"), format!("{v:?} must match [A-Za-z0-9-]+")));
            }
            out.api_version = v;
        }
        if !out.base_url.is_empty() && !is_http_url(&out.base_url) {
            return Err(self
                .err(&key("base_url"), format!("{:?} must be an http:// or https:// URL with a host", out.base_url)));
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
        if out.api_keys.is_empty()
            && matches!(
                kind,
                ProviderKind::OpenAi | ProviderKind::Anthropic | ProviderKind::Gemini | ProviderKind::AzureOpenAi
            )
        {
            return Err(
                self.err(&key("api_key"), format!("required for kind = {:?} (api_key or api_keys)", kind.as_str()))
            );
        }

        for (h_name, h_value) in raw.headers.map(|h| h.0).unwrap_or_default() {
            let h_key = format!("{p}.headers.{h_name}");
            let value = self.expand(&h_key, &h_value)?;
            self.check_header(&h_key, &h_name, &value, &out.headers)?;
            out.headers.push((h_name, value));
        }

        out.connect_timeout_ms =
            self.ranged(&key("connect_timeout_ms"), raw.connect_timeout_ms, out.connect_timeout_ms, 1, None)?;
        out.first_byte_timeout_ms =
            self.ranged(&key("first_byte_timeout_ms"), raw.first_byte_timeout_ms, out.first_byte_timeout_ms, 1, None)?;
        out.request_timeout_ms =
            self.ranged(&key("request_timeout_ms"), raw.request_timeout_ms, out.request_timeout_ms, 1, None)?;
        out.chunk_timeout_ms =
            self.ranged(&key("chunk_timeout_ms"), raw.chunk_timeout_ms, out.chunk_timeout_ms, 1, None)?;
        out.max_retries = self.ranged(&key("max_retries"), raw.max_retries, out.max_retries, 0, Some(MAX_RETRIES))?;
        out.drop_unsupported_params = raw.drop_unsupported_params.unwrap_or(false);

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
                chunk_words: self.ranged(&key("mock.chunk_words"), mock.chunk_words, d.chunk_words, 1, None)?,
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
        if RESERVED_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Err(self.err(key, format!("{name} is set by the HTTP client and cannot be configured")));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(self.err(key, "value contains a control character (CR, LF, NUL...)"));
        }
        if earlier.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(self.err(key, format!("duplicate header {name} (names are case-insensitive)")));
        }
        Ok(())
    }
}

/// `http://` or `https://` followed by a host, no whitespace or control characters.
pub(super) fn is_http_url(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    matches!(rest, Some(r) if !r.is_empty() && !r.starts_with('/'))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}
