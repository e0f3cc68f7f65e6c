//! SSE framing for the mock's streams, with the wire variations a robust client must
//! accept (the gateway's upstream parser is tested against them): `crlf` ends every
//! line with CRLF instead of LF, `comments` puts a `: keepalive` comment block (its
//! own HTTP chunk) before every event but the first, and `multiline` spreads each JSON
//! payload over three `data:` lines (`{`, the middle, `}`), which a conforming parser
//! joins with `\n` back into valid JSON.
//!
//! `Emitter` owns two buffers: `scratch`, into which a provider writes one event's JSON,
//! and `out`, which collects finished events, each framed as one HTTP chunk
//! (`<hex>\r\n<event>\r\n`). The connection takes `out` whenever it wants to write.
//!
//! Two options change the bytes, not the events: `json_array` writes the payloads as
//! one streamed JSON array instead of SSE (`[` before the first, `,\r\n` between,
//! `]` at the end: Gemini's `streamGenerateContent` without `alt=sse`), and an
//! encoding compresses the body, each event flushed (sync flush) into its own chunk
//! so a client can decode every event as it arrives.

use bytes::BytesMut;

use crate::encoding::Compressor;
use crate::scenario::Encoding;

/// Line-ending and padding variations of the SSE output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    pub crlf: bool,
    pub comments: bool,
    pub multiline: bool,
}

/// Builds chunk-framed SSE events.
pub struct Emitter {
    out: BytesMut,
    scratch: Vec<u8>,
    event: Vec<u8>,
    style: Style,
    emitted: usize,
    json_array: bool,
    compressor: Option<Compressor>,
}

impl Emitter {
    pub fn new(style: Style) -> Emitter {
        Emitter {
            out: BytesMut::with_capacity(4096),
            scratch: Vec::with_capacity(512),
            event: Vec::with_capacity(512),
            style,
            emitted: 0,
            json_array: false,
            compressor: None,
        }
    }

    /// Writes the payloads as one JSON array instead of SSE events.
    pub fn json_array(mut self) -> Emitter {
        self.json_array = true;
        self
    }

    /// Compresses the body with `encoding`.
    pub fn encoded(mut self, encoding: Option<Encoding>) -> Emitter {
        self.compressor = encoding.map(Compressor::new);
        self
    }

    /// Events emitted so far (comment padding not counted): the next event's 0-based
    /// position, which OpenAI's Responses stream sends as `sequence_number`.
    pub fn emitted(&self) -> usize {
        self.emitted
    }

    /// The cleared buffer for the next event's data (normally one JSON object).
    pub fn data(&mut self) -> &mut Vec<u8> {
        self.scratch.clear();
        &mut self.scratch
    }

    /// Frames what was written into `data()` as one event, named if `name` is given.
    pub fn emit(&mut self, name: Option<&str>) {
        if self.json_array {
            self.event.clear();
            self.event.extend_from_slice(if self.emitted == 0 { b"[" } else { b",\r\n" });
            self.event.extend_from_slice(&self.scratch);
            self.push_chunk();
            self.emitted += 1;
            return;
        }
        let eol: &[u8] = if self.style.crlf { b"\r\n" } else { b"\n" };
        if self.style.comments && self.emitted > 0 {
            self.event.clear();
            self.event.extend_from_slice(b": keepalive");
            self.event.extend_from_slice(eol);
            self.event.extend_from_slice(eol);
            self.push_chunk();
        }
        self.event.clear();
        if let Some(name) = name {
            self.event.extend_from_slice(b"event: ");
            self.event.extend_from_slice(name.as_bytes());
            self.event.extend_from_slice(eol);
        }
        let data = &self.scratch[..];
        let split =
            self.style.multiline && data.len() >= 2 && data.first() == Some(&b'{') && data.last() == Some(&b'}');
        if split {
            // `{` / middle / `}`: joined with `\n` by the reader, still the same JSON.
            for part in [&data[..1], &data[1..data.len() - 1], &data[data.len() - 1..]] {
                self.event.extend_from_slice(b"data: ");
                self.event.extend_from_slice(part);
                self.event.extend_from_slice(eol);
            }
        } else {
            self.event.extend_from_slice(b"data: ");
            self.event.extend_from_slice(data);
            self.event.extend_from_slice(eol);
        }
        self.event.extend_from_slice(eol);
        self.push_chunk();
        self.emitted += 1;
    }

