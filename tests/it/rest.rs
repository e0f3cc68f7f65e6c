//! Health, status, the catalogue routes, routing errors (404, 405, versions), auth and
//! request ids: exact bodies and headers.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[test]
fn health_answers_ok_without_a_key() {
    let gw = Cfg::new().start();
    let resp = gw.get("/health", None);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.head.version, "HTTP/1.1");
    assert_eq!(resp.head.reason, "OK");
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.body, br#"{"status":"ok"}"#);
    assert!(is_generated_request_id(resp.request_id()), "{}", resp.request_id());
}

#[test]
fn head_health_sends_the_length_but_no_body() {
    let gw = Cfg::new().start();
    let mut c = gw.conn();
    let resp = c.exchange(&req("HEAD", "/health"));
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.header("content-length"), Some("15"));
    // The next response on the same connection starts right after the head.
    let resp = c.exchange(&req("GET", "/health"));
    assert_eq!(resp.body, br#"{"status":"ok"}"#);
}

#[test]
fn live_and_ready_probes_answer_without_a_key() {
    let gw = Cfg::new().start();
    let live = gw.get("/health/live", None);
    assert_eq!((live.status(), live.text().as_str()), (200, r#"{"status":"ok"}"#));
    let ready = gw.get("/health/ready", None);
    assert_eq!((ready.status(), ready.text().as_str()), (200, r#"{"status":"ready"}"#));
    assert_eq!(gw.send(&req("POST", "/health/ready")).status(), 405);
}

#[test]
fn detailed_health_reports_workers_providers_channels_and_memory() {
    let gw = Cfg::new().start();
    // RSS is sampled by the main thread; give it its first sample.
    assert!(eventually(Duration::from_secs(3), || {
        gw.get("/health/detailed", None).json()["data"]["memory"]["rssBytes"].as_u64().unwrap_or(0) > 0
    }));
    let resp = gw.get("/health/detailed", None);
    assert_eq!(resp.status(), 200);
    let mut v = stamped(resp.json());
    assert!(mask(&mut v, "/data/uptimeSecs").as_u64().unwrap() < 60);
    let driver = mask(&mut v, "/data/ioDriver");
    assert!(driver == "io_uring" || driver == "epoll", "{driver}");
    assert!(mask(&mut v, "/data/memory/rssBytes").as_u64().unwrap() > 0);
    let (mut conns, mut in_flight) = (0, 0);
    for w in 0..2 {
        conns += mask(&mut v, &format!("/data/workers/{w}/connections")).as_u64().unwrap();
        in_flight += mask(&mut v, &format!("/data/workers/{w}/inFlight")).as_u64().unwrap();
    }
    assert!(conns >= 1, "this request's connection is open");
    assert_eq!(in_flight, 1, "this request is in flight");
    // The store: nothing written yet; its file in the gateway's working directory.
    assert!(mask(&mut v, "/data/store/sizeBytes").as_u64().unwrap() > 0);
    assert!(mask(&mut v, "/data/store/path").as_str().unwrap().ends_with("/clawgate.db"));
    let worker =
        |id: u64| json!({"id": id, "connections": "<masked>", "inFlight": "<masked>", "websockets": 0, "sessions": 0});
    assert_eq!(
        v,
        ok_envelope(json!({
            "status": "ok",
            "version": VERSION,
            "uptimeSecs": "<masked>",
            "ioDriver": "<masked>",
            "workers": [worker(0), worker(1)],
            "providers": [{"name": "mock", "kind": "mock", "state": "up", "latencyMs": null, "errorRate": 0.0, "requests": 0, "errors": 0}],
            "channels": [
                {"name": "support", "type": "generic", "enabled": true, "lastEvent": null},
                {"name": "legacy", "type": "generic", "enabled": false, "lastEvent": null},
            ],
            "memory": {"rssBytes": "<masked>"},
            "store": {"backend": "sqlite", "state": "ok", "durability": "ack", "path": "<masked>",
                "sizeBytes": "<masked>", "queueDepth": 0, "commits": 0, "writes": 0, "writeErrors": 0,
                "commitLatencyMs": 0.0, "commitLatencyMaxMs": 0.0},
        }))
    );
}

#[test]
fn detailed_health_can_be_restricted_to_admin_keys() {
    let gw = Cfg::new().server("health_detailed_admin_only = true").start();
    assert_error(&gw.get("/health/detailed", None), 401, "UNAUTHORIZED", "an admin key is required");
    assert_error(&gw.get("/health/detailed", Some(USER)), 403, "FORBIDDEN", "an admin key is required");
    assert_eq!(gw.get("/health/detailed", Some(ADMIN)).status(), 200);
    // Plain /health stays open.
    assert_eq!(gw.get("/health", None).status(), 200);
}

#[test]
fn status_reports_version_driver_workers_user_and_totals() {
    let gw = Cfg::new().start();
    // Everything on one connection, so the totals are exact.
    let mut c = gw.conn();
    let chat = c.exchange(&req("POST", "/api/chat").key(ADMIN).json(&json!({"message": "Hello"})));
    assert_eq!(chat.status(), 200, "{}", chat.text());
    let resp = c.exchange(&req("GET", "/api/status").key(ADMIN));
    assert_eq!(resp.status(), 200);
    let mut v = stamped(resp.json());
    assert!(mask(&mut v, "/data/uptimeSecs").as_u64().unwrap() < 60);
    let driver = mask(&mut v, "/data/ioDriver");
    assert!(driver == "io_uring" || driver == "epoll", "{driver}");
    // The turn was committed (one transaction, one write) before its answer.
    assert!(mask(&mut v, "/data/store/sizeBytes").as_u64().unwrap() > 0);
    assert!(mask(&mut v, "/data/store/commitLatencyMs").as_f64().unwrap() > 0.0);
    assert!(mask(&mut v, "/data/store/commitLatencyMaxMs").as_f64().unwrap() > 0.0);
    assert!(mask(&mut v, "/data/store/path").as_str().unwrap().ends_with("/clawgate.db"));
    assert_eq!(
        v,
        ok_envelope(json!({
            "version": VERSION,
            "uptimeSecs": "<masked>",
            "ioDriver": "<masked>",
            "workers": 2,
            "user": "ops",
            "totals": {
                "requests": 2,
                "activeConnections": 1,
                "webSocketClients": 0,
                "sessions": 1,
                "promptTokens": 4,
                "completionTokens": 10,
                "tokens": 14,
            },
            "store": {"backend": "sqlite", "state": "ok", "durability": "ack", "path": "<masked>",
                "sizeBytes": "<masked>", "queueDepth": 0, "commits": 1, "writes": 1, "writeErrors": 0,
                "commitLatencyMs": "<masked>", "commitLatencyMaxMs": "<masked>"},
            "models": [
                {"id": "mock", "frontDoors": {"/v1/chat/completions": "translated", "/v1/messages": "translated",
                    "/v1/responses": "translated"}},
                {"id": "mock-large", "frontDoors": {"/v1/chat/completions": "translated", "/v1/messages": "translated",
                    "/v1/responses": "translated"}},
            ],
        }))
    );
}

#[test]
fn status_names_the_io_driver_chosen_by_clawgate_io() {
    let gw = Cfg::new().start();
    let status = gw.get("/api/status", Some(ADMIN)).json();
    let driver = status["data"]["ioDriver"].as_str().unwrap().to_string();
    match std::env::var("CLAWGATE_IO").as_deref() {
        Ok("uring") | Ok("io_uring") => assert_eq!(driver, "io_uring"),
        Ok("epoll") => assert_eq!(driver, "epoll"),
        _ => assert!(driver == "io_uring" || driver == "epoll", "{driver}"),
    }
    let detailed = gw.get("/health/detailed", None).json();
    assert_eq!(detailed["data"]["ioDriver"], driver.as_str());
    assert!(
        gw.logs().iter().any(|l| l.contains("listening on http://") && l.contains(&format!("io={driver}"))),
        "start-up line names io={driver}: {:?}",
        gw.logs()
    );
}

#[test]
fn models_lists_the_catalogue_with_the_default_flagged() {
    let gw = Cfg::new().start();
    // The built-in mock serves every front door through the canonical turn.
    let doors =
        json!({"/v1/chat/completions": "translated", "/v1/messages": "translated", "/v1/responses": "translated"});
    assert_ok(
        &gw.get("/api/models", Some(USER)),
        json!([
            {"id": "mock", "provider": "mock", "upstreamModel": "mock", "default": true, "frontDoors": doors},
            {"id": "mock-large", "provider": "mock", "upstreamModel": "mock-large-v2", "contextWindow": 128000,
                "default": false, "frontDoors": doors},
        ]),
    );
}

#[test]
fn channels_lists_the_api_channel_and_the_configured_ones() {
    let gw = Cfg::new().start();
    let stats = json!({"received": 0, "processed": 0, "failed": 0, "duplicates": 0, "rejected": 0, "dropped": 0,
        "ignored": 0, "repliesSent": 0, "retries": 0, "deadLetters": 0, "lastEventAt": null,
        "queues": {"spooled": 0, "outbox": 0, "deadLetters": 0}});
    assert_ok(
        &gw.get("/api/channels", Some(USER)),
        json!([
            {"name": "api", "type": "api", "enabled": true, "webhookPath": null, "model": null, "stats": stats},
            {"name": "support", "type": "generic", "enabled": true, "webhookPath": "/webhooks/support", "model": "mock-large", "stats": stats},
            {"name": "legacy", "type": "generic", "enabled": false, "webhookPath": "/webhooks/legacy", "model": null, "stats": stats},
        ]),
    );
}

#[test]
fn api_v1_paths_answer_like_the_unversioned_ones() {
    let gw = Cfg::new().start();
    for path in ["/models", "/channels", "/sessions"] {
        let plain = stamped(gw.get(&format!("/api{path}"), Some(ADMIN)).json());
        let v1 = gw.get(&format!("/api/v1{path}"), Some(ADMIN));
        assert_eq!(v1.status(), 200, "{path}");
        assert_eq!(stamped(v1.json()), plain, "{path}");
    }
    let status = gw.get("/api/v1/status", Some(ADMIN));
    assert_eq!(status.json()["data"]["user"], "ops");
    let chat = gw.post("/api/v1/chat", Some(USER), &json!({"message": "via v1"}));
    assert_eq!(chat.status(), 200);
    assert_eq!(chat.json()["data"]["message"], mock_reply("via v1", 1));
    let id = chat.json()["data"]["sessionId"].as_str().unwrap().to_string();
    let got = gw.get(&format!("/api/v1/sessions/{id}"), Some(USER));
    assert_eq!(got.json()["data"]["messageCount"], 2);
}

#[test]
fn unknown_api_versions_are_version_not_available() {
    let gw = Cfg::new().start();
    let msg = "API version v2 is not available; use /api/v1";
    assert_error(&gw.get("/api/v2/models", Some(ADMIN)), 404, "VERSION_NOT_AVAILABLE", msg);
    assert_error(&gw.get("/api/v2/models", None), 404, "VERSION_NOT_AVAILABLE", msg);
    assert_error(&gw.post("/api/v2/chat", Some(ADMIN), &json!({"message": "hi"})), 404, "VERSION_NOT_AVAILABLE", msg);
    assert_error(
        &gw.get("/api/v10/status", Some(ADMIN)),
        404,
        "VERSION_NOT_AVAILABLE",
        "API version v10 is not available; use /api/v1",
    );
}

#[test]
fn unknown_routes_are_not_found() {
    let gw = Cfg::new().start();
    for path in ["/", "/nope", "/healthz", "/api", "/api/nope", "/api/v1/nope", "/api/sessions/a/b", "/apix/models"] {
        for key in [None, Some(ADMIN)] {
            let resp = gw.get(path, key);
            assert_error(&resp, 404, "NOT_FOUND", "no route for this path");
            assert_eq!(resp.head.reason, "Not Found");
        }
    }
}

#[test]
fn wrong_methods_are_405_with_allow() {
    let gw = Cfg::new().start();
    let cases = [
        ("GET", "/api/chat", "POST"),
        ("PUT", "/api/chat", "POST"),
        ("POST", "/health", "GET"),
        ("POST", "/health/detailed", "GET"),
        ("DELETE", "/api/models", "GET"),
        ("POST", "/api/status", "GET"),
        ("PATCH", "/api/v1/channels", "GET"),
        ("POST", "/api/sessions", "GET"),
        ("DELETE", "/api/sessions/abc", "GET, POST"),
        ("PUT", "/api/v1/sessions/abc", "GET, POST"),
    ];
    for (method, path, allow) in cases {
        let resp = gw.send(&req(method, path).key(ADMIN));
        assert_error(&resp, 405, "METHOD_NOT_ALLOWED", &format!("method not allowed; allowed: {allow}"));
        assert_eq!(resp.header("allow"), Some(allow), "{method} {path}");
    }
}

#[test]
fn a_405_with_a_body_keeps_the_connection_usable() {
    let gw = Cfg::new().start();
    let mut c = gw.conn();
    let resp = c.exchange(&req("POST", "/api/status").key(ADMIN).json(&json!({"x": 1})));
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.header("connection"), None);
    assert_eq!(c.exchange(&req("GET", "/health")).status(), 200);
}

#[test]
fn requests_without_a_key_are_unauthorized() {
    let gw = Cfg::new().start();
    let msg = "missing Authorization: Bearer <key>";
    for path in ["/api/status", "/api/models", "/api/channels", "/api/sessions", "/api/sessions/abc", "/api/v1/models"]
    {
        assert_error(&gw.get(path, None), 401, "UNAUTHORIZED", msg);
    }
    assert_error(&gw.post("/api/chat", None, &json!({"message": "hi"})), 401, "UNAUTHORIZED", msg);
    assert_error(&gw.post("/api/sessions/abc", None, &json!({"action": "reset"})), 401, "UNAUTHORIZED", msg);
}

#[test]
fn unknown_keys_are_unauthorized() {
    let gw = Cfg::new().start();
    for key in ["sk-nope", "sk-admin2", "SK-ADMIN", "sk-admi"] {
        assert_error(&gw.get("/api/status", Some(key)), 401, "UNAUTHORIZED", "unknown API key");
    }
    assert_error(
        &gw.post("/api/chat", Some("sk-nope"), &json!({"message": "hi"})),
        401,
        "UNAUTHORIZED",
        "unknown API key",
    );
}

#[test]
fn malformed_authorization_headers_are_unauthorized() {
    let gw = Cfg::new().start();
    for value in ["Basic sk-admin", "sk-admin", "Bearer", "Bearer ", "Token sk-admin", "Bearersk-admin"] {
        let resp = gw.send(&req("GET", "/api/status").header("Authorization", value));
        assert_error(&resp, 401, "UNAUTHORIZED", "Authorization must be Bearer <key>");
    }
    // The scheme is case-insensitive and surrounding blanks are ignored.
    let resp = gw.send(&req("GET", "/api/status").header("Authorization", "bearer   sk-admin  "));
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json()["data"]["user"], "ops");
}

#[test]
fn keys_in_the_url_are_not_accepted() {
    let gw = Cfg::new().start();
    for path in ["/api/status?key=sk-admin", "/api/status?api_key=sk-admin", "/api/status?token=sk-admin"] {
        assert_error(&gw.get(path, None), 401, "UNAUTHORIZED", "missing Authorization: Bearer <key>");
    }
}

#[test]
fn keys_map_to_their_names() {
    let gw = Cfg::new().start();
    for (key, name) in [(ADMIN, "ops"), (USER, "app"), (OTHER, "other"), (LIMITED, "limited")] {
        assert_eq!(gw.get("/api/status", Some(key)).json()["data"]["user"], name);
    }
}

#[test]
fn open_mode_lets_every_caller_in_as_admin() {
    let gw = Cfg::new().open_mode().start();
    assert!(gw.logs().iter().any(|l| l.contains("open_mode=true")), "{:?}", gw.logs());
    for key in [None, Some("anything"), Some("sk-admin")] {
        let resp = gw.get("/api/status", key);
        assert_eq!(resp.status(), 200, "{}", resp.text());
        assert_eq!(resp.json()["data"]["user"], "open");
    }
    let resp = gw.send(&req("GET", "/api/models").header("Authorization", "Basic whatever"));
    assert_eq!(resp.status(), 200);
    let data = gw.chat("x", json!({"message": "open"}));
    assert_eq!(data["message"], mock_reply("open", 1));
}

#[test]
fn request_ids_are_generated_and_unique() {
    let gw = Cfg::new().start();
    let mut c = gw.conn();
    let responses = [
        c.exchange(&req("GET", "/health")),
        c.exchange(&req("GET", "/health")),
        c.exchange(&req("GET", "/nope")),
        c.exchange(&req("GET", "/api/status")),
        c.exchange(&req("GET", "/api/chat").key(ADMIN)),
        c.exchange(&req("GET", "/api/models").key(ADMIN)),
    ];
    let ids: Vec<&str> = responses.iter().map(|r| r.request_id()).collect();
    for id in &ids {
        assert!(is_generated_request_id(id), "{id}");
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
}

#[test]
fn client_request_ids_are_echoed() {
    let gw = Cfg::new().start();
    let id = "trace-ABC_123.xyz:9";
    for r in [
        req("GET", "/health"),
        req("GET", "/nope"),
        req("GET", "/api/status"),
        req("GET", "/api/chat").key(ADMIN),
        req("GET", "/api/v2/status").key(ADMIN),
        req("GET", "/api/models").key(ADMIN),
        req("POST", "/api/chat").key(ADMIN).json(&json!({"message": 1})),
        req("POST", "/api/chat").key(ADMIN).json(&json!({"message": "hi"})),
    ] {
        let resp = gw.send(&r.clone().id(id));
        assert_eq!(resp.header("x-request-id"), Some(id), "{} {}", r.method, r.path);
        assert_eq!(resp.head.all("x-request-id").len(), 1, "exactly one X-Request-Id");
    }
}

#[test]
fn oversized_or_invalid_request_ids_are_replaced() {
    let gw = Cfg::new().start();
    let long = "x".repeat(129);
    for id in [long.as_str(), "has space", ""] {
        let resp = gw.send(&req("GET", "/health").header("X-Request-Id", id));
        assert!(is_generated_request_id(resp.request_id()), "{id:?} -> {}", resp.request_id());
    }
    let max = "y".repeat(128);
    assert_eq!(gw.send(&req("GET", "/health").id(&max)).request_id(), max);
}

#[test]
fn above_the_memory_watermark_new_turns_get_503_overloaded_and_the_rest_answers() {
    // RSS is sampled every 100 ms; any running gateway is above 1 MiB.
    let gw = Cfg::new().server("max_memory_mb = 1").start();
    let refused = eventually(Duration::from_secs(5), || {
        gw.post("/api/chat", Some(USER), &json!({"message": "hi"})).status() == 503
    });
    assert!(refused, "a turn above the watermark is refused");
    let r = gw.post("/api/chat", Some(USER), &json!({"message": "hi"}));
    assert_error_prefix(&r, 503, "OVERLOADED", "the gateway is above its memory watermark (server.max_memory_mb = 1)");
    assert_eq!(r.header("retry-after"), Some("1"));
    let r = gw.post("/v1/chat/completions", Some(USER), &json!({"messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(r.status(), 503);
    assert_eq!(r.json()["error"]["code"], "OVERLOADED", "{}", r.text());
    // What is not a turn still answers.
    assert_eq!(gw.get("/health", None).status(), 200);
    assert_eq!(gw.get("/api/models", Some(USER)).status(), 200);
    // A watermark above the process serves turns.
    let gw = Cfg::new().server("max_memory_mb = 100000").start();
    assert_eq!(gw.post("/api/chat", Some(USER), &json!({"message": "hi"})).status(), 200);
}
