//! `[server.tls]` validation: `cert` and `key` are both given, non-empty, and resolved
//! against the config file's directory when relative. Whether the files hold a
//! usable chain and key is checked where they are read (`tls::Acceptor::load`, at
//! start-up, by `check-config` and on every SIGHUP), since they change without the
//! config changing.

use std::path::PathBuf;

use super::Ctx;
use crate::config::raw::RawTls;
use crate::config::{ConfigError, TlsConfig};

impl Ctx<'_> {
    /// The validated `[server.tls]`; `None` when the section is absent.
    pub(super) fn tls(&self, raw: Option<RawTls>) -> Result<Option<TlsConfig>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        let path = |key: &str, value: Option<String>| -> Result<PathBuf, ConfigError> {
            let Some(value) = self.non_empty(key, value)? else {
                return Err(self.err(key, "is required when [server.tls] is present (a PEM file)"));
            };
            let path = PathBuf::from(value.trim());
            Ok(match self.base_dir {
                Some(dir) if path.is_relative() => dir.join(path),
                _ => path,
            })
        };
        Ok(Some(TlsConfig { cert: path("server.tls.cert", raw.cert)?, key: path("server.tls.key", raw.key)? }))
    }
}
