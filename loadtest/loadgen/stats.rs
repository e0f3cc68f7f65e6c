//! Measurements. Each runtime thread owns one `Recorder` (HDR histograms in
//! nanoseconds, 3 significant digits, plus counters) with no sharing; the threads'
//! recorders are merged with `Histogram::add` at the end and summarised into a
//! `Report`, printed as a table and serialised as JSON (sonic-rs).
//!
//! Histograms: `latency` (from the scheduled time in open loop: coordinated omission
//! corrected; from the send in closed loop), `service` (always from the send), `ttfb`
//! (first body chunk / first WebSocket chunk frame) and `gap` (between consecutive
//! chunks of one stream).

use std::collections::BTreeMap;
use std::io::Write;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::procstat::ProcWindow;
use crate::sse::{ChunkTimes, SseTracker};
use crate::tls::TlsInfo;

/// Highest value recorded: 100 s in nanoseconds (larger values saturate).
const HIGHEST_NS: u64 = 100_000_000_000;

fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, HIGHEST_NS, 3).map_err(|e| format!("cannot create a histogram: {e}"))
}

/// Stream-shape counters (SSE responses or WebSocket turns).
#[derive(Debug, Default, Clone, Serialize)]
pub struct StreamCounts {
    /// Streams (responses or turns) completed.
    pub streams: u64,
    /// SSE events, or WebSocket chunk frames.
    pub events: u64,
    /// HTTP chunks (SSE) or chunk frames (WebSocket).
    pub chunks: u64,
    /// HTTP chunks in which two or more SSE events end: the server buffered them.
    pub merged_chunks: u64,
    /// Streams with at least one merged chunk.
    pub streams_with_merged: u64,
    /// Reads that completed two or more chunks (transport coalescing, informative).
    pub coalesced_reads: u64,
    /// Streams with fewer events than expected.
    pub streams_missing_events: u64,
    /// Events missing in total.
    pub missing_events: u64,
    /// Streams with more events than expected.
    pub streams_extra_events: u64,
}

/// One thread's measurements.
pub struct Recorder {
    pub latency: Histogram<u64>,
    pub service: Histogram<u64>,
    pub ttfb: Histogram<u64>,
    pub gap: Histogram<u64>,
    pub ok: u64,
    pub body_bytes: u64,
    pub errors: BTreeMap<String, u64>,
    pub stream: StreamCounts,
    /// Open loop: requests scheduled in the window that were never sent.
    pub unsent: u64,
    pub reconnects: u64,
    /// Connections opened (TCP connect and, for https, the TLS handshake done) in the
    /// window.
    pub connects: u64,
    /// TLS connections closed after a counted answer, by handshake kind (full or
    /// resumed): `--new-connection-per-request`.
    pub tls_full: u64,
    pub tls_resumed: u64,
}

impl Recorder {
    pub fn new() -> Result<Recorder, String> {
        Ok(Recorder {
            latency: histogram()?,
            service: histogram()?,
            ttfb: histogram()?,
            gap: histogram()?,
            ok: 0,
            body_bytes: 0,
            errors: BTreeMap::new(),
            stream: StreamCounts::default(),
            unsent: 0,
            reconnects: 0,
            connects: 0,
            tls_full: 0,
            tls_resumed: 0,
        })
    }

