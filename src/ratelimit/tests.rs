//! `Limiter` tests on a manual clock: what a request, a turn and a WebSocket see
//! (verdicts, `X-RateLimit-*` headers, `Retry-After`), token reservation, settlement
//! and the stream cut, and reload.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::chat::{Message, MessageRole, Usage};
use crate::config::Role;

const UNIX0: u64 = 1_700_000_000;

fn config(text: &str) -> Arc<Config> {
    Arc::new(Config::from_toml_str(text, None).unwrap())
}

fn limiter(cfg: &Arc<Config>) -> (Arc<ManualClock>, Limiter) {
    let clock = ManualClock::new(Duration::from_secs(100), UNIX0);
    let global = Arc::new(Global::new(2, clock.clone()));
    (clock, Limiter::new(0, global, cfg))
}

fn key(cfg: &Config, i: usize) -> Identity {
    Identity { name: Arc::from(cfg.keys[i].name.as_str()), role: Role::User, key_index: Some(i) }
}

fn open() -> Identity {
    Identity { name: Arc::from("open"), role: Role::Admin, key_index: None }
}

fn headers(l: &Limiter, q: &Quota) -> Vec<(String, String)> {
    l.headers(q).pairs().map(|(n, v)| (n.to_string(), v)).collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

const TWO_KEYS: &str = r#"
[[keys]]
name = "limited"
key = "sk-a"
rpm = 60
tpm = 100
[[keys]]
name = "free"
key = "sk-b"
"#;

#[test]
fn an_admitted_request_carries_its_limit_remaining_and_reset() {
    let cfg = config(TWO_KEYS);
    let (_clock, l) = limiter(&cfg);
    let q = l.check_request(&cfg, &key(&cfg, 0), None).unwrap();
    // The first lease took 7 at t = 100 s, so the budget is full again at 107 s.
    assert_eq!(
        headers(&l, &q),
        pairs(&[
            ("x-ratelimit-limit", "60"),
            ("x-ratelimit-remaining", "59"),
            ("x-ratelimit-reset", "1700000107"),
            ("x-ratelimit-limit-tokens", "100"),
            ("x-ratelimit-remaining-tokens", "100"),
        ])
    );
}

#[test]
fn the_request_after_the_limit_is_a_429_with_retry_after_and_headers() {
    let cfg = config(TWO_KEYS);
    let (clock, l) = limiter(&cfg);
    let who = key(&cfg, 0);
    for i in 0..60 {
        assert!(l.check_request(&cfg, &who, None).is_ok(), "request {i}");
    }
    let refused = l.check_request(&cfg, &who, None).unwrap_err();
    assert_eq!(refused.error.code, ErrorCode::RateLimited);
    assert_eq!(refused.error.retry_after, Some(1));
    assert_eq!(refused.error.message, "rate limit exceeded: 60 requests per minute for this key; retry in 1 s");
    let h = headers(&l, &refused.quota);
    assert_eq!(h[0], ("x-ratelimit-limit".into(), "60".into()));
    assert_eq!(h[1], ("x-ratelimit-remaining".into(), "0".into()));
    assert_eq!(h[2], ("x-ratelimit-reset".into(), "1700000160".into()), "full a minute after the burst");
    // One second later there is one more.
    clock.advance(Duration::from_secs(1));
    assert!(l.check_request(&cfg, &who, None).is_ok());
    assert!(l.check_request(&cfg, &who, None).is_err());
}

#[test]
fn a_key_without_limits_gets_no_headers() {
    let cfg = config(TWO_KEYS);
    let (_clock, l) = limiter(&cfg);
    let q = l.check_request(&cfg, &key(&cfg, 1), None).unwrap();
    assert!(headers(&l, &q).is_empty());
    assert!((0..10_000).all(|_| l.check_request(&cfg, &key(&cfg, 1), None).is_ok()));
}

#[test]
fn limits_defaults_apply_to_keys_without_their_own() {
    let cfg = config(&format!("[limits]\nrpm = 2\ntpm = 50\n{TWO_KEYS}"));
    let (_clock, l) = limiter(&cfg);
    let free = key(&cfg, 1);
    let q = l.check_request(&cfg, &free, None).unwrap();
    assert_eq!(headers(&l, &q)[0], ("x-ratelimit-limit".into(), "2".into()));
    assert_eq!(headers(&l, &q)[3], ("x-ratelimit-limit-tokens".into(), "50".into()));
    assert!(l.check_request(&cfg, &free, None).is_ok());
    assert!(l.check_request(&cfg, &free, None).is_err());
}

#[test]
fn open_mode_and_failed_auth_are_limited_per_ip() {
    let cfg = config("[limits]\nip_rpm = 2\n");
    let (_clock, l) = limiter(&cfg);
    let a: IpAddr = "127.0.0.1".parse().unwrap();
    let b: IpAddr = "127.0.0.2".parse().unwrap();
    assert!(l.check_request(&cfg, &open(), Some(a)).is_ok());
    assert!(l.check_unauthenticated(Some(a)).is_ok());
    let refused = l.check_request(&cfg, &open(), Some(a)).unwrap_err();
    assert_eq!(refused.error.retry_after, Some(30));
    assert!(refused.error.message.contains("from this address"));
    assert!(l.check_unauthenticated(Some(a)).is_err());
    assert!(l.check_request(&cfg, &open(), Some(b)).is_ok());
    // Without ip_rpm, open mode is not limited and shows no headers.
    let cfg = config("");
    let (_clock, l) = limiter(&cfg);
    let q = l.check_request(&cfg, &open(), Some(a)).unwrap();
    assert!(headers(&l, &q).is_empty());
}

fn user(text: &str) -> Vec<Message> {
    vec![Message::text(MessageRole::User, Arc::from(text))]
}

#[test]
fn a_turn_reserves_its_estimate_and_settles_with_real_usage() {
    let cfg = config(TWO_KEYS);
    let (_clock, l) = limiter(&cfg);
    let who = key(&cfg, 0);
    let q = l.check_request(&cfg, &who, None).unwrap();
    // 23 bytes of prompt estimate 6 tokens; with 256 for the completion that is more
    // than the 100 left, so the turn gets all 100.
    let turn = l.reserve_turn(&cfg, &who, &user("one two three four five"), None).unwrap();
    assert_eq!(turn.reserved(), Some(100));
    assert_eq!(headers(&l, &q)[4], ("x-ratelimit-remaining-tokens".into(), "0".into()));
    l.settle_turn(&turn, Usage { prompt_tokens: 8, completion_tokens: 14, ..Usage::default() });
    assert_eq!(headers(&l, &q)[4], ("x-ratelimit-remaining-tokens".into(), "78".into()));
    // A model with max_tokens reserves prompt + max_tokens.
    let turn = l.reserve_turn(&cfg, &who, &user("hi"), Some(10)).unwrap();
    assert_eq!(turn.reserved(), Some(11));
    drop(turn);
    assert_eq!(
        headers(&l, &q)[4],
        ("x-ratelimit-remaining-tokens".into(), "78".into()),
        "an unused reservation comes back"
    );
}

#[test]
fn usage_beyond_the_budget_is_debt_and_the_next_turn_is_refused() {
    let cfg = config(TWO_KEYS);
    let (clock, l) = limiter(&cfg);
    let who = key(&cfg, 0);
    let turn = l.reserve_turn(&cfg, &who, &user("hello"), None).unwrap();
    l.settle_turn(&turn, Usage { prompt_tokens: 60, completion_tokens: 70, ..Usage::default() });
    let e = l.reserve_turn(&cfg, &who, &user("hello"), None).unwrap_err();
    assert_eq!(e.code, ErrorCode::RateLimited);
    // 30 tokens of debt plus the 3 needed (2 prompt + 1), at 100 per minute: 20 s.
    assert_eq!(e.retry_after, Some(20));
    clock.advance(Duration::from_secs(20));
    assert!(l.reserve_turn(&cfg, &who, &user("hello"), None).is_ok());
}

#[test]
fn a_stream_that_passes_the_budget_is_cut() {
    let cfg = config(TWO_KEYS);
    let (_clock, l) = limiter(&cfg);
    let who = key(&cfg, 0);
    let prompt = "lorem ".repeat(60);
    let turn = l.reserve_turn(&cfg, &who, &user(&prompt), None).unwrap();
    assert_eq!(turn.reserved(), Some(100), "prompt estimate 90 + 256, clipped to the 100 left");
    let chunk = " lorem lorem lorem";
    let mut sent = 0;
    let err = loop {
        match l.turn_delta(&turn, chunk) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 100, "never cut");
    };
    assert_eq!(sent, 2, "90 + 5 + 5 = 100 fits, the third chunk does not");
    assert_eq!(err.code, ErrorCode::RateLimited);
    assert!(err.message.contains("during the reply"), "{}", err.message);
}

