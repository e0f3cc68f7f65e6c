//! Lossless translation (issue 11): what an OpenAI client sends reaches a provider of
//! another format (Anthropic here) as that provider's documented shapes, and what the
//! provider answers comes back in OpenAI's shapes. The mock upstream records the exact
//! body it received (`/__mock/requests`) and answers with payloads copied from each
//! provider's documentation, chosen by `[fault:reply=...]` / `[fault:stop=...]`.

use serde_json::{json, Value};

use crate::providers::{gateway, v1_stream};
use crate::support::*;

const ANTHROPIC_PATH: &str = "/v1/messages";

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
    }})
}

fn v1(gw: &Gateway, body: &Value) -> Response {
    gw.post("/v1/chat/completions", Some("sk-admin"), body)
}

#[test]
fn tools_reach_anthropic_as_its_tools_and_the_tool_call_comes_back_in_openai_shape() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    let r = v1(
        &gw,
        &json!({"model": "claude", "tools": [weather_tool()], "tool_choice": "auto",
            "messages": [{"role": "user", "content": "Weather in SF? [fault:reply=tool_call]"}]}),
    );
    assert_eq!(r.status(), 200, "{}", r.text());
    let sent = up.last_request_to(ANTHROPIC_PATH)["json"].clone();
    assert_eq!(
        sent["tools"],
        json!([{"name": "get_weather", "description": "Current weather in a city",
            "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}])
    );
    assert_eq!(sent["tool_choice"], json!({"type": "auto"}));
    let v = r.json();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    assert_eq!(choice["message"]["content"], Value::Null, "{v}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_mock_1");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"location": "San Francisco, CA", "unit": "celsius"}));
}

#[test]
fn a_tool_result_follow_up_reaches_anthropic_as_tool_use_and_tool_result_blocks() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    let r = v1(
        &gw,
        &json!({"model": "claude", "tools": [weather_tool()], "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "Weather in SF?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"location\":\"SF\"}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C and sunny"}
        ]}),
    );
    assert_eq!(r.status(), 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["finish_reason"], "stop");
    let sent = up.last_request_to(ANTHROPIC_PATH)["json"].clone();
    assert_eq!(sent["system"], "be brief");
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Weather in SF?"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                "input": {"location": "SF"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C and sunny"}]}
        ])
    );
}

#[test]
fn streamed_tool_calls_from_anthropic_arrive_as_openai_tool_call_deltas() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    let events = v1_stream(
        &gw,
        "sk-admin",
        &json!({"model": "claude", "stream": true, "tools": [weather_tool()],
            "messages": [{"role": "user", "content": "Weather? [fault:reply=tool_calls]"}]}),
    );
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        events.iter().filter(|e| *e != "[DONE]").map(|e| serde_json::from_str(e).unwrap()).collect();
    let mut args = [String::new(), String::new()];
    let mut names = [Value::Null, Value::Null];
    for c in &chunks {
        for call in c["choices"][0]["delta"]["tool_calls"].as_array().into_iter().flatten() {
            let i = call["index"].as_u64().unwrap() as usize;
            if !call["function"]["name"].is_null() {
                assert_eq!(call["type"], "function", "the first piece names the call: {call}");
                assert!(call["id"].as_str().is_some_and(|id| id.starts_with("toolu_")), "{call}");
                names[i] = call["function"]["name"].clone();
            }
            args[i].push_str(call["function"]["arguments"].as_str().unwrap());
        }
    }
    assert_eq!(names, [json!("get_weather"), json!("get_weather")]);
    let parsed: Vec<Value> = args.iter().map(|a| serde_json::from_str(a).unwrap()).collect();
    assert_eq!(parsed[0]["location"], "San Francisco, CA");
    assert_eq!(parsed[1]["location"], "Tokyo, Japan");
    let finish: Vec<&Value> =
        chunks.iter().map(|c| &c["choices"][0]["finish_reason"]).filter(|f| !f.is_null()).collect();
    assert_eq!(finish, [&json!("tool_calls")]);
}

