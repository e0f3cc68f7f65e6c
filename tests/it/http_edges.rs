//! The HTTP/1.1 connection loop at its edges: pipelining, split writes, chunked request
//! bodies, size limits (413, 431) and the staged close after them, garbage and half
//! requests, keep-alive and `Connection: close`, HTTP/1.0, `Expect: 100-continue`, read
//! and idle timeouts, and the per-worker connection limit. A bad connection must never
//! hurt another one.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

fn health() -> Req {
    req("GET", "/health")
}

fn chat(body: serde_json::Value) -> Req {
    req("POST", "/api/chat").key(USER).json(&body)
}

/// `body` as a chunked transfer coding, cut into pieces of the given sizes (the rest in
/// one last piece), with a chunk extension and a trailer.
fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    for &n in sizes {
        let n = n.min(rest.len());
        if n == 0 {
            break;
        }
        out.extend_from_slice(format!("{n:x};piece=1\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    if !rest.is_empty() {
        out.extend_from_slice(format!("{:X}\r\n", rest.len()).as_bytes());
        out.extend_from_slice(rest);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
    out
}

fn chunked_chat_head() -> Vec<u8> {
    b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sk-user\r\n\
      Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec()
}

/// Polls until only `expected` connections are open on the gateway, asking on one
/// keep-alive connection (which counts itself).
fn wait_for_active_connections(gw: &Gateway, expected: u64) {
    let mut c = gw.conn();
    let mut last = 0;
    let ok = eventually(Duration::from_secs(3), || {
        let v = c.exchange(&req("GET", "/api/status").key(ADMIN)).json();
        last = v["data"]["totals"]["activeConnections"].as_u64().unwrap();
        last == expected
    });
    assert!(ok, "active connections stayed at {last}, expected {expected}");
}

#[test]
fn two_pipelined_requests_in_one_write_are_answered_in_order() {
    let gw = Cfg::new().start();
    let mut c = gw.conn();
    let mut bytes = chat(json!({"message": "first"})).id("p-1").bytes();
    bytes.extend(health().id("p-2").bytes());
    c.send(&bytes);
    let a = c.read_response();
    let b = c.read_response();
    assert_eq!((a.request_id(), a.status()), ("p-1", 200));
    assert_eq!(a.json()["data"]["message"], mock_reply("first", 1));
    assert_eq!((b.request_id(), b.status()), ("p-2", 200));
    assert_eq!(b.body, br#"{"status":"ok"}"#);
    // And the connection is still good.
    assert_eq!(c.exchange(&health()).status(), 200);
}

#[test]
fn ten_pipelined_requests_in_one_write_are_answered_in_order() {
    let gw = Cfg::new().start();
    let requests = [
        health(),
        req("GET", "/api/models").key(USER),
        chat(json!({"message": "m2", "sessionId": "pipe"})),
        req("GET", "/nope"),
        chat(json!({"message": "m4", "sessionId": "pipe"})),
        req("GET", "/api/chat").key(USER),
        req("HEAD", "/health"),
        req("GET", "/api/status"),
        chat(json!({"message": "m8", "sessionId": "pipe", "stream": true})),
        health(),
    ];
    let mut bytes = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        bytes.extend(r.clone().id(&format!("p-{i}")).bytes());
    }
    let mut c = gw.conn();
    c.send(&bytes);
    let mut responses = Vec::new();
    for r in &requests {
        responses.push(if r.method == "HEAD" { c.read_response_to_head() } else { c.read_response() });
    }
    let statuses: Vec<u16> = responses.iter().map(Response::status).collect();
    assert_eq!(statuses, [200, 200, 200, 404, 200, 405, 200, 401, 200, 200]);
    for (i, r) in responses.iter().enumerate() {
        assert_eq!(r.request_id(), format!("p-{i}"), "response {i} out of order");
    }
    assert_eq!(responses[2].json()["data"]["message"], mock_reply("m2", 1));
    assert_eq!(responses[4].json()["data"]["message"], mock_reply("m4", 2));
    assert_eq!(responses[6].header("content-length"), Some("15"));
    let events: Vec<SseEvent> = responses[8].chunks.iter().map(|c| parse_event(c)).collect();
    let text: String = events.iter().filter_map(|e| e.data["content"].as_str()).collect();
    assert_eq!(text, mock_reply("m8", 3));
    assert_eq!(events.last().unwrap().data["type"], "done");
    assert_eq!(responses[9].body, br#"{"status":"ok"}"#);
}

#[test]
fn a_request_written_one_byte_at_a_time_is_served() {
    let gw = Cfg::new().start();
    let mut c = gw.conn();
    let r = chat(json!({"message": "slowly", "sessionId": "bytewise"})).id("byte-1");
    c.send_bytewise(&r.bytes(), Duration::from_millis(1));
    let resp = c.read_response();
    assert_ok(
        &resp,
        json!({
            "message": mock_reply("slowly", 1),
            "sessionId": "bytewise",
            "model": "mock",
            "usage": mock_usage(&["slowly"], &mock_reply("slowly", 1)),
        }),
    );
    assert_eq!(resp.request_id(), "byte-1");
    // A GET head split byte by byte too, on the same connection.
    c.send_bytewise(&health().bytes(), Duration::from_millis(1));
    assert_eq!(c.read_response().body, br#"{"status":"ok"}"#);
}

#[test]
fn chunked_request_bodies_are_decoded() {
    let gw = Cfg::new().start();
    let mut c = gw.conn();
    let body = br#"{"message":"chunked hello","sessionId":"chunky"}"#;
    let mut bytes = chunked_chat_head();
    bytes.extend(chunked(body, &[7, 1, 13]));
    // A pipelined request right after the trailer is not swallowed.
    bytes.extend(health().id("after-chunked").bytes());
    c.send(&bytes);
    let resp = c.read_response();
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(resp.json()["data"]["message"], mock_reply("chunked hello", 1));
    assert_eq!(resp.json()["data"]["sessionId"], "chunky");
    let next = c.read_response();
    assert_eq!((next.status(), next.request_id()), (200, "after-chunked"));
}

#[test]
fn chunked_request_bodies_split_byte_by_byte_are_decoded() {
    let gw = Cfg::new().start();
    let mut c = gw.conn();
    let body = br#"{"message":"drip"}"#;
    let mut bytes = chunked_chat_head();
    bytes.extend(chunked(body, &[3, 5]));
    c.send_bytewise(&bytes, Duration::from_millis(1));
    let resp = c.read_response();
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(resp.json()["data"]["message"], mock_reply("drip", 1));
}

#[test]
fn a_two_mib_body_is_refused_with_413_and_other_connections_keep_working() {
    let gw = Cfg::new().start();
    let mut bystander = gw.conn();
    assert_eq!(bystander.exchange(&health()).status(), 200);

    let mut c = gw.conn();
    let len = 2 * 1024 * 1024;
    c.send(
        format!("POST /api/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-user\r\nContent-Length: {len}\r\n\r\n")
            .as_bytes(),
    );
    let mut writer = c.stream.try_clone().unwrap();
    let pusher = std::thread::spawn(move || {
        let mut body = br#"{"message":""#.to_vec();
        body.resize(len, b'a');
        // The server stops reading; the write fails once it closes. That is expected.
        let _ = writer.write_all(&body);
    });
    let resp = c.read_response();
    assert_error(&resp, 413, "PAYLOAD_TOO_LARGE", "request body exceeds 1048576 bytes");
    assert_eq!(resp.head.reason, "Payload Too Large");
    assert_eq!(resp.header("connection"), Some("close"));
    c.read_to_eof();
    pusher.join().unwrap();

    assert_eq!(bystander.exchange(&health()).status(), 200);
    assert_eq!(gw.get("/health", None).status(), 200);
    assert_eq!(gw.chat(USER, json!({"message": "still here"}))["message"], mock_reply("still here", 1));
}

#[test]
fn a_chunked_body_over_the_limit_is_refused_with_413() {
    let gw = Cfg::new().start();
    let mut c = gw.conn();
    let mut bytes = chunked_chat_head();
    bytes.extend_from_slice(b"200000\r\n");
    bytes.extend(vec![b'a'; 4096]);
    c.send(&bytes);
    let resp = c.read_response();
    assert_error(&resp, 413, "PAYLOAD_TOO_LARGE", "request body exceeds 1048576 bytes");
    assert_eq!(resp.header("connection"), Some("close"));
    c.read_to_eof();
    assert_eq!(gw.get("/health", None).status(), 200);
}

#[test]
fn a_body_just_under_the_limit_is_accepted() {
    let gw = Cfg::new().start();
    let mut body = br#"{"message":"big"}"#.to_vec();
    body.resize(1_048_576, b' ');
    let resp = gw.send(&req("POST", "/api/chat").key(USER).body(body));
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(resp.json()["data"]["message"], mock_reply("big", 1));
}

#[test]
fn max_body_bytes_sets_the_limit() {
    let gw = Cfg::new().server("max_body_bytes = 64").start();
    let mut body = br#"{"message":"small"}"#.to_vec();
    body.resize(64, b' ');
    assert_eq!(gw.send(&req("POST", "/api/chat").key(USER).body(body.clone())).status(), 200);
    body.push(b' ');
    let resp = gw.send(&req("POST", "/api/chat").key(USER).body(body));
    assert_error(&resp, 413, "PAYLOAD_TOO_LARGE", "request body exceeds 64 bytes");
}

#[test]
fn a_head_over_the_limit_is_refused_with_431_and_close() {
    let gw = Cfg::new().start();
    let mut bystander = gw.conn();
    assert_eq!(bystander.exchange(&health()).status(), 200);
    let mut c = gw.conn();
    c.send(&health().header("X-Big", &"a".repeat(20_000)).bytes());
    let resp = c.read_response();
    assert_error(&resp, 431, "HEADERS_TOO_LARGE", "request head exceeds the size limit");
    assert_eq!(resp.head.reason, "Request Header Fields Too Large");
    assert_eq!(resp.header("connection"), Some("close"));
    c.read_to_eof();
    assert_eq!(bystander.exchange(&health()).status(), 200);
}

#[test]
fn too_many_header_fields_are_refused_with_431() {
    let gw = Cfg::new().start();
    let mut r = health();
    for i in 0..70 {
        r = r.header(&format!("X-H{i}"), "v");
    }
    let mut c = gw.conn();
    c.send(&r.bytes());
    let resp = c.read_response();
    assert_error(&resp, 431, "HEADERS_TOO_LARGE", "too many header fields (limit 64)");
    c.read_to_eof();
}

#[test]
fn garbage_bytes_get_400_and_close_without_hurting_other_connections() {
    let gw = Cfg::new().start();
    let mut bystander = gw.conn();
    assert_eq!(bystander.exchange(&health()).status(), 200);
    let garbage: [&[u8]; 4] = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xde\xad\xbe\xef\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
        b"GET /health HTTP/9.9\r\n\r\n",
        b"GET /he alth HTTP/1.1\r\n\r\n",
    ];
    for bytes in garbage {
        let mut c = gw.conn();
        c.send(bytes);
        let resp = c.read_response();
        assert_error_prefix(&resp, 400, "INVALID_REQUEST", "malformed request head");
        assert_eq!(resp.header("connection"), Some("close"), "{bytes:?}");
        c.read_to_eof();
    }
    // A request target that is not an absolute path.
    let mut c = gw.conn();
    c.send(b"GET health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_error(&c.read_response(), 400, "INVALID_REQUEST", "request target must be an absolute path");
    c.read_to_eof();
    // Garbage after a good request: the good one is answered first.
    let mut c = gw.conn();
    let mut bytes = health().id("good").bytes();
    bytes.extend_from_slice(b"\xff\xfe\xfd\r\n\r\n");
    c.send(&bytes);
    assert_eq!(c.read_response().request_id(), "good");
    assert_eq!(c.read_response().status(), 400);
    c.read_to_eof();

    assert_eq!(bystander.exchange(&health()).status(), 200);
    assert_eq!(gw.get("/api/models", Some(USER)).status(), 200);
}

#[test]
fn half_requests_then_close_leave_the_server_healthy() {
    let gw = Cfg::new().start();
    {
        let mut c = gw.conn();
        c.send(b"GET /health HTTP/1.1\r\nHo");
    }
    {
        let mut c = gw.conn();
        c.send(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-user\r\nContent-Length: 100\r\n\r\n{\"mess");
    }
    {
        let mut c = gw.conn();
        let mut bytes = chunked_chat_head();
        bytes.extend_from_slice(b"10\r\n{\"message\"");
        c.send(&bytes);
    }
    {
        let _c = gw.conn();
    }
    {
        // Half a request, then only our half of the connection closed.
        let mut c = gw.conn();
        c.send(b"GET /health HTTP/1.1\r\n");
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        c.expect_closed(Duration::from_secs(3));
    }
    wait_for_active_connections(&gw, 1);
    let detailed = gw.get("/health/detailed", None).json();
    let in_flight: u64 =
        detailed["data"]["workers"].as_array().unwrap().iter().map(|w| w["inFlight"].as_u64().unwrap()).sum();
    assert_eq!(in_flight, 1, "only the /health/detailed request itself");
    assert_eq!(gw.chat(USER, json!({"message": "fine"}))["message"], mock_reply("fine", 1));
}

#[test]
fn a_client_leaving_mid_stream_does_not_lock_the_session() {
    let gw = Cfg::new().chunk_delay_ms(50).chunk_words(1).start();
    {
        let mut c = gw.conn();
        c.send(&chat(json!({"message": "leaving", "sessionId": "gone", "stream": true})).bytes());
        let head = c.read_head();
        assert_eq!(head.status, 200);
        assert!(c.read_chunk().is_some());
    }
    // The abandoned turn is either aborted or finished (streams may be kept for a
    // resume); either way the session is free again and its history stays whole.
    let start = Instant::now();
    let data = gw.chat(USER, json!({"message": "back", "sessionId": "gone"}));
    assert!(start.elapsed() < Duration::from_secs(5), "waited {:?}", start.elapsed());
    let text = data["message"].as_str().unwrap();
    let turn = if text == mock_reply("back", 1) { 1 } else { 2 };
    assert_eq!(text, mock_reply("back", turn));
    let session = gw.get("/api/sessions/gone", Some(USER)).json();
    let contents: Vec<&str> =
        session["data"]["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    let leaving = mock_reply("leaving", 1);
    let back = mock_reply("back", turn);
    if turn == 1 {
        assert_eq!(contents, ["back", back.as_str()]);
    } else {
        assert_eq!(contents, ["leaving", leaving.as_str(), "back", back.as_str()]);
    }
}

#[test]
fn keep_alive_connections_serve_many_requests() {
    let gw = Cfg::new().start();
    let mut c = gw.conn();
    for i in 0..200 {
        let resp = if i % 20 == 0 {
            c.exchange(&chat(json!({"message": format!("n{i}"), "sessionId": "ka"})))
        } else {
            c.exchange(&health().id(&format!("ka-{i}")))
        };
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(resp.header("connection"), None, "request {i}");
        if i % 20 != 0 {
            assert_eq!(resp.request_id(), format!("ka-{i}"));
        }
    }
    let data = gw.chat(USER, json!({"message": "last", "sessionId": "ka"}));
    assert_eq!(data["message"], mock_reply("last", 11));
}

#[test]
fn connection_close_is_honoured() {
    let gw = Cfg::new().start();
    for r in [
        health().header("Connection", "close"),
        chat(json!({"message": "bye"})).header("Connection", "close"),
        req("GET", "/nope").header("Connection", "Keep-Alive, Close"),
    ] {
        let mut c = gw.conn();
        let resp = c.exchange(&r);
        assert_eq!(resp.header("connection"), Some("close"), "{} {}", r.method, r.path);
        c.expect_closed(Duration::from_secs(3));
    }
    // Also for a streamed answer.
    let mut c = gw.conn();
    c.send(&chat(json!({"message": "sse bye", "stream": true})).header("Connection", "close").bytes());
    let (head, events) = read_sse(&mut c);
    assert_eq!(head.header("connection"), Some("close"));
    assert_eq!(concat_chunks(&events), mock_reply("sse bye", 1));
    c.expect_closed(Duration::from_secs(3));
}

#[test]
fn http10_requests_are_answered_and_closed() {
    let gw = Cfg::new().start();
    let mut c = gw.conn();
    c.send(b"GET /health HTTP/1.0\r\n\r\n");
    let resp = c.read_response();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body, br#"{"status":"ok"}"#);
    assert_eq!(resp.header("connection"), Some("close"));
    c.expect_closed(Duration::from_secs(3));

    let mut c = gw.conn();
    let resp = c.exchange(&chat(json!({"message": "old client"})).http10());
    assert_eq!(resp.json()["data"]["message"], mock_reply("old client", 1));
    c.expect_closed(Duration::from_secs(3));

    // With keep-alive asked for, the connection stays open.
    let mut c = gw.conn();
    let r = health().http10().header("Connection", "keep-alive");
    assert_eq!(c.exchange(&r).status(), 200);
    assert_eq!(c.exchange(&r).status(), 200);
}

#[test]
fn http10_keep_alive_is_confirmed_in_the_response() {
    // An HTTP/1.0 client only keeps the connection if the response says so.
    let gw = Cfg::new().start();
    let mut c = gw.conn();
    let resp = c.exchange(&health().http10().header("Connection", "keep-alive"));
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.header("connection").map(str::to_ascii_lowercase).as_deref(), Some("keep-alive"));
}

#[test]
fn http10_streams_are_not_chunked() {
    // RFC 9112 6.1: no Transfer-Encoding in a response to an HTTP/1.0 request; the
    // stream is delimited by closing the connection instead.
    let gw = Cfg::new().start();
    let mut c = gw.conn();
    c.send(&chat(json!({"message": "Hello", "stream": true})).http10().bytes());
    let head = c.read_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("transfer-encoding"), None, "chunked sent to an HTTP/1.0 client: {head:?}");
    let body = String::from_utf8(c.read_to_eof()).unwrap();
    assert!(body.starts_with("event: message\nid: "), "{body:?}");
    assert!(body.contains(r#"data: {"type":"done""#), "{body:?}");
}

#[test]
fn expect_100_continue_gets_an_interim_response_before_the_body() {
    let gw = Cfg::new().start();
    let mut c = gw.conn();
    let body = br#"{"message":"continue"}"#;
    c.send(
        format!(
            "POST /api/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-user\r\nExpect: 100-continue\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let interim = c.read_head();
    assert_eq!((interim.version.as_str(), interim.status, interim.reason.as_str()), ("HTTP/1.1", 100, "Continue"));
    assert!(interim.headers.is_empty(), "{interim:?}");
    c.send(body);
    let resp = c.read_response();
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(resp.json()["data"]["message"], mock_reply("continue", 1));

    // Chunked with Expect too.
    let mut head = chunked_chat_head();
    head.truncate(head.len() - 2);
    head.extend_from_slice(b"Expect: 100-continue\r\n\r\n");
    c.send(&head);
    assert_eq!(c.read_head().status, 100);
    c.send(&chunked(br#"{"message":"more"}"#, &[4]));
    assert_eq!(c.read_response().json()["data"]["message"], mock_reply("more", 1));
}

#[test]
fn expect_100_continue_with_a_body_over_the_limit_gets_413_at_once() {
    let gw = Cfg::new().start();
    let mut c = gw.conn();
    c.send(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-user\r\nExpect: 100-continue\r\nContent-Length: 2097152\r\n\r\n");
    let resp = c.read_response();
    assert_error(&resp, 413, "PAYLOAD_TOO_LARGE", "request body exceeds 1048576 bytes");
    c.read_to_eof();
}

#[test]
fn a_partial_head_times_out_with_400_and_close() {
    let gw = Cfg::new().server("header_timeout_ms = 300").start();
    // An idle connection is not on the head clock: it outlives the head timeout.
    let mut idle = gw.conn();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(idle.exchange(&health()).status(), 200);

    let mut c = gw.conn();
    let start = Instant::now();
    c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n");
    let resp = c.read_response();
    let took = start.elapsed();
    assert_error(&resp, 400, "INVALID_REQUEST", "timed out reading the request head");
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "timed out after {took:?}");
    c.read_to_eof();
}

#[test]
fn a_slow_body_times_out_with_400_and_close() {
    let gw = Cfg::new().server("body_timeout_ms = 300").start();
    let mut c = gw.conn();
    let start = Instant::now();
    c.send(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-user\r\nContent-Length: 40\r\n\r\n{\"mes");
    let resp = c.read_response();
    let took = start.elapsed();
    assert_error(&resp, 400, "INVALID_REQUEST", "timed out reading the request body");
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "timed out after {took:?}");
    c.read_to_eof();
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let gw = Cfg::new().server("idle_timeout_ms = 300").start();
    let mut c = gw.conn();
    assert_eq!(c.exchange(&health()).status(), 200);
    let start = Instant::now();
    c.expect_closed(Duration::from_secs(3));
    assert!(start.elapsed() >= Duration::from_millis(200), "closed after {:?}", start.elapsed());
}

#[test]
fn connections_over_the_worker_limit_get_503_overloaded() {
    let gw = Cfg::new().workers(1).server("max_connections_per_worker = 2").start();
    let mut c1 = gw.conn();
    let mut c2 = gw.conn();
    assert_eq!(c1.exchange(&health()).status(), 200);
    assert_eq!(c2.exchange(&health()).status(), 200);

    let mut c3 = gw.conn();
    let resp = c3.read_response();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.head.reason, "Service Unavailable");
    assert_eq!(stamped(resp.json()), err_envelope("OVERLOADED", "too many connections; retry shortly"));
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_eq!(resp.header("connection"), Some("close"));
    c3.read_to_eof();

    // The admitted connections are unaffected.
    assert_eq!(c1.exchange(&health()).status(), 200);
    drop(c1);
    let served = eventually(Duration::from_secs(3), || {
        let mut c = gw.conn();
        c.send(&health().bytes());
        c.read_response().status() == 200
    });
    assert!(served, "a slot freed by a closed connection is reused");
    assert_eq!(c2.exchange(&health()).status(), 200);
}

#[test]
fn overloaded_rejections_carry_a_request_id() {
    let gw = Cfg::new().workers(1).server("max_connections_per_worker = 1").start();
    let mut c1 = gw.conn();
    assert_eq!(c1.exchange(&health()).status(), 200);
    let mut c2 = gw.conn();
    let resp = c2.read_response();
    assert_eq!(resp.status(), 503);
    let id =
        resp.header("x-request-id").unwrap_or_else(|| panic!("503 OVERLOADED has no X-Request-Id: {:?}", resp.head));
    assert!(is_generated_request_id(id), "{id}");
}

#[test]
fn ambiguous_framing_is_refused_and_closes() {
    let gw = Cfg::new().start();
    let cases: [(&[u8], u16, &str, &str); 4] = [
        (
            b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "INVALID_REQUEST",
            "both Content-Length and Transfer-Encoding are present",
        ),
        (
            b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            400,
            "INVALID_REQUEST",
            "conflicting Content-Length headers",
        ),
        (
            b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            400,
            "INVALID_REQUEST",
            "invalid Content-Length",
        ),
        (
            b"POST /api/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
            "NOT_IMPLEMENTED",
            "only Transfer-Encoding: chunked is supported",
        ),
    ];
    for (bytes, status, code, message) in cases {
        let mut c = gw.conn();
        c.send(bytes);
        let resp = c.read_response();
        assert_error(&resp, status, code, message);
        assert_eq!(resp.header("connection"), Some("close"));
        c.read_to_eof();
    }
    // Bad chunk framing.
    let mut c = gw.conn();
    let mut bytes = chunked_chat_head();
    bytes.extend_from_slice(b"zz\r\n");
    c.send(&bytes);
    let resp = c.read_response();
    assert_error(&resp, 400, "INVALID_REQUEST", "invalid chunk size");
    c.read_to_eof();
}

/// Writes `head` and `body_len` bytes of body in one `write_all`, reading nothing until
/// it returns (as Python's `http.client` does), then reads the answer.
fn write_all_then_read(gw: &Gateway, head: &str, body_len: usize) -> Result<Response, std::io::Error> {
    let mut c = gw.conn();
    let mut bytes = head.as_bytes().to_vec();
    bytes.resize(bytes.len() + body_len, b'a');
    c.stream.write_all(&bytes)?;
    let resp = c.read_response();
    c.read_to_eof();
    Ok(resp)
}

#[test]
fn a_client_that_writes_a_big_body_before_reading_gets_the_413_every_time() {
    let gw = Cfg::new().server("max_body_bytes = 65536").start();
    for len in [1_153_434, 8 * 1_048_576] {
        let head = format!(
            "POST /api/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-user\r\nContent-Length: {len}\r\n\r\n"
        );
        for attempt in 0..5 {
            let resp = write_all_then_read(&gw, &head, len)
                .unwrap_or_else(|e| panic!("{len} bytes, attempt {attempt}: the write failed: {e}"));
            assert_error(&resp, 413, "PAYLOAD_TOO_LARGE", "request body exceeds 65536 bytes");
            assert_eq!(resp.header("connection"), Some("close"));
        }
    }
    // A head over the limit with a body behind it: the 431 is read too.
    let head = format!(
        "POST /api/chat HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nContent-Length: 2097152\r\n\r\n",
        "b".repeat(20_000)
    );
    for attempt in 0..3 {
        let resp = write_all_then_read(&gw, &head, 2_097_152)
            .unwrap_or_else(|e| panic!("431, attempt {attempt}: the write failed: {e}"));
        assert_error(&resp, 431, "HEADERS_TOO_LARGE", "request head exceeds the size limit");
    }
    wait_for_active_connections(&gw, 1);
}

/// Sends a 413-bound head, reads the 413, then keeps writing `piece` bytes every
/// `pause` until the gateway closes; returns the time from the 413 to the close and
/// the bytes written after the 413.
fn write_until_closed(gw: &Gateway, piece: usize, pause: Duration) -> (Duration, usize) {
    let mut c = gw.conn();
    c.send(
        b"POST /api/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-user\r\nContent-Length: 1073741824\r\n\r\n",
    );
    let resp = c.read_response();
    assert_eq!(resp.status(), 413);
    let mut writer: TcpStream = c.stream.try_clone().unwrap();
    let started = Instant::now();
    let buf = vec![b'a'; piece];
    let mut written = 0;
    while started.elapsed() < Duration::from_secs(20) {
        match writer.write(&buf) {
            Ok(n) => written += n,
            Err(_) => return (started.elapsed(), written),
        }
        std::thread::sleep(pause);
    }
    panic!("the gateway never closed a lingering connection ({written} bytes written)");
}

#[test]
fn a_lingering_close_ends_after_lingering_close_ms() {
    let gw = Cfg::new().server("max_body_bytes = 1024").server("lingering_close_ms = 400").start();
    // A trickle that never reaches the byte bound: the time bound closes it.
    let (took, written) = write_until_closed(&gw, 1024, Duration::from_millis(10));
    assert!(took >= Duration::from_millis(350) && took < Duration::from_secs(3), "closed after {took:?}");
    assert!(written < 1_000_000, "{written}");
}

#[test]
fn a_lingering_close_ends_after_lingering_close_bytes() {
    let gw = Cfg::new()
        .server("max_body_bytes = 1024")
        .server("lingering_close_ms = 60000")
        .server("lingering_close_bytes = 1048576")
        .start();
    // As fast as it can: the byte bound closes it long before the minute is over.
    let (took, written) = write_until_closed(&gw, 65_536, Duration::ZERO);
    assert!(took < Duration::from_secs(10), "closed after {took:?}");
    assert!(written >= 1_048_576, "closed after {written} bytes");
}