#[test]
fn a_dropped_turn_charges_only_what_was_streamed() {
    let cfg = config(TWO_KEYS);
    let (_clock, l) = limiter(&cfg);
    let who = key(&cfg, 0);
    let q = l.check_request(&cfg, &who, None).unwrap();
    // The provider failed before any chunk: nothing is charged.
    drop(l.reserve_turn(&cfg, &who, &user("twelve bytes"), Some(20)).unwrap());
    assert_eq!(headers(&l, &q)[4].1, "100");
    // The client left after one chunk: prompt (3) + chunk (2) are charged.
    let turn = l.reserve_turn(&cfg, &who, &user("twelve bytes"), Some(20)).unwrap();
    l.turn_delta(&turn, "a chunk").unwrap();
    drop(turn);
    assert_eq!(headers(&l, &q)[4].1, "95");
}

#[test]
fn keys_without_a_token_limit_reserve_nothing() {
    let cfg = config(TWO_KEYS);
    let (_clock, l) = limiter(&cfg);
    let turn = l.reserve_turn(&cfg, &key(&cfg, 1), &user("hi"), None).unwrap();
    assert_eq!(turn.reserved(), None);
    assert!(l.turn_delta(&turn, &"x".repeat(1_000_000)).is_ok());
    let turn = l.reserve_turn(&cfg, &open(), &user("hi"), None).unwrap();
    assert_eq!(turn.reserved(), None);
}

