//! Hand-written JSON output for the mock's responses. Every body the mock sends is a
//! fixed shape with a few variable strings and numbers, so it is appended straight
//! into a byte buffer in the providers' documented field order: no `Value` tree, no
//! serde pass, one allocation per response at most. Strings are escaped per RFC 8259
//! (quote, backslash and control characters), which is all JSON requires; floats
//! (embedding values) in Rust's shortest round-trip form, which never uses an
//! exponent, always with a decimal point; binary data (base64 embeddings, recorded
//! bodies) as standard base64.

/// Appends `s` as a quoted JSON string.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends `n` in decimal.
pub fn push_num(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends a finite `x` as a JSON number that reads back as the same `f32`, always
/// with a fraction (`1.0`, not `1`) so clients that check for floats see one.
/// Non-finite values, which JSON cannot carry, are written as `0.0`.
pub fn push_f32(out: &mut Vec<u8>, x: f32) {
    use std::io::Write;
    if !x.is_finite() {
        out.extend_from_slice(b"0.0");
        return;
    }
    let start = out.len();
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{x}");
    if !out[start..].contains(&b'.') {
        out.extend_from_slice(b".0");
    }
}

/// Appends `s` (an already valid JSON fragment or plain ASCII) verbatim.
pub fn push_raw(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

/// Appends `data` in standard base64 (RFC 4648 section 4) with padding, unquoted.
pub fn push_base64(out: &mut Vec<u8>, data: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for group in data.chunks(3) {
        let b = [group[0], group.get(1).copied().unwrap_or(0), group.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= group.len() {
                out.push(ALPHABET[((n >> (18 - 6 * k)) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_quotes_backslashes_and_controls() {
        let mut out = Vec::new();
        push_str(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(String::from_utf8(out).unwrap(), "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }

    #[test]
    fn writes_base64_with_padding() {
        for (data, want) in
            [(&b""[..], ""), (b"f", "Zg=="), (b"fo", "Zm8="), (b"foo", "Zm9v"), (&[0xff, 0x00, b'a', b'b'], "/wBhYg==")]
        {
            let mut out = Vec::new();
            push_base64(&mut out, data);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn writes_floats_that_read_back_exactly() {
        let mut out = Vec::new();
        for x in [1.0f32, -0.5, 0.123_456_78, 1e-7, -3.0e9, f32::NAN] {
            out.clear();
            push_f32(&mut out, x);
            let text = String::from_utf8(out.clone()).unwrap();
            assert!(text.contains('.') && !text.contains('e'), "{text}");
            let back: f64 = serde_json::from_str(&text).unwrap();
            assert_eq!(back as f32, if x.is_nan() { 0.0 } else { x }, "{text}");
        }
    }

    #[test]
    fn writes_numbers() {
        let mut out = Vec::new();
        push_num(&mut out, 0);
        out.push(b' ');
        push_num(&mut out, 18_446_744_073_709_551_615);
        assert_eq!(String::from_utf8(out).unwrap(), "0 18446744073709551615");
    }
}
