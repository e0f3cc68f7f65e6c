//! `POST /api/chat`: JSON and SSE turns on the mock provider, history, model and channel
//! resolution, request validation, and the mock's failure markers.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

fn chat_req(key: &str, body: Value) -> Req {
    req("POST", "/api/chat").key(key).json(&body)
}

#[test]
fn chat_replies_with_the_mock_answer_in_a_new_session() {
    let gw = Cfg::new().start();
    let resp = gw.post("/api/chat", Some(USER), &json!({"message": "Hello"}));
    assert_eq!(resp.status(), 200, "{}", resp.text());
    let mut v = stamped(resp.json());
    let sid = mask(&mut v, "/data/sessionId");
    assert!(is_generated_session_id(sid.as_str().unwrap()), "{sid}");
    assert_eq!(
        v,
        ok_envelope(json!({
            "message": "You said \"Hello\". This is turn 1 of our conversation.",
            "sessionId": "<masked>",
            "model": "mock",
            "usage": {"promptTokens": 4, "completionTokens": 10, "totalTokens": 14},
        }))
    );
}

#[test]
fn chat_sends_the_history_so_turn_two_says_turn_two() {
    let gw = Cfg::new().start();
    let first = gw.chat(USER, json!({"message": "Hello"}));
    let sid = first["sessionId"].as_str().unwrap().to_string();
    let resp = gw.post("/api/chat", Some(USER), &json!({"message": "How are you", "sessionId": sid}));
    let reply = mock_reply("How are you", 2);
    assert_eq!(reply, "You said \"How are you\". This is turn 2 of our conversation.");
    // History (Hello, first reply) plus the new message went upstream.
    let usage = mock_usage(&["Hello", &mock_reply("Hello", 1), "How are you"], &reply);
    assert_eq!(usage, json!({"promptTokens": 23, "completionTokens": 12, "totalTokens": 35}));
    assert_ok(&resp, json!({"message": reply, "sessionId": sid, "model": "mock", "usage": usage}));
    let third = gw.chat(USER, json!({"message": "Bye", "sessionId": sid, "channel": "api"}));
    assert_eq!(third["message"], mock_reply("Bye", 3));
}

#[test]
fn chat_without_a_session_id_makes_a_new_session_each_time() {
    let gw = Cfg::new().start();
    let a = gw.chat(USER, json!({"message": "one"}));
    let b = gw.chat(USER, json!({"message": "two", "sessionId": null}));
    let (a, b) = (a["sessionId"].as_str().unwrap(), b["sessionId"].as_str().unwrap());
    assert!(is_generated_session_id(a) && is_generated_session_id(b));
    assert_ne!(a, b);
}

#[test]
fn chat_with_a_new_client_chosen_session_id_keeps_it() {
    let gw = Cfg::new().start();
    let data = gw.chat(USER, json!({"message": "hi", "sessionId": "session-123"}));
    assert_eq!(data["sessionId"], "session-123");
    assert_eq!(data["message"], mock_reply("hi", 1));
    let data = gw.chat(USER, json!({"message": "again", "sessionId": "session-123"}));
    assert_eq!(data["message"], mock_reply("again", 2));
}

#[test]
fn chat_with_an_unknown_model_is_model_not_found() {
    let gw = Cfg::new().start();
    let resp = gw.post("/api/chat", Some(USER), &json!({"message": "hi", "model": "gpt-9"}));
    assert_error(&resp, 404, "MODEL_NOT_FOUND", "model gpt-9 is not in the catalogue");
}

#[test]
fn chat_with_the_requested_model_answers_with_it() {
    let gw = Cfg::new().start();
    let data = gw.chat(USER, json!({"message": "hi", "model": "mock-large"}));
    assert_eq!(data["model"], "mock-large");
    let sid = data["sessionId"].as_str().unwrap();
    // The session remembers the model for later turns.
    let data = gw.chat(USER, json!({"message": "and now", "sessionId": sid}));
    assert_eq!(data["model"], "mock-large");
}

#[test]
fn a_key_restricted_to_some_models_is_forbidden_the_others() {
    let gw = Cfg::new().start();
    let resp = gw.post("/api/chat", Some(LIMITED), &json!({"message": "hi", "model": "mock-large"}));
    assert_error(&resp, 403, "FORBIDDEN", "this key may not use model mock-large");
    let data = gw.chat(LIMITED, json!({"message": "hi", "model": "mock"}));
    assert_eq!(data["model"], "mock");
    let data = gw.chat(LIMITED, json!({"message": "hi"}));
    assert_eq!(data["model"], "mock");
}

