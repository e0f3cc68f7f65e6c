//! Embeddings in OpenAI's and Gemini's wire formats, with one deterministic vector
//! function behind both, so a test can check that a gateway translating between the
//! two returns the same numbers.
//!
//! OpenAI (platform.openai.com/docs/api-reference/embeddings; also Azure OpenAI's
//! `/openai/deployments/{d}/embeddings`): the request is `{"model","input",
//! "encoding_format"?,"dimensions"?}` with `input` a string, an array of strings, an
//! array of token ids or an array of such arrays; the answer
//! `{"object":"list","data":[{"object":"embedding","index":i,"embedding":[...]}],
//! "model","usage":{"prompt_tokens","total_tokens"}}`, each `embedding` the base64 of
//! the little-endian `f32`s when `encoding_format` is `base64`.
//!
//! Gemini (ai.google.dev/api/embeddings): `models/{model}:embedContent` takes
//! `{"content":{"parts":[{"text"}]},"taskType"?,"title"?,"outputDimensionality"?}` and
//! answers `{"embedding":{"values":[...]}}`; `:batchEmbedContents` takes
//! `{"requests":[{"model":"models/{model}","content",...}]}` (each `model`, when
//! given, must name the model of the path) and answers
//! `{"embeddings":[{"values":[...]},...]}` in request order.
//!
//! The vector of a text with `dims` entries (default 8, at most 8192): a SplitMix64
//! sequence seeded with the FNV-1a hash of the text's bytes, each draw mapped to
//! [-1, 1), normalised to unit length. The same text and size give the same vector on
//! every route; different texts give different vectors; a shorter vector is a
//! rescaled prefix of a longer one. The text is exactly what was sent (a directive
//! included); a Gemini content's text is its parts' `text` joined by a space; a
//! token-id array embeds as its ids written in decimal joined by a space. OpenAI's
//! usage counts whitespace-separated words of the strings and one token per id.
//! The `[fault:...]` directive of the last text applies (see `unary.rs`).

use std::borrow::Cow;

use serde::Deserialize;
use sonic_rs::LazyValue;

use crate::chat::{Content, Invalid};
use crate::json::{push_base64, push_f32, push_num, push_raw, push_str};
use crate::reply::words;

/// Entries per vector when the request does not say.
pub const DEFAULT_DIMS: usize = 8;
/// The largest size accepted (a typo must not build a gigabyte answer).
pub const MAX_DIMS: usize = 8192;

/// The Gemini task types (`TaskType`); any other value is refused as Google does.
const TASK_TYPES: [&str; 9] = [
    "TASK_TYPE_UNSPECIFIED",
    "RETRIEVAL_QUERY",
    "RETRIEVAL_DOCUMENT",
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
];

#[derive(Deserialize)]
struct OpenAiBody<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<LazyValue<'a>>,
    #[serde(borrow, default)]
    encoding_format: Option<Cow<'a, str>>,
    #[serde(default)]
    dimensions: Option<u64>,
}

/// The four shapes of OpenAI's `input`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u64>),
    TokenLists(Vec<Vec<u64>>),
}

/// Gemini's `EmbedContentRequest`.
#[derive(Deserialize)]
struct GeminiRequest<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<Content<'a>>,
    #[serde(borrow, default, rename = "taskType", alias = "task_type")]
    task_type: Option<Cow<'a, str>>,
    #[serde(default, rename = "outputDimensionality", alias = "output_dimensionality")]
    output_dimensionality: Option<u64>,
}

/// Gemini's `BatchEmbedContentsRequest`.
#[derive(Deserialize)]
struct GeminiBatch<'a> {
    #[serde(borrow, default)]
    requests: Option<Vec<GeminiRequest<'a>>>,
}

/// One text to embed.
#[derive(Debug, PartialEq)]
pub struct Item {
    pub text: String,
    /// Its usage: words of a string, ids of a token array.
    pub tokens: u64,
    pub dims: usize,
}

/// What an embeddings request asks for.
#[derive(Debug)]
pub struct Embed {
    /// The request's model (OpenAI; empty for Azure without one).
    pub model: String,
    pub items: Vec<Item>,
    /// `encoding_format: "base64"`.
    pub base64: bool,
}

impl Embed {
    /// The text whose `[fault:...]` directive applies: the last one.
    pub fn last_text(&self) -> &str {
        self.items.last().map_or("", |i| i.text.as_str())
    }
}

