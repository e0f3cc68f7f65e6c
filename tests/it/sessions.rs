//! Sessions: listing (newest first, limit/cursor paging, channel filter), one session
//! with its messages, the actions (reset, delete, setModel, history), ownership by key,
//! and turns of one session running one at a time.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

fn op(gw: &Gateway, key: &str, id: &str, body: Value) -> Response {
    gw.post(&format!("/api/sessions/{id}"), Some(key), &body)
}

/// A listed session with its times checked and masked.
fn info(id: &str, channel: &str, model: &str, count: u64) -> Value {
    json!({"id": id, "channel": channel, "model": model, "messageCount": count, "createdAt": "<time>", "updatedAt": "<time>"})
}

/// The `data` of a 200 envelope with every `createdAt`/`updatedAt` checked and masked.
fn data_masked(resp: &Response) -> Value {
    assert_eq!(resp.status(), 200, "{}", resp.text());
    let mut v = stamped(resp.json());
    mask_times(&mut v);
    v["data"].take()
}

fn mask_times(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if k == "createdAt" || k == "updatedAt" {
                    assert_rfc3339(val.as_str().unwrap_or_else(|| panic!("{k} is not a string")));
                    *val = json!("<time>");
                } else {
                    mask_times(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_times),
        _ => {}
    }
}

fn msg(role: &str, content: &str) -> Value {
    json!({"role": role, "content": content, "createdAt": "<time>"})
}

#[test]
fn sessions_list_newest_first_with_limit_and_cursor_paging() {
    let gw = Cfg::new().start();
    for i in 1..=5 {
        gw.chat(ADMIN, json!({"message": format!("q{i}"), "sessionId": format!("p{i}")}));
        // Distinct creation milliseconds make "newest first" unambiguous.
        std::thread::sleep(Duration::from_millis(5));
    }
    let all = data_masked(&gw.get("/api/sessions", Some(ADMIN)));
    let expected: Vec<Value> = (1..=5).rev().map(|i| info(&format!("p{i}"), "api", "mock", 2)).collect();
    assert_eq!(all, json!({"sessions": expected, "nextCursor": null}));

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/api/sessions?limit=2".to_string(),
            Some(c) => format!("/api/sessions?limit=2&cursor={c}"),
        };
        let page = data_masked(&gw.get(&path, Some(ADMIN)));
        pages += 1;
        let ids: Vec<String> =
            page["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().into()).collect();
        assert!(ids.len() <= 2, "{ids:?}");
        seen.extend(ids);
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["p5", "p4", "p3", "p2", "p1"]);

    // A page that holds exactly the rest has no next cursor.
    let page = data_masked(&gw.get("/api/sessions?limit=5", Some(ADMIN)));
    assert_eq!(page["nextCursor"], Value::Null);
    assert_eq!(page["sessions"].as_array().unwrap().len(), 5);
    let page = data_masked(&gw.get("/api/sessions?limit=4", Some(ADMIN)));
    assert!(page["nextCursor"].is_string());
    let rest = data_masked(
        &gw.get(&format!("/api/sessions?limit=4&cursor={}", page["nextCursor"].as_str().unwrap()), Some(ADMIN)),
    );
    assert_eq!(rest, json!({"sessions": [info("p1", "api", "mock", 2)], "nextCursor": null}));
}

#[test]
fn sessions_list_filters_by_channel() {
    let gw = Cfg::new().start();
    gw.chat(USER, json!({"message": "a", "sessionId": "chan-api"}));
    std::thread::sleep(Duration::from_millis(5));
    gw.chat(USER, json!({"message": "b", "sessionId": "chan-support", "channel": "support"}));
    let support = data_masked(&gw.get("/api/sessions?channel=support", Some(USER)));
    assert_eq!(support, json!({"sessions": [info("chan-support", "support", "mock-large", 2)], "nextCursor": null}));
    let api = data_masked(&gw.get("/api/sessions?channel=api", Some(USER)));
    assert_eq!(api, json!({"sessions": [info("chan-api", "api", "mock", 2)], "nextCursor": null}));
    let none = data_masked(&gw.get("/api/sessions?channel=nope", Some(USER)));
    assert_eq!(none, json!({"sessions": [], "nextCursor": null}));
    let both = data_masked(&gw.get("/api/sessions?channel=&limit=10", Some(USER)));
    assert_eq!(both["sessions"].as_array().unwrap().len(), 2);
}