#[test]
fn chat_on_a_channel_uses_the_channel_model() {
    let gw = Cfg::new().start();
    let data = gw.chat(USER, json!({"message": "help", "channel": "support"}));
    assert_eq!(data["model"], "mock-large");
    assert_eq!(data["message"], mock_reply("help", 1));
}

#[test]
fn chat_on_a_disabled_or_unknown_channel_is_refused() {
    let gw = Cfg::new().start();
    let resp = gw.post("/api/chat", Some(USER), &json!({"message": "hi", "channel": "legacy"}));
    assert_error(&resp, 403, "FORBIDDEN", "channel legacy is disabled");
    let resp = gw.post("/api/chat", Some(USER), &json!({"message": "hi", "channel": "nope"}));
    assert_error(&resp, 400, "INVALID_REQUEST", "unknown channel nope");
}

#[test]
fn malformed_json_is_invalid_request() {
    let gw = Cfg::new().start();
    for body in
        [&br#"{"message":"#[..], b"{message: 'hi'}", b"{\"message\":\"hi\",}", b"{\"message\":\"hi\"} trailing", b"nul"]
    {
        let resp = gw.send(&req("POST", "/api/chat").key(USER).body(body.to_vec()));
        assert_error_prefix(&resp, 400, "INVALID_REQUEST", "malformed JSON");
    }
}

#[test]
fn wrong_field_types_are_invalid_request_naming_the_field() {
    let gw = Cfg::new().start();
    let cases = [
        (json!({"message": 5}), "field `message` must be a string"),
        (json!({"message": ["hi"]}), "field `message` must be a string"),
        (json!({"message": "hi", "channel": true}), "field `channel` must be a string"),
        (json!({"message": "hi", "sessionId": 123}), "field `sessionId` must be a string"),
        (json!({"message": "hi", "stream": "yes"}), "field `stream` must be a boolean"),
        (json!({"message": "hi", "model": {"id": "mock"}}), "field `model` must be a string"),
    ];
    for (body, msg) in cases {
        assert_error(&gw.post("/api/chat", Some(USER), &body), 400, "INVALID_REQUEST", msg);
    }
}

#[test]
fn a_missing_or_blank_message_is_invalid_request() {
    let gw = Cfg::new().start();
    for body in [json!({}), json!({"channel": "api"}), json!({"message": null})] {
        assert_error(&gw.post("/api/chat", Some(USER), &body), 400, "INVALID_REQUEST", "missing field `message`");
    }
    for body in [json!({"message": ""}), json!({"message": "  \n\t "})] {
        let resp = gw.post("/api/chat", Some(USER), &body);
        assert_error(&resp, 400, "INVALID_REQUEST", "field `message` must not be empty");
    }
}

#[test]
fn empty_and_non_object_bodies_are_invalid_request() {
    let gw = Cfg::new().start();
    for body in [&b""[..], b"   \r\n", b"[1]", b"\"hi\"", b"42", b"null", b"true"] {
        let resp = gw.send(&req("POST", "/api/chat").key(USER).body(body.to_vec()));
        assert_error(&resp, 400, "INVALID_REQUEST", "request body must be a JSON object");
    }
    // No body at all (no Content-Length).
    let resp = gw.send(&req("POST", "/api/chat").key(USER));
    assert_error(&resp, 400, "INVALID_REQUEST", "request body must be a JSON object");
}

#[test]
fn an_empty_json_array_body_is_not_an_object() {
    let gw = Cfg::new().start();
    let resp = gw.send(&req("POST", "/api/chat").key(USER).body(&b"[]"[..]));
    assert_error(&resp, 400, "INVALID_REQUEST", "request body must be a JSON object");
}

#[test]
fn an_invalid_utf8_body_is_invalid_request() {
    let gw = Cfg::new().start();
    for body in [&b"{\"message\":\"\xff\xfe\"}"[..], b"\xc3\x28", b"{\"message\":\"caf\xc3\"}"] {
        let resp = gw.send(&req("POST", "/api/chat").key(USER).body(body.to_vec()));
        assert_error_prefix(&resp, 400, "INVALID_REQUEST", "malformed JSON");
    }
    // Valid multi-byte UTF-8 is fine and comes back intact.
    let data = gw.chat(USER, json!({"message": "héllo wörld ✓"}));
    assert_eq!(data["message"], mock_reply("héllo wörld ✓", 1));
}

#[test]
fn invalid_session_ids_are_invalid_request() {
    let gw = Cfg::new().start();
    let long = "s".repeat(129);
    for sid in ["a/b", "has space", "", long.as_str(), "semi;colon", "ünï"] {
        let resp = gw.post("/api/chat", Some(USER), &json!({"message": "hi", "sessionId": sid}));
        assert_error(&resp, 400, "INVALID_REQUEST", "sessionId must be 1-128 characters of A-Z a-z 0-9 . _ : -");
    }
    let max = "s".repeat(128);
    assert_eq!(gw.chat(USER, json!({"message": "hi", "sessionId": max}))["sessionId"], max.as_str());
}

#[test]
fn stream_true_answers_server_sent_events_with_exact_framing() {
    let gw = Cfg::new().start();
    let mut c = gw.conn();
    c.send(&chat_req(USER, json!({"message": "Hello", "stream": true})).id("sse-1").bytes());
    let head = c.read_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("cache-control"), Some("no-cache"));
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(head.header("x-request-id"), Some("sse-1"));
    assert_eq!(head.header("content-length"), None);
    assert_eq!(head.header("connection"), None, "keep-alive by default");
    // Each event is its own HTTP chunk, byte for byte.
    let mut chunks = Vec::new();
    while let Some(chunk) = c.read_chunk() {
        chunks.push(String::from_utf8(chunk).unwrap());
    }
    let expected = [
        r#"{"type":"chunk","content":"You said \"Hello\"."}"#,
        r#"{"type":"chunk","content":" This is turn"}"#,
        r#"{"type":"chunk","content":" 1 of our"}"#,
        r#"{"type":"chunk","content":" conversation."}"#,
    ];
    assert_eq!(chunks.len(), expected.len() + 1, "{chunks:#?}");
    let ids: Vec<String> = chunks.iter().map(|c| parse_event(c.as_bytes()).id).collect();
    let turn = assert_event_ids(ids.iter().map(String::as_str));
    for (i, data) in expected.iter().enumerate() {
        assert_eq!(chunks[i], format!("event: message\nid: {turn}:{i}\ndata: {data}\n\n"));
    }
    let sid = parse_event(chunks[4].as_bytes()).data["sessionId"].as_str().unwrap().to_string();
    assert!(is_generated_session_id(&sid), "{sid}");
    assert_eq!(
        chunks[4],
        format!(
            "event: message\nid: {turn}:4\ndata: {{\"type\":\"done\",\"sessionId\":\"{sid}\",\"model\":\"mock\",\
             \"usage\":{{\"promptTokens\":4,\"completionTokens\":10,\"totalTokens\":14}}}}\n\n"
        )
    );
    let contents: String =
        chunks[..4].iter().map(|c| parse_event(c.as_bytes()).data["content"].as_str().unwrap().to_string()).collect();
    assert_eq!(contents, mock_reply("Hello", 1));
    // The connection carries on, and the turn was recorded.
    let resp = c.exchange(&chat_req(USER, json!({"message": "next", "sessionId": sid})));
    assert_eq!(resp.json()["data"]["message"], mock_reply("next", 2));
}