/// The vector of `text` with `dims` entries (see the module docs).
pub fn vector(text: &str, dims: usize) -> Vec<f32> {
    // FNV-1a, 64-bit.
    let mut state =
        text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let mut v: Vec<f64> = (0..dims)
        .map(|_| {
            // SplitMix64; the top 24 bits give a uniform draw in [-1, 1).
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f64 / f64::from(1u32 << 23) - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v.into_iter().map(|x| x as f32).collect()
}

/// Checks a requested size.
fn dims(asked: Option<u64>, field: &'static str) -> Result<usize, Invalid> {
    match asked {
        None => Ok(DEFAULT_DIMS),
        Some(n) if (1..=MAX_DIMS as u64).contains(&n) => Ok(n as usize),
        Some(n) => Err(Invalid {
            message: format!("Invalid '{field}': {n}. Expected a value between 1 and {MAX_DIMS}."),
            param: Some(field),
        }),
    }
}

/// Parses OpenAI's (and Azure's) embeddings body. `model` may be left out only when
/// `azure` (the deployment names it).
pub fn parse_openai(body: &[u8], azure: bool) -> Result<Embed, Invalid> {
    let parsed: OpenAiBody<'_> = sonic_rs::from_slice(body).map_err(|e| Invalid {
        message: format!("We could not parse the JSON body of your request. ({e})"),
        param: None,
    })?;
    let model = match parsed.model.filter(|m| !m.is_empty()) {
        Some(m) => m.into_owned(),
        None if azure => String::new(),
        None => return Err(Invalid { message: "Missing required parameter: 'model'.".into(), param: Some("model") }),
    };
    let raw = parsed
        .input
        .as_ref()
        .map(|i| i.as_raw_str())
        .filter(|r| *r != "null")
        .ok_or(Invalid { message: "Missing required parameter: 'input'.".into(), param: Some("input") })?;
    let invalid = || Invalid {
        message:
            "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
                .into(),
        param: Some("input"),
    };
    let input: Input = sonic_rs::from_str(raw).map_err(|_| invalid())?;
    let size = dims(parsed.dimensions, "dimensions")?;
    let ids = |tokens: &[u64]| Item {
        text: tokens.iter().map(u64::to_string).collect::<Vec<_>>().join(" "),
        tokens: tokens.len() as u64,
        dims: size,
    };
    let text = |t: String| Item { tokens: words(&t), text: t, dims: size };
    let items: Vec<Item> = match input {
        Input::Text(t) => vec![text(t)],
        Input::Texts(list) => list.into_iter().map(text).collect(),
        Input::Tokens(list) => vec![ids(&list)],
        Input::TokenLists(lists) => lists.iter().map(|l| ids(l)).collect(),
    };
    if items.is_empty() || items.iter().any(|i| i.text.is_empty()) {
        return Err(invalid());
    }
    let base64 = match parsed.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(Invalid {
                message: format!(
                    "Invalid value for 'encoding_format': '{other}'. Supported values are: 'float' and 'base64'."
                ),
                param: Some("encoding_format"),
            })
        }
    };
    Ok(Embed { model, items, base64 })
}

/// Parses Gemini's `embedContent` body (`batch` false) or `batchEmbedContents` body
/// (`batch` true) for the model `model` of the path.
pub fn parse_gemini(body: &[u8], model: &str, batch: bool) -> Result<Embed, Invalid> {
    let json_error =
        |e: sonic_rs::Error| Invalid { message: format!("Invalid JSON payload received. {e}"), param: None };
    let requests = if batch {
        let parsed: GeminiBatch<'_> = sonic_rs::from_slice(body).map_err(json_error)?;
        parsed.requests.filter(|r| !r.is_empty()).ok_or(Invalid {
            message: "* BatchEmbedContentsRequest.requests: requests is not specified\n".into(),
            param: Some("requests"),
        })?
    } else {
        vec![sonic_rs::from_slice::<GeminiRequest<'_>>(body).map_err(json_error)?]
    };
    let mut items = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        // Where Google's messages place the field: `requests[i].` in a batch.
        let (at, field) = match batch {
            true => (format!("BatchEmbedContentsRequest.requests[{i}]"), format!("requests[{i}].")),
            false => ("EmbedContentRequest".to_string(), String::new()),
        };
        if let Some(named) = r.model.as_deref() {
            if named.strip_prefix("models/").unwrap_or(named) != model {
                return Err(Invalid {
                    message: format!("* {at}.model: model must be models/{model}, the model of the request URL\n"),
                    param: Some("model"),
                });
            }
        }
        if let Some(task) = r.task_type.as_deref().filter(|t| !TASK_TYPES.contains(t)) {
            return Err(Invalid {
                message: format!("Invalid value at '{field}task_type' (type.googleapis.com/google.ai.generativelanguage.v1beta.TaskType), \"{task}\""),
                param: Some("taskType"),
            });
        }
        let text = r.content.as_ref().map(Content::text).filter(|t| !t.is_empty()).ok_or_else(|| Invalid {
            message: format!("* {at}.content: content is not specified\n"),
            param: Some("content"),
        })?;
        let size = dims(r.output_dimensionality, "outputDimensionality")?;
        items.push(Item { tokens: words(&text), text, dims: size });
    }
    Ok(Embed { model: model.to_string(), items, base64: false })
}

