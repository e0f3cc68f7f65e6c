//! Raw-socket tests of `/ws` protocol edges with the frame client of `support::ws`
//! (masking done by hand), against a one-worker gateway. Covers masking,
//! fragmentation, a control frame between fragments, close codes (1000, 1002, 1007,
//! 1009), server pings and the dead-peer timeout, and frames sent in the same packet as
//! the upgrade request.

use std::time::Duration;

use crate::support::*;

/// The one key of the config, user `edge`.
const KEY: &str = "sk-edge";

/// One worker, not pinned, with `server_extra` lines in `[server]` and `KEY` as the
/// only key.
fn start(server_extra: &str) -> Gateway {
    Cfg::new()
        .workers(1)
        .server("pin_workers = false")
        .server(server_extra)
        .keys(&format!("\n[[keys]]\nname = \"edge\"\nkey = \"{KEY}\"\n"))
        .start()
}

const PING: &str = r#"{"type":"ping"}"#;
const PONG: &str = r#"{"type":"pong"}"#;

#[test]
fn a_masked_text_frame_gets_its_answer() {
    let gw = start("");
    let mut c = gw.ws(KEY);
    c.text(PING);
    assert_eq!(c.read_text(), PONG);
}

#[test]
fn frames_sent_with_the_upgrade_request_are_not_lost() {
    let gw = start("");
    let mut first = masked(true, OP_TEXT, format!(r#"{{"type":"auth","token":"{KEY}"}}"#).as_bytes());
    first.extend(masked(true, OP_TEXT, PING.as_bytes()));
    let mut c = WsClient::connect(gw.addr(), None, &first);
    assert_eq!(c.read_text(), r#"{"type":"auth_ok","user":"edge"}"#);
    assert_eq!(c.read_text(), PONG);
}

#[test]
fn an_unmasked_client_frame_is_a_protocol_error_1002() {
    let gw = start("");
    let mut c = gw.ws(KEY);
    c.send(&frame(true, OP_TEXT, PING.as_bytes(), None));
    assert_eq!(c.read_close_code(), 1002);
}

#[test]
fn a_fragmented_message_is_reassembled() {
    let gw = start("");
    let mut c = gw.ws(KEY);
    c.send(&masked(false, OP_TEXT, br#"{"type""#));
    c.send(&masked(false, OP_CONT, br#":"pi"#));
    c.send(&masked(true, OP_CONT, br#"ng"}"#));
    assert_eq!(c.read_text(), PONG);
}

#[test]
fn a_control_frame_between_fragments_is_answered_at_once() {
    let gw = start("");
    let mut c = gw.ws(KEY);
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
    let gw = start("");
    let mut c = gw.ws(KEY);
    c.send(&masked(true, OP_TEXT, b"{\"type\":\"\xff\xfe\"}"));
    assert_eq!(c.read_close_code(), 1007);
    assert!(c.closed_within(Duration::from_secs(3)));
}

#[test]
fn invalid_utf8_split_across_fragments_closes_1007() {
    let gw = start("");
    let mut c = gw.ws(KEY);
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
    let gw = start("ws_max_frame_bytes = 1024\nws_max_message_bytes = 4096");
    let mut c = gw.ws(KEY);
    c.send(&masked(true, OP_TEXT, &vec![b' '; 2000]));
    assert_eq!(c.read_close_code(), 1009);
    assert!(c.closed_within(Duration::from_secs(3)));
}

#[test]
fn an_oversized_fragmented_message_closes_1009() {
    let gw = start("ws_max_frame_bytes = 1024\nws_max_message_bytes = 1500");
    let mut c = gw.ws(KEY);
    c.send(&masked(false, OP_TEXT, &vec![b' '; 1000]));
    c.send(&masked(false, OP_CONT, &vec![b' '; 1000]));
    assert_eq!(c.read_close_code(), 1009);
}

#[test]
fn a_client_close_is_echoed_and_the_connection_ends() {
    let gw = start("");
    let mut c = gw.ws(KEY);
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    c.send(&masked(true, OP_CLOSE, &payload));
    assert_eq!(c.read_close_code(), 1000);
    assert!(c.closed_within(Duration::from_secs(3)));
}

#[test]
fn an_unknown_opcode_closes_1002() {
    let gw = start("");
    let mut c = gw.ws(KEY);
    c.send(&masked(true, 3, b"??"));
    assert_eq!(c.read_close_code(), 1002);
}

#[test]
fn a_binary_frame_is_an_error_and_the_socket_stays_open() {
    let gw = start("");
    let mut c = gw.ws(KEY);
    c.send(&masked(true, OP_BINARY, b"\x00\x01"));
    assert!(c.read_text().contains("INVALID_REQUEST"));
    c.text(PING);
    assert_eq!(c.read_text(), PONG);
}

#[test]
fn the_server_pings_an_idle_socket_and_closes_a_dead_peer() {
    let gw = start("ws_ping_interval_ms = 300\nws_pong_timeout_ms = 300");
    let mut c = gw.ws(KEY);
    let (_, op, _) = c.read_frame().unwrap();
    assert_eq!(op, OP_PING);
    // No pong: the socket is closed as dead.
    assert!(c.closed_within(Duration::from_secs(3)));
}

#[test]
fn an_answered_ping_keeps_the_socket_open() {
    let gw = start("ws_ping_interval_ms = 300\nws_pong_timeout_ms = 300");
    let mut c = gw.ws(KEY);
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
    let gw = start("");
    let mut c = gw.conn();
    c.send(&req("GET", "/ws").key(KEY).header("Connection", "close").bytes());
    let out = String::from_utf8(c.read_to_eof()).unwrap();
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
}
