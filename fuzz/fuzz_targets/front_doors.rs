//! The request bodies of the `/v1` front doors (`/v1/chat/completions`,
//! `/v1/messages`, `/v1/responses`) through the gateway's own parsers
//! (`api::fuzz`), on arbitrary bytes, after the depth check `server::dispatch` runs
//! first. Checked: no panic and no stack overflow whatever the input (strings or lists
//! where a field takes both, nested tool results, unknown fields, huge numbers).
#![no_main]

use clawgate::api::fuzz;
use clawgate::json::{check_depth, max_depth};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if check_depth(data, max_depth()).is_err() {
        return;
    }
    let _ = fuzz::chat_completions(data);
    let _ = fuzz::messages(data);
    let _ = fuzz::responses(data);
});