#[test]
fn max_tokens_in_both_spellings_temperature_and_stop_reach_anthropic() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    for spelling in ["max_tokens", "max_completion_tokens"] {
        let mut body = json!({"model": "claude", "temperature": 0.2, "top_p": 0.9, "stop": ["END"], "user": "u-42",
            "messages": [{"role": "user", "content": "hi"}]});
        body[spelling] = json!(50);
        let r = v1(&gw, &body);
        assert_eq!(r.status(), 200, "{}", r.text());
        let sent = up.last_request_to(ANTHROPIC_PATH)["json"].clone();
        assert_eq!(sent["max_tokens"], 50, "{spelling}: {sent}");
        assert_eq!(sent["temperature"], 0.2);
        assert_eq!(sent["top_p"], 0.9);
        assert_eq!(sent["stop_sequences"], json!(["END"]));
        assert_eq!(sent["metadata"], json!({"user_id": "u-42"}));
    }
}

#[test]
fn finish_reasons_are_the_providers_mapped() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    for (fault, want) in [("stop=length", "length"), ("stop=content_filter", "content_filter"), ("reply=text", "stop")]
    {
        let r = v1(
            &gw,
            &json!({"model": "claude", "messages": [{"role": "user", "content": format!("hi [fault:{fault}]")}]}),
        );
        assert_eq!(r.json()["choices"][0]["finish_reason"], want, "{fault}: {}", r.text());
    }
}

#[test]
fn a_setting_anthropic_cannot_carry_is_refused_naming_it_or_dropped_when_configured() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    let before = up.requests().len();
    let r = v1(&gw, &json!({"model": "claude", "n": 2, "seed": 7, "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(r.status(), 400, "{}", r.text());
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.starts_with("`seed`, `n` cannot be sent to provider anthropic (anthropic API)"), "{message}");
    assert_eq!(up.requests().len(), before, "nothing was sent upstream");

    let gw = gateway(&up, None, "", "max_retries = 0\ndrop_unsupported_params = true");
    let r = v1(&gw, &json!({"model": "claude", "n": 2, "seed": 7, "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(r.status(), 200, "{}", r.text());
    assert_eq!(r.header("x-clawgate-dropped-params"), Some("seed, n"));
    let sent = up.last_request_to(ANTHROPIC_PATH)["json"].clone();
    assert!(sent.get("seed").is_none() && sent.get("n").is_none(), "{sent}");
}

#[test]
fn image_parts_reach_anthropic_as_image_blocks() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    let r = v1(
        &gw,
        &json!({"model": "claude", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
        ]}]}),
    );
    assert_eq!(r.status(), 200, "{}", r.text());
    let sent = up.last_request_to(ANTHROPIC_PATH)["json"].clone();
    assert_eq!(
        sent["messages"][0]["content"],
        json!([
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
        ])
    );
}

#[test]
fn usage_details_come_back_in_openai_shape() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    let r = v1(&gw, &json!({"model": "claude", "messages": [{"role": "user", "content": "hi [fault:cached=5]"}]}));
    assert_eq!(r.status(), 200, "{}", r.text());
    let usage = &r.json()["usage"];
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 5, "{usage}");
    let total = usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap();
    assert_eq!(usage["total_tokens"], total);
}

#[test]
fn gemini_gets_its_own_shapes_and_answers_in_openai_shape_with_tools() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    let r = v1(
        &gw,
        &json!({"model": "gemini", "max_tokens": 40, "temperature": 0.3, "tools": [weather_tool()],
            "messages": [{"role": "system", "content": "be brief"},
                {"role": "user", "content": "Weather? [fault:reply=tool_call]"}]}),
    );
    assert_eq!(r.status(), 200, "{}", r.text());
    let seen = up.last_request_to("/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(seen["headers"]["x-goog-api-key"], "gm-secret-key");
    let sent = &seen["json"];
    assert_eq!(sent["systemInstruction"], json!({"parts": [{"text": "be brief"}]}));
    assert_eq!(sent["contents"][0]["role"], "user");
    assert_eq!(sent["generationConfig"], json!({"maxOutputTokens": 40, "temperature": 0.3}));
    assert_eq!(sent["tools"][0]["functionDeclarations"][0]["name"], "get_weather");
    let choice = &r.json()["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{}", r.text());
    assert_eq!(choice["message"]["tool_calls"][0]["function"]["name"], "get_weather");
    // The follow-up names the call's function in Gemini's functionResponse.
    let call = choice["message"]["tool_calls"][0].clone();
    let r = v1(
        &gw,
        &json!({"model": "gemini", "tools": [weather_tool()], "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": null, "tool_calls": [call.clone()]},
            {"role": "tool", "tool_call_id": call["id"], "content": "18C"}]}),
    );
    assert_eq!(r.status(), 200, "{}", r.text());
    let sent = up.last_request_to("/v1beta/models/gemini-2.5-flash:generateContent")["json"].clone();
    assert_eq!(
        sent["contents"][2],
        json!({"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": "18C"}}}]})
    );
}

