//! Channel webhook deliveries and the platforms' answers through the gateway's own
//! code (`channel`), on arbitrary bytes: signature checks with headers taken from the
//! input (`channel::verify`), then, as `webhook::receive` does for a verified body, the
//! depth check and the payload reader of every channel type (`channel::inbound::parse`);
//! a reply address read back and a send built (`channel::build_send`); a platform's
//! answer classified (`channel::classify`). Checked: no panic and no stack overflow.
//!
//! Input layout: byte 0 picks the channel type, byte 1 the answer's status; the rest is
//! split at the first two `\n`: a header value, a second header value, then the body.
#![no_main]

use clawgate::channel::{build_send, classify, inbound, verify};
use clawgate::config::{ChannelConfig, ChannelKind, Secret, SessionScope};
use clawgate::json::{check_depth, max_depth};
use libfuzzer_sys::fuzz_target;

const KINDS: [ChannelKind; 5] =
    [ChannelKind::Telegram, ChannelKind::Slack, ChannelKind::Discord, ChannelKind::WhatsApp, ChannelKind::Generic];

fn channel(kind: ChannelKind) -> ChannelConfig {
    ChannelConfig {
        secret: Some(Secret::new("fuzz-secret".into())),
        // RFC 8032 section 7.1 TEST 1's public key.
        public_key: Some([
            0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a, 0x0e, 0xe1,
            0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
        ]),
        bot_token: Some(Secret::new("fuzz-token".into())),
        api_base: "http://127.0.0.1:9".into(),
        callback_url: Some("http://127.0.0.1:9/cb".into()),
        session_scope: SessionScope::User,
        ..ChannelConfig::new("fuzz", kind)
    }
}

fuzz_target!(|data: &[u8]| {
    let [kind, status, rest @ ..] = data else { return };
    let ch = channel(KINDS[usize::from(*kind) % KINDS.len()]);
    let mut pieces = rest.splitn(3, |b| *b == b'\n');
    let (first, second, body) = (pieces.next().unwrap_or_default(), pieces.next().unwrap_or_default(), pieces.next().unwrap_or_default());
    // Every header the verifier may read gets one of the two values.
    let header = |name: &str| -> Option<&[u8]> {
        Some(if name.contains("timestamp") { first } else { second })
    };
    let _ = verify(&ch, &header, body, 1_700_000_000);
    if check_depth(body, max_depth()).is_ok() {
        if let Ok(inbound::Inbound::Messages(messages)) = inbound::parse(&ch, body) {
            for m in messages {
                let _ = build_send(&ch, &m.target, &m.text, 0);
                let _ = build_send(&ch, &m.target, &m.text, 1);
            }
        }
        let _ = inbound::new_session_command(&String::from_utf8_lossy(body));
        let target = String::from_utf8_lossy(first);
        let _ = build_send(&ch, &target, &String::from_utf8_lossy(second), u32::from(*status));
        let _ = classify(ch.kind, 100 + u16::from(*status) * 2, None, body);
    }
});
