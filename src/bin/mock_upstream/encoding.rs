//! Compressed answers (`encoding=gzip` / `encoding=deflate`), with flate2: `gzip` is
//! RFC 1952, HTTP's `deflate` the zlib format of RFC 1950 (RFC 9110 8.4.1). A JSON
//! body is compressed whole; a stream goes through one `Compressor` whose output is
//! sync-flushed after every event, so each HTTP chunk completes the compressed data
//! of one event and a client can decode events as they arrive.

use std::io::Write;

use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;

use crate::scenario::Encoding;

/// A streaming compressor writing into an in-memory buffer.
pub enum Compressor {
    Gzip(GzEncoder<Vec<u8>>),
    Deflate(ZlibEncoder<Vec<u8>>),
}

impl Compressor {
    pub fn new(encoding: Encoding) -> Compressor {
        match encoding {
            Encoding::Gzip => Compressor::Gzip(GzEncoder::new(Vec::new(), Compression::default())),
            Encoding::Deflate => Compressor::Deflate(ZlibEncoder::new(Vec::new(), Compression::default())),
        }
    }

    /// Compresses `data` and sync-flushes: the bytes that decode to everything so far.
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        // Writing to a Vec cannot fail.
        match self {
            Compressor::Gzip(e) => {
                let _ = e.write_all(data).and_then(|()| e.flush());
                std::mem::take(e.get_mut())
            }
            Compressor::Deflate(e) => {
                let _ = e.write_all(data).and_then(|()| e.flush());
                std::mem::take(e.get_mut())
            }
        }
    }

    /// The end of the compressed stream (gzip trailer, zlib checksum).
    pub fn finish(self) -> Vec<u8> {
        match self {
            Compressor::Gzip(e) => e.finish().unwrap_or_default(),
            Compressor::Deflate(e) => e.finish().unwrap_or_default(),
        }
    }
}

/// `body` compressed whole.
pub fn compress(encoding: Encoding, body: &[u8]) -> Vec<u8> {
    let mut c = Compressor::new(encoding);
    let mut out = c.push(body);
    out.extend_from_slice(&c.finish());
    out
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn round_trips_both_encodings() {
        let body = br#"{"ok":true,"text":"hello hello hello hello"}"#;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&compress(Encoding::Gzip, body)[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, body);
        let zlib = compress(Encoding::Deflate, body);
        assert_eq!(zlib[0] & 0x0f, 8, "zlib header: CM = 8 (deflate)");
        out.clear();
        flate2::read::ZlibDecoder::new(&zlib[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, body);
    }
}
