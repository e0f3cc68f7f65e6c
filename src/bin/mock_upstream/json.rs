//! Hand-written JSON output for the mock's responses. Every body the mock sends is a
//! fixed shape with a few variable strings and numbers, so it is appended straight
//! into a byte buffer in the providers' documented field order: no `Value` tree, no
//! serde pass, one allocation per response at most. Strings are escaped per RFC 8259
//! (quote, backslash and control characters), which is all JSON requires.

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

/// Appends `s` (an already valid JSON fragment or plain ASCII) verbatim.
pub fn push_raw(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
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
    fn writes_numbers() {
        let mut out = Vec::new();
        push_num(&mut out, 0);
        out.push(b' ');
        push_num(&mut out, 18_446_744_073_709_551_615);
        assert_eq!(String::from_utf8(out).unwrap(), "0 18446744073709551615");
    }
}
