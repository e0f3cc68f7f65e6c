use super::*;
use crate::config::{ChannelConfig, ChannelKind};

fn ch(kind: ChannelKind) -> ChannelConfig {
    ChannelConfig::new("c", kind)
}

fn one(kind: ChannelKind, body: &str) -> Incoming {
    match parse(&ch(kind), body.as_bytes()) {
        Ok(Inbound::Messages(mut m)) if m.len() == 1 => m.remove(0),
        other => panic!("expected one message, got {other:?}"),
    }
}

#[test]
fn telegram_messages_carry_update_id_chat_and_topic() {
    let m = one(
        ChannelKind::Telegram,
        r#"{"update_id":10000,"message":{"message_id":1365,"date":1441645532,
            "from":{"id":1111111,"is_bot":false,"first_name":"Ann"},
            "chat":{"id":-1001234567890,"type":"supergroup","title":"Team"},
            "message_thread_id":7,"is_topic_message":true,"text":"/new hello"}}"#,
    );
    assert_eq!(
        (m.key.as_str(), m.chat.as_str(), m.user.as_str(), m.group),
        ("10000", "-1001234567890", "1111111", true)
    );
    assert_eq!(m.text, "/new hello");
    let t: TelegramTarget = sonic_rs::from_str(&m.target).unwrap();
    assert_eq!(t, TelegramTarget { chat_id: -1001234567890, message_id: Some(1365), message_thread_id: Some(7) });
    let private = one(
        ChannelKind::Telegram,
        r#"{"update_id":1,"message":{"message_id":2,"from":{"id":5,"is_bot":false},"chat":{"id":5,"type":"private"},"text":"hi"}}"#,
    );
    assert!(!private.group);
}

