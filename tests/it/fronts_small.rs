//! Issue 12's smaller front doors over the wire: `GET /v1/models/{id}` (ids with `/`,
//! literal or percent-encoded), `POST /v1/embeddings` in front of `mock_upstream`
//! (passed through to OpenAI-format providers with the model spliced, translated to
//! Gemini's `batchEmbedContents`, fallbacks, token quota and totals, provider errors
//! by kind), and CORS (`[server.cors]`: preflights before auth, the headers of actual
//! answers, errors and streams included, nothing for other origins or without the
//! section, and the `Origin` check of `/ws` upgrades).

use serde_json::{json, Value};

use crate::support::*;

const ALLOWED: &str = "http://app.example";
const OTHER_ORIGIN: &str = "http://evil.example";

/// A gateway in front of `up` with embedding models on every provider kind.
fn gateway(up: &Upstream, extra_server: &str) -> Gateway {
    let a = up.addr;
    Gateway::start(&format!(
        r#"[server]
listen = "127.0.0.1:0"
workers = 1
{extra_server}

[[keys]]
name = "ops"
key = "sk-admin"
role = "admin"

[[keys]]
name = "tokens"
key = "sk-tokens"
tpm = 100

[[providers]]
name = "openai"
kind = "openai"
base_url = "http://{a}/v1"
api_key = "sk-upstream-secret-1"
max_retries = 0
first_byte_timeout_ms = 1000

[[providers]]
name = "azure"
kind = "azure_openai"
base_url = "http://{a}"
api_key = "az-secret-key"
api_version = "2024-10-21"

[[providers]]
name = "gemini"
kind = "gemini"
base_url = "http://{a}"
api_key = "gm-secret-key"
max_retries = 0

[[providers]]
name = "gemini-lenient"
kind = "gemini"
base_url = "http://{a}"
api_key = "gm-secret-key"
drop_unsupported_params = true

[[providers]]
name = "anthropic"
kind = "anthropic"
base_url = "http://{a}"
api_key = "sk-ant-secret-1"

[[providers]]
name = "mock"
kind = "mock"

[[providers]]
name = "dead"
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
api_key = "sk-dead"
max_retries = 0
connect_timeout_ms = 500

[[models]]
id = "org/embed-small"
provider = "openai"
upstream = "text-embedding-3-small"
context_window_fallbacks = ["gemini-embed"]

[[models]]
id = "azure-embed"
provider = "azure"
upstream = "ada-prod"

[[models]]
id = "gemini-embed"
provider = "gemini"
upstream = "text-embedding-004"

[[models]]
id = "gemini-lenient"
provider = "gemini-lenient"
upstream = "text-embedding-004"

[[models]]
id = "claude"
provider = "anthropic"
upstream = "claude-3-5-sonnet"

[[models]]
id = "mock"
provider = "mock"
default = true

[[models]]
id = "dead-embed"
provider = "dead"
fallbacks = ["gemini-embed"]
"#
    ))
}

fn embed(gw: &Gateway, key: &str, body: &Value) -> Response {
    gw.post("/v1/embeddings", Some(key), body)
}

/// A JSON array of numbers as the `f32`s they were written from.
fn f32s(v: &Value) -> Vec<f32> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

/// Base64 (standard, padded) decoded into little-endian `f32`s.
fn f32s_from_base64(s: &str) -> Vec<f32> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let vals: Vec<u32> =
        s.bytes().filter(|b| *b != b'=').map(|b| ALPHABET.iter().position(|a| *a == b).unwrap() as u32).collect();
    let mut bytes = Vec::new();
    for group in vals.chunks(4) {
        let n = group.iter().enumerate().fold(0u32, |n, (i, v)| n | (v << (18 - 6 * i)));
        bytes.extend_from_slice(&n.to_be_bytes()[1..group.len()]);
    }
    bytes.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn prompt_tokens_total(gw: &Gateway) -> u64 {
    let r = gw.get("/api/status", Some("sk-admin"));
    r.json()["data"]["totals"]["promptTokens"].as_u64().unwrap_or_else(|| panic!("{}", r.text()))
}

