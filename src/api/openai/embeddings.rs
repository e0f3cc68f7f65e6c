//! `POST /v1/embeddings` (https://platform.openai.com/docs/api-reference/embeddings):
//! `{"model","input","encoding_format"?,"dimensions"?,...}` in, OpenAI's list of
//! vectors out. Each model of the chain (the model, then its fallbacks; a
//! context-length refusal moves on to its `context_window_fallbacks`, as on chat) is
//! served one of two ways, chosen by its provider's adapter:
//!
//! - pass-through, for providers that take OpenAI's `/embeddings` as is
//!   (`NativeApi::Embeddings`: openai, openai_compat, azure_openai): the body goes
//!   upstream untouched but for `model`, spliced to the model's `upstream` name
//!   (`native::splice_model`), and the provider's answer comes back untouched (its
//!   `model` name, its `encoding_format`, its `usage`);
//! - translated, for providers with an embeddings call of their own
//!   (`Adapter::encode_embeddings`: Gemini's `batchEmbedContents`): the texts of
//!   `input` (a string or an array of strings; token-id arrays reach OpenAI-format
//!   providers only) and `dimensions` are sent, the vectors come back in OpenAI's list
//!   shape with the gateway's model id, as `float`s or, for `encoding_format:
//!   "base64"`, the base64 of their little-endian `f32` bytes. Other request fields
//!   (`user`, ...) cannot be carried: refused naming field and provider, or dropped
//!   and listed in `X-Clawgate-Dropped-Params` under `drop_unsupported_params`.
//!   Gemini reports no usage, so usage is the gateway's estimate of the texts.
//!
//! A model whose provider can do neither (anthropic, mock) is a 400 naming model and
//! provider. Quotas: the key's token quota reserves the body's estimate before any
//! call and is settled with the usage (the provider's, or the estimate), which also
//! counts in the worker's token totals. Provider failures reach the client by kind
//! (PROTOCOL.md "Provider errors, by kind"), in OpenAI's error shape: a refusal of
//! the request itself is a 400 (413) keeping the provider's `type`/`code`, and ends
//! the chain; the rest try the next model and are 429, 502 or 504 at the end.

use std::borrow::Cow;
use std::collections::VecDeque;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sonic_rs::LazyValue;

use crate::api::native::{account, estimate, splice_model};
use crate::api::{json_error, require_body, Ctx, JsonKind};
use crate::auth::{check_model_access, Identity};
use crate::chat::{estimate_tokens, Usage};
use crate::config::{Config, ModelConfig};
use crate::error::{ApiError, ErrorCode};
use crate::http::Response;
use crate::log;
use crate::provider::openai::WireUsage;
use crate::provider::policy::HttpProvider;
use crate::provider::{EmbedRequest, FailureKind, NativeApi, ProviderError, ProviderImpl};

/// Most texts one request may carry to a translated provider (OpenAI's own limit).
const MAX_INPUTS: usize = 2048;

/// The fields a translated request carries; any other is not carried.
const CARRIED: &[&str] = &["model", "input", "encoding_format", "dimensions"];

/// The request fields the gateway reads; the rest is only looked at by name when
/// the request is translated (`not_carried`).
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<LazyValue<'a>>,
    #[serde(borrow, default)]
    encoding_format: Option<Cow<'a, str>>,
    #[serde(default)]
    dimensions: Option<u32>,
}

/// The text shapes of `input` (the token-id shapes are OpenAI's alone).
#[derive(Deserialize)]
#[serde(untagged)]
enum Input<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(#[serde(borrow)] Vec<Cow<'a, str>>),
}

