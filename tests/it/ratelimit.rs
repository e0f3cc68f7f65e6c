//! Rate limits end to end: the gateway (two workers, the mock provider) with keys that
//! carry limits, driven over keep-alive connections of the raw client.
//!
//! - A key with `rpm = 60` sent 120 requests over 8 connections spread across both
//!   workers admits 60 within the stated error (lease 7 x 2 workers = 14), and answers
//!   the rest `429 RATE_LIMITED` with `Retry-After` and `X-RateLimit-*`; pinned to one
//!   connection it admits exactly 60.
//! - Token limits settle with the mock provider's usage (one token per word, plus 3
//!   per prompt message), and a stream that runs past the budget is cut with an SSE
//!   `error` event `RATE_LIMITED`.
//! - Failed keys are limited per IP, and ten in a minute lock the IP out (every
//!   request with a key gets 429, a valid key included, on every worker, until the
//!   lockout ends); limits change on SIGHUP without a restart.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::support::*;

/// `GET path` with `key` as the bearer token, on `c`.
fn get(c: &mut Conn, path: &str, key: &str) -> Response {
    c.exchange(&req("GET", path).key(key))
}

/// `POST /api/chat` with `body` as `key`, on `c`.
fn chat(c: &mut Conn, key: &str, body: &Value) -> Response {
    c.exchange(&req("POST", "/api/chat").key(key).json(body))
}

/// A numeric header that must be there.
fn num(r: &Response, name: &str) -> u64 {
    r.header(name).unwrap_or_else(|| panic!("no {name} in {:?}", r.head.headers)).parse().unwrap()
}