fn openai_error(r: &Response) -> (u16, String, String, String) {
    let e = &r.json()["error"];
    let text = |k: &str| e[k].as_str().unwrap_or_else(|| panic!("error.{k} in {}", r.text())).to_string();
    (r.status(), text("type"), text("code"), text("message"))
}

// --- GET /v1/models/{id} ---------------------------------------------------------------

#[test]
fn a_model_is_retrieved_by_an_id_with_a_slash_literal_or_percent_encoded() {
    let up = Upstream::start();
    let gw = gateway(&up, "");
    let list = gw.get("/v1/models", Some("sk-admin")).json();
    let listed = list["data"].as_array().unwrap().iter().find(|m| m["id"] == "org/embed-small").unwrap().clone();
    assert_eq!(listed["owned_by"], "openai");
    assert!(listed["created"].as_u64().unwrap() > 1_700_000_000);
    for path in ["/v1/models/org/embed-small", "/v1/models/org%2Fembed-small", "/v1/models/org%2fembed-small/"] {
        let r = gw.get(path, Some("sk-admin"));
        assert_eq!(r.status(), 200, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.json(), listed, "{path}");
        assert_request_id(&r);
    }
    let r = gw.get("/v1/models/mock", Some("sk-admin"));
    let doors =
        json!({"/v1/chat/completions": "translated", "/v1/messages": "translated", "/v1/responses": "translated"});
    assert_eq!(
        r.json(),
        json!({"id": "mock", "object": "model", "created": listed["created"], "owned_by": "mock", "front_doors": doors})
    );
    // An OpenAI model whose context-window fallback is a Gemini model: its embeddings
    // pass through, but a chat chain that may reach Gemini is translated.
    let doors = json!({"/v1/chat/completions": "translated", "/v1/messages": "translated",
        "/v1/responses": "translated", "/v1/embeddings": "passthrough"});
    assert_eq!(listed["front_doors"], doors);
}

#[test]
fn an_unknown_model_id_is_a_404_in_openais_shape() {
    let up = Upstream::start();
    let gw = gateway(&up, "");
    for (path, id) in [("/v1/models/nope/missing", "nope/missing"), ("/v1/models/org%2Fnope", "org/nope")] {
        let r = gw.get(path, Some("sk-admin"));
        assert_eq!(r.status(), 404, "{}", r.text());
        let want = json!({"error": {"message": format!("model {id} is not in the catalogue"),
            "type": "not_found_error", "code": "model_not_found"}});
        assert_eq!(r.json(), want);
    }
    let r = gw.get("/v1/models/org/embed-small", None);
    assert_eq!((r.status(), r.json()["error"]["code"].as_str()), (401, Some("invalid_api_key")));
    let r = gw.post("/v1/models/org/embed-small", Some("sk-admin"), &json!({}));
    assert_eq!((r.status(), r.header("allow")), (405, Some("GET")));
    assert!(r.json()["error"]["type"].is_string(), "OpenAI's shape: {}", r.text());
}

// --- POST /v1/embeddings -----------------------------------------------------------------

