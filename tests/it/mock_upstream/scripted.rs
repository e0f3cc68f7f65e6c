//! Scripted answers (`reply=`, `stop=`, `cached=`) in OpenAI's and Anthropic's
//! formats, unstreamed and streamed: tool calls (one, two in parallel, after text),
//! thinking, the stop reasons, and usage with cached and reasoning tokens.

use serde_json::{json, Value};

use super::{data, events, post, send, tokens, ANTHROPIC, ARGS, OPENAI};
use crate::support::*;

fn openai_body(message: &str, stream: bool, extra: Value) -> String {
    let mut body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": message}]});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body.to_string()
}

fn anthropic_body(message: &str, stream: bool, extra: Value) -> String {
    let mut body = json!({"model": "claude-x", "max_tokens": 256, "stream": stream,
        "messages": [{"role": "user", "content": message}]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body.to_string()
}

#[test]
fn openai_tool_calls_come_whole_in_json_and_as_argument_deltas_in_streams() {
    let up = Upstream::start();
    let message = "find it [fault:reply=text+tool_calls]";
    let tools =
        json!({"tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]});
    let r = send(&up, &post("/v1/chat/completions", OPENAI, &openai_body(message, false, tools.clone())));
    assert_eq!(r.status(), 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": "Echo: find it", "tool_calls": [
            {"id": "call_mock_1", "type": "function", "function": {"name": "lookup", "arguments": ARGS[0]}},
            {"id": "call_mock_2", "type": "function", "function": {"name": "lookup", "arguments": ARGS[1]}}]})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let completion = 3 + 3 + 2; // the text's words, then each call's arguments
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": tokens(message), "completion_tokens": completion, "total_tokens": tokens(message) + completion})
    );

    let r = send(&up, &post("/v1/chat/completions", OPENAI, &openai_body(message, true, tools)));
    let text = r.text();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let chunks = data(&text);
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    let content: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, "Echo: find it");
    let mut args = [String::new(), String::new()];
    let mut pieces = [0, 0];
    let mut heads = Vec::new();
    for c in &chunks {
        let Some(calls) = c["choices"][0]["delta"]["tool_calls"].as_array() else { continue };
        assert_eq!(calls.len(), 1, "one call per delta: {c}");
        let k = calls[0]["index"].as_u64().unwrap() as usize;
        if calls[0].get("id").is_some() {
            heads.push(calls[0].clone());
        } else {
            assert_eq!(calls[0].as_object().unwrap().len(), 2, "later deltas carry index and arguments: {c}");
            args[k].push_str(calls[0]["function"]["arguments"].as_str().unwrap());
            pieces[k] += 1;
        }
    }
    assert_eq!(
        heads,
        [
            json!({"index": 0, "id": "call_mock_1", "type": "function", "function": {"name": "lookup", "arguments": ""}}),
            json!({"index": 1, "id": "call_mock_2", "type": "function", "function": {"name": "lookup", "arguments": ""}})
        ]
    );
    assert_eq!(args, [ARGS[0], ARGS[1]]);
    assert!(pieces[0] > 2 && pieces[1] > 2, "arguments are split across several deltas: {pieces:?}");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(
        (&finish["choices"][0]["delta"], &finish["choices"][0]["finish_reason"]),
        (&json!({}), &json!("tool_calls"))
    );
    assert_eq!(chunks[chunks.len() - 1]["usage"]["completion_tokens"], completion);

    // A call that opens the answer rides in the role chunk, content null.
    let r =
        send(&up, &post("/v1/chat/completions", OPENAI, &openai_body("go [fault:reply=tool_call]", true, json!({}))));
    let chunks = data(&r.text());
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"index": 0, "id": "call_mock_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]})
    );
    let r =
        send(&up, &post("/v1/chat/completions", OPENAI, &openai_body("go [fault:reply=tool_call]", false, json!({}))));
    assert_eq!(r.json()["choices"][0]["message"]["content"], Value::Null);
}

#[test]
fn openai_usage_details_report_reasoning_and_cached_tokens() {
    let up = Upstream::start();
    let message = "hi [fault:reply=thinking+text,cached=2]";
    let reasoning = 3; // "Thinking about: hi"
    let completion = reasoning + 2;
    let usage = json!({"prompt_tokens": tokens(message), "completion_tokens": completion,
        "total_tokens": tokens(message) + completion,
        "prompt_tokens_details": {"cached_tokens": 2, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}});
    let v = send(&up, &post("/v1/chat/completions", OPENAI, &openai_body(message, false, json!({})))).json();
    assert_eq!(v["choices"][0]["message"], json!({"role": "assistant", "content": "Echo: hi"}));
    assert_eq!(v["usage"], usage);
    let text = send(&up, &post("/v1/chat/completions", OPENAI, &openai_body(message, true, json!({})))).text();
    assert!(!text.contains("Thinking"), "Chat Completions never shows the reasoning: {text}");
    assert_eq!(data(&text).last().unwrap()["usage"], usage);
}

#[test]
fn openai_finish_reasons_for_length_content_filter_and_stop_sequences() {
    let up = Upstream::start();
    for (spec, reason) in
        [("reply=length", "length"), ("stop=content_filter", "content_filter"), ("stop=stop_sequence", "stop")]
    {
        let message = format!("hello [fault:{spec}]");
        let v = send(&up, &post("/v1/chat/completions", OPENAI, &openai_body(&message, false, json!({})))).json();
        assert_eq!(v["choices"][0]["finish_reason"], reason, "{spec}");
        assert_eq!(v["choices"][0]["message"]["content"], "Echo: hello", "{spec}");
        let chunks =
            data(&send(&up, &post("/v1/chat/completions", OPENAI, &openai_body(&message, true, json!({})))).text());
        assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], reason, "{spec}");
    }
}