#[test]
fn telegram_chatter_is_ignored() {
    let c = ch(ChannelKind::Telegram);
    for body in [
        r#"{"update_id":1,"edited_message":{"message_id":2,"chat":{"id":5},"text":"x"}}"#,
        r#"{"update_id":1,"message":{"message_id":2,"chat":{"id":5},"photo":[]}}"#,
        r#"{"update_id":1,"message":{"message_id":2,"from":{"id":9,"is_bot":true},"chat":{"id":5},"text":"x"}}"#,
    ] {
        assert!(matches!(parse(&c, body.as_bytes()), Ok(Inbound::Ignored(_))), "{body}");
    }
    assert!(parse(&c, br#"{"message":{}}"#).is_err(), "no update_id");
    assert!(parse(&c, b"[1]").is_err());
    assert!(parse(&c, b"{").is_err());
}

#[test]
fn slack_challenges_messages_threads_and_mentions() {
    let c = ch(ChannelKind::Slack);
    assert_eq!(
        parse(&c, br#"{"token":"t","challenge":"3eZbrw1a","type":"url_verification"}"#),
        Ok(Inbound::Answer(r#"{"challenge":"3eZbrw1a"}"#.into()))
    );
    let m = one(
        ChannelKind::Slack,
        r#"{"type":"event_callback","event_id":"Ev1","event":{"type":"message","channel":"C1","user":"U1",
            "text":"Live long","ts":"1355517523.000005","channel_type":"channel"}}"#,
    );
    assert_eq!((m.key.as_str(), m.chat.as_str(), m.user.as_str(), m.group), ("C1:1355517523.000005", "C1", "U1", true));
    assert_eq!(
        sonic_rs::from_str::<SlackTarget>(&m.target).unwrap(),
        SlackTarget { channel: "C1".into(), thread_ts: None }
    );
    // The same message as an app_mention: the same key (one turn), the mention removed.
    let mention = one(
        ChannelKind::Slack,
        r#"{"type":"event_callback","event_id":"Ev2","event":{"type":"app_mention","channel":"C1","user":"U1",
            "text":"<@U0BOT> Live long","ts":"1355517523.000005","thread_ts":"1355517500.000001"}}"#,
    );
    assert_eq!(mention.key, m.key);
    assert_eq!(mention.text, "Live long");
    assert_eq!(
        sonic_rs::from_str::<SlackTarget>(&mention.target).unwrap().thread_ts.as_deref(),
        Some("1355517500.000001")
    );
    let dm = one(
        ChannelKind::Slack,
        r#"{"type":"event_callback","event":{"type":"message","channel":"D1","user":"U1","text":"x","ts":"1.2","channel_type":"im"}}"#,
    );
    assert!(!dm.group);
    for body in [
        r#"{"type":"event_callback","event":{"type":"message","bot_id":"B1","channel":"C1","text":"x","ts":"1.2"}}"#,
        r#"{"type":"event_callback","event":{"type":"message","subtype":"message_changed","channel":"C1","ts":"1.2"}}"#,
        r#"{"type":"event_callback","event":{"type":"reaction_added","user":"U1"}}"#,
        r#"{"type":"app_rate_limited","minute_rate_limited":1}"#,
    ] {
        assert!(matches!(parse(&c, body.as_bytes()), Ok(Inbound::Ignored(_))), "{body}");
    }
}

#[test]
fn discord_pings_commands_and_other_interactions() {
    let c = ch(ChannelKind::Discord);
    assert_eq!(parse(&c, br#"{"type":1,"id":"1"}"#), Ok(Inbound::Answer(r#"{"type":1}"#.into())));
    let m = one(
        ChannelKind::Discord,
        r#"{"type":2,"token":"A_UNIQUE_TOKEN","id":"786008729715212338","application_id":"77",
            "guild_id":"290926798626357999","channel_id":"645027906669510667",
            "member":{"user":{"id":"53908232506183680","username":"Mason"}},
            "data":{"options":[{"type":1,"name":"sub","options":[{"type":4,"name":"n","value":3},
            {"type":3,"name":"cardname","value":"The Gitrog Monster"}]}],"type":1,"name":"cardsearch","id":"7"}}"#,
    );
    assert_eq!(
        (m.key.as_str(), m.chat.as_str(), m.user.as_str(), m.group),
        ("786008729715212338", "645027906669510667", "53908232506183680", true)
    );
    assert_eq!(m.text, "The Gitrog Monster");
    assert_eq!(
        sonic_rs::from_str::<DiscordTarget>(&m.target).unwrap(),
        DiscordTarget { application_id: "77".into(), token: "A_UNIQUE_TOKEN".into() }
    );
    let reset = one(
        ChannelKind::Discord,
        r#"{"type":2,"token":"t","id":"9","application_id":"77","channel_id":"5","user":{"id":"8"},"data":{"name":"new"}}"#,
    );
    assert_eq!(new_session_command(&reset.text), Some(""));
    assert!(!reset.group);
    assert_eq!(parse(&c, br#"{"type":3,"id":"1"}"#), Ok(Inbound::Answer(r#"{"type":6}"#.into())));
    assert_eq!(parse(&c, br#"{"type":4,"id":"1"}"#), Ok(Inbound::Answer(r#"{"type":8,"data":{"choices":[]}}"#.into())));
}

#[test]
fn whatsapp_spools_each_text_message_and_ignores_statuses() {
    let c = ch(ChannelKind::WhatsApp);
    let body = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{
        "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
        "contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":"16505551234"}],
        "messages":[{"from":"16505551234","id":"wamid.A","timestamp":"1749416383","type":"text","text":{"body":"Does it come in another color?"}},
                    {"from":"16505551234","id":"wamid.B","type":"image","image":{}},
                    {"from":"16505550000","id":"wamid.C","type":"text","text":{"body":"second"}}]},
        "field":"messages"}]}]}"#;
    let Ok(Inbound::Messages(m)) = parse(&c, body.as_bytes()) else { panic!() };
    assert_eq!(m.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(), ["wamid.A", "wamid.C"]);
    assert_eq!(m[0].text, "Does it come in another color?");
    assert_eq!(
        sonic_rs::from_str::<WhatsAppTarget>(&m[1].target).unwrap(),
        WhatsAppTarget {
            phone_number_id: "106540352242922".into(),
            to: "16505550000".into(),
            message_id: "wamid.C".into()
        }
    );
    let statuses = r#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{
        "statuses":[{"id":"wamid.X","status":"delivered"}]}}]}]}"#;
    assert!(matches!(parse(&c, statuses.as_bytes()), Ok(Inbound::Ignored(_))));
}

#[test]
fn generic_needs_its_three_fields() {
    let m = one(ChannelKind::Generic, r#"{"from":"alice","text":"hi","messageId":"m1"}"#);
    assert_eq!((m.key.as_str(), m.chat.as_str(), m.text.as_str()), ("m1", "alice", "hi"));
    assert_eq!(
        sonic_rs::from_str::<GenericTarget>(&m.target).unwrap(),
        GenericTarget { to: "alice".into(), in_reply_to: "m1".into() }
    );
    let c = ch(ChannelKind::Generic);
    assert!(parse(&c, br#"{"from":"alice","text":"hi"}"#).is_err());
    assert!(parse(&c, br#"{"from":"alice","text":"hi","messageId":7}"#).is_err());
}

#[test]
fn new_session_commands() {
    assert_eq!(new_session_command("/new"), Some(""));
    assert_eq!(new_session_command("  /reset  "), Some(""));
    assert_eq!(new_session_command("/new hello there"), Some("hello there"));
    assert_eq!(new_session_command("/new@my_bot hello"), Some("hello"));
    assert_eq!(new_session_command("/newer"), None);
    assert_eq!(new_session_command("tell me /new"), None);
}
