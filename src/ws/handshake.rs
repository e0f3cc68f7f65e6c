//! The server side of the RFC 6455 opening handshake, on our own request type (the
//! connection loop already parsed the head with `httparse`). `accept_key` checks the
//! upgrade headers and derives `Sec-WebSocket-Accept` with the library's
//! `derive_accept_key` (SHA-1 + base64); `ws::upgrade` turns it into the `101`.
//! Runs once per socket; costs one SHA-1 of 60 bytes.

use monoio_tungstenite::handshake::derive_accept_key;

use crate::error::ApiError;
use crate::http::{Method, Request};

/// Validates a WebSocket upgrade request and returns the `Sec-WebSocket-Accept` value.
pub fn accept_key(req: &Request) -> Result<String, ApiError> {
    if req.method != Method::Get || req.minor < 1 {
        return Err(ApiError::invalid("a WebSocket upgrade must be an HTTP/1.1 GET"));
    }
    if !req.header_has_token("connection", "upgrade") || !req.header_has_token("upgrade", "websocket") {
        return Err(ApiError::invalid("expected a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)"));
    }
    if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(ApiError::invalid("unsupported WebSocket version; Sec-WebSocket-Version must be 13"));
    }
    let key =
        req.header("sec-websocket-key").map(str::trim).ok_or_else(|| ApiError::invalid("missing Sec-WebSocket-Key"))?;
    if !valid_key(key) {
        return Err(ApiError::invalid("Sec-WebSocket-Key must be 16 bytes in base64"));
    }
    Ok(derive_accept_key(key.as_bytes()))
}

/// A base64 encoding of 16 bytes: 22 base64 characters and `==`.
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24 && b[22..] == *b"==" && b[..22].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_example_key_is_accepted_and_derived() {
        assert!(valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn malformed_keys_are_refused() {
        for k in ["", "short==", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZ!=="] {
            assert!(!valid_key(k), "{k}");
        }
    }
}
