//! WebSocket frame encode/decode, the library path `/ws` uses against the naive
//! alternative. Encode: a server `chunk` frame (`ws::protocol::text_frame`, the
//! library's `FrameEncoder` into one reserved buffer) vs building the header byte by
//! byte into a growing `Vec`. Decode: a masked 1 KiB client frame through the
//! library's `FrameDecoder` (word-wise unmasking) vs a naive parser that unmasks one
//! byte at a time. Inputs are built outside `iter`.
//!
//! `cargo bench --bench ws_frames`

use bytes::BytesMut;
use clawgate::ws::protocol::text_frame;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use monoio_codec::{Decoded, Decoder};
use monoio_tungstenite::protocol::frame::codec::FrameDecoder;
use std::hint::black_box;

const CHUNK: &[u8] =
    br#"{"type":"chunk","content":" are red, violets","sessionId":"s_0123456789abcdef0123456789abcdef"}"#;

fn naive_encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(0x81);
    if payload.len() < 126 {
        out.push(payload.len() as u8);
    } else if payload.len() <= 0xffff {
        out.push(126);
        for b in (payload.len() as u16).to_be_bytes() {
            out.push(b);
        }
    } else {
        out.push(127);
        for b in (payload.len() as u64).to_be_bytes() {
            out.push(b);
        }
    }
    for b in payload {
        out.push(*b);
    }
    out
}

fn masked_frame(payload: &[u8]) -> Vec<u8> {
    let key = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![0x81, 0x80 | 126];
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Parses one masked frame and unmasks it a byte at a time.
fn naive_decode(buf: &[u8]) -> Option<Vec<u8>> {
    let (mut len, mut at) = ((buf.get(1)? & 0x7f) as usize, 2);
    if len == 126 {
        len = u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize;
        at = 4;
    } else if len == 127 {
        let mut b = [0u8; 8];
        b.copy_from_slice(buf.get(2..10)?);
        len = u64::from_be_bytes(b) as usize;
        at = 10;
    }
    let key = buf.get(at..at + 4)?.to_vec();
    let data = buf.get(at + 4..at + 4 + len)?;
    let mut out = Vec::new();
    for (i, b) in data.iter().enumerate() {
        out.push(b ^ key[i % 4]);
    }
    Some(out)
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("ws_encode_chunk_frame");
    g.throughput(Throughput::Bytes(CHUNK.len() as u64));
    g.bench_function("library_text_frame", |b| {
        b.iter_batched(|| CHUNK.to_vec(), |p| black_box(text_frame(p)), BatchSize::SmallInput)
    });
    g.bench_function("naive_vec_push", |b| b.iter(|| black_box(naive_encode(black_box(CHUNK)))));
    g.finish();
}

fn decode(c: &mut Criterion) {
    let payload: Vec<u8> = (0..1024u32).map(|i| b'a' + (i % 26) as u8).collect();
    let wire = masked_frame(&payload);
    let mut g = c.benchmark_group("ws_decode_masked_1k");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("library_frame_decoder", |b| {
        b.iter_batched(
            || {
                let mut d = FrameDecoder::default();
                d.set_unmask(true);
                (d, BytesMut::from(&wire[..]))
            },
            |(mut d, mut buf)| match d.decode(&mut buf) {
                Ok(Decoded::Some(frame)) => black_box(frame.payload().len()),
                _ => 0,
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("naive_bytewise_unmask", |b| b.iter(|| black_box(naive_decode(black_box(&wire)))));
    g.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
