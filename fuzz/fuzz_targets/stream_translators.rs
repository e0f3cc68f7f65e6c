//! The provider stream translators: an SSE byte stream (OpenAI's `data:` chunks,
//! Anthropic's named events, Gemini's partial answers) through `upstream::sse::Parser`,
//! each event through the adapter's `stream::Events::on_event` (and `on_end` at the
//! body's end), as `provider::stream::SseStream::next` does.
//!
//! Input: byte 0 picks the adapter (mod 3), byte 1 the read size, then the stream.
//! Checked: no panic, no stack overflow; nothing follows the end of the stream (the
//! `Done`); deltas are never empty; `Usage::total` does not overflow.
#![no_main]

use std::collections::VecDeque;

use clawgate::provider::stream::Events;
use clawgate::provider::{anthropic, gemini, openai, StreamEvent};
use clawgate::upstream::sse::Parser;
use libfuzzer_sys::fuzz_target;

fn translate<E: Events>(mut state: E, stream: &[u8], piece: usize) {
    let mut parser = Parser::new();
    let mut events = Vec::new();
    let mut out = VecDeque::new();
    for chunk in stream.chunks(piece) {
        if parser.feed(chunk, &mut events).is_err() {
            return;
        }
        for ev in events.drain(..) {
            let before = out.len();
            match state.on_event(ev.name.as_deref(), &ev.data, &mut out) {
                Ok(finished) => {
                    for e in out.range(before..) {
                        match e {
                            StreamEvent::Delta(t) => assert!(!t.is_empty(), "an empty delta"),
                            StreamEvent::Reasoning { .. } => {}
                            StreamEvent::ToolCall { index, .. } => assert!(*index < 1 << 20, "a wild tool index"),
                            StreamEvent::Finish(_) => {}
                            StreamEvent::Done(u) => {
                                assert!(finished, "Done before the end of the stream");
                                let _ = u.total();
                            }
                        }
                    }
                    if finished {
                        assert!(matches!(out.back(), Some(StreamEvent::Done(_))), "the end without Done");
                        return;
                    }
                }
                Err(e) => {
                    let _ = e.to_api();
                    return;
                }
            }
        }
    }
    // The body ended: a format whose end is the body's end finishes here.
    if state.on_end(&mut out) {
        assert!(matches!(out.back(), Some(StreamEvent::Done(_))), "the end without Done");
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let piece = usize::from(data[1]).max(1);
    match data[0] % 3 {
        0 => translate(openai::Events::default(), &data[2..], piece),
        1 => translate(anthropic::Events::default(), &data[2..], piece),
        _ => translate(gemini::Events::default(), &data[2..], piece),
    }
});
