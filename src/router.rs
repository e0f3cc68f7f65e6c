//! The router: (method, path) -> `Route`, a plain `match` over path segments, built at
//! compile time, no allocation. `/api/v1/*` is `/api/*`; any other `/api/vN/*` answers
//! `VERSION_NOT_AVAILABLE`. A known path with the wrong method is a 405 carrying
//! `Allow`; an unknown path is a 404. Costs tens of nanoseconds per request.

use crate::error::{ApiError, ErrorCode, ErrorShape};
use crate::http::Method;

/// Every endpoint of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Health,
    /// `GET /health/live`: the process serves.
    HealthLive,
    /// `GET /health/ready`: config loaded, store reachable, a provider not down.
    HealthReady,
    HealthDetailed,
    Metrics,
    Status,
    Chat,
    Models,
    Channels,
    Sessions,
    SessionGet(&'a str),
    SessionOp(&'a str),
    OpenAiChat,
    OpenAiModels,
    /// `GET /v1/models/{id}`: the id as it appears in the path (it may contain `/`,
    /// literally or percent-encoded; the handler decodes it).
    OpenAiModel(&'a str),
    OpenAiEmbeddings,
    /// OpenAI Responses: `POST /v1/responses`.
    OpenAiResponses,
    /// Anthropic Messages: `POST /v1/messages`.
    AnthropicMessages,
    /// Anthropic `POST /v1/messages/count_tokens`.
    AnthropicCountTokens,
    WebSocket,
    Webhook(&'a str),
    WebhookVerify(&'a str),
}

impl Route<'_> {
    /// Whether the route requires an API key (`/health*` are open by default).
    pub fn needs_auth(&self) -> bool {
        !matches!(
            self,
            Route::Health
                | Route::HealthLive
                | Route::HealthReady
                | Route::HealthDetailed
                | Route::Metrics
                | Route::Webhook(_)
                | Route::WebhookVerify(_)
        )
    }

    /// The error body this route answers with.
    pub fn error_shape(&self) -> ErrorShape {
        match self {
            Route::AnthropicMessages | Route::AnthropicCountTokens => ErrorShape::Anthropic,
            Route::OpenAiChat
            | Route::OpenAiModels
            | Route::OpenAiModel(_)
            | Route::OpenAiEmbeddings
            | Route::OpenAiResponses => ErrorShape::OpenAi,
            _ => ErrorShape::Gateway,
        }
    }

    /// Whether the route belongs to the `/v1/*` surface, where the Anthropic SDK's
    /// `x-api-key` header authenticates as well as `Authorization: Bearer`.
    pub fn takes_api_key_header(&self) -> bool {
        self.error_shape() != ErrorShape::Gateway
    }

    /// The position of `label()` in `ROUTE_LABELS` (metrics cells; a test checks the
    /// two agree).
    pub fn index(&self) -> usize {
        match self {
            Route::Health => 0,
            Route::HealthLive => 1,
            Route::HealthReady => 2,
            Route::HealthDetailed => 3,
            Route::Metrics => 4,
            Route::Status => 5,
            Route::Chat => 6,
            Route::Models => 7,
            Route::Channels => 8,
            Route::Sessions => 9,
            Route::SessionGet(_) => 10,
            Route::SessionOp(_) => 11,
            Route::OpenAiChat => 12,
            Route::OpenAiModels => 13,
            Route::OpenAiModel(_) => 14,
            Route::OpenAiEmbeddings => 15,
            Route::OpenAiResponses => 16,
            Route::AnthropicMessages => 17,
            Route::AnthropicCountTokens => 18,
            Route::WebSocket => 19,
            Route::Webhook(_) => 20,
            Route::WebhookVerify(_) => 21,
        }
    }

    /// A stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Health => "health",
            Route::HealthLive => "health_live",
            Route::HealthReady => "health_ready",
            Route::HealthDetailed => "health_detailed",
            Route::Metrics => "metrics",
            Route::Status => "status",
            Route::Chat => "chat",
            Route::Models => "models",
            Route::Channels => "channels",
            Route::Sessions => "sessions",
            Route::SessionGet(_) => "session_get",
            Route::SessionOp(_) => "session_op",
            Route::OpenAiChat => "openai_chat",
            Route::OpenAiModels => "openai_models",
            Route::OpenAiModel(_) => "openai_model",
            Route::OpenAiEmbeddings => "openai_embeddings",
            Route::OpenAiResponses => "openai_responses",
            Route::AnthropicMessages => "anthropic_messages",
            Route::AnthropicCountTokens => "anthropic_count_tokens",
            Route::WebSocket => "ws",
            Route::Webhook(_) => "webhook",
            Route::WebhookVerify(_) => "webhook_verify",
        }
    }
}

/// Every `Route::label`, then `unmatched` (a request no route took: 404, 405, bad
/// version), in a fixed order: the metrics' route label slots.
pub const ROUTE_LABELS: [&str; 23] = [
    "health",
    "health_live",
    "health_ready",
    "health_detailed",
    "metrics",
    "status",
    "chat",
    "models",
    "channels",
    "sessions",
    "session_get",
    "session_op",
    "openai_chat",
    "openai_models",
    "openai_model",
    "openai_embeddings",
    "openai_responses",
    "anthropic_messages",
    "anthropic_count_tokens",
    "ws",
    "webhook",
    "webhook_verify",
    "unmatched",
];
/// The slot of requests no route took.
pub const UNMATCHED: usize = 22;

/// The metrics slot of a request (`Route::index`, or `UNMATCHED`).
pub fn route_index(method: Method, path: &str) -> usize {
    route(method, path).map_or(UNMATCHED, |r| r.index())
}

/// The error shape of a path, even when routing fails: Anthropic's under
/// `/v1/messages`, OpenAI's elsewhere under `/v1/`, the gateway's envelope otherwise.
pub fn error_shape(path: &str) -> ErrorShape {
    if path.starts_with("/v1/messages") {
        ErrorShape::Anthropic
    } else if path.starts_with("/v1/") {
        ErrorShape::OpenAi
    } else {
        ErrorShape::Gateway
    }
}

/// Resolves a request to a route.
pub fn route(method: Method, path: &str) -> Result<Route<'_>, ApiError> {
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    if let Some(rest) = path.strip_prefix("/api/") {
        return api_route(method, strip_version(rest)?);
    }
    let get = |r| only(method, Method::Get, "GET", r);
    let post = |r| only(method, Method::Post, "POST", r);
    match path {
        "/health" => get(Route::Health),
        "/health/live" => get(Route::HealthLive),
        "/health/ready" => get(Route::HealthReady),
        "/health/detailed" => get(Route::HealthDetailed),
        "/metrics" => get(Route::Metrics),
        "/ws" => get(Route::WebSocket),
        "/v1/chat/completions" => post(Route::OpenAiChat),
        "/v1/models" => get(Route::OpenAiModels),
        "/v1/embeddings" => post(Route::OpenAiEmbeddings),
        "/v1/responses" => post(Route::OpenAiResponses),
        "/v1/messages" => post(Route::AnthropicMessages),
        "/v1/messages/count_tokens" => post(Route::AnthropicCountTokens),
        _ => match path.strip_prefix("/webhooks/") {
            Some(name) if valid_segment(name) => match method {
                Method::Post => Ok(Route::Webhook(name)),
                Method::Get => Ok(Route::WebhookVerify(name)),
                _ => Err(ApiError::method_not_allowed("GET, POST")),
            },
            // Model ids may contain `/` (`org/embed-small`): the rest of the path is the id.
            _ => match path.strip_prefix("/v1/models/") {
                Some(id) if !id.is_empty() => get(Route::OpenAiModel(id)),
                _ => Err(ApiError::not_found()),
            },
        },
    }
}

