//! Incremental Server-Sent Events parser for provider streams (WHATWG rules): bytes
//! arrive in arbitrary pieces; events end at a blank line; lines end in LF, CRLF or
//! CR (a CR at the end of a piece waits for the next piece to see if LF follows);
//! `:` lines are comments; several `data:` lines join with `\n`; one leading space
//! after the colon is dropped; `id`/`retry` are ignored. The common case, one
//! `data:` line, is returned as a `Bytes` slice of the input with no copy.

use bytes::{Buf, Bytes, BytesMut};

/// One event: its `event:` name (if any) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: Option<Bytes>,
    pub data: Bytes,
}

/// Parser state across pieces.
#[derive(Debug, Default)]
pub struct Parser {
    buf: BytesMut,
    name: Option<Bytes>,
    data: Option<Bytes>,
    joined: Option<BytesMut>,
    /// Longest line accepted; a provider sending more is broken.
    max_line: usize,
    /// The last piece ended in CR: an LF starting the next piece belongs to it.
    skip_lf: bool,
}

/// A line longer than the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineTooLong;

impl Parser {
    pub fn new() -> Self {
        Parser { max_line: 4 << 20, ..Parser::default() }
    }

    /// Adds a piece of the stream and pushes every event it completes onto `out`.
    pub fn feed(&mut self, piece: &[u8], out: &mut Vec<Event>) -> Result<(), LineTooLong> {
        // A CR that ended the last piece may be half of a CRLF: one LF right after it
        // belongs to it, and only that one (a piece of exactly "\n" uses it up; found
        // by the `upstream_sse` fuzz target).
        let (piece, had) = (piece, !piece.is_empty());
        let piece = match (self.skip_lf, piece.first()) {
            (true, Some(b'\n')) => &piece[1..],
            _ => piece,
        };
        if had {
            self.skip_lf = false;
        }
        self.buf.extend_from_slice(piece);
        loop {
            let Some((end, term)) = find_eol(&self.buf) else {
                if self.buf.len() > self.max_line {
                    return Err(LineTooLong);
                }
                return Ok(());
            };
            let line = self.buf.split_to(end).freeze();
            if term == 0 {
                // A CR at the very end: the line is over; an LF may follow next time.
                self.buf.advance(1);
                self.skip_lf = true;
            } else {
                self.buf.advance(term);
            }
            self.line(line, out);
        }
    }

    /// Ends the stream: an event without its blank line is dropped, as the spec says.
    pub fn finish(&mut self) {
        self.buf.clear();
        self.reset();
    }

    fn line(&mut self, line: Bytes, out: &mut Vec<Event>) {
        if line.is_empty() {
            let data = match (self.joined.take(), self.data.take()) {
                (Some(j), _) => Some(j.freeze()),
                (None, d) => d,
            };
            if let Some(data) = data {
                out.push(Event { name: self.name.take(), data });
            }
            self.name = None;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => {
                let skip = if line.get(i + 1) == Some(&b' ') { 2 } else { 1 };
                (line.slice(..i), line.slice(i + skip..))
            }
            None => (line.clone(), Bytes::new()),
        };
        match &field[..] {
            b"data" => match (&mut self.joined, self.data.take()) {
                (Some(j), _) => {
                    j.extend_from_slice(b"\n");
                    j.extend_from_slice(&value);
                }
                (None, Some(first)) => {
                    let mut j = BytesMut::from(&first[..]);
                    j.extend_from_slice(b"\n");
                    j.extend_from_slice(&value);
                    self.joined = Some(j);
                }
                (None, None) => self.data = Some(value),
            },
            b"event" => self.name = Some(value),
            _ => {}
        }
    }

    fn reset(&mut self) {
        self.name = None;
        self.data = None;
        self.joined = None;
    }
}

/// Position of the first line end and the terminator's length (`0`: a CR at the end
/// of the buffer, whose LF may come in the next piece).
fn find_eol(buf: &[u8]) -> Option<(usize, usize)> {
    let i = buf.iter().position(|b| *b == b'\n' || *b == b'\r')?;
    if buf[i] == b'\n' {
        return Some((i, 1));
    }
    match buf.get(i + 1) {
        Some(b'\n') => Some((i, 2)),
        Some(_) => Some((i, 1)),
        None => Some((i, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(pieces: &[&[u8]]) -> Vec<Event> {
        let mut p = Parser::new();
        let mut out = Vec::new();
        for piece in pieces {
            p.feed(piece, &mut out).unwrap();
        }
        out
    }

    const STREAM: &[u8] =
        b": hello\r\nevent: message_start\r\ndata: {\"a\":1}\r\n\r\ndata: line1\ndata: line2\n\ndata:[DONE]\r\r";

    fn expected() -> Vec<Event> {
        vec![
            Event { name: Some(Bytes::from_static(b"message_start")), data: Bytes::from_static(b"{\"a\":1}") },
            Event { name: None, data: Bytes::from_static(b"line1\nline2") },
            Event { name: None, data: Bytes::from_static(b"[DONE]") },
        ]
    }

    #[test]
    fn parses_crlf_comments_and_multiline_data() {
        assert_eq!(parse_all(&[STREAM]), expected());
    }

    #[test]
    fn same_events_when_split_at_every_offset() {
        for cut in 0..STREAM.len() {
            assert_eq!(parse_all(&[&STREAM[..cut], &STREAM[cut..]]), expected(), "cut {cut}");
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(parse_all(&bytes), expected());
    }

    #[test]
    fn unterminated_event_is_not_emitted() {
        assert!(parse_all(&[b"data: partial"]).is_empty());
    }

    #[test]
    fn a_crlf_split_after_its_cr_then_a_blank_line_in_its_own_read_ends_the_event() {
        let mut p = Parser::new();
        let mut out = Vec::new();
        for piece in [&b"data: a\r"[..], b"\n", b"\n"] {
            p.feed(piece, &mut out).unwrap();
        }
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(&out[0].data[..], b"a");
    }
}
