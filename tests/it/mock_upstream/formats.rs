//! The Gemini and Azure OpenAI routes: auth, required parameters, the answers' exact
//! shapes (JSON, SSE, Gemini's streamed JSON array) and their scripted variants.

use serde_json::{json, Value};

use super::{data, events, post, send, tokens, ARGS};
use crate::support::*;

const GEMINI: &[(&str, &str)] = &[("x-goog-api-key", "AIza-test"), ("Content-Type", "application/json")];
const AZURE: &[(&str, &str)] = &[("api-key", "azure-test-key"), ("Content-Type", "application/json")];
const GENERATE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
const STREAM: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";
const DEPLOYMENT: &str = "/openai/deployments/gpt4o-prod/chat/completions";

fn gemini_body(message: &str, extra: Value) -> String {
    let mut body = json!({"contents": [{"role": "user", "parts": [{"text": message}]}]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body.to_string()
}

/// The response without its random `responseId` (checked to be there).
fn masked(mut v: Value) -> Value {
    assert!(v["responseId"].as_str().is_some_and(|id| !id.is_empty()), "{v}");
    v["responseId"] = json!("*");
    v
}

#[test]
fn gemini_generate_content_answers_in_googles_shapes() {
    let up = Upstream::start();
    let body = json!({"systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [{"role": "user", "parts": [{"text": "hello there"}]}]})
    .to_string();
    let r = send(&up, &post(GENERATE, GEMINI, &body));
    assert_eq!(r.status(), 200, "{}", r.text());
    let prompt = tokens("be brief") + tokens("hello there");
    assert_eq!(
        masked(r.json()),
        json!({"candidates": [{"content": {"parts": [{"text": "Echo: hello there"}], "role": "model"},
                "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": 3, "totalTokenCount": prompt + 3,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]},
            "modelVersion": "gemini-2.5-flash", "responseId": "*"})
    );
    let sent = up.last_request_to(GENERATE);
    assert_eq!(sent["headers"]["x-goog-api-key"], "AIza-test");
    assert_eq!(sent["json"]["contents"][0]["parts"][0]["text"], "hello there");

    let r = send(&up, &post(GENERATE, &[], &body));
    assert_eq!(r.status(), 401);
    assert_eq!(
        (r.json()["error"]["code"].as_u64(), r.json()["error"]["status"].as_str()),
        (Some(401), Some("UNAUTHENTICATED"))
    );
    let r = send(&up, &post(GENERATE, &[("x-goog-api-key", "invalid-key")], &body));
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json(),
        json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]}})
    );
    let r = send(&up, &post(GENERATE, GEMINI, "{}"));
    assert_eq!((r.status(), r.json()["error"]["status"].as_str()), (400, Some("INVALID_ARGUMENT")));
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("contents"));
    let r = send(&up, &post("/v1beta/models/gemini-2.5-flash:countTokens", GEMINI, &body));
    assert_eq!((r.status(), r.json()["error"]["status"].as_str()), (404, Some("NOT_FOUND")));
    let list = send(&up, &req("GET", "/v1beta/models").header("Connection", "close").header("x-goog-api-key", "k"));
    assert_eq!(list.json()["models"][0]["name"], "models/gemini-2.5-flash");
}

#[test]
fn gemini_streams_as_sse_or_as_one_json_array() {
    let up = Upstream::start();
    let message = "one two three four [fault:reply=text+tool_call]";
    let body = gemini_body(message, json!({"tools": [{"functionDeclarations": [{"name": "lookup"}]}]}));
    let r = send(&up, &post(&format!("{STREAM}?alt=sse"), GEMINI, &body));
    assert_eq!(r.status(), 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/event-stream; charset=utf-8"));
    let text = r.text();
    assert!(!text.contains("[DONE]") && !text.contains("event:"), "{text}");
    let chunks = data(&text);
    let parts: Vec<&Value> = chunks.iter().map(|c| &c["candidates"][0]["content"]["parts"][0]).collect();
    let content: String = parts.iter().filter_map(|p| p["text"].as_str()).collect();
    assert_eq!(content, "Echo: one two three four");
    let calls: Vec<&&Value> = parts.iter().filter(|p| p.get("functionCall").is_some()).collect();
    let args: Value = serde_json::from_str(ARGS[0]).unwrap();
    assert_eq!(calls, [&&json!({"functionCall": {"name": "lookup", "args": args}})], "a call arrives whole");
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c["candidates"][0].get("finishReason").is_none()));
    assert_eq!(
        chunks[0]["usageMetadata"],
        json!({"promptTokenCount": tokens(message), "totalTokenCount": tokens(message)})
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP", "STOP after a function call too");
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 5 + 3);

    let r = send(&up, &post(STREAM, GEMINI, &body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.head.is_chunked());
    let array: Vec<Value> = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()));
    assert_eq!(array.len(), chunks.len());
    assert_eq!(array.last().unwrap()["candidates"][0]["finishReason"], "STOP");
    assert!(r.chunks[0].starts_with(b"[{"), "streamed element by element: {:?}", r.chunks.len());
}

