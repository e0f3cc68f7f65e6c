//! Provider failures by kind (PROTOCOL.md "Provider errors, by kind"). Every upstream
//! failure, on every path (pass-through or translated, with or without fallbacks, in a
//! session or not), becomes one `ProviderError` whose `FailureKind` decides three
//! things: whether the call is retried (`policy`), whether the model's fallbacks are
//! tried (`turn::start_turn`), and what the client gets (`to_api`):
//!
//! | upstream answer                          | kind          | retried | fallbacks | client gets            |
//! |------------------------------------------|---------------|---------|-----------|------------------------|
//! | 400, 404, 409, 413, 422                  | `BadRequest`  | no      | no (*)    | 400 (413) + its message |
//! | 429                                      | `RateLimited` | yes     | yes       | 429 + `Retry-After`     |
//! | 401, 403 (the gateway's key refused)     | `Credentials` | no      | yes       | 502 naming the provider |
//! | 5xx, 529, connect error, reset, garbage  | `Failed`      | yes     | yes       | 502                     |
//! | no first byte, chunk gap, deadline       | `Timeout`     | yes     | yes       | 504                     |
//!
//! (*) a context-length error tries the model's `context_window_fallbacks`.
//!
//! An error keeps two texts: `message`, what the client may read (it names the
//! provider and never an internal address or a secret), and `cause`, the whole story
//! for the gateway's log (scrubbed of secrets).

use crate::error::{ApiError, ErrorCode, ProviderDetail};
use crate::upstream::UpstreamError;

/// What kind of failure a provider call ended with (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The provider refused the request itself: the client's doing. `status` is the
    /// provider's (400, 404, 409, 413, 422); `context_length` marks a prompt longer
    /// than the model's context window.
    BadRequest { status: u16, context_length: bool },
    /// The provider's rate limit (429), still hit after the retries.
    RateLimited,
    /// The provider refused the gateway's own credentials (401, 403).
    Credentials,
    /// A server error (5xx, 529), a connect failure, a reset, or an unreadable answer.
    Failed,
    /// No first byte in time, a gap between chunks, or the total deadline.
    Timeout,
    /// The gateway itself is out of room (the worker's buffer budget for answers):
    /// 503 `OVERLOADED`, retry shortly; no fallback (it would meet the same budget).
    Overloaded,
}

impl FailureKind {
    /// Whether another model of the fallback chain may serve the request.
    pub fn falls_back(self) -> bool {
        !matches!(self, FailureKind::BadRequest { .. } | FailureKind::Overloaded)
    }

    /// The kind of a provider's HTTP status (non-2xx).
    pub fn of_status(status: u16, context_length: bool) -> FailureKind {
        match status {
            400 | 404 | 409 | 413 | 422 => FailureKind::BadRequest { status, context_length },
            429 => FailureKind::RateLimited,
            401 | 403 => FailureKind::Credentials,
            _ => FailureKind::Failed,
        }
    }
}

/// A provider failure, before or during the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    pub kind: FailureKind,
    /// What the client is told: names the provider, never an address or a secret.
    pub message: String,
    /// The whole cause, for the gateway's log (secrets scrubbed).
    pub cause: String,
    /// Seconds the provider asked callers to wait (429/503 with `Retry-After`).
    pub retry_after: Option<u64>,
    /// The provider's own error `type` and `code` (OpenAI shape, e.g.
    /// `invalid_request_error` / `context_length_exceeded`), kept for `/v1` clients.
    pub provider_type: Option<String>,
    pub provider_code: Option<String>,
}

