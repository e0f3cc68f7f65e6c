//! `loadgen`: clawgate's load generator. It drives REST, SSE and WebSocket turns at a
//! fixed concurrency (closed loop: N connections, one request in flight each) or at a
//! fixed rate (open loop: requests on a timeline, latency from the scheduled time, so
//! coordinated omission is corrected), and reports throughput, latency percentiles
//! (p50/p90/p99/p99.9/max), time to first byte and inter-chunk gaps for streams,
//! stream shape (events per HTTP chunk, missing events), errors by kind, and the CPU
//! time and RSS of the watched server processes over the measured window.
//!
//! ```text
//! loadgen --url http://127.0.0.1:8080/v1/chat/completions --body '{...}' \
//!         -H 'Authorization: Bearer k' -c 64 --duration 10 --watch clawgate=PID --json out.json
//! ```
//!
//! Layout: `args.rs` (command line), `drive.rs` (threads, connections, timeline),
//! `http.rs` (HTTP/1.1 client, chunk-level body reader), `tls.rs` (rustls client
//! settings for https://), `sse.rs` (event counting and chunk timing), `ws.rs` (RFC
//! 6455 client frames), `stats.rs` (histograms, report), `procstat.rs` (`/proc` CPU
//! and memory). Built like the gateway: one monoio runtime
//! per thread (`--threads`), no shared state on the request path; the main thread only
//! starts the threads, samples `/proc` at the window's edges and merges the results.

mod args;
mod drive;
mod http;
mod procstat;
mod sse;
mod stats;
mod tls;
mod ws;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::args::{Args, USAGE};
use crate::drive::Plan;
use crate::procstat::ProcWindow;
use crate::stats::{HostReport, Percentiles, Recorder, Report, TlsReport};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Time given to the threads to start before the timeline begins.
const START_DELAY: Duration = Duration::from_millis(50);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

/// Blocks the main thread until `deadline` (a timed-out channel receive: the main
/// thread is no worker, it only waits for the window's edges).
fn wait_until(deadline: Instant) {
    let (_keep, rx) = std::sync::mpsc::channel::<()>();
    let now = Instant::now();
    if deadline > now {
        let _ = rx.recv_timeout(deadline - now);
    }
}

fn run() -> Result<(), String> {
    let Some(args) = Args::parse(std::env::args().skip(1))? else {
        eprintln!("{USAGE}");
        return Ok(());
    };
    // Every watched process must exist before the load starts.
    let mut windows = Vec::new();
    for w in &args.watch {
        let s = procstat::sample_tree(w.pid).map_err(|e| format!("--watch {}={}: {e}", w.name, w.pid))?;
        windows.push(ProcWindow { name: w.name.clone(), pid: w.pid, start: s, end: s });
    }
    // https://: the client settings, and one handshake now (a wrong CA fails here).
    let tls = match &args.ca {
        Some(ca) if args.target.tls => Some(tls::Client::new(ca, &args.target.server_name, args.tls_resume)?),
        _ => None,
    };
    let negotiated = match &tls {
        Some(t) => Some(t.probe(args.target.addr)?),
        None => None,
    };
    let start = Instant::now() + START_DELAY;
    let plan = Arc::new(Plan::new(args.clone(), start, tls));

    let mut threads = Vec::with_capacity(args.threads);
    for t in 0..args.threads {
        let conns: Vec<usize> = (0..args.connections).filter(|c| c % args.threads == t).collect();
        let plan = plan.clone();
        let handle = std::thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || drive::run_thread(plan, conns))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        threads.push(handle);
    }

    // The window's edges: sample the watched processes and ourselves.
    wait_until(plan.window_start);
    let host_start = procstat::host_sample()?;
    let self_start = procstat::sample(None)?;
    for w in &mut windows {
        w.start = procstat::sample_tree(w.pid).unwrap_or(w.start);
    }
    wait_until(plan.window_end);
    let host_end = procstat::host_sample()?;
    let self_end = procstat::sample(None)?;
    for w in &mut windows {
        w.end =
            procstat::sample_tree(w.pid).map_err(|e| format!("{} (pid {}) died during the run: {e}", w.name, w.pid))?;
    }
    windows.push(ProcWindow { name: "loadgen".into(), pid: std::process::id(), start: self_start, end: self_end });

    let mut total = Recorder::new()?;
    for t in threads {
        let rec = t.join().map_err(|_| "a load thread panicked".to_string())??;
        total.merge(&rec)?;
    }

    let secs = args.duration.as_secs_f64();
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    let busy = procstat::cores(host_end.busy.saturating_sub(host_start.busy), secs);
    let ours: f64 = windows.iter().map(|w| w.cpu_ms() / 1000.0 / secs).sum();
    let host = HostReport {
        busy_cores: round2(busy),
        other_cores: round2((busy - ours).max(0.0)),
        steal_cores: round2(procstat::cores(host_end.steal.saturating_sub(host_start.steal), secs)),
    };
    let errors_total = total.errors.values().sum();
    let is_stream = args.scenario != args::Scenario::Http;
    let report = Report {
        label: args.label.clone(),
        url: format!("{}://{}{}", args.target.scheme(), args.target.host, args.target.path),
        scenario: args.scenario.as_str().into(),
        mode: if args.rate.is_some() { "open".into() } else { "closed".into() },
        connections: args.connections,
        threads: args.threads,
        rate: args.rate,
        duration_s: secs,
        ok: total.ok,
        errors_total,
        errors: total.errors.clone(),
        throughput_rps: (total.ok as f64 / secs * 10.0).round() / 10.0,
        body_mb_s: total.body_bytes as f64 / secs / 1e6,
        latency_us: Percentiles::of(&total.latency),
        service_us: Percentiles::of(&total.service),
        ttfb_us: if is_stream { Percentiles::of(&total.ttfb) } else { None },
        gap_us: if is_stream { Percentiles::of(&total.gap) } else { None },
        stream: is_stream.then(|| total.stream.clone()),
        unsent: total.unsent,
        reconnects: total.reconnects,
        new_connection_per_request: args.new_connection_per_request,
        connects: total.connects,
        connects_per_s: (total.connects as f64 / secs * 10.0).round() / 10.0,
        tls: negotiated.map(|n| TlsReport {
            negotiated: n,
            full_handshakes: total.tls_full,
            resumed_handshakes: total.tls_resumed,
        }),
        processes: Report::processes_from(&windows, total.ok, secs),
        host,
    };

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !args.quiet {
        report.print(&mut out).map_err(|e| format!("stdout: {e}"))?;
    }
    if let Some(path) = &args.json {
        let json = sonic_rs::to_string_pretty(&report).map_err(|e| format!("cannot render JSON: {e}"))?;
        if path == "-" {
            writeln!(out, "{json}").map_err(|e| format!("stdout: {e}"))?;
        } else {
            std::fs::write(path, json + "\n").map_err(|e| format!("--json {path}: {e}"))?;
        }
    }
    Ok(())
}
