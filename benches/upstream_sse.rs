//! Upstream SSE: our incremental `Bytes` parser + borrowed sonic-rs chunk parse +
//! gateway re-framing (one HTTP chunk per event), per provider chunk, against a naive
//! version that appends every piece to a `String`, splits on "\n\n", and parses each
//! event into `serde_json::Value`. Input: an OpenAI stream of 20 chunks delivered in
//! 7-byte pieces (worst case for incremental parsers). Run:
//! `cargo bench --bench upstream_sse`.

use std::hint::black_box;

use clawgate::http::sse::chunked_event;
use clawgate::upstream::sse::{Event, Parser};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn openai_stream(chunks: usize) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..chunks {
        s.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" word{i}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
        ));
    }
    s.push_str("data: [DONE]\n\n");
    s.into_bytes()
}

#[derive(serde::Deserialize)]
struct Chunk<'a> {
    #[serde(borrow)]
    choices: Vec<Choice<'a>>,
}

#[derive(serde::Deserialize)]
struct Choice<'a> {
    #[serde(borrow)]
    delta: Delta<'a>,
}

#[derive(serde::Deserialize)]
struct Delta<'a> {
    #[serde(borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
}

#[derive(serde::Serialize)]
struct Out<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    content: &'a str,
}

fn ours(pieces: &[&[u8]]) -> usize {
    let mut parser = Parser::new();
    let mut events: Vec<Event> = Vec::new();
    let mut bytes = 0;
    for piece in pieces {
        let _ = parser.feed(piece, &mut events);
        for ev in events.drain(..) {
            if &ev.data[..] == b"[DONE]" {
                continue;
            }
            if let Ok(chunk) = sonic_rs::from_slice::<Chunk<'_>>(&ev.data) {
                for c in chunk.choices {
                    if let Some(text) = c.delta.content {
                        let data = sonic_rs::to_vec(&Out { kind: "chunk", content: &text }).unwrap_or_default();
                        bytes += chunked_event("message", "t:1", &data).len();
                    }
                }
            }
        }
    }
    bytes
}

fn naive(pieces: &[&[u8]]) -> usize {
    let mut buf = String::new();
    let mut bytes = 0;
    for piece in pieces {
        buf.push_str(&String::from_utf8_lossy(piece));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf[..end].to_string();
            buf = buf[end + 2..].to_string();
            let data = event.trim_start_matches("data: ").to_string();
            if data == "[DONE]" {
                continue;
            }
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&data) {
                if let Some(text) = v["choices"][0]["delta"]["content"].as_str() {
                    let out = serde_json::json!({"type": "chunk", "content": text}).to_string();
                    let framed = format!("{:x}\r\nevent: message\nid: t:1\ndata: {out}\n\n\r\n", out.len() + 30);
                    bytes += framed.len();
                }
            }
        }
    }
    bytes
}

fn upstream_sse(c: &mut Criterion) {
    let stream = openai_stream(20);
    let pieces: Vec<&[u8]> = stream.chunks(7).collect();
    let whole: Vec<&[u8]> = vec![&stream[..]];
    let mut g = c.benchmark_group("upstream_sse_20_chunks");
    g.throughput(Throughput::Elements(20));
    g.bench_function("ours_7_byte_pieces", |b| b.iter(|| ours(black_box(&pieces))));
    g.bench_function("naive_7_byte_pieces", |b| b.iter(|| naive(black_box(&pieces))));
    g.bench_function("ours_one_piece", |b| b.iter(|| ours(black_box(&whole))));
    g.bench_function("naive_one_piece", |b| b.iter(|| naive(black_box(&whole))));
    g.finish();
}

criterion_group!(benches, upstream_sse);
criterion_main!(benches);
