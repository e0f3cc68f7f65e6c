//! The harness: starts the real `clawgate` binary on port 0 with a temp config (the
//! built-in mock provider, no network) and talks to it with a tiny blocking HTTP/1.1
//! client over `std::net::TcpStream`, so tests can send raw bytes (pipelining,
//! byte-by-byte writes, garbage) and see every byte of the answer, chunk boundaries
//! included. JSON bodies are compared whole after the volatile fields (`timestamp`,
//! ids, times) are checked and masked.
//!
//! `Gateway::start` reads stderr until the `listening on http://ADDR` line, then keeps
//! draining it into a shared `Vec<String>` so tests can assert on logs; dropping the
//! `Gateway` kills the child and removes the temp file. `CLAWGATE_IO` is inherited;
//! `CLAWGATE_BIN` (set by tests/run.sh) overrides the binary cargo built.
//!
//! Submodules: `client` (the raw HTTP/1.1 client: `Req`, `Conn`, `Response`),
//! `upstream` (the `mock_upstream` process, an OpenAI + Anthropic fake), `ws` (a raw
//! WebSocket frame client).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

mod client;
mod upstream;
mod ws;

pub use client::{req, Conn, Head, Req, Response};
pub use upstream::Upstream;
pub use ws::{frame, masked, WsClient, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT};

/// The binary under test: `$CLAWGATE_BIN` if set, else the one cargo built.
pub fn bin() -> PathBuf {
    bin_from_env("CLAWGATE_BIN", env!("CARGO_BIN_EXE_clawgate"))
}

/// The program named by the environment variable `var` if it is set and not empty,
/// else `built`.
fn bin_from_env(var: &str, built: &str) -> PathBuf {
    std::env::var_os(var).filter(|v| !v.is_empty()).map_or_else(|| PathBuf::from(built), PathBuf::from)
}

/// A file of `tests/fixtures` (the test CA, the server certificate and key).
pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Key `ops`, role admin.
pub const ADMIN: &str = "sk-admin";
/// Key `app`, role user.
pub const USER: &str = "sk-user";
/// Key `other`, role user.
pub const OTHER: &str = "sk-other";
/// Key `limited`, role user, may only use model `mock`.
pub const LIMITED: &str = "sk-limited";

/// How long a gateway may take to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Default read/write timeout of test connections.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------
// Config

/// A test config: two workers on `127.0.0.1:0`, four keys, the mock provider, models
/// `mock` (default) and `mock-large`, channels `support` (model `mock-large`) and the
/// disabled `legacy`. Builder methods change one thing each.
#[derive(Clone, Debug)]
pub struct Cfg {
    workers: usize,
    listen: String,
    server: Vec<String>,
    chunk_delay_ms: u64,
    chunk_words: usize,
    keys: String,
    extra: String,
}

/// The four default keys: `ADMIN`, `USER`, `OTHER` and `LIMITED`.
const DEFAULT_KEYS: &str = r#"
[[keys]]
name = "ops"
key = "sk-admin"
role = "admin"

[[keys]]
name = "app"
key = "sk-user"
role = "user"

[[keys]]
name = "other"
key = "sk-other"
role = "user"

[[keys]]
name = "limited"
key = "sk-limited"
role = "user"
models = ["mock"]
"#;

impl Default for Cfg {
    fn default() -> Self {
        Cfg {
            workers: 2,
            listen: "127.0.0.1:0".into(),
            server: Vec::new(),
            chunk_delay_ms: 0,
            chunk_words: 3,
            keys: DEFAULT_KEYS.into(),
            extra: String::new(),
        }
    }
}

impl Cfg {
    pub fn new() -> Cfg {
        Cfg::default()
    }

    pub fn workers(mut self, n: usize) -> Cfg {
        self.workers = n;
        self
    }

    pub fn listen(mut self, addr: &str) -> Cfg {
        self.listen = addr.into();
        self
    }

    /// One more `key = value` line in `[server]`.
    pub fn server(mut self, line: &str) -> Cfg {
        self.server.push(line.into());
        self
    }

    pub fn chunk_delay_ms(mut self, ms: u64) -> Cfg {
        self.chunk_delay_ms = ms;
        self
    }

    pub fn chunk_words(mut self, n: usize) -> Cfg {
        self.chunk_words = n;
        self
    }

    /// No `[[keys]]`: open mode.
    pub fn open_mode(mut self) -> Cfg {
        self.keys.clear();
        self
    }

    /// These `[[keys]]` instead of the four default ones.
    pub fn keys(mut self, toml: &str) -> Cfg {
        self.keys = toml.into();
        self
    }