/// How a provider serves embeddings.
enum Way<'p> {
    /// Takes OpenAI's `/embeddings` as is.
    Native(&'p HttpProvider),
    /// Has an embeddings call of its own format.
    Translated(&'p HttpProvider),
}

/// Why one model of the chain did not serve the request.
enum Failure {
    /// The request cannot be served as sent (the client's doing, not the provider's):
    /// answered at once.
    Client(ApiError),
    /// The provider failed: by kind.
    Provider(ProviderError),
}

impl From<ProviderError> for Failure {
    fn from(e: ProviderError) -> Self {
        Failure::Provider(e)
    }
}

/// A served request: the response and the usage to account.
type Served = (Response, Usage);

/// `POST /v1/embeddings` (see the module doc).
pub async fn embeddings(ctx: &Ctx<'_>, who: Identity) -> Result<Response, ApiError> {
    let raw = require_body(ctx.req)?;
    let b: Body<'_> = sonic_rs::from_slice(raw).map_err(|e| {
        json_error(
            raw,
            &e,
            &[("model", JsonKind::String), ("encoding_format", JsonKind::String), ("dimensions", JsonKind::Integer)],
        )
    })?;
    let id = b.model.as_deref().filter(|m| !m.is_empty()).ok_or_else(|| ApiError::invalid("missing field `model`"))?;
    let Some(input) = b.input.as_ref().filter(|i| i.as_raw_str() != "null") else {
        return Err(ApiError::invalid("missing field `input`"));
    };
    let base64 = match b.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!("field `encoding_format` must be float or base64 (got {other:?})")))
        }
    };
    let cfg = &ctx.snap.config;
    let model = cfg
        .model(id)
        .ok_or_else(|| ApiError::new(ErrorCode::ModelNotFound, format!("model {id} is not in the catalogue")))?;
    check_model_access(cfg, &who, &model.id)?;
    let providers = ctx.worker.providers();
    // The model asked for must be able to embed (a fallback that cannot is skipped).
    if let Some(p) = providers.get(&model.provider) {
        if matches!(way_of(&p), Ok(None)) {
            return Err(cannot_embed(cfg, model));
        }
    }
    let worker = ctx.worker;
    crate::turn::check_memory(cfg)?;
    let quota = worker.limiter.reserve_prompt(cfg, &who, estimate(raw), Some(1))?;
    let mut chain: VecDeque<&str> =
        std::iter::once(model.id.as_str()).chain(model.fallbacks.iter().map(String::as_str)).collect();
    let mut on_context_length = Some(&model.context_window_fallbacks).filter(|l| !l.is_empty());
    let mut texts: Option<Vec<Cow<'_, str>>> = None;
    let mut failures: Vec<String> = Vec::new();
    let mut last: Option<ProviderError> = None;
    while let Some(candidate) = chain.pop_front() {
        let Some(m) = cfg.model(candidate) else { continue };
        let Some(provider) = providers.get(&m.provider) else {
            last = Some(ProviderError::upstream(format!("provider {} is not running", m.provider)));
            continue;
        };
        let outcome = match way_of(&provider) {
            Err(e) => Err(Failure::Provider(e)),
            Ok(None) => {
                failures.push(format!("{}: provider {} cannot embed", m.id, m.provider));
                continue;
            }
            Ok(Some(Way::Native(http))) => native(http, m, &ctx.req.body).await,
            Ok(Some(Way::Translated(http))) => {
                let dropped = not_carried(cfg, m, raw)?;
                if texts.is_none() {
                    texts = Some(texts_of(input, cfg, m)?);
                }
                let texts = texts.as_deref().unwrap_or_default();
                let req = EmbedRequest { upstream_model: &m.upstream, inputs: texts, dimensions: b.dimensions };
                translated(http, m, &req, base64, &dropped).await
            }
        };
        match outcome {
            Ok((resp, usage)) => {
                account(worker, &quota, usage, &m.id, &who.name);
                return Ok(resp);
            }
            Err(Failure::Client(e)) => return Err(e),
            Err(Failure::Provider(e)) => {
                if !e.is_client_fault() {
                    log::warn(&format!("request {}: model {} failed: {}", ctx.request_id, m.id, e.cause));
                }
                failures.push(format!("{}: {}", m.id, e.message));
                match e.kind {
                    FailureKind::BadRequest { context_length: true, .. } if on_context_length.is_some() => {
                        chain = on_context_length.take().into_iter().flatten().map(String::as_str).collect();
                    }
                    FailureKind::BadRequest { .. } => {
                        account(worker, &quota, Usage::default(), &m.id, &who.name);
                        return Err(e.to_api());
                    }
                    _ => {}
                }
                last = Some(e);
            }
        }
    }
    account(worker, &quota, Usage::default(), &model.id, &who.name);
    let mut err = last.unwrap_or_else(|| ProviderError::upstream("no model could serve the request")).to_api();
    if failures.len() > 1 {
        err.message = format!("every model failed: {}", failures.join("; ")).into();
    }
    Err(err)
}

/// How `p` serves embeddings; `Ok(None)`: it cannot; `Err`: it is not running.
fn way_of(p: &ProviderImpl) -> Result<Option<Way<'_>>, ProviderError> {
    match p {
        ProviderImpl::Http(h) if h.speaks(NativeApi::Embeddings) => Ok(Some(Way::Native(h))),
        ProviderImpl::Http(h) if h.translates_embeddings() => Ok(Some(Way::Translated(h))),
        ProviderImpl::Broken(msg) => Err(ProviderError::upstream(msg.clone())),
        ProviderImpl::Http(_) | ProviderImpl::Mock(_) => Ok(None),
    }
}