#[test]
fn gemini_streams_become_openai_chunks() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    let events = v1_stream(
        &gw,
        "sk-admin",
        &json!({"model": "gemini", "stream": true, "messages": [{"role": "user", "content": "one two three"}]}),
    );
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        events.iter().filter(|e| *e != "[DONE]").map(|e| serde_json::from_str(e).unwrap()).collect();
    let text: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string)).collect();
    assert!(text.contains("one two three"), "{text}");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
    let seen = up.last_request_to("/v1beta/models/gemini-2.5-flash:streamGenerateContent");
    assert_eq!(seen["query"], "alt=sse");
}

#[test]
fn azure_gets_the_deployment_path_api_version_and_api_key() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    let r = v1(
        &gw,
        &json!({"model": "azure", "messages": [{"role": "user", "content": "hi [fault:reply=tool_call]"}],
        "tools": [weather_tool()]}),
    );
    assert_eq!(r.status(), 200, "{}", r.text());
    let seen = up.last_request_to("/openai/deployments/my-gpt4o/chat/completions");
    assert_eq!(seen["query"], "api-version=2024-10-21");
    assert_eq!(seen["headers"]["api-key"], "az-secret-key");
    assert!(seen["headers"].get("authorization").is_none(), "{seen}");
    assert_eq!(r.json()["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn compressed_answers_are_decoded_on_every_path_and_never_relayed_coded() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    // Pass-through (gpt), translated (claude), streamed translated and streamed relayed.
    for model in ["gpt", "claude"] {
        for coding in ["gzip", "deflate"] {
            let body = json!({"model": model, "messages": [{"role": "user", "content": format!("one two [fault:encoding={coding}]")}]});
            let r = v1(&gw, &body);
            assert_eq!(r.status(), 200, "{model} {coding}: {}", r.text());
            assert!(r.header("content-encoding").is_none());
            let text = r.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string();
            assert!(text.contains("one two"), "{model} {coding}: {text}");
            let mut streamed = body.clone();
            streamed["stream"] = json!(true);
            let events = v1_stream(&gw, "sk-admin", &streamed);
            assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{model} {coding}");
            let text: String = events
                .iter()
                .filter(|e| *e != "[DONE]")
                .map(|e| serde_json::from_str::<Value>(e).unwrap())
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
                .collect();
            assert!(text.contains("one two"), "{model} {coding} stream: {text}");
        }
    }
}

#[test]
fn a_tool_call_turn_survives_in_the_session_history() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    let with_session = |body: &Value| {
        gw.send(&req("POST", "/v1/chat/completions").key("sk-admin").header("x-session-id", "tools-1").json(body))
    };
    let r = with_session(&json!({"model": "claude", "tools": [weather_tool()],
        "messages": [{"role": "user", "content": "Weather in SF? [fault:reply=tool_call]"}]}));
    assert_eq!(r.status(), 200, "{}", r.text());
    let call = r.json()["choices"][0]["message"]["tool_calls"][0].clone();
    // The next turn sends only the tool result: the session supplies the rest.
    let r = with_session(&json!({"model": "claude", "tools": [weather_tool()],
        "messages": [{"role": "tool", "tool_call_id": call["id"], "content": "18C and sunny"}]}));
    assert_eq!(r.status(), 200, "{}", r.text());
    let sent = up.last_request_to(ANTHROPIC_PATH)["json"].clone();
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{sent}");
    assert_eq!(messages[0]["content"][0]["text"], "Weather in SF? [fault:reply=tool_call]");
    assert_eq!(messages[1]["content"][0]["type"], "tool_use", "{sent}");
    assert_eq!(messages[1]["content"][0]["id"], call["id"]);
    assert_eq!(messages[1]["content"][0]["input"]["location"], "San Francisco, CA");
    assert_eq!(
        messages[2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": call["id"], "content": "18C and sunny"})
    );
}

#[test]
fn unknown_fields_reach_an_openai_provider_untouched_and_are_never_dropped_silently() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    let body = json!({"model": "gpt", "logit_bias": {"50256": -100}, "store": false,
        "messages": [{"role": "user", "content": "hi"}]});
    // With a session the request is rebuilt (not passed through): the fields survive.
    let r = gw.send(&req("POST", "/v1/chat/completions").key("sk-admin").header("x-session-id", "extra-1").json(&body));
    assert_eq!(r.status(), 200, "{}", r.text());
    let sent = up.last_request_to("/v1/chat/completions")["json"].clone();
    assert_eq!(sent["logit_bias"], json!({"50256": -100}), "{sent}");
    assert_eq!(sent["store"], false);
    // Anthropic cannot carry them: refused, naming them.
    let mut to_claude = body.clone();
    to_claude["model"] = json!("claude");
    let r = v1(&gw, &to_claude);
    assert_eq!(r.status(), 400, "{}", r.text());
    assert!(
        r.json()["error"]["message"].as_str().unwrap().starts_with("`logit_bias`, `store` cannot be sent"),
        "{}",
        r.text()
    );
}

