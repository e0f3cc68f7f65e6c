//! Azure OpenAI's differences from OpenAI (learn.microsoft.com, "Azure OpenAI in
//! Azure AI Foundry Models REST API reference" and "Content filtering"): the routes
//! `POST /openai/deployments/{deployment}/chat/completions?api-version=...` and
//! `.../embeddings?api-version=...` (OpenAI's embeddings bodies, `embeddings.rs`), the
//! `api-key` header, the model named by the deployment (the body may leave `model`
//! out), the gateway-level error envelope `{"error":{"code":"401","message":...}}`
//! (401 without a valid key, 404 `Resource not found` without `api-version`,
//! `DeploymentNotFound`, 429 with the quota message), and the content-filter
//! annotations: `prompt_filter_results` and per-choice `content_filter_results` in a
//! completion, and a first stream chunk with `"choices":[]`, empty `id`, `model` and
//! `object`, that carries only `prompt_filter_results`. Model errors (400s such as
//! `context_length_exceeded`, 500s) keep OpenAI's envelope. Bodies otherwise are
//! OpenAI's (see `openai.rs`).

use clawgate::http::Request;

use crate::json::{push_raw, push_str};
use crate::openai;
use crate::scenario::ErrorKind;
use crate::sse::Emitter;

const ACCESS_DENIED: &str = "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.";

/// The deployment named by an Azure chat path, if `path` is one.
pub fn deployment(path: &str) -> Option<&str> {
    deployment_of(path, "/chat/completions")
}

/// The deployment named by an Azure embeddings path, if `path` is one.
pub fn embeddings_deployment(path: &str) -> Option<&str> {
    deployment_of(path, "/embeddings")
}

/// `{deployment}` of `/openai/deployments/{deployment}{operation}`.
fn deployment_of<'a>(path: &'a str, operation: &str) -> Option<&'a str> {
    let rest = path.strip_prefix("/openai/deployments/")?;
    let name = rest.strip_suffix(operation)?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// Azure's checks before the body: a non-empty `api-key` (one containing `invalid`
/// is refused, as for the other providers), then an `api-version` query parameter.
pub fn check(req: &Request) -> Result<(), (u16, Vec<u8>)> {
    let key = req.header("api-key").map(str::trim).unwrap_or("");
    if key.is_empty() || key.contains("invalid") {
        return Err((401, envelope("401", ACCESS_DENIED)));
    }
    if req.query_param("api-version").is_none_or(|v| v.trim().is_empty()) {
        return Err((404, not_found()));
    }
    Ok(())
}

/// What Azure answers to a path it does not serve, or without `api-version`.
pub fn not_found() -> Vec<u8> {
    envelope("404", "Resource not found")
}

/// `{"error":{"code","message"}}`, Azure's own envelope.
fn envelope(code: &str, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + message.len());
    push_raw(&mut out, "{\"error\":{\"code\":");
    push_str(&mut out, code);
    push_raw(&mut out, ",\"message\":");
    push_str(&mut out, message);
    push_raw(&mut out, "}}");
    out
}

/// The error body for `status`: Azure's envelope for 401, 404 and 429, OpenAI's for
/// the rest.
pub fn error(status: u16, kind: Option<ErrorKind>, message: Option<&str>, param: Option<&str>) -> Vec<u8> {
    match status {
        401 => envelope("401", message.unwrap_or(ACCESS_DENIED)),
        404 => envelope(
            "DeploymentNotFound",
            message.unwrap_or("The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."),
        ),
        429 => envelope(
            "429",
            message.unwrap_or("Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 1 second. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."),
        ),
        _ => openai::error(status, kind, message, param),
    }
}

/// `{"hate":{...},"self_harm":{...},"sexual":{...},"violence":{...}}`; when
/// `filtered`, violence is the category that was filtered.
pub fn content_filter_results(out: &mut Vec<u8>, filtered: bool) {
    const SAFE: &str = "{\"filtered\":false,\"severity\":\"safe\"}";
    push_raw(out, "{\"hate\":");
    push_raw(out, SAFE);
    push_raw(out, ",\"self_harm\":");
    push_raw(out, SAFE);
    push_raw(out, ",\"sexual\":");
    push_raw(out, SAFE);
    push_raw(out, ",\"violence\":");
    push_raw(out, if filtered { "{\"filtered\":true,\"severity\":\"high\"}" } else { SAFE });
    out.push(b'}');
}

/// `[{"prompt_index":0,"content_filter_results":{...}}]`.
pub fn prompt_filter_results(out: &mut Vec<u8>) {
    push_raw(out, "[{\"prompt_index\":0,\"content_filter_results\":");
    content_filter_results(out, false);
    push_raw(out, "}]");
}

/// The stream's first chunk: no choices, only the prompt's filter results.
pub fn prompt_filter_chunk(em: &mut Emitter) {
    let out = em.data();
    push_raw(
        out,
        "{\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":",
    );
    prompt_filter_results(out);
    out.push(b'}');
    em.emit(None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_deployment_in_the_path() {
        assert_eq!(deployment("/openai/deployments/gpt4o-prod/chat/completions"), Some("gpt4o-prod"));
        assert_eq!(deployment("/openai/deployments//chat/completions"), None);
        assert_eq!(deployment("/openai/deployments/a/b/chat/completions"), None);
        assert_eq!(deployment("/v1/chat/completions"), None);
        assert_eq!(embeddings_deployment("/openai/deployments/ada-002/embeddings"), Some("ada-002"));
        assert_eq!(embeddings_deployment("/openai/deployments/ada-002/chat/completions"), None);
    }

    #[test]
    fn errors_use_azure_envelopes_where_azure_does() {
        let v: serde_json::Value = serde_json::from_slice(&error(401, None, None, None)).unwrap();
        assert_eq!(v["error"]["code"], "401");
        let v: serde_json::Value = serde_json::from_slice(&error(404, None, None, None)).unwrap();
        assert_eq!(v["error"]["code"], "DeploymentNotFound");
        let v: serde_json::Value =
            serde_json::from_slice(&error(400, Some(ErrorKind::ContextLength), None, None)).unwrap();
        assert_eq!(v["error"]["code"], "context_length_exceeded");
    }
}
