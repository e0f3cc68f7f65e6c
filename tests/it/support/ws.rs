//! A raw WebSocket client over a blocking `std::net::TcpStream`: a hand-written
//! client frame encoder (masked or not, any opcode, fragments) and a server frame
//! decoder, so tests can send what no WebSocket library would (unmasked frames,
//! unknown opcodes, bad UTF-8 split across fragments, frames in the same packet as the
//! upgrade request) and see every frame the server sends, pings included.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::IO_TIMEOUT;

pub const OP_CONT: u8 = 0;
pub const OP_TEXT: u8 = 1;
pub const OP_BINARY: u8 = 2;
pub const OP_CLOSE: u8 = 8;
pub const OP_PING: u8 = 9;
pub const OP_PONG: u8 = 10;

/// Encodes a client frame; `mask` is applied when given (clients must mask).
pub fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A client frame masked with a fixed key.
pub fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, opcode, payload, Some([0x37, 0xfa, 0x21, 0x3d]))
}

/// One upgraded `/ws` connection.
pub struct WsClient {
    s: TcpStream,
}

impl WsClient {
    /// Connects to `addr` and upgrades `GET /ws`, with `Authorization: Bearer <key>`
    /// if given; `extra` is sent right after the request head, in the same write.
    /// Asserts the `101` and the `Sec-WebSocket-Accept` of RFC 6455's sample key.
    pub fn connect(addr: SocketAddr, key: Option<&str>, extra: &[u8]) -> WsClient {
        let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
        s.set_nodelay(true).expect("nodelay");
        let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
        let mut req = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
        )
        .into_bytes();
        req.extend_from_slice(extra);
        s.write_all(&req).expect("send the upgrade request");
        // Byte by byte, so no frame after the head is read into a buffer here.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut byte).expect("read the upgrade response");
            assert_eq!(n, 1, "connection closed during the handshake");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).expect("UTF-8 response head");
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(head.to_ascii_lowercase().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
        WsClient { s }
    }

    /// Writes raw bytes (one or more encoded frames).
    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap_or_else(|e| panic!("write failed: {e}"));
    }

    /// Sends one masked text frame.
    pub fn text(&mut self, json: &str) {
        self.send(&masked(true, OP_TEXT, json.as_bytes()));
    }

    /// Reads one server frame: (fin, opcode, payload); `None` if the connection ends
    /// (or the read times out) first. Servers never mask.
    pub fn read_frame(&mut self) -> Option<(bool, u8, Vec<u8>)> {
        let mut h = [0u8; 2];
        self.s.read_exact(&mut h).ok()?;
        assert_eq!(h[1] & 0x80, 0, "server frames must not be masked");
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.s.read_exact(&mut b).ok()?;
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                self.s.read_exact(&mut b).ok()?;
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        self.s.read_exact(&mut payload).ok()?;
        Some((h[0] & 0x80 != 0, h[0] & 0x0f, payload))
    }

    /// The next text frame as a string (skipping server pings).
    pub fn read_text(&mut self) -> String {
        loop {
            let (fin, op, payload) = self.read_frame().expect("connection closed");
            if op == OP_PING {
                continue;
            }
            assert!(fin && op == OP_TEXT, "expected a text frame, got opcode {op}");
            return String::from_utf8(payload).expect("UTF-8 text frame");
        }
    }

    /// Reads until a close frame and returns its code.
    pub fn read_close_code(&mut self) -> u16 {
        loop {
            let (_, op, payload) = self.read_frame().expect("closed without a close frame");
            if op == OP_CLOSE {
                assert!(payload.len() >= 2);
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    }

    /// True if the server closed the TCP connection within `limit`.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        self.s.set_read_timeout(Some(limit)).expect("read timeout");
        let mut buf = [0u8; 1024];
        let start = Instant::now();
        loop {
            match self.s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
            if start.elapsed() > limit {
                return false;
            }
        }
    }
}
