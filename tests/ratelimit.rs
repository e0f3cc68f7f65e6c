//! Rate limits end to end: the real binary on port 0 with a temp config (two workers,
//! the built-in mock provider), driven by a small blocking HTTP/1.1 client.
//!
//! - A key with `rpm = 60` sent 120 requests over 8 connections spread across both
//!   workers admits 60 within the stated error (lease 7 x 2 workers = 14), and answers
//!   the rest `429 RATE_LIMITED` with `Retry-After` and `X-RateLimit-*`; pinned to one
//!   connection it admits exactly 60.
//! - Token limits settle with the mock provider's usage (one token per word, plus 3
//!   per prompt message), and a stream that runs past the budget is cut with an SSE
//!   `error` event `RATE_LIMITED`.
//! - Failed keys are limited per IP; limits change on SIGHUP without a restart.
// Test code: panics are failures, and sleeping on a test thread blocks no worker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");

/// The gateway under test; killed (and its config removed) on drop.
struct Gateway {
    child: Child,
    addr: SocketAddr,
    config: PathBuf,
}

impl Gateway {
    /// Starts the binary on `config_toml` (which must listen on 127.0.0.1:0).
    fn start(config_toml: &str) -> Gateway {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let config = std::env::temp_dir().join(format!("clawgate-ratelimit-{}-{n}.toml", std::process::id()));
        std::fs::write(&config, config_toml).unwrap();
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = loop {
            assert!(Instant::now() < deadline, "no `listening on` line");
            let line = lines.next().expect("gateway exited before listening").unwrap();
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Gateway { child, addr, config }
    }

    fn connect(&self) -> Conn {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn { reader: BufReader::new(stream) }
    }

    /// Rewrites the config file and sends SIGHUP.
    fn reload(&self, config_toml: &str) {
        std::fs::write(&self.config, config_toml).unwrap();
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid, libc::SIGHUP) };
        assert_eq!(rc, 0);
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// One keep-alive connection.
struct Conn {
    reader: BufReader<TcpStream>,
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn num(&self, name: &str) -> u64 {
        self.header(name).unwrap_or_else(|| panic!("no {name} in {:?}", self.headers)).parse().unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The worker that answered: the request id is `req_<prefix:8><worker:2><seq:10>`.
    fn worker(&self) -> String {
        let id = self.header("x-request-id").unwrap();
        assert!(id.starts_with("req_") && id.len() == 24, "unexpected request id format {id}");
        id[12..14].to_string()
    }
}

impl Conn {
    fn request(&mut self, method: &str, path: &str, key: &str, body: Option<&str>) -> Resp {
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {key}\r\n");
        if let Some(b) = body {
            req.push_str(&format!("content-type: application/json\r\ncontent-length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        req.push_str(body.unwrap_or(""));
        self.reader.get_mut().write_all(req.as_bytes()).unwrap();
        self.read_response()
    }

    fn get(&mut self, path: &str, key: &str) -> Resp {
        self.request("GET", path, key, None)
    }

    fn read_response(&mut self) -> Resp {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut headers = HashMap::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let mut body = Vec::new();
        if let Some(n) = headers.get("content-length") {
            body.resize(n.parse().unwrap(), 0);
            self.reader.read_exact(&mut body).unwrap();
        } else if headers.get("transfer-encoding").is_some_and(|v| v == "chunked") {
            loop {
                line.clear();
                self.reader.read_line(&mut line).unwrap();
                let size = usize::from_str_radix(line.trim(), 16).unwrap();
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk).unwrap();
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        }
        Resp { status, headers, body }
    }
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Two workers, the mock provider, and `keys` as the `[[keys]]` (plus any `[limits]`).
fn config(keys: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 2

{keys}

[[providers]]
name = "mock"
kind = "mock"

[providers.mock]
chunk_delay_ms = 0
chunk_words = 3

[[models]]
id = "mock"
provider = "mock"
default = true
"#
    )
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
fn check_rpm_60(r: &Resp) -> bool {
    let now = now_unix();
    assert_eq!(r.header("x-ratelimit-limit"), Some("60"), "{:?}", r.headers);
    let remaining = r.num("x-ratelimit-remaining");
    let reset = r.num("x-ratelimit-reset");
    assert!(reset + 1 >= now && reset <= now + 61, "reset {reset} at {now}");
    match r.status {
        200 => {
            assert!(remaining < 60);
            assert!(r.header("retry-after").is_none());
            true
        }
        429 => {
            assert_eq!(remaining, 0);
            let retry = r.num("retry-after");
            assert!((1..=60).contains(&retry), "retry-after {retry}");
            let body = r.json();
            assert_eq!(body["success"], false);
            assert_eq!(body["error"]["code"], "RATE_LIMITED");
            false
        }
        other => panic!("unexpected status {other}: {}", String::from_utf8_lossy(&r.body)),
    }
}

#[test]
fn a_key_with_rpm_60_admits_60_of_120_requests_spread_over_two_workers() {
    // SO_REUSEPORT spreads connections by hash: retry with fresh connections in the
    // rare case that all 8 land on one worker.
    for attempt in 0..5 {
        let gw = Gateway::start(&config(RPM_60));
        let conns: Vec<Conn> = (0..8).map(|_| gw.connect()).collect();
        let started = Instant::now();
        let results: Vec<(bool, String)> = std::thread::scope(|s| {
            let handles: Vec<_> = conns
                .into_iter()
                .map(|mut c| {
                    s.spawn(move || {
                        (0..15)
                            .map(|_| {
                                let r = c.get("/api/models", "sk-sixty");
                                (check_rpm_60(&r), r.worker())
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let workers: std::collections::HashSet<&String> = results.iter().map(|(_, w)| w).collect();
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
    let gw = Gateway::start(&config(RPM_60));
    let mut c = gw.connect();
    let started = Instant::now();
    let responses: Vec<Resp> = (0..120).map(|_| c.get("/api/models", "sk-sixty")).collect();
    let admitted = responses.iter().filter(|r| check_rpm_60(r)).count();
    let refill = usize::try_from(started.elapsed().as_secs()).unwrap();
    assert!((60..=60 + refill).contains(&admitted), "admitted {admitted}");
    // One worker saw every request, so its count is exact: 59, 58, ... 0, then 429s.
    assert_eq!(responses[0].num("x-ratelimit-remaining"), 59);
    assert_eq!(responses[0].status, 200);
    assert_eq!(responses[119].status, 429);
    assert!(responses.iter().all(|r| r.worker() == responses[0].worker()));
}

const TPM_100: &str = r#"
[[keys]]
name = "tokens"
key = "sk-tokens"
tpm = 100
"#;

#[test]
fn token_limits_settle_with_the_mock_providers_usage() {
    let gw = Gateway::start(&config(TPM_100));
    let mut c = gw.connect();
    let body = r#"{"message":"one two three four five"}"#;
    // Each turn: prompt 5 words + 3, reply "You said ... conversation." 14 words.
    for expected in [78, 56, 34, 12] {
        let r = c.request("POST", "/api/chat", "sk-tokens", Some(body));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["data"]["usage"]["totalTokens"], 22);
        assert_eq!(r.header("x-ratelimit-limit-tokens"), Some("100"));
        let remaining = r.num("x-ratelimit-remaining-tokens");
        assert!((expected..=expected + 1).contains(&remaining), "{remaining}, expected {expected}");
        assert!(r.header("x-ratelimit-limit").is_none(), "no request limit on this key");
    }
    // 12 left covers the prompt estimate, so the fifth turn runs and ends in debt...
    let r = c.request("POST", "/api/chat", "sk-tokens", Some(body));
    assert_eq!(r.status, 200);
    assert_eq!(r.num("x-ratelimit-remaining-tokens"), 0);
    // ...and the sixth is refused before the provider is called.
    let r = c.request("POST", "/api/chat", "sk-tokens", Some(body));
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "RATE_LIMITED");
    let retry = r.num("retry-after");
    assert!((5..=12).contains(&retry), "retry-after {retry}: 10 tokens of debt + 7 needed at 100/min");
    assert_eq!(r.num("x-ratelimit-remaining-tokens"), 0);
}

#[test]
fn a_stream_that_passes_the_token_budget_ends_with_a_rate_limited_event() {
    let gw = Gateway::start(&config(TPM_100));
    let mut c = gw.connect();
    let message = vec!["lorem"; 60].join(" ");
    let body = format!(r#"{{"message":"{message}","stream":true}}"#);
    let r = c.request("POST", "/api/chat", "sk-tokens", Some(&body));
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).unwrap();
    let events: Vec<Value> =
        text.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap()).collect();
    let last = events.last().unwrap();
    assert_eq!(last["type"], "error", "{text}");
    assert_eq!(last["code"], "RATE_LIMITED", "{text}");
    assert!(events.iter().any(|e| e["type"] == "chunk"), "some of the reply came first: {text}");
    assert!(!events.iter().any(|e| e["type"] == "done"), "{text}");
    // The budget is spent: the next turn is refused up front.
    let r = c.request("POST", "/api/chat", "sk-tokens", Some(r#"{"message":"hi"}"#));
    assert_eq!(r.status, 429);
}

#[test]
fn failed_keys_are_limited_per_ip() {
    let gw = Gateway::start(&config(&format!("[limits]\nip_rpm = 3\n{RPM_60}")));
    let mut c = gw.connect();
    let statuses: Vec<u16> = (0..5).map(|_| c.get("/api/models", "sk-wrong").status).collect();
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    let r = c.get("/api/models", "sk-wrong");
    assert_eq!((r.header("x-ratelimit-limit"), r.header("x-ratelimit-remaining")), (Some("3"), Some("0")));
    assert!(r.num("retry-after") >= 1);
    // The valid key has its own limit and is not affected.
    assert_eq!(c.get("/api/models", "sk-sixty").status, 200);
    // Open routes are never limited.
    assert!((0..10).all(|_| c.get("/health", "").status == 200));
}

#[test]
fn limits_change_on_sighup_without_a_restart() {
    let two = r#"
[[keys]]
name = "k"
key = "sk-k"
rpm = 2
"#;
    let gw = Gateway::start(&config(two));
    let mut c = gw.connect();
    let statuses: Vec<u16> = (0..3).map(|_| c.get("/api/models", "sk-k").status).collect();
    assert_eq!(statuses, [200, 200, 429]);
    gw.reload(&config(&two.replace("rpm = 2", "rpm = 6000")));
    // The spent quota carries over and refills at the new rate (100 a second).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.get("/api/models", "sk-k");
        if r.header("x-ratelimit-limit") == Some("6000") && r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the new limit never applied: {:?}", r.headers);
        std::thread::sleep(Duration::from_millis(50));
    }
    // A new connection (maybe the other worker) sees it too.
    let r = gw.connect().get("/api/models", "sk-k");
    assert_eq!(r.header("x-ratelimit-limit"), Some("6000"));
}
