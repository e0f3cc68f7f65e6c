//! `GET /metrics` (layer 4): the gateway's counters in the OpenMetrics text format
//! (`application/openmetrics-text; version=1.0.0`, which Prometheus asks for), encoded
//! by `prometheus-client`, or in the classic Prometheus text format (0.0.4) for
//! scrapers that do not ask for OpenMetrics. PROTOCOL.md "Observability".
//!
//! Nothing here is on the request path: every worker counts in its own cells
//! (`stats::WorkerStats`, the providers' `ProviderHealth`, the channels'
//! `ChannelCounters`: relaxed atomics each written by one worker), and a scrape reads
//! and sums them (`Snapshot::collect`), then encodes (`render`). No atomic is shared by
//! the cores on the hot path.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `clawgate_http_requests` (`_total`) | counter | `route`, `status` |
//! | `clawgate_http_request_duration_seconds` | histogram | `route` |
//! | `clawgate_upstream_requests` (`_total`) | counter | `provider` |
//! | `clawgate_upstream_errors` (`_total`) | counter | `provider`, `kind` (`provider::resilience::UPSTREAM_ERROR_KINDS`) |
//! | `clawgate_upstream_duration_seconds` | histogram (time to the response head) | `provider` |
//! | `clawgate_tokens` (`_total`) | counter | `model`, `key`, `direction` (`prompt`, `completion`) |
//! | `clawgate_ratelimit_rejections` (`_total`) | counter | `limit` (`requests`, `tokens`) |
//! | `clawgate_auth_failures` (`_total`), `clawgate_auth_lockouts` (`_total`) | counter | - |
//! | `clawgate_connections_open`, `clawgate_websockets_open`, `clawgate_requests_in_flight` | gauge | `worker` |
//! | `clawgate_connections_rejected` (`_total`) | counter | - |
//! | `clawgate_tls_handshakes` (`_total`) | counter | `result` (`ok`, `failed`, `timeout`, `plain_http`) |
//! | `clawgate_sessions_in_memory` | gauge | - |
//! | `clawgate_store_*` | gauges and counters | - (queue depth, size, commits, writes, errors, commit latency, degraded) |
//! | `clawgate_webhook_*` | counters (`_total`) and gauges | `channel` (deliveries by outcome, replies, retries, dead letters; spool and outbox depth) |
//! | `clawgate_process_resident_memory_bytes`, `clawgate_uptime_seconds` | gauge | - |
//! | `clawgate_build_info` | gauge (1) | `version`, `io_driver` |

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::auth::Identity;
use crate::error::{ApiError, ErrorCode};
use crate::http::Response;
use crate::provider::resilience::UPSTREAM_ERROR_KINDS;
use crate::router::ROUTE_LABELS;
use crate::stats::{status_label, HistogramSnapshot, WorkerStats, LATENCY_BUCKETS, TLS_OUTCOMES};
use crate::store::{QueueCounts, StoreStatus};
use crate::worker::{Shared, Worker};

/// The `Content-Type` of what `render` writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The `Content-Type` of the classic Prometheus text format (`to_prometheus_text`).
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The OpenMetrics text `render` wrote, as the classic Prometheus text format (version
/// 0.0.4, what `promtool check metrics` and scrapers without OpenMetrics read): a
/// counter's `# HELP`/`# TYPE` name the `_total` series, and the `# UNIT` and `# EOF`
/// lines go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name.to_string());
            }
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