/// `v1/chat` -> `chat`; `chat` -> `chat`; `v2/chat` -> VERSION_NOT_AVAILABLE.
fn strip_version(rest: &str) -> Result<&str, ApiError> {
    let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let is_version = first.len() > 1 && first.starts_with('v') && first[1..].bytes().all(|b| b.is_ascii_digit());
    match (is_version, first) {
        (false, _) => Ok(rest),
        (true, "v1") => Ok(tail),
        (true, _) => Err(ApiError::new(
            ErrorCode::VersionNotAvailable,
            format!("API version {first} is not available; use /api/v1"),
        )),
    }
}

fn api_route(method: Method, rest: &str) -> Result<Route<'_>, ApiError> {
    let get = |r| only(method, Method::Get, "GET", r);
    let post = |r| only(method, Method::Post, "POST", r);
    match rest {
        "status" => get(Route::Status),
        "chat" => post(Route::Chat),
        "models" => get(Route::Models),
        "channels" => get(Route::Channels),
        "sessions" => get(Route::Sessions),
        _ => match rest.strip_prefix("sessions/") {
            Some(id) if valid_segment(id) => match method {
                Method::Get => Ok(Route::SessionGet(id)),
                Method::Post => Ok(Route::SessionOp(id)),
                _ => Err(ApiError::method_not_allowed("GET, POST")),
            },
            _ => Err(ApiError::not_found()),
        },
    }
}