fn cannot_embed(cfg: &Config, m: &ModelConfig) -> ApiError {
    let kind = cfg.provider(&m.provider).map_or("unknown", |p| p.kind.as_str());
    ApiError::invalid(format!(
        "model {} cannot serve embeddings: its provider {} ({kind} API) has no embeddings API (providers of kind \
         openai, openai_compat, azure_openai and gemini have one)",
        m.id, m.provider
    ))
}

/// The pass-through: the body with `model` spliced, the answer untouched.
async fn native(http: &HttpProvider, m: &ModelConfig, body: &Bytes) -> Result<Served, Failure> {
    let sent = splice_model(body, &m.upstream)
        .ok_or_else(|| Failure::Client(ApiError::invalid("field `model` must be a string")))?;
    let answer = http.forward(NativeApi::Embeddings, &m.upstream, sent, &[]).await?;
    if !(200..300).contains(&answer.status) {
        return Err(Failure::Provider(http.refusal(&answer)));
    }
    let usage = answer_usage(&answer.body);
    Ok((Response::json(answer.status, answer.body), usage))
}

/// The `usage` of an OpenAI embeddings answer (`prompt_tokens`; zeros if absent).
fn answer_usage(body: &[u8]) -> Usage {
    crate::json::get(body, &["usage"])
        .ok()
        .and_then(|v| sonic_rs::from_str::<WireUsage>(v.as_raw_str()).ok())
        .map(Usage::from)
        .unwrap_or_default()
}

/// The translation: the provider's own call, the vectors in OpenAI's list shape.
async fn translated(
    http: &HttpProvider,
    m: &ModelConfig,
    req: &EmbedRequest<'_>,
    base64: bool,
    dropped: &[String],
) -> Result<Served, Failure> {
    let vectors = http.embed(req).await?;
    let tokens: u64 = req.inputs.iter().map(|t| estimate_tokens(t)).sum();
    let body = render(&m.id, &vectors, base64, tokens).map_err(Failure::Client)?;
    let mut resp = Response::json(200, Bytes::from(body));
    if !dropped.is_empty() {
        resp.push_header("x-clawgate-dropped-params", dropped.join(", "));
    }
    Ok((resp, Usage { prompt_tokens: tokens, ..Usage::default() }))
}

/// The request fields a translation cannot carry, when the model or provider drops
/// them (`drop_unsupported_params`); otherwise an error naming them and the provider.
fn not_carried(cfg: &Config, m: &ModelConfig, body: &[u8]) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for item in sonic_rs::to_object_iter(body) {
        let (name, _) = item.map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))?;
        if !CARRIED.contains(&&*name) {
            out.push(name.into_owned());
        }
    }
    if out.is_empty() {
        return Ok(out);
    }
    let provider = cfg.provider(&m.provider);
    if m.drop_unsupported_params || provider.is_some_and(|p| p.drop_unsupported_params) {
        return Ok(out);
    }
    let list = out.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ");
    Err(ApiError::invalid(format!(
        "{list} cannot be sent to provider {} ({} API) serving model {}; remove it, or set drop_unsupported_params = \
         true on the model or provider to drop it",
        m.provider,
        provider.map_or("unknown", |p| p.kind.as_str()),
        m.id
    )))
}

/// The texts of `input` for a translated provider.
fn texts_of<'a>(input: &'a LazyValue<'_>, cfg: &Config, m: &ModelConfig) -> Result<Vec<Cow<'a, str>>, ApiError> {
    let texts = match sonic_rs::from_str::<Input<'a>>(input.as_raw_str()) {
        Ok(Input::One(t)) => vec![t],
        Ok(Input::Many(list)) => list,
        Err(_) => {
            let kind = cfg.provider(&m.provider).map_or("unknown", |p| p.kind.as_str());
            return Err(ApiError::invalid(format!(
                "field `input` must be a string or an array of strings for provider {} ({kind} API) serving model \
                 {} (token-id arrays reach OpenAI-format providers only)",
                m.provider, m.id
            )));
        }
    };
    if texts.is_empty() || texts.iter().any(|t| t.is_empty()) {
        return Err(ApiError::invalid("field `input` must not be empty, nor hold an empty string"));
    }
    if texts.len() > MAX_INPUTS {
        return Err(ApiError::invalid(format!("field `input` holds {} texts; at most {MAX_INPUTS}", texts.len())));
    }
    Ok(texts)
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Item<'a>>,
    model: &'a str,
    usage: ListUsage,
}

