//! `mock_upstream`: a fake model provider for clawgate's integration tests, load
//! tests and the nginx comparison. It speaks four providers' documented wire formats
//! (JSON and streams): OpenAI Chat Completions and Responses, Azure OpenAI, Anthropic
//! Messages and Google Gemini, plus their embeddings (OpenAI, Azure, Gemini
//! `embedContent` / `batchEmbedContents`, one deterministic vector function behind
//! all: `embeddings.rs`) and Anthropic's `count_tokens` (routes in `route.rs`). It
//! answers deterministically (`Echo: <last user message>`), or with a scripted answer
//! (thinking, tool calls, stop reasons, cached usage: `scenario.rs`, `reply.rs`),
//! injects faults and documented error bodies chosen per request (`fault.rs`),
//! compresses answers on request (`encoding.rs`), counts what it saw
//! (`GET /__mock/stats`) and keeps the last requests it received, byte for byte
//! (`GET /__mock/requests`, `record.rs`).
//!
//! ```text
//! mock_upstream --listen 127.0.0.1:0 [--workers N] [--tls-cert FILE --tls-key FILE]
//! ```
//! prints `mock_upstream listening on http://ADDR` (or `https://`) on stderr once every
//! worker accepts. It is built like the gateway, because in load tests it shares the
//! machine's cores with it: one thread per worker, each a monoio `FusionDriver`
//! runtime (io_uring, else epoll) with its own `SO_REUSEPORT` listener
//! (`clawgate::runtime::bind_listeners`), keep-alive and pipelining, requests parsed
//! with the gateway's own HTTP/1.1 code. The only cross-thread state is `Stats`.

mod anthropic;
mod azure;
mod chat;
mod conn;
mod embeddings;
mod encoding;
mod exchange;
mod fault;
mod gemini;
mod json;
mod openai;
mod record;
mod reply;
mod responses;
mod route;
mod scenario;
mod sse;
mod stats;
mod tls;
mod unary;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpListener;
use monoio_rustls::TlsAcceptor;

use crate::stats::Stats;

const USAGE: &str = "usage: mock_upstream [--listen ADDR] [--workers N] [--tls-cert FILE --tls-key FILE]
  --listen ADDR     address to bind (default 127.0.0.1:0: pick a free port)
  --workers N       worker threads, each with its own SO_REUSEPORT listener (default 1)
  --tls-cert FILE   PEM certificate chain: serve HTTPS (needs --tls-key)
  --tls-key FILE    PEM private key
Routes (POST unless noted; auth as each provider: Bearer, api-key, x-api-key +
anthropic-version, x-goog-api-key):
  /v1/chat/completions          OpenAI chat, JSON or SSE
  /v1/responses                 OpenAI Responses, JSON or SSE (stream: true)
  /v1/embeddings                OpenAI embeddings (float or base64, dimensions)
  /openai/deployments/D/chat/completions?api-version=V, .../embeddings   Azure OpenAI
  /v1/messages                  Anthropic Messages, JSON or SSE
  /v1/messages/count_tokens     Anthropic token count
  /v1beta/models/M:generateContent, :streamGenerateContent[?alt=sse]   Gemini
  /v1beta/models/M:embedContent, :batchEmbedContents                  Gemini embeddings
  GET /v1/models, GET /v1beta/models                                  model lists
Faults per request: header `x-mock-fault: status=503,retry-after=1` or `[fault:...]` in
the last user message or the last text to embed (scripted answers:
reply=thinking+text+tool_call, stop=length, cached=N, error=KIND, encoding=gzip);
stats at GET /__mock/stats, received requests at GET /__mock/requests,
POST /__mock/reset forgets both.";

/// Parsed command line.
struct Args {
    listen: SocketAddr,
    workers: usize,
    tls: Option<(PathBuf, PathBuf)>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mock_upstream: {e}");
            ExitCode::from(2)
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut workers = 1usize;
    let (mut cert, mut key) = (None, None);
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--listen" => {
                let v = value("--listen")?;
                listen = v.parse().map_err(|_| format!("--listen {v}: not an IP:port address"))?;
            }
            "--workers" => {
                let v = value("--workers")?;
                workers =
                    v.parse().ok().filter(|n| (1..=256).contains(n)).ok_or(format!("--workers {v}: want 1-256"))?;
            }
            "--tls-cert" => cert = Some(PathBuf::from(value("--tls-cert")?)),
            "--tls-key" => key = Some(PathBuf::from(value("--tls-key")?)),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let tls = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    Ok(Some(Args { listen, workers, tls }))
}

fn run() -> Result<(), String> {
    let Some(args) = parse_args(std::env::args().skip(1))? else {
        eprintln!("{USAGE}");
        return Ok(());
    };
    let tls = match &args.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listeners = clawgate::runtime::bind_listeners(args.listen, args.workers)?;
    let local = listeners.first().and_then(|l| l.local_addr().ok()).ok_or("no listener was bound")?;
    let stats = Arc::new(Stats::default());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<&'static str, String>>();
    let mut threads = Vec::with_capacity(args.workers);
    for (id, listener) in listeners.into_iter().enumerate() {
        let (stats, tls, ready) = (stats.clone(), tls.clone(), ready_tx.clone());
        let thread = std::thread::Builder::new()
            .name(format!("mock-w{id}"))
            .spawn(move || worker(listener, stats, tls, ready))
            .map_err(|e| format!("cannot start worker thread: {e}"))?;
        threads.push(thread);
    }
    drop(ready_tx);
    let mut driver = "";
    for _ in 0..args.workers {
        driver = ready_rx.recv().map_err(|_| "a worker died during start-up".to_string())??;
    }
    eprintln!("mock_upstream: {} worker(s) on {driver}", args.workers);
    eprintln!("mock_upstream listening on {scheme}://{local}");
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// One worker thread: a monoio runtime (io_uring if the kernel allows, else epoll).
fn worker(
    listener: std::net::TcpListener,
    stats: Arc<Stats>,
    tls: Option<TlsAcceptor>,
    ready: std::sync::mpsc::Sender<Result<&'static str, String>>,
) {
    let built = monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build();
    let mut runtime = match built {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot start the runtime: {e}")));
            return;
        }
    };
    let driver = match &runtime {
        monoio::FusionRuntime::Uring(_) => "io_uring",
        monoio::FusionRuntime::Legacy(_) => "epoll",
    };
    runtime.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot register the listener: {e}")));
                return;
            }
        };
        let _ = ready.send(Ok(driver));
        accept_loop(listener, stats, tls).await;
    });
}

async fn accept_loop(listener: TcpListener, stats: Arc<Stats>, tls: Option<TlsAcceptor>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("mock_upstream: accept failed: {e}");
                monoio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let fd = stream.as_raw_fd();
        let stats = stats.clone();
        match &tls {
            None => {
                monoio::spawn(conn::serve(stream, fd, stats));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                monoio::spawn(async move {
                    if let Ok(tls_stream) = acceptor.accept(stream).await {
                        conn::serve(tls_stream, fd, stats).await;
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Option<Args>, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_the_command_line() {
        let a = args(&["--listen", "127.0.0.1:9000", "--workers", "2"]).unwrap().unwrap();
        assert_eq!((a.listen.port(), a.workers, a.tls.is_none()), (9000, 2, true));
        assert!(args(&["--tls-cert", "c.pem"]).is_err());
        assert!(args(&["--workers", "0"]).is_err());
        assert!(args(&["--bogus"]).is_err());
        assert!(args(&["--help"]).unwrap().is_none());
    }
}
