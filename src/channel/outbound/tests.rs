use super::*;
use crate::config::{ChannelConfig, ChannelKind, Secret};

fn ch(kind: ChannelKind) -> ChannelConfig {
    ChannelConfig {
        secret: Some(Secret::new("s3cret".into())),
        bot_token: Some(Secret::new("tok".into())),
        api_base: "http://platform".into(),
        callback_url: Some("http://hooks/cb".into()),
        ..ChannelConfig::new("c", kind)
    }
}

fn body(r: &SendRequest) -> sonic_rs::Value {
    sonic_rs::from_slice(&r.body).unwrap()
}

#[test]
fn telegram_answers_the_message_in_its_topic_with_the_first_part_only_as_reply() {
    let c = ch(ChannelKind::Telegram);
    let target = r#"{"chat_id":-100,"message_id":7,"message_thread_id":3}"#;
    let r = build_send(&c, target, "hello", 0).unwrap();
    assert_eq!((r.method, r.base.as_str(), r.path.as_str()), ("POST", "http://platform", "/bottok/sendMessage"));
    let b = body(&r);
    assert_eq!(b["chat_id"].as_i64(), Some(-100));
    assert_eq!(b["text"].as_str(), Some("hello"));
    assert_eq!(b["message_thread_id"].as_i64(), Some(3));
    assert_eq!(b["reply_parameters"]["message_id"].as_i64(), Some(7));
    let second = body(&build_send(&c, target, "more", 1).unwrap());
    assert!(second.get("reply_parameters").is_none());
    assert_eq!(body(&build_send(&c, target, "  ", 0).unwrap())["text"].as_str(), Some(EMPTY_REPLY));
}

#[test]
fn slack_discord_whatsapp_and_generic_requests() {
    let r = build_send(&ch(ChannelKind::Slack), r#"{"channel":"C1","thread_ts":"1.2"}"#, "hi", 0).unwrap();
    assert_eq!(r.path, "/chat.postMessage");
    assert_eq!(r.headers, vec![("authorization", "Bearer tok".to_string())]);
    assert_eq!(body(&r)["thread_ts"].as_str(), Some("1.2"));

    let d = ch(ChannelKind::Discord);
    let t = r#"{"application_id":"77","token":"itok"}"#;
    let first = build_send(&d, t, "hi", 0).unwrap();
    assert_eq!((first.method, first.path.as_str()), ("PATCH", "/webhooks/77/itok/messages/@original"));
    assert_eq!(body(&first)["content"].as_str(), Some("hi"));
    let next = build_send(&d, t, "more", 1).unwrap();
    assert_eq!((next.method, next.path.as_str()), ("POST", "/webhooks/77/itok"));

    let w = build_send(
        &ch(ChannelKind::WhatsApp),
        r#"{"phone_number_id":"106","to":"1650","message_id":"wamid.A"}"#,
        "hi",
        0,
    )
    .unwrap();
    assert_eq!(w.path, "/106/messages");
    let b = body(&w);
    assert_eq!(
        (b["messaging_product"].as_str(), b["to"].as_str(), b["type"].as_str()),
        (Some("whatsapp"), Some("1650"), Some("text"))
    );
    assert_eq!(b["text"]["body"].as_str(), Some("hi"));

    let g = build_send(&ch(ChannelKind::Generic), r#"{"to":"alice","inReplyTo":"m1"}"#, "hi", 0).unwrap();
    assert_eq!((g.base.as_str(), g.path.as_str()), ("http://hooks/cb", ""));
    assert_eq!(g.body, br#"{"to":"alice","text":"hi","inReplyTo":"m1"}"#);
    assert_eq!(g.headers[0].1, format!("sha256={}", hmac_sha256_hex(b"s3cret", &g.body)));

    let mut no_token = ch(ChannelKind::Telegram);
    no_token.bot_token = None;
    assert!(build_send(&no_token, r#"{"chat_id":1}"#, "hi", 0).is_err());
    assert!(build_send(&ch(ChannelKind::Telegram), "garbage", "hi", 0).is_err());
}

#[test]
fn answers_are_classified_by_each_platform_rules() {
    use ChannelKind::*;
    assert_eq!(classify(Telegram, 200, None, br#"{"ok":true,"result":{}}"#), Verdict::Sent);
    let tg429 = br#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 5","parameters":{"retry_after":5}}"#;
    assert!(matches!(classify(Telegram, 429, None, tg429), Verdict::Retry { after: Some(a), .. } if a == 5.0));
    assert!(matches!(classify(Telegram, 429, Some(7.0), tg429), Verdict::Retry { after: Some(a), .. } if a == 7.0));
    assert!(matches!(
        classify(Telegram, 400, None, br#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#),
        Verdict::Dead { error } if error.contains("chat not found")
    ));
    assert_eq!(classify(Slack, 200, None, br#"{"ok":true,"ts":"1.2"}"#), Verdict::Sent);
    assert!(matches!(classify(Slack, 200, None, br#"{"ok":false,"error":"channel_not_found"}"#), Verdict::Dead { .. }));
    assert!(matches!(classify(Slack, 200, None, br#"{"ok":false,"error":"internal_error"}"#), Verdict::Retry { .. }));
    assert!(matches!(classify(Slack, 429, Some(3.0), b""), Verdict::Retry { after: Some(a), .. } if a == 3.0));
    let dc429 = br#"{"message":"You are being rate limited.","retry_after":0.25,"global":false}"#;
    assert!(matches!(classify(Discord, 429, None, dc429), Verdict::Retry { after: Some(a), .. } if a == 0.25));
    assert!(matches!(
        classify(Discord, 401, None, br#"{"message":"Invalid Webhook Token","code":50027}"#),
        Verdict::Dead { error } if error.contains("50027")
    ));
    let wa_throttle = br#"{"error":{"message":"(#130429) Rate limit hit","type":"OAuthException","code":130429}}"#;
    assert!(matches!(classify(WhatsApp, 400, None, wa_throttle), Verdict::Retry { after: None, .. }));
    let wa_bad = br#"{"error":{"message":"(#100) Invalid parameter","type":"OAuthException","code":100}}"#;
    assert!(matches!(classify(WhatsApp, 400, None, wa_bad), Verdict::Dead { .. }));
    assert!(matches!(classify(Generic, 503, None, b"down"), Verdict::Retry { .. }));
    assert_eq!(classify(Generic, 204, None, b""), Verdict::Sent);
}
