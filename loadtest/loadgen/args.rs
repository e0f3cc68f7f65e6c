//! The load generator's command line, parsed by hand (no CLI crate: one more dependency
//! would cost build minutes on 2 cores for a dozen flags). `Args::parse` turns argv into
//! a validated `Args`; `Target` is the parsed `http://IP:PORT/path` URL. Only loopback
//! addresses are accepted: this tool exists to load servers on this machine.

use std::net::SocketAddr;
use std::time::Duration;

pub const USAGE: &str = "\
usage: loadgen --url http://127.0.0.1:PORT/PATH [options]

Load (pick one):
  --connections N       connections, one request in flight on each (default 64)
  --rate R              open loop: R requests/s in total, on a fixed timeline; latency
                        is measured from each request's scheduled time (corrected for
                        coordinated omission). Without --rate: closed loop.
  --threads N           runtime threads (monoio, one per core; default 1)
  --duration S          measured window in seconds (default 10, decimals allowed)
  --warmup S            unmeasured run before the window (default 1)
  --timeout-ms MS       per request (or turn) deadline (default 10000)

Request:
  --scenario KIND       http (default) | sse | ws
  --method M            default GET, or POST when a body is given
  --body STR            request body; {conn} and {seq} are replaced by the connection
                        index and the request's number on that connection
  --body-file FILE      body from a file (same placeholders)
  --header 'K: V'       extra request header (repeatable)
  --expect-status N     status counted as success (default 200)

Streams:
  --expect-events N     sse: SSE events a complete response must have; ws: chunk
                        frames per turn. Fewer is counted as `missing`.
  --ws-token T          ws: token of the {\"type\":\"auth\"} frame (no auth frame without)
  --ws-content STR      ws: message content (default \"Hello from loadgen\"; placeholders)
  --ws-session STR      ws: sessionId (default lt-ws-{conn}; placeholders)

Output:
  --label NAME          name shown in the table and the JSON
  --watch NAME=PID      report CPU time (utime+stime from /proc/PID/stat) and RSS of this
                        process and its children over the measured window (repeatable)
  --json FILE           also write the report as JSON to FILE (`-` = stdout)
  --quiet               no table on stdout";

/// What one request or turn is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// One request, one response; the body is read and discarded.
    Http,
    /// One request, a streamed (chunked) SSE response: TTFB, gaps, events per chunk.
    Sse,
    /// WebSocket turns on one upgraded connection: message -> chunks, message, done.
    Ws,
}

impl Scenario {
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Http => "http",
            Scenario::Sse => "sse",
            Scenario::Ws => "ws",
        }
    }
}

/// The server to load: a loopback address and a path.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Host` header value (`IP:PORT` as written in the URL).
    pub host: String,
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest =
            url.strip_prefix("http://").ok_or_else(|| format!("--url {url}: only http:// URLs are supported"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr: SocketAddr = host
            .replace("localhost", "127.0.0.1")
            .parse()
            .map_err(|_| format!("--url {url}: the host must be IP:PORT (no name resolution)"))?;
        if !addr.ip().is_loopback() {
            return Err(format!("--url {url}: loadgen only targets loopback addresses"));
        }
        Ok(Target { addr, host: host.to_string(), path: path.to_string() })
    }
}

/// A process whose CPU time and memory are reported over the window.
#[derive(Debug, Clone)]
pub struct Watch {
    pub name: String,
    pub pid: u32,
}

/// The validated command line.
#[derive(Debug, Clone)]
pub struct Args {
    pub target: Target,
    pub scenario: Scenario,
    pub connections: usize,
    pub rate: Option<f64>,
    pub threads: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub timeout: Duration,
    pub method: String,
    pub body: Option<String>,
    pub headers: Vec<(String, String)>,
    pub expect_status: u16,
    pub expect_events: Option<u32>,
    pub ws_token: Option<String>,
    pub ws_content: String,
    pub ws_session: String,
    pub label: String,
    pub watch: Vec<Watch>,
    pub json: Option<String>,
    pub quiet: bool,
}

fn seconds(flag: &str, v: &str) -> Result<Duration, String> {
    let s: f64 = v.parse().map_err(|_| format!("{flag} {v}: not a number of seconds"))?;
    if !(0.0..=3600.0).contains(&s) {
        return Err(format!("{flag} {v}: want 0-3600 seconds"));
    }
    Ok(Duration::from_secs_f64(s))
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("{flag} {v}: not a valid number"))
}