#[test]
fn gemini_thoughts_max_tokens_safety_and_cached_tokens() {
    let up = Upstream::start();
    let thoughts = json!({"generationConfig": {"thinkingConfig": {"includeThoughts": true}}});
    let v = send(&up, &post(GENERATE, GEMINI, &gemini_body("hi [fault:reply=thinking+text]", thoughts))).json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"],
        json!([{"text": "Thinking about: hi", "thought": true}, {"text": "Echo: hi"}])
    );
    assert_eq!(
        (&v["usageMetadata"]["thoughtsTokenCount"], &v["usageMetadata"]["candidatesTokenCount"]),
        (&json!(3), &json!(2))
    );
    let v = send(&up, &post(GENERATE, GEMINI, &gemini_body("hi [fault:reply=thinking+text]", json!({})))).json();
    assert_eq!(v["candidates"][0]["content"]["parts"], json!([{"text": "Echo: hi"}]), "thoughts only when asked for");
    assert_eq!(v["usageMetadata"]["totalTokenCount"], tokens("hi [fault:reply=thinking+text]") + 2 + 3);

    let v = send(&up, &post(GENERATE, GEMINI, &gemini_body("hi [fault:reply=length,cached=4]", json!({})))).json();
    assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(v["usageMetadata"]["cachedContentTokenCount"], 4);
    assert_eq!(
        v["usageMetadata"]["promptTokenCount"],
        tokens("hi [fault:reply=length,cached=4]"),
        "cached tokens are part of the prompt"
    );

    let v = send(&up, &post(GENERATE, GEMINI, &gemini_body("hi [fault:stop=content_filter]", json!({})))).json();
    let candidate = &v["candidates"][0];
    assert!(candidate.get("content").is_none(), "{v}");
    assert_eq!(candidate["finishReason"], "SAFETY");
    let blocked: Vec<&Value> =
        candidate["safetyRatings"].as_array().unwrap().iter().filter(|r| r["blocked"] == true).collect();
    assert_eq!(
        blocked,
        [&json!({"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true})]
    );
}

#[test]
fn azure_requires_api_key_and_api_version_and_answers_like_openai() {
    let up = Upstream::start();
    let path = format!("{DEPLOYMENT}?api-version=2024-10-21");
    let body = json!({"messages": [{"role": "user", "content": "hi there"}]}).to_string();
    let denied = json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}});
    let r = send(&up, &post(&path, &[("Authorization", "Bearer sk-openai-style")], &body));
    assert_eq!((r.status(), r.json()), (401, denied.clone()));
    let r = send(&up, &post(&path, &[("api-key", "invalid")], &body));
    assert_eq!((r.status(), r.json()), (401, denied));
    let not_found = json!({"error": {"code": "404", "message": "Resource not found"}});
    let r = send(&up, &post(DEPLOYMENT, AZURE, &body));
    assert_eq!((r.status(), r.json()), (404, not_found.clone()));
    let r = send(&up, &post("/openai/deployments/gpt4o-prod/completions?api-version=2024-10-21", AZURE, &body));
    assert_eq!((r.status(), r.json()), (404, not_found));

    let r = send(&up, &post(&path, AZURE, &body));
    assert_eq!(r.status(), 200, "{}", r.text());
    let v = r.json();
    assert_eq!((v["object"].as_str(), v["model"].as_str()), (Some("chat.completion"), Some("gpt4o-prod")));
    assert_eq!(v["choices"][0]["message"], json!({"role": "assistant", "content": "Echo: hi there"}));
    let safe = json!({"filtered": false, "severity": "safe"});
    let results = json!({"hate": safe, "self_harm": safe, "sexual": safe, "violence": safe});
    assert_eq!(v["choices"][0]["content_filter_results"], results);
    assert_eq!(v["prompt_filter_results"], json!([{"prompt_index": 0, "content_filter_results": results}]));
    let sent = up.last_request_to(DEPLOYMENT);
    assert_eq!(
        (sent["query"].as_str(), sent["headers"]["api-key"].as_str()),
        (Some("api-version=2024-10-21"), Some("azure-test-key"))
    );

    let stream =
        json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi there"}]}).to_string();
    let chunks = data(&send(&up, &post(&path, AZURE, &stream)).text());
    assert_eq!(
        chunks[0],
        json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": results}]})
    );
    assert_eq!(chunks[1]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    assert_eq!(chunks[1]["model"], "gpt-4o", "the body's model when it names one");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");

    let filtered = json!({"messages": [{"role": "user", "content": "x [fault:stop=content_filter]"}]}).to_string();
    let v = send(&up, &post(&path, AZURE, &filtered)).json();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(v["choices"][0]["content_filter_results"]["violence"], json!({"filtered": true, "severity": "high"}));

    let limited = json!({"messages": [{"role": "user", "content": "x [fault:error=rate_limit]"}]}).to_string();
    let r = send(&up, &post(&path, AZURE, &limited));
    assert_eq!((r.status(), r.header("retry-after")), (429, Some("1")));
    assert_eq!(r.json()["error"]["code"], "429");
    let long = json!({"messages": [{"role": "user", "content": "x [fault:error=context_length]"}]}).to_string();
    let r = send(&up, &post(&path, AZURE, &long));
    assert_eq!((r.status(), r.json()["error"]["code"].as_str()), (400, Some("context_length_exceeded")));
    let events = events(&send(&up, &post(&path, AZURE, &stream)).text());
    assert_eq!(events.last().map(|(_, d)| d.as_str()), Some("[DONE]"));
}
