//! The JSON of `/ws` (PROTOCOL.md): client frames parsed with sonic-rs into borrowed
//! `Cow` fields, server frames rendered and wrapped into a WebSocket text frame by the
//! library's `FrameEncoder` (servers do not mask). One render and one copy per frame;
//! `text_frame` is what the criterion bench `ws_frames` measures.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use monoio_codec::Encoder;
use monoio_tungstenite::protocol::frame::codec::FrameEncoder;
use monoio_tungstenite::protocol::frame::coding::{Data, OpCode};
use monoio_tungstenite::protocol::frame::Frame;
use serde::{Deserialize, Serialize};

use crate::chat::UsageView;
use crate::error::ApiError;

/// A client frame; which fields matter depends on `type`.
#[derive(Debug, Deserialize)]
pub struct ClientFrame<'a> {
    #[serde(borrow, rename = "type")]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub token: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub content: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "sessionId")]
    pub session_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub events: Option<Vec<Cow<'a, str>>>,
}

/// A server frame.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    AuthOk {
        user: &'a str,
    },
    Chunk {
        content: &'a str,
        #[serde(rename = "sessionId")]
        session_id: &'a str,
    },
    Message {
        content: &'a str,
        #[serde(rename = "sessionId")]
        session_id: &'a str,
    },
    Done {
        #[serde(rename = "sessionId")]
        session_id: &'a str,
        usage: UsageView,
    },
    Pong,
    Error {
        code: &'a str,
        message: &'a str,
        #[serde(rename = "sessionId", skip_serializing_if = "Option::is_none")]
        session_id: Option<&'a str>,
        /// Seconds, on rate-limit refusals.
        #[serde(rename = "retryAfter", skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    Status(StatusView),
}

/// What a `status` event carries: this process's live counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub workers: usize,
    pub connections: u64,
    pub web_socket_clients: u64,
    pub sessions: usize,
    pub in_flight: u64,
}

impl<'a> ServerFrame<'a> {
    /// The `error` frame of `e`, tagged with the turn's session when there is one.
    pub fn error(e: &'a ApiError, session_id: Option<&'a str>) -> Self {
        ServerFrame::Error { code: e.code.as_str(), message: &e.message, session_id, retry_after: e.retry_after }
    }

    /// The frame as JSON text.
    pub fn to_json(&self) -> Vec<u8> {
        sonic_rs::to_vec(self)
            .unwrap_or_else(|_| br#"{"type":"error","code":"INTERNAL","message":"render failed"}"#.to_vec())
    }

    /// The frame as a complete WebSocket text frame, ready for the socket.
    pub fn encode(&self) -> Bytes {
        text_frame(self.to_json())
    }
}

/// Wraps UTF-8 `payload` into one unmasked, final text frame.
pub fn text_frame(payload: Vec<u8>) -> Bytes {
    let frame = Frame::message(payload, OpCode::Data(Data::Text), true);
    let mut out = BytesMut::with_capacity(frame.len());
    // Encoding into a BytesMut cannot fail.
    let _ = FrameEncoder.encode(frame, &mut out);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_frames_render_the_contract_shapes() {
        let f = ServerFrame::Chunk { content: "hi", session_id: "s1" };
        assert_eq!(f.to_json(), br#"{"type":"chunk","content":"hi","sessionId":"s1"}"#);
        assert_eq!(ServerFrame::Pong.to_json(), br#"{"type":"pong"}"#);
        assert_eq!(ServerFrame::AuthOk { user: "ops" }.to_json(), br#"{"type":"auth_ok","user":"ops"}"#);
        let err = ApiError::invalid("bad");
        assert_eq!(
            ServerFrame::error(&err, None).to_json(),
            br#"{"type":"error","code":"INVALID_REQUEST","message":"bad"}"#
        );
        let limited = ApiError::new(crate::error::ErrorCode::RateLimited, "slow").with_retry_after(3);
        assert_eq!(
            ServerFrame::error(&limited, Some("s1")).to_json(),
            br#"{"type":"error","code":"RATE_LIMITED","message":"slow","sessionId":"s1","retryAfter":3}"#
        );
        let d = ServerFrame::Done {
            session_id: "s1",
            usage: UsageView { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
        };
        assert_eq!(
            d.to_json(),
            br#"{"type":"done","sessionId":"s1","usage":{"promptTokens":1,"completionTokens":2,"totalTokens":3}}"#
        );
    }

    #[test]
    fn text_frames_have_the_rfc_header() {
        let b = text_frame(b"{}".to_vec());
        assert_eq!(&b[..], &[0x81, 0x02, b'{', b'}']);
        let long = text_frame(vec![b'a'; 300]);
        assert_eq!(&long[..4], &[0x81, 126, 0x01, 0x2c]);
        assert_eq!(long.len(), 304);
    }

    #[test]
    fn client_frames_parse_with_escapes() {
        let f: ClientFrame<'_> = sonic_rs::from_str(r#"{"type":"message","content":"a\"b","sessionId":"s1"}"#).unwrap();
        assert_eq!(f.kind, "message");
        assert_eq!(f.content.as_deref(), Some("a\"b"));
        assert!(sonic_rs::from_str::<ClientFrame<'_>>(r#"{"content":"x"}"#).is_err());
    }
}
