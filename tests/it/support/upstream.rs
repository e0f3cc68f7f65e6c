//! The `mock_upstream` process (src/bin/mock_upstream): a fake OpenAI, Azure OpenAI,
//! Anthropic and Gemini server with fault injection and scripted answers, started with one worker on `127.0.0.1:0` (plain, or
//! HTTPS with the test CA's server certificate from `tests/fixtures`). `start` waits
//! for its `mock_upstream listening on http(s)://ADDR` line, then keeps draining its
//! stderr; dropping the `Upstream` kills it. `CLAWGATE_MOCK_UPSTREAM_BIN` (set by
//! tests/run.sh) overrides the binary cargo built.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{bin_from_env, fixture, req, Conn};

/// How long the mock may take to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The mock binary: `$CLAWGATE_MOCK_UPSTREAM_BIN` if set, else the one cargo built.
pub fn mock_bin() -> PathBuf {
    bin_from_env("CLAWGATE_MOCK_UPSTREAM_BIN", env!("CARGO_BIN_EXE_mock_upstream"))
}

/// A running `mock_upstream`; killed on drop.
pub struct Upstream {
    child: Child,
    pub addr: SocketAddr,
}

impl Upstream {
    /// A plain HTTP mock.
    pub fn start() -> Upstream {
        Upstream::spawn(false)
    }

    /// An HTTPS mock whose certificate (for `localhost` and `127.0.0.1`) is signed by
    /// `tests/fixtures/test-ca.pem`.
    pub fn start_tls() -> Upstream {
        Upstream::spawn(true)
    }

    #[allow(clippy::zombie_processes)] // `Drop` kills and waits for it
    fn spawn(tls: bool) -> Upstream {
        let mut cmd = Command::new(mock_bin());
        cmd.args(["--listen", "127.0.0.1:0", "--workers", "1"]);
        if tls {
            cmd.arg("--tls-cert").arg(fixture("test-server.pem"));
            cmd.arg("--tls-key").arg(fixture("test-server.key"));
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {:?}: {e}", cmd.get_program()));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining to EOF so the mock never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("mock_upstream prints its address");
            if let Some(rest) = line.strip_prefix("mock_upstream listening on ") {
                let addr = rest.trim().trim_start_matches("https://").trim_start_matches("http://");
                return Upstream { child, addr: addr.parse().expect("address") };
            }
        }
    }

    fn http(&self, method: &str, path: &str) -> Value {
        let mut conn = Conn::open(self.addr);
        let r = conn.exchange(&req(method, path).header("authorization", "Bearer x").body(Vec::new()));
        r.json()
    }

    /// `GET /__mock/stats`: what the mock has seen since it started or was reset.
    pub fn stats(&self) -> Value {
        self.http("GET", "/__mock/stats")
    }

    /// `GET /__mock/requests`: the last requests the mock received, oldest first, each
    /// `{"seq","method","target","path","query","headers","rawHeaders","body","json"}`.
    pub fn requests(&self) -> Vec<Value> {
        self.http("GET", "/__mock/requests")["requests"].as_array().cloned().unwrap_or_default()
    }

    /// The last request the mock received on `path` (`GET /__mock/requests?path=`).
    pub fn last_request_to(&self, path: &str) -> Value {
        let v = self.http("GET", &format!("/__mock/requests?path={path}"));
        v["requests"].as_array().and_then(|l| l.last().cloned()).unwrap_or_else(|| panic!("no request to {path}: {v}"))
    }

    /// `POST /__mock/reset`: zeroes the stats and forgets the recorded requests.
    pub fn reset(&self) {
        assert_eq!(self.http("POST", "/__mock/reset"), serde_json::json!({"ok": true}));
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