fn only<'a>(method: Method, want: Method, allow: &'static str, route: Route<'a>) -> Result<Route<'a>, ApiError> {
    if method == want || (want == Method::Get && method == Method::Head) {
        Ok(route)
    } else {
        Err(ApiError::method_not_allowed(allow))
    }
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty() && !s.contains('/')
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_has_a_metrics_slot() {
        const { assert!(super::ROUTE_LABELS.len() <= crate::stats::MAX_ROUTES) };
        for (m, p) in [
            (Method::Get, "/health"),
            (Method::Get, "/metrics"),
            (Method::Post, "/api/chat"),
            (Method::Post, "/v1/chat/completions"),
            (Method::Post, "/v1/messages/count_tokens"),
            (Method::Get, "/ws"),
            (Method::Post, "/webhooks/tg"),
            (Method::Get, "/webhooks/tg"),
            (Method::Get, "/v1/models/org/x"),
        ] {
            let r = route(m, p).unwrap();
            assert_eq!(super::ROUTE_LABELS[r.index()], r.label(), "{p}");
        }
        assert_eq!(super::ROUTE_LABELS[super::route_index(Method::Get, "/nope")], "unmatched");
    }

    use super::*;

    #[test]
    fn api_paths_answer_with_and_without_v1() {
        assert_eq!(route(Method::Post, "/api/chat").unwrap(), Route::Chat);
        assert_eq!(route(Method::Post, "/api/v1/chat").unwrap(), Route::Chat);
        assert_eq!(route(Method::Get, "/api/v1/sessions/abc").unwrap(), Route::SessionGet("abc"));
        assert_eq!(route(Method::Post, "/api/sessions/abc").unwrap(), Route::SessionOp("abc"));
        assert_eq!(route(Method::Get, "/health/").unwrap(), Route::Health);
    }

    #[test]
    fn unknown_versions_are_version_not_available() {
        let e = route(Method::Post, "/api/v2/chat").unwrap_err();
        assert_eq!(e.code, ErrorCode::VersionNotAvailable);
        assert_eq!(e.status(), 404);
    }

    #[test]
    fn wrong_method_is_405_with_allow() {
        let e = route(Method::Get, "/api/chat").unwrap_err();
        assert_eq!(e.status(), 405);
        assert_eq!(e.allow, Some("POST"));
        assert_eq!(route(Method::Delete, "/api/sessions/x").unwrap_err().allow, Some("GET, POST"));
    }

    #[test]
    fn model_ids_take_the_rest_of_the_path() {
        assert_eq!(route(Method::Get, "/v1/models/gpt-4o").unwrap(), Route::OpenAiModel("gpt-4o"));
        assert_eq!(route(Method::Get, "/v1/models/org/embed-small").unwrap(), Route::OpenAiModel("org/embed-small"));
        assert_eq!(
            route(Method::Get, "/v1/models/org%2Fembed-small/").unwrap(),
            Route::OpenAiModel("org%2Fembed-small")
        );
        assert_eq!(route(Method::Get, "/v1/models/").unwrap(), Route::OpenAiModels);
        assert_eq!(route(Method::Post, "/v1/models/x").unwrap_err().allow, Some("GET"));
        assert_eq!(route(Method::Post, "/v1/embeddings").unwrap(), Route::OpenAiEmbeddings);
        assert_eq!(route(Method::Get, "/v1/embeddings").unwrap_err().allow, Some("POST"));
        assert_eq!(Route::OpenAiModel("x").error_shape(), ErrorShape::OpenAi);
        assert_eq!(Route::OpenAiEmbeddings.error_shape(), ErrorShape::OpenAi);
    }

    #[test]
    fn unknown_paths_are_404() {
        for p in ["/", "/api", "/api/nope", "/api/sessions/a/b", "/healthz"] {
            assert_eq!(route(Method::Get, p).unwrap_err().code, ErrorCode::NotFound, "{p}");
        }
    }
}