/// `[v0,v1,...]`, or the base64 string of the little-endian `f32`s.
fn push_vector(out: &mut Vec<u8>, item: &Item, base64: bool) {
    let v = vector(&item.text, item.dims);
    if base64 {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        out.push(b'"');
        push_base64(out, &bytes);
        out.push(b'"');
        return;
    }
    out.push(b'[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_f32(out, *x);
    }
    out.push(b']');
}

/// OpenAI's `list` of embeddings.
pub fn openai_body(e: &Embed) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + e.items.iter().map(|i| 24 + i.dims * 12).sum::<usize>());
    push_raw(&mut out, "{\"object\":\"list\",\"data\":[");
    for (i, item) in e.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_raw(&mut out, "{\"object\":\"embedding\",\"index\":");
        push_num(&mut out, i as u64);
        push_raw(&mut out, ",\"embedding\":");
        push_vector(&mut out, item, e.base64);
        out.push(b'}');
    }
    let tokens: u64 = e.items.iter().map(|i| i.tokens).sum();
    push_raw(&mut out, "],\"model\":");
    push_str(&mut out, &e.model);
    push_raw(&mut out, ",\"usage\":{\"prompt_tokens\":");
    push_num(&mut out, tokens);
    push_raw(&mut out, ",\"total_tokens\":");
    push_num(&mut out, tokens);
    push_raw(&mut out, "}}");
    out
}