#[test]
fn embeddings_pass_through_with_only_the_model_spliced_and_the_answer_untouched() {
    let up = Upstream::start();
    let gw = gateway(&up, "");
    let before = prompt_tokens_total(&gw);
    let sent =
        r#"{ "input": ["hello world", "a second text"], "model" : "org/embed-small","dimensions":4,"user":"u-1"}"#;
    let r =
        gw.send(&req("POST", "/v1/embeddings").key("sk-admin").body(sent).header("content-type", "application/json"));
    assert_eq!(r.status(), 200, "{}", r.text());
    let rec = up.last_request_to("/v1/embeddings");
    assert_eq!(rec["body"], sent.replace("\"org/embed-small\"", "\"text-embedding-3-small\""));
    assert_eq!(rec["headers"]["authorization"], "Bearer sk-upstream-secret-1");
    let mut v = r.json();
    let vectors: Vec<Vec<f32>> = (0..2).map(|i| f32s(&v["data"][i]["embedding"].take())).collect();
    assert_eq!(
        v,
        json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": null},
                {"object": "embedding", "index": 1, "embedding": null}],
            "model": "text-embedding-3-small", "usage": {"prompt_tokens": 5, "total_tokens": 5}})
    );
    assert_eq!(vectors[0].len(), 4);
    assert_ne!(vectors[0], vectors[1]);
    assert_eq!(prompt_tokens_total(&gw) - before, 5, "the provider's usage counts in the totals");

    // Base64 and token ids are the provider's business: carried as sent.
    let b64 = embed(
        &gw,
        "sk-admin",
        &json!({"model": "org/embed-small", "input": "hello world", "dimensions": 4,
        "encoding_format": "base64"}),
    );
    assert_eq!(f32s_from_base64(b64.json()["data"][0]["embedding"].as_str().unwrap()), vectors[0]);
    let ids = embed(&gw, "sk-admin", &json!({"model": "org/embed-small", "input": [[1, 2, 3]]}));
    assert_eq!((ids.status(), ids.json()["usage"]["prompt_tokens"].as_u64()), (200, Some(3)), "{}", ids.text());

    // Azure: the deployment names the model, in the path and the spliced body.
    let r = embed(&gw, "sk-admin", &json!({"model": "azure-embed", "input": "hello world", "dimensions": 4}));
    assert_eq!((r.status(), r.json()["model"].as_str()), (200, Some("ada-prod")), "{}", r.text());
    assert_eq!(f32s(&r.json()["data"][0]["embedding"]), vectors[0]);
    let rec = up.last_request_to("/openai/deployments/ada-prod/embeddings");
    assert_eq!(
        (rec["json"]["model"].as_str(), rec["headers"]["api-key"].as_str()),
        (Some("ada-prod"), Some("az-secret-key"))
    );
}

#[test]
fn gemini_embeddings_are_translated_to_batch_embed_contents() {
    let up = Upstream::start();
    let gw = gateway(&up, "");
    let inputs = ["hello world", "a second text"];
    let reference = embed(&gw, "sk-admin", &json!({"model": "org/embed-small", "input": inputs, "dimensions": 4}));
    let reference: Vec<Vec<f32>> = (0..2).map(|i| f32s(&reference.json()["data"][i]["embedding"])).collect();
    let before = prompt_tokens_total(&gw);

    let r = embed(&gw, "sk-admin", &json!({"model": "gemini-embed", "input": inputs, "dimensions": 4}));
    assert_eq!(r.status(), 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let mut v = r.json();
    let got: Vec<Vec<f32>> = (0..2).map(|i| f32s(&v["data"][i]["embedding"].take())).collect();
    assert_eq!(got, reference, "the same vectors as the OpenAI route");
    // No usage from Gemini: the gateway's estimate (about four bytes a token) of the texts.
    assert_eq!(
        v,
        json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": null},
                {"object": "embedding", "index": 1, "embedding": null}],
            "model": "gemini-embed", "usage": {"prompt_tokens": 7, "total_tokens": 7}})
    );
    assert_eq!(prompt_tokens_total(&gw) - before, 7);
    let rec = up.last_request_to("/v1beta/models/text-embedding-004:batchEmbedContents");
    assert_eq!(
        rec["json"],
        json!({"requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello world"}]}, "outputDimensionality": 4},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a second text"}]}, "outputDimensionality": 4}]})
    );
    assert_eq!(rec["headers"]["x-goog-api-key"], "gm-secret-key");

    // base64: the little-endian f32 bytes of the same vectors; one string, one vector.
    let r = embed(
        &gw,
        "sk-admin",
        &json!({"model": "gemini-embed", "input": "hello world", "dimensions": 4, "encoding_format": "base64"}),
    );
    assert_eq!(r.status(), 200, "{}", r.text());
    let data = r.json()["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 1);
    assert_eq!(f32s_from_base64(data[0]["embedding"].as_str().unwrap()), reference[0]);
    let rec = up.last_request_to("/v1beta/models/text-embedding-004:batchEmbedContents");
    assert!(rec["json"]["requests"][0].get("outputDimensionality").is_some());
}