    /// Frames `event` (compressed if asked) as one HTTP chunk.
    fn push_chunk(&mut self) {
        match &mut self.compressor {
            Some(c) => {
                let packed = c.push(&self.event);
                frame(&mut self.out, &packed);
            }
            None => frame(&mut self.out, &self.event),
        }
    }

    /// Closes the array, flushes the compressor, and appends the zero-length chunk
    /// that ends the body.
    pub fn finish(&mut self) {
        if self.json_array {
            self.event.clear();
            self.event.extend_from_slice(if self.emitted == 0 { b"[]" } else { b"]" });
            self.push_chunk();
        }
        if let Some(c) = self.compressor.take() {
            frame(&mut self.out, &c.finish());
        }
        self.out.extend_from_slice(b"0\r\n\r\n");
    }

    /// Takes the framed bytes produced so far.
    pub fn take(&mut self) -> BytesMut {
        self.out.split()
    }
}

/// Appends `payload` as one HTTP/1.1 chunk (nothing for an empty payload, which
/// would end the body).
fn frame(out: &mut BytesMut, payload: &[u8]) {
    if payload.is_empty() {
        return;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = payload.len();
    loop {
        i -= 1;
        digits[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.reserve(payload.len() + 24);
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(style: Style, name: Option<&str>, data: &str, twice: bool) -> String {
        let mut em = Emitter::new(style);
        for _ in 0..if twice { 2 } else { 1 } {
            em.data().extend_from_slice(data.as_bytes());
            em.emit(name);
        }
        em.finish();
        String::from_utf8(em.take().to_vec()).unwrap()
    }

    #[test]
    fn frames_each_event_as_a_chunk() {
        assert_eq!(one(Style::default(), None, "{}", false), "a\r\ndata: {}\n\n\r\n0\r\n\r\n");
        assert_eq!(one(Style::default(), Some("ping"), "{}", false), "16\r\nevent: ping\ndata: {}\n\n\r\n0\r\n\r\n");
    }

    #[test]
    fn crlf_comments_and_multiline_variants() {
        let s = Style { crlf: true, comments: true, multiline: true };
        assert_eq!(
            one(s, None, "{\"a\":1}", true),
            "21\r\ndata: {\r\ndata: \"a\":1\r\ndata: }\r\n\r\n\r\n\
             f\r\n: keepalive\r\n\r\n\r\n\
             21\r\ndata: {\r\ndata: \"a\":1\r\ndata: }\r\n\r\n\r\n0\r\n\r\n"
        );
        // Non-object payloads such as `[DONE]` stay on one line.
        let s = Style { multiline: true, ..Style::default() };
        assert_eq!(one(s, None, "[DONE]", false), "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n");
    }

    #[test]
    fn json_array_mode_streams_one_array() {
        let mut em = Emitter::new(Style::default()).json_array();
        for d in ["{\"a\":1}", "{\"b\":2}"] {
            em.data().extend_from_slice(d.as_bytes());
            em.emit(None);
        }
        em.finish();
        assert_eq!(
            String::from_utf8(em.take().to_vec()).unwrap(),
            "8\r\n[{\"a\":1}\r\na\r\n,\r\n{\"b\":2}\r\n1\r\n]\r\n0\r\n\r\n"
        );
    }

    #[test]
    fn compressed_events_decode_one_by_one() {
        use std::io::Read;
        let mut em = Emitter::new(Style::default()).encoded(Some(Encoding::Gzip));
        em.data().extend_from_slice(b"{}");
        em.emit(None);
        let first = em.take();
        em.data().extend_from_slice(b"[DONE]");
        em.emit(None);
        em.finish();
        let rest = em.take();
        let body = [unchunk(&first), unchunk(&rest)].concat();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
        assert_eq!(text, "data: {}\n\ndata: [DONE]\n\n");
        // The first event alone is already decodable (sync flush).
        let mut partial = Vec::new();
        let _ = flate2::read::GzDecoder::new(&unchunk(&first)[..]).read_to_end(&mut partial);
        assert_eq!(partial, b"data: {}\n\n");
    }

    /// The payloads of a chunked body, concatenated.
    fn unchunk(mut raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(pos) = raw.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&raw[..pos]).unwrap(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&raw[pos + 2..pos + 2 + size]);
            raw = &raw[pos + 2 + size + 2..];
        }
        out
    }
}
