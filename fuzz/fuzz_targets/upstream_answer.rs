//! Upstream answers as the provider adapters read them: OpenAI completions
//! (`decode_completion`, with its `scan_usage` fast path), Anthropic messages
//! (`decode_message`) and both error bodies (`error_message`).
//!
//! Input: the response body.
//! Checked: no panic, no stack overflow; a usage found by the fast scan is one the
//! body spells out (both counts appear in it).
#![no_main]

use clawgate::provider::{anthropic, openai};
use libfuzzer_sys::fuzz_target;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(|data: &[u8]| {
    if let Some(u) = openai::scan_usage(data) {
        if u.prompt_tokens != 0 || u.completion_tokens != 0 {
            assert!(contains(data, u.prompt_tokens.to_string().as_bytes()), "prompt_tokens not in the body");
            assert!(contains(data, u.completion_tokens.to_string().as_bytes()), "completion_tokens not in the body");
        }
        let _ = u.total();
    }
    if let Ok((text, usage)) = openai::decode_completion(data) {
        let _ = (text.len(), usage.total());
    }
    if let Ok((text, usage)) = anthropic::decode_message(data) {
        let _ = (text.len(), usage.total());
    }
    let _ = openai::error_message(data);
    let _ = anthropic::error_message(data);
});