    /// TOML appended at the end of the file (e.g. more `[[models]]`).
    pub fn extra(mut self, toml: &str) -> Cfg {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    pub fn toml(&self) -> String {
        let mut s = format!("[server]\nlisten = \"{}\"\nworkers = {}\n", self.listen, self.workers);
        // Tests stop gateways often: no drain delay unless a test asks for one. (Before
        // the other lines: one of them may open a sub-table such as [server.cors].)
        if !self.server.iter().any(|l| l.starts_with("drain_delay_ms")) {
            s.push_str("drain_delay_ms = 0\n");
        }
        for line in &self.server {
            s.push_str(line);
            s.push('\n');
        }
        s.push_str(&self.keys);
        s.push_str(&format!(
            r#"
[[providers]]
name = "mock"
kind = "mock"

[providers.mock]
chunk_delay_ms = {}
chunk_words = {}

[[models]]
id = "mock"
provider = "mock"
default = true

[[models]]
id = "mock-large"
provider = "mock"
upstream = "mock-large-v2"
context_window = 128000

[[channels]]
name = "support"
type = "generic"
secret = "support-secret"
model = "mock-large"

[[channels]]
name = "legacy"
type = "generic"
enabled = false
"#,
            self.chunk_delay_ms, self.chunk_words
        ));
        s.push_str(&self.extra);
        s
    }

    pub fn start(&self) -> Gateway {
        Gateway::start(&self.toml())
    }
}

/// A unique path in the temp directory (no tempfile crate).
pub fn temp_path(ext: &str) -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("clawgate-it-{}-{n}-{nanos}.{ext}", std::process::id()))
}

