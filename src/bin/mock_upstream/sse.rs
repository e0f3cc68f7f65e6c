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

use bytes::BytesMut;

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
}

impl Emitter {
    pub fn new(style: Style) -> Emitter {
        Emitter {
            out: BytesMut::with_capacity(4096),
            scratch: Vec::with_capacity(512),
            event: Vec::with_capacity(512),
            style,
            emitted: 0,
        }
    }

    /// The cleared buffer for the next event's data (normally one JSON object).
    pub fn data(&mut self) -> &mut Vec<u8> {
        self.scratch.clear();
        &mut self.scratch
    }

    /// Frames what was written into `data()` as one event, named if `name` is given.
    pub fn emit(&mut self, name: Option<&str>) {
        let eol: &[u8] = if self.style.crlf { b"\r\n" } else { b"\n" };
        if self.style.comments && self.emitted > 0 {
            self.event.clear();
            self.event.extend_from_slice(b": keepalive");
            self.event.extend_from_slice(eol);
            self.event.extend_from_slice(eol);
            frame(&mut self.out, &self.event);
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
        frame(&mut self.out, &self.event);
        self.emitted += 1;
    }

    /// Appends the zero-length chunk that ends the body.
    pub fn finish(&mut self) {
        self.out.extend_from_slice(b"0\r\n\r\n");
    }

    /// Takes the framed bytes produced so far.
    pub fn take(&mut self) -> BytesMut {
        self.out.split()
    }
}

/// Appends `payload` as one HTTP/1.1 chunk.
fn frame(out: &mut BytesMut, payload: &[u8]) {
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
}