#[test]
fn accept_event_stream_answers_server_sent_events() {
    let gw = Cfg::new().start();
    for accept in ["text/event-stream", "application/json, text/event-stream", "TEXT/EVENT-STREAM"] {
        let mut c = gw.conn();
        c.send(&chat_req(USER, json!({"message": "Roses are red"})).header("Accept", accept).bytes());
        let (head, events) = read_sse(&mut c);
        assert_eq!(head.header("content-type"), Some("text/event-stream"), "{accept}");
        assert_eq!(concat_chunks(&events), mock_reply("Roses are red", 1));
        let (_, last) = events.last().unwrap();
        assert_eq!(last.data["type"], "done");
        assert_eq!(last.data["usage"], mock_usage(&["Roses are red"], &mock_reply("Roses are red", 1)));
        assert!(events.iter().all(|(_, e)| e.event == "message"));
        assert_event_ids(events.iter().map(|(_, e)| e.id.as_str()));
    }
    // Without the header and with stream false, the answer is JSON.
    let resp = gw.post("/api/chat", Some(USER), &json!({"message": "plain", "stream": false}));
    assert_eq!(resp.header("content-type"), Some("application/json"));
}

#[test]
fn sse_events_leave_as_they_are_produced() {
    let gw = Cfg::new().chunk_delay_ms(150).start();
    let mut c = gw.conn();
    let sent = Instant::now();
    c.send(&chat_req(USER, json!({"message": "Hello", "stream": true})).bytes());
    let (_, events) = read_sse(&mut c);
    assert_eq!(events.len(), 5, "4 chunks and done");
    let first = events[0].0;
    assert!(first - sent < Duration::from_millis(140), "first event waited {:?}", first - sent);
    for pair in events.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= Duration::from_millis(100), "events were held back and sent together: gap {gap:?}");
    }
    assert_eq!(concat_chunks(&events), mock_reply("Hello", 1));
}