#[test]
fn sessions_list_rejects_bad_limits_and_cursors() {
    let gw = Cfg::new().start();
    for limit in ["0", "1001", "abc", "-1", "1.5"] {
        let resp = gw.get(&format!("/api/sessions?limit={limit}"), Some(ADMIN));
        assert_error(&resp, 400, "INVALID_REQUEST", "limit must be an integer from 1 to 1000");
    }
    for cursor in ["garbage", "abc.def", "12"] {
        let resp = gw.get(&format!("/api/sessions?cursor={cursor}"), Some(ADMIN));
        assert_error(&resp, 400, "INVALID_REQUEST", "cursor is not one this server issued");
    }
    assert_eq!(gw.get("/api/sessions?limit=1000", Some(ADMIN)).status(), 200);
    assert_eq!(gw.get("/api/sessions?limit=1", Some(ADMIN)).status(), 200);
}

#[test]
fn a_session_is_returned_with_its_messages() {
    let gw = Cfg::new().start();
    gw.chat(USER, json!({"message": "Hello", "sessionId": "get-1"}));
    gw.chat(USER, json!({"message": "How are you", "sessionId": "get-1"}));
    let data = data_masked(&gw.get("/api/sessions/get-1", Some(USER)));
    let mut want = info("get-1", "api", "mock", 4);
    want["messages"] = json!([
        msg("user", "Hello"),
        msg("assistant", &mock_reply("Hello", 1)),
        msg("user", "How are you"),
        msg("assistant", &mock_reply("How are you", 2)),
    ]);
    assert_eq!(data, want);
    // The same under /api/v1.
    assert_eq!(data_masked(&gw.get("/api/v1/sessions/get-1", Some(USER))), want);
}

#[test]
fn a_finished_turn_is_visible_to_the_next_request_on_any_connection() {
    // Read-your-writes: once the reply is out, every worker sees the recorded turn.
    let gw = Cfg::new().start();
    for i in 0..60 {
        let sid = format!("rw-{i}");
        gw.chat(USER, json!({"message": "hi", "sessionId": sid}));
        let got = gw.get(&format!("/api/sessions/{sid}"), Some(USER));
        assert_eq!(got.json()["data"]["messageCount"], 2, "session {sid} right after its turn: {}", got.text());
    }
}

#[test]
fn reset_clears_the_history_but_keeps_the_session() {
    let gw = Cfg::new().start();
    gw.chat(USER, json!({"message": "one", "sessionId": "reset-1"}));
    gw.chat(USER, json!({"message": "two", "sessionId": "reset-1"}));
    let data = data_masked(&op(&gw, USER, "reset-1", json!({"action": "reset"})));
    assert_eq!(data, info("reset-1", "api", "mock", 0));
    let mut want = info("reset-1", "api", "mock", 0);
    want["messages"] = json!([]);
    assert_eq!(data_masked(&gw.get("/api/sessions/reset-1", Some(USER))), want);
    let data = gw.chat(USER, json!({"message": "three", "sessionId": "reset-1"}));
    assert_eq!(data["message"], mock_reply("three", 1));
}

#[test]
fn delete_forgets_the_session() {
    let gw = Cfg::new().start();
    gw.chat(USER, json!({"message": "one", "sessionId": "del-1"}));
    assert_ok(&op(&gw, USER, "del-1", json!({"action": "delete"})), json!({"id": "del-1", "deleted": true}));
    assert_error(&gw.get("/api/sessions/del-1", Some(USER)), 404, "INVALID_SESSION", "unknown session del-1");
    assert_error(&op(&gw, USER, "del-1", json!({"action": "delete"})), 404, "INVALID_SESSION", "unknown session del-1");
    let list = data_masked(&gw.get("/api/sessions", Some(USER)));
    assert_eq!(list, json!({"sessions": [], "nextCursor": null}));
    // The id may be used again: a fresh conversation.
    assert_eq!(gw.chat(USER, json!({"message": "again", "sessionId": "del-1"}))["message"], mock_reply("again", 1));
}

#[test]
fn set_model_changes_the_model_of_later_turns() {
    let gw = Cfg::new().start();
    gw.chat(USER, json!({"message": "one", "sessionId": "sm-1"}));
    let data = data_masked(&op(&gw, USER, "sm-1", json!({"action": "setModel", "model": "mock-large"})));
    assert_eq!(data, info("sm-1", "api", "mock-large", 2));
    let data = gw.chat(USER, json!({"message": "two", "sessionId": "sm-1"}));
    assert_eq!(data["model"], "mock-large");
    assert_eq!(data["message"], mock_reply("two", 2));

    let resp = op(&gw, USER, "sm-1", json!({"action": "setModel", "model": "gpt-9"}));
    assert_error(&resp, 404, "MODEL_NOT_FOUND", "model gpt-9 is not in the catalogue");
    let resp = op(&gw, USER, "sm-1", json!({"action": "setModel"}));
    assert_error(&resp, 400, "INVALID_REQUEST", "missing field `model`");
    let resp = op(&gw, USER, "sm-1", json!({"action": "setModel", "model": 7}));
    assert_error(&resp, 400, "INVALID_REQUEST", "field `model` must be a string");

    gw.chat(LIMITED, json!({"message": "one", "sessionId": "lim-1"}));
    let resp = op(&gw, LIMITED, "lim-1", json!({"action": "setModel", "model": "mock-large"}));
    assert_error(&resp, 403, "FORBIDDEN", "this key may not use model mock-large");
}