#[test]
fn what_a_translation_cannot_carry_is_refused_or_dropped_and_listed() {
    let up = Upstream::start();
    let gw = gateway(&up, "");
    let r = embed(&gw, "sk-admin", &json!({"model": "gemini-embed", "input": "x", "user": "u-1"}));
    let (status, kind, _, message) = openai_error(&r);
    assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));
    assert!(
        message.starts_with("`user` cannot be sent to provider gemini (gemini API) serving model gemini-embed"),
        "{message}"
    );
    let r = embed(&gw, "sk-admin", &json!({"model": "gemini-lenient", "input": "x", "user": "u-1"}));
    assert_eq!(r.status(), 200, "{}", r.text());
    assert_eq!(r.header("x-clawgate-dropped-params"), Some("user"));
    let r = embed(&gw, "sk-admin", &json!({"model": "gemini-embed", "input": [[1, 2, 3]]}));
    let (status, _, _, message) = openai_error(&r);
    assert_eq!(status, 400);
    assert!(message.contains("token-id arrays reach OpenAI-format providers only"), "{message}");
    for input in [json!(""), json!([]), json!(["a", ""])] {
        let r = embed(&gw, "sk-admin", &json!({"model": "gemini-embed", "input": input}));
        assert_eq!(r.status(), 400, "{input}: {}", r.text());
    }
}

#[test]
fn embedding_requests_are_checked_before_any_provider_is_called() {
    let up = Upstream::start();
    let gw = gateway(&up, "");
    for (model, provider, kind) in [("claude", "anthropic", "anthropic"), ("mock", "mock", "mock")] {
        let r = embed(&gw, "sk-admin", &json!({"model": model, "input": "x"}));
        let (status, kind_name, _, message) = openai_error(&r);
        assert_eq!((status, kind_name.as_str()), (400, "invalid_request_error"), "{model}");
        assert_eq!(
            message,
            format!(
                "model {model} cannot serve embeddings: its provider {provider} ({kind} API) has no embeddings API \
                 (providers of kind openai, openai_compat, azure_openai and gemini have one)"
            )
        );
    }
    let r = embed(&gw, "sk-admin", &json!({"model": "org/nope", "input": "x"}));
    assert_eq!((r.status(), r.json()["error"]["code"].as_str()), (404, Some("model_not_found")));
    for (body, field) in [
        (json!({"input": "x"}), "missing field `model`"),
        (json!({"model": "org/embed-small"}), "missing field `input`"),
        (json!({"model": "org/embed-small", "input": "x", "encoding_format": "int8"}), "field `encoding_format`"),
        (json!({"model": "org/embed-small", "input": "x", "dimensions": "4"}), "field `dimensions`"),
        (json!({"model": 7, "input": "x"}), "field `model`"),
    ] {
        let r = embed(&gw, "sk-admin", &body);
        let (status, _, _, message) = openai_error(&r);
        assert_eq!(status, 400, "{body}");
        assert!(message.contains(field), "{body}: {message}");
    }
    let r = gw.send(&req("POST", "/v1/embeddings").key("sk-admin").body("[1]"));
    assert_eq!(r.status(), 400);
    let r = gw.post("/v1/embeddings", Some("sk-wrong"), &json!({"model": "org/embed-small", "input": "x"}));
    assert_eq!((r.status(), r.json()["error"]["code"].as_str()), (401, Some("invalid_api_key")));
    assert!(up.requests().iter().all(|r| r["path"] != "/v1/embeddings"), "nothing reached the provider");
}