/// Gemini's `EmbedContentResponse` (`batch` false: the first item) or
/// `BatchEmbedContentsResponse`.
pub fn gemini_body(e: &Embed, batch: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + e.items.iter().map(|i| 16 + i.dims * 12).sum::<usize>());
    let values = |out: &mut Vec<u8>, item: &Item| {
        push_raw(out, "{\"values\":");
        push_vector(out, item, false);
        out.push(b'}');
    };
    if batch {
        push_raw(&mut out, "{\"embeddings\":[");
        for (i, item) in e.items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            values(&mut out, item);
        }
        push_raw(&mut out, "]}");
    } else {
        push_raw(&mut out, "{\"embedding\":");
        if let Some(item) = e.items.first() {
            values(&mut out, item);
        } else {
            push_raw(&mut out, "{\"values\":[]}");
        }
        out.push(b'}');
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn norm(v: &[f32]) -> f64 {
        v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt()
    }

    #[test]
    fn vectors_are_unit_length_deterministic_and_differ_between_texts() {
        let a = vector("hello world", 8);
        assert_eq!(a.len(), 8);
        assert!((norm(&a) - 1.0).abs() < 1e-6);
        assert_eq!(a, vector("hello world", 8));
        assert_ne!(a, vector("hello world!", 8));
        let long = vector("hello world", 1536);
        assert!((norm(&long) - 1.0).abs() < 1e-5);
        // A shorter vector is the longer one's prefix, rescaled.
        let ratio = f64::from(long[0]) / f64::from(a[0]);
        assert!(a.iter().zip(&long).all(|(s, l)| (f64::from(*s) * ratio - f64::from(*l)).abs() < 1e-6));
    }

    /// A JSON array of numbers read back as the `f32`s they were written from.
    fn f32s(v: &Value) -> Vec<f32> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
    }

    #[test]
    fn openai_body_has_the_documented_shape() {
        let e = parse_openai(
            br#"{"model":"text-embedding-3-small","input":["hello world","a b c"],"dimensions":4}"#,
            false,
        )
        .unwrap();
        let mut v: Value = serde_json::from_slice(&openai_body(&e)).unwrap();
        for (i, text) in ["hello world", "a b c"].iter().enumerate() {
            let got = v["data"][i]["embedding"].take();
            assert_eq!(f32s(&got), vector(text, 4), "the float text reads back as the same f32");
        }
        assert_eq!(
            v,
            json!({"object": "list", "data": [
                    {"object": "embedding", "index": 0, "embedding": null},
                    {"object": "embedding", "index": 1, "embedding": null}],
                "model": "text-embedding-3-small", "usage": {"prompt_tokens": 5, "total_tokens": 5}})
        );
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let e = parse_openai(br#"{"model":"m","input":"hi","encoding_format":"base64"}"#, false).unwrap();
        let v: Value = serde_json::from_slice(&openai_body(&e)).unwrap();
        let b64 = v["data"][0]["embedding"].as_str().unwrap();
        let bytes = decode_base64(b64);
        let back: Vec<f32> = bytes.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(back, vector("hi", DEFAULT_DIMS));
    }

    #[test]
    fn token_inputs_embed_as_their_ids_and_count_one_token_each() {
        let e = parse_openai(br#"{"model":"m","input":[[1,2,3],[40]]}"#, false).unwrap();
        assert_eq!(e.items[0], Item { text: "1 2 3".into(), tokens: 3, dims: DEFAULT_DIMS });
        assert_eq!(e.items[1].text, "40");
        let e = parse_openai(br#"{"model":"m","input":[5,6]}"#, false).unwrap();
        assert_eq!((e.items.len(), e.items[0].tokens), (1, 2));
    }

    #[test]
    fn openai_refusals_name_the_field() {
        let param = |body: &str, azure| parse_openai(body.as_bytes(), azure).unwrap_err().param;
        assert_eq!(param(r#"{"input":"x"}"#, false), Some("model"));
        assert!(parse_openai(br#"{"input":"x"}"#, true).is_ok(), "Azure names the model by the deployment");
        assert_eq!(param(r#"{"model":"m"}"#, false), Some("input"));
        assert_eq!(param(r#"{"model":"m","input":[]}"#, false), Some("input"));
        assert_eq!(param(r#"{"model":"m","input":""}"#, false), Some("input"));
        assert_eq!(param(r#"{"model":"m","input":["a",1]}"#, false), Some("input"));
        assert_eq!(param(r#"{"model":"m","input":"x","dimensions":0}"#, false), Some("dimensions"));
        assert_eq!(param(r#"{"model":"m","input":"x","encoding_format":"int8"}"#, false), Some("encoding_format"));
    }

    #[test]
    fn gemini_gives_the_same_vectors_as_openai() {
        let one = br#"{"content":{"parts":[{"text":"hello"},{"text":"world"}]},"outputDimensionality":4,"taskType":"RETRIEVAL_QUERY"}"#;
        let e = parse_gemini(one, "text-embedding-004", false).unwrap();
        let v: Value = serde_json::from_slice(&gemini_body(&e, false)).unwrap();
        let openai = parse_openai(br#"{"model":"m","input":"hello world","dimensions":4}"#, false).unwrap();
        let o: Value = serde_json::from_slice(&openai_body(&openai)).unwrap();
        assert_eq!(v, json!({"embedding": {"values": o["data"][0]["embedding"]}}));

        let batch = br#"{"requests":[
            {"model":"models/text-embedding-004","content":{"parts":[{"text":"a"}]}},
            {"model":"models/text-embedding-004","content":{"parts":[{"text":"b"}]},"outputDimensionality":2}]}"#;
        let e = parse_gemini(batch, "text-embedding-004", true).unwrap();
        let v: Value = serde_json::from_slice(&gemini_body(&e, true)).unwrap();
        let list = v["embeddings"].as_array().unwrap();
        assert_eq!(
            (list.len(), list[0]["values"].as_array().unwrap().len(), list[1]["values"].as_array().unwrap().len()),
            (2, 8, 2)
        );
        assert_eq!(e.last_text(), "b");
    }

    #[test]
    fn gemini_refusals_name_the_field() {
        let param = |body: &str, batch| parse_gemini(body.as_bytes(), "g", batch).unwrap_err().param;
        assert_eq!(param(r#"{}"#, false), Some("content"));
        assert_eq!(param(r#"{"requests":[]}"#, true), Some("requests"));
        assert_eq!(
            param(r#"{"requests":[{"model":"models/other","content":{"parts":[{"text":"a"}]}}]}"#, true),
            Some("model")
        );
        assert_eq!(param(r#"{"content":{"parts":[{"text":"a"}]},"taskType":"POETRY"}"#, false), Some("taskType"));
        assert_eq!(
            param(r#"{"content":{"parts":[{"text":"a"}]},"outputDimensionality":9000}"#, false),
            Some("outputDimensionality")
        );
    }

    /// Standard base64 with padding, for the test only.
    fn decode_base64(s: &str) -> Vec<u8> {
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
}
