//! Session ids: what a client may choose (`validate_id`), what the gateway makes
//! (`new_id`), and which worker is an id's home (`owner_of`, a fixed-key hash every
//! worker computes alike).

use std::hash::{BuildHasher, Hasher};

use crate::error::ApiError;

/// Longest accepted session id.
pub const MAX_ID_LEN: usize = 128;

/// Checks a client-chosen session id: 1..=128 of `[A-Za-z0-9._:-]`.
pub fn validate_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid("sessionId must be 1-128 characters of A-Z a-z 0-9 . _ : -"))
    }
}

/// A fresh random session id (`s_` + 32 hex digits from the OS RNG).
pub fn new_id() -> String {
    let mut raw = [0u8; 16];
    if getrandom::getrandom(&mut raw).is_err() {
        // The OS RNG does not fail on Linux after boot; fall back to a seeded PRNG.
        raw = fastrand::u128(..).to_le_bytes();
    }
    let mut s = String::with_capacity(34);
    s.push_str("s_");
    for b in raw {
        s.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
        s.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
    }
    s
}

/// Which worker owns a session id.
pub fn owner_of(id: &str, workers: usize) -> usize {
    // A fixed-key hasher: every worker must compute the same owner.
    let mut h = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().build_hasher();
    h.write(id.as_bytes());
    (h.finish() % workers.max(1) as u64) as usize
}
