//! The one error type of the client-facing surface and the one place that maps it to
//! HTTP. Every handler returns `ApiError`; `render` turns it into the contract's
//! envelope `{"success":false,"error":{"code","message"},"timestamp"}` and
//! `render_openai` into OpenAI's `{"error":{"message","type","code"}}`. Each error
//! knows its status, who caused it, whether the connection may stay open, and the
//! extra headers it needs (`Retry-After`, `Allow`). Rendering costs one small
//! allocation; nothing here is on the success path.

use std::borrow::Cow;

use crate::clock;

/// The contract's error codes (PROTOCOL.md), one per distinct client-visible failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthorized,
    Forbidden,
    InvalidRequest,
    PayloadTooLarge,
    HeadersTooLarge,
    NotFound,
    VersionNotAvailable,
    MethodNotAllowed,
    InvalidSession,
    ModelNotFound,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    Overloaded,
    NotImplemented,
    Internal,
}

/// Who caused an error: decides logging and whether a retry could help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Culprit {
    Client,
    Upstream,
    Gateway,
}

impl ErrorCode {
    /// The wire name, e.g. `RATE_LIMITED`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::HeadersTooLarge => "HEADERS_TOO_LARGE",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::VersionNotAvailable => "VERSION_NOT_AVAILABLE",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::InvalidSession => "INVALID_SESSION",
            ErrorCode::ModelNotFound => "MODEL_NOT_FOUND",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::UpstreamError => "UPSTREAM_ERROR",
            ErrorCode::UpstreamTimeout => "UPSTREAM_TIMEOUT",
            ErrorCode::Overloaded => "OVERLOADED",
            ErrorCode::NotImplemented => "NOT_IMPLEMENTED",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// The HTTP status of the code. Exhaustive on purpose: a new code must pick one.
    pub const fn status(self) -> u16 {
        match self {
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::InvalidRequest => 400,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::HeadersTooLarge => 431,
            ErrorCode::NotFound => 404,
            ErrorCode::VersionNotAvailable => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::InvalidSession => 404,
            ErrorCode::ModelNotFound => 404,
            ErrorCode::RateLimited => 429,
            ErrorCode::UpstreamError => 502,
            ErrorCode::UpstreamTimeout => 504,
            ErrorCode::Overloaded => 503,
            ErrorCode::NotImplemented => 501,
            ErrorCode::Internal => 500,
        }
    }

    /// Who is at fault.
    pub const fn culprit(self) -> Culprit {
        match self {
            ErrorCode::Unauthorized
            | ErrorCode::Forbidden
            | ErrorCode::InvalidRequest
            | ErrorCode::PayloadTooLarge
            | ErrorCode::HeadersTooLarge
            | ErrorCode::NotFound
            | ErrorCode::VersionNotAvailable
            | ErrorCode::MethodNotAllowed
            | ErrorCode::InvalidSession
            | ErrorCode::ModelNotFound
            | ErrorCode::RateLimited
            | ErrorCode::NotImplemented => Culprit::Client,
            ErrorCode::UpstreamError | ErrorCode::UpstreamTimeout => Culprit::Upstream,
            ErrorCode::Overloaded | ErrorCode::Internal => Culprit::Gateway,
        }
    }

    /// Whether the same request may succeed if retried later.
    pub const fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited | ErrorCode::UpstreamError | ErrorCode::UpstreamTimeout | ErrorCode::Overloaded
        )
    }

    /// OpenAI's `type` for the same failure, for the `/v1/*` front door.
    pub const fn openai_type(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "authentication_error",
            ErrorCode::Forbidden => "permission_error",
            ErrorCode::RateLimited => "rate_limit_error",
            ErrorCode::NotFound | ErrorCode::ModelNotFound | ErrorCode::InvalidSession => "not_found_error",
            ErrorCode::UpstreamError | ErrorCode::UpstreamTimeout | ErrorCode::Overloaded | ErrorCode::Internal => {
                "server_error"
            }
            ErrorCode::InvalidRequest
            | ErrorCode::PayloadTooLarge
            | ErrorCode::HeadersTooLarge
            | ErrorCode::VersionNotAvailable
            | ErrorCode::MethodNotAllowed
            | ErrorCode::NotImplemented => "invalid_request_error",
        }
    }
}

/// Which error body a route answers with: the gateway's envelope (`/api/*`, `/health`,
/// `/ws`), OpenAI's `{"error":{"message","type","code"}}` (`/v1/*`), or Anthropic's
/// `{"type":"error","error":{"type","message"}}` (`/v1/messages*`, PROTOCOL.md
/// "Anthropic-compatible front door").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    Gateway,
    OpenAi,
    Anthropic,
}

impl ErrorCode {
    /// Anthropic's error `type` for the same failure
    /// (https://docs.anthropic.com/en/api/errors).
    pub const fn anthropic_type(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "authentication_error",
            ErrorCode::Forbidden => "permission_error",
            ErrorCode::RateLimited => "rate_limit_error",
            ErrorCode::NotFound | ErrorCode::ModelNotFound | ErrorCode::InvalidSession => "not_found_error",
            ErrorCode::PayloadTooLarge => "request_too_large",
            ErrorCode::Overloaded => "overloaded_error",
            ErrorCode::UpstreamTimeout => "timeout_error",
            ErrorCode::UpstreamError | ErrorCode::Internal => "api_error",
            ErrorCode::InvalidRequest
            | ErrorCode::HeadersTooLarge
            | ErrorCode::VersionNotAvailable
            | ErrorCode::MethodNotAllowed
            | ErrorCode::NotImplemented => "invalid_request_error",
        }
    }
}

