//! Upstream answers as the provider adapters read them: OpenAI completions
//! (`decode_completion`, with its `scan_usage` fast path), Anthropic messages
//! (`decode_message`) and both error bodies (`error_message`).
//!
//! Input: the response body.
//! Checked: no panic, no stack overflow; a usage found by the fast scan is one the
//! body spells out (both counts appear in it).
#![no_main]

use clawgate::provider::{anthropic, gemini, openai};
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
    for answer in [
        openai::decode_completion(data),
        anthropic::decode_message(data, None),
        // A forced tool answering in place of text (the structured-output translation).
        anthropic::decode_message(data, Some("json")),
        gemini::decode(data),
    ]
    .into_iter()
    .flatten()
    {
        let _ = (answer.text.len(), answer.tool_calls.len(), answer.usage.total());
    }
    let _ = openai::error_message(data);
    let _ = anthropic::error_message(data);
    let _ = gemini::error_info(data);
});