#[test]
fn websocket_connects_and_messages_are_limited() {
    let cfg = config("[limits]\nws_connects_per_minute_per_ip = 2\nws_messages_per_minute = 3\n");
    let (clock, l) = limiter(&cfg);
    let ip: IpAddr = "::1".parse().unwrap();
    assert!(l.ws_connect(ip).is_ok() && l.ws_connect(ip).is_ok());
    let e = l.ws_connect(ip).unwrap_err();
    assert_eq!((e.code, e.retry_after), (ErrorCode::RateLimited, Some(30)));
    let socket = l.ws_socket();
    assert!((0..3).all(|_| socket.check().is_ok()));
    let e = socket.check().unwrap_err();
    assert_eq!(e.retry_after, Some(20));
    let frame: serde_json::Value = serde_json::from_str(&ws_error_frame(&e)).unwrap();
    assert_eq!(frame["retryAfter"], 20);
    clock.advance(Duration::from_secs(20));
    assert!(socket.check().is_ok());
}

#[test]
fn a_reload_applies_new_limits_to_the_running_limiter() {
    let cfg = config(TWO_KEYS);
    let (_clock, l) = limiter(&cfg);
    assert!(l.check_request(&cfg, &key(&cfg, 0), None).is_ok());
    assert!(l.check_request(&cfg, &key(&cfg, 1), None).unwrap() == Quota::default());
    let reloaded = config(&TWO_KEYS.replace("key = \"sk-b\"", "key = \"sk-b\"\nrpm = 1"));
    l.reload(&reloaded);
    assert!(l.check_request(&reloaded, &key(&reloaded, 1), None).is_ok());
    assert!(l.check_request(&reloaded, &key(&reloaded, 1), None).is_err());
    // The limited key kept its spent request.
    let q = l.check_request(&reloaded, &key(&reloaded, 0), None).unwrap();
    assert_eq!(headers(&l, &q)[1], ("x-ratelimit-remaining".into(), "58".into()));
}

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().unwrap())
}

#[test]
fn ten_refused_keys_in_a_minute_lock_the_address_out_for_five_minutes() {
    let cfg = config(TWO_KEYS);
    let (clock, l) = limiter(&cfg);
    let a = ip("192.0.2.7");
    for i in 0..9 {
        clock.advance(Duration::from_secs(5));
        let q = l.auth_failed(a).unwrap_or_else(|_| panic!("failure {i} refused"));
        assert!(headers(&l, &q).is_empty(), "no ip_rpm: no headers on the 401");
        assert!(l.check_lockout(a).is_ok(), "not locked after {} failures", i + 1);
    }
    // The tenth, 45 s after the first: locked out, and told so at once.
    clock.advance(Duration::from_secs(5));
    let refused = l.auth_failed(a).unwrap_err();
    assert_eq!((refused.error.code, refused.error.retry_after), (ErrorCode::RateLimited, Some(300)));
    assert_eq!(refused.error.message, "too many failed authentications from this address; locked out, retry in 300 s");
    // Lockout start: t = 100 + 50 s; the end is 300 s later.
    assert_eq!(
        headers(&l, &refused.quota),
        pairs(&[("x-ratelimit-limit", "10"), ("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1700000450")])
    );
    // Every request with credentials is refused before its key is looked at,
    // counting down to the end.
    clock.advance(Duration::from_secs(100));
    let refused = l.check_lockout(a).unwrap_err();
    assert_eq!(refused.error.retry_after, Some(200));
    clock.advance(Duration::from_millis(199_500));
    assert_eq!(l.check_lockout(a).unwrap_err().error.retry_after, Some(1));
    // Other addresses are not affected.
    assert!(l.check_lockout(ip("192.0.2.8")).is_ok());
    clock.advance(Duration::from_millis(500));
    assert!(l.check_lockout(a).is_ok(), "over after 300 s");
    let stats = l.stats();
    assert_eq!((WorkerStats::get(&stats.auth_failures), WorkerStats::get(&stats.auth_lockouts)), (10, 1));
}