#[test]
fn anthropic_thinking_comes_back_as_reasoning_and_goes_back_signed_in_the_next_turn() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    let with_session = |body: &Value| {
        gw.send(&req("POST", "/v1/chat/completions").key("sk-admin").header("x-session-id", "think-1").json(body))
    };
    // `reasoning_effort` becomes a thinking budget; max_tokens leaves room above it.
    let r = with_session(
        &json!({"model": "claude", "reasoning_effort": "low", "max_tokens": 100, "tools": [weather_tool()],
        "messages": [{"role": "user", "content": "Weather in SF? [fault:reply=thinking+tool_call]"}]}),
    );
    assert_eq!(r.status(), 200, "{}", r.text());
    let sent = up.last_request_to(ANTHROPIC_PATH)["json"].clone();
    assert_eq!(sent["thinking"], json!({"type": "enabled", "budget_tokens": 1024}), "{sent}");
    assert_eq!(sent["max_tokens"], 1124, "{sent}");
    let message = &r.json()["choices"][0]["message"];
    assert_eq!(message["reasoning_content"], "Thinking about: Weather in SF?");
    let call = message["tool_calls"][0].clone();
    // The tool result turn: the thinking block goes back with its signature, first.
    let r = with_session(&json!({"model": "claude", "reasoning_effort": "low", "tools": [weather_tool()],
        "messages": [{"role": "tool", "tool_call_id": call["id"], "content": "18C"}]}));
    assert_eq!(r.status(), 200, "{}", r.text());
    let sent = up.last_request_to(ANTHROPIC_PATH)["json"].clone();
    let assistant = &sent["messages"][1]["content"];
    assert_eq!(assistant[0]["type"], "thinking", "{sent}");
    assert_eq!(assistant[0]["thinking"], "Thinking about: Weather in SF?");
    assert!(assistant[0]["signature"].as_str().is_some_and(|s| !s.is_empty()), "{sent}");
    assert_eq!(assistant[1]["type"], "tool_use", "{sent}");
}

#[test]
fn streamed_thinking_arrives_as_reasoning_content_deltas_before_the_text() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    for model in ["claude", "gemini"] {
        let events = v1_stream(
            &gw,
            "sk-admin",
            &json!({"model": model, "stream": true, "reasoning_effort": "medium",
                "messages": [{"role": "user", "content": "one two three [fault:reply=thinking+text]"}]}),
        );
        let chunks: Vec<Value> =
            events.iter().filter(|e| *e != "[DONE]").map(|e| serde_json::from_str(e).unwrap()).collect();
        let pick = |field: &str| -> String {
            chunks.iter().filter_map(|c| c["choices"][0]["delta"][field].as_str().map(str::to_string)).collect()
        };
        assert_eq!(pick("reasoning_content"), "Thinking about: one two three", "{model}");
        assert!(pick("content").contains("one two three"), "{model}: {events:?}");
        let first_text =
            chunks.iter().position(|c| c["choices"][0]["delta"]["content"].as_str().is_some_and(|t| !t.is_empty()));
        let last_reasoning = chunks.iter().rposition(|c| c["choices"][0]["delta"]["reasoning_content"].is_string());
        assert!(last_reasoning < first_text, "{model}: {events:?}");
    }
    let gemini = up.last_request_to("/v1beta/models/gemini-2.5-flash:streamGenerateContent")["json"].clone();
    assert_eq!(gemini["generationConfig"]["thinkingConfig"], json!({"thinkingBudget": 2048, "includeThoughts": true}));
}