/// The `type` names of Anthropic's error bodies: a provider's own type is kept in an
/// Anthropic-shaped answer when it is one of these.
const ANTHROPIC_TYPES: &[&str] = &[
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
    "timeout_error",
];

/// A client-visible failure: a code, a human message and the headers it implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
    /// Value of `Allow` (405).
    pub allow: Option<&'static str>,
    /// A protocol-level failure: the connection is closed after the response.
    pub close: bool,
    /// A provider's own error `type` and `code` for a request it refused, kept in
    /// OpenAI-shaped answers (PROTOCOL.md "Provider errors, by kind"). Boxed: rare,
    /// and `ApiError` travels in every `Result` of the request path.
    pub provider: Option<Box<ProviderDetail>>,
}

/// The error `type` and `code` a provider gave for a request it refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderDetail {
    pub kind: Option<String>,
    pub code: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError { code, message: message.into(), retry_after: None, allow: None, close: false, provider: None }
    }

    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "no route for this path")
    }

    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        ApiError {
            allow: Some(allow),
            ..Self::new(ErrorCode::MethodNotAllowed, format!("method not allowed; allowed: {allow}"))
        }
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Marks the error as one after which the connection cannot be trusted.
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The contract's error envelope.
    pub fn render(&self) -> Vec<u8> {
        let body = Envelope {
            success: false,
            error: ErrorBody { code: self.code.as_str(), message: &self.message },
            timestamp: clock::now_stamp(),
        };
        sonic_rs::to_vec(&body).unwrap_or_else(|_| fallback_body())
    }

    /// The body of this error in `shape`.
    pub fn render_as(&self, shape: ErrorShape) -> Vec<u8> {
        match shape {
            ErrorShape::Gateway => self.render(),
            ErrorShape::OpenAi => self.render_openai(),
            ErrorShape::Anthropic => self.render_anthropic(),
        }
    }

    /// Anthropic's error shape, for `/v1/messages*`: the provider's own `type` when it
    /// is one of Anthropic's, else the code's (`ErrorCode::anthropic_type`).
    pub fn render_anthropic(&self) -> Vec<u8> {
        let own = self.provider.as_ref().and_then(|p| p.kind.as_deref()).filter(|k| ANTHROPIC_TYPES.contains(k));
        let body = AnthropicEnvelope {
            kind: "error",
            error: AnthropicError { kind: own.unwrap_or(self.code.anthropic_type()), message: &self.message },
        };
        sonic_rs::to_vec(&body).unwrap_or_else(|_| fallback_body())
    }

    /// OpenAI's error shape, for `/v1/*`.
    pub fn render_openai(&self) -> Vec<u8> {
        let body = OpenAiEnvelope {
            error: OpenAiError {
                message: &self.message,
                kind: self.provider.as_ref().and_then(|p| p.kind.as_deref()).unwrap_or(self.code.openai_type()),
                code: self.provider.as_ref().and_then(|p| p.code.as_deref()).unwrap_or(openai_code(self.code)),
            },
        };
        sonic_rs::to_vec(&body).unwrap_or_else(|_| fallback_body())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

fn openai_code(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Unauthorized => "invalid_api_key",
        ErrorCode::ModelNotFound => "model_not_found",
        ErrorCode::RateLimited => "rate_limit_exceeded",
        other => other.as_str(),
    }
}

fn fallback_body() -> Vec<u8> {
    br#"{"success":false,"error":{"code":"INTERNAL","message":"error rendering failed"}}"#.to_vec()
}

#[derive(serde::Serialize)]
struct Envelope<'a> {
    success: bool,
    error: ErrorBody<'a>,
    timestamp: clock::Stamp,
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

#[derive(serde::Serialize)]
struct AnthropicEnvelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicError<'a>,
}

#[derive(serde::Serialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

#[derive(serde::Serialize)]
struct OpenAiEnvelope<'a> {
    error: OpenAiError<'a>,
}

#[derive(serde::Serialize)]
struct OpenAiError<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    code: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_names_code_and_message() {
        let e = ApiError::new(ErrorCode::RateLimited, "slow down");
        let v: serde_json::Value = serde_json::from_slice(&e.render()).unwrap();
        assert_eq!(v["success"], false);
        assert_eq!(v["error"]["code"], "RATE_LIMITED");
        assert_eq!(v["error"]["message"], "slow down");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(e.status(), 429);
    }

    #[test]
    fn openai_shape_has_type_and_code() {
        let e = ApiError::new(ErrorCode::Unauthorized, "bad key");
        let v: serde_json::Value = serde_json::from_slice(&e.render_openai()).unwrap();
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(v["error"]["code"], "invalid_api_key");
        assert_eq!(v["error"]["message"], "bad key");
    }
}