/// The worker that answered: the request id is `req_<prefix:8><worker:2><seq:10>`.
fn worker(r: &Response) -> String {
    let id = r.request_id();
    assert!(id.starts_with("req_") && id.len() == 24, "unexpected request id format {id}");
    id[12..14].to_string()
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The default test config (two workers, the mock provider) with `keys` as its only
/// `[[keys]]`.
fn config(keys: &str) -> Cfg {
    Cfg::new().keys(keys)
}

const RPM_60: &str = r#"
[[keys]]
name = "sixty"
key = "sk-sixty"
rpm = 60
"#;

/// The stated error of `rpm = 60` on 2 workers: a lease of min(8, 60 / (4 x 2)) = 7
/// tokens per worker.
const BOUND_60_ON_2: usize = 7 * 2;

/// Checks one response of the `rpm = 60` key; returns whether it was admitted.
fn check_rpm_60(r: &Response) -> bool {
    let now = now_unix();
    assert_eq!(r.header("x-ratelimit-limit"), Some("60"), "{:?}", r.head.headers);
    let remaining = num(r, "x-ratelimit-remaining");
    let reset = num(r, "x-ratelimit-reset");
    assert!(reset + 1 >= now && reset <= now + 61, "reset {reset} at {now}");
    match r.status() {
        200 => {
            assert!(remaining < 60);
            assert!(r.header("retry-after").is_none());
            true
        }
        429 => {
            assert_eq!(remaining, 0);
            let retry = num(r, "retry-after");
            assert!((1..=60).contains(&retry), "retry-after {retry}");
            let body = r.json();
            assert_eq!(body["success"], false);
            assert_eq!(body["error"]["code"], "RATE_LIMITED");
            false
        }
        other => panic!("unexpected status {other}: {}", r.text()),
    }
}

#[test]
fn a_key_with_rpm_60_admits_60_of_120_requests_spread_over_two_workers() {
    // SO_REUSEPORT spreads connections by hash: retry with fresh connections in the
    // rare case that all 8 land on one worker.
    for attempt in 0..5 {
        let gw = config(RPM_60).start();
        let conns: Vec<Conn> = (0..8).map(|_| gw.conn()).collect();
        let started = Instant::now();
        let results: Vec<(bool, String)> = std::thread::scope(|s| {
            let handles: Vec<_> = conns
                .into_iter()
                .map(|mut c| {
                    s.spawn(move || {
                        (0..15)
                            .map(|_| {
                                let r = get(&mut c, "/api/models", "sk-sixty");
                                (check_rpm_60(&r), worker(&r))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let workers: HashSet<&String> = results.iter().map(|(_, w)| w).collect();
        if workers.len() < 2 {
            eprintln!("attempt {attempt}: all connections on one worker, retrying");
            continue;
        }
        let admitted = results.iter().filter(|(ok, _)| *ok).count();
        let refill = usize::try_from(started.elapsed().as_secs()).unwrap() + 1;
        assert_eq!(results.len(), 120);
        let per_worker: Vec<usize> =
            workers.iter().map(|w| results.iter().filter(|(ok, x)| *ok && x == *w).count()).collect();
        eprintln!("admitted {admitted} of 120, per worker {per_worker:?} (attempt {attempt})");
        assert!(
            admitted + BOUND_60_ON_2 >= 60 && admitted <= 60 + refill,
            "admitted {admitted} of 120 over {} workers",
            workers.len()
        );
        return;
    }
    panic!("connections never spread over both workers");
}

#[test]
fn a_key_with_rpm_60_admits_exactly_60_of_120_requests_on_one_connection() {
    let gw = config(RPM_60).start();
    let mut c = gw.conn();
    let started = Instant::now();
    let responses: Vec<Response> = (0..120).map(|_| get(&mut c, "/api/models", "sk-sixty")).collect();
    let admitted = responses.iter().filter(|r| check_rpm_60(r)).count();
    let refill = usize::try_from(started.elapsed().as_secs()).unwrap();
    assert!((60..=60 + refill).contains(&admitted), "admitted {admitted}");
    // One worker saw every request, so its count is exact: 59, 58, ... 0, then 429s.
    assert_eq!(num(&responses[0], "x-ratelimit-remaining"), 59);
    assert_eq!(responses[0].status(), 200);
    assert_eq!(responses[119].status(), 429);
    assert!(responses.iter().all(|r| worker(r) == worker(&responses[0])));
}

const TPM_100: &str = r#"
[[keys]]
name = "tokens"
key = "sk-tokens"
tpm = 100
"#;

#[test]
fn token_limits_settle_with_the_mock_providers_usage() {
    let gw = config(TPM_100).start();
    let mut c = gw.conn();
    let body = json!({"message": "one two three four five"});
    // Each turn: prompt 5 words + 3, reply "You said ... conversation." 14 words.
    for expected in [78, 56, 34, 12] {
        let r = chat(&mut c, "sk-tokens", &body);
        assert_eq!(r.status(), 200, "{}", r.text());
        assert_eq!(r.json()["data"]["usage"]["totalTokens"], 22);
        assert_eq!(r.header("x-ratelimit-limit-tokens"), Some("100"));
        let remaining = num(&r, "x-ratelimit-remaining-tokens");
        assert!((expected..=expected + 1).contains(&remaining), "{remaining}, expected {expected}");
        assert!(r.header("x-ratelimit-limit").is_none(), "no request limit on this key");
    }
    // 12 left covers the prompt estimate, so the fifth turn runs and ends in debt...
    let r = chat(&mut c, "sk-tokens", &body);
    assert_eq!(r.status(), 200);
    assert_eq!(num(&r, "x-ratelimit-remaining-tokens"), 0);
    // ...and the sixth is refused before the provider is called.
    let r = chat(&mut c, "sk-tokens", &body);
    assert_eq!(r.status(), 429);
    assert_eq!(r.json()["error"]["code"], "RATE_LIMITED");
    let retry = num(&r, "retry-after");
    assert!((5..=12).contains(&retry), "retry-after {retry}: 10 tokens of debt + 7 needed at 100/min");
    assert_eq!(num(&r, "x-ratelimit-remaining-tokens"), 0);
}

#[test]
fn a_stream_that_passes_the_token_budget_ends_with_a_rate_limited_event() {
    let gw = config(TPM_100).start();
    let mut c = gw.conn();
    let message = vec!["lorem"; 60].join(" ");
    let r = chat(&mut c, "sk-tokens", &json!({"message": message, "stream": true}));
    assert_eq!(r.status(), 200);
    let text = String::from_utf8(r.body).unwrap();
    let events: Vec<Value> =
        text.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap()).collect();
    let last = events.last().unwrap();
    assert_eq!(last["type"], "error", "{text}");
    assert_eq!(last["code"], "RATE_LIMITED", "{text}");
    assert!(events.iter().any(|e| e["type"] == "chunk"), "some of the reply came first: {text}");
    assert!(!events.iter().any(|e| e["type"] == "done"), "{text}");
    // The budget is spent: the next turn is refused up front.
    let r = chat(&mut c, "sk-tokens", &json!({"message": "hi"}));
    assert_eq!(r.status(), 429);
}

#[test]
fn failed_keys_are_limited_per_ip() {
    let gw = config(RPM_60).extra("[limits]\nip_rpm = 3").start();
    let mut c = gw.conn();
    let statuses: Vec<u16> = (0..5).map(|_| get(&mut c, "/api/models", "sk-wrong").status()).collect();
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    let r = get(&mut c, "/api/models", "sk-wrong");
    assert_eq!((r.header("x-ratelimit-limit"), r.header("x-ratelimit-remaining")), (Some("3"), Some("0")));
    assert!(num(&r, "retry-after") >= 1);
    // The valid key has its own limit and is not affected.
    assert_eq!(get(&mut c, "/api/models", "sk-sixty").status(), 200);
    // Open routes are never limited.
    assert!((0..10).all(|_| get(&mut c, "/health", "").status() == 200));
}

#[test]
fn limits_change_on_sighup_without_a_restart() {
    let two = r#"
[[keys]]
name = "k"
key = "sk-k"
rpm = 2
"#;
    let gw = config(two).start();
    let mut c = gw.conn();
    let statuses: Vec<u16> = (0..3).map(|_| get(&mut c, "/api/models", "sk-k").status()).collect();
    assert_eq!(statuses, [200, 200, 429]);
    gw.reload(&config(&two.replace("rpm = 2", "rpm = 6000")).toml());
    // The spent quota carries over and refills at the new rate (100 a second).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(&mut c, "/api/models", "sk-k");
        if r.header("x-ratelimit-limit") == Some("6000") && r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the new limit never applied: {:?}", r.head.headers);
        std::thread::sleep(Duration::from_millis(50));
    }
    // A new connection (maybe the other worker) sees it too.
    let r = get(&mut gw.conn(), "/api/models", "sk-k");
    assert_eq!(r.header("x-ratelimit-limit"), Some("6000"));
}

/// Sends a WebSocket upgrade with `key` as its bearer token; returns the response head.
fn ws_upgrade_status(gw: &Gateway, key: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(gw.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {key}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap() == 1 {
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Asserts a lockout `429`: the envelope, `Retry-After` within `retry`, and the
/// failure limit in the headers.
fn assert_locked_out(r: &Response, retry: std::ops::RangeInclusive<u64>) {
    assert_eq!(r.status(), 429, "{}", r.text());
    let body = r.json();
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("too many failed authentications from this address; locked out, retry in "), "{msg}");
    let after = num(r, "retry-after");
    assert!(retry.contains(&after), "retry-after {after}, expected {retry:?}");
    assert_eq!((r.header("x-ratelimit-limit"), r.header("x-ratelimit-remaining")), (Some("10"), Some("0")));
    let reset = num(r, "x-ratelimit-reset");
    assert!(reset.abs_diff(now_unix() + after) <= 2, "reset {reset} is the lockout's end");
}

#[test]
fn ten_failed_keys_in_a_minute_lock_the_address_out_even_for_a_valid_key() {
    let gw = config(RPM_60).start();
    let mut c = gw.conn();
    // A valid key first: this connection remembers it (no hashing on the next ones).
    assert_eq!(get(&mut c, "/api/models", "sk-sixty").status(), 200);
    let statuses: Vec<u16> = (0..9).map(|_| get(&mut c, "/api/models", "sk-wrong").status()).collect();
    assert_eq!(statuses, [401; 9]);
    assert_eq!(get(&mut c, "/api/models", "sk-sixty").status(), 200, "nine failures: not yet");
    // The tenth failure locks the address out, and says so.
    assert_locked_out(&get(&mut c, "/api/models", "sk-wrong"), 299..=300);
    // Now every request with a key gets 429 before the key is looked at: the valid
    // key on this connection, on fresh connections (either worker), on every route
    // that needs a key, and on a WebSocket upgrade.
    assert_locked_out(&get(&mut c, "/api/models", "sk-sixty"), 298..=300);
    for _ in 0..4 {
        assert_locked_out(&get(&mut gw.conn(), "/api/status", "sk-sixty"), 298..=300);
    }
    let r = gw.conn().exchange(&req("POST", "/api/chat").key("sk-sixty").json(&json!({"message": "hi"})));
    assert_locked_out(&r, 298..=300);
    let r = gw.conn().exchange(
        &req("POST", "/v1/chat/completions")
            .key("sk-sixty")
            .json(&json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}]})),
    );
    assert_eq!(r.status(), 429);
    assert!(r.json()["error"]["message"].as_str().unwrap().starts_with("too many failed authentications"));
    let head = ws_upgrade_status(&gw, "sk-sixty");
    assert!(head.starts_with("HTTP/1.1 429 "), "{head}");
    // Open routes stay open; a request without a key is a plain 401.
    assert_eq!(get(&mut c, "/health", "").status(), 200);
    assert_eq!(gw.get("/api/models", None).status(), 401);
}

#[test]
fn a_lockout_ends_after_auth_lockout_secs() {
    let gw = config(RPM_60).extra("[limits]\nauth_failures_per_minute = 3\nauth_lockout_secs = 2").start();
    let mut c = gw.conn();
    let statuses: Vec<u16> = (0..3).map(|_| get(&mut c, "/api/models", "sk-wrong").status()).collect();
    assert_eq!(statuses, [401, 401, 429]);
    let r = get(&mut c, "/api/models", "sk-sixty");
    assert_eq!((r.status(), r.header("retry-after")), (429, Some("2")));
    assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
    std::thread::sleep(Duration::from_millis(2_100));
    assert_eq!(get(&mut c, "/api/models", "sk-sixty").status(), 200);
    // And counting starts over: two more failures are plain 401s.
    assert_eq!(get(&mut c, "/api/models", "sk-wrong").status(), 401);
    assert_eq!(get(&mut c, "/api/models", "sk-wrong").status(), 401);
}

#[test]
fn missing_keys_never_lock_an_address_out() {
    let gw = config(RPM_60).start();
    let mut c = gw.conn();
    assert!((0..30).all(|_| c.exchange(&req("GET", "/api/models")).status() == 401));
    assert_eq!(get(&mut c, "/api/models", "sk-sixty").status(), 200);
}