#[test]
fn provider_failures_reach_embeddings_clients_by_kind() {
    let up = Upstream::start();
    let gw = gateway(&up, "");
    let openai = |input: &str| embed(&gw, "sk-admin", &json!({"model": "org/embed-small", "input": input}));
    // The request refused: 400 with the provider's message, type and code, even for a 404.
    let (status, kind, code, message) = openai_error(&openai("x [fault:status=400]"));
    assert_eq!((status, kind.as_str(), code.as_str()), (400, "invalid_request_error", "INVALID_REQUEST"));
    assert_eq!(message, "provider openai: Invalid request.");
    let (status, kind, code, _) = openai_error(&openai("x [fault:status=404]"));
    assert_eq!((status, kind.as_str(), code.as_str()), (400, "invalid_request_error", "model_not_found"));
    let r = openai("x [fault:status=413]");
    assert_eq!(r.status(), 413, "{}", r.text());
    // The provider's limit: 429 with Retry-After.
    let r = openai("x [fault:status=429,retry-after=3]");
    let (status, kind, _, message) = openai_error(&r);
    assert_eq!((status, kind.as_str()), (429, "rate_limit_error"));
    assert!(message.contains("provider openai rate limit reached"), "{message}");
    assert_eq!(r.header("retry-after"), Some("3"));
    // The gateway's key refused: 502 naming the provider, never the key.
    let r = openai("x [fault:status=401]");
    let (status, kind, _, message) = openai_error(&r);
    assert_eq!((status, kind.as_str()), (502, "server_error"));
    assert!(message.contains("provider openai refused the gateway's credentials"), "{message}");
    assert!(!r.text().contains("sk-upstream-secret-1"));
    assert_eq!(openai("x [fault:status=500]").status(), 502);
    assert_eq!(openai("x [fault:first-byte-ms=3000]").status(), 504);
    // The same kinds through the translation.
    let gemini = |input: &str| embed(&gw, "sk-admin", &json!({"model": "gemini-embed", "input": input}));
    let (status, kind, _, message) = openai_error(&gemini("x [fault:status=400]"));
    assert_eq!((status, kind.as_str()), (400, "INVALID_ARGUMENT"));
    assert!(message.starts_with("provider gemini: "), "{message}");
    assert_eq!(gemini("x [fault:status=500]").status(), 502);
    assert_eq!(gemini("x [fault:status=429]").status(), 429);
}

#[test]
fn fallbacks_serve_embeddings_and_a_context_length_refusal_moves_to_the_context_fallbacks() {
    let up = Upstream::start();
    let gw = gateway(&up, "");
    let r = embed(&gw, "sk-admin", &json!({"model": "dead-embed", "input": "hello world", "dimensions": 4}));
    assert_eq!((r.status(), r.json()["model"].as_str()), (200, Some("gemini-embed")), "{}", r.text());
    let r = embed(
        &gw,
        "sk-admin",
        &json!({"model": "org/embed-small", "input": "long [fault:error=context_length,fail-times=1,fail-key=ctx-embed]",
            "dimensions": 4}),
    );
    assert_eq!((r.status(), r.json()["model"].as_str()), (200, Some("gemini-embed")), "{}", r.text());
}

#[test]
fn embeddings_count_against_the_keys_token_quota() {
    let up = Upstream::start();
    let gw = gateway(&up, "");
    let mut c = gw.conn();
    let five = json!({"model": "org/embed-small", "input": "one two three four five"});
    let r = c.exchange(&req("POST", "/v1/embeddings").key("sk-tokens").json(&five));
    assert_eq!(r.status(), 200, "{}", r.text());
    assert_eq!(r.header("x-ratelimit-limit-tokens"), Some("100"));
    let remaining: u64 = r.header("x-ratelimit-remaining-tokens").unwrap().parse().unwrap();
    assert!((95..=96).contains(&remaining), "settled with the provider's 5: {remaining}");
    // 150 words: settled into debt, and the next request is refused before any call.
    let long = json!({"model": "org/embed-small", "input": vec!["w"; 150].join(" ")});
    assert_eq!(c.exchange(&req("POST", "/v1/embeddings").key("sk-tokens").json(&long)).status(), 200);
    let calls = up.requests().len();
    let r = c.exchange(&req("POST", "/v1/embeddings").key("sk-tokens").json(&five));
    let (status, _, code, _) = openai_error(&r);
    assert_eq!((status, code.as_str()), (429, "rate_limit_exceeded"));
    assert!(r.header("retry-after").is_some());
    assert_eq!(up.requests().len(), calls, "the provider was not called");
}