#[test]
fn anthropic_thinking_text_and_tool_use_blocks_in_json_and_stream() {
    let up = Upstream::start();
    let message = "what time [fault:reply=thinking+text+tool_call,cached=3]";
    let tools = json!({"tools": [{"name": "get_time", "input_schema": {"type": "object"}}]});
    let input: Value = serde_json::from_str(ARGS[0]).unwrap();
    let output = 4 + 3 + 3; // thinking, text, arguments
    let r = send(&up, &post("/v1/messages", ANTHROPIC, &anthropic_body(message, false, tools.clone())));
    assert_eq!(r.status(), 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        v["content"],
        json!([
            {"type": "thinking", "thinking": "Thinking about: what time", "signature": "bW9jay10aGlua2luZy1zaWduYXR1cmU="},
            {"type": "text", "text": "Echo: what time"},
            {"type": "tool_use", "id": "toolu_mock_1", "name": "get_time", "input": input}
        ])
    );
    assert_eq!((&v["stop_reason"], &v["stop_sequence"]), (&json!("tool_use"), &Value::Null));
    assert_eq!(
        v["usage"],
        json!({"input_tokens": tokens(message) - 3, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 3, "output_tokens": output})
    );

    let r = send(&up, &post("/v1/messages", ANTHROPIC, &anthropic_body(message, true, tools)));
    let ev: Vec<(String, Value)> = events(&r.text())
        .into_iter()
        .map(|(n, d)| (n.unwrap_or_default(), serde_json::from_str(&d).unwrap()))
        .collect();
    let shape: Vec<String> = ev
        .iter()
        .map(|(n, d)| match n.as_str() {
            "content_block_start" => format!("start {} {}", d["index"], d["content_block"]["type"].as_str().unwrap()),
            "content_block_delta" => format!("delta {} {}", d["index"], d["delta"]["type"].as_str().unwrap()),
            "content_block_stop" => format!("stop {}", d["index"]),
            other => other.to_string(),
        })
        .collect();
    let pieces = ARGS[0].len().div_ceil(12);
    let mut expected: Vec<String> = [
        "message_start",
        "start 0 thinking",
        "ping",
        "delta 0 thinking_delta",
        "delta 0 thinking_delta",
        "delta 0 signature_delta",
        "stop 0",
        "start 1 text",
        "delta 1 text_delta",
        "stop 1",
        "start 2 tool_use",
        "delta 2 input_json_delta",
    ]
    .map(String::from)
    .to_vec();
    expected.extend(std::iter::repeat_n("delta 2 input_json_delta".to_string(), pieces));
    expected.extend(["stop 2", "message_delta", "message_stop"].map(String::from));
    assert_eq!(shape, expected);
    assert_eq!(
        ev[0].1["message"]["usage"],
        json!({"input_tokens": tokens(message) - 3, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 3, "output_tokens": 1})
    );
    assert_eq!(ev[1].1["content_block"], json!({"type": "thinking", "thinking": "", "signature": ""}));
    assert_eq!(
        ev[10].1["content_block"],
        json!({"type": "tool_use", "id": "toolu_mock_1", "name": "get_time", "input": {}})
    );
    assert_eq!(ev[11].1["delta"], json!({"type": "input_json_delta", "partial_json": ""}), "the first piece is empty");
    let thinking: String = ev.iter().filter_map(|(_, d)| d["delta"]["thinking"].as_str()).collect();
    assert_eq!(thinking, "Thinking about: what time");
    let json_text: String = ev.iter().filter_map(|(_, d)| d["delta"]["partial_json"].as_str()).collect();
    assert_eq!(json_text, ARGS[0]);
    let delta = &ev[ev.len() - 2].1;
    assert_eq!(
        delta,
        &json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": output}})
    );
}

#[test]
fn anthropic_two_parallel_tool_uses_and_the_stop_reasons() {
    let up = Upstream::start();
    let v =
        send(&up, &post("/v1/messages", ANTHROPIC, &anthropic_body("x [fault:reply=tool_calls]", false, json!({}))))
            .json();
    let ids: Vec<&str> = v["content"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["toolu_mock_1", "toolu_mock_2"]);
    assert_eq!(v["content"][1]["input"], serde_json::from_str::<Value>(ARGS[1]).unwrap());

    let stops = [
        ("reply=length", "max_tokens", Value::Null),
        ("reply=content_filter", "refusal", Value::Null),
        ("stop=stop_sequence", "stop_sequence", json!("END")),
    ];
    for (spec, reason, sequence) in stops {
        let message = format!("hello [fault:{spec}]");
        let extra = json!({"stop_sequences": ["END"]});
        let v = send(&up, &post("/v1/messages", ANTHROPIC, &anthropic_body(&message, false, extra.clone()))).json();
        assert_eq!((&v["stop_reason"], &v["stop_sequence"]), (&json!(reason), &sequence), "{spec}");
        assert_eq!(v["content"], json!([{"type": "text", "text": "Echo: hello"}]), "{spec}");
        let r = send(&up, &post("/v1/messages", ANTHROPIC, &anthropic_body(&message, true, extra)));
        let ev = events(&r.text());
        let delta: Value = serde_json::from_str(&ev[ev.len() - 2].1).unwrap();
        assert_eq!(delta["delta"], json!({"stop_reason": reason, "stop_sequence": sequence}), "{spec}");
    }
}