#[derive(Serialize)]
struct Item<'a> {
    object: &'static str,
    index: usize,
    embedding: Vector<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector<'a> {
    Floats(&'a [f32]),
    Base64(String),
}

#[derive(Serialize)]
struct ListUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// OpenAI's list of embeddings for `vectors` (in input order).
fn render(model: &str, vectors: &[Vec<f32>], base64: bool, tokens: u64) -> Result<Vec<u8>, ApiError> {
    let data = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| Item {
            object: "embedding",
            index,
            embedding: if base64 { Vector::Base64(base64_f32(v)) } else { Vector::Floats(v) },
        })
        .collect();
    let list = List { object: "list", data, model, usage: ListUsage { prompt_tokens: tokens, total_tokens: tokens } };
    sonic_rs::to_vec(&list).map_err(|e| ApiError::internal(format!("rendering failed: {e}")))
}

/// The standard base64 (RFC 4648, padded) of the little-endian bytes of `v`: the
/// `encoding_format: "base64"` form of a vector.
fn base64_f32(v: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [group[0], group.get(1).copied().unwrap_or(0), group.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            out.push(if k <= group.len() { char::from(ALPHABET[((n >> (18 - 6 * k)) & 63) as usize]) } else { '=' });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Standard base64 decoded (for the test).
    fn unbase64(s: &str) -> Vec<u8> {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let vals: Vec<u32> =
            s.bytes().filter(|b| *b != b'=').map(|b| ALPHABET.iter().position(|a| *a == b).unwrap() as u32).collect();
        let mut out = Vec::new();
        for group in vals.chunks(4) {
            let n = group.iter().enumerate().fold(0u32, |n, (i, v)| n | (v << (18 - 6 * i)));
            out.extend_from_slice(&n.to_be_bytes()[1..group.len()]);
        }
        out
    }

    #[test]
    fn base64_is_the_little_endian_f32_bytes() {
        assert_eq!(base64_f32(&[]), "");
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        for v in [vec![0.5f32], vec![0.1, -0.2], vec![0.25, -1.5, 3.0e-7]] {
            let bytes = unbase64(&base64_f32(&v));
            let back: Vec<f32> = bytes.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            assert_eq!(back, v);
        }
    }

    #[test]
    fn the_list_has_openais_shape_and_floats_read_back_exactly() {
        let vectors = vec![vec![0.1f32, -0.333_333_34], vec![1.0e-7, 0.5]];
        let v: serde_json::Value =
            serde_json::from_slice(&render("gemini-embed", &vectors, false, 7).unwrap()).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "gemini-embed");
        assert_eq!(v["usage"], serde_json::json!({"prompt_tokens": 7, "total_tokens": 7}));
        for (i, want) in vectors.iter().enumerate() {
            assert_eq!(
                (v["data"][i]["object"].as_str(), v["data"][i]["index"].as_u64()),
                (Some("embedding"), Some(i as u64))
            );
            let got: Vec<f32> =
                v["data"][i]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            assert_eq!(&got, want);
        }
        let b: serde_json::Value = serde_json::from_slice(&render("m", &vectors, true, 7).unwrap()).unwrap();
        assert_eq!(b["data"][1]["embedding"], base64_f32(&vectors[1]));
    }

    #[test]
    fn usage_is_the_answers_prompt_tokens() {
        let answer = br#"{"object":"list","data":[{"embedding":[0.5]}],"usage":{"prompt_tokens":5,"total_tokens":5}}"#;
        assert_eq!(answer_usage(answer), Usage { prompt_tokens: 5, ..Usage::default() });
        assert_eq!(answer_usage(br#"{"data":[]}"#), Usage::default());
    }

    #[test]
    fn inputs_are_texts() {
        let parse = |json: &str| -> Option<Vec<String>> {
            let v: LazyValue<'_> = sonic_rs::from_str(json).unwrap();
            match sonic_rs::from_str::<Input<'_>>(v.as_raw_str()).ok()? {
                Input::One(t) => Some(vec![t.into_owned()]),
                Input::Many(l) => Some(l.into_iter().map(Cow::into_owned).collect()),
            }
        };
        assert_eq!(parse(r#""a \"b\"""#), Some(vec!["a \"b\"".to_string()]));
        assert_eq!(parse(r#"["x","y"]"#), Some(vec!["x".to_string(), "y".to_string()]));
        assert_eq!(parse("[1,2,3]"), None);
        assert_eq!(parse("[[1],[2]]"), None);
    }
}