// --- CORS ----------------------------------------------------------------------------------

const CORS: &str = "[server.cors]\nallow_origins = [\"http://app.example\", \"http://localhost:5173\"]";

fn cors_gateway() -> Gateway {
    Cfg::new().server(CORS).extra("[limits]\nrpm = 6000").start()
}

fn preflight(path: &str, origin: &str) -> Req {
    req("OPTIONS", path).header("Origin", origin).header("Access-Control-Request-Method", "POST").header(
        "Access-Control-Request-Headers",
        "authorization, content-type, x-stainless-os, x-stainless-retry-count",
    )
}

fn cors_headers(r: &Response) -> Vec<(String, String)> {
    r.head.headers.iter().filter(|(n, _)| n.to_ascii_lowercase().starts_with("access-control-")).cloned().collect()
}

#[test]
fn a_preflight_from_a_listed_origin_is_answered_204_before_auth() {
    let gw = cors_gateway();
    let mut c = gw.conn();
    for path in ["/v1/chat/completions", "/v1/embeddings", "/api/chat", "/api/v1/sessions/abc", "/v1/models/org/x"] {
        let r = c.exchange(&preflight(path, ALLOWED));
        assert_eq!(r.status(), 204, "{path}: {}", r.text());
        assert!(r.body.is_empty());
        assert_eq!(r.header("content-length"), None, "a 204 has no Content-Length");
        assert_eq!(r.header("access-control-allow-origin"), Some(ALLOWED));
        assert_eq!(r.header("access-control-allow-methods"), Some("GET, POST, OPTIONS"));
        assert_eq!(
            r.header("access-control-allow-headers"),
            Some(
                "Authorization, Content-Type, X-Session-Id, Last-Event-ID, X-Request-Id, x-api-key, anthropic-version, \
                 anthropic-beta, anthropic-dangerous-direct-browser-access, x-stainless-os, x-stainless-retry-count"
            )
        );
        assert_eq!(r.header("access-control-max-age"), Some("7200"));
        assert_eq!(r.header("vary"), Some("Origin"));
        assert_request_id(&r);
    }
    // The connection stayed usable, and the second listed origin is echoed.
    let r = c.exchange(&preflight("/v1/chat/completions", "http://localhost:5173"));
    assert_eq!((r.status(), r.header("access-control-allow-origin")), (204, Some("http://localhost:5173")));
}

#[test]
fn other_preflights_and_origins_get_no_cors_headers() {
    let gw = cors_gateway();
    // A not-listed origin, a path outside /api and /v1, a bare OPTIONS: the router's 405.
    let r = gw.send(&preflight("/v1/chat/completions", OTHER_ORIGIN));
    assert_eq!((r.status(), r.header("allow")), (405, Some("POST")));
    assert_eq!(cors_headers(&r), Vec::<(String, String)>::new());
    let r = gw.send(&preflight("/health", ALLOWED));
    assert_eq!((r.status(), r.header("allow")), (405, Some("GET")));
    assert_eq!(r.header("access-control-allow-methods"), None);
    let r = gw.send(&req("OPTIONS", "/v1/chat/completions").header("Origin", ALLOWED));
    assert_eq!((r.status(), r.header("allow")), (405, Some("POST")));
    assert_eq!(r.header("access-control-allow-methods"), None);
    assert_eq!(r.header("access-control-allow-origin"), Some(ALLOWED), "an actual (405) answer to a listed origin");
    let r = gw.send(&req("GET", "/v1/models").key(USER).header("Origin", OTHER_ORIGIN));
    assert_eq!(r.status(), 200);
    assert_eq!(cors_headers(&r), Vec::<(String, String)>::new());
    assert_eq!(r.header("vary"), Some("Origin"));
    // Without `[server.cors]` nothing changes: OPTIONS is a 405, no CORS header anywhere.
    let plain = Cfg::new().start();
    let r = plain.send(&preflight("/v1/chat/completions", ALLOWED));
    assert_eq!((r.status(), r.header("allow")), (405, Some("POST")));
    assert_eq!(r.json()["error"]["code"], "METHOD_NOT_ALLOWED");
    assert_eq!(cors_headers(&r), Vec::<(String, String)>::new());
    let r = plain.send(&req("GET", "/v1/models").key(USER).header("Origin", ALLOWED));
    assert_eq!((r.status(), r.header("vary")), (200, None));
    assert_eq!(cors_headers(&r), Vec::<(String, String)>::new());
}