#[test]
fn chunk_words_sets_the_chunk_size() {
    let gw = Cfg::new().chunk_words(1).start();
    let mut c = gw.conn();
    c.send(&chat_req(USER, json!({"message": "Roses", "stream": true})).bytes());
    let (_, events) = read_sse(&mut c);
    let contents: Vec<&str> = events.iter().filter_map(|(_, e)| e.data["content"].as_str()).collect();
    assert_eq!(
        contents,
        ["You", " said", " \"Roses\".", " This", " is", " turn", " 1", " of", " our", " conversation."]
    );
}

#[test]
fn mock_error_is_a_502_upstream_error_envelope() {
    let gw = Cfg::new().start();
    let resp = gw.post("/api/chat", Some(USER), &json!({"message": "[mock:error] please fail"}));
    assert_error(&resp, 502, "UPSTREAM_ERROR", "mock provider failed as asked");
    assert_eq!(resp.head.reason, "Bad Gateway");
    // Failing before the stream began is a plain error response, not SSE.
    let resp = gw.post("/api/chat", Some(USER), &json!({"message": "[mock:error]", "stream": true}));
    assert_error(&resp, 502, "UPSTREAM_ERROR", "mock provider failed as asked");
}

#[test]
fn mock_error_mid_stream_ends_the_stream_with_an_error_event() {
    let gw = Cfg::new().start();
    let mut c = gw.conn();
    let body = json!({"message": "[mock:error-mid] boom", "stream": true, "sessionId": "mid-1"});
    c.send(&chat_req(USER, body).id("mid").bytes());
    let (_, events) = read_sse(&mut c);
    let events: Vec<SseEvent> = events.into_iter().map(|(_, e)| e).collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_event_ids(events.iter().map(|e| e.id.as_str()));
    assert_eq!(events[0].data, json!({"type": "chunk", "content": "You said \"[mock:error-mid]"}));
    assert_eq!(events[1].event, "message");
    assert_eq!(
        events[1].data,
        json!({"type": "error", "code": "UPSTREAM_ERROR", "message": "mock provider failed mid-stream as asked"})
    );
    // The stream ended cleanly; the connection is still usable and the failed turn
    // was not recorded.
    let resp = c.exchange(&chat_req(USER, json!({"message": "after", "sessionId": "mid-1"})));
    assert_eq!(resp.json()["data"]["message"], mock_reply("after", 1));
}

#[test]
fn mock_error_mid_without_streaming_is_a_502() {
    let gw = Cfg::new().start();
    let resp = gw.post("/api/chat", Some(USER), &json!({"message": "[mock:error-mid] boom", "sessionId": "mid-2"}));
    assert_error(&resp, 502, "UPSTREAM_ERROR", "mock provider failed mid-stream as asked");
    let data = gw.chat(USER, json!({"message": "after", "sessionId": "mid-2"}));
    assert_eq!(data["message"], mock_reply("after", 1), "the failed turn left no history");
}

#[test]
fn failed_turns_leave_no_phantom_sessions() {
    let gw = Cfg::new().start();
    let resp = gw.post("/api/chat", Some(USER), &json!({"message": "[mock:error]"}));
    assert_eq!(resp.status(), 502);
    let list = gw.get("/api/sessions", Some(ADMIN));
    assert_ok(&list, json!({"sessions": [], "nextCursor": null}));
}