#[test]
fn history_returns_the_last_messages() {
    let gw = Cfg::new().start();
    for q in ["q1", "q2", "q3"] {
        gw.chat(USER, json!({"message": q, "sessionId": "hist-1"}));
    }
    let data = data_masked(&op(&gw, USER, "hist-1", json!({"action": "history", "limit": 2})));
    assert_eq!(data, json!({"id": "hist-1", "messages": [msg("user", "q3"), msg("assistant", &mock_reply("q3", 3))]}));
    let data = data_masked(&op(&gw, USER, "hist-1", json!({"action": "history"})));
    assert_eq!(data["messages"].as_array().unwrap().len(), 6);
    assert_eq!(data["messages"][0], msg("user", "q1"));
    for limit in [json!(0), json!(1001)] {
        let resp = op(&gw, USER, "hist-1", json!({"action": "history", "limit": limit}));
        assert_error(&resp, 400, "INVALID_REQUEST", "field `limit` must be from 1 to 1000");
    }
    for limit in [json!(-1), json!("2"), json!(1.5)] {
        let resp = op(&gw, USER, "hist-1", json!({"action": "history", "limit": limit}));
        assert_error(&resp, 400, "INVALID_REQUEST", "field `limit` must be a non-negative integer");
    }
}

#[test]
fn history_is_bounded_by_max_messages() {
    let gw = Cfg::new().extra("[sessions]\nmax_messages = 4").start();
    for q in ["q1", "q2", "q3"] {
        gw.chat(USER, json!({"message": q, "sessionId": "bound-1"}));
    }
    let data = data_masked(&gw.get("/api/sessions/bound-1", Some(USER)));
    assert_eq!(data["messageCount"], 4);
    assert_eq!(
        data["messages"],
        json!([
            msg("user", "q2"),
            msg("assistant", &mock_reply("q2", 2)),
            msg("user", "q3"),
            msg("assistant", &mock_reply("q3", 3))
        ])
    );
}

#[test]
fn unknown_or_malformed_actions_are_invalid_request() {
    let gw = Cfg::new().start();
    gw.chat(USER, json!({"message": "one", "sessionId": "act-1"}));
    let cases = [
        (json!({"action": "explode"}), "unknown action `explode`; expected reset, delete, setModel or history"),
        (json!({"action": "Reset"}), "unknown action `Reset`; expected reset, delete, setModel or history"),
        (json!({}), "missing field `action`"),
        (json!({"action": null}), "missing field `action`"),
        (json!({"action": 5}), "field `action` must be a string"),
        (json!("reset"), "request body must be a JSON object"),
    ];
    for (body, message) in cases {
        assert_error(&op(&gw, USER, "act-1", body), 400, "INVALID_REQUEST", message);
    }
    let resp = gw.send(&req("POST", "/api/sessions/act-1").key(USER));
    assert_error(&resp, 400, "INVALID_REQUEST", "request body must be a JSON object");
    let resp = gw.send(&req("POST", "/api/sessions/act-1").key(USER).body(&b"{\"action\":"[..]));
    assert_error_prefix(&resp, 400, "INVALID_REQUEST", "malformed JSON");
    // Nothing happened to the session.
    assert_eq!(gw.get("/api/sessions/act-1", Some(USER)).json()["data"]["messageCount"], 2);
}

#[test]
fn an_array_body_is_not_taken_as_an_action() {
    let gw = Cfg::new().start();
    gw.chat(USER, json!({"message": "one", "sessionId": "arr-1"}));
    let resp = op(&gw, USER, "arr-1", json!(["reset"]));
    assert_error(&resp, 400, "INVALID_REQUEST", "request body must be a JSON object");
    assert_eq!(gw.get("/api/sessions/arr-1", Some(USER)).json()["data"]["messageCount"], 2, "the session was reset");
}

