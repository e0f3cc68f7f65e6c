//! The load generator's command line, parsed by hand (no CLI crate: one more dependency
//! would cost build minutes on 2 cores for a dozen flags). `Args::parse` turns argv into
//! a validated `Args`; `Target` is the parsed `http://IP:PORT/path` (or `https://`) URL.
//! Only loopback addresses are accepted: this tool exists to load servers on this
//! machine.

use std::net::SocketAddr;
use std::time::Duration;

pub const USAGE: &str = "\
usage: loadgen --url http://127.0.0.1:PORT/PATH [options]
       loadgen --url https://localhost:PORT/PATH --ca CA.pem [options]

Load (pick one):
  --connections N       connections, one request in flight on each (default 64)
  --rate R              open loop: R requests/s in total, on a fixed timeline; latency
                        is measured from each request's scheduled time (corrected for
                        coordinated omission). Without --rate: closed loop.
  --threads N           runtime threads (monoio, one per core; default 1)
  --duration S          measured window in seconds (default 10, decimals allowed)
  --warmup S            unmeasured run before the window (default 1)
  --timeout-ms MS       per request (or turn) deadline (default 10000)
  --new-connection-per-request
                        open a connection for every request (sent with
                        `Connection: close`, dropped after the answer): with https://
                        every request pays a TCP and a TLS handshake (handshakes/s)

Request:
  --scenario KIND       http (default) | sse | ws
  --method M            default GET, or POST when a body is given
  --body STR            request body; {conn} and {seq} are replaced by the connection
                        index and the request's number on that connection
  --body-file FILE      body from a file (same placeholders)
  --header 'K: V'       extra request header (repeatable)
  --expect-status N     status counted as success (default 200)

TLS (https:// URLs; rustls with the ring provider, TLS 1.3 and 1.2, ALPN http/1.1):
  --ca FILE             PEM certificate(s) to trust (a private CA); required for
                        https://. The server name checked (and sent as SNI when it is
                        a name) is the URL's host: localhost or an IP address.
  --tls-resume          resume TLS sessions (rustls' in-memory cache: TLS 1.3 tickets,
                        TLS 1.2 tickets or ids). Default: off, every handshake is full.

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
    /// `https://`: TLS to the server.
    pub tls: bool,
    /// The URL's host without the port (and without IPv6 brackets): the name the
    /// server's certificate is checked against.
    pub server_name: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(format!("--url {url}: only http:// and https:// URLs are supported"));
        };
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
        let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
        let server_name = name.trim_start_matches('[').trim_end_matches(']').to_string();
        Ok(Target { addr, host: host.to_string(), path: path.to_string(), tls, server_name })
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
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
    /// A new connection (and, over TLS, a new handshake) for every request.
    pub new_connection_per_request: bool,
    /// https://: the PEM file of the certificates to trust.
    pub ca: Option<String>,
    /// https://: resume TLS sessions instead of a full handshake each time.
    pub tls_resume: bool,
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
        let mut new_connection_per_request = false;
        let mut ca = None;
        let mut tls_resume = false;
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
                "--new-connection-per-request" => new_connection_per_request = true,
                "--ca" => ca = Some(value()?),
                "--tls-resume" => tls_resume = true,
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
        if target.tls && ca.is_none() {
            return Err(format!(
                "--url {url}: https:// needs --ca FILE (the PEM CA that signed the server's certificate)"
            ));
        }
        if !target.tls && (ca.is_some() || tls_resume) {
            return Err("--ca and --tls-resume are for https:// URLs".into());
        }
        if new_connection_per_request && scenario == Scenario::Ws {
            return Err("--new-connection-per-request: not with --scenario ws (turns share one socket)".into());
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
            new_connection_per_request,
            ca,
            tls_resume,
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
        assert!(!a.target.tls && !a.new_connection_per_request && !a.tls_resume && a.ca.is_none());
        assert_eq!(a.target.scheme(), "http");
    }

    #[test]
    fn parses_https_targets() {
        let a = parse(&[
            "--url",
            "https://localhost:8443/v1/chat/completions",
            "--ca",
            "/tmp/ca.pem",
            "--new-connection-per-request",
            "--tls-resume",
        ])
        .unwrap()
        .unwrap();
        assert!(a.target.tls);
        assert_eq!(a.target.scheme(), "https");
        assert_eq!(a.target.addr, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(a.target.host, "localhost:8443");
        assert_eq!(a.target.server_name, "localhost");
        assert_eq!(a.ca.as_deref(), Some("/tmp/ca.pem"));
        assert!(a.new_connection_per_request && a.tls_resume);

        let b = parse(&["--url", "https://127.0.0.1:8443", "--ca", "ca.pem"]).unwrap().unwrap();
        assert_eq!((b.target.server_name.as_str(), b.target.path.as_str()), ("127.0.0.1", "/"));
        assert!(!b.tls_resume && !b.new_connection_per_request);
        let c = parse(&["--url", "https://[::1]:8443/x", "--ca", "ca.pem"]).unwrap().unwrap();
        assert_eq!(c.target.server_name, "::1");
    }

    #[test]
    fn refuses_what_it_must_not_load() {
        assert!(parse(&["--url", "http://10.0.0.1:80/"]).unwrap_err().contains("loopback"));
        assert!(parse(&["--url", "http://example.com/"]).is_err());
        assert!(parse(&["--url", "ftp://127.0.0.1:1/"]).is_err());
        assert!(parse(&["--url", "https://127.0.0.1:1/"]).unwrap_err().contains("--ca"));
        assert!(parse(&["--url", "https://10.0.0.1:443/", "--ca", "ca.pem"]).unwrap_err().contains("loopback"));
        assert!(parse(&["--url", "http://127.0.0.1:1/", "--ca", "ca.pem"]).is_err());
        assert!(parse(&["--url", "http://127.0.0.1:1/", "--tls-resume"]).is_err());
        assert!(parse(&["--url", "http://127.0.0.1:1/", "--scenario", "ws", "--new-connection-per-request"]).is_err());
        assert!(parse(&["--url", "http://127.0.0.1:1/", "--threads", "0"]).is_err());
        assert!(parse(&[]).is_err());
        assert!(parse(&["--help"]).unwrap().is_none());
    }
}
