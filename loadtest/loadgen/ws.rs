//! A minimal RFC 6455 client for `/ws` turns: the upgrade request (checked against
//! `Sec-WebSocket-Accept`), masked client frames (`encode`), server frames decoded in
//! place from the connection's read buffer (`decode`), and the OpenClaw turn:
//! `{"type":"message",...}` -> `chunk`* -> `message` -> `done` (or `error`).
//!
//! Only what the load test needs: text, ping (answered with a pong), pong, close;
//! fragmented messages are reassembled. Frame types are read from the JSON by a
//! substring scan of `"type":"..."` rather than a parse, so the client stays cheaper
//! than the server it measures.

use std::time::Instant;

use crate::http::{Conn, Failure};

/// Largest server frame accepted (the gateway's default limit is 1 MiB).
const MAX_FRAME: u64 = 16 * 1024 * 1024;

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// A decoded frame header: opcode, FIN, and where the payload sits in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    pub fin: bool,
    pub opcode: u8,
    pub payload_start: usize,
    pub payload_len: usize,
}

/// Decodes the frame at the start of `buf`: `Ok(None)` if incomplete. Server frames
/// must not be masked (RFC 6455 5.1).
pub fn decode(buf: &[u8]) -> Result<Option<FrameHead>, Failure> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b1 & 0x80 != 0 {
        return Err(Failure::Ws("masked server frame".into()));
    }
    let (len, start) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    if len > MAX_FRAME {
        return Err(Failure::Ws(format!("frame of {len} bytes")));
    }
    let len = len as usize;
    if buf.len() < start + len {
        return Ok(None);
    }
    Ok(Some(FrameHead { fin: b0 & 0x80 != 0, opcode: b0 & 0x0f, payload_start: start, payload_len: len }))
}

/// Appends one final, masked client frame with `payload` to `out`.
pub fn encode(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mask = fastrand::u32(..).to_be_bytes();
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// Base64 (standard alphabet, padded): for the 16-byte `Sec-WebSocket-Key`.
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(c.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(c.get(2).copied().unwrap_or(0));
        s.push(char::from(A[(n >> 18) as usize & 63]));
        s.push(char::from(A[(n >> 12) as usize & 63]));
        s.push(if c.len() > 1 { char::from(A[(n >> 6) as usize & 63]) } else { '=' });
        s.push(if c.len() > 2 { char::from(A[n as usize & 63]) } else { '=' });
    }
    s
}

/// The value of `"type":"..."` in a server frame's JSON (the gateway renders `type`
/// first, so this finds it within the first bytes).
pub fn frame_type(json: &[u8]) -> &[u8] {
    string_field(json, b"\"type\":\"").unwrap_or(b"")
}

/// The string after `key` (which includes the opening quote) up to the next quote.
pub fn string_field<'a>(json: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = json.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = json.get(at..)?;
    let end = rest.iter().position(|&b| b == b'"')?;
    rest.get(..end)
}

/// A message received: text payload (reassembled), when the read that completed it
/// returned, and that read's number.
pub struct Message {
    pub text: Vec<u8>,
    pub at: Instant,
    pub read_no: u64,
}

/// One upgraded connection.
pub struct WsConn {
    pub conn: Conn,
    wbuf: Vec<u8>,
}

impl WsConn {
    /// Sends the upgrade request and checks the 101 answer.
    pub async fn upgrade(
        mut conn: Conn,
        host: &str,
        path: &str,
        headers: &[(String, String)],
    ) -> Result<WsConn, Failure> {
        let key = base64(&fastrand::u128(..).to_le_bytes());
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let (res, _) = conn.write(req.into_bytes()).await;
        res?;
        let head = conn.read_head().await?;
        if head.status != 101 {
            return Err(Failure::Status(head.status));
        }
        let want = monoio_tungstenite::handshake::derive_accept_key(key.as_bytes());
        if head.ws_accept.as_deref() != Some(want.as_str()) {
            return Err(Failure::Ws("bad Sec-WebSocket-Accept".into()));
        }
        Ok(WsConn { conn, wbuf: Vec::with_capacity(512) })
    }