type Labels = Vec<(&'static str, String)>;
/// Picks one of a channel's counters.
type Pick = fn(&crate::stats::ChannelCounters) -> &std::sync::atomic::AtomicU64;

/// One metric family as read at scrape time.
#[derive(Debug)]
enum Family {
    Counter { name: &'static str, help: &'static str, samples: Vec<(Labels, u64)> },
    Gauge { name: &'static str, help: &'static str, samples: Vec<(Labels, f64)> },
    Histogram { name: &'static str, help: &'static str, samples: Vec<(Labels, HistogramSnapshot)> },
}

/// Everything a scrape shows, summed over the workers.
#[derive(Debug, Default)]
pub struct Snapshot {
    families: Vec<Family>,
}

impl Snapshot {
    /// Reads every worker's cells. `store` and `queues` come from the store (the
    /// caller awaited them).
    pub fn collect(
        shared: &Shared,
        store: &StoreStatus,
        queues: &BTreeMap<String, QueueCounts>,
        channels: &[String],
    ) -> Self {
        let mut f = Vec::new();
        let workers = &shared.workers;
        let sum = |pick: fn(&WorkerStats) -> &std::sync::atomic::AtomicU64| shared.total(pick);

        // Requests by route and status; latency by route.
        let mut requests: BTreeMap<(usize, usize), u64> = BTreeMap::new();
        let mut latency: BTreeMap<usize, HistogramSnapshot> = BTreeMap::new();
        for w in workers.iter() {
            for (r, s, n) in w.http.requests() {
                *requests.entry((r, s)).or_default() += n;
            }
            for (r, h) in w.http.latency() {
                latency.entry(r).or_default().merge(&h);
            }
        }
        let route = |r: usize| ROUTE_LABELS.get(r).copied().unwrap_or("unmatched").to_string();
        f.push(Family::Counter {
            name: "clawgate_http_requests",
            help: "HTTP requests answered, by route and status.",
            samples: requests
                .into_iter()
                .map(|((r, s), n)| (vec![("route", route(r)), ("status", status_label(s))], n))
                .collect(),
        });
        f.push(Family::Histogram {
            name: "clawgate_http_request_duration_seconds",
            help: "Time from a request's head to the end of its response (streams included), by route.",
            samples: latency.into_iter().map(|(r, h)| (vec![("route", route(r))], h)).collect(),
        });

        // Upstream calls by provider (each worker's record of each provider).
        let mut up: BTreeMap<String, (u64, [u64; UPSTREAM_ERROR_KINDS.len()], HistogramSnapshot)> = BTreeMap::new();
        if let Ok(list) = shared.provider_health.lock() {
            for (name, _, h) in list.iter() {
                let e = up.entry(name.clone()).or_default();
                e.0 += h.requests.load(Ordering::Relaxed);
                for (i, k) in h.error_kinds.iter().enumerate() {
                    e.1[i] += k.load(Ordering::Relaxed);
                }
                e.2.merge(&h.latency.snapshot());
            }
        }
        f.push(Family::Counter {
            name: "clawgate_upstream_requests",
            help: "Calls to providers (each retry is a call), by provider.",
            samples: up.iter().map(|(p, e)| (vec![("provider", clean_label(p))], e.0)).collect(),
        });
        f.push(Family::Counter {
            name: "clawgate_upstream_errors",
            help: "Failed calls to providers, by provider and kind of failure.",
            samples: up
                .iter()
                .flat_map(|(p, e)| {
                    UPSTREAM_ERROR_KINDS
                        .iter()
                        .zip(e.1)
                        .map(move |(k, n)| (vec![("provider", clean_label(p)), ("kind", (*k).to_string())], n))
                })
                .collect(),
        });
        f.push(Family::Histogram {
            name: "clawgate_upstream_duration_seconds",
            help: "Time from sending a provider call to its response head, successful calls, by provider.",
            samples: up.iter().map(|(p, e)| (vec![("provider", clean_label(p))], e.2.clone())).collect(),
        });

        // Tokens by model and key.
        let mut tokens: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for w in workers.iter() {
            for (k, (p, c)) in w.tokens.snapshot() {
                let e = tokens.entry(k).or_default();
                e.0 += p;
                e.1 += c;
            }
        }
        f.push(Family::Counter {
            name: "clawgate_tokens",
            help: "Tokens counted by providers' usage, by model, key name and direction.",
            samples: tokens
                .into_iter()
                .flat_map(|((model, key), (p, c))| {
                    [("prompt", p), ("completion", c)].map(|(d, n)| {
                        (
                            vec![
                                ("model", clean_label(&model)),
                                ("key", clean_label(&key)),
                                ("direction", d.to_string()),
                            ],
                            n,
                        )
                    })
                })
                .collect(),
        });

        f.push(Family::Counter {
            name: "clawgate_ratelimit_rejections",
            help: "Requests and turns refused by a quota, by kind of limit.",
            samples: vec![
                (vec![("limit", "requests".into())], sum(|w| &w.ratelimited_requests)),
                (vec![("limit", "tokens".into())], sum(|w| &w.ratelimited_tokens)),
            ],
        });
        let plain = |name, help, n| Family::Counter { name, help, samples: vec![(Vec::new(), n)] };
        f.push(plain("clawgate_auth_failures", "Refused credentials (HTTP and WebSocket).", sum(|w| &w.auth_failures)));
        f.push(plain(
            "clawgate_auth_lockouts",
            "Addresses locked out after repeated failures.",
            sum(|w| &w.auth_lockouts),
        ));
        f.push(plain(
            "clawgate_connections_rejected",
            "Connections refused at server.max_connections_per_worker.",
            sum(|w| &w.rejected_connections),
        ));
        f.push(Family::Counter {
            name: "clawgate_tls_handshakes",
            help: "TLS handshakes on the listener, by result (plain_http: plain HTTP sent to the TLS port).",
            samples: TLS_OUTCOMES
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    (
                        vec![("result", (*r).to_string())],
                        workers.iter().map(|w| WorkerStats::get(&w.tls_handshakes[i])).sum(),
                    )
                })
                .collect(),
        });
        let per_worker = |pick: fn(&WorkerStats) -> u64| -> Vec<(Labels, f64)> {
            workers.iter().enumerate().map(|(i, w)| (vec![("worker", i.to_string())], pick(w) as f64)).collect()
        };
        f.push(Family::Gauge {
            name: "clawgate_connections_open",
            help: "Open client connections, by worker.",
            samples: per_worker(|w| WorkerStats::get(&w.connections)),
        });
        f.push(Family::Gauge {
            name: "clawgate_websockets_open",
            help: "Open WebSockets, by worker.",
            samples: per_worker(|w| WorkerStats::get(&w.ws_clients)),
        });
        f.push(Family::Gauge {
            name: "clawgate_requests_in_flight",
            help: "Requests being answered (turns included), by worker.",
            samples: per_worker(|w| WorkerStats::get(&w.in_flight)),
        });
        let gauge = |name, help, v: f64| Family::Gauge { name, help, samples: vec![(Vec::new(), v)] };
        f.push(gauge("clawgate_sessions_in_memory", "Sessions held in memory.", shared.sessions() as f64));

        // The store.
        f.push(gauge(
            "clawgate_store_queue_depth",
            "Operations waiting for the storage thread.",
            store.queue_depth as f64,
        ));
        f.push(gauge(
            "clawgate_store_size_bytes",
            "The database file and its write-ahead log.",
            store.size_bytes as f64,
        ));
        f.push(gauge(
            "clawgate_store_commit_latency_seconds",
            "Recent commit time (exponentially weighted).",
            store.commit_latency_ms / 1000.0,
        ));
        f.push(gauge(
            "clawgate_store_degraded",
            "1 while the store's writes fail.",
            f64::from(u8::from(store.state != "ok")),
        ));
        f.push(plain("clawgate_store_commits", "Transactions committed.", store.commits));
        f.push(plain("clawgate_store_writes", "Writes committed (turns, resets, deliveries, ...).", store.writes));
        f.push(plain("clawgate_store_write_errors", "Writes that failed.", store.write_errors));

        // Channel webhooks.
        let ch_total = |name: &str, pick: Pick| shared.channel_total(name, pick);
        let mut deliveries = Vec::new();
        let mut replies = Vec::new();
        let mut waiting = Vec::new();
        for name in channels {
            let outcomes: [(&str, Pick); 5] = [
                ("accepted", |c| &c.received),
                ("duplicate", |c| &c.duplicates),
                ("rejected", |c| &c.rejected),
                ("dropped", |c| &c.dropped),
                ("ignored", |c| &c.ignored),
            ];
            for (outcome, pick) in outcomes {
                deliveries
                    .push((vec![("channel", name.clone()), ("outcome", outcome.to_string())], ch_total(name, pick)));
            }
            let results: [(&str, Pick); 5] = [
                ("turn", |c| &c.turns),
                ("turn_failed", |c| &c.turn_failures),
                ("sent", |c| &c.replies_sent),
                ("retried", |c| &c.retries),
                ("dead_lettered", |c| &c.dead_letters),
            ];
            for (result, pick) in results {
                replies.push((vec![("channel", name.clone()), ("result", result.to_string())], ch_total(name, pick)));
            }
            let q = queues.get(name).cloned().unwrap_or_default();
            for (queue, n) in [("spool", q.spooled), ("outbox", q.outbox), ("dead_letters", q.dead_letters)] {
                waiting.push((vec![("channel", name.clone()), ("queue", queue.to_string())], n as f64));
            }
        }
        f.push(Family::Counter {
            name: "clawgate_webhook_deliveries",
            help: "Webhook messages received, by channel and outcome (accepted = spooled for a turn).",
            samples: deliveries,
        });
        f.push(Family::Counter {
            name: "clawgate_webhook_events",
            help: "What became of spooled deliveries and their replies, by channel.",
            samples: replies,
        });
        f.push(Family::Gauge {
            name: "clawgate_webhook_queue_depth",
            help: "Deliveries waiting for a turn (spool), reply parts waiting to be sent (outbox), dead letters kept.",
            samples: waiting,
        });

        f.push(gauge("clawgate_process_resident_memory_bytes", "Resident set size.", crate::stats::rss_bytes() as f64));
        f.push(gauge(
            "clawgate_uptime_seconds",
            "Seconds since the process started.",
            shared.started.elapsed().as_secs_f64(),
        ));
        f.push(Family::Gauge {
            name: "clawgate_build_info",
            help: "The running build (always 1).",
            samples: vec![(
                vec![("version", env!("CARGO_PKG_VERSION").to_string()), ("io_driver", shared.io_driver.to_string())],
                1.0,
            )],
        });
        Snapshot { families: f }
    }

    /// The OpenMetrics text (`CONTENT_TYPE`), ending with `# EOF`.
    pub fn render(self) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for family in &self.families {
            match family {
                Family::Counter { name, help, samples } => {
                    let mut fam = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
                    for (labels, n) in samples {
                        fam.encode_family(labels)?.encode_counter::<NoLabelSet, _, u64>(n, None)?;
                    }
                }
                Family::Gauge { name, help, samples } => {
                    let mut fam = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                    for (labels, v) in samples {
                        fam.encode_family(labels)?.encode_gauge(v)?;
                    }
                }
                Family::Histogram { name, help, samples } => {
                    let mut fam = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
                    for (labels, h) in samples {
                        // Per-bucket counts; the `+Inf` bucket is the one bounded by f64::MAX.
                        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
                            .iter()
                            .copied()
                            .chain(std::iter::once(f64::MAX))
                            .zip(h.buckets.iter().copied().chain(std::iter::repeat(0)))
                            .collect();
                        fam.encode_family(labels)?
                            .encode_histogram::<NoLabelSet>(h.sum_secs, h.count, &buckets, None)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Answers `GET /metrics`: to an admin key on the main listener, to anyone on the
/// `[metrics] listen` address (`open`). Errors: 401 without a key, 403 for a key that
/// is not an admin's, 503 when the store cannot be read.
/// The format follows `Accept`: OpenMetrics when the scraper asks for it (Prometheus
/// does), the classic text format otherwise.
pub async fn serve(
    worker: &Worker,
    who: Option<&Identity>,
    open: bool,
    accept: Option<&str>,
) -> Result<Response, ApiError> {
    if !open {
        match who {
            None => return Err(ApiError::new(ErrorCode::Unauthorized, "/metrics needs an admin key")),
            Some(w) if !w.is_admin() => {
                return Err(ApiError::new(ErrorCode::Forbidden, "/metrics needs an admin key"));
            }
            Some(_) => {}
        }
    }
    let snap = worker.snapshot();
    let store = worker.turns.sessions.store().clone();
    let channels: Vec<String> = snap.config.channels.iter().map(|c| c.name.clone()).collect();
    let queues = if channels.is_empty() {
        BTreeMap::new()
    } else {
        crate::store::ask(|done| store.queue_counts(done)).await.map_err(|e| e.to_api())?
    };
    let text = Snapshot::collect(&worker.shared, &store.status(), &queues, &channels)
        .render()
        .map_err(|e| ApiError::internal(format!("encoding the metrics failed: {e}")))?;
    let openmetrics = accept.is_some_and(|a| a.contains("application/openmetrics-text"));
    let (text, content_type) =
        if openmetrics { (text, CONTENT_TYPE) } else { (to_prometheus_text(&text), PROMETHEUS_CONTENT_TYPE) };
    let mut resp = Response::json(200, text);
    resp.headers.retain(|(n, _)| *n != "content-type");
    resp.push_header("content-type", content_type);
    Ok(resp)
}

/// A label value as the text format can carry it (the encoder does not escape them):
/// `\`, `"` and line breaks replaced.
pub fn clean_label(v: &str) -> String {
    v.chars().map(|c| if matches!(c, '\\' | '"' | '\n' | '\r') { '_' } else { c }).collect()
}

#[cfg(test)]
mod tests;