/// Writes `text` to a fresh temp file and returns its path; removed on drop.
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(text: &str) -> TempFile {
        let path = temp_path("toml");
        std::fs::write(&path, text).expect("write temp config");
        TempFile(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn display(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------------
// The gateway process

/// A running `clawgate` child process.
pub struct Gateway {
    child: Child,
    addr: SocketAddr,
    config: Option<TempFile>,
    logs: Arc<Mutex<Vec<String>>>,
    /// The working directory made for it (its `clawgate.db`), removed on drop.
    dir: Option<PathBuf>,
}

impl Gateway {
    /// Writes `toml` to a temp file and runs `clawgate --config FILE`.
    pub fn start(toml: &str) -> Gateway {
        let file = TempFile::new(toml);
        let mut cmd = Command::new(bin());
        cmd.arg("--config").arg(file.path());
        Gateway::spawn(cmd, Some(file))
    }

    /// Runs a prepared command and waits for its `listening on http://` line. Without
    /// a working directory of its own, it runs in a fresh temp directory (where the
    /// default store, `clawgate.db`, goes).
    pub fn spawn(mut cmd: Command, config: Option<TempFile>) -> Gateway {
        let dir = match cmd.get_current_dir() {
            Some(_) => None,
            None => {
                let dir = temp_path("dir");
                std::fs::create_dir_all(&dir).expect("create the gateway's directory");
                cmd.current_dir(&dir);
                Some(dir)
            }
        };
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {:?}: {e}", cmd.get_program()));
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let sink = logs.clone();
        std::thread::spawn(move || {
            // Keep draining to EOF so the child never blocks on a full pipe.
            let mut reader = BufReader::new(stderr);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match reader.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&raw).trim_end().to_string();
                        sink.lock().unwrap().push(line.clone());
                        let _ = tx.send(line);
                    }
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = parse_listening(&line) {
                        break addr;
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let status = child.wait();
                    std::thread::sleep(Duration::from_millis(50));
                    panic!(
                        "clawgate did not print `listening on http://` within {START_TIMEOUT:?} \
                         ({e}; exit: {status:?}); stderr:\n{}",
                        logs.lock().unwrap().join("\n")
                    );
                }
            }
        };
        Gateway { child, addr, config, logs, dir }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new connection to the gateway.
    pub fn conn(&self) -> Conn {
        Conn::open(self.addr)
    }

    /// A new WebSocket connection to `/ws`, upgraded with `key` as its bearer token.
    pub fn ws(&self, key: &str) -> WsClient {
        WsClient::connect(self.addr, Some(key), b"")
    }

    /// Sends one request on a new connection and reads its response.
    pub fn send(&self, req: &Req) -> Response {
        self.conn().exchange(req)
    }

    /// `GET path` with an optional key, on a new connection.
    pub fn get(&self, path: &str, key: Option<&str>) -> Response {
        self.send(&req("GET", path).key_opt(key))
    }

    /// `POST path` with a JSON body and an optional key, on a new connection.
    pub fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Response {
        self.send(&req("POST", path).key_opt(key).json(body))
    }

    /// `POST /api/chat` as `key`; panics unless it is a 200, returns `data`.
    pub fn chat(&self, key: &str, body: Value) -> Value {
        let resp = self.post("/api/chat", Some(key), &body);
        assert_eq!(resp.status(), 200, "chat {body} failed: {}", resp.text());
        resp.json()["data"].clone()
    }

    /// Every stderr line so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until a stderr line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.logs.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends a signal (`TERM`, `INT`, `HUP`) to the process with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args(["-s", name, &self.pid().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -s {name} {} failed", self.pid());
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                panic!("clawgate did not exit within {within:?}; stderr:\n{}", self.logs().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Replaces the config file's contents with `toml` and sends SIGHUP.
    pub fn reload(&self, toml: &str) {
        let file = self.config.as_ref().expect("gateway started from a temp config");
        std::fs::write(file.path(), toml).expect("rewrite config");
        self.signal("HUP");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on http://")? + "listening on http://".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// Runs the binary to completion (bounded) and returns its exit status and stderr.
pub fn run_bin(args: &[&str], env: &[(&str, &str)], within: Duration) -> (ExitStatus, String) {
    let (status, stderr, _) = run_bin_in(None, args, env, within);
    (status, stderr)
}

/// `run_bin` in working directory `cwd` (default: a fresh temp directory, removed
/// after); returns stdout too.
pub fn run_bin_in(
    cwd: Option<&Path>,
    args: &[&str],
    env: &[(&str, &str)],
    within: Duration,
) -> (ExitStatus, String, String) {
    let err_path = temp_path("stderr");
    let err_file = std::fs::File::create(&err_path).expect("create stderr file");
    let out_path = temp_path("stdout");
    let out_file = std::fs::File::create(&out_path).expect("create stdout file");
    let own_dir = cwd.is_none().then(|| temp_path("dir"));
    if let Some(d) = &own_dir {
        std::fs::create_dir_all(d).expect("create a working directory");
    }
    let dir = cwd.map(Path::to_path_buf).or_else(|| own_dir.clone()).expect("a directory");
    let mut cmd = Command::new(bin());
    cmd.args(args).current_dir(&dir).stdin(Stdio::null()).stdout(out_file).stderr(err_file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn clawgate");
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(&err_path).unwrap_or_default();
            let _ = std::fs::remove_file(&err_path);
            panic!("clawgate {args:?} did not exit within {within:?}; stderr:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let text = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&err_path);
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    if let Some(d) = own_dir {
        let _ = std::fs::remove_dir_all(d);
    }
    (status, text, out)
}

// ---------------------------------------------------------------------------------
// JSON assertions

/// Checks `YYYY-MM-DDTHH:MM:SSZ`.
pub fn assert_rfc3339(s: &str) {
    let b = s.as_bytes();
    let ok = b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(ok, "{s:?} is not an RFC 3339 UTC timestamp YYYY-MM-DDTHH:MM:SSZ");
}

/// Checks the value at `ptr` is an RFC 3339 timestamp and masks it with `"<time>"`.
pub fn mask_time(v: &mut Value, ptr: &str) -> String {
    let slot = v.pointer_mut(ptr).unwrap_or_else(|| panic!("no {ptr}"));
    let s = slot.as_str().unwrap_or_else(|| panic!("{ptr} is not a string: {slot}")).to_string();
    assert_rfc3339(&s);
    *slot = json!("<time>");
    s
}

/// Replaces the value at `ptr` with `"<masked>"` and returns it.
pub fn mask(v: &mut Value, ptr: &str) -> Value {
    let slot = v.pointer_mut(ptr).unwrap_or_else(|| panic!("no {ptr} in the body"));
    std::mem::replace(slot, json!("<masked>"))
}

/// Checks and masks the envelope's `timestamp`.
pub fn stamped(mut v: Value) -> Value {
    mask_time(&mut v, "/timestamp");
    v
}

/// The success envelope around `data`, timestamp masked.
pub fn ok_envelope(data: Value) -> Value {
    json!({"success": true, "data": data, "timestamp": "<time>"})
}

/// The error envelope, timestamp masked.
pub fn err_envelope(code: &str, message: &str) -> Value {
    json!({"success": false, "error": {"code": code, "message": message}, "timestamp": "<time>"})
}

/// Asserts a whole error response: status, JSON content type, exact envelope, and an
/// `X-Request-Id`.
pub fn assert_error(resp: &Response, status: u16, code: &str, message: &str) {
    assert_eq!(resp.status(), status, "status of {}", resp.text());
    assert_eq!(stamped(resp.json()), err_envelope(code, message), "body");
    assert_request_id(resp);
}

/// Asserts an error whose message is only known by its start.
pub fn assert_error_prefix(resp: &Response, status: u16, code: &str, prefix: &str) {
    assert_eq!(resp.status(), status, "status of {}", resp.text());
    let mut v = stamped(resp.json());
    let msg = mask(&mut v, "/error/message");
    let msg = msg.as_str().expect("message is a string");
    assert!(msg.starts_with(prefix), "message {msg:?} should start with {prefix:?}");
    assert_eq!(v, err_envelope(code, "<masked>"));
    assert_request_id(resp);
}

/// Asserts a 200 with the success envelope around exactly `data`.
pub fn assert_ok(resp: &Response, data: Value) {
    assert_eq!(resp.status(), 200, "status of {}", resp.text());
    assert_eq!(stamped(resp.json()), ok_envelope(data));
    assert_request_id(resp);
}

/// Asserts an `X-Request-Id` is present and non-empty.
pub fn assert_request_id(resp: &Response) {
    assert!(!resp.request_id().is_empty());
}

/// A gateway-generated request id: `req_` and 20 hex digits.
pub fn is_generated_request_id(id: &str) -> bool {
    id.strip_prefix("req_").is_some_and(|h| h.len() == 20 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A gateway-generated session id: `s_` and 32 lowercase hex digits.
pub fn is_generated_session_id(id: &str) -> bool {
    id.strip_prefix("s_")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

// ---------------------------------------------------------------------------------
// The mock provider's arithmetic (src/provider/mock.rs)

/// The mock's reply to a conversation whose last user message is `last` and which has
/// `turn` user messages.
pub fn mock_reply(last: &str, turn: usize) -> String {
    format!("You said \"{last}\". This is turn {turn} of our conversation.")
}

pub fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// The mock's usage for a prompt of `messages` (history + new) and `reply`.
pub fn mock_usage(messages: &[&str], reply: &str) -> Value {
    let prompt: u64 = messages.iter().map(|m| words(m) + 3).sum();
    let completion = words(reply);
    json!({"promptTokens": prompt, "completionTokens": completion, "totalTokens": prompt + completion})
}

// ---------------------------------------------------------------------------------
// SSE

/// One parsed event.
#[derive(Clone, Debug)]
pub struct SseEvent {
    pub event: String,
    pub id: String,
    pub data: Value,
}

/// Parses exactly one event in the contract's framing:
/// `event: message\nid: <id>\ndata: <json>\n\n`.
pub fn parse_event(raw: &[u8]) -> SseEvent {
    let text = std::str::from_utf8(raw).expect("SSE event is UTF-8");
    let body = text.strip_suffix("\n\n").unwrap_or_else(|| panic!("event does not end with a blank line: {text:?}"));
    let lines: Vec<&str> = body.split('\n').collect();
    assert_eq!(lines.len(), 3, "an event is exactly event/id/data lines: {text:?}");
    let event = lines[0].strip_prefix("event: ").unwrap_or_else(|| panic!("no event line: {text:?}"));
    let id = lines[1].strip_prefix("id: ").unwrap_or_else(|| panic!("no id line: {text:?}"));
    let data = lines[2].strip_prefix("data: ").unwrap_or_else(|| panic!("no data line: {text:?}"));
    SseEvent {
        event: event.into(),
        id: id.into(),
        data: serde_json::from_str(data).unwrap_or_else(|e| panic!("data is not JSON ({e}): {data:?}")),
    }
}

/// Reads an SSE response to its end: the head, then every chunk (one event each) with
/// the instant it arrived.
pub fn read_sse(conn: &mut Conn) -> (Head, Vec<(Instant, SseEvent)>) {
    let head = conn.read_head();
    assert_eq!(head.status, 200, "SSE head {head:?}");
    assert!(head.is_chunked(), "SSE must be chunked: {head:?}");
    let mut events = Vec::new();
    while let Some(chunk) = conn.read_chunk() {
        events.push((Instant::now(), parse_event(&chunk)));
    }
    (head, events)
}

/// Checks that event ids are `<turnId>:<seq>`, one turn id for the whole stream and
/// `seq` counting from 0; returns the turn id.
pub fn assert_event_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut turn: Option<String> = None;
    for (i, id) in ids.into_iter().enumerate() {
        let (t, seq) = id.rsplit_once(':').unwrap_or_else(|| panic!("event id {id:?} is not <turnId>:<seq>"));
        assert!(!t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()), "turn id in {id:?}");
        assert_eq!(seq, i.to_string(), "event {i} has id {id:?}");
        match &turn {
            None => turn = Some(t.to_string()),
            Some(prev) => assert_eq!(prev, t, "one turn id per stream"),
        }
    }
    turn.expect("at least one event")
}

/// The concatenated `content` of the chunk events.
pub fn concat_chunks(events: &[(Instant, SseEvent)]) -> String {
    events
        .iter()
        .filter(|(_, e)| e.data["type"] == "chunk")
        .map(|(_, e)| e.data["content"].as_str().expect("chunk content is a string"))
        .collect()
}

/// Polls `f` until it returns true.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