#[test]
fn unknown_sessions_are_invalid_session() {
    let gw = Cfg::new().start();
    assert_error(&gw.get("/api/sessions/nope", Some(ADMIN)), 404, "INVALID_SESSION", "unknown session nope");
    for body in [
        json!({"action": "reset"}),
        json!({"action": "delete"}),
        json!({"action": "setModel", "model": "mock"}),
        json!({"action": "history", "limit": 5}),
    ] {
        assert_error(&op(&gw, ADMIN, "nope", body), 404, "INVALID_SESSION", "unknown session nope");
    }
    let resp = gw.get("/api/sessions/bad%20id", Some(ADMIN));
    assert_error(&resp, 404, "INVALID_SESSION", "unknown session bad%20id");
}

#[test]
fn user_keys_see_only_their_own_sessions_and_admins_see_all() {
    let gw = Cfg::new().start();
    gw.chat(USER, json!({"message": "mine", "sessionId": "own-user"}));
    std::thread::sleep(Duration::from_millis(5));
    gw.chat(ADMIN, json!({"message": "ops", "sessionId": "own-admin"}));

    // Another user key: nothing to see, nothing to touch, cannot join the conversation.
    let none = json!({"sessions": [], "nextCursor": null});
    assert_eq!(data_masked(&gw.get("/api/sessions", Some(OTHER))), none);
    assert_error(&gw.get("/api/sessions/own-user", Some(OTHER)), 404, "INVALID_SESSION", "unknown session own-user");
    for body in [json!({"action": "reset"}), json!({"action": "delete"}), json!({"action": "history"})] {
        assert_error(&op(&gw, OTHER, "own-user", body), 404, "INVALID_SESSION", "unknown session own-user");
    }
    let resp = gw.post("/api/chat", Some(OTHER), &json!({"message": "intrude", "sessionId": "own-user"}));
    assert_error(&resp, 404, "INVALID_SESSION", "unknown session own-user");

    // The owner sees its own session only, untouched.
    let mine = data_masked(&gw.get("/api/sessions", Some(USER)));
    assert_eq!(mine, json!({"sessions": [info("own-user", "api", "mock", 2)], "nextCursor": null}));
    assert_error(&gw.get("/api/sessions/own-admin", Some(USER)), 404, "INVALID_SESSION", "unknown session own-admin");

    // The admin sees both, and can read and act on the user's session.
    let all = data_masked(&gw.get("/api/sessions", Some(ADMIN)));
    assert_eq!(
        all,
        json!({"sessions": [info("own-admin", "api", "mock", 2), info("own-user", "api", "mock", 2)], "nextCursor": null})
    );
    let got = data_masked(&gw.get("/api/sessions/own-user", Some(ADMIN)));
    assert_eq!(got["messages"][0], msg("user", "mine"));
    let data = data_masked(&op(&gw, ADMIN, "own-user", json!({"action": "history", "limit": 1})));
    assert_eq!(data["messages"], json!([msg("assistant", &mock_reply("mine", 1))]));
}

#[test]
fn concurrent_turns_on_one_session_never_interleave() {
    let gw = Arc::new(Cfg::new().chunk_delay_ms(30).chunk_words(1).start());
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = ["alpha", "bravo"]
        .into_iter()
        .map(|q| {
            let (gw, barrier) = (gw.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut c = gw.conn();
                barrier.wait();
                let resp =
                    c.exchange(&req("POST", "/api/chat").key(USER).json(&json!({"message": q, "sessionId": "race"})));
                assert_eq!(resp.status(), 200, "{}", resp.text());
                (q, resp.json()["data"].clone())
            })
        })
        .collect();
    let mut results: Vec<(&str, Value)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // Whichever ran first saw an empty history; the other saw the first's whole turn.
    results.sort_by_key(|(_, d)| d["message"].as_str().unwrap().contains("turn 2"));
    let (first, second) = (results[0].0, results[1].0);
    assert_ne!(first, second);
    assert_eq!(results[0].1["message"], mock_reply(first, 1));
    assert_eq!(results[1].1["message"], mock_reply(second, 2));
    assert_eq!(results[1].1["usage"], mock_usage(&[first, &mock_reply(first, 1), second], &mock_reply(second, 2)));
    let data = data_masked(&gw.get("/api/sessions/race", Some(USER)));
    assert_eq!(
        data["messages"],
        json!([
            msg("user", first),
            msg("assistant", &mock_reply(first, 1)),
            msg("user", second),
            msg("assistant", &mock_reply(second, 2)),
        ])
    );
}

