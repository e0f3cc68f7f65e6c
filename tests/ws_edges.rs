//! Raw-socket tests of `/ws` protocol edges: a hand-written client frame encoder (with
//! masking) and decoder over a blocking `std::net::TcpStream`, against the real
//! binary on port 0 with a temp config. Covers masking, fragmentation, a control frame
//! between fragments, close codes (1000, 1002, 1007, 1009), server pings and the
//! dead-peer timeout, and frames sent in the same packet as the upgrade request.

// Test helpers outside `#[test]` functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::zombie_processes)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const KEY: &str = "sk-edge";
const OP_CONT: u8 = 0;
const OP_TEXT: u8 = 1;
const OP_BINARY: u8 = 2;
const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;

struct Gateway {
    child: Child,
    addr: String,
    config: std::path::PathBuf,
}

impl Gateway {
    fn start(server_extra: &str) -> Gateway {
        static N: AtomicUsize = AtomicUsize::new(0);
        let config = std::env::temp_dir().join(format!(
            "clawgate-ws-edges-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 1\npin_workers = false\n{server_extra}\n\n\
             [[keys]]\nname = \"edge\"\nkey = \"{KEY}\"\n"
        );
        std::fs::write(&config, text).unwrap();
        let bin = std::env::var("CLAWGATE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_clawgate").to_string());
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("clawgate exited before listening").unwrap();
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Gateway { child, addr, config }
    }

    /// Connects and upgrades; `extra` is appended right after the request head.
    fn connect_with(&self, auth_header: bool, extra: &[u8]) -> Client {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_nodelay(true).unwrap();
        let auth = if auth_header { format!("Authorization: Bearer {KEY}\r\n") } else { String::new() };
        let mut req = format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n",
            self.addr
        )
        .into_bytes();
        req.extend_from_slice(extra);
        s.write_all(&req).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).unwrap(), 1, "connection closed during the handshake");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(head.to_ascii_lowercase().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
        Client { s }
    }

    fn connect(&self) -> Client {
        self.connect_with(true, b"")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// Encodes a client frame; `mask` is applied when given (clients must mask).
fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
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

fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, opcode, payload, Some([0x37, 0xfa, 0x21, 0x3d]))
}

struct Client {
    s: TcpStream,
}

impl Client {
    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    fn text(&mut self, json: &str) {
        self.send(&masked(true, OP_TEXT, json.as_bytes()));
    }