#[test]
fn a_lockout_holds_on_every_worker_and_failures_on_all_of_them_count() {
    let cfg = config(TWO_KEYS);
    let clock = ManualClock::new(Duration::from_secs(100), UNIX0);
    let global = Arc::new(Global::new(2, clock.clone()));
    let w0 = Limiter::new(0, global.clone(), &cfg);
    let w1 = Limiter::new(1, global, &cfg);
    let a = ip("2001:db8::1");
    for _ in 0..5 {
        assert!(w0.auth_failed(a).is_ok());
    }
    for _ in 0..4 {
        assert!(w1.auth_failed(a).is_ok());
    }
    assert!(w1.auth_failed(a).is_err(), "the tenth failure, on the second worker");
    // Same /64: the same client.
    assert!(w0.check_lockout(ip("2001:db8::ffff")).is_err());
    assert!(w1.check_lockout(a).is_err());
    assert_eq!(WorkerStats::get(&w1.stats().auth_lockouts), 1);
    assert_eq!(WorkerStats::get(&w0.stats().auth_lockouts), 0);
    // Failing again while locked out begins no second lockout.
    assert!(w0.auth_failed(a).is_err());
    assert_eq!(WorkerStats::get(&w0.stats().auth_lockouts), 0);
    assert_eq!(WorkerStats::get(&w0.stats().auth_failures), 6);
}

#[test]
fn refused_keys_count_against_ip_rpm_too_and_missing_keys_only_there() {
    let cfg = config(&format!("[limits]\nip_rpm = 3\n{TWO_KEYS}"));
    let (_clock, l) = limiter(&cfg);
    let a = ip("192.0.2.7");
    for _ in 0..3 {
        assert!(l.auth_failed(a).is_ok());
    }
    let refused = l.auth_failed(a).unwrap_err();
    assert!(refused.error.message.contains("requests per minute from this address"), "{}", refused.error.message);
    assert!(l.check_lockout(a).is_ok(), "4 failures: no lockout yet");
    // A request without a key is no failure: it never locks anyone out.
    let b = ip("192.0.2.9");
    for _ in 0..50 {
        let _ = l.check_unauthenticated(b);
    }
    assert!(l.check_lockout(b).is_ok());
    assert_eq!(WorkerStats::get(&l.stats().auth_failures), 4);
}

#[test]
fn the_lockout_follows_the_config_and_can_be_turned_off() {
    let cfg = config(&format!("[limits]\nauth_failures_per_minute = 2\nauth_lockout_secs = 7\n{TWO_KEYS}"));
    let (clock, l) = limiter(&cfg);
    let a = ip("192.0.2.7");
    assert!(l.auth_failed(a).is_ok());
    assert_eq!(l.auth_failed(a).unwrap_err().error.retry_after, Some(7));
    clock.advance(Duration::from_secs(7));
    assert!(l.check_lockout(a).is_ok());
    let off = config(&format!("[limits]\nauth_failures_per_minute = 0\n{TWO_KEYS}"));
    let (_clock, l) = limiter(&off);
    assert!((0..100).all(|_| l.auth_failed(a).is_ok()));
    assert!(l.check_lockout(a).is_ok());
}

#[test]
fn failures_spread_over_more_than_a_minute_lock_nobody_out() {
    let cfg = config(TWO_KEYS);
    let (clock, l) = limiter(&cfg);
    let a = ip("192.0.2.7");
    for _ in 0..30 {
        assert!(l.auth_failed(a).is_ok());
        clock.advance(Duration::from_secs(7));
    }
    assert!(l.check_lockout(a).is_ok());
    assert!(l.check_lockout(None).is_ok() && l.auth_failed(None).is_ok(), "no address, nothing to lock");
}