impl ProviderError {
    /// A failure of kind `kind` whose message is also its cause.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        let message = message.into();
        ProviderError {
            kind,
            cause: message.clone(),
            message,
            retry_after: None,
            provider_type: None,
            provider_code: None,
        }
    }

    /// A provider that failed (`Failed`): a bad stream, an unreadable answer.
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Failed, message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Timeout, message)
    }

    /// An upstream client error of a provider call whose provider is not named here
    /// (mid-stream reads): the kind follows the error, the message hides addresses.
    pub fn from_upstream(e: UpstreamError) -> Self {
        let kind = match &e {
            UpstreamError::Timeout(_) => FailureKind::Timeout,
            UpstreamError::Status { status, context_length, .. } => FailureKind::of_status(*status, *context_length),
            UpstreamError::Connect(_) | UpstreamError::Io { .. } | UpstreamError::Protocol(_) => FailureKind::Failed,
            UpstreamError::Overloaded(_) => FailureKind::Overloaded,
        };
        ProviderError { message: e.client_message(), cause: e.to_string(), ..Self::new(kind, String::new()) }
    }

    /// Whether the client caused it (nothing to log as a gateway or provider fault).
    pub fn is_client_fault(&self) -> bool {
        matches!(self.kind, FailureKind::BadRequest { .. })
    }

    /// The contract's error for this failure (see the module table).
    pub fn to_api(&self) -> ApiError {
        let code = match self.kind {
            FailureKind::BadRequest { status: 413, .. } => ErrorCode::PayloadTooLarge,
            FailureKind::BadRequest { .. } => ErrorCode::InvalidRequest,
            FailureKind::RateLimited => ErrorCode::RateLimited,
            FailureKind::Credentials | FailureKind::Failed => ErrorCode::UpstreamError,
            FailureKind::Timeout => ErrorCode::UpstreamTimeout,
            FailureKind::Overloaded => ErrorCode::Overloaded,
        };
        let mut e = ApiError::new(code, self.message.clone());
        if matches!(self.kind, FailureKind::RateLimited | FailureKind::Overloaded) {
            e.retry_after = Some(self.retry_after.unwrap_or(1).max(1));
        } else {
            e.retry_after = self.retry_after;
        }
        if self.is_client_fault() && (self.provider_type.is_some() || self.provider_code.is_some()) {
            e.provider =
                Some(Box::new(ProviderDetail { kind: self.provider_type.clone(), code: self.provider_code.clone() }));
        }
        e
    }
}

/// What a provider's error body said, in whichever provider's shape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorInfo {
    pub message: String,
    /// The provider's error `type` (`invalid_request_error`, `overloaded_error`, ...).
    pub kind: Option<String>,
    /// The provider's error `code` (OpenAI: `context_length_exceeded`, ...).
    pub code: Option<String>,
}

/// Whether a provider's error says the prompt is longer than the context window:
/// OpenAI's code `context_length_exceeded`, Anthropic's "prompt is too long", and the
/// wordings of OpenAI-compatible servers ("maximum context length", "context window").
pub fn is_context_length(code: Option<&str>, message: &str) -> bool {
    if code == Some("context_length_exceeded") {
        return true;
    }
    let m = message.to_ascii_lowercase();
    ["prompt is too long", "maximum context length", "context length", "context window", "too many tokens"]
        .iter()
        .any(|needle| m.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_reaches_the_client_as_the_contract_says() {
        let bad = ProviderError::new(FailureKind::BadRequest { status: 400, context_length: false }, "x");
        assert_eq!(bad.to_api().status(), 400);
        let big = ProviderError::new(FailureKind::BadRequest { status: 413, context_length: false }, "x");
        assert_eq!(big.to_api().code, ErrorCode::PayloadTooLarge);
        let limited = ProviderError::new(FailureKind::RateLimited, "x");
        assert_eq!((limited.to_api().status(), limited.to_api().retry_after), (429, Some(1)));
        assert_eq!(ProviderError::new(FailureKind::Credentials, "x").to_api().status(), 502);
        assert_eq!(ProviderError::new(FailureKind::Failed, "x").to_api().status(), 502);
        assert_eq!(ProviderError::new(FailureKind::Timeout, "x").to_api().status(), 504);
    }

    #[test]
    fn only_bad_requests_stop_the_fallback_chain() {
        assert!(!FailureKind::BadRequest { status: 422, context_length: false }.falls_back());
        for k in [FailureKind::RateLimited, FailureKind::Credentials, FailureKind::Failed, FailureKind::Timeout] {
            assert!(k.falls_back(), "{k:?}");
        }
    }

    #[test]
    fn context_length_errors_are_recognised() {
        assert!(is_context_length(Some("context_length_exceeded"), ""));
        assert!(is_context_length(None, "prompt is too long: 210000 tokens > 200000 maximum"));
        assert!(is_context_length(None, "This model's maximum context length is 8192 tokens"));
        assert!(!is_context_length(Some("invalid_value"), "temperature must be at most 2"));
    }
}
