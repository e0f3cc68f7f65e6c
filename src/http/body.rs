//! Request bodies: `Content-Length` bodies are split off the read buffer as `Bytes`
//! (zero copy); chunked bodies are decoded incrementally by `ChunkedDecoder`, which
//! consumes what it can from the read buffer and asks for more, so a body split at any
//! byte decodes the same. Sizes are checked as they arrive: a body over the limit is
//! refused before it is buffered.

use bytes::{Buf, BytesMut};

use crate::error::{ApiError, ErrorCode};

/// Longest chunk-size line (size, extensions, CRLF) or trailer line accepted.
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

/// Incremental decoder for `Transfer-Encoding: chunked`.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    max: usize,
    out: BytesMut,
}

/// One step of a streaming decode.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    Data(bytes::Bytes),
    NeedMore,
    Done,
}

/// Whether the decoder finished the body.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    NeedMore,
    Done,
}

impl ChunkedDecoder {
    pub fn new(max: usize) -> Self {
        ChunkedDecoder { state: State::Size, max, out: BytesMut::new() }
    }

    /// Consumes as much of `buf` as belongs to the body. `Done` leaves any bytes of a
    /// following (pipelined) request in `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Progress, ApiError> {
        loop {
            match self.next_piece(buf)? {
                Piece::Data(d) => {
                    if self.out.len() + d.len() > self.max {
                        return Err(too_large(self.max));
                    }
                    self.out.extend_from_slice(&d);
                }
                Piece::NeedMore => return Ok(Progress::NeedMore),
                Piece::Done => return Ok(Progress::Done),
            }
        }
    }

    /// The next piece of body data, split off `buf` without copying. Used directly by
    /// streaming readers (the upstream client); `decode` accumulates pieces.
    pub fn next_piece(&mut self, buf: &mut BytesMut) -> Result<Piece, ApiError> {
        loop {
            match self.state {
                State::Size => {
                    let Some(line) = take_line(buf)? else { return Ok(Piece::NeedMore) };
                    let digits = line[..].split(|b: &u8| *b == b';').next().unwrap_or_default();
                    let size = parse_hex(trim_ws(digits))?;
                    if size > self.max as u64 {
                        return Err(too_large(self.max));
                    }
                    self.state = if size == 0 { State::Trailer } else { State::Data(size) };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Piece::NeedMore);
                    }
                    let n = (left as usize).min(buf.len());
                    let data = buf.split_to(n).freeze();
                    let left = left - n as u64;
                    self.state = if left == 0 { State::DataEnd } else { State::Data(left) };
                    return Ok(Piece::Data(data));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Piece::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(bad("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailer => {
                    let Some(line) = take_line(buf)? else { return Ok(Piece::NeedMore) };
                    if line.is_empty() {
                        self.state = State::Done;
                    }
                }
                State::Done => return Ok(Piece::Done),
            }
        }
    }

    /// The decoded body; call after `Done`.
    pub fn finish(self) -> bytes::Bytes {
        self.out.freeze()
    }
}

/// Takes one CRLF-terminated line off the front of `buf`, without its CRLF. A line
/// longer than `MAX_LINE` is refused whether or not its CRLF has arrived yet, so the
/// answer does not depend on how the bytes were split (found by the `chunked_body`
/// fuzz target).
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, ApiError> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(pos) if pos > MAX_LINE => Err(bad("chunk line too long")),
        Some(pos) => {
            let mut line = buf.split_to(pos + 2);
            line.truncate(pos);
            Ok(Some(line))
        }
        // Up to MAX_LINE bytes and a CR may still be a line whose LF is on its way.
        None if buf.len() > MAX_LINE + 1 => Err(bad("chunk line too long")),
        None => Ok(None),
    }
}

fn parse_hex(digits: &[u8]) -> Result<u64, ApiError> {
    if digits.is_empty() || digits.len() > 15 {
        return Err(bad("invalid chunk size"));
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let d = (b as char).to_digit(16).ok_or_else(|| bad("invalid chunk size"))?;
        Ok(acc * 16 + u64::from(d))
    })
}

fn trim_ws(v: &[u8]) -> &[u8] {
    let end = v.iter().rposition(|b| *b != b' ' && *b != b'\t').map_or(0, |e| e + 1);
    &v[..end]
}

fn bad(msg: &'static str) -> ApiError {
    ApiError::invalid(msg).closing()
}

/// The 413 for a body over `max` bytes; it closes the connection because the rest of
/// the body is not read.
pub fn too_large(max: usize) -> ApiError {
    ApiError::new(ErrorCode::PayloadTooLarge, format!("request body exceeds {max} bytes")).closing()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: y\r\n\r\nGET /next";

    #[test]
    fn decodes_whole_and_leaves_pipelined_bytes() {
        let mut d = ChunkedDecoder::new(1024);
        let mut buf = BytesMut::from(BODY);
        assert_eq!(d.decode(&mut buf).unwrap(), Progress::Done);
        assert_eq!(&buf[..], b"GET /next");
        assert_eq!(&d.finish()[..], b"hello world");
    }

    #[test]
    fn decodes_when_split_at_every_offset() {
        for cut in 0..BODY.len() {
            let mut d = ChunkedDecoder::new(1024);
            let mut buf = BytesMut::from(&BODY[..cut]);
            let first = d.decode(&mut buf).unwrap();
            buf.extend_from_slice(&BODY[cut..]);
            let second = if first == Progress::Done { first } else { d.decode(&mut buf).unwrap() };
            assert_eq!(second, Progress::Done, "cut {cut}");
            assert_eq!(&d.finish()[..], b"hello world", "cut {cut}");
        }
    }

    #[test]
    fn refuses_bodies_over_the_limit_before_buffering() {
        let mut d = ChunkedDecoder::new(8);
        let mut buf = BytesMut::from(&b"ff\r\n"[..]);
        assert_eq!(d.decode(&mut buf).unwrap_err().status(), 413);
    }

    #[test]
    fn rejects_bad_sizes_and_framing() {
        for raw in [&b"zz\r\n"[..], b"5\r\nhelloXX", b"\r\n"] {
            let mut d = ChunkedDecoder::new(1024);
            let mut buf = BytesMut::from(raw);
            assert!(d.decode(&mut buf).is_err(), "{raw:?}");
        }
    }
}
