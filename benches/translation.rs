//! The per-request CPU of `/v1/chat/completions` without sockets: the pass-through (an
//! OpenAI-format provider: peek, splice the model, read the answer's usage) beside the
//! translated path (parse into the canonical turn, encode for the provider, decode its
//! answer, render OpenAI's completion), for a plain chat turn and for a turn with a
//! tool and a tool-call answer, to Anthropic and to OpenAI itself (a session turn).
//! Run: `cargo bench --bench translation`.

use std::hint::black_box;

use bytes::Bytes;
use clawgate::api::openai::bench::{pass_through, translated};
use clawgate::provider::anthropic::Anthropic;
use clawgate::provider::openai::OpenAi;
use clawgate::provider::Adapter;
use criterion::{criterion_group, criterion_main, Criterion};

const CHAT: &[u8] = br#"{"model":"gpt","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Hello there, how are you today? Tell me a short story about a lighthouse keeper."}],"max_tokens":256,"temperature":0.7}"#;

const TOOLS: &[u8] = br#"{"model":"gpt","messages":[{"role":"user","content":"What is the weather in San Francisco?"}],"tools":[{"type":"function","function":{"name":"get_weather","description":"Current weather in a city","parameters":{"type":"object","properties":{"location":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["location"]}}}],"tool_choice":"auto"}"#;

const OPENAI_ANSWER: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Once upon a time, a lighthouse keeper named Ada kept the light burning through every storm, and the ships came home.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":31,"completion_tokens":27,"total_tokens":58}}"#;

const OPENAI_TOOL_ANSWER: &[u8] = br#"{"id":"chatcmpl-2","object":"chat.completion","created":1700000000,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"San Francisco, CA\",\"unit\":\"celsius\"}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":60,"completion_tokens":18,"total_tokens":78}}"#;

const ANTHROPIC_ANSWER: &[u8] = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4","content":[{"type":"text","text":"Once upon a time, a lighthouse keeper named Ada kept the light burning through every storm, and the ships came home."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":31,"output_tokens":27}}"#;

const ANTHROPIC_TOOL_ANSWER: &[u8] = br#"{"id":"msg_2","type":"message","role":"assistant","model":"claude-sonnet-4","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"location":"San Francisco, CA","unit":"celsius"}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":60,"output_tokens":18}}"#;

/// A case: its name, the client's body, and the answers of OpenAI and of Anthropic.
type Case = (&'static str, &'static [u8], &'static [u8], &'static [u8]);

fn translation(c: &mut Criterion) {
    let anthropic = Anthropic::with_version("2023-06-01");
    let cases: [Case; 2] =
        [("chat", CHAT, OPENAI_ANSWER, ANTHROPIC_ANSWER), ("tools", TOOLS, OPENAI_TOOL_ANSWER, ANTHROPIC_TOOL_ANSWER)];
    let mut g = c.benchmark_group("translation");
    for (name, body, openai_answer, anthropic_answer) in cases {
        let bytes = Bytes::from_static(body);
        assert!(pass_through(&bytes, "gpt-4o", openai_answer) > 0);
        assert!(translated(body, "gpt-4o", &OpenAi, openai_answer) > 0);
        assert!(translated(body, "claude-sonnet-4", &anthropic, anthropic_answer) > 0);
        g.bench_function(format!("{name}/pass_through"), |b| {
            b.iter(|| pass_through(black_box(&bytes), "gpt-4o", black_box(openai_answer)))
        });
        g.bench_function(format!("{name}/translated_openai"), |b| {
            b.iter(|| translated(black_box(body), "gpt-4o", &OpenAi as &dyn Adapter, black_box(openai_answer)))
        });
        g.bench_function(format!("{name}/translated_anthropic"), |b| {
            b.iter(|| {
                translated(black_box(body), "claude-sonnet-4", &anthropic as &dyn Adapter, black_box(anthropic_answer))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, translation);
criterion_main!(benches);