    /// Sends one text frame.
    pub async fn send_text(&mut self, text: &[u8]) -> Result<(), Failure> {
        let mut buf = std::mem::take(&mut self.wbuf);
        buf.clear();
        encode(OP_TEXT, text, &mut buf);
        let (res, buf) = self.conn.write(buf).await;
        self.wbuf = buf;
        res
    }

    /// Receives the next text message, answering pings on the way.
    pub async fn recv(&mut self) -> Result<Message, Failure> {
        let mut text: Vec<u8> = Vec::new();
        let mut fragmented = false;
        loop {
            let Some(f) = decode(self.conn.unread())? else {
                if self.conn.read_more().await? == 0 {
                    return Err(Failure::Eof);
                }
                continue;
            };
            let (at, read_no) = (self.conn.last_read_at, self.conn.reads);
            let range = f.payload_start..f.payload_start + f.payload_len;
            let total = f.payload_start + f.payload_len;
            match f.opcode {
                OP_TEXT | OP_CONT => {
                    if f.opcode == OP_CONT && !fragmented {
                        return Err(Failure::Ws("continuation without a start".into()));
                    }
                    if f.fin && !fragmented {
                        let text = self.conn.unread()[range].to_vec();
                        self.conn.consume(total);
                        return Ok(Message { text, at, read_no });
                    }
                    text.extend_from_slice(&self.conn.unread()[range]);
                    self.conn.consume(total);
                    fragmented = !f.fin;
                    if f.fin {
                        return Ok(Message { text, at, read_no });
                    }
                }
                OP_PING => {
                    let payload = self.conn.unread()[range].to_vec();
                    self.conn.consume(total);
                    let mut buf = Vec::with_capacity(payload.len() + 8);
                    encode(OP_PONG, &payload, &mut buf);
                    let (res, _) = self.conn.write(buf).await;
                    res?;
                }
                OP_PONG => self.conn.consume(total),
                OP_CLOSE => {
                    let code = self.conn.unread()[range].get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                    return Err(Failure::Ws(format!("closed by server ({})", code.unwrap_or(1005))));
                }
                op => return Err(Failure::Ws(format!("unexpected opcode {op}"))),
            }
        }
    }
}

/// Turns a JSON string into its quoted, escaped form.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test helper: decodes a masked client frame's payload.
    fn decode_masked(frame: &[u8]) -> Vec<u8> {
        let (len, start) = match frame[1] & 0x7f {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => (u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        let mask = &frame[start..start + 4];
        frame[start + 4..start + 4 + len].iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect()
    }

    #[test]
    fn client_frames_are_masked_and_sized() {
        for len in [0usize, 5, 125, 126, 300, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            encode(OP_TEXT, &payload, &mut out);
            assert_eq!(out[0], 0x81);
            assert_ne!(out[1] & 0x80, 0, "mask bit");
            assert_eq!(decode_masked(&out), payload);
        }
    }

    #[test]
    fn server_frames_decode_or_wait() {
        assert_eq!(decode(&[0x81]).unwrap(), None);
        assert_eq!(
            decode(&[0x81, 2, b'{', b'}']).unwrap(),
            Some(FrameHead { fin: true, opcode: 1, payload_start: 2, payload_len: 2 })
        );
        let mut long = vec![0x81, 126, 0x01, 0x2c];
        assert_eq!(decode(&long).unwrap(), None);
        long.extend(std::iter::repeat_n(b'a', 300));
        assert_eq!(decode(&long).unwrap().unwrap().payload_len, 300);
        assert!(decode(&[0x81, 0x82, 0, 0, 0, 0, 1, 2]).is_err());
    }

    #[test]
    fn base64_and_the_accept_key_match_rfc_6455() {
        assert_eq!(base64(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(
            monoio_tungstenite::handshake::derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frame_types_and_fields_are_found() {
        let f = br#"{"type":"error","code":"RATE_LIMITED","message":"x"}"#;
        assert_eq!(frame_type(f), b"error");
        assert_eq!(string_field(f, b"\"code\":\""), Some(&b"RATE_LIMITED"[..]));
        assert_eq!(json_string("a\"b\n"), "\"a\\\"b\\n\"");
    }
}