    pub fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_insert(0) += 1;
    }

    /// Records a completed SSE response's shape against the expected event count.
    pub fn sse(&mut self, t: &SseTracker, expect: Option<u32>) {
        let s = &mut self.stream;
        s.merged_chunks += u64::from(t.merged_chunks);
        s.streams_with_merged += u64::from(t.merged_chunks > 0);
        self.chunk_times(&t.times, t.events, expect);
    }

    /// Records a completed stream's timing and its event count against the expected
    /// one (for WebSocket turns the events are the chunk frames).
    pub fn chunk_times(&mut self, t: &ChunkTimes, events: u32, expect: Option<u32>) {
        let s = &mut self.stream;
        s.streams += 1;
        s.events += u64::from(events);
        s.chunks += u64::from(t.chunks);
        s.coalesced_reads += u64::from(t.coalesced_reads);
        self.expect(events, expect);
        for &g in &t.gaps_ns {
            self.gap.saturating_record(g.max(1));
        }
    }

    /// Compares a stream's event count with the expectation.
    pub fn expect(&mut self, events: u32, expect: Option<u32>) {
        if let Some(want) = expect {
            if events < want {
                self.stream.streams_missing_events += 1;
                self.stream.missing_events += u64::from(want - events);
            } else if events > want {
                self.stream.streams_extra_events += 1;
            }
        }
    }

    pub fn merge(&mut self, o: &Recorder) -> Result<(), String> {
        for (a, b) in [
            (&mut self.latency, &o.latency),
            (&mut self.service, &o.service),
            (&mut self.ttfb, &o.ttfb),
            (&mut self.gap, &o.gap),
        ] {
            a.add(b).map_err(|e| format!("cannot merge histograms: {e:?}"))?;
        }
        self.ok += o.ok;
        self.body_bytes += o.body_bytes;
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_insert(0) += v;
        }
        let (s, t) = (&mut self.stream, &o.stream);
        s.streams += t.streams;
        s.events += t.events;
        s.chunks += t.chunks;
        s.merged_chunks += t.merged_chunks;
        s.streams_with_merged += t.streams_with_merged;
        s.coalesced_reads += t.coalesced_reads;
        s.streams_missing_events += t.streams_missing_events;
        s.missing_events += t.missing_events;
        s.streams_extra_events += t.streams_extra_events;
        self.unsent += o.unsent;
        self.reconnects += o.reconnects;
        self.connects += o.connects;
        self.tls_full += o.tls_full;
        self.tls_resumed += o.tls_resumed;
        Ok(())
    }
}

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Option<Percentiles> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
        Some(Percentiles {
            count: h.len(),
            mean: (h.mean() / 100.0).round() / 10.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        })
    }
}

/// CPU and memory of one watched process over the window.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessReport {
    pub name: String,
    pub pid: u32,
    /// utime + stime over the window, milliseconds.
    pub cpu_ms: f64,
    /// CPU time per completed request (or turn), microseconds.
    pub cpu_us_per_req: Option<f64>,
    /// Cores used on average over the window.
    pub cores: f64,
    pub rss_kb_start: u64,
    pub rss_kb_end: u64,
    pub rss_kb_peak: u64,
}

/// The whole run, as printed and as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub label: String,
    pub url: String,
    pub scenario: String,
    pub mode: String,
    pub connections: usize,
    pub threads: usize,
    pub rate: Option<f64>,
    pub duration_s: f64,
    pub ok: u64,
    pub errors_total: u64,
    pub errors: BTreeMap<String, u64>,
    pub throughput_rps: f64,
    pub body_mb_s: f64,
    pub latency_us: Option<Percentiles>,
    pub service_us: Option<Percentiles>,
    pub ttfb_us: Option<Percentiles>,
    pub gap_us: Option<Percentiles>,
    pub stream: Option<StreamCounts>,
    pub unsent: u64,
    pub reconnects: u64,
    /// A new connection for every request (`Connection: close`).
    pub new_connection_per_request: bool,
    /// Connections opened in the window (over TLS: handshakes completed), and per second.
    pub connects: u64,
    pub connects_per_s: f64,
    /// https://: what was negotiated and how the handshakes went.
    pub tls: Option<TlsReport>,
    pub processes: Vec<ProcessReport>,
    /// The whole machine over the window: cores busy, and the part of them no
    /// watched process (nor loadgen) accounts for: other tenants, builds, the kernel.
    pub host: HostReport,
}

/// TLS facts of an https:// run.
#[derive(Debug, Clone, Serialize)]
pub struct TlsReport {
    #[serde(flatten)]
    pub negotiated: TlsInfo,
    /// Connections closed after a counted answer whose handshake was full / resumed
    /// (`--new-connection-per-request` only).
    pub full_handshakes: u64,
    pub resumed_handshakes: u64,
}