impl Args {
    /// Parses argv (without the program name). `Ok(None)` means help was asked for.
    pub fn parse(mut argv: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
        let mut url = None;
        let mut scenario = Scenario::Http;
        let mut connections = 64usize;
        let mut rate = None;
        let mut threads = 1usize;
        let mut duration = Duration::from_secs(10);
        let mut warmup = Duration::from_secs(1);
        let mut timeout = Duration::from_secs(10);
        let mut method = None;
        let mut body = None;
        let mut headers = Vec::new();
        let mut expect_status = None;
        let mut expect_events = None;
        let mut ws_token = None;
        let mut ws_content = "Hello from loadgen".to_string();
        let mut ws_session = "lt-ws-{conn}".to_string();
        let mut label = None;
        let mut watch = Vec::new();
        let mut json = None;
        let mut quiet = false;
        while let Some(flag) = argv.next() {
            let mut value = || argv.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
            match flag.as_str() {
                "--url" => url = Some(value()?),
                "--scenario" => {
                    scenario = match value()?.as_str() {
                        "http" => Scenario::Http,
                        "sse" => Scenario::Sse,
                        "ws" => Scenario::Ws,
                        other => return Err(format!("--scenario {other}: want http, sse or ws")),
                    }
                }
                "--connections" | "-c" => connections = number(&flag, &value()?)?,
                "--rate" => rate = Some(number::<f64>(&flag, &value()?)?),
                "--threads" | "-t" => threads = number(&flag, &value()?)?,
                "--duration" | "-d" => duration = seconds(&flag, &value()?)?,
                "--warmup" => warmup = seconds(&flag, &value()?)?,
                "--timeout-ms" => timeout = Duration::from_millis(number(&flag, &value()?)?),
                "--method" | "-m" => method = Some(value()?.to_ascii_uppercase()),
                "--body" => body = Some(value()?),
                "--body-file" => {
                    let path = value()?;
                    body = Some(std::fs::read_to_string(&path).map_err(|e| format!("--body-file {path}: {e}"))?);
                }
                "--header" | "-H" => {
                    let h = value()?;
                    let (k, v) = h.split_once(':').ok_or_else(|| format!("--header {h}: want 'Name: value'"))?;
                    headers.push((k.trim().to_string(), v.trim().to_string()));
                }
                "--expect-status" => expect_status = Some(number(&flag, &value()?)?),
                "--expect-events" => expect_events = Some(number(&flag, &value()?)?),
                "--ws-token" => ws_token = Some(value()?),
                "--ws-content" => ws_content = value()?,
                "--ws-session" => ws_session = value()?,
                "--label" => label = Some(value()?),
                "--watch" => {
                    let w = value()?;
                    let (name, pid) = w.split_once('=').ok_or_else(|| format!("--watch {w}: want NAME=PID"))?;
                    watch.push(Watch { name: name.to_string(), pid: number(&flag, pid)? });
                }
                "--json" => json = Some(value()?),
                "--quiet" | "-q" => quiet = true,
                "-h" | "--help" => return Ok(None),
                other => return Err(format!("unknown argument {other}\n{USAGE}")),
            }
        }
        let url = url.ok_or_else(|| format!("--url is required\n{USAGE}"))?;
        let target = Target::parse(&url)?;
        if !(1..=100_000).contains(&connections) {
            return Err(format!("--connections {connections}: want 1-100000"));
        }
        if !(1..=256).contains(&threads) {
            return Err(format!("--threads {threads}: want 1-256"));
        }
        if let Some(r) = rate {
            if !(r > 0.0 && r <= 10_000_000.0) {
                return Err(format!("--rate {r}: want a positive rate up to 1e7"));
            }
        }
        if duration.is_zero() {
            return Err("--duration must be positive".into());
        }
        if timeout.is_zero() {
            return Err("--timeout-ms must be positive".into());
        }
        let method = method.unwrap_or_else(|| if body.is_some() { "POST".into() } else { "GET".into() });
        let expect_status = expect_status.unwrap_or(200);
        let label = label.unwrap_or_else(|| format!("{} {}", scenario.as_str(), target.path));
        Ok(Some(Args {
            target,
            scenario,
            connections,
            rate,
            threads: threads.min(connections),
            duration,
            warmup,
            timeout,
            method,
            body,
            headers,
            expect_status,
            expect_events,
            ws_token,
            ws_content,
            ws_session,
            label,
            watch,
            json,
            quiet,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &[&str]) -> Result<Option<Args>, String> {
        Args::parse(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_a_full_command_line() {
        let a = parse(&[
            "--url",
            "http://127.0.0.1:8080/v1/chat/completions",
            "--body",
            "{}",
            "-H",
            "Authorization: Bearer k",
            "--rate",
            "500",
            "-c",
            "8",
            "--threads",
            "2",
            "--duration",
            "2.5",
            "--scenario",
            "sse",
            "--watch",
            "gw=42",
            "--expect-events",
            "23",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.target.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(a.target.path, "/v1/chat/completions");
        assert_eq!(a.method, "POST");
        assert_eq!(a.headers, vec![("Authorization".to_string(), "Bearer k".to_string())]);
        assert_eq!((a.rate, a.connections, a.threads), (Some(500.0), 8, 2));
        assert_eq!(a.duration, Duration::from_millis(2500));
        assert_eq!(a.scenario, Scenario::Sse);
        assert_eq!((a.watch[0].name.as_str(), a.watch[0].pid), ("gw", 42));
        assert_eq!(a.expect_events, Some(23));
    }

    #[test]
    fn refuses_what_it_must_not_load() {
        assert!(parse(&["--url", "http://10.0.0.1:80/"]).unwrap_err().contains("loopback"));
        assert!(parse(&["--url", "http://example.com/"]).is_err());
        assert!(parse(&["--url", "https://127.0.0.1:1/"]).is_err());
        assert!(parse(&["--url", "http://127.0.0.1:1/", "--threads", "0"]).is_err());
        assert!(parse(&[]).is_err());
        assert!(parse(&["--help"]).unwrap().is_none());
    }
}