#[test]
fn a_json_response_format_reaches_anthropic_as_a_forced_tool_and_comes_back_as_the_text() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    let schema = json!({"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]});
    let format = json!({"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": true}});
    let body = json!({"model": "claude", "response_format": format,
        "messages": [{"role": "user", "content": "Where? [fault:reply=tool_call]"}]});
    let r = v1(&gw, &body);
    assert_eq!(r.status(), 200, "{}", r.text());
    let sent = up.last_request_to(ANTHROPIC_PATH)["json"].clone();
    assert_eq!(sent["tools"][0]["name"], "city", "{sent}");
    assert_eq!(sent["tools"][0]["input_schema"], schema);
    assert_eq!(sent["tool_choice"], json!({"type": "tool", "name": "city"}));
    let choice = &r.json()["choices"][0];
    assert_eq!(choice["finish_reason"], "stop", "{choice}");
    assert!(choice["message"].get("tool_calls").is_none(), "{choice}");
    let parsed: Value = serde_json::from_str(choice["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(parsed["location"], "San Francisco, CA");
    // Streamed: the tool's input JSON deltas are the content.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events = v1_stream(&gw, "sk-admin", &streamed);
    let chunks: Vec<Value> =
        events.iter().filter(|e| *e != "[DONE]").map(|e| serde_json::from_str(e).unwrap()).collect();
    let text: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string)).collect();
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed["location"], "San Francisco, CA");
    assert!(chunks.iter().all(|c| c["choices"][0]["delta"].get("tool_calls").is_none()), "{events:?}");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
    // Gemini takes the schema as its own response schema.
    let mut gemini = body.clone();
    gemini["model"] = json!("gemini");
    assert_eq!(v1(&gw, &gemini).status(), 200);
    let sent = up.last_request_to("/v1beta/models/gemini-2.5-flash:generateContent")["json"].clone();
    assert_eq!(sent["generationConfig"]["responseMimeType"], "application/json");
    assert_eq!(sent["generationConfig"]["responseJsonSchema"], schema);
}

#[test]
fn documents_reach_each_provider_in_its_own_shape() {
    let up = Upstream::start();
    let gw = gateway(&up, None, "", "max_retries = 0");
    let pdf = "data:application/pdf;base64,JVBERi0xLjQK";
    let content = json!([{"type": "text", "text": "Summarise"},
        {"type": "file", "file": {"file_data": pdf, "filename": "report.pdf"}}]);
    let body = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": content}]});
    assert_eq!(v1(&gw, &body("claude")).status(), 200);
    let sent = up.last_request_to(ANTHROPIC_PATH)["json"].clone();
    assert_eq!(
        sent["messages"][0]["content"][1],
        json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"},
            "title": "report.pdf"})
    );
    assert_eq!(v1(&gw, &body("gemini")).status(), 200);
    let sent = up.last_request_to("/v1beta/models/gemini-2.5-flash:generateContent")["json"].clone();
    assert_eq!(
        sent["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0xLjQK"}})
    );
    // A translated OpenAI-format turn (a session) sends the file part back as it was.
    let r = gw
        .send(&req("POST", "/v1/chat/completions").key("sk-admin").header("x-session-id", "doc-1").json(&body("gpt")));
    assert_eq!(r.status(), 200, "{}", r.text());
    let sent = up.last_request_to("/v1/chat/completions")["json"].clone();
    assert_eq!(
        sent["messages"][0]["content"][1],
        json!({"type": "file", "file": {"file_data": pdf, "filename": "report.pdf"}})
    );
    // An uploaded file's id cannot be translated: a clear 400, nothing sent.
    let by_id = json!({"model": "claude", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}]});
    let r = v1(&gw, &by_id);
    assert_eq!(r.status(), 400, "{}", r.text());
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("file_id"), "{}", r.text());
}