/// Machine-wide CPU over the window, in cores.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub busy_cores: f64,
    pub other_cores: f64,
    pub steal_cores: f64,
}

impl Report {
    pub fn processes_from(windows: &[ProcWindow], ok: u64, secs: f64) -> Vec<ProcessReport> {
        windows
            .iter()
            .map(|w| {
                let cpu_ms = w.cpu_ms();
                ProcessReport {
                    name: w.name.clone(),
                    pid: w.pid,
                    cpu_ms,
                    cpu_us_per_req: (ok > 0).then(|| (cpu_ms * 1000.0 / ok as f64 * 100.0).round() / 100.0),
                    cores: ((cpu_ms / 1000.0 / secs) * 100.0).round() / 100.0,
                    rss_kb_start: w.start.rss_kb,
                    rss_kb_end: w.end.rss_kb,
                    rss_kb_peak: w.end.hwm_kb,
                }
            })
            .collect()
    }

    /// Writes the human table.
    pub fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "== {} ({} {}, {} connections, {} threads, {:.1} s)",
            self.label, self.scenario, self.mode, self.connections, self.threads, self.duration_s
        )?;
        writeln!(out, "   url {}", self.url)?;
        writeln!(
            out,
            "   ok {}  errors {}  throughput {:.0}/s  body {:.2} MB/s",
            self.ok, self.errors_total, self.throughput_rps, self.body_mb_s
        )?;
        writeln!(
            out,
            "   {:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "(us)", "mean", "p50", "p90", "p99", "p99.9", "max"
        )?;
        for (name, p) in [
            ("latency", &self.latency_us),
            ("service", &self.service_us),
            ("ttfb", &self.ttfb_us),
            ("gap", &self.gap_us),
        ] {
            if let Some(p) = p {
                if name == "service" && self.mode == "closed" {
                    continue; // identical to latency in closed loop
                }
                writeln!(
                    out,
                    "   {:<10} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                    name, p.mean, p.p50, p.p90, p.p99, p.p999, p.max
                )?;
            }
        }
        if let Some(s) = &self.stream {
            writeln!(
                out,
                "   streams {}  events {}  chunks {}  merged chunks {} (in {} streams)  coalesced reads {}  missing {} (in {} streams)  extra-event streams {}",
                s.streams, s.events, s.chunks, s.merged_chunks, s.streams_with_merged, s.coalesced_reads, s.missing_events, s.streams_missing_events, s.streams_extra_events
            )?;
        }
        for p in &self.processes {
            writeln!(
                out,
                "   cpu {:<10} pid {:<7} {:>9.1} ms  {:>5.2} cores  {:>8} us/req  rss {} -> {} kB (peak {})",
                p.name,
                p.pid,
                p.cpu_ms,
                p.cores,
                p.cpu_us_per_req.map_or("-".to_string(), |v| format!("{v:.1}")),
                p.rss_kb_start,
                p.rss_kb_end,
                p.rss_kb_peak
            )?;
        }
        writeln!(
            out,
            "   host busy {:.2} cores, of which {:.2} not ours (steal {:.2})",
            self.host.busy_cores, self.host.other_cores, self.host.steal_cores
        )?;
        if let Some(t) = &self.tls {
            let n = &t.negotiated;
            writeln!(
                out,
                "   tls {} {} {} alpn {}  resumption {}  handshakes full {} resumed {}",
                n.version,
                n.cipher_suite,
                n.key_exchange,
                n.alpn,
                if n.resumption { "on" } else { "off" },
                t.full_handshakes,
                t.resumed_handshakes
            )?;
        }
        if self.new_connection_per_request {
            writeln!(out, "   new connection per request: {} connects ({:.0}/s)", self.connects, self.connects_per_s)?;
        }
        if self.unsent > 0 || self.reconnects > 0 {
            writeln!(out, "   unsent (open loop backlog) {}  reconnects {}", self.unsent, self.reconnects)?;
        }
        for (k, v) in &self.errors {
            writeln!(out, "   error {v:>8}  {k}")?;
        }
        Ok(())
    }
}
