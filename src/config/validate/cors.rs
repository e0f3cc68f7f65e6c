//! `[server.cors]` validation: each `allow_origins` entry is `"*"` or an origin as a
//! browser serialises it in the `Origin` header, `scheme://host[:port]`: no path (not
//! even a trailing `/`), no query, no user info, nothing that could never match.
//! Stored in lowercase. An empty list is CORS off. Load time only.

use super::Ctx;
use crate::config::raw::RawCors;
use crate::config::{ConfigError, CorsConfig};

impl Ctx<'_> {
    /// The validated `[server.cors]`; `None` when absent or its list is empty.
    pub(super) fn cors(&self, raw: Option<RawCors>) -> Result<Option<CorsConfig>, ConfigError> {
        let list = raw.and_then(|r| r.allow_origins).unwrap_or_default();
        let mut out = CorsConfig { allow_origins: Vec::with_capacity(list.len()), any_origin: false };
        for (i, entry) in list.into_iter().enumerate() {
            let key = format!("server.cors.allow_origins[{i}]");
            let value = self.expand(&key, &entry)?;
            let value = value.trim();
            if value == "*" {
                out.any_origin = true;
                continue;
            }
            check_origin(value).map_err(|problem| self.err(&key, format!("{value:?}: {problem}")))?;
            let origin = value.to_ascii_lowercase();
            if !out.allow_origins.contains(&origin) {
                out.allow_origins.push(origin);
            }
        }
        Ok((out.any_origin || !out.allow_origins.is_empty()).then_some(out))
    }
}

/// Why `value` can never equal a browser's `Origin` header, if it cannot.
fn check_origin(value: &str) -> Result<(), String> {
    const SHAPE: &str = "an origin is scheme://host[:port], such as \"https://app.example.com\" or \
                         \"http://localhost:5173\", or \"*\" for any origin";
    if value.eq_ignore_ascii_case("null") {
        return Err("the opaque origin `null` (sandboxed frames, file:// pages) cannot be allowed".into());
    }
    let Some((scheme, rest)) = value.split_once("://") else { return Err(SHAPE.into()) };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(format!("scheme {scheme:?} is not a URL scheme; {SHAPE}"));
    }
    if rest.ends_with('/') {
        return Err(format!("an origin has no path, not even a trailing `/`: write {:?}", value.trim_end_matches('/')));
    }
    if let Some(c) = rest.chars().find(|c| matches!(c, '/' | '?' | '#' | '@' | '*') || c.is_whitespace()) {
        return Err(format!("{c:?} cannot appear in an origin (no path, query, user info or wildcard); {SHAPE}"));
    }
    let host = match rest.rsplit_once(':') {
        // `[::1]:8080` or `host:8080`; a bare IPv6 literal `[::1]` has its `:` inside brackets.
        Some((host, port)) if !port.contains(']') => {
            if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) || port.parse::<u16>().is_err() {
                return Err(format!("port {port:?} is not a port number; {SHAPE}"));
            }
            host
        }
        _ => rest,
    };
    if host.is_empty() {
        return Err(format!("the host is missing; {SHAPE}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_as_browsers_send_them_pass() {
        for ok in [
            "https://app.example.com",
            "http://localhost:5173",
            "http://127.0.0.1:8080",
            "http://[::1]:3000",
            "https://[::1]",
            "chrome-extension://abcdefghijklmnop",
        ] {
            assert_eq!(check_origin(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn what_could_never_match_is_refused_with_the_reason() {
        assert!(check_origin("https://app.example.com/").unwrap_err().contains("\"https://app.example.com\""));
        for bad in [
            "app.example.com",
            "https://app.example.com/path",
            "https://*.example.com",
            "https://user@host",
            "https://host:port",
            "https://host:99999",
            "https://",
            "1http://host",
            "null",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }
}