    /// Reads one server frame: (fin, opcode, payload). Servers never mask.
    fn read_frame(&mut self) -> Option<(bool, u8, Vec<u8>)> {
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
    fn read_text(&mut self) -> String {
        loop {
            let (fin, op, payload) = self.read_frame().expect("connection closed");
            if op == OP_PING {
                continue;
            }
            assert!(fin && op == OP_TEXT, "expected a text frame, got opcode {op}");
            return String::from_utf8(payload).unwrap();
        }
    }

    /// Reads until a close frame and returns its code.
    fn read_close_code(&mut self) -> u16 {
        loop {
            let (_, op, payload) = self.read_frame().expect("closed without a close frame");
            if op == OP_CLOSE {
                assert!(payload.len() >= 2);
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    }

    /// True if the server closed the TCP connection within `limit`.
    fn closed_within(&mut self, limit: Duration) -> bool {
        self.s.set_read_timeout(Some(limit)).unwrap();
        let mut buf = [0u8; 1024];
        let start = Instant::now();
        loop {
            match self.s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
            if start.elapsed() > limit {
                return false;
            }
        }
    }
}

const PING: &str = r#"{"type":"ping"}"#;
const PONG: &str = r#"{"type":"pong"}"#;

#[test]
fn a_masked_text_frame_gets_its_answer() {
    let gw = Gateway::start("");
    let mut c = gw.connect();
    c.text(PING);
    assert_eq!(c.read_text(), PONG);
}

#[test]
fn frames_sent_with_the_upgrade_request_are_not_lost() {
    let gw = Gateway::start("");
    let mut first = masked(true, OP_TEXT, format!(r#"{{"type":"auth","token":"{KEY}"}}"#).as_bytes());
    first.extend(masked(true, OP_TEXT, PING.as_bytes()));
    let mut c = gw.connect_with(false, &first);
    assert_eq!(c.read_text(), r#"{"type":"auth_ok","user":"edge"}"#);
    assert_eq!(c.read_text(), PONG);
}

#[test]
fn an_unmasked_client_frame_is_a_protocol_error_1002() {
    let gw = Gateway::start("");
    let mut c = gw.connect();
    c.send(&frame(true, OP_TEXT, PING.as_bytes(), None));
    assert_eq!(c.read_close_code(), 1002);
}

#[test]
fn a_fragmented_message_is_reassembled() {
    let gw = Gateway::start("");
    let mut c = gw.connect();
    c.send(&masked(false, OP_TEXT, br#"{"type""#));
    c.send(&masked(false, OP_CONT, br#":"pi"#));
    c.send(&masked(true, OP_CONT, br#"ng"}"#));
    assert_eq!(c.read_text(), PONG);
}

#[test]
fn a_control_frame_between_fragments_is_answered_at_once() {
    let gw = Gateway::start("");
    let mut c = gw.connect();
    c.send(&masked(false, OP_TEXT, br#"{"type":"#));
    c.send(&masked(true, OP_PING, b"hello"));
    let (fin, op, payload) = c.read_frame().unwrap();
    assert!(fin);
    assert_eq!((op, &payload[..]), (OP_PONG, &b"hello"[..]));
    c.send(&masked(true, OP_CONT, br#""ping"}"#));
    assert_eq!(c.read_text(), PONG);
}

#[test]
fn invalid_utf8_in_a_text_message_closes_1007() {
    let gw = Gateway::start("");
    let mut c = gw.connect();
    c.send(&masked(true, OP_TEXT, b"{\"type\":\"\xff\xfe\"}"));
    assert_eq!(c.read_close_code(), 1007);
    assert!(c.closed_within(Duration::from_secs(3)));
}

#[test]
fn invalid_utf8_split_across_fragments_closes_1007() {
    let gw = Gateway::start("");
    let mut c = gw.connect();
    // A valid 2-byte sequence split in two is fine...
    c.send(&masked(false, OP_TEXT, b"{\"type\":\"ping\",\"x\":\"\xc3"));
    c.send(&masked(true, OP_CONT, b"\xa9\"}"));
    assert_eq!(c.read_text(), PONG);
    // ...a truncated one is not.
    c.send(&masked(false, OP_TEXT, b"{\"type\":\"ping\",\"x\":\"\xc3"));
    c.send(&masked(true, OP_CONT, b"\"}"));
    assert_eq!(c.read_close_code(), 1007);
}

#[test]
fn an_oversized_frame_closes_1009() {
    let gw = Gateway::start("ws_max_frame_bytes = 1024\nws_max_message_bytes = 4096");
    let mut c = gw.connect();
    c.send(&masked(true, OP_TEXT, &vec![b' '; 2000]));
    assert_eq!(c.read_close_code(), 1009);
    assert!(c.closed_within(Duration::from_secs(3)));
}

#[test]
fn an_oversized_fragmented_message_closes_1009() {
    let gw = Gateway::start("ws_max_frame_bytes = 1024\nws_max_message_bytes = 1500");
    let mut c = gw.connect();
    c.send(&masked(false, OP_TEXT, &vec![b' '; 1000]));
    c.send(&masked(false, OP_CONT, &vec![b' '; 1000]));
    assert_eq!(c.read_close_code(), 1009);
}

#[test]
fn a_client_close_is_echoed_and_the_connection_ends() {
    let gw = Gateway::start("");
    let mut c = gw.connect();
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    c.send(&masked(true, OP_CLOSE, &payload));
    assert_eq!(c.read_close_code(), 1000);
    assert!(c.closed_within(Duration::from_secs(3)));
}

#[test]
fn an_unknown_opcode_closes_1002() {
    let gw = Gateway::start("");
    let mut c = gw.connect();
    c.send(&masked(true, 3, b"??"));
    assert_eq!(c.read_close_code(), 1002);
}

#[test]
fn a_binary_frame_is_an_error_and_the_socket_stays_open() {
    let gw = Gateway::start("");
    let mut c = gw.connect();
    c.send(&masked(true, OP_BINARY, b"\x00\x01"));
    assert!(c.read_text().contains("INVALID_REQUEST"));
    c.text(PING);
    assert_eq!(c.read_text(), PONG);
}

#[test]
fn the_server_pings_an_idle_socket_and_closes_a_dead_peer() {
    let gw = Gateway::start("ws_ping_interval_ms = 300\nws_pong_timeout_ms = 300");
    let mut c = gw.connect();
    let (_, op, _) = c.read_frame().unwrap();
    assert_eq!(op, OP_PING);
    // No pong: the socket is closed as dead.
    assert!(c.closed_within(Duration::from_secs(3)));
}

#[test]
fn an_answered_ping_keeps_the_socket_open() {
    let gw = Gateway::start("ws_ping_interval_ms = 300\nws_pong_timeout_ms = 300");
    let mut c = gw.connect();
    for _ in 0..3 {
        let (_, op, payload) = c.read_frame().unwrap();
        assert_eq!(op, OP_PING);
        c.send(&masked(true, OP_PONG, &payload));
    }
    c.text(PING);
    assert_eq!(c.read_text(), PONG);
}

#[test]
fn an_upgrade_without_the_websocket_headers_is_refused() {
    let gw = Gateway::start("");
    let mut s = TcpStream::connect(&gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        format!("GET /ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
}
