//! The routes behind the gateway's other front doors: OpenAI's Responses API (JSON
//! and its named event stream), embeddings in OpenAI's, Azure's and Gemini's formats
//! (the same vectors on every route), and Anthropic's `count_tokens`: auth, the
//! record of what was sent, and faults, as on the chat routes.

use serde_json::{json, Value};

use super::{events, post, send, tokens, ANTHROPIC, ARGS, OPENAI};
use crate::support::*;

const GEMINI: &[(&str, &str)] = &[("x-goog-api-key", "AIza-test"), ("Content-Type", "application/json")];
const AZURE_EMBED: &str = "/openai/deployments/ada-prod/embeddings?api-version=2024-10-21";

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

/// A JSON array of numbers as `f32`s.
fn f32s(v: &Value) -> Vec<f32> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[test]
fn embeddings_agree_across_openai_azure_and_gemini() {
    let up = Upstream::start();
    let body = r#"{"model":"text-embedding-3-small","input":["hello world","a second text"],"dimensions":4}"#;
    let r = send(&up, &post("/v1/embeddings", OPENAI, body));
    assert_eq!(r.status(), 200, "{}", r.text());
    assert!(r.header("x-request-id").is_some());
    let mut v = r.json();
    let openai: Vec<Vec<f32>> = (0..2).map(|i| f32s(&v["data"][i]["embedding"].take())).collect();
    assert_eq!(
        v,
        json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": null},
                {"object": "embedding", "index": 1, "embedding": null}],
            "model": "text-embedding-3-small", "usage": {"prompt_tokens": 5, "total_tokens": 5}})
    );
    assert_ne!(openai[0], openai[1]);
    let norm: f32 = openai[0].iter().map(|x| x * x).sum();
    assert!((norm - 1.0).abs() < 1e-5, "unit length: {norm}");
    assert_eq!(up.last_request_to("/v1/embeddings")["json"]["dimensions"], 4);

    let b64 = r#"{"model":"m","input":"hello world","dimensions":4,"encoding_format":"base64"}"#;
    let r = send(&up, &post("/v1/embeddings", OPENAI, b64));
    assert_eq!(f32s_from_base64(r.json()["data"][0]["embedding"].as_str().unwrap()), openai[0]);

    let azure = [("api-key", "azure-test-key")];
    let r = send(&up, &post(AZURE_EMBED, &azure, r#"{"input":"hello world","dimensions":4}"#));
    assert_eq!((r.status(), r.json()["model"].as_str()), (200, Some("ada-prod")), "{}", r.text());
    assert_eq!(f32s(&r.json()["data"][0]["embedding"]), openai[0]);

    let one = r#"{"content":{"parts":[{"text":"hello world"}]},"outputDimensionality":4,"taskType":"RETRIEVAL_QUERY"}"#;
    let r = send(&up, &post("/v1beta/models/text-embedding-004:embedContent", GEMINI, one));
    assert_eq!(r.status(), 200, "{}", r.text());
    assert_eq!(f32s(&r.json()["embedding"]["values"]), openai[0]);
    let batch = json!({"requests": [
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello world"}]}, "outputDimensionality": 4},
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a second text"}]}, "outputDimensionality": 4}]});
    let path = "/v1beta/models/text-embedding-004:batchEmbedContents";
    let r = send(&up, &post(path, GEMINI, &batch.to_string()));
    let list = r.json()["embeddings"].as_array().unwrap().iter().map(|e| f32s(&e["values"])).collect::<Vec<_>>();
    assert_eq!(list, openai);
    assert_eq!(up.last_request_to(path)["headers"]["x-goog-api-key"], "AIza-test");
}

#[test]
fn embeddings_check_keys_and_bodies_and_take_faults_from_the_last_input() {
    let up = Upstream::start();
    let r = send(&up, &post("/v1/embeddings", &[], r#"{"model":"m","input":"x"}"#));
    assert_eq!((r.status(), r.json()["error"]["code"].as_str()), (401, Some("invalid_api_key")));
    let r = send(&up, &post("/v1/embeddings", OPENAI, r#"{"model":"m","input":[]}"#));
    assert_eq!((r.status(), r.json()["error"]["param"].as_str()), (400, Some("input")));
    let r = send(&up, &post(AZURE_EMBED.split('?').next().unwrap(), &[("api-key", "k")], r#"{"input":"x"}"#));
    assert_eq!((r.status(), r.json()["error"]["code"].as_str()), (404, Some("404")), "api-version is required");
    let gemini = "/v1beta/models/text-embedding-004:embedContent";
    let r = send(&up, &post(gemini, &[], r#"{"content":{"parts":[{"text":"x"}]}}"#));
    assert_eq!((r.status(), r.json()["error"]["status"].as_str()), (401, Some("UNAUTHENTICATED")));

    let body = r#"{"model":"m","input":["fine","bad [fault:status=400]"]}"#;
    let r = send(&up, &post("/v1/embeddings", OPENAI, body));
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json(),
        json!({"error": {"message": "Invalid request.", "type": "invalid_request_error", "param": null, "code": null}})
    );
    let body = r#"{"content":{"parts":[{"text":"x [fault:error=rate_limit,retry-after=4]"}]}}"#;
    let r = send(&up, &post(gemini, GEMINI, body));
    assert_eq!((r.status(), r.header("retry-after")), (429, Some("4")));
    assert_eq!(r.json()["error"]["status"], "RESOURCE_EXHAUSTED");
    let body = r#"{"model":"m","input":"x [fault:status=503,fail-times=1,fail-key=emb]"}"#;
    let statuses: Vec<u16> = (0..2).map(|_| send(&up, &post("/v1/embeddings", OPENAI, body)).status()).collect();
    assert_eq!(statuses, [503, 200]);
    assert_eq!(up.stats()["byPath"]["/v1/embeddings"], 5);
}

#[test]
fn responses_answer_the_response_object() {
    let up = Upstream::start();
    let body = r#"{"model":"gpt-4.1","input":"hello there","instructions":"be brief","max_output_tokens":64}"#;
    let r = send(&up, &post("/v1/responses", OPENAI, body));
    assert_eq!(r.status(), 200, "{}", r.text());
    assert!(r.header("x-request-id").is_some());
    let mut v = r.json();
    let id = v["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("resp_") && v["created_at"].as_u64().unwrap() > 0, "{v}");
    let item_id = format!("msg_{}_0", &id["resp_".len()..]);
    v["id"] = json!("*");
    v["created_at"] = json!(0);
    let prompt = tokens("hello there") + tokens("be brief");
    assert_eq!(
        v,
        json!({"id": "*", "object": "response", "created_at": 0, "status": "completed", "error": null,
            "incomplete_details": null, "instructions": "be brief", "max_output_tokens": 64, "model": "gpt-4.1",
            "output": [{"type": "message", "id": item_id, "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": "Echo: hello there", "annotations": []}]}],
            "parallel_tool_calls": true, "previous_response_id": null, "reasoning": {"effort": null, "summary": null},
            "store": true, "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
            "top_p": 1.0, "truncation": "disabled",
            "usage": {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 3,
                "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": prompt + 3},
            "user": null, "metadata": {}})
    );
    assert_eq!(up.stats()["lastRequest"]["body"]["instructions"], "be brief");

    let tools = json!([{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]);
    let body = json!({"model": "gpt-4.1", "tools": tools, "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather? [fault:reply=tool_call]"}]}]});
    let v = send(&up, &post("/v1/responses", OPENAI, &body.to_string())).json();
    assert_eq!(
        (v["output"][0]["type"].as_str(), v["output"][0]["name"].as_str()),
        (Some("function_call"), Some("get_weather"))
    );
    assert_eq!(
        (v["output"][0]["call_id"].as_str(), v["output"][0]["arguments"].as_str()),
        (Some("call_mock_1"), Some(ARGS[0]))
    );
    assert_eq!(v["tools"], tools);

    let v =
        send(&up, &post("/v1/responses", OPENAI, r#"{"model":"m","input":"a long story [fault:stop=length]"}"#)).json();
    assert_eq!(
        (v["status"].as_str(), v["incomplete_details"]["reason"].as_str()),
        (Some("incomplete"), Some("max_output_tokens"))
    );

    let r = send(&up, &post("/v1/responses", &[], body.to_string().as_str()));
    assert_eq!(r.status(), 401);
    let r = send(&up, &post("/v1/responses", OPENAI, r#"{"model":"m","input":"x [fault:status=429,retry-after=2]"}"#));
    assert_eq!(
        (r.status(), r.header("retry-after"), r.json()["error"]["code"].as_str()),
        (429, Some("2"), Some("rate_limit_exceeded"))
    );
    let r = send(&up, &post("/v1/responses", OPENAI, r#"{"input":"x"}"#));
    assert_eq!((r.status(), r.json()["error"]["param"].as_str()), (400, Some("model")));
}

#[test]
fn responses_stream_the_named_events_in_order() {
    let up = Upstream::start();
    let body = r#"{"model":"gpt-4.1","input":"one two three four five","stream":true}"#;
    let r = send(&up, &post("/v1/responses", OPENAI, body));
    assert_eq!(r.status(), 200);
    assert!(r.header("content-type").unwrap().starts_with("text/event-stream"));
    let ev: Vec<(String, Value)> =
        events(&r.text()).into_iter().map(|(n, d)| (n.unwrap(), serde_json::from_str(&d).unwrap())).collect();
    for (i, (name, data)) in ev.iter().enumerate() {
        assert_eq!((data["type"].as_str(), data["sequence_number"].as_u64()), (Some(name.as_str()), Some(i as u64)));
    }
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let deltas: String = ev[4..6].iter().map(|(_, d)| d["delta"].as_str().unwrap()).collect();
    assert_eq!(deltas, "Echo: one two three four five");
    assert_eq!(ev[9].1["response"]["output"][0]["content"][0]["text"], deltas);
    assert_eq!(ev[0].1["response"]["id"], ev[9].1["response"]["id"]);

    let body = r#"{"model":"m","input":"weather? [fault:reply=tool_call,stream-error=2]","stream":true}"#;
    let ev = events(&send(&up, &post("/v1/responses", OPENAI, body)).text());
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "error"
        ]
    );
    assert_eq!(up.stats()["streams"], 2);
}

#[test]
fn count_tokens_matches_the_messages_input_tokens() {
    let up = Upstream::start();
    let body = json!({"model": "claude-sonnet-4", "system": "be brief",
        "messages": [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "hi"},
            {"role": "user", "content": [{"type": "text", "text": "and again"}]}]});
    let r = send(&up, &post("/v1/messages/count_tokens", ANTHROPIC, &body.to_string()));
    assert_eq!(r.status(), 200, "{}", r.text());
    assert!(r.header("request-id").is_some());
    let want = tokens("be brief") + tokens("hello there") + tokens("hi") + tokens("and again");
    assert_eq!(r.json(), json!({"input_tokens": want}));
    let mut with_max = body.clone();
    with_max["max_tokens"] = json!(16);
    let m = send(&up, &post("/v1/messages", ANTHROPIC, &with_max.to_string())).json();
    assert_eq!(m["usage"]["input_tokens"], want);
    assert_eq!(up.last_request_to("/v1/messages/count_tokens")["json"], body);

    let r = send(&up, &post("/v1/messages/count_tokens", &[("x-api-key", "k")], &body.to_string()));
    assert_eq!((r.status(), r.json()["error"]["type"].as_str()), (400, Some("invalid_request_error")));
    let r = send(&up, &post("/v1/messages/count_tokens", ANTHROPIC, r#"{"model":"c"}"#));
    assert_eq!((r.status(), r.json()["error"]["message"].as_str()), (400, Some("messages: Field required")));
    let faulty = r#"{"model":"c","messages":[{"role":"user","content":"x [fault:error=overloaded]"}]}"#;
    let r = send(&up, &post("/v1/messages/count_tokens", ANTHROPIC, faulty));
    assert_eq!((r.status(), r.json()["error"]["type"].as_str()), (529, Some("overloaded_error")));
}
