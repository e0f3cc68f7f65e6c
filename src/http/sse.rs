//! Server-Sent Events framing for the gateway's streams. An event is
//! `event: message\nid: <id>\ndata: <json>\n\n`; on the wire each event is its own
//! HTTP chunk (`<hex len>\r\n<event>\r\n`) written to the socket as soon as it exists,
//! so nothing is held back to fill a buffer. JSON payloads never contain raw newlines
//! (sonic-rs escapes them), so one `data:` line per event is always correct.

use bytes::{BufMut, Bytes, BytesMut};

/// One gateway SSE event, framed as an HTTP chunk, ready for the socket.
pub fn chunked_event(event: &str, id: &str, data: &[u8]) -> Bytes {
    let payload_len = "event: ".len() + event.len() + 1 + "id: ".len() + id.len() + 1 + "data: ".len() + data.len() + 2;
    let mut out = BytesMut::with_capacity(payload_len + 16);
    put_hex(&mut out, payload_len);
    out.put_slice(b"\r\nevent: ");
    out.put_slice(event.as_bytes());
    out.put_slice(b"\nid: ");
    out.put_slice(id.as_bytes());
    out.put_slice(b"\ndata: ");
    out.put_slice(data);
    out.put_slice(b"\n\n\r\n");
    out.freeze()
}

/// A bare `data: <payload>\n\n` event (OpenAI's stream format) as an HTTP chunk.
pub fn chunked_data(data: &[u8]) -> Bytes {
    let payload_len = "data: ".len() + data.len() + 2;
    let mut out = BytesMut::with_capacity(payload_len + 16);
    put_hex(&mut out, payload_len);
    out.put_slice(b"\r\ndata: ");
    out.put_slice(data);
    out.put_slice(b"\n\n\r\n");
    out.freeze()
}

/// The event inside one chunk made by `chunked_event`/`chunked_data` (a slice, no
/// copy), for clients that cannot take chunked bodies (HTTP/1.0).
pub fn unchunk(chunk: &Bytes) -> Bytes {
    let start = chunk.windows(2).position(|w| w == b"\r\n").map_or(0, |i| i + 2);
    let end = chunk.len().saturating_sub(2).max(start);
    chunk.slice(start..end)
}

/// The chunk that ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

fn put_hex(out: &mut BytesMut, mut n: usize) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_is_one_chunk_with_exact_framing() {
        let b = chunked_event("message", "t1:0", br#"{"type":"chunk","content":"Roses"}"#);
        let text = std::str::from_utf8(&b).unwrap();
        let (len, rest) = text.split_once("\r\n").unwrap();
        let payload = rest.strip_suffix("\r\n").unwrap();
        assert_eq!(usize::from_str_radix(len, 16).unwrap(), payload.len());
        assert_eq!(payload, "event: message\nid: t1:0\ndata: {\"type\":\"chunk\",\"content\":\"Roses\"}\n\n");
    }

    #[test]
    fn unchunk_returns_the_event_inside() {
        let b = chunked_data(b"[DONE]");
        assert_eq!(&unchunk(&b)[..], b"data: [DONE]\n\n");
    }

    #[test]
    fn data_only_event_for_openai_streams() {
        let b = chunked_data(b"[DONE]");
        assert_eq!(&b[..], b"e\r\ndata: [DONE]\n\n\r\n");
    }
}
