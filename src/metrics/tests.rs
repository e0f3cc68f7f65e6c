use std::time::Duration;

use super::*;
use crate::stats::WorkerStats;

fn line<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("no line {start:?} in\n{text}"))
}

#[test]
fn the_workers_cells_are_summed_and_encoded_as_openmetrics() {
    let shared = Shared::new(2, "io_uring");
    let chat = ROUTE_LABELS.iter().position(|l| *l == "chat").unwrap();
    shared.workers[0].http.observe(chat, 200, Duration::from_micros(300));
    shared.workers[1].http.observe(chat, 200, Duration::from_millis(20));
    shared.workers[1].http.observe(chat, 429, Duration::from_micros(50));
    shared.workers[0].tokens.add("gpt-4o", "ops", 10, 5);
    shared.workers[1].tokens.add("gpt-4o", "ops", 1, 2);
    WorkerStats::add(&shared.workers[0].ratelimited_requests, 3);
    WorkerStats::add(&shared.workers[1].connections, 7);
    let text =
        Snapshot::collect(&shared, &StoreStatus::default(), &BTreeMap::new(), &["tg".to_string()]).render().unwrap();
    assert!(text.ends_with("# EOF\n"));
    assert_eq!(
        line(&text, "clawgate_http_requests_total{route=\"chat\",status=\"200\"}"),
        "clawgate_http_requests_total{route=\"chat\",status=\"200\"} 2"
    );
    assert!(text.contains("clawgate_http_requests_total{route=\"chat\",status=\"429\"} 1\n"));
    // Cumulative buckets: 50 µs and 300 µs under 0.5 ms, 20 ms under 25 ms.
    assert!(text.contains("clawgate_http_request_duration_seconds_bucket{le=\"0.0005\",route=\"chat\"} 2\n"), "{text}");
    assert!(text.contains("clawgate_http_request_duration_seconds_bucket{le=\"0.025\",route=\"chat\"} 3\n"));
    assert!(text.contains("clawgate_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"chat\"} 3\n"));
    assert!(text.contains("clawgate_http_request_duration_seconds_count{route=\"chat\"} 3\n"));
    assert!(text.contains("clawgate_tokens_total{model=\"gpt-4o\",key=\"ops\",direction=\"prompt\"} 11\n"));
    assert!(text.contains("clawgate_tokens_total{model=\"gpt-4o\",key=\"ops\",direction=\"completion\"} 7\n"));
    assert!(text.contains("clawgate_ratelimit_rejections_total{limit=\"requests\"} 3\n"));
    assert!(text.contains("clawgate_connections_open{worker=\"1\"} 7"));
    assert!(text.contains("clawgate_webhook_deliveries_total{channel=\"tg\",outcome=\"accepted\"} 0\n"));
    assert!(text.contains("clawgate_build_info{version=\""));
    assert!(text.contains("# TYPE clawgate_http_requests counter\n"));
}

#[test]
fn label_values_cannot_break_the_format() {
    assert_eq!(clean_label("a\"b\\c\nd"), "a_b_c_d");
}

#[test]
fn the_classic_text_format_names_counters_by_their_total_series() {
    let om = "# HELP x_requests Requests.\n# TYPE x_requests counter\nx_requests_total{a=\"b\"} 3\n\
              # HELP x_up Up.\n# TYPE x_up gauge\n# UNIT x_up seconds\nx_up 1\n# EOF\n";
    assert_eq!(
        to_prometheus_text(om),
        "# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\nx_requests_total{a=\"b\"} 3\n\
         # HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n"
    );
}