#[test]
fn concurrent_streamed_turns_on_one_session_never_interleave() {
    let gw = Arc::new(Cfg::new().chunk_delay_ms(20).chunk_words(1).start());
    let barrier = Arc::new(Barrier::new(3));
    let threads: Vec<_> = ["one", "two", "three"]
        .into_iter()
        .map(|q| {
            let (gw, barrier) = (gw.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut c = gw.conn();
                barrier.wait();
                let body = json!({"message": q, "sessionId": "race-sse", "stream": true});
                c.send(&req("POST", "/api/chat").key(USER).json(&body).bytes());
                let (_, events) = read_sse(&mut c);
                (q, concat_chunks(&events))
            })
        })
        .collect();
    let results: Vec<(&str, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut turns: Vec<usize> = Vec::new();
    for (q, text) in &results {
        let turn = (1..=3).find(|t| *text == mock_reply(q, *t)).unwrap_or_else(|| panic!("{q}: {text}"));
        turns.push(turn);
    }
    turns.sort();
    assert_eq!(turns, [1, 2, 3]);
    let data = data_masked(&gw.get("/api/sessions/race-sse", Some(USER)));
    let messages = data["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 6);
    for (i, pair) in messages.chunks(2).enumerate() {
        let q = pair[0]["content"].as_str().unwrap();
        assert_eq!(pair[0]["role"], "user");
        assert_eq!(pair[1], msg("assistant", &mock_reply(q, i + 1)));
    }
}

#[test]
fn a_session_keeps_its_history_while_its_turns_hop_between_workers() {
    // Eight keep-alive connections land on both workers; one session's turns take them
    // in turn, so it keeps moving to the worker asking for it (and back through its
    // home). Every turn must see every earlier one, and reads from any connection
    // must find it exactly once.
    let gw = Cfg::new().workers(2).start();
    let mut conns: Vec<_> = (0..8).map(|_| gw.conn()).collect();
    let sid = "hopper";
    for turn in 1..=24 {
        let c = &mut conns[(turn * 5) % 8];
        let q = format!("q{turn}");
        let resp = c.exchange(&req("POST", "/api/chat").key(USER).json(&json!({"message": q, "sessionId": sid})));
        assert_eq!(resp.status(), 200, "turn {turn}: {}", resp.text());
        assert_eq!(resp.json()["data"]["message"], mock_reply(&q, turn), "turn {turn}");
        let c = &mut conns[(turn * 3 + 1) % 8];
        let got = c.exchange(&req("GET", &format!("/api/sessions/{sid}")).key(USER));
        assert_eq!(got.json()["data"]["messageCount"], 2 * turn, "read after turn {turn}: {}", got.text());
        let list = c.exchange(&req("GET", "/api/sessions?limit=100").key(USER));
        let listed = list.json()["data"]["sessions"].as_array().unwrap().iter().filter(|s| s["id"] == sid).count();
        assert_eq!(listed, 1, "listed once after turn {turn}");
    }
    // Deleted from one connection, started afresh from another.
    let del =
        conns[1].exchange(&req("POST", &format!("/api/sessions/{sid}")).key(USER).json(&json!({"action": "delete"})));
    assert_eq!(del.status(), 200, "{}", del.text());
    for (i, c) in conns.iter_mut().enumerate() {
        let got = c.exchange(&req("GET", &format!("/api/sessions/{sid}")).key(USER));
        assert_eq!(got.status(), 404, "conn {i} after delete: {}", got.text());
    }
    let resp =
        conns[6].exchange(&req("POST", "/api/chat").key(USER).json(&json!({"message": "anew", "sessionId": sid})));
    assert_eq!(resp.json()["data"]["message"], mock_reply("anew", 1));
}

#[test]
fn a_message_larger_than_max_bytes_is_stored_cut_and_the_session_stays_bounded() {
    let gw = Cfg::new().extra("[sessions]\nmax_bytes = 65536\n").server("max_body_bytes = 4194304").start();
    let big = "x".repeat(300_000);
    let first = gw.chat(USER, json!({"message": big, "sessionId": "big-1"}));
    assert_eq!(first["sessionId"], "big-1");
    for _ in 0..3 {
        gw.chat(USER, json!({"message": big, "sessionId": "big-1"}));
    }
    let view = gw.get("/api/sessions/big-1", Some(USER)).json();
    let messages = view["data"]["messages"].as_array().unwrap().clone();
    let stored: usize = messages.iter().map(|m| m["content"].as_str().unwrap().len()).sum();
    assert!(stored <= 65536, "{stored} bytes stored for max_bytes = 65536");
    let user = messages.iter().find(|m| m["role"] == "user").unwrap();
    assert!(user["content"].as_str().unwrap().ends_with(" [truncated for storage]"));
}