#[test]
fn every_answer_to_a_listed_origin_carries_the_cors_headers() {
    let gw = Cfg::new().server("max_body_bytes = 64").server(CORS).extra("[limits]\nrpm = 6000").start();
    let expose =
        "X-Request-Id, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After, X-Session-Id, \
                  X-Clawgate-Dropped-Params";
    let chat = json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}]});
    let ok = gw.send(&req("POST", "/v1/chat/completions").key(USER).header("Origin", ALLOWED).json(&chat));
    let unauthorized =
        gw.send(&req("POST", "/v1/chat/completions").key("sk-wrong").header("Origin", ALLOWED).json(&chat));
    let not_found = gw.send(&req("GET", "/api/nope").key(USER).header("Origin", ALLOWED));
    let too_large = gw
        .send(&req("POST", "/api/chat").key(USER).header("Origin", ALLOWED).json(&json!({"message": "x".repeat(100)})));
    let stream = gw.send(
        &req("POST", "/api/chat").key(USER).header("Origin", ALLOWED).json(&json!({"message": "s", "stream": true})),
    );
    for (r, status) in [(&ok, 200), (&unauthorized, 401), (&not_found, 404), (&too_large, 413), (&stream, 200)] {
        assert_eq!(r.status(), status, "{}", r.text());
        assert_eq!(r.header("access-control-allow-origin"), Some(ALLOWED), "{status}");
        assert_eq!(r.header("access-control-expose-headers"), Some(expose), "{status}");
        assert_eq!(r.header("vary"), Some("Origin"), "{status}");
        assert_eq!(r.header("access-control-allow-credentials"), None);
    }
    assert!(ok.header("x-ratelimit-limit").is_some() && ok.header("x-request-id").is_some());
    assert!(stream.head.is_chunked() && String::from_utf8_lossy(&stream.body).contains("\"type\":\"done\""));
}

/// A `/ws` upgrade request with `origin`: the response (its head only for a `101`).
fn upgrade(gw: &Gateway, origin: Option<&str>) -> Response {
    let mut r = req("GET", "/ws")
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Sec-WebSocket-Version", "13");
    if let Some(o) = origin {
        r = r.header("Origin", o);
    }
    let mut c = gw.conn();
    c.send(&r.bytes());
    let head = c.read_head();
    if head.status == 101 {
        return Response { head, body: Vec::new(), chunks: Vec::new() };
    }
    c.read_body(head)
}

#[test]
fn websocket_upgrades_from_an_unlisted_origin_are_refused_before_the_upgrade() {
    let gw = cors_gateway();
    let r = upgrade(&gw, Some(OTHER_ORIGIN));
    assert_error(
        &r,
        403,
        "FORBIDDEN",
        "origin http://evil.example may not open /ws: it is not in server.cors.allow_origins",
    );
    assert_eq!(upgrade(&gw, Some(ALLOWED)).status(), 101);
    assert_eq!(upgrade(&gw, None).status(), 101, "clients that are not browsers send no Origin");
    // Without `[server.cors]` any origin may upgrade, as before.
    let plain = Cfg::new().start();
    assert_eq!(upgrade(&plain, Some(OTHER_ORIGIN)).status(), 101);
}
